"""`strip_pruning`: sub-network collapse and removal.

The gated graph is rebuilt node by node (`flat_graph.rebuild`) with every
tensor carried as `LiveChannels`: the surviving channels plus the constant
each removed channel would hold. Each layer that sees a removed channel is
rebuilt by the `remove` rule of its `LayerSupport` record (`layer_support/`),
through the `Stripper` interface below; gates are folded here: surviving gate
values go into the weights before each gate (its record's `GateFold`), so no
gate and no extra multiply remains.
"""

import collections
import dataclasses
import warnings

import keras
import numpy as np

from keras_relaxprune import arguments
from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.flat_graph import rebuild
from keras_relaxprune.graph.layer_copies import LayerCloner, copy_state, fresh_layer
from keras_relaxprune.graph.live_channels import LiveChannels, opaque
from keras_relaxprune.graph.names import NewLayerNames
from keras_relaxprune.graph.protection import reader_refusing_a_scale
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.layer_support import (
    ABSORBED,
    FoldTarget,
    find_support,
    is_multiply,
    passes_scale,
    removed_constant_fate,
)
from keras_relaxprune.layer_support.activations import activation_name, commutes_with_scale
from keras_relaxprune.layers.channel_gate import ChannelGate
from keras_relaxprune.layers.pruning_budget import PruningBudget


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
            `.keras`); a model without gates is returned as a plain copy,
            with a warning that nothing was pruned.
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
    model = arguments.model("strip_pruning", "model", model)
    if threshold is not None:
        threshold = arguments.real(
            "strip_pruning",
            "threshold",
            threshold,
            "a gate value in [0, 1) below "
            "which channels are also removed, or None (keep_mask alone decides)",
            low=0.0,
            high=1.0,
            high_open=True,
        )
    graph = analyze(model)
    if not graph.gates:
        warnings.warn(
            f"strip_pruning: model '{model.name}' has no ChannelGate, so nothing was "
            "pruned; the result is a plain copy. Pass the model returned by "
            "`add_gates` (trained with `PruningCallback`).",
            stacklevel=2,
        )
    keep, gate_values = _hardened(graph, threshold)
    if graph.gates and all(keep[root].all() for root in graph.gated_groups()):
        warnings.warn(
            f"strip_pruning: no channel of model '{model.name}' is switched off "
            "(every keep_mask is 1), so the result only folds the gates: train it "
            "with `PruningCallback` first, or pass `threshold=`.",
            stacklevel=2,
        )
    stripper = Stripper(graph, keep, gate_values)
    name = model.name[: -len("_gated")] if model.name.endswith("_gated") else model.name
    return rebuild(
        graph.flat,
        stripper.call_node,
        name=f"{name}_stripped",
        wrap_input=stripper.wrap_input,
        unwrap_output=stripper.unwrap_output,
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


class Stripper:
    """Rebuilds a gated graph without its removed channels.

    It is what a `LayerSupport.remove` rule works with: the rule reads the
    node's inputs (`LiveChannels`), asks `output_keep(node)` which of its
    output channels survive, builds the smaller layer with `build`, marks
    it `foldable` when a gate after it folds into its weights, and returns
    the outputs as `LiveChannels`; a layer that folds removed channels'
    constants into its bias takes them from `removed_constants`. Layers that
    lose nothing are copied with `call_clone`.

    Attributes:
        graph: the `ChannelGraph` of the gated model.
        keep: group root -> 0/1 vector of surviving channels.
        input_scales: tensor key -> per-live-channel scale that the layers
            reading it take into their kernels (a gate after an activation
            that does not commute with a scale).
    """

    def __init__(self, graph, keep, gate_values):
        self.graph = graph
        self.keep = keep
        self.gate_values = gate_values
        self.cloner = LayerCloner()
        self.values = {}
        self.folds = {}  # tensor key -> FoldTarget a gate on it folds into
        self._folds_out = {}
        self.input_scales = {}
        self._consumers = graph.flat.consumers()
        self._producers = {index for index, _ in graph.producers}
        self._index = {id(node): index for index, node in enumerate(graph.flat.nodes)}
        self.gated_tensors = graph.gated_tensors()
        self.names = NewLayerNames(graph.flat)
        self._calls = collections.Counter(id(node.operation) for node in graph.flat.nodes)

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
        self.names.settle(index, [out.value for out in outs])
        for position, target in self._folds_out.items():
            self.folds[flat.outputs[position]] = target
        return outs

    def _dispatch(self, index, flat, ins, args, kwargs):
        operation = flat.operation
        if isinstance(operation, PruningBudget):
            return [ins[0]]
        if isinstance(operation, ChannelGate):
            return [self._gate(index, flat, ins[0])]
        support = find_support(operation)
        product = is_multiply(operation) or passes_scale(operation)
        if product:
            self._pass_scale_on(flat)
        out_map = self.graph.out_maps(index)[0]
        prunes_outputs = index in self._producers and (
            len(self.kept(out_map)) != sum(s.length for s in out_map)
        )
        # A layer with weights called at several places stays one layer.
        shared = self._calls[id(operation)] > 1 and bool(getattr(operation, "weights", None))
        rebuild_always = bool(
            support
            and support.rebuild_always
            and not shared
            and support.rebuild_always(flat, self.graph)
        )
        scaled = not product and any(key in self.input_scales for key in flat.inputs)
        if all(x.is_full for x in ins) and not (prunes_outputs or rebuild_always or scaled):
            return self._copy(flat, args, kwargs)
        if support is None or support.remove is None:
            raise StripError(
                f"strip_pruning: removed channels reach layer '{flat.name}' "
                f"({flat.class_name}), which has no removal rule. Exclude the layers "
                "feeding it from pruning (add_gates(exclude=[...]))."
            )
        return support.remove(self, flat, ins, args, kwargs)

    # the interface of the removal rules ---------------------------------
    def kept(self, channel_map):
        """Original indices of the channels of `channel_map` that survive."""
        return np.flatnonzero(self.graph.kept_flags(channel_map, self.keep))

    def output_keep(self, node):
        """Original indices of the node's first output channels that survive."""
        return self.kept(self.graph.out_maps(self._index[id(node)])[0])

    def build(self, node, value, weights, **changes):
        """A new layer like `node.operation` with config `changes`, called on
        `value` and given `weights` (a list in the new layer's order, or a
        function of the new layer returning one); returns `(layer, output)`."""
        layer = fresh_layer(node, **changes)
        output = layer(value)
        if callable(weights):
            weights = weights(layer)
        layer.set_weights([np.asarray(w, "float32") for w in weights])
        return layer, output

    def removed_constants(self, node, x):
        """The removed input channels of `x` (`LiveChannels` read by `node`)
        and their constants, for the layer to fold into its bias.

        Refuses constants that are unknown, and non-zero ones the layer
        cannot absorb exactly (`removed_constant_fate`, the answer by which
        `add_gates` protected such channels up front)."""
        dropped = x.dropped()
        values = x.const[dropped]
        if np.isnan(values).any():
            raise StripError(
                f"strip_pruning: layer '{node.name}' ({node.class_name}) reads removed "
                "channels whose value is not a known constant; the model cannot be "
                "stripped exactly. Exclude the layers before it from pruning."
            )
        if np.any(values != 0) and removed_constant_fate(node, self.graph.flat) != ABSORBED:
            raise StripError(
                f"strip_pruning: removed channels reach layer '{node.name}' "
                f"({node.class_name}) as non-zero constants (an activation with "
                "f(0) != 0 before a padded or transposed convolution); removing them "
                "would change the output near the borders. Exclude the producer of "
                "those channels (add_gates(exclude=[...])) or use ReLU-like activations."
            )
        return dropped, values

    def foldable(self, layer):
        """A gate on the node's first output folds into `layer`."""
        support = find_support(layer)
        fold = support.gate_fold if support is not None else None
        # A BN built without gamma (no gate follows it) takes no fold.
        if fold is not None and getattr(layer, fold.weights[0], None) is not None:
            self._folds_out[0] = FoldTarget(layer, fold)

    def inherit_fold(self, key, position, lo, hi):
        """Output `position` is live channels lo:hi of tensor `key`: a gate on
        it folds into the same layer, at those channels."""
        target = self.folds.get(key)
        if target is None:
            return
        channels = target.channels
        if channels is None:
            channels = np.arange(target.fold.channel_count(target.layer))
        self._folds_out[position] = dataclasses.replace(target, channels=channels[lo:hi])

    def call_clone(self, node, args, kwargs):
        """Calls the (weight-copied) clone of the node's layer on live values."""
        clone = self.cloner.clone(node)
        unwrap = lambda v: v.value if isinstance(v, LiveChannels) else v  # noqa: E731
        args, kwargs = keras.tree.map_structure(unwrap, (args, kwargs))
        output = clone(*args, **kwargs)
        if isinstance(clone, keras.layers.Layer):
            copy_state(node.operation, clone)
        return output

    # gates ---------------------------------------------------------------
    def _copy(self, flat, args, kwargs):
        outputs = keras.tree.flatten(self.call_clone(flat, args, kwargs))
        if isinstance(flat.operation, keras.layers.Layer):
            self.foldable(self.cloner.clone(flat))
        return [opaque(value) for value in outputs]

    def _gate(self, index, flat, x):
        in_map = self.graph.in_maps(index)[0]
        root = self.graph.groups.find(in_map[0].group)
        keep, values = self.keep[root], self.gate_values.get(root)
        if values is None:  # a protected group: gate stays open, fold as is
            values = np.asarray(keras.ops.convert_to_numpy(flat.operation.gate_values()))
        # The input may hold the group as tied copies (a grouped convolution).
        copies = x.width // len(keep)
        keep, values = np.tile(keep, copies), np.tile(values, copies)
        const = np.where(keep == 0, 0.0, x.const * values)
        if np.any(keep[x.live] == 0):
            raise StripError(
                f"strip_pruning: gate '{flat.name}' removes channels its input still holds."
            )
        if len(x.live):
            self._fold_gate(flat, values[x.live])
        return dataclasses.replace(x, const=const)

    def _scale_consumers(self, flat, layer, scale):
        blocking = reader_refusing_a_scale(self.graph.flat, self._consumers, flat.outputs[0])
        if blocking is not None or not self._consumers.get(flat.outputs[0]):
            raise StripError(
                f"strip_pruning: gate '{flat.name}' follows layer '{layer.name}' whose "
                f"fused activation '{activation_name(layer)}' does not commute "
                "with a scale, and not every layer reading the gate is a convolution "
                "or Dense (or a Multiply read by them) that could take the scale "
                "instead. Put the activation in its own layer after a BN."
            )
        self.input_scales[flat.outputs[0]] = scale

    def _pass_scale_on(self, flat):
        """A product of a scaled factor is scaled alike (a squeeze-excite
        `Multiply` after a gate that could not fold), and so is the output of
        a layer that commutes with the scale (a `Dropout`, a `ZeroPadding2D`):
        the layers reading it take the scale."""
        scales = [self.input_scales[key] for key in flat.inputs if key in self.input_scales]
        if scales:
            self.input_scales[flat.outputs[0]] = np.prod(scales, axis=0)

    def _fold_gate(self, flat, scale):
        key = flat.inputs[0]
        if key not in self.folds:
            raise StripError(
                f"strip_pruning: gate '{flat.name}' follows no layer it can be folded into."
            )
        target = self.folds.pop(key)
        if not commutes_with_scale(target.layer):
            # g * swish(z) != swish(g * z): scale the consumers' input rows.
            self._scale_consumers(flat, target.layer, scale)
            return
        if target.channels is not None:
            full = np.ones(target.fold.channel_count(target.layer))
            full[target.channels] = scale
            scale = full
        target.fold.apply(target.layer, scale)
