"""BatchNormalization over the channel axis: per-channel statistics, sliced."""

import math

import keras
import numpy as np
from keras import layers

from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.record import GateFold, register_layer


def _normalizes_channels(node, rank):
    return _normalizes_channels_of(node.operation, rank)


def batch_norm_channels(tracer, node, in_maps):
    rank = len(tracer.shape(node.inputs[0]))
    if not _normalizes_channels(node, rank):
        return tracer.barrier(node, f"normalises axis {node.operation.axis}, not channels")
    return [in_maps[0]]


def normalization_cost(shapes, layer, cin, cout):
    """One vector per weight over the `cout` channels, one FLOP per output
    element. A BN over another axis (`axis=1` on a channels-last map, a
    barrier) keeps its weights whatever the channels."""
    if not _normalizes_channels_of(layer, len(shapes.in_shape)):
        return own_weight_count(layer), 0, shapes.out_positions * cout
    # A BN without gamma gets one when stripped if a gate folds into it.
    vectors = len(layer.weights) + bool(shapes.gate_follows and not getattr(layer, "scale", True))
    return vectors * cout, 0, shapes.out_positions * cout


def own_weight_count(layer):
    """The number of weights `layer` holds (what `count_params` counts)."""
    return sum(math.prod(w.shape) for w in layer.weights)


def _normalizes_channels_of(layer, rank):
    return layer.axis in (-1, rank - 1)


def remove_batch_norm_channels(stripper, node, ins, args, kwargs):
    """Slices gamma, beta and the moving statistics; a removed channel's
    constant c becomes (c - mean) / sqrt(var + eps) * gamma + beta. The new
    layer has a gamma when a gate follows (the gate folds into it)."""
    (x,) = ins
    layer = node.operation
    width = x.width
    gamma = layer.gamma.numpy() if layer.scale else np.ones(width)
    beta = layer.beta.numpy() if layer.center else np.zeros(width)
    mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    const = (x.const - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta
    if x.is_constant:
        return [LiveChannels.constant(const)]
    live = x.live
    old = {_weight_name(w): keras.ops.convert_to_numpy(w) for w in layer.weights}
    old.update(gamma=gamma, beta=beta)

    def weights(new_layer):  # every per-channel vector it has (renorm's too), sliced
        return [old[_weight_name(w)][live] for w in new_layer.weights]

    gated = node.outputs[0] in stripper.gated_tensors
    new_layer, value = stripper.build(node, x.value, weights, scale=layer.scale or gated)
    stripper.foldable(new_layer)
    return [LiveChannels(value, live, const)]


def has_moving_statistics(layer):
    """Whether `layer` keeps BatchNormalization's moving mean and variance,
    which its calls in training mode update (any subclass too: recalibrating
    reads and writes only those statistics, whatever its `call` does)."""
    return isinstance(layer, layers.BatchNormalization)


def _weight_name(variable):
    return variable.path.rsplit("/", 1)[-1]


def rebuild_channel_batch_norm(node, graph):
    """A channel-axis BN is always rebuilt, to take the gate after it."""
    return _normalizes_channels(node, len(graph.flat.tensors[node.inputs[0]].shape))


register_layer(
    layers.BatchNormalization,
    channels=batch_norm_channels,
    cost=normalization_cost,
    remove=remove_batch_norm_channels,
    gate_fold=GateFold(("gamma", "beta"), -1),
    regenerates_channels=True,
    rebuild_always=rebuild_channel_batch_norm,
    takes_producer_gate=True,
    is_batch_normalization=True,
)
