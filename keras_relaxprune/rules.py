"""Per-operation channel rules: how each layer or op maps channel indices.

A rule receives the tracer, the `FlatNode` and the channel maps of its
inputs, and returns the maps of its outputs. Supporting a new layer type is
one small function registered with `@channel_rule(LayerClass)`; a layer with
no rule is a barrier (its channels are protected, never guessed).
"""

import numpy as np
from keras import layers
from keras.src.ops import numpy as np_ops

from keras_relaxprune import layer_kinds as kinds
from keras_relaxprune.channels import concat_maps, map_length, slice_map
from keras_relaxprune.gates import ChannelGate
from keras_relaxprune.registry import RuleRegistry

_REGISTRY = RuleRegistry()
channel_rule = _REGISTRY.register  # @channel_rule(LayerClass) registers a rule
find_rule = _REGISTRY.find


def _channels_first(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_first"


# Producers: layers whose output channels are new, prunable ones.
_CONVS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSED = (
    layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose,
)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)


@channel_rule(*_CONVS, *_TRANSPOSED, *_SEPARABLE, layers.Dense)
def producer_rule(tracer, flat, in_maps):
    layer = flat.operation
    if _channels_first(layer):
        return tracer.barrier(flat, "channels_first data format")
    if getattr(layer, "groups", 1) != 1:
        return tracer.barrier(flat, "grouped convolution (groups > 1)")
    if isinstance(layer, _SEPARABLE) and layer.depth_multiplier != 1:
        tracer.protect(in_maps[0], f"{flat.name}: depth_multiplier > 1")
    return [tracer.new_group(flat, tracer.out_channels(flat))]


@channel_rule(layers.DepthwiseConv1D, layers.DepthwiseConv2D)
def depthwise_rule(tracer, flat, in_maps):
    layer = flat.operation
    if _channels_first(layer):
        return tracer.barrier(flat, "channels_first data format")
    if layer.depth_multiplier != 1:
        return tracer.barrier(flat, "depth_multiplier > 1")
    return [in_maps[0]]


@channel_rule(layers.BatchNormalization)
def batch_norm_rule(tracer, flat, in_maps):
    rank = len(tracer.shape(flat.inputs[0]))
    axis = flat.operation.axis
    if axis not in (-1, rank - 1):
        return tracer.barrier(flat, f"normalises axis {axis}, not channels")
    return [in_maps[0]]


@channel_rule(
    layers.LayerNormalization, layers.GroupNormalization,
    layers.UnitNormalization, layers.Softmax,
)
def channel_mixing_rule(tracer, flat, in_maps):
    # Removing a channel would change the statistics of the others.
    tracer.protect(in_maps[0], f"{flat.name} ({flat.class_name}) mixes channels")
    return [in_maps[0]]


_PASS_THROUGH = (
    layers.ReLU, layers.LeakyReLU, layers.ELU, layers.Identity, ChannelGate,
    *kinds.POOLING, *kinds.RESAMPLING, *kinds.REGULARIZATION, *kinds.ZERO_PADDING,
)


@channel_rule(*_PASS_THROUGH)
def pass_through_rule(tracer, flat, in_maps):
    if _channels_first(flat.operation):
        return tracer.barrier(flat, "channels_first data format")
    return [in_maps[0]]


@channel_rule(layers.Activation)
def activation_rule(tracer, flat, in_maps):
    name = getattr(flat.operation.activation, "__name__", "")
    if name in ("softmax", "log_softmax"):
        tracer.protect(in_maps[0], f"{flat.name}: {name} mixes channels")
    return [in_maps[0]]


@channel_rule(layers.Flatten)
def flatten_rule(tracer, flat, in_maps):
    spatial = tracer.shape(flat.inputs[0])[1:-1]
    if all(size == 1 for size in spatial):
        return [in_maps[0]]
    return tracer.barrier(flat, "flattens spatial positions into channels")


@channel_rule(*kinds.MERGE_LAYERS)
def merge_rule(tracer, flat, in_maps):
    return [tracer.tie(flat, in_maps)]


@channel_rule(layers.Concatenate, np_ops.Concatenate)
def concatenate_rule(tracer, flat, in_maps):
    rank = len(tracer.shape(flat.outputs[0]))
    if flat.operation.axis in (-1, rank - 1):
        return [concat_maps(in_maps)]
    return [tracer.tie(flat, in_maps)]


# Raw ops recorded by a functional graph (`keras.ops.*`, `x[...]`).


@channel_rule(*kinds.ELEMENTWISE_OPS)
def elementwise_op_rule(tracer, flat, in_maps):
    return [in_maps[0]]


@channel_rule(*kinds.MERGE_OPS)
def binary_op_rule(tracer, flat, in_maps):
    args, _ = flat.node.arguments.args, flat.node.arguments.kwargs
    constants = [a for a in args if not hasattr(a, "_keras_history")]
    if any(np.size(c) > 1 for c in constants):
        return tracer.barrier(flat, "combines channels with a constant array")
    return [tracer.tie(flat, in_maps)]


@channel_rule(np_ops.Split)
def split_rule(tracer, flat, in_maps):
    rank = len(tracer.shape(flat.inputs[0]))
    if flat.operation.axis not in (-1, rank - 1):
        return [in_maps[0] for _ in flat.outputs]
    sizes = [tracer.shape(key)[-1] for key in flat.outputs]
    offsets = [int(v) for v in np.cumsum([0] + sizes)]
    return [slice_map(in_maps[0], lo, hi) for lo, hi in zip(offsets, offsets[1:])]


@channel_rule(np_ops.GetItem)
def get_item_rule(tracer, flat, in_maps):
    shape = tracer.shape(flat.inputs[0])
    channel_slice = _channel_slice(flat.node.arguments.args[1], len(shape))
    if channel_slice is None:
        return tracer.barrier(flat, "indexing that is not a plain slice")
    if channel_slice == "all":
        return [in_maps[0]]
    start, stop, step = channel_slice.indices(shape[-1])
    if step != 1:
        return tracer.barrier(flat, "strided slice of channels")
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
        key = key[:index] + (slice(None),) * (rank - len(key) + 1) + key[index + 1:]
    return key + (slice(None),) * (rank - len(key))


def _channel_slice(key, rank):
    """The slice applied to the last axis, "all", or None when unsupported."""
    key = normalized_key(key, rank)
    if key is None:
        return None
    return "all" if key[-1] == slice(None) else key[-1]


def check_lengths(tracer, flat, out_maps):
    """Guards against a rule that returned a map of the wrong width."""
    for key, out_map in zip(flat.outputs, out_maps):
        if map_length(out_map) != tracer.shape(key)[-1]:
            return False
    return True


@channel_rule(layers.Rescaling)
def rescaling_rule(tracer, flat, in_maps):
    layer = flat.operation
    if np.size(layer.scale) > 1 or np.size(layer.offset) > 1:
        # Per-channel constants (e.g. a collapsed branch's offset): keep the
        # channels rather than slice the constants.
        tracer.protect(in_maps[0], f"{flat.name} holds per-channel constants")
    return [in_maps[0]]
