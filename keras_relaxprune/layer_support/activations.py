"""Fused activations: their names, their values on constants, their cost."""

import keras
import numpy as np

# Activations a positive per-channel gate commutes with: f(g z) = g f(z).
HOMOGENEOUS = ("linear", "relu", "leaky_relu")


def activation_name(layer):
    """The name of `layer`'s fused activation ("linear" when it has none)."""
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


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
