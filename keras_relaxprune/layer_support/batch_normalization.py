"""BatchNormalization over the channel axis: per-channel statistics, sliced."""

import numpy as np
from keras import layers

from keras_relaxprune.layer_support.record import GateFold, register_layer
from keras_relaxprune.live_channels import LiveChannels


def _normalizes_channels(node, rank):
    return node.operation.axis in (-1, rank - 1)


def batch_norm_channels(tracer, node, in_maps):
    rank = len(tracer.shape(node.inputs[0]))
    if not _normalizes_channels(node, rank):
        return tracer.barrier(node, f"normalises axis {node.operation.axis}, not channels")
    return [in_maps[0]]


def normalization_cost(shapes, layer, cin, cout):
    vectors = len(layer.weights)
    return vectors * cout, 0, shapes.out_positions * cout


def remove_batch_norm_channels(stripper, node, ins, args, kwargs):
    """Slices gamma, beta and the moving statistics; a removed channel's
    constant c becomes (c - mean) / sqrt(var + eps) * gamma + beta. The new
    layer always has gamma and beta, which gates fold into."""
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
    weights = [gamma[live], beta[live], mean[live], variance[live]]
    new_layer, value = stripper.build(node, x.value, weights, scale=True, center=True)
    stripper.foldable(new_layer)
    return [LiveChannels(value, live, const)]


def rebuild_channel_batch_norm(node, graph):
    """A channel-axis BN is always rebuilt, to take the gate after it."""
    return _normalizes_channels(node, len(graph.flat.tensors[node.inputs[0]].shape))


register_layer(layers.BatchNormalization, channels=batch_norm_channels,
               cost=normalization_cost, remove=remove_batch_norm_channels,
               gate_fold=GateFold(("gamma", "beta"), -1), regenerates_channels=True,
               rebuild_always=rebuild_channel_batch_norm)
