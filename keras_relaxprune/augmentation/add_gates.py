"""`add_gates`: network augmentation with relaxed channel gates."""

import keras

from keras_relaxprune import arguments
from keras_relaxprune.cost.count import has_unknown_spatial_size
from keras_relaxprune.errors import (
    InvalidArgumentError,
    UnknownSpatialSizeError,
    UnsupportedLayerError,
)
from keras_relaxprune.graph.flat_graph import as_functional, rebuild
from keras_relaxprune.graph.layer_copies import LayerCloner, safe_name
from keras_relaxprune.graph.names import NewLayerNames, graph_names, unique_name
from keras_relaxprune.graph.tracing import analyze, require_prunable
from keras_relaxprune.latency.latency_table import table_for_gating
from keras_relaxprune.layer_support import find_support, takes_producer_gate
from keras_relaxprune.layers.channel_gate import INITIAL_GATE, INITIAL_SCALE, ChannelGate
from keras_relaxprune.layers.pruning_budget import METRICS, PruningBudget, link_budget


def add_gates(
    model,
    metric="flops",
    exclude=None,
    strict=False,
    initial_gate=INITIAL_GATE,
    initial_scale=INITIAL_SCALE,
    input_shape=None,
    latency_table=None,
):
    """Returns a copy of `model` with a `ChannelGate` after every prunable unit.

    The graph is walked to find the channel groups (channels that must be
    removed together: both sides of a residual `Add`, a depthwise conv's
    input and output, the inputs of a `Concatenate`). Each prunable group
    gets one `ChannelGate`, called after each layer that produces its
    channels: after the BatchNormalization that follows a convolution, or
    right after the layer when no BatchNormalization follows (conv -> BN ->
    gate -> activation). Model inputs and outputs are never pruned. The new
    model has copied weights: `model` itself is untouched. Nested functional
    models are inlined.

    Args:
        model: a Keras 3 functional or Sequential model.
        metric: `"flops"` (default), `"params"` or `"latency"`, the cost that
            `PruningCallback` budgets unless told otherwise. Both costs are
            built either way.
        exclude: layer names, or a predicate `f(layer) -> bool`: the output
            channels of those layers are never pruned.
        strict: raise `UnsupportedLayerError` when a layer with no channel
            rule blocks pruning, instead of protecting its channels with a
            warning.
        initial_gate: starting value of every gate. Defaults to 0.99.
        initial_scale: starting gate temperature (inverse). Defaults to 50.
        input_shape: the input shape (without batch; a list for several
            inputs) at which FLOPs are budgeted and counted, required when
            the model's spatial size is unknown (`keras.Input((None, None,
            3))`, keras-hub's default): the size you train at. Stored in the
            gated model, so `count_flops(gated)` uses it too.
        latency_table: a `LatencyTable` (or a latency target, measured into
            a new one), required by `metric="latency"`: the model's layers
            are profiled at the widths the budget can reach (read from the
            table's cache when measured before) and the table is saved in
            the gated model. Defaults to None (no latency cost).

    Returns:
        A new functional `keras.Model`, uncompiled.

    Example:

    ```python
    gated = krp.add_gates(model, metric="flops")
    gated.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    gated.fit(x, y, epochs=10, callbacks=[krp.PruningCallback(target=0.5)])
    ```
    """
    model, exclude, strict, initial_gate, initial_scale, input_shape = _check_arguments(
        model, metric, exclude, strict, initial_gate, initial_scale, input_shape
    )
    model = as_functional(model)
    _require_spatial_size(model, input_shape)
    graph = analyze(model, exclude=exclude, strict=strict, warn=True)
    _refuse_unstrippable_layers(graph)
    require_prunable(graph, model.name)
    # Names of the layers added, free in the model (a user layer may be
    # called "pruning_budget" or "conv2d_gate").
    taken = graph_names(graph.flat)
    budget = PruningBudget(
        metric=metric,
        cost_input_shape=_shape_list(input_shape),
        latency_table=table_for_gating(latency_table, metric, model, graph, input_shape),
        name=unique_name("pruning_budget", taken),
    )
    sites = _gate_sites(graph, initial_gate, initial_scale, taken)
    inner = _inner_gated_layers(graph, initial_gate, initial_scale, taken)
    gated = _gated_copy(graph, sites, budget, name=f"{model.name}_gated", inner=inner)
    link_budget(gated)
    return gated


def _require_spatial_size(model, input_shape):
    """FLOPs need a spatial size: the model's own, or `input_shape`."""
    if input_shape is None and has_unknown_spatial_size(model):
        raise UnknownSpatialSizeError(
            f"add_gates: model '{model.name}' has inputs of unknown spatial size "
            f"{[tuple(x.shape) for x in model.inputs]}; FLOPs need one. Pass "
            "`add_gates(model, input_shape=(H, W, C))` with the size you train at."
        )


def _gated_copy(graph, sites, budget, name, inner=None):
    """The graph rebuilt with copied layers, each gate site's gate after its
    node, the layers of `inner` (node index -> layer gating channels inside
    it) in place of theirs, and the budget layer on the first input."""
    cloner, names, inner = LayerCloner(), NewLayerNames(graph.flat), inner or {}

    def call_node(index, flat, args, kwargs):
        layer = inner[index] if index in inner else cloner.clone(flat)
        outputs = layer(*args, **kwargs)
        if index in sites:
            outputs = sites[index](outputs)
        names.settle(index, keras.tree.flatten(outputs))
        return outputs

    gated = rebuild(
        graph.flat,
        call_node,
        name=name,
        wrap_input=lambda position, tensor: budget(tensor) if position == 0 else tensor,
    )
    cloner.copy_weights()
    for index, layer in inner.items():
        # The gated copy holds the original's weights, then its gate's.
        original = graph.flat.nodes[index].operation
        layer.set_weights(original.get_weights() + layer.get_weights()[len(original.weights) :])
    return gated


def _inner_gated_layers(graph, initial_gate, initial_scale, taken):
    """Node index -> a copy of its layer that gates the prunable channels
    inside it (attention heads), by its record's `inner_gated`."""
    layers = {}
    for index, channel_map in graph.inner_maps.items():
        if graph.groups.is_protected(channel_map[0].group):
            continue
        flat = graph.flat.nodes[index]
        layers[index] = find_support(flat.operation).inner_gated(
            flat,
            name=unique_name(safe_name(flat.name) + "_gate", taken),
            initial_gate=initial_gate,
            initial_scale=initial_scale,
        )
    return layers


def _shape_list(input_shape):
    """`input_shape` as plain lists (saved in the budget layer's config)."""
    if input_shape is None:
        return None
    if isinstance(input_shape[0], (list, tuple)):
        return [[int(size) for size in shape] for shape in input_shape]
    return [int(size) for size in input_shape]


def _check_arguments(model, metric, exclude, strict, initial_gate, initial_scale, input_shape):
    model = as_functional(arguments.model("add_gates", "model", model))
    arguments.choice("add_gates", "metric", metric, METRICS)
    if any(isinstance(layer, ChannelGate) for layer in getattr(model, "layers", [])):
        raise InvalidArgumentError(
            f"add_gates: model '{model.name}' already has gates (it was made by "
            "add_gates); pass the original model, or train this one as it is."
        )
    return (
        model,
        arguments.layer_names("add_gates", "exclude", exclude, model),
        arguments.boolean("add_gates", "strict", strict),
        arguments.real(
            "add_gates",
            "initial_gate",
            initial_gate,
            "a gate value strictly between 0 and 1 (default 0.99)",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        ),
        arguments.real(
            "add_gates",
            "initial_scale",
            initial_scale,
            "a positive inverse temperature (default 50)",
            low=0.0,
            low_open=True,
        ),
        arguments.input_shape("add_gates", "input_shape", input_shape, model),
    )


def _refuse_unstrippable_layers(graph):
    """Layers whose weights stripping cannot slice exactly, refused by name."""
    for node in graph.flat.nodes:
        layer, where = node.operation, f"layer '{node.name}' ({node.class_name})"
        if getattr(layer, "quantization_mode", None):
            raise UnsupportedLayerError(
                f"add_gates: {where} is quantized ({layer.quantization_mode}); its "
                "integer kernel cannot be sliced exactly. Prune the float model, "
                "then quantize the stripped one (`small.quantize(...)`)."
            )
        if getattr(layer, "lora_enabled", False):
            raise UnsupportedLayerError(
                f"add_gates: {where} has LoRA enabled; its low-rank factors cannot "
                "be sliced with its kernel. Prune before `enable_lora`, or rebuild the "
                "layer with its merged kernel (`layer.kernel`)."
            )
        if getattr(layer, "data_format", None) == "channels_first" and (
            find_support(layer) is not None
        ):
            raise UnsupportedLayerError(
                f"add_gates: {where} uses data_format='channels_first'; channels "
                "are pruned on the last axis. Build the model channels_last "
                "(`keras.config.set_image_data_format('channels_last')`)."
            )


def _gate_sites(graph, initial_gate, initial_scale, taken):
    """Node index -> the ChannelGate to call on that node's output.

    A gate follows every layer that can make a pruned channel non-zero
    again: the producers (bias), depthwise convolutions (bias) and every
    BatchNormalization (beta) on the group's path. When such a layer feeds
    only a BatchNormalization, the gate goes after that instead. So a
    pruned channel is exactly zero after every gate, and stays zero through
    activations with f(0) = 0. Each gate is named after its group's first
    producer, with a name not in `taken` (added to it).
    """
    consumers = graph.flat.consumers()
    gates, sites = {}, {}

    def gate_of(root):
        if root not in gates:
            name = unique_name(safe_name(graph.groups.producers[root][0]) + "_gate", taken)
            gates[root] = ChannelGate(
                initial_gate, initial_scale, name=name, channels=graph.groups.size[root]
            )
        return gates[root]

    for index, flat in enumerate(graph.flat.nodes):
        if _feeds_only_batch_norm(graph, index, consumers):
            continue
        root = _gated_group(graph, index, flat)
        if root is not None:
            sites[index] = gate_of(root)
        elif _regenerates_channels(flat.operation):
            segments = _gated_segments(graph, index)
            if segments:
                sites[index] = _SegmentGates(segments, gate_of)
    return sites


def _gated_segments(graph, index):
    """(start, stop, root or None) of a multi-group map with a prunable part."""
    out_map = graph.out_maps(index)[0]
    if out_map is None or len(out_map) < 2:
        return None
    result, offset, any_gated = [], 0, False
    for segment in out_map:
        root = None
        if segment.group is not None and graph.groups.is_full(segment):
            root = graph.groups.find(segment.group)
            root = None if graph.groups.is_protected(root) else root
        result.append((offset, offset + segment.length, root))
        any_gated = any_gated or root is not None
        offset += segment.length
    return result if any_gated else None


class _SegmentGates:
    """Gates each group's part of a concatenated tensor after a BN over it.

    DenseNet-style BN over a concatenation would turn pruned (zero) channels
    into constants; gating each part again after the BN keeps them at zero.
    The slices and the concatenation vanish in `strip_pruning`.
    """

    def __init__(self, segments, gate_of):
        self.parts = [
            (start, stop, gate_of(root) if root is not None else None)
            for start, stop, root in segments
        ]

    def __call__(self, tensor):
        pieces = []
        for start, stop, gate in self.parts:
            piece = tensor[..., start:stop]
            pieces.append(gate(piece) if gate is not None else piece)
        return keras.ops.concatenate(pieces, axis=-1)


def _regenerates_channels(operation):
    """A removed (zero) channel may leave it non-zero (bias, beta)."""
    support = find_support(operation)
    return support is not None and support.regenerates_channels


def _gated_group(graph, index, flat):
    """The prunable group whose channels this node (re)creates, if any."""
    is_producer = any(i == index for i, _ in graph.producers)
    if not is_producer and not _regenerates_channels(flat.operation):
        return None
    out_map = graph.out_maps(index)[0]
    # The group whole, once or as tied copies (a grouped convolution's output).
    root = None if out_map is None else graph.groups.whole_group(out_map)
    if root is None:
        return None
    return None if graph.groups.is_protected(root) else root


def _feeds_only_batch_norm(graph, index, consumers):
    """Read by one layer alone that takes its gate (a BatchNormalization)."""
    users = consumers.get(graph.flat.nodes[index].outputs[0], [])
    return len(users) == 1 and takes_producer_gate(graph.flat.nodes[users[0][0]].operation)
