"""TimeDistributed: the wrapped layer, applied to every step of a sequence.

A `TimeDistributed(Conv2D(...))` of a video model computes, step by step,
what its Conv2D computes on one frame: channel `c` of its output is channel
`c` of the wrapped layer's. Its channels are therefore traced, counted and
removed by the wrapped layer's own record, with the time axis taken off the
shapes that record reads, and the smaller wrapped layer is wrapped again.

Only wrapped layers whose records need nothing else are followed:
convolutions and Dense (producers of prunable channels; a gate after one
folds into the wrapped layer), pooling, dropout and noise, and Flatten.
Any other wrapped layer, or a subclass that overrides `call`, leaves the
TimeDistributed a barrier.
"""

import dataclasses
import math

import numpy as np
from keras import layers

from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.layer_copies import fresh_layer, safe_name
from keras_relaxprune.layer_support.activations import activation_name, commutes_with_scale
from keras_relaxprune.layer_support.convolution import CONVS
from keras_relaxprune.layer_support.record import find_support, register_layer
from keras_relaxprune.layer_support.removed_constants import BROKEN, CARRIED
from keras_relaxprune.layer_support.spatial import POOLING, REGULARIZATION

PRODUCERS = (*CONVS, layers.Dense)
# Layers that keep a removed channel's 0 (no activation layer: ReLU's
# threshold alone may turn it into another value).
PASSING = (*POOLING, *REGULARIZATION, layers.Flatten)


def wrapped_support(layer):
    """The record of the layer `layer` (a TimeDistributed) wraps, or None
    when that layer is not one this record follows."""
    inner = getattr(layer, "layer", None)
    if not isinstance(inner, PRODUCERS + PASSING):
        return None
    return find_support(inner)


def is_wrapped_producer(layer):
    return isinstance(getattr(layer, "layer", None), PRODUCERS)


class _StepTracer:
    """The tracer as the wrapped layer's rule sees it: one step's shapes,
    and every message, group and exclusion under the TimeDistributed."""

    def __init__(self, tracer, outer):
        self._tracer, self._outer = tracer, outer

    def __getattr__(self, name):
        return getattr(self._tracer, name)

    def shape(self, key):
        shape = self._tracer.shape(key)
        return (shape[0], *shape[2:])

    def new_group(self, flat, channels):
        return self._tracer.new_group(self._outer, channels)

    def barrier(self, flat, reason):
        return self._tracer.barrier(self._outer, reason)

    def tile(self, flat, channel_map, count, reason=None):
        return self._tracer.tile(self._outer, channel_map, count, reason)

    def tie(self, flat, in_maps):
        return self._tracer.tie(self._outer, in_maps)


class _StepStripper:
    """The stripper as the wrapped layer's rule sees it: a layer it builds
    is wrapped in a new TimeDistributed; a gate folds into the wrapped one."""

    def __init__(self, stripper, outer):
        self._stripper, self._outer = stripper, outer

    def __getattr__(self, name):
        return getattr(self._stripper, name)

    def output_keep(self, node):
        return self._stripper.output_keep(self._outer)

    def removed_constants(self, node, x):
        return self._stripper.removed_constants(self._outer, x)

    def call_clone(self, node, args, kwargs):
        return self._stripper.call_clone(self._outer, args, kwargs)

    def build(self, node, value, weights, **changes):
        inner = fresh_layer(node, **changes)
        outer = self._outer
        name = safe_name(outer.name) if outer.scope else outer.operation.name
        output = layers.TimeDistributed(inner, name=name)(value)
        if callable(weights):
            weights = weights(inner)
        inner.set_weights([np.asarray(w, "float32") for w in weights])
        return inner, output


def _inner_node(node):
    return dataclasses.replace(node, operation=node.operation.layer)


def wrapped_channels(tracer, node, in_maps):
    support = wrapped_support(node.operation)
    if support is None:
        inner = getattr(node.operation, "layer", None)
        return tracer.barrier(
            node,
            f"wraps {type(inner).__name__}, whose channels "
            "are not followed through TimeDistributed",
        )
    out_maps = support.channels(_StepTracer(tracer, node), _inner_node(node), in_maps)
    inner = node.operation.layer
    if is_wrapped_producer(node.operation) and not commutes_with_scale(inner):
        # Its gate could only fold into the readers' kernels, which this
        # record does not offer: keep the channels rather than refuse later.
        tracer.protect(
            out_maps[0],
            f"{node.name}: activation '{activation_name(inner)}' "
            "of a wrapped layer does not commute with its gate",
        )
    return out_maps


def wrapped_cost(shapes, layer, cin, cout):
    """The wrapped layer's cost: its rules count positions over every axis
    between batch and channels, the time steps included."""
    support = wrapped_support(layer)
    if support is None or support.cost is None:
        return sum(math.prod(w.shape) for w in layer.weights), 0, 0
    return support.cost(shapes, layer.layer, cin, cout)


def remove_wrapped(stripper, node, ins, args, kwargs):
    support = wrapped_support(node.operation)
    if support is None or support.remove is None:  # a barrier: its channels are kept
        raise StripError(
            f"strip_pruning: removed channels reach layer '{node.name}' "
            f"({node.class_name}), whose wrapped layer has no removal rule. Exclude "
            "the layers feeding it from pruning (add_gates(exclude=[...]))."
        )
    return support.remove(_StepStripper(stripper, node), _inner_node(node), ins, args, kwargs)


def _rebuild_producer(node, graph):
    """A wrapped producer is always rebuilt: the gate after it folds into
    the new wrapped layer (a plain copy offers it none)."""
    return is_wrapped_producer(node.operation)


def _constant_input(layer, rank):
    """A wrapped convolution or Dense takes no removed channel's constant
    (the pass-through layers carry it, as unwrapped)."""
    return BROKEN if is_wrapped_producer(layer) else CARRIED


register_layer(
    layers.TimeDistributed,
    channels=wrapped_channels,
    cost=wrapped_cost,
    remove=remove_wrapped,
    rebuild_always=_rebuild_producer,
    collapses_to_bias=True,
    constant_input=_constant_input,
)
