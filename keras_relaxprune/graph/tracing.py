"""Channel groups of a functional model, found by walking its graph.

`analyze(model)` traces every node with the `channels` rule of its
`LayerSupport` record (`layer_support/`) and returns a
`ChannelGraph`: the channel map of every tensor, the groups of channels that
must be removed together, which groups are protected (and why), and, on a
gated model, which `ChannelGate` serves each group.
"""

import collections
import warnings

from keras_relaxprune.errors import NothingToPruneError, UnsupportedLayerError
from keras_relaxprune.graph.channel_graph import Barrier, ChannelGraph
from keras_relaxprune.graph.channel_maps import (
    ChannelGroups,
    Segment,
    aligned_pieces,
    concat_maps,
    fixed_map,
    map_length,
    tiles_of,
)
from keras_relaxprune.graph.flat_graph import flatten
from keras_relaxprune.graph.protection import protect_patterns
from keras_relaxprune.layer_support import find_support, is_multiply, unsupported_reason
from keras_relaxprune.layers.channel_gate import ChannelGate


class _Tracer:
    def __init__(self, flat, exclude):
        self.flat = flat
        self.exclude = exclude
        self.groups = ChannelGroups()
        self.maps = {}
        self.producers = []
        self.barriers = []
        self.gate_calls = []
        self.inner_maps = {}
        self.index = None

    def shape(self, key):
        return tuple(self.flat.tensors[key].shape)

    def channels(self, key):
        shape = self.shape(key)
        return shape[-1] if len(shape) >= 2 else None

    def out_channels(self, flat):
        return self.channels(flat.outputs[0])

    def new_group(self, flat, channels):
        group = self.groups.new(channels, flat.name)
        self.producers.append((self.index, group))
        if self.exclude(flat.operation):
            self.groups.protect(group, f"'{flat.name}' is excluded")
        return (Segment(group, 0, channels),)

    def new_inner_group(self, flat, channels, gate=None):
        """Starts a group of channels inside the node (a layer's attention
        heads), served by `gate` (a `ChannelGate` the layer holds) if any."""
        channel_map = self.new_group(flat, channels)
        self.inner_maps[self.index] = channel_map
        if gate is not None:
            self.gate_calls.append((channel_map[0].group, gate))
        return channel_map

    def protect(self, channel_map, reason):
        for segment in channel_map or ():
            if segment.group is not None:
                self.groups.protect(segment.group, reason)

    def barrier(self, flat, reason):
        self.barriers.append(Barrier(flat.name, flat.class_name, reason))
        for key in flat.inputs:
            self.protect(self.maps.get(key), f"reaches barrier {self.barriers[-1]}")
        return [self._fixed(key) for key in flat.outputs]

    def _fixed(self, key):
        channels = self.channels(key)
        return None if channels is None else fixed_map(channels)

    def tie(self, flat, in_maps):
        width = max(map_length(m) for m in in_maps)
        tied = [m for m in in_maps if map_length(m) == width]
        broadcast = [m for m in in_maps if map_length(m) == 1 < width]
        if len(tied) + len(broadcast) != len(in_maps):
            return self.barrier(flat, "inputs of different widths")[0]
        copies = max(self._copies(m) for m in tied)
        if copies > 1 and len(tied) > 1:
            # One input repeats a group (a grouped convolution's output):
            # the others must repeat alike for their channels to line up.
            tied = [self.tile(flat, m, copies) for m in tied]
            tied = [self.groups.current(m) for m in tied]  # after any later split
        for narrow in broadcast:  # one channel spread over all: keep it
            self.protect(narrow, f"'{flat.name}' broadcasts it over {width} channels")
        if broadcast and not is_multiply(flat.operation):
            # A removed channel would still hold the broadcast value (a
            # product keeps it zero whatever it meets).
            for wide in tied:
                self.protect(wide, f"'{flat.name}' adds a broadcast channel to it")
        for other in tied[1:]:
            for piece_a, piece_b in aligned_pieces(tied[0], other):
                self._tie_pieces(flat, piece_a, piece_b)
        return tied[0]

    def _tie_pieces(self, flat, a, b, reason=None):
        groups = self.groups
        if a.group is not None and b.group is not None:
            same = groups.find(a.group) == groups.find(b.group)
            if same and (a.start, a.stop) == (b.start, b.stop):
                return
            if not same and groups.is_full(a) and groups.is_full(b):
                groups.union(a.group, b.group)
                return
        elif a.group is None and b.group is None:
            return  # fixed channels are kept everywhere
        self.protect((a, b), reason or f"'{flat.name}' ties channels that do not line up")

    def tile(self, flat, channel_map, count, reason=None):
        """Ties `channel_map` into `count` tiles of equal width, channel `j`
        of every tile with channel `j` of the first.

        A group that spans several whole tiles is split into tied copies of
        a narrower group (`ChannelGroups.split`); channels that still do not
        line up across tiles are protected, with a reason naming `flat`.

        Args:
            flat: the node that requires the tiling (for messages).
            channel_map: the map to tile; its width must divide by `count`.
            count: the number of tiles (a grouped convolution's `groups`).
            reason: why channels that do not line up are protected.

        Returns:
            `channel_map` rewritten after any split.
        """
        channel_map = self.groups.current(channel_map)
        width = map_length(channel_map) // count
        offset = 0
        for segment in channel_map:
            if (
                segment.length > width
                and segment.group is not None
                and self.groups.is_full(segment)
                and offset % width == 0
                and segment.length % width == 0
            ):
                channel_map = self._split(segment.group, segment.length // width, channel_map)
            offset += segment.length
        pieces = tiles_of(channel_map, count)
        for other in pieces[1:]:
            for piece_a, piece_b in aligned_pieces(pieces[0], other):
                self._tie_pieces(flat, piece_a, piece_b, reason)
        return concat_maps(pieces)

    def _split(self, group, parts, channel_map):
        """Splits `group` into `parts` tied copies and rewrites every traced
        map (and `channel_map`, returned) in terms of the new group."""
        self.groups.split(group, parts)
        for key, old_map in self.maps.items():
            self.maps[key] = self.groups.current(old_map)
        return self.groups.current(channel_map)

    def _copies(self, channel_map):
        """How many identical tiles `channel_map` consists of (1 if none)."""
        find = self.groups.find
        resolved = [
            (None if s.group is None else find(s.group), s.start, s.stop) for s in channel_map
        ]
        if not any(root is not None for root, _, _ in resolved):
            return 1
        for count in range(len(resolved), 1, -1):
            size = len(resolved) // count
            if size * count == len(resolved) and all(
                resolved[i] == resolved[i % size] for i in range(len(resolved))
            ):
                return count
        return 1


def analyze(model, exclude=None, strict=False, warn=False):
    """Traces channel groups through `model` (functional or Sequential).

    Args:
        model: a Keras functional or Sequential model, gated or not.
        exclude: layer names, or a predicate `f(layer) -> bool`, whose
            output channels must not be pruned.
        strict: raise `UnsupportedLayerError` instead of protecting the
            channels that reach a layer with no channel rule.
        warn: warn about each layer with no channel rule that protects
            channels. Only `add_gates` sets it, so a user sees each such
            warning once, not again from every count, report or strip.

    Returns:
        A `ChannelGraph`.
    """
    flat = flatten(model)
    tracer = _Tracer(flat, _exclusion_predicate(exclude))
    for key in flat.inputs:
        tracer.maps[key] = tracer._fixed(key)
    calls = collections.Counter(id(node.operation) for node in flat.nodes)
    for index, node in enumerate(flat.nodes):
        tracer.index = index
        if _is_shared(node.operation, calls):
            for key, out_map in zip(
                node.outputs,
                tracer.barrier(
                    node,
                    f"called {calls[id(node.operation)]} times: one set of "
                    "weights cannot be sliced per call",
                ),
            ):
                tracer.maps[key] = out_map
            continue
        _trace_node(tracer, node)
    for key in flat.outputs:
        tracer.protect(tracer.maps.get(key), "model output")
    protect_patterns(tracer, warn)
    gates = {}
    for group, gate in tracer.gate_calls:
        gates[tracer.groups.find(group)] = gate
    graph = ChannelGraph(
        flat,
        tracer.groups,
        tracer.maps,
        tracer.producers,
        gates,
        tracer.barriers,
        tracer.inner_maps,
    )
    _report_barriers(graph, strict, warn)
    return graph


def _trace_node(tracer, node):
    in_maps = [tracer.maps.get(key) for key in node.inputs]
    support = find_support(node.operation)
    if support is None:
        out_maps = tracer.barrier(node, unsupported_reason(node.operation))
    elif any(m is None for m in in_maps) or not in_maps:
        out_maps = tracer.barrier(node, "input with unknown channel count")
    else:
        out_maps = support.channels(tracer, node, in_maps)
        if not _widths_match(tracer, node, out_maps):
            out_maps = tracer.barrier(node, "output width the rule cannot explain")
    if isinstance(node.operation, ChannelGate):
        # A gate reads its group whole, once or as tied copies.
        tracer.gate_calls.append((in_maps[0][0].group, node.operation))
    for key, out_map in zip(node.outputs, out_maps):
        tracer.maps[key] = out_map


def _is_shared(operation, calls):
    """A layer with weights called more than once (gates excepted: one
    gate serves every producer of its group)."""
    return (
        calls[id(operation)] > 1
        and not isinstance(operation, ChannelGate)
        and bool(getattr(operation, "weights", None))
    )


def _widths_match(tracer, node, out_maps):
    """Guards against a rule that returned a map of the wrong width."""
    return all(
        out_map is None or map_length(out_map) == tracer.shape(key)[-1]
        for key, out_map in zip(node.outputs, out_maps)
    )


def _exclusion_predicate(exclude):
    if exclude is None:
        return lambda layer: False
    if callable(exclude):
        return exclude
    if isinstance(exclude, str):
        exclude = [exclude]
    names = set(exclude)
    return lambda layer: getattr(layer, "name", None) in names


def _report_barriers(graph, strict, warn):
    """Warns about (or, strict, refuses) barriers that protect channels."""
    # A layer called at several places is one barrier per call: named once.
    unique = {str(b): b for b in graph.barriers}.values()
    harmful = [b for b in unique if _protects_something(graph, b)]
    if harmful and strict:
        first = harmful[0]
        raise UnsupportedLayerError(
            f"Layer {first} stops channel tracing, so the channels reaching it "
            "cannot be pruned. Pass `exclude=[...]` with the layers that feed "
            "it, or use strict=False to protect those channels and go on."
        )
    for barrier in harmful if warn else ():
        warnings.warn(
            f"keras_relaxprune: layer {barrier}; channels reaching it are protected (not pruned).",
            stacklevel=4,  # the line that called add_gates
        )


def _protects_something(graph, barrier):
    needle = f"reaches barrier {barrier}"
    return any(needle in r for reasons in graph.groups.reasons.values() for r in reasons)


def require_prunable(graph, model_name):
    """Raises `NothingToPruneError` when no group can lose a channel."""
    if graph.prunable_groups():
        return
    detail = "; ".join(sorted({r for rs in graph.groups.reasons.values() for r in rs}))
    raise NothingToPruneError(
        f"Model '{model_name}' has no prunable channel: every channel group is "
        f"protected ({detail or 'no convolution or dense layer'}). Remove "
        "layers from `exclude`, or replace the barrier layers named above."
    )
