"""Fused activations: their names, their values on constants, their cost."""

import keras
import numpy as np

# Activations a positive per-channel gate commutes with: f(g z) = g f(z).
HOMOGENEOUS = ("linear", "relu", "leaky_relu")

# Keras activations that act on each element alone (so on each channel).
# Anything else (softmax, log_softmax, sparsemax, glu, an unknown callable or
# a layer object such as `ReLU(max_value=...)`) is not known to: the
# channels it reads are protected.
ELEMENTWISE = HOMOGENEOUS + (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid",
    "hard_silu", "hard_swish", "hard_tanh", "log_sigmoid", "mish", "relu6",
    "selu", "sigmoid", "silu", "soft_shrink", "softplus", "softsign",
    "sparse_plus", "sparse_sigmoid", "squareplus", "swish", "tanh",
    "tanh_shrink", "threshold",
)


def activation_name(layer):
    """The name of `layer`'s fused activation ("linear" when it has none).

    An `Activation` layer given as the activation is read through; any other
    layer object or callable without a Keras name is named by its class.
    """
    function = getattr(layer, "activation", None)
    if function is None:
        return "linear"
    if isinstance(function, keras.layers.Activation):
        function = function.activation
    name = getattr(function, "__name__", None)
    return name if name is not None else type(function).__name__


def acts_per_channel(layer):
    """Whether the fused activation is a known elementwise function."""
    return activation_name(layer) in ELEMENTWISE


def commutes_with_scale(layer):
    """Whether a per-channel scale after `layer` may move before its activation."""
    return activation_name(layer) in HOMOGENEOUS


def activation_flops(layer):
    """Elementwise FLOPs per output element of the fused activation (0 or 1)."""
    return 0 if activation_name(layer) == "linear" else 1


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
