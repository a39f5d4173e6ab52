"""Per-layer removal rules for layers with per-channel weights.

Each rule builds the smaller layer for one node: kernels sliced on their
input and output channel axes, biases, BN statistics. Dropped input
channels that hold a known non-zero constant are folded into the bias where
that is exact (Dense, 1x1 or 'valid' convolutions); elsewhere the rule
refuses with `StripError` rather than change the function.
"""

import math

import keras
import numpy as np
from keras import layers

from keras_relaxprune.errors import StripError
from keras_relaxprune.live_channels import LiveChannels
from keras_relaxprune.registry import RuleRegistry

REGISTRY = RuleRegistry()
removal_rule = REGISTRY.register

# Activations a positive per-channel gate commutes with: f(g z) = g f(z).
HOMOGENEOUS = ("linear", "relu", "leaky_relu")

_CONVS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
# Layers linear in their input: a per-input-channel scale folds into the kernel.
INPUT_SCALABLE = (*_CONVS, *_TRANSPOSED, layers.Dense)


def activation_name(layer):
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


def apply_activation(layer, values):
    """The layer's fused activation on a vector of constants (NaN stays NaN)."""
    values = np.asarray(values, "float64")
    if activation_name(layer) == "linear" or values.size == 0:
        return values
    return apply_elementwise(layer.activation, values)


def apply_elementwise(function, values):
    """`function` (a Keras activation, layer or op) on a vector of constants."""
    unknown = np.isnan(values)
    probe = keras.ops.convert_to_tensor(np.nan_to_num(values)[None, :], "float32")
    out = np.asarray(keras.ops.convert_to_numpy(function(probe)), "float64")[0]
    return np.where(unknown, np.nan, out)


def _check_constants(stripper, flat, x, exact_when_nonzero):
    dropped = x.dropped()
    values = x.const[dropped]
    if np.isnan(values).any():
        raise StripError(
            f"strip_pruning: layer '{flat.name}' ({flat.class_name}) reads removed "
            "channels whose value is not a known constant; the model cannot be "
            "stripped exactly. Exclude the layers before it from pruning."
        )
    if np.any(values != 0) and not exact_when_nonzero:
        raise StripError(
            f"strip_pruning: removed channels reach layer '{flat.name}' "
            f"({flat.class_name}) as non-zero constants (an activation with "
            "f(0) != 0 before a padded or transposed convolution); removing them "
            "would change the output near the borders. Exclude the producer of "
            "those channels (add_gates(exclude=[...])) or use ReLU-like activations."
        )
    return dropped, values


def _folds_exactly(layer):
    if isinstance(layer, layers.Dense):
        return True
    if isinstance(layer, _CONVS):
        return layer.padding == "valid" or math.prod(layer.kernel_size) == 1
    return False


def _constant_output(layer, x, bias):
    """A layer left without inputs emits its bias (through its activation);
    one left without outputs emits values the gate after it zeroes."""
    if x.is_constant:
        return LiveChannels.constant(apply_activation(layer, bias))
    return LiveChannels.constant(np.full(len(bias), np.nan))


@removal_rule(*_CONVS, *_TRANSPOSED, layers.Dense)
def kernel_rule(stripper, flat, x, out_keep):
    layer = flat.operation
    kernel = layer.kernel.numpy()
    in_axis, out_axis = (-1, -2) if isinstance(layer, _TRANSPOSED) else (-2, -1)
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[out_axis])
    dropped, values = _check_constants(stripper, flat, x, _folds_exactly(layer))
    summed = np.moveaxis(kernel, (in_axis, out_axis), (-2, -1))
    summed = summed.reshape(-1, *summed.shape[-2:]).sum(axis=0)  # (cin, cout)
    bias = bias + values @ summed[dropped] if len(dropped) else bias
    if x.is_constant or len(out_keep) == 0:
        return _constant_output(layer, x, bias)
    kernel = np.take(np.take(kernel, x.live, axis=in_axis), out_keep, axis=out_axis)
    input_scale = stripper.input_scales.get(flat.inputs[0])
    if input_scale is not None:  # a gate after a non-homogeneous activation
        shape = [1] * kernel.ndim
        shape[in_axis] = -1
        kernel = kernel * np.reshape(input_scale, shape)
    width_key = "units" if isinstance(layer, layers.Dense) else "filters"
    use_bias = bool(layer.use_bias or np.any(bias != 0))
    weights = [kernel] + ([bias[out_keep]] if use_bias else [])
    new_layer, value = stripper.build(flat, x.value, weights,
                                      **{width_key: len(out_keep), "use_bias": use_bias})
    stripper.foldable(new_layer, "kernel", out_axis)
    const = np.full(len(bias), np.nan)
    return LiveChannels(value, np.asarray(out_keep), const)


@removal_rule(layers.SeparableConv1D, layers.SeparableConv2D)
def separable_rule(stripper, flat, x, out_keep):
    layer = flat.operation
    _check_constants(stripper, flat, x, exact_when_nonzero=False)
    depthwise, pointwise = layer.depthwise_kernel.numpy(), layer.pointwise_kernel.numpy()
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(pointwise.shape[-1])
    if x.is_constant or len(out_keep) == 0:
        return _constant_output(layer, x, bias)
    multiplier = layer.depth_multiplier
    rows = (x.live[:, None] * multiplier + np.arange(multiplier)).ravel()
    weights = [depthwise[..., x.live, :], pointwise[..., rows, :][..., out_keep]]
    if layer.use_bias:
        weights.append(bias[out_keep])
    new_layer, value = stripper.build(flat, x.value, weights, filters=len(out_keep))
    stripper.foldable(new_layer, "separable", -1)
    return LiveChannels(value, np.asarray(out_keep), np.full(len(bias), np.nan))


@removal_rule(layers.DepthwiseConv1D, layers.DepthwiseConv2D)
def depthwise_rule(stripper, flat, x, out_keep):
    layer = flat.operation
    kernel = layer.kernel.numpy()  # (*k, channels, 1)
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[-2])
    const = x.const.copy()
    spatial = kernel.reshape(-1, kernel.shape[-2]).sum(axis=0)
    uniform = layer.padding == "valid" or math.prod(layer.kernel_size) == 1
    dropped = x.dropped()
    values = const[dropped]
    # A non-zero constant meets zero padding at the borders: not uniform.
    values = np.where((values == 0) | uniform, values * spatial[dropped] + bias[dropped], np.nan)
    const[dropped] = apply_activation(layer, values)
    if x.is_constant:
        return LiveChannels.constant(const)
    weights = [kernel[..., x.live, :]] + ([bias[x.live]] if layer.use_bias else [])
    new_layer, value = stripper.build(flat, x.value, weights)
    stripper.foldable(new_layer, "kernel", -2)
    return LiveChannels(value, x.live, const)


@removal_rule(layers.BatchNormalization)
def batch_norm_rule(stripper, flat, x, out_keep):
    layer = flat.operation
    width = x.width
    gamma = layer.gamma.numpy() if layer.scale else np.ones(width)
    beta = layer.beta.numpy() if layer.center else np.zeros(width)
    mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    const = (x.const - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta
    if x.is_constant:
        return LiveChannels.constant(const)
    live = x.live
    weights = [gamma[live], beta[live], mean[live], variance[live]]
    new_layer, value = stripper.build(flat, x.value, weights, scale=True, center=True)
    stripper.foldable(new_layer, "batch_norm", None)
    return LiveChannels(value, live, const)


def channel_count(layer, kind, axis):
    """Number of output channels a gate folded into `layer` would scale."""
    weights = layer.get_weights()
    if kind == "batch_norm":
        return weights[0].shape[0]
    kernel = weights[1] if kind == "separable" else weights[0]
    return kernel.shape[axis]


def fold_scale(layer, kind, axis, scale):
    """Multiplies a layer's per-output-channel weights by `scale` (exactly)."""
    weights = layer.get_weights()
    if kind == "batch_norm":
        weights[0] = weights[0] * scale  # gamma
        weights[1] = weights[1] * scale  # beta
    else:
        kernel_index = 1 if kind == "separable" else 0
        shape = [1] * weights[kernel_index].ndim
        shape[axis] = -1
        weights[kernel_index] = weights[kernel_index] * scale.reshape(shape)
        bias_index = kernel_index + 1
        if len(weights) > bias_index:
            weights[bias_index] = weights[bias_index] * scale
    layer.set_weights([w.astype("float32") for w in weights])


def fold_kind(layer):
    """How a gate after this (unchanged) layer folds into it, or None."""
    if isinstance(layer, layers.BatchNormalization):
        return "batch_norm", None
    if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        return "separable", -1
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D, *_TRANSPOSED)):
        return "kernel", -2
    if isinstance(layer, (*_CONVS, layers.Dense)):
        return "kernel", -1
    return None
