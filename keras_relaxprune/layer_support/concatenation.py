"""Concatenation along channels joins the inputs' channel maps; along
another axis it is a merge of tied inputs."""

import keras
import numpy as np
from keras import layers

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.channel_maps import concat_maps
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.record import register_layer
from keras_relaxprune.layer_support.removed_constants import BROKEN, CARRIED


def _on_channels(operation, rank):
    return operation.axis in (-1, rank - 1)


def concatenation_constant_input(operation, rank):
    """Along another axis than the channels' another input may hold another
    value of the same channel: no longer one constant per channel."""
    return CARRIED if _on_channels(operation, rank) else BROKEN


def concatenate_channels(tracer, node, in_maps):
    if _on_channels(node.operation, len(tracer.shape(node.outputs[0]))):
        return [concat_maps(in_maps)]
    return [tracer.tie(node, in_maps)]


def remove_concatenated_channels(stripper, node, ins, args, kwargs):
    if not _on_channels(node.operation, len(stripper.graph.flat.tensors[node.outputs[0]].shape)):
        return _remove_tied_channels(stripper, node, ins, args, kwargs)
    offsets = np.cumsum([0] + [x.width for x in ins])
    live = np.concatenate([x.live + offset for x, offset in zip(ins, offsets)])
    const = np.concatenate([x.const for x in ins])
    parts = [x.value for x in ins if not x.is_constant]
    if not parts:
        return [LiveChannels.constant(const)]
    base = _consecutive_slices([x for x in ins if not x.is_constant])
    if base is not None:
        return [LiveChannels(base, live, const)]
    if len(parts) == 1:
        return [LiveChannels(parts[0], live, const)]
    name = getattr(node.operation, "name", None)
    value = (
        layers.Concatenate(axis=-1, name=name)(parts)
        if isinstance(node.operation, layers.Layer)
        else keras.ops.concatenate(parts, axis=-1)
    )
    return [LiveChannels(value, live, const)]


def _remove_tied_channels(stripper, node, ins, args, kwargs):
    """Concatenation along another axis: inputs keep the same channels; a
    removed channel is a known constant only where all inputs agree."""
    if any(x.is_constant for x in ins):
        if all(x.is_constant for x in ins):
            return [LiveChannels.constant(_agreed(ins))]
        raise StripError(
            f"strip_pruning: an input of '{node.name}' ({node.class_name}) lost all "
            "its channels but the others did not; exclude that branch from pruning."
        )
    if any(not np.array_equal(x.live, ins[0].live) for x in ins[1:]):
        raise StripError(f"strip_pruning: inputs of '{node.name}' keep different channels.")
    value = stripper.call_clone(node, args, kwargs)
    return [LiveChannels(value, ins[0].live, _agreed(ins))]


def _agreed(ins):
    consts = np.stack([x.const for x in ins])
    return np.where(np.all(consts == consts[0], axis=0), consts[0], np.nan)


def _consecutive_slices(parts):
    """The tensor that `parts` slice back to back, whole; else None."""
    origins = [x.origin for x in parts]
    if any(o is None for o in origins) or any(o[0] is not origins[0][0] for o in origins):
        return None
    bounds = [(lo, hi) for _, lo, hi in origins]
    contiguous = all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    base = origins[0][0]
    if contiguous and bounds[0][0] == 0 and bounds[-1][1] == base.shape[-1]:
        return base
    return None


register_layer(
    layers.Concatenate,
    *internals.CONCATENATE_OPS,
    channels=concatenate_channels,
    remove=remove_concatenated_channels,
    constant_input=concatenation_constant_input,
)
