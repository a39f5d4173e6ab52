"""`strip_pruning`: sub-network collapse and removal.

The gated graph is rebuilt node by node (`functional.rebuild`) with every
tensor carried as `LiveChannels`: the surviving channels plus the constant
each removed channel would hold. Layers with per-channel weights are sliced
by the rules of `slicing.py`; the structural rules here handle gates,
merges, concatenation, slicing ops and channel-wise layers. Surviving gate
values are folded into the weights before each gate, so no gate and no
extra multiply remains.
"""

import dataclasses

import keras
import numpy as np

from keras_relaxprune import slicing, structural
from keras_relaxprune.budget import PruningBudget
from keras_relaxprune.errors import StripError
from keras_relaxprune.functional import LayerCloner, rebuild, safe_name
from keras_relaxprune.gates import ChannelGate
from keras_relaxprune.graph import analyze
from keras_relaxprune.live_channels import LiveChannels, opaque


def strip_pruning(model, threshold=None):
    """Returns the pruned network as an ordinary, smaller dense Keras model.

    Channels whose `keep_mask` is 0 are removed from every layer that reads
    or writes them (kernels on both axes, biases, BN statistics, depthwise
    kernels), the surviving gate values are folded into the weights (BN
    gamma/beta, or the kernel and bias of the layer before the gate), and
    gates and the budget layer disappear. A residual branch whose channels
    are all removed collapses into its shortcut plus the constant the
    branch still emits (kept as a `Rescaling` offset when non-zero). The
    result computes what the gated model computes with hardened gates, to
    float tolerance; where that is impossible `StripError` says why.

    Args:
        model: a gated model from `add_gates` (trained, or loaded from
            `.keras`); a model without gates is returned as a plain copy.
        threshold: also remove channels whose gate value is below it.
            Defaults to None (only `keep_mask` decides).

    Returns:
        A new functional `keras.Model` with the same inputs and outputs and
        the same layer names wherever a layer survives.

    Example:

    ```python
    small = krp.strip_pruning(gated)
    krp.count_flops(small) == krp.count_flops(gated)   # True
    ```
    """
    graph = analyze(model)
    keep, gate_values = _hardened(graph, threshold)
    stripper = _Stripper(graph, keep, gate_values)
    name = model.name[: -len("_gated")] if model.name.endswith("_gated") else model.name
    return rebuild(
        graph.flat, stripper.call_node, name=f"{name}_stripped",
        wrap_input=stripper.wrap_input, unwrap_output=stripper.unwrap_output,
    )


def _hardened(graph, threshold):
    keep = graph.keep_vectors()
    gate_values = {}
    for root in graph.gated_groups():
        gate = graph.gates[root]
        values = np.asarray(keras.ops.convert_to_numpy(gate.gate_values()), "float64")
        if threshold is not None:
            keep[root] = keep[root] * (values >= threshold)
        gate_values[root] = values * keep[root]
    return keep, gate_values


class _Stripper:
    def __init__(self, graph, keep, gate_values):
        self.graph = graph
        self.keep = keep
        self.gate_values = gate_values
        self.cloner = LayerCloner()
        self.values = {}
        self.folds = {}  # tensor key -> (layer, kind, axis, channels) a gate folds into
        self._folds_out = {}
        self.input_scales = {}  # tensor key -> per-live-channel scale for its readers
        self._consumers = graph.flat.consumers()
        self._producers = {index for index, _ in graph.producers}

    # rebuild hooks ---------------------------------------------------------
    def wrap_input(self, position, tensor):
        wrapped = opaque(tensor)
        self.values[self.graph.flat.inputs[position]] = wrapped
        return wrapped

    def unwrap_output(self, value):
        if value.is_constant or not value.is_full:
            raise StripError(
                "strip_pruning: every channel reaching a model output was removed, "
                "so the output would be a constant. Keep more channels (a lower "
                "target) or exclude the layers on that path."
            )
        return value.value

    def call_node(self, index, flat, args, kwargs):
        self._folds_out = {}
        ins = [self.values[key] for key in flat.inputs]
        outs = self._dispatch(index, flat, ins, args, kwargs)
        for key, out in zip(flat.outputs, outs):
            self.values[key] = out
        for position, record in self._folds_out.items():
            self.folds[flat.outputs[position]] = record
        return outs

    def _dispatch(self, index, flat, ins, args, kwargs):
        operation = flat.operation
        if isinstance(operation, PruningBudget):
            return [ins[0]]
        if isinstance(operation, ChannelGate):
            return [self._gate(index, flat, ins[0])]
        out_map = self.graph.out_maps(index)[0]
        out_keep = self.kept(out_map) if out_map is not None else None
        prunes_outputs = index in self._producers and len(out_keep) != len(self.kept_all(out_map))
        # A channel-axis BN is always rebuilt: the rule gives it the gamma and
        # beta that a gate folds into, even where the original had none.
        batch_norm = isinstance(operation, keras.layers.BatchNormalization) and (
            operation.axis in (-1, len(self.graph.flat.tensors[flat.inputs[0]].shape) - 1))
        scaled = any(key in self.input_scales for key in flat.inputs)
        if all(x.is_full for x in ins) and not (prunes_outputs or batch_norm or scaled):
            return self._copy(flat, args, kwargs)
        rule = slicing.REGISTRY.find(operation)
        if rule is not None:
            return [rule(self, flat, ins[0], out_keep)]
        rule = structural.REGISTRY.find(operation)
        if rule is not None:
            return rule(self, flat, ins, args, kwargs)
        raise StripError(
            f"strip_pruning: removed channels reach layer '{flat.name}' "
            f"({flat.class_name}), which has no removal rule. Exclude the layers "
            "feeding it from pruning (add_gates(exclude=[...]))."
        )

    # helpers used by the rules ------------------------------------------
    def kept(self, channel_map):
        """Original indices of the channels of `channel_map` that survive."""
        flags = []
        for segment in channel_map:
            if segment.group is None:
                flags.append(np.ones(segment.length))
            else:
                root = self.graph.groups.find(segment.group)
                flags.append(self.keep[root][segment.start:segment.stop])
        flags = np.concatenate(flags) if flags else np.zeros(0)
        return np.flatnonzero(flags)

    @staticmethod
    def kept_all(channel_map):
        return np.arange(sum(s.length for s in channel_map))

    def build(self, flat, value, weights, **changes):
        """A new layer like `flat.operation` with `changes`, called and weighted."""
        config = flat.operation.get_config()
        if flat.scope:
            config["name"] = safe_name(flat.name)
        config.update(changes)
        layer = flat.operation.__class__.from_config(config)
        output = layer(value)
        layer.set_weights([np.asarray(w, "float32") for w in weights])
        return layer, output

    def foldable(self, layer, kind, axis):
        """The node's first output may take a gate folded into `layer`."""
        self._folds_out[0] = (layer, kind, axis, None)

    def inherit_fold(self, key, position, lo, hi):
        """Output `position` is live channels lo:hi of tensor `key`: a gate on
        it folds into the same layer, at those channels."""
        record = self.folds.get(key)
        if record is None:
            return
        layer, kind, axis, channels = record
        if channels is None:
            channels = np.arange(slicing.channel_count(layer, kind, axis))
        self._folds_out[position] = (layer, kind, axis, channels[lo:hi])

    def call_clone(self, flat, args, kwargs):
        """Calls the (weight-copied) clone of the node's layer on live values."""
        clone = self.cloner.clone(flat)
        unwrap = lambda v: v.value if isinstance(v, LiveChannels) else v  # noqa: E731
        args, kwargs = keras.tree.map_structure(unwrap, (args, kwargs))
        output = clone(*args, **kwargs)
        if isinstance(clone, keras.layers.Layer) and flat.operation.weights:
            clone.set_weights(flat.operation.get_weights())
        return output

    def _copy(self, flat, args, kwargs):
        outputs = keras.tree.flatten(self.call_clone(flat, args, kwargs))
        kind = slicing.fold_kind(flat.operation)
        if kind is not None:
            self.foldable(self.cloner.clone(flat), *kind)
        return [opaque(value) for value in outputs]

    def _gate(self, index, flat, x):
        (segment,) = self.graph.in_maps(index)[0]
        root = self.graph.groups.find(segment.group)
        keep, values = self.keep[root], self.gate_values.get(root)
        if values is None:  # a protected group: gate stays open, fold as is
            values = np.asarray(keras.ops.convert_to_numpy(flat.operation.gate_values()))
        const = np.where(keep == 0, 0.0, x.const * values)
        if np.any(keep[x.live] == 0):
            raise StripError(f"strip_pruning: gate '{flat.name}' removes channels its input still holds.")
        if len(x.live):
            self._fold_gate(flat, x, values[x.live])
        return dataclasses.replace(x, const=const)

    def _scale_consumers(self, flat, layer, scale):
        users = self._consumers.get(flat.outputs[0], [])
        linear = [self.graph.flat.nodes[i].operation for i, _ in users]
        if not users or not all(isinstance(op, slicing.INPUT_SCALABLE) for op in linear):
            raise StripError(
                f"strip_pruning: gate '{flat.name}' follows layer '{layer.name}' whose "
                f"fused activation '{slicing.activation_name(layer)}' does not commute "
                "with a scale, and not every layer reading the gate is a convolution "
                "or Dense that could take the scale instead. Put the activation in "
                "its own layer after a BN."
            )
        self.input_scales[flat.outputs[0]] = scale

    def _fold_gate(self, flat, x, scale):
        key = flat.inputs[0]
        if key not in self.folds:
            raise StripError(f"strip_pruning: gate '{flat.name}' follows no layer it can be folded into.")
        layer, kind, axis, channels = self.folds.pop(key)
        if kind != "batch_norm" and slicing.activation_name(layer) not in slicing.HOMOGENEOUS:
            # g * swish(z) != swish(g * z): scale the consumers' input rows.
            self._scale_consumers(flat, layer, scale)
            return
        if channels is not None:
            full = np.ones(slicing.channel_count(layer, kind, axis))
            full[channels] = scale
            scale = full
        slicing.fold_scale(layer, kind, axis, scale)
