"""Activations and other elementwise layers and ops: channels pass through,
and a removed channel's constant goes through the function."""

import numpy as np
from keras import layers

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.layer_support.record import register_layer
from keras_relaxprune.live_channels import LiveChannels


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
    name = getattr(node.operation.activation, "__name__", "")
    if name in ("softmax", "log_softmax"):
        tracer.protect(in_maps[0], f"{node.name}: {name} mixes channels")
    return [in_maps[0]]


def probe_constants(node, args, kwargs):
    """Calls the original operation with each input replaced by its constants."""
    import keras  # noqa: PLC0415

    def swap(value):
        if isinstance(value, LiveChannels):
            return keras.ops.convert_to_tensor(np.nan_to_num(value.const)[None, :], "float32")
        return value

    args, kwargs = keras.tree.map_structure(swap, (args, kwargs))
    return np.asarray(keras.ops.convert_to_numpy(node.operation(*args, **kwargs)), "float64")[0]


def remove_elementwise(stripper, node, ins, args, kwargs):
    (x,) = ins
    const = np.where(np.isnan(x.const), np.nan, probe_constants(node, args, kwargs))
    value = None if x.is_constant else stripper.call_clone(node, args, kwargs)
    return [LiveChannels(value, x.live, const)]


register_layer(layers.ReLU, layers.LeakyReLU, layers.ELU, *internals.ELEMENTWISE_OPS,
               channels=pass_through, cost=one_flop_per_output, remove=remove_elementwise)
register_layer(layers.Activation, channels=activation_channels, cost=one_flop_per_output,
               remove=remove_elementwise)
register_layer(layers.Identity, channels=pass_through, cost=free, remove=remove_elementwise)
