"""Elementwise merges (`Add`, `Multiply`, ... and their raw ops): inputs of
equal width are tied into one channel group; a branch that lost every
channel collapses into the others (`collapse.collapse_merge`)."""

import keras
import numpy as np
from keras import layers

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.collapse import collapse_merge
from keras_relaxprune.layer_support.elementwise import one_flop_per_output, probe_constants
from keras_relaxprune.layer_support.record import register_layer

MERGE_LAYERS = (
    layers.Add,
    layers.Subtract,
    layers.Average,
    layers.Maximum,
    layers.Minimum,
)
# The product ops get their own record (`multiplies_inputs`).
_SUM_LIKE_OPS = tuple(op for op in internals.MERGE_OPS if op not in internals.MULTIPLY_OPS)


def merge_channels(tracer, node, in_maps):
    return [tracer.tie(node, in_maps)]


def binary_op_channels(tracer, node, in_maps):
    constants = [a for a in node.call_args if not isinstance(a, keras.KerasTensor)]
    if any(np.size(c) > 1 for c in constants):
        return tracer.barrier(node, "combines channels with a constant array")
    return [tracer.tie(node, in_maps)]


def remove_merged_channels(stripper, node, ins, args, kwargs):
    """Inputs of the full width keep the same channels; a one-channel input
    broadcast over them is protected, so whole, and broadcasts again."""
    width = max(x.width for x in ins)
    wide = [x for x in ins if not x.is_constant and x.width == width]
    if any(not np.array_equal(x.live, wide[0].live) for x in wide[1:]):
        raise StripError(f"strip_pruning: inputs of '{node.name}' keep different channels.")
    const = probe_constants(node, args, kwargs)
    live = [x for x in ins if not x.is_constant]
    if not wide:
        return [LiveChannels.constant(const)]
    if len(live) == len(ins):
        return [LiveChannels(stripper.call_clone(node, args, kwargs), wide[0].live, const)]
    live = wide + [x for x in live if x.width != width]
    return [LiveChannels(collapse_merge(stripper, node, ins, live), wide[0].live, const)]


register_layer(
    *MERGE_LAYERS,
    channels=merge_channels,
    cost=one_flop_per_output,
    remove=remove_merged_channels,
    combines_inputs=True,
)
register_layer(
    layers.Multiply,
    channels=merge_channels,
    cost=one_flop_per_output,
    remove=remove_merged_channels,
    combines_inputs=True,
    multiplies_inputs=True,
)
# With a scalar (`x + 1.0`, `ops.maximum(x, 0.5)`, `x / 2.0`, `x ** 2`,
# `x > 0`) a removed channel's 0 may become another value.
register_layer(
    *_SUM_LIKE_OPS,
    *internals.SCALAR_OPS,
    channels=binary_op_channels,
    cost=one_flop_per_output,
    remove=remove_merged_channels,
    combines_inputs=True,
    changes_zero=True,
)
# `ops.where(x > 0, x, 0.1)`: its tensors are tied like a merge's, one FLOP
# per output element.
register_layer(
    *internals.WHERE_OPS,
    channels=binary_op_channels,
    cost=one_flop_per_output,
    remove=remove_merged_channels,
    changes_zero=True,
)
register_layer(
    *internals.MULTIPLY_OPS,
    channels=binary_op_channels,
    cost=one_flop_per_output,
    remove=remove_merged_channels,
    combines_inputs=True,
    multiplies_inputs=True,
)
