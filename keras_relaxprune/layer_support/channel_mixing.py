"""Layers whose output for one channel depends on the others (normalising
over channels, softmax): their input channels are protected, never pruned."""

import numpy as np
from keras import layers

from keras_relaxprune.layer_support.batch_normalization import own_weight_count
from keras_relaxprune.layer_support.elementwise import remove_elementwise
from keras_relaxprune.layer_support.record import register_layer


def channel_mixing_channels(tracer, node, in_maps):
    # Removing a channel would change the statistics of the others.
    tracer.protect(in_maps[0], f"{node.name} ({node.class_name}) mixes channels")
    return [in_maps[0]]


def rescaling_channels(tracer, node, in_maps):
    layer = node.operation
    if np.size(layer.scale) > 1 or np.size(layer.offset) > 1:
        # Per-channel constants (e.g. a collapsed branch's offset): keep the
        # channels rather than slice the constants.
        tracer.protect(in_maps[0], f"{node.name} holds per-channel constants")
    return [in_maps[0]]


def mixing_cost(shapes, layer, cin, cout):
    """Its own weights (its channels are never removed; a LayerNormalization
    over several axes holds a gamma over all of them), one FLOP per output
    element."""
    return own_weight_count(layer), 0, shapes.out_positions * cout


register_layer(layers.LayerNormalization, channels=channel_mixing_channels, cost=mixing_cost)
register_layer(
    layers.GroupNormalization,
    layers.UnitNormalization,
    layers.Softmax,
    channels=channel_mixing_channels,
)
# A scalar Rescaling is elementwise; a per-channel one protects its channels.
register_layer(
    layers.Rescaling, channels=rescaling_channels, remove=remove_elementwise, changes_zero=True
)  # its offset
