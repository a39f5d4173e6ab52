"""Fused activations: what they are, their values on constants, their cost.

An activation is identified by object, never by name: Keras' own functions
(`keras.activations.relu`, ...) and the activation layers given as
`activation=` (`LeakyReLU(0.1)`, `ReLU()`, `ELU()`, an `Activation`) are
known; any other callable, even one whose `__name__` is "relu", is not
(its channels are protected, and no gate folds through it).
"""

import keras
import numpy as np

# Activations a positive per-channel gate commutes with: f(g z) = g f(z).
HOMOGENEOUS = ("linear", "relu", "leaky_relu")

# Keras activations that act on each element alone (so on each channel).
# Anything else (softmax, log_softmax, sparsemax, glu, an unknown callable)
# is not known to: the channels it reads are protected.
ELEMENTWISE = HOMOGENEOUS + (
    "celu",
    "elu",
    "exponential",
    "gelu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "log_sigmoid",
    "mish",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_shrink",
    "softplus",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "swish",
    "tanh",
    "tanh_shrink",
    "threshold",
)

# An elementwise activation that is neither of the homogeneous ones.
_OTHER_ELEMENTWISE = "elementwise"


def _keras_functions():
    """Keras' activation functions, by object, with their canonical names."""
    known = {}
    for name in ELEMENTWISE:
        try:
            function = keras.activations.get(name)
        except (ValueError, TypeError):
            continue
        known.setdefault(function, name)
    return known


_KNOWN = _keras_functions()


def _relu_layer_kind(layer):
    """A `ReLU` layer: relu or leaky relu when only a slope is set; with a
    cap or a threshold, not known (its channels are protected)."""
    if layer.max_value is not None or float(layer.threshold) != 0.0:
        return None
    return "leaky_relu" if float(layer.negative_slope) != 0.0 else "relu"


def known_activation(function):
    """What `function` is, by object: a name of `ELEMENTWISE` (or
    "elementwise" for a known elementwise layer that is none of them), or
    None for a callable the library does not know.

    Layers are recognised by exact class: a subclass may compute anything.
    """
    if function is None:
        return "linear"
    kind = type(function)
    if kind is keras.layers.Activation:
        return known_activation(function.activation)
    if kind is keras.layers.LeakyReLU:
        return "leaky_relu"
    if kind is keras.layers.ReLU:
        return _relu_layer_kind(function)
    if kind is keras.layers.ELU:
        return "elu" if float(function.alpha) == 1.0 else _OTHER_ELEMENTWISE
    try:
        return _KNOWN.get(function)
    except TypeError:  # an unhashable callable
        return None


def activation_name(layer):
    """The name of `layer`'s fused activation, for messages ("linear" when
    it has none); an unknown callable is named by its `__name__` or class."""
    function = getattr(layer, "activation", None)
    known = known_activation(function)
    if known is not None and known != _OTHER_ELEMENTWISE:
        return known
    if isinstance(function, keras.layers.Activation):
        function = function.activation
    name = getattr(function, "__name__", None) or type(function).__name__
    if known is not None or str(getattr(function, "__module__", "")).startswith("keras"):
        return name
    return f"{name}, a callable not Keras' own"


def acts_per_channel(layer):
    """Whether the fused activation is a known elementwise function."""
    return known_activation(getattr(layer, "activation", None)) is not None


def commutes_with_scale(layer):
    """Whether a per-channel scale after `layer` may move before its activation."""
    return known_activation(getattr(layer, "activation", None)) in HOMOGENEOUS


def activation_flops(layer):
    """Elementwise FLOPs per output element of the fused activation (0 or 1)."""
    return 0 if known_activation(getattr(layer, "activation", None)) == "linear" else 1


def apply_activation(layer, values):
    """The layer's fused activation on a vector of constants (NaN stays NaN)."""
    values = np.asarray(values, "float64")
    if known_activation(getattr(layer, "activation", None)) == "linear" or values.size == 0:
        return values
    return apply_elementwise(layer.activation, values)


def apply_elementwise(function, values):
    """`function` (a Keras activation, layer or op) on a vector of constants."""
    unknown = np.isnan(values)
    probe = keras.ops.convert_to_tensor(np.nan_to_num(values)[None, :], "float32")
    out = np.asarray(keras.ops.convert_to_numpy(function(probe)), "float64")[0]
    return np.where(unknown, np.nan, out)
