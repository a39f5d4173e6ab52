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

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_relaxprune.cost.count import cost_fractions, sized_graph
from keras_relaxprune.cost.relaxed import GraphCost, keep_masks, soft_gates
from keras_relaxprune.errors import LatencyTableError, PruningError
from keras_relaxprune.latency.latency_model import LatencyModel, attach_latency_model
from keras_relaxprune.latency.latency_table import LatencyTable
from keras_relaxprune.layer_support import register_layer
from keras_relaxprune.layer_support.elementwise import free, pass_through
from keras_relaxprune.layers.channel_gate import FINAL_SCALE, INITIAL_SCALE

METRICS = ("flops", "params", "latency")


@dataclasses.dataclass
class BudgetLink:
    """The cost model a budget layer reads, rebuilt from the graph.

    Held on the layer as one plain object, set past Keras' attribute
    tracking: Keras neither tracks nor saves it (as tracked attributes the
    gates would be saved twice, under the budget and in place), and it
    lives and dies with the model.
    """

    cost: GraphCost
    gates: tuple
    graph: object
    channel_costs: list = None


_SCALARS = {
    # name: (initial value, dtype)
    "step": (0.0, "float32"),
    "begin_step": (0.0, "float32"),
    "end_step": (1.0, "float32"),
    "remaining_target": (1.0, "float32"),  # fraction of the cost kept at the end
    "penalty_weight": (0.0, "float32"),  # lambda; 0 = regulariser off
    "base_penalty_weight": (0.0, "float32"),  # lambda given by the user
    "penalty_weight_rate": (0.0, "float32"),  # lambda adaptation per step; 0 = fixed
    "initial_scale": (INITIAL_SCALE, "float32"),
    "final_scale": (FINAL_SCALE, "float32"),
    "initial_threshold": (0.02, "float32"),
    "final_threshold": (0.2, "float32"),
    "flops_weight": (1.0, "float32"),  # 1 = budget FLOPs, 0 = params
    "cost_exponent": (1.0, "float32"),  # push per channel ~ (its cost) ** this
    "ramp_on": (0.0, "float32"),  # 1 while pruning, 0 once the budget is met
    "masks_final": (0.0, "float32"),  # 1 once the final masks are fixed
}


@keras.saving.register_keras_serializable(package="keras_relaxprune")
class PruningBudget(keras.layers.Layer):
    """Identity layer that adds `lambda * max(R(g) - t, 0)` to the loss.

    `R(g)` is the relaxed remaining cost fraction (FLOPs or params) of the
    model it sits in, `t` the target fraction ramped over training with the
    polynomial schedule of tfmot. In training mode it also raises the gate
    temperature and freezes gates below the threshold (`keep_mask -> 0`)
    while the masks-only cost is above the ramped target. It is created by
    `add_gates` and driven by `PruningCallback`; users do not build it.

    Both costs are `GraphCost`s: the per-node rule of `count_flops`, without
    its collapse rules. Freezing keeps every group's strongest channel, so
    with these masks a node collapses only below a slice or split part
    whose channels are all removed; there the masks-only cost is above the
    stripped one, so freezing may remove a little more, never less, and the
    closing, counted as stripped, sets the final masks. Collapse in-graph
    would add per-node branches to every training step for that case alone.

    Args:
        metric: `"flops"`, `"params"` or `"latency"`, the cost budgeted by
            default.
        cost_input_shape: the input shape (without batch; a list of them
            for several inputs) at which FLOPs are counted, for a model
            whose spatial size is unknown (`None`). Defaults to None (the
            model's own shape).
        latency_table: the `LatencyTable.get_config()` of the model's
            layers, saved with the model; needed by a latency budget.
            Defaults to None.
    """

    def __init__(self, metric="flops", cost_input_shape=None, latency_table=None, **kwargs):
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ValueError(f"PruningBudget: metric must be one of {METRICS}, got {metric!r}.")
        if metric == "latency" and latency_table is None:
            raise LatencyTableError(
                "A latency budget needs a latency table: "
                "`add_gates(model, metric='latency', latency_table=krp.LatencyTable())`."
            )
        self.metric = metric
        self.cost_input_shape = cost_input_shape
        self.latency_table = latency_table

    def build(self, input_shape):
        for name, (value, dtype) in _SCALARS.items():
            if name == "flops_weight":
                value = 1.0 if self.metric == "flops" else 0.0
            variable = self.add_weight(
                name=name,
                shape=(),
                dtype=dtype,
                trainable=False,
                initializer=keras.initializers.Constant(value),
            )
            setattr(self, name, variable)
        if self.latency_table is not None:
            # Only with a table, so models saved without one load as before.
            self.latency_weight = self.add_weight(
                name="latency_weight",
                shape=(),
                dtype="float32",
                trainable=False,
                initializer=keras.initializers.Constant(float(self.metric == "latency")),
            )

    def metric_weights(self, metric):
        """The variable values that make `metric` the budgeted cost."""
        if metric == "latency" and self.latency_table is None:
            raise LatencyTableError(
                "PruningCallback(metric='latency'): the gated model has no latency "
                "table. Gate it with `krp.add_gates(model, metric='latency', "
                "latency_table=krp.LatencyTable())` (the table is saved with it)."
            )
        weights = {"flops_weight": 1.0 if metric == "flops" else 0.0}
        if self.latency_table is not None:
            weights["latency_weight"] = 1.0 if metric == "latency" else 0.0
        return weights

    def link(self, graph):
        """Attaches the cost model of the gated graph this layer sits in
        (with the latency table's per-node latency, when it has one)."""
        if self.latency_table is not None:
            table = LatencyTable.from_config(self.latency_table)
            attach_latency_model(graph, LatencyModel(table, graph))
        gates = tuple(dict.fromkeys(graph.gates.values()))
        object.__setattr__(self, "_link", BudgetLink(GraphCost(graph), gates, graph))

    def linked_channel_costs(self):
        link = self.__dict__["_link"]
        if link.channel_costs is None:  # computed once, when the step is traced
            link.channel_costs = _channel_costs(link.graph, link.gates)
        return link.channel_costs

    @property
    def linked(self):
        return "_link" in self.__dict__

    # Methods, not properties: Keras saving walks attribute values.
    def graph_cost(self):
        """The `GraphCost` of the linked graph."""
        return self.__dict__["_link"].cost

    def linked_gates(self):
        return self.__dict__["_link"].gates

    def progress(self, step):
        span = ops.maximum(self.end_step - self.begin_step, 1.0)
        return ops.clip((step - self.begin_step) / span, 0.0, 1.0)

    def ramped_target(self, progress):
        """The fraction of the cost to keep at `progress` (1 -> the end)."""
        kept = self.remaining_target
        return kept + (1.0 - kept) * (1.0 - progress) ** 3

    def budgeted(self, fractions):
        weight = self.flops_weight
        budgeted = weight * fractions["flops"] + (1.0 - weight) * fractions["params"]
        if self.latency_table is None:
            return budgeted
        return self.latency_weight * fractions["latency"] + (1.0 - self.latency_weight) * budgeted

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
        hard = self.budgeted(self.graph_cost().fractions(keep_masks))
        threshold = (
            self.initial_threshold + (self.final_threshold - self.initial_threshold) * progress
        )
        shrinking = self.ramp_on * ops.cast(hard > target_now, "float32")
        for gate in self.linked_gates():
            self._freeze_low_gates(gate, threshold, shrinking)
        relaxed = self.budgeted(self.graph_cost().fractions(soft_gates))
        self._adapt_penalty_weight(ops.stop_gradient(relaxed) - target_now)
        penalty = self.ramp_on * self.penalty_weight * self._penalty(relaxed, target_now)
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
        sums, per_channel, counts = [], [], []
        for gate, channel_cost in zip(self.linked_gates(), costs):
            per_channel.append(self.budgeted(channel_cost))
            # The push goes through the gates at the initial temperature: at
            # the annealed one a gate still open is saturated (its gradient
            # about 0), so a large cut could not move it and lambda wound up.
            soft = ops.sigmoid(ops.cast(self.initial_scale, gate.logits.dtype) * gate.logits)
            sums.append(ops.sum(soft * gate.keep_mask))
            counts.append(float(gate.channels))
        per_channel = ops.maximum(ops.stack(per_channel), 1e-12)
        shaped = ops.power(per_channel, self.cost_exponent)
        counts = ops.convert_to_tensor(counts)
        # Same total push as the linear cost (sum of cost x channels).
        shaped = shaped * ops.sum(per_channel * counts) / ops.sum(shaped * counts)
        surrogate = ops.sum(shaped * ops.stack(sums))
        over = ops.cast(ops.stop_gradient(relaxed) > target_now, "float32")
        reshaped = ops.stop_gradient(exact) + over * (surrogate - ops.stop_gradient(surrogate))
        use_exact = ops.cast(self.cost_exponent >= 1.0, "float32")
        return use_exact * exact + (1.0 - use_exact) * reshaped

    def _adapt_penalty_weight(self, gap):
        """Dual ascent: lambda grows while the relaxed cost lags the ramp.

        Multiplicative, so it is free of the optimizer's scale: a gap of
        0.1 multiplies lambda by `exp(0.1 * rate)` per step. It stays within
        `[base / 10, base * 1e4]` and moves only while pruning is active.
        """
        factor = ops.exp(self.penalty_weight_rate * gap)
        low, high = self.base_penalty_weight * 0.1, self.base_penalty_weight * 1e4
        adapted = ops.clip(self.penalty_weight * factor, low, high)
        weight = self.ramp_on * adapted + (1.0 - self.ramp_on) * self.penalty_weight
        self.penalty_weight.assign(weight)

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
        config["cost_input_shape"] = self.cost_input_shape
        config["latency_table"] = self.latency_table
        return config


def _channel_costs(graph, gates):
    """Per gate: the fraction of each cost (`cost_fractions`' keys) one of
    its channels carries, measured at full width by switching one channel off."""
    full = {root: np.ones(graph.groups.size[root], "float32") for root in graph.groups.roots()}
    base = cost_fractions(graph, full)
    roots = {id(gate): root for root, gate in graph.gates.items()}
    result = []
    for gate in gates:
        keep = {r: v.copy() for r, v in full.items()}
        keep[roots[id(gate)]][0] = 0.0
        less = cost_fractions(graph, keep)
        result.append({metric: base[metric] - less[metric] for metric in base})
    return result


# The budget layer is an identity on the model input: free, channels unchanged.
register_layer(PruningBudget, channels=pass_through, cost=free)


def find_budget(model):
    """The `PruningBudget` layer of a gated model."""
    budgets = [layer for layer in model.layers if isinstance(layer, PruningBudget)]
    if not budgets:
        raise PruningError(
            f"Model '{model.name}' has no gates: call `krp.add_gates(model)` "
            "and train the model it returns."
        )
    return budgets[0]


def link_budget(model):
    """Links the model's budget layer to its channel graph; returns both.

    The link is rebuilt from the graph itself (never serialised), so a gated
    model loaded from `.keras` is linked again by `PruningCallback`.
    """
    budget = find_budget(model)
    graph = sized_graph(model)
    budget.link(graph)
    return budget, graph
