"""Channels kept whole because of a pattern, decided when the graph is traced.

After tracing, some groups could be pruned by the channel rules alone but
would not strip exactly: an activation not known (by object) to act on
each channel alone, a gate that cannot be folded (after a swish or a
sigmoid read by something other than a convolution), part of a group
renormalised (no gate can follow it), or a removed channel turned into a
non-zero value on its way to padding. `protect_patterns` protects them up
front, so `strip_pruning` never refuses after training, and (at
`add_gates`) warns once per group, naming the layers. Every per-layer fact
comes from the layers' records (`layer_support`); what a layer makes of a
removed channel's constant is `removed_constant_fate`, the very answer
`strip_pruning` acts on.
"""

import warnings

import numpy as np

from keras_relaxprune.layer_support import (
    BROKEN,
    CARRIED,
    LayerSupport,
    collapses_to_bias,
    find_support,
    is_multiply,
    passes_scale,
    removed_constant_fate,
    takes_producer_gate,
)
from keras_relaxprune.layer_support.activations import (
    activation_name,
    acts_per_channel,
    commutes_with_scale,
)
from keras_relaxprune.layer_support.removed_constants import VARYING, value_made_from_zero
from keras_relaxprune.layers.channel_gate import ChannelGate

_NONE = LayerSupport(channels=None)


def protect_patterns(tracer, warn=False):
    """Runs every pattern check on a traced graph; warns about new protections."""
    traced = {root: len(reasons) for root, reasons in tracer.groups.reasons.items()}
    _protect_unknown_activations(tracer)
    _protect_unfoldable_gates(tracer)
    _protect_partly_renormalised_groups(tracer)
    _protect_constants_before_padding(tracer)
    _protect_parts_that_may_all_die(tracer)
    if warn:
        _report_protections(tracer.groups, traced)


def _protect_unknown_activations(tracer):
    """A layer whose activation is not known by object to act on each
    channel alone (softmax, a custom function, even one named "relu") may
    mix its channels: they are protected, with a warning."""
    for node in tracer.flat.nodes:
        if not hasattr(node.operation, "activation") or find_support(node.operation) is None:
            continue
        if not acts_per_channel(node.operation):
            tracer.protect(
                tracer.maps.get(node.outputs[0]),
                (
                    f"{node.name}: activation '{activation_name(node.operation)}' is not known "
                    "to act on each channel alone"
                ),
            )


def _readers(flat, consumers, key):
    """The nodes reading tensor `key`, looking through channel gates."""
    result = []
    for index, _ in consumers.get(key, []):
        node = flat.nodes[index]
        if isinstance(node.operation, ChannelGate):
            result += _readers(flat, consumers, node.outputs[0])
        else:
            result.append(node)
    return result


def _protect_unfoldable_gates(tracer):
    """A gate after a layer whose fused activation does not commute with a
    scale (swish, sigmoid: g * f(z) != f(g * z)) can only be folded into the
    convolutions or Dense layers reading it, directly or through a
    `Multiply` (a squeeze-excite product passes the scale on to what reads
    it). Where another layer reads it (pooling, an `Add`), the group is
    protected up front, not refused by `strip_pruning` after training."""
    flat, consumers = tracer.flat, tracer.flat.consumers()
    producers = {index for index, _ in tracer.producers}
    for index, node in enumerate(flat.nodes):
        support = find_support(node.operation)
        if support is None or support.gate_fold is None or commutes_with_scale(node.operation):
            continue
        if index not in producers and not support.regenerates_channels:
            continue
        readers = _readers(flat, consumers, node.outputs[0])
        if len(readers) == 1 and takes_producer_gate(readers[0].operation):
            continue  # the gate goes after that reader (a BN) and folds into it
        blocking = reader_refusing_a_scale(flat, consumers, node.outputs[0])
        if blocking is not None:
            tracer.protect(
                tracer.maps.get(node.outputs[0]),
                (
                    f"'{node.name}' has activation '{activation_name(node.operation)}', so its "
                    f"gate cannot fold into it, and '{blocking.name}' "
                    f"({blocking.class_name}) cannot take the gate instead"
                ),
            )


def reader_refusing_a_scale(flat, consumers, key):
    """The first layer reading tensor `key` that cannot take a per-channel
    scale of it into its weights, or None.

    Convolutions and Dense take it into their kernel rows; a `Multiply` of
    `key` (full width) with another factor passes it on to its product, and
    a layer that commutes with the scale (dropout, zero padding: its record's
    `passes_scale`) to its output, so their own readers are asked in turn;
    such an output that is a model output takes no scale. Gates are looked
    through."""
    width = flat.tensors[key].shape[-1]
    for reader in _readers(flat, consumers, key):
        if (find_support(reader.operation) or _NONE).scales_inputs:
            continue
        if not _passes_scale_on(flat, reader, width):
            return reader
        product = reader.outputs[0]
        if product in flat.outputs or not consumers.get(product):
            return reader
        found = reader_refusing_a_scale(flat, consumers, product)
        if found is not None:
            return found
    return None


def _passes_scale_on(flat, reader, width):
    """Whether `reader`'s one output, as wide as its input, is scaled as its
    input is (a full-width factor of a product, or a scale-passing layer)."""
    if len(reader.outputs) != 1 or flat.tensors[reader.outputs[0]].shape[-1] != width:
        return False
    return is_multiply(reader.operation) or passes_scale(reader.operation)


def _protect_partly_renormalised_groups(tracer):
    """A BN or depthwise conv over part of a channel group turns that part's
    removed (zero) channels into non-zero constants, and no gate can follow
    it (gates serve whole groups): such groups are protected, unless every
    layer reading those constants takes them exactly (a 1x1 convolution or
    Dense folds them into its bias; a depthwise conv with depth_multiplier
    > 1 before a pointwise one)."""
    consumers = tracer.flat.consumers()
    for node in tracer.flat.nodes:
        support = find_support(node.operation)
        if support is None or not support.regenerates_channels:
            continue
        out_map = tracer.maps.get(node.outputs[0]) or ()
        partial = [s for s in out_map if s.group is not None and not tracer.groups.is_full(s)]
        if partial and _reader_that_cannot_absorb(tracer.flat, consumers, node.outputs[0]) is None:
            continue  # `strip_pruning` folds the constants into the readers' biases
        tracer.protect(
            partial,
            f"'{node.name}' ({node.class_name}) renormalises part of "
            "a channel group, which no gate can follow",
        )


def _protect_constants_before_padding(tracer):
    """A removed channel is 0 after its gate; a layer with f(0) != 0 (an
    activation such as sigmoid or exp, `x + c`, `ops.maximum(x, c)`,
    `ReLU(threshold=...)`, a `Rescaling` offset, a `Resizing` that pads with
    a non-zero fill) makes it a non-zero constant. Dense layers and 1x1 or
    'valid' convolutions fold such a constant into their bias, but a padded
    or transposed convolution, or padding, sees it differ at the borders:
    where one can reach such a reader, the group is protected up front, not
    refused by `strip_pruning` after training.

    One pass in graph order: each node is asked what it makes of a removed
    channel (`value_made_from_zero`); from each node that turns it into a
    value, the constant is followed through the layers that carry it
    (`removed_constant_fate`) to the first that cannot take it."""
    flat, consumers = tracer.flat, tracer.flat.consumers()
    for node in flat.nodes:
        in_maps = [tracer.maps.get(key) or () for key in node.inputs]
        traced = {
            key
            for key, in_map in zip(node.inputs, in_maps)
            if any(s.group is not None for s in in_map)
        }
        made = value_made_from_zero(node, flat, traced)
        if made is None:
            continue
        # A value that differs between positions (a padding fill) is no
        # constant any reader could take; a uniform one is, except at padding.
        blocking = (
            node
            if made == VARYING
            else _reader_that_cannot_absorb(flat, consumers, node.outputs[0])
        )
        for in_map in in_maps:
            if blocking is node:
                tracer.protect(
                    in_map,
                    (
                        f"'{node.name}' ({node.class_name}) writes values of its own where a "
                        "removed channel is 0, so the channel is no constant it could drop"
                    ),
                )
            elif blocking is not None:
                tracer.protect(
                    in_map,
                    (
                        f"'{node.name}' ({node.class_name}) turns a removed channel's 0 into "
                        f"another value, which '{blocking.name}' ({blocking.class_name}) "
                        "cannot take exactly (padding, a concatenation along space, or a "
                        "barrier)"
                    ),
                )


def _protect_parts_that_may_all_die(tracer):
    """A layer with a kernel that reads only parts of channel groups (slices
    or splits: no group whole, no fixed channel) may lose every input while
    each group keeps channels elsewhere; it then emits constants (its bias,
    or what a BN after it makes of 0). Where those can reach a reader that
    cannot take a constant exactly (padding), the parts are protected up
    front, not refused by `strip_pruning` after training."""
    flat, consumers = tracer.flat, tracer.flat.consumers()
    for node in flat.nodes:
        if not collapses_to_bias(node.operation):
            continue
        in_map = tracer.maps.get(node.inputs[0]) or ()
        if not in_map or _keeps_a_live_input(tracer.groups, in_map):
            continue
        blocking = _reader_that_cannot_absorb(flat, consumers, node.outputs[0])
        if blocking is not None:
            tracer.protect(
                in_map,
                (
                    f"'{node.name}' ({node.class_name}) reads only parts of channel groups; "
                    "with all of them removed it would emit constants, which "
                    f"'{blocking.name}' ({blocking.class_name}) cannot take exactly "
                    "(padding, a concatenation along space, or a barrier)"
                ),
            )


def _keeps_a_live_input(groups, in_map):
    """Whether some input channel always stays: a fixed channel, or a group
    read whole (a group never loses its last channel)."""
    covered = {}
    for segment in in_map:
        if segment.group is None:
            return True
        root = groups.find(segment.group)
        mask = covered.setdefault(root, np.zeros(groups.size[root], bool))
        mask[segment.start : segment.stop] = True
    return any(mask.all() for mask in covered.values())


def _reader_that_cannot_absorb(flat, consumers, key, seen=None):
    """The first layer downstream of `key` (through layers that carry a
    constant on) that cannot take a non-zero constant exactly, or None.

    Layers that absorb it (into their bias) end the search; a layer that
    breaks it (padding, a join along space), or a barrier (which has no
    rule to take it), is the answer."""
    seen = set() if seen is None else seen
    for reader in _readers(flat, consumers, key):
        if id(reader) in seen:
            continue
        seen.add(id(reader))
        fate = removed_constant_fate(reader, flat)
        if fate in (BROKEN, None):
            return reader
        if fate != CARRIED:
            continue
        for out_key in reader.outputs:
            found = _reader_that_cannot_absorb(flat, consumers, out_key, seen)
            if found is not None:
                return found
    return None


def _report_protections(groups, traced):
    """Warns about each group protected by a pattern (not a barrier): a gate
    that could not be folded or a constant that could not be removed exactly."""
    for root, reasons in groups.reasons.items():
        known = traced.get(root, 0)
        if known or len(reasons) == known:
            continue  # nothing new, or protected already (the output, a barrier)
        producers = groups.producers[root]
        warnings.warn(
            f"add_gates: the channels of '{producers[0]}'"
            + (f" (+{len(producers) - 1} tied)" if len(producers) > 1 else "")
            + f" are kept whole: {reasons[known]}. To prune them, change that layer "
            "(e.g. a ReLU-like activation, padding='valid') or pass exclude=[...] to "
            "silence this.",
            stacklevel=3,
        )
