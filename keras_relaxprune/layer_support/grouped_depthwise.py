"""A convolution with one input channel per group and one filter each.

`Conv2D(C, k, groups=C)` on C channels (keras-hub's MobileNetV3 writes its
depthwise convolutions so) computes what `DepthwiseConv2D(k)` computes:
output channel c reads input channel c only. The grouped-convolution rule
(`convolution.py`) would tie every channel group to the same width, one
channel each, so nothing could be pruned; this rule instead gives such a
layer the depthwise rule: input and output channels are one group, and
removal keeps the live channels' filters with `groups` set to their count.

It applies only without a bias and with a linear activation (a removed,
zero channel then stays zero, so no gate is needed after the layer), and
with `filters == groups` (one filter per channel; several filters per
channel stay with the grouped-convolution rule).
"""

import math

import numpy as np

from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.activations import known_activation
from keras_relaxprune.layer_support.removed_constants import BROKEN, CARRIED, zero_padded


def is_depthwise_grouping(layer):
    """Whether `layer` is a grouped convolution that the depthwise rule fits."""
    groups = int(getattr(layer, "groups", 1) or 1)
    kernel = getattr(layer, "kernel", None)
    return (
        groups > 1
        and kernel is not None
        and kernel.shape[-2] == 1
        and kernel.shape[-1] == groups
        and not getattr(layer, "use_bias", True)
        and known_activation(getattr(layer, "activation", None)) == "linear"
        and getattr(layer, "data_format", "channels_last") == "channels_last"
    )


def depthwise_grouping_channels(tracer, node, in_maps):
    """Output channel c is input channel c: the same map, the same group."""
    return [in_maps[0]]


def depthwise_grouping_cost(shapes, layer, cin, cout):
    kernel = math.prod(layer.kernel_size)
    return kernel * cout, shapes.out_positions * kernel * cout, 0


def remove_depthwise_grouping(stripper, node, ins, args, kwargs):
    """Keeps the live channels' filters (`groups` = their count); a removed
    channel's constant goes through its filter (the sum of its taps), or is
    unknown where it is non-zero and meets zero padding."""
    (x,) = ins
    layer = node.operation
    kernel = layer.kernel.numpy()  # (*k, 1, channels)
    taps = kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)
    const = x.const.copy()
    dropped = x.dropped()
    values = const[dropped]
    carried = depthwise_grouping_constant_input(layer, None) == CARRIED
    const[dropped] = np.where((values == 0) | carried, values * taps[dropped], np.nan)
    if x.is_constant:
        return [LiveChannels.constant(const)]
    kernel = kernel[..., x.live]
    input_scale = stripper.input_scales.get(node.inputs[0])
    if input_scale is not None:  # a gate after a non-homogeneous activation
        kernel = kernel * np.asarray(input_scale)
    new_layer, value = stripper.build(
        node, x.value, [kernel], filters=len(x.live), groups=len(x.live)
    )
    stripper.foldable(new_layer)
    return [LiveChannels(value, x.live, const)]


def depthwise_grouping_constant_input(layer, rank):
    """A constant channel goes through its own filter, unless zero padding
    makes the borders differ."""
    return BROKEN if zero_padded(layer) else CARRIED
