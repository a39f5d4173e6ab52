"""`PruningBudget`: the in-graph sparsity regulariser and its schedules.

A Keras callback cannot add a term to a compiled train step, and on JAX a
variable a callback assigns between steps is not seen until the next epoch.
So the regulariser, the target ramp, the temperature annealing and the
freezing of gates all run inside the model, in this identity layer placed
on the model input, the way BatchNormalization updates its moving
statistics. Its variables are saved with the model, so a resumed run picks
up the schedule where it stopped. `PruningCallback` only sets them at epoch
boundaries.
"""

import weakref

import keras
import numpy as np
from keras import ops

from keras_relaxprune.cost import cost_rule
from keras_relaxprune.counting import GraphCost, keep_masks, soft_gates
from keras_relaxprune.rules import channel_rule

METRICS = ("flops", "params")

# Budget layer -> (GraphCost, gates). Kept outside the layer: as attributes,
# the gates would be tracked and saved twice (under the budget and in place).
_LINKS = weakref.WeakKeyDictionary()

_SCALARS = {
    # name: (initial value, dtype)
    "step": (0.0, "float32"),
    "begin_step": (0.0, "float32"),
    "end_step": (1.0, "float32"),
    "target": (1.0, "float32"),  # remaining fraction asked for at the end
    "strength": (0.0, "float32"),  # lambda; 0 = regulariser off
    "base_strength": (0.0, "float32"),  # lambda given by the user
    "strength_rate": (0.0, "float32"),  # lambda adaptation per step; 0 = fixed
    "initial_scale": (10.0, "float32"),
    "final_scale": (100.0, "float32"),
    "initial_threshold": (0.02, "float32"),
    "final_threshold": (0.2, "float32"),
    "flops_weight": (1.0, "float32"),  # 1 = budget FLOPs, 0 = params
    "cost_exponent": (1.0, "float32"),  # push per channel ~ (its cost) ** this
    "active": (0.0, "float32"),  # 1 while pruning, 0 once the budget is met
    "finished": (0.0, "float32"),  # 1 once the final masks are fixed
}


@keras.saving.register_keras_serializable(package="keras_relaxprune")
class PruningBudget(keras.layers.Layer):
    """Identity layer that adds `lambda * max(R(g) - t, 0)` to the loss.

    `R(g)` is the relaxed remaining cost fraction (FLOPs or params) of the
    model it sits in, `t` the target fraction ramped over training with the
    polynomial schedule of tfmot. In training mode it also raises the gate
    temperature and freezes gates below the threshold (`keep_mask -> 0`)
    while the hard cost is above the ramped target. It is created by
    `add_gates` and driven by `PruningCallback`; users do not build it.

    Args:
        metric: `"flops"` or `"params"`, the cost budgeted by default.
    """

    def __init__(self, metric="flops", **kwargs):
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ValueError(f"PruningBudget: metric must be one of {METRICS}, got {metric!r}.")
        self.metric = metric

    def build(self, input_shape):
        for name, (value, dtype) in _SCALARS.items():
            if name == "flops_weight":
                value = 1.0 if self.metric == "flops" else 0.0
            variable = self.add_weight(
                name=name, shape=(), dtype=dtype, trainable=False,
                initializer=keras.initializers.Constant(value),
            )
            setattr(self, name, variable)

    def link(self, graph):
        """Attaches the cost model of the gated graph this layer sits in."""
        gates = tuple(dict.fromkeys(graph.gates.values()))
        _LINKS[self] = (GraphCost(graph), gates, graph, [])

    def linked_channel_costs(self):
        cost, gates, graph, cache = _LINKS[self]
        if not cache:  # computed once, when the train step is first traced
            cache.extend(_channel_costs(graph, gates))
        return cache

    @property
    def linked(self):
        return self in _LINKS

    # Methods, not properties: Keras saving walks attribute values.
    def linked_cost(self):
        return _LINKS[self][0]

    def linked_gates(self):
        return _LINKS[self][1]

    def progress(self, step):
        span = ops.maximum(self.end_step - self.begin_step, 1.0)
        return ops.clip((step - self.begin_step) / span, 0.0, 1.0)

    def ramped_target(self, progress):
        return self.target + (1.0 - self.target) * (1.0 - progress) ** 3

    def budgeted(self, fractions):
        weight = self.flops_weight
        return weight * fractions["flops"] + (1.0 - weight) * fractions["params"]

    def call(self, inputs, training=None):
        if not training or not self.linked:
            return inputs
        step = self.step + 1.0
        self.step.assign(step)
        progress = self.progress(step)
        target_now = self.ramped_target(progress)
        scale = self.initial_scale * (self.final_scale / self.initial_scale) ** progress
        for gate in self.linked_gates():
            gate.scale.assign(ops.cast(scale, gate.scale.dtype))
        # Freeze before the penalty reads the masks: PyTorch's autograd
        # refuses a mask changed in place after the loss used it.
        hard = self.budgeted(self.linked_cost().fractions(keep_masks))
        threshold = self.initial_threshold + (
            self.final_threshold - self.initial_threshold
        ) * progress
        shrinking = self.active * ops.cast(hard > target_now, "float32")
        for gate in self.linked_gates():
            self._freeze_low_gates(gate, threshold, shrinking)
        relaxed = self.budgeted(self.linked_cost().fractions(soft_gates))
        self._adapt_strength(ops.stop_gradient(relaxed) - target_now)
        penalty = self.active * self.strength * self._penalty(relaxed, target_now)
        self.add_loss(penalty)
        return inputs

    def _penalty(self, relaxed, target_now):
        """`max(R - t, 0)`; with `cost_exponent` e < 1 its gradient is
        reshaped: each gate is pushed in proportion to (the cost one of its
        channels carries) ** e instead of ** 1, with the same total push, so
        a channel that carries much cost (a residual stream tied across many
        convolutions) is not emptied before the task loss can push back."""
        exact = ops.relu(relaxed - target_now)
        costs = self.linked_channel_costs()
        if not costs:
            return exact
        weight = self.flops_weight
        sums, per_channel, counts = [], [], []
        for gate, (flops, params) in zip(self.linked_gates(), costs):
            per_channel.append(weight * flops + (1.0 - weight) * params)
            sums.append(ops.sum(gate.gate_values()))
            counts.append(float(gate.channels))
        per_channel = ops.maximum(ops.stack(per_channel), 1e-12)
        shaped = ops.power(per_channel, self.cost_exponent)
        counts = ops.convert_to_tensor(counts)
        # Same total push as the linear cost (sum of cost x channels).
        shaped = shaped * ops.sum(per_channel * counts) / ops.sum(shaped * counts)
        surrogate = ops.sum(shaped * ops.stack(sums))
        over = ops.cast(ops.stop_gradient(relaxed) > target_now, "float32")
        reshaped = ops.stop_gradient(exact) + over * (
            surrogate - ops.stop_gradient(surrogate))
        use_exact = ops.cast(self.cost_exponent >= 1.0, "float32")
        return use_exact * exact + (1.0 - use_exact) * reshaped

    def _adapt_strength(self, gap):
        """Dual ascent: lambda grows while the relaxed cost lags the ramp.

        Multiplicative, so it is free of the optimizer's scale: a gap of
        0.1 multiplies lambda by `exp(0.1 * rate)` per step. It stays within
        `[base / 10, base * 1e4]` and moves only while pruning is active.
        """
        factor = ops.exp(self.strength_rate * gap)
        low, high = self.base_strength * 0.1, self.base_strength * 1e4
        adapted = ops.clip(self.strength * factor, low, high)
        self.strength.assign(self.active * adapted + (1.0 - self.active) * self.strength)

    @staticmethod
    def _freeze_low_gates(gate, threshold, shrinking):
        values = gate.gate_values()
        # The strongest channel of a group stays: a plain path never dies.
        low = ops.logical_and(values < threshold, values < ops.max(values))
        frozen = ops.cast(low, gate.keep_mask.dtype) * ops.cast(shrinking, gate.keep_mask.dtype)
        gate.keep_mask.assign(gate.keep_mask * (1.0 - frozen))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["metric"] = self.metric
        return config


def _channel_costs(graph, gates):
    """Per gate: the (FLOPs, params) fraction one of its channels carries,
    measured at full width by switching one channel off."""
    from keras_relaxprune.counting import cost_fractions

    full = {root: np.ones(graph.groups.size[root], "float32")
            for root in graph.groups.roots()}
    base = cost_fractions(graph, full)
    roots = {id(gate): root for root, gate in graph.gates.items()}
    result = []
    for gate in gates:
        keep = {r: v.copy() for r, v in full.items()}
        keep[roots[id(gate)]][0] = 0.0
        less = cost_fractions(graph, keep)
        result.append((base["flops"] - less["flops"], base["params"] - less["params"]))
    return result


@cost_rule(PruningBudget)
def _budget_is_free(shapes, layer, cin, cout):
    return 0, 0, 0


@channel_rule(PruningBudget)
def _budget_passes_channels(tracer, flat, in_maps):
    return [in_maps[0]]
