"""Activations and other elementwise layers and ops: channels pass through,
and a removed channel's constant goes through the function."""

import keras
import numpy as np
from keras import layers

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.record import register_layer


def pass_through(tracer, node, in_maps):
    """Channel i of the output is channel i of the (first) input."""
    if getattr(node.operation, "data_format", "channels_last") == "channels_first":
        return tracer.barrier(node, "channels_first data format")
    return [in_maps[0]]


def free(shapes, layer, cin, cout):
    return 0, 0, 0


def one_flop_per_output(shapes, layer, cin, cout):
    return 0, 0, shapes.out_positions * cout


def activation_channels(tracer, node, in_maps):
    # An unknown activation protects the channels (`protection.py`, with a warning).
    return [in_maps[0]]


def probe_constants(node, args, kwargs):
    """Calls the original operation with each input replaced by its constants.

    Unknown constants (NaN) are tried at two values of opposite signs; a
    result that does not depend on them (0 * anything) is known, others are
    NaN.
    """

    def run(fill):
        def swap(value):
            if isinstance(value, LiveChannels):
                const = np.where(np.isnan(value.const), fill, value.const)
                return keras.ops.convert_to_tensor(const[None, :], "float32")
            return value

        filled = keras.tree.map_structure(swap, (args, kwargs))
        out = node.operation(*filled[0], **filled[1])
        return np.asarray(keras.ops.convert_to_numpy(out), "float64")[0]

    low, high = run(-1.7), run(2.3)
    return np.where(low == high, low, np.nan)


def remove_elementwise(stripper, node, ins, args, kwargs):
    (x,) = ins
    const = probe_constants(node, args, kwargs)
    value = None if x.is_constant else stripper.call_clone(node, args, kwargs)
    return [LiveChannels(value, x.live, const)]


register_layer(
    layers.LeakyReLU,
    layers.ELU,
    channels=pass_through,
    cost=one_flop_per_output,
    remove=remove_elementwise,
)


def relu_changes_zero(layer):
    """`ReLU(threshold=0.5, negative_slope=0.1)` maps 0 to -0.05."""
    return float(layer.threshold) > 0 and float(layer.negative_slope) != 0


register_layer(
    layers.ReLU,
    channels=pass_through,
    cost=one_flop_per_output,
    remove=remove_elementwise,
    changes_zero=relu_changes_zero,
)
# Ops and `Activation` may compute any function, sigmoid(0) = 0.5 and
# exp(0) = 1 included (`removed_constants.value_made_from_zero` tells).
register_layer(
    *internals.ELEMENTWISE_OPS,
    channels=pass_through,
    cost=one_flop_per_output,
    remove=remove_elementwise,
    changes_zero=True,
)
register_layer(
    layers.Activation,
    channels=activation_channels,
    cost=one_flop_per_output,
    remove=remove_elementwise,
    changes_zero=True,
)
register_layer(
    layers.Identity, channels=pass_through, cost=free, remove=remove_elementwise, passes_scale=True
)
