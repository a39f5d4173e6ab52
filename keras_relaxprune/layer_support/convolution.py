"""Convolutions and Dense: the layers whose output channels are prunable.

Each starts a new channel group. Removal slices the kernel on its input
and output channel axes and the bias. Input channels that were removed but
hold a known non-zero constant (a BN's beta after a pruned channel) are
folded into the bias where that is exact (Dense, 1x1 or 'valid'
convolutions: `kernel_constant_input` says which, for `add_gates` and
`strip_pruning` alike); elsewhere `strip_pruning` refuses rather than change
the function.

A grouped convolution (`groups=G`) keeps every one of its G channel groups
the same width: its output is G tied copies of one new group of
`filters / G` channels, and its input is tied into G tiles (channel `j` of
each tile removed together; a group spanning several tiles is split into
tied copies of a narrower one). Removal slices the kernel
`(*kernel_size, C_in / G, C_out)` with the same kept input indices in every
channel group and keeps `groups=G`.
"""

import math

import numpy as np
from keras import layers

from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support import grouped_depthwise
from keras_relaxprune.layer_support.activations import (
    activation_flops,
)
from keras_relaxprune.layer_support.collapse import constant_output, emits_constant
from keras_relaxprune.layer_support.record import GateFold, kernel_axes, register_layer
from keras_relaxprune.layer_support.removed_constants import (
    ABSORBED,
    BROKEN,
    always_broken,
    zero_padded,
)

CONVS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)


def channels_first(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_first"


def producer_channels(tracer, node, in_maps):
    layer = node.operation
    if channels_first(layer):
        return tracer.barrier(node, "channels_first data format")
    if _depthwise_grouping(layer):
        return grouped_depthwise.depthwise_grouping_channels(tracer, node, in_maps)
    groups = conv_groups(layer)
    if groups > 1:
        tracer.tile(
            node,
            in_maps[0],
            groups,
            reason=(
                f"'{node.name}' ({node.class_name}, groups={groups}) removes channel j "
                f"of all its {groups} input groups together, and these channels do not "
                "line up across them"
            ),
        )
    # An unknown fused activation protects the group (`protection.py`, with a warning).
    return [tracer.new_group(node, tracer.out_channels(node) // groups) * groups]


def _depthwise_grouping(layer):
    """A grouped convolution that is a depthwise one (`grouped_depthwise.py`)."""
    return isinstance(layer, CONVS) and grouped_depthwise.is_depthwise_grouping(layer)


def conv_groups(layer):
    """A convolution's `groups` (1 for layers without the option)."""
    return int(getattr(layer, "groups", 1) or 1)


def bias_params(layer, cout):
    return cout if getattr(layer, "use_bias", False) else 0


def conv_cost(shapes, layer, cin, cout):
    if _depthwise_grouping(layer):
        return grouped_depthwise.depthwise_grouping_cost(shapes, layer, cin, cout)
    # Each output channel reads cin / groups inputs: with G tied channel
    # groups of k_in inputs and k_out outputs, cin = G k_in, cout = G k_out.
    kernel = math.prod(layer.kernel_size) / conv_groups(layer)
    macs = shapes.out_positions * kernel * cin * cout
    elementwise = activation_flops(layer) * shapes.out_positions * cout
    return kernel * cin * cout + bias_params(layer, cout), macs, elementwise


def transposed_cost(shapes, layer, cin, cout):
    kernel = math.prod(layer.kernel_size)
    macs = shapes.in_positions * kernel * cin * cout
    elementwise = activation_flops(layer) * shapes.out_positions * cout
    return kernel * cin * cout + bias_params(layer, cout), macs, elementwise


def separable_cost(shapes, layer, cin, cout):
    kernel = math.prod(layer.kernel_size)
    depth = cin * layer.depth_multiplier
    params = kernel * depth + depth * cout + bias_params(layer, cout)
    macs = shapes.out_positions * (kernel * depth + depth * cout)
    elementwise = activation_flops(layer) * shapes.out_positions * cout
    return params, macs, elementwise


def dense_cost(shapes, layer, cin, cout):
    rows = math.prod(shapes.out_shape[1:-1])
    elementwise = activation_flops(layer) * rows * cout
    return cin * cout + bias_params(layer, cout), rows * cin * cout, elementwise


def kernel_constant_input(layer, rank):
    """A constant input channel of Dense or a convolution adds its summed
    kernel column to every output position, exactly what a bias does,
    unless zero padding makes the borders see less of it."""
    if _depthwise_grouping(layer):
        return grouped_depthwise.depthwise_grouping_constant_input(layer, rank)
    return BROKEN if zero_padded(layer) else ABSORBED


def summed_kernel(layer, kernel):
    """`kernel` (a NumPy copy of `layer.kernel`, a convolution's or Dense's)
    summed over its spatial axes, `(cin, cout)`: what a constant input
    channel adds to each output."""
    in_axis, out_axis = kernel_axes(layer)
    summed = np.moveaxis(kernel, (in_axis, out_axis), (-2, -1))
    summed = summed.reshape(-1, *summed.shape[-2:]).sum(axis=0)
    groups = conv_groups(layer)
    if groups == 1:
        return summed
    # Input channel group g feeds output channel group g only.
    rows, columns = summed.shape
    width = columns // groups
    full = np.zeros((rows * groups, columns), summed.dtype)
    for group in range(groups):
        block = slice(group * width, (group + 1) * width)
        full[group * rows : (group + 1) * rows, block] = summed[:, block]
    return full


def grouped_input_rows(node, live, groups, width):
    """The kernel rows (input indices within one channel group) that survive
    in every channel group of a grouped convolution; `live` holds the live
    input channels, `width` the inputs per channel group."""
    tiles = [
        live[(live >= g * width) & (live < (g + 1) * width)] - g * width for g in range(groups)
    ]
    return _same_in_every_channel_group(node, tiles, "keep different input channels")


def _same_in_every_channel_group(node, tiles, what):
    """`tiles[0]`, after checking every channel group's tile equals it."""
    first = tiles[0]
    if any(len(tile) != len(first) or not np.allclose(tile, first) for tile in tiles[1:]):
        raise StripError(
            f"strip_pruning: layer '{node.name}' ({node.class_name}, groups={len(tiles)}) "
            f"would {what} in its channel groups. Exclude the layers feeding it from "
            "pruning (add_gates(exclude=[...]))."
        )
    return first


def remove_kernel_channels(stripper, node, ins, args, kwargs):
    if _depthwise_grouping(node.operation):
        return grouped_depthwise.remove_depthwise_grouping(stripper, node, ins, args, kwargs)
    (x,) = ins
    out_keep = stripper.output_keep(node)
    layer = node.operation
    kernel = layer.kernel.numpy()
    in_axis, out_axis = kernel_axes(layer)
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[out_axis])
    dropped, values = stripper.removed_constants(node, x)
    bias = bias + values @ summed_kernel(layer, kernel)[dropped] if len(dropped) else bias
    if emits_constant(x.is_constant, len(out_keep)):
        return [constant_output(layer, x, bias)]
    groups = conv_groups(layer)
    rows = (
        x.live if groups == 1 else grouped_input_rows(node, x.live, groups, kernel.shape[in_axis])
    )
    kernel = np.take(np.take(kernel, rows, axis=in_axis), out_keep, axis=out_axis)
    input_scale = stripper.input_scales.get(node.inputs[0])
    if input_scale is not None:  # a gate after a non-homogeneous activation
        input_scale = _one_scale_per_row(node, input_scale, groups)
        shape = [1] * kernel.ndim
        shape[in_axis] = -1
        kernel = kernel * np.reshape(input_scale, shape)
    width_key = "units" if isinstance(layer, layers.Dense) else "filters"
    use_bias = bool(layer.use_bias or np.any(bias != 0))
    weights = [kernel] + ([bias[out_keep]] if use_bias else [])
    new_layer, value = stripper.build(
        node, x.value, weights, **{width_key: len(out_keep), "use_bias": use_bias}
    )
    stripper.foldable(new_layer)
    return [LiveChannels(value, np.asarray(out_keep), np.full(len(bias), np.nan))]


def _one_scale_per_row(node, input_scale, groups):
    """A grouped convolution's per-live-input scale, one per kernel row (the
    same in every channel group, as its tied gates are)."""
    if groups == 1:
        return input_scale
    return _same_in_every_channel_group(
        node, np.reshape(input_scale, (groups, -1)), "scale its inputs differently"
    )


def remove_separable_channels(stripper, node, ins, args, kwargs):
    (x,) = ins
    out_keep = stripper.output_keep(node)
    layer = node.operation
    stripper.removed_constants(node, x)  # refuses non-zero ones (never absorbed)
    depthwise, pointwise = layer.depthwise_kernel.numpy(), layer.pointwise_kernel.numpy()
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(pointwise.shape[-1])
    if emits_constant(x.is_constant, len(out_keep)):
        return [constant_output(layer, x, bias)]
    multiplier = layer.depth_multiplier
    rows = (x.live[:, None] * multiplier + np.arange(multiplier)).ravel()
    weights = [depthwise[..., x.live, :], pointwise[..., rows, :][..., out_keep]]
    if layer.use_bias:
        weights.append(bias[out_keep])
    new_layer, value = stripper.build(node, x.value, weights, filters=len(out_keep))
    stripper.foldable(new_layer)
    return [LiveChannels(value, np.asarray(out_keep), np.full(len(bias), np.nan))]


register_layer(
    *CONVS,
    channels=producer_channels,
    cost=conv_cost,
    remove=remove_kernel_channels,
    gate_fold=GateFold(("kernel", "bias"), -1),
    scales_inputs=True,
    kernel_axes=(-2, -1),
    collapses_to_bias=True,
    constant_input=kernel_constant_input,
)
register_layer(
    *TRANSPOSED,
    channels=producer_channels,
    cost=transposed_cost,
    remove=remove_kernel_channels,
    gate_fold=GateFold(("kernel", "bias"), -2),
    scales_inputs=True,
    kernel_axes=(-1, -2),
    collapses_to_bias=True,
    constant_input=always_broken,
)  # its borders see fewer taps of a constant
register_layer(layers.Dense, like=layers.Conv2D, cost=dense_cost)  # a 1x1 convolution
register_layer(
    *SEPARABLE,
    channels=producer_channels,
    cost=separable_cost,
    remove=remove_separable_channels,
    gate_fold=GateFold(("pointwise_kernel", "bias"), -1),
    collapses_to_bias=True,
    constant_input=always_broken,
)  # its rule folds no constant into the bias
