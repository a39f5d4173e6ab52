"""Depthwise convolutions: one filter per channel, so input and output
channels are the same group."""

import math

import numpy as np
from keras import layers

from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.activations import (
    activation_flops,
    apply_activation,
)
from keras_relaxprune.layer_support.convolution import bias_params, channels_first
from keras_relaxprune.layer_support.record import GateFold, register_layer
from keras_relaxprune.layer_support.removed_constants import BROKEN, CARRIED, zero_padded

DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)


def depthwise_channels(tracer, node, in_maps):
    layer = node.operation
    if channels_first(layer):
        return tracer.barrier(node, "channels_first data format")
    if layer.depth_multiplier != 1:
        return tracer.barrier(node, "depth_multiplier > 1")
    # An unknown fused activation protects the group (`protection.py`, with a warning).
    return [in_maps[0]]


def depthwise_cost(shapes, layer, cin, cout):
    kernel = math.prod(layer.kernel_size)
    macs = shapes.out_positions * kernel * cout
    elementwise = activation_flops(layer) * shapes.out_positions * cout
    return kernel * cout + bias_params(layer, cout), macs, elementwise


def remove_depthwise_channels(stripper, node, ins, args, kwargs):
    """Keeps the live channels' filters; a removed channel's constant goes
    through the filter (sum of its taps), bias and activation, unless it is
    non-zero and meets zero padding at the borders (then unknown)."""
    (x,) = ins
    layer = node.operation
    kernel = layer.kernel.numpy()  # (*k, channels, depth_multiplier)
    if kernel.shape[-1] != 1 and len(x.dropped()):
        # A barrier (its input group is protected): reached by a collapsed
        # branch's constant only when a whole group was switched off.
        raise StripError(
            f"strip_pruning: layer '{node.name}' ({node.class_name}, depth_multiplier="
            f"{kernel.shape[-1]}) reads channels whose producers lost every input; it "
            "cannot be stripped exactly. Exclude the layers before it from pruning."
        )
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[-2])
    const = x.const.copy()
    spatial = kernel.reshape(-1, kernel.shape[-2]).sum(axis=0)
    uniform = depthwise_constant_input(layer, None) == CARRIED
    dropped = x.dropped()
    values = const[dropped]
    values = np.where((values == 0) | uniform, values * spatial[dropped] + bias[dropped], np.nan)
    const[dropped] = apply_activation(layer, values)
    if x.is_constant:
        return [LiveChannels.constant(const)]
    weights = [kernel[..., x.live, :]] + ([bias[x.live]] if layer.use_bias else [])
    new_layer, value = stripper.build(node, x.value, weights)
    stripper.foldable(new_layer)
    return [LiveChannels(value, x.live, const)]


def depthwise_constant_input(layer, rank):
    """A constant channel goes through its own filter, bias and activation,
    one value per channel, unless zero padding makes the borders differ (or
    several filters per channel spread it over new channels)."""
    return BROKEN if zero_padded(layer) or layer.depth_multiplier > 1 else CARRIED


register_layer(
    *DEPTHWISE,
    channels=depthwise_channels,
    cost=depthwise_cost,
    remove=remove_depthwise_channels,
    gate_fold=GateFold(("kernel", "bias"), -2),
    regenerates_channels=True,
    collapses_to_bias=True,
    constant_input=depthwise_constant_input,
)
