"""Depthwise convolutions: one filter per channel, so input and output
channels are the same group.

With `depth_multiplier=M`, output channel `c * M + m` is filter `m` of input
channel `c`: removing input channel `c` removes its M outputs with it (a
tied block). The output map holds each channel of the input map M times in
a row (`channel_maps.repeat_channels`), so no gate serves it as a whole: a
removed channel leaves the layer as a constant (its bias through the
activation, carried through a BatchNormalization), which the layers reading
it take into their bias (a 1x1 convolution, Dense); where they cannot,
`add_gates` protects the group (`graph/protection.py`).
"""

import dataclasses
import math

import numpy as np
from keras import layers

from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.channel_maps import repeat_channels
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
    # An unknown fused activation protects the group (`protection.py`, with a warning).
    if layer.depth_multiplier == 1:
        return [in_maps[0]]
    return [repeat_channels(in_maps[0], layer.depth_multiplier)]


def depthwise_cost(shapes, layer, cin, cout):
    # `cout` counts every (channel, multiplier) filter: cin * depth_multiplier.
    kernel = math.prod(layer.kernel_size)
    macs = shapes.out_positions * kernel * cout
    elementwise = activation_flops(layer) * shapes.out_positions * cout
    return kernel * cout + bias_params(layer, cout), macs, elementwise


def multiplied(channels, multiplier):
    """Output channels `c * multiplier + m` of input channels `channels`."""
    return (np.asarray(channels)[:, None] * multiplier + np.arange(multiplier)).ravel()


def remove_depthwise_channels(stripper, node, ins, args, kwargs):
    """Keeps the live channels' filters (all `depth_multiplier` of each); a
    removed channel's constant goes through each of its filters (sum of its
    taps), bias and activation, unless it is non-zero and meets zero padding
    at the borders (then unknown)."""
    (x,) = ins
    layer = node.operation
    kernel = layer.kernel.numpy()  # (*k, channels, depth_multiplier)
    multiplier = kernel.shape[-1]
    width = kernel.shape[-2] * multiplier
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(width)
    const = np.repeat(x.const, multiplier)
    spatial = kernel.reshape(-1, width).sum(axis=0)
    uniform = depthwise_constant_input(layer, None) == CARRIED
    dropped = multiplied(x.dropped(), multiplier)
    values = const[dropped]
    values = np.where((values == 0) | uniform, values * spatial[dropped] + bias[dropped], np.nan)
    const[dropped] = apply_activation(layer, values)
    if multiplier > 1 and np.isnan(const[dropped]).any():
        # No gate follows a multiplied map to zero such channels again.
        raise StripError(
            f"strip_pruning: layer '{node.name}' ({node.class_name}, depth_multiplier="
            f"{multiplier}) reads removed channels holding constants that meet its zero "
            "padding (their producers lost every input); it cannot be stripped exactly. "
            "Exclude the layers before it from pruning."
        )
    if x.is_constant:
        return [LiveChannels.constant(const)]
    live = multiplied(x.live, multiplier)
    weights = [kernel[..., x.live, :]] + ([bias[live]] if layer.use_bias else [])
    new_layer, value = stripper.build(node, x.value, weights)
    stripper.foldable(new_layer)
    return [LiveChannels(value, live, const)]


def depthwise_constant_input(layer, rank):
    """A constant channel goes through its own filters, bias and activation,
    one value per output channel, unless zero padding makes the borders
    differ."""
    return BROKEN if zero_padded(layer) else CARRIED


@dataclasses.dataclass(frozen=True)
class DepthwiseGateFold(GateFold):
    """A gate after a depthwise convolution scales its output channels
    `c * depth_multiplier + m`: kernel entry `[..., c, m]` and the bias."""

    weights: tuple = ("kernel", "bias")
    axis: int = -2

    def channel_count(self, layer):
        return int(math.prod(layer.kernel.shape[-2:]))

    def apply(self, layer, scale):
        kernel = np.asarray(layer.kernel.numpy(), "float64")
        scale = np.asarray(scale, "float64")
        layer.kernel.assign((kernel * scale.reshape(kernel.shape[-2:])).astype(layer.kernel.dtype))
        if getattr(layer, "bias", None) is not None:
            bias = np.asarray(layer.bias.numpy(), "float64")
            layer.bias.assign((bias * scale).astype(layer.bias.dtype))


register_layer(
    *DEPTHWISE,
    channels=depthwise_channels,
    cost=depthwise_cost,
    remove=remove_depthwise_channels,
    gate_fold=DepthwiseGateFold(),
    regenerates_channels=True,
    collapses_to_bias=True,
    constant_input=depthwise_constant_input,
)
