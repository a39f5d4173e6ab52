"""Raw ops that take part of the channels: `ops.split`, `x[..., a:b]`."""

import numpy as np

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.graph.channel_maps import slice_map
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.record import register_layer


def _split_sizes(shape_of, node):
    sizes = [shape_of(key)[-1] for key in node.outputs]
    return [int(v) for v in np.cumsum([0] + sizes)]


def split_channels(tracer, node, in_maps):
    rank = len(tracer.shape(node.inputs[0]))
    if node.operation.axis not in (-1, rank - 1):
        return [in_maps[0] for _ in node.outputs]
    offsets = _split_sizes(tracer.shape, node)
    return [slice_map(in_maps[0], lo, hi) for lo, hi in zip(offsets, offsets[1:])]


def get_item_channels(tracer, node, in_maps):
    shape = tracer.shape(node.inputs[0])
    channel_slice = _channel_slice(node.call_args[1], len(shape))
    if channel_slice is None:
        return tracer.barrier(node, "indexing that is not a plain slice")
    if channel_slice == "all":
        return [in_maps[0]]
    start, stop, step = channel_slice.indices(shape[-1])
    if step != 1:
        return tracer.barrier(node, "strided slice of channels")
    return [slice_map(in_maps[0], start, stop)]


def normalized_key(key, rank):
    """`key` as a tuple of one slice per axis, or None if not plain slices."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is None or not isinstance(k, (slice, type(Ellipsis))) for k in key):
        return None
    if Ellipsis in key:
        if key.count(Ellipsis) > 1:
            return None
        index = key.index(Ellipsis)
        key = key[:index] + (slice(None),) * (rank - len(key) + 1) + key[index + 1 :]
    return key + (slice(None),) * (rank - len(key))


def _channel_slice(key, rank):
    """The slice applied to the last axis, "all", or None when unsupported."""
    key = normalized_key(key, rank)
    if key is None:
        return None
    return "all" if key[-1] == slice(None) else key[-1]


def _channel_range(stripper, key, position, x, start, stop):
    """The part of `x` for original channels `start:stop`, as LiveChannels."""
    inside = x.live[(x.live >= start) & (x.live < stop)]
    lo, hi = int(np.searchsorted(x.live, start)), int(np.searchsorted(x.live, stop))
    if hi <= lo or x.is_constant:
        return LiveChannels(None, inside - start, x.const[start:stop])
    if key is not None:
        stripper.inherit_fold(key, position, lo, hi)
    whole = lo == 0 and hi == len(x.live)
    value = x.value if whole else x.value[..., lo:hi]
    return LiveChannels(value, inside - start, x.const[start:stop], origin=(x.value, lo, hi))


def remove_split_channels(stripper, node, ins, args, kwargs):
    (x,) = ins
    tensors = stripper.graph.flat.tensors
    rank = len(tensors[node.inputs[0]].shape)
    if node.operation.axis not in (-1, rank - 1):
        values = stripper.call_clone(node, args, kwargs)
        return [LiveChannels(v, x.live, x.const) for v in values]
    offsets = _split_sizes(lambda key: tensors[key].shape, node)
    return [
        _channel_range(stripper, node.inputs[0], i, x, lo, hi)
        for i, (lo, hi) in enumerate(zip(offsets, offsets[1:]))
    ]


def remove_get_item_channels(stripper, node, ins, args, kwargs):
    (x,) = ins
    rank = len(stripper.graph.flat.tensors[node.inputs[0]].shape)
    key = normalized_key(node.call_args[1], rank)
    start, stop, _ = key[-1].indices(x.width)
    if all(k == slice(None) for k in key[:-1]):
        return [_channel_range(stripper, node.inputs[0], 0, x, start, stop)]
    spatial = key[:-1] + (slice(None),)
    value = None if x.is_constant else x.value[spatial]
    sliced = LiveChannels(value, x.live, x.const)
    return [_channel_range(stripper, None, 0, sliced, start, stop)]


# Rebuilt even when no channel is removed: a gate on a slice folds into the
# layer before the slice, which the removal rule passes on (a copy would not).
def _traced_split(node, graph):
    return graph.maps.get(node.inputs[0]) is not None


def _traced_get_item(node, graph):
    shape = graph.flat.tensors[node.inputs[0]].shape
    key = _channel_slice(node.call_args[1], len(shape))
    return (
        _traced_split(node, graph)
        and key is not None
        and (key == "all" or key.indices(shape[-1])[2] == 1)
    )


register_layer(
    *internals.SPLIT_OPS,
    channels=split_channels,
    remove=remove_split_channels,
    rebuild_always=_traced_split,
)
register_layer(
    *internals.GET_ITEM_OPS,
    channels=get_item_channels,
    remove=remove_get_item_channels,
    rebuild_always=_traced_get_item,
)
