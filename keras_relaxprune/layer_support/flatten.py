"""Flatten: a map of positions and channels becomes one vector of features.

On a channels-last map of P positions and C channels, feature `p * C + c`
is channel `c` at position `p`. The output's channel map is therefore the
input's map tiled once per position (tied copies, as after a grouped
convolution): removing channel `c` of a group removes feature `p * C + c`
at every position, and the Dense reading the vector loses those rows of its
kernel (its own removal rule slices the rows of the live features). A
removed channel's constant is the same constant at every position.

The positions must be known when the graph is traced; with an unknown
spatial size (or a channels-first Flatten) the layer stays a barrier.
"""

import numpy as np
from keras import layers

from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.elementwise import free
from keras_relaxprune.layer_support.record import register_layer


def flattened_positions(shape):
    """Positions a Flatten lays side by side for an input of `shape`
    (batch first, channels last); None when a spatial size is unknown."""
    spatial = tuple(shape)[1:-1]
    if any(size is None for size in spatial):
        return None
    return int(np.prod(spatial, dtype="int64"))


def flatten_channels(tracer, node, in_maps):
    """The input's channel map once per position."""
    if getattr(node.operation, "data_format", "channels_last") == "channels_first":
        return tracer.barrier(node, "channels_first data format")
    positions = flattened_positions(tracer.shape(node.inputs[0]))
    if positions is None:
        return tracer.barrier(node, "flattens positions of unknown number into channels")
    return [tuple(in_maps[0]) * positions]


def tiled_channels(x, positions):
    """`x` (`LiveChannels` of C channels) flattened over `positions`: live
    feature `p * C + c` for each live channel `c`, constants repeated."""
    width = x.width
    live = (np.arange(positions)[:, None] * width + x.live[None, :]).ravel()
    return live, np.tile(x.const, positions)


def remove_flatten(stripper, node, ins, args, kwargs):
    """The same Flatten on the live channels: its output holds, position by
    position, the live channels in order, which is `tiled_channels`."""
    (x,) = ins
    # Positions from the widths, not the input's rank: the same rule then
    # serves a Flatten wrapped in TimeDistributed (one more leading axis).
    positions = stripper.graph.flat.tensors[node.outputs[0]].shape[-1] // x.width
    live, const = tiled_channels(x, positions)
    value = None if x.is_constant else stripper.call_clone(node, args, kwargs)
    return [LiveChannels(value, live, const)]


# Keras counts no weights and no FLOPs for a Flatten (a reshape).
register_layer(layers.Flatten, channels=flatten_channels, cost=free, remove=remove_flatten)
