"""Layers that move, pool, pad or drop positions but never mix channels
(Flatten, which lays positions side by side, is in `flatten`)."""

import keras
import numpy as np
from keras import layers

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.elementwise import one_flop_per_output, pass_through
from keras_relaxprune.layer_support.record import register_layer
from keras_relaxprune.layer_support.removed_constants import BROKEN, CARRIED, always_broken

POOLING = (
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
)

# Move positions, never mix channels; a uniform constant channel stays so.
RESAMPLING = (
    layers.UpSampling1D,
    layers.UpSampling2D,
    layers.UpSampling3D,
    layers.Cropping1D,
    layers.Cropping2D,
    layers.Cropping3D,
    layers.RandomFlip,
    layers.RandomCrop,
    layers.RandomTranslation,
    layers.RandomRotation,
    layers.RandomZoom,
)

REGULARIZATION = (
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.GaussianNoise,
    layers.GaussianDropout,
    layers.AlphaDropout,
    layers.ActivityRegularization,
)

ZERO_PADDING = (layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D)

# Map 0 to 0 and commute with a per-channel scale, in training too (a
# dropout mask and interpolation are linear in each channel; noise that adds,
# AlphaDropout's affine fill, a loss on the activity and the random
# preprocessing layers' fills are not): a gate's scale passes through them.
PASSING_A_SCALE = (
    layers.UpSampling1D,
    layers.UpSampling2D,
    layers.UpSampling3D,
    layers.Cropping1D,
    layers.Cropping2D,
    layers.Cropping3D,
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.GaussianDropout,
)


def remove_spatial(stripper, node, ins, args, kwargs):
    """A uniform constant channel stays the same constant, except where the
    layer writes values of its own (`Resizing(pad_to_aspect_ratio=True)`
    fills borders with `fill_value`): there only that value stays known."""
    (x,) = ins
    const = x.const
    if getattr(node.operation, "pad_to_aspect_ratio", False):
        fill = float(getattr(node.operation, "fill_value", 0.0))
        const = np.where(const == fill, const, np.nan)
    value = None if x.is_constant else stripper.call_clone(node, args, kwargs)
    return [LiveChannels(value, x.live, const)]


def remove_zero_padding(stripper, node, ins, args, kwargs):
    (x,) = ins
    const = np.where(x.const == 0, 0.0, np.nan)  # a non-zero constant gets a 0 border
    value = None if x.is_constant else stripper.call_clone(node, args, kwargs)
    return [LiveChannels(value, x.live, const)]


def resizing_constant_input(layer, rank):
    """`Resizing(pad_to_aspect_ratio=True)` writes its fill at the borders,
    where a constant channel holds another value."""
    return BROKEN if getattr(layer, "pad_to_aspect_ratio", False) else CARRIED


def reshape_channels(tracer, node, in_maps):
    """A reshape that keeps the last axis only regroups positions: in
    row-major order element `[..., c]` stays in channel `c` (e.g. the
    squeeze-excite `(N, C) -> (N, 1, 1, C)`)."""
    before, after = tracer.shape(node.inputs[0]), tracer.shape(node.outputs[0])
    if len(before) >= 2 and before[-1] is not None and before[-1] == after[-1]:
        return [in_maps[0]]
    return tracer.barrier(node, "reshapes across the channel axis")


def remove_reshape(stripper, node, ins, args, kwargs):
    """The same reshape with the last axis as wide as the live channels."""
    (x,) = ins
    if x.is_constant:
        return [LiveChannels(None, x.live, x.const)]
    target = (*tuple(node.operation.target_shape)[:-1], len(x.live))
    _, value = stripper.build(node, x.value, [], target_shape=target)
    return [LiveChannels(value, x.live, x.const)]


def mean_channels(tracer, node, in_maps):
    """`ops.mean` over positions only (`axis=(1, 2)`, like a global average
    pooling) passes channels through; over the channel axis it mixes them."""
    rank = len(tracer.shape(node.inputs[0]))
    axis = node.operation.axis
    axes = range(rank) if axis is None else np.atleast_1d(axis)
    if any(int(a) % rank in (0, rank - 1) for a in axes):
        return tracer.barrier(node, "averages over the channel or batch axis")
    return [in_maps[0]]


def remove_reshape_op(stripper, node, ins, args, kwargs):
    """`ops.reshape` to the recorded output shape with the last axis as wide
    as the live channels (the batch axis left to the reshape)."""
    (x,) = ins
    if x.is_constant:
        return [LiveChannels(None, x.live, x.const)]
    out_shape = tuple(stripper.graph.flat.tensors[node.outputs[0]].shape)
    value = keras.ops.reshape(x.value, (-1, *out_shape[1:-1], len(x.live)))
    return [LiveChannels(value, x.live, x.const)]


def reshape_op_channels(tracer, node, in_maps):
    """Like `reshape_channels`, for a reshape whose other sizes are known."""
    if any(size is None for size in tracer.shape(node.outputs[0])[1:]):
        return tracer.barrier(node, "reshapes to a shape not known when traced")
    return reshape_channels(tracer, node, in_maps)


register_layer(*POOLING, channels=pass_through, cost=one_flop_per_output, remove=remove_spatial)
register_layer(*RESAMPLING, *REGULARIZATION, channels=pass_through, remove=remove_spatial)
register_layer(*PASSING_A_SCALE, channels=pass_through, remove=remove_spatial, passes_scale=True)
# Resizing may pad with a non-zero fill (interpolation alone keeps a constant).
register_layer(
    layers.Resizing,
    channels=pass_through,
    remove=remove_spatial,
    changes_zero=True,
    constant_input=resizing_constant_input,
)
register_layer(
    *ZERO_PADDING,
    channels=pass_through,
    remove=remove_zero_padding,
    constant_input=always_broken,
    passes_scale=True,
)
register_layer(layers.Reshape, channels=reshape_channels, remove=remove_reshape)
# The raw ops spelled like the layers: `ops.mean(x, axis=(1, 2))` and `ops.reshape`.
register_layer(
    *internals.MEAN_OPS, channels=mean_channels, cost=one_flop_per_output, remove=remove_spatial
)
register_layer(*internals.RESHAPE_OPS, channels=reshape_op_channels, remove=remove_reshape_op)
