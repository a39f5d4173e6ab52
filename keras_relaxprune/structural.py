"""Removal rules for layers and ops without per-channel weights.

Each rule gets the stripper, the node, its inputs as `LiveChannels` and the
call arguments, and returns the outputs as `LiveChannels`: which channels
survive, and what constant each removed channel holds after the node.
"""

import keras
import numpy as np
from keras import layers
from keras.src.ops import numpy as np_ops

from keras_relaxprune import layer_kinds as kinds
from keras_relaxprune import rules
from keras_relaxprune.errors import StripError
from keras_relaxprune.live_channels import LiveChannels
from keras_relaxprune.registry import RuleRegistry

REGISTRY = RuleRegistry()
structural_rule = REGISTRY.register


def _probe(flat, args, kwargs, const_of):
    """Calls the original operation with each input replaced by constants."""
    def swap(value):
        if isinstance(value, LiveChannels):
            return keras.ops.convert_to_tensor(np.nan_to_num(const_of(value))[None, :], "float32")
        return value

    args, kwargs = keras.tree.map_structure(swap, (args, kwargs))
    return np.asarray(keras.ops.convert_to_numpy(flat.operation(*args, **kwargs)), "float64")[0]


@structural_rule(layers.Identity, *kinds.ACTIVATION_LAYERS, *kinds.ELEMENTWISE_OPS)
def elementwise_rule(stripper, flat, ins, args, kwargs):
    (x,) = ins
    unknown = np.isnan(x.const)
    const = _probe(flat, args, kwargs, lambda v: v.const)
    const = np.where(unknown, np.nan, const)
    value = None if x.is_constant else stripper.call_clone(flat, args, kwargs)
    return [LiveChannels(value, x.live, const)]


_SPATIAL = (*kinds.REGULARIZATION, *kinds.POOLING, *kinds.RESAMPLING, layers.Flatten)


@structural_rule(*_SPATIAL)
def spatial_rule(stripper, flat, ins, args, kwargs):
    """Moves or pools positions: a uniform constant channel stays the same."""
    (x,) = ins
    value = None if x.is_constant else stripper.call_clone(flat, args, kwargs)
    return [LiveChannels(value, x.live, x.const)]


@structural_rule(*kinds.ZERO_PADDING)
def zero_padding_rule(stripper, flat, ins, args, kwargs):
    (x,) = ins
    const = np.where(x.const == 0, 0.0, np.nan)  # a non-zero constant gets a 0 border
    value = None if x.is_constant else stripper.call_clone(flat, args, kwargs)
    return [LiveChannels(value, x.live, const)]




@structural_rule(*kinds.MERGES)
def merge_rule(stripper, flat, ins, args, kwargs):
    live = [x for x in ins if not x.is_constant]
    if any(not np.array_equal(x.live, live[0].live) for x in live[1:]):
        raise StripError(f"strip_pruning: inputs of '{flat.name}' keep different channels.")
    const = _probe(flat, args, kwargs, lambda v: v.const)
    unknown = np.any([np.isnan(x.const) for x in ins], axis=0)
    const = np.where(unknown, np.nan, const)
    if not live:
        return [LiveChannels.constant(const)]
    if len(live) == len(ins):
        return [LiveChannels(stripper.call_clone(flat, args, kwargs), live[0].live, const)]
    return [LiveChannels(_collapse(stripper, flat, ins, live), live[0].live, const)]


def _collapse(stripper, flat, ins, live):
    """A merge with constant inputs: the live sum plus a per-channel offset."""
    if not isinstance(flat.operation, (layers.Add, np_ops.Add)):
        raise StripError(
            f"strip_pruning: an input of '{flat.name}' ({flat.class_name}) lost all "
            "its channels; only Add can absorb a collapsed branch. Exclude that branch."
        )
    channels = live[0].live
    offset = sum(x.const[channels] for x in ins if x.is_constant)
    if np.isnan(offset).any():
        raise StripError(f"strip_pruning: a collapsed input of '{flat.name}' is not constant.")
    total = live[0].value
    if len(live) > 1:
        total = layers.Add(name=flat.operation.name)([x.value for x in live])
    if not np.any(offset):
        return total
    return layers.Rescaling(1.0, offset=offset.astype("float32"),
                            name=f"{flat.operation.name}_collapsed")(total)


@structural_rule(layers.Concatenate, np_ops.Concatenate)
def concatenate_rule(stripper, flat, ins, args, kwargs):
    rank = len(stripper.graph.flat.tensors[flat.outputs[0]].shape)
    if flat.operation.axis not in (-1, rank - 1):
        return merge_rule(stripper, flat, ins, args, kwargs)
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
    name = getattr(flat.operation, "name", None)
    value = (layers.Concatenate(axis=-1, name=name)(parts)
             if isinstance(flat.operation, layers.Layer) else keras.ops.concatenate(parts, axis=-1))
    return [LiveChannels(value, live, const)]


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


def _channel_range(stripper, key, position, x, start, stop):
    """The part of `x` for original channels `start:stop`, as LiveChannels."""
    inside = x.live[(x.live >= start) & (x.live < stop)]
    lo, hi = int(np.searchsorted(x.live, start)), int(np.searchsorted(x.live, stop))
    if hi <= lo or x.is_constant:
        return LiveChannels(None, inside - start, x.const[start:stop])
    if key is not None:
        stripper.inherit_fold(key, position, lo, hi)
    whole = lo == 0 and hi == len(x.live)
    value = x.value if whole else x.value[..., lo:hi]
    return LiveChannels(value, inside - start, x.const[start:stop], origin=(x.value, lo, hi))


@structural_rule(np_ops.Split)
def split_rule(stripper, flat, ins, args, kwargs):
    (x,) = ins
    tensors = stripper.graph.flat.tensors
    rank = len(tensors[flat.inputs[0]].shape)
    if flat.operation.axis not in (-1, rank - 1):
        values = stripper.call_clone(flat, args, kwargs)
        return [LiveChannels(v, x.live, x.const) for v in values]
    sizes = [tensors[key].shape[-1] for key in flat.outputs]
    offsets = [int(v) for v in np.cumsum([0] + sizes)]
    return [_channel_range(stripper, flat.inputs[0], i, x, lo, hi)
            for i, (lo, hi) in enumerate(zip(offsets, offsets[1:]))]


@structural_rule(np_ops.GetItem)
def get_item_rule(stripper, flat, ins, args, kwargs):
    (x,) = ins
    rank = len(stripper.graph.flat.tensors[flat.inputs[0]].shape)
    key = rules.normalized_key(flat.node.arguments.args[1], rank)
    start, stop, _ = key[-1].indices(x.width)
    if all(k == slice(None) for k in key[:-1]):
        return [_channel_range(stripper, flat.inputs[0], 0, x, start, stop)]
    spatial = key[:-1] + (slice(None),)
    value = None if x.is_constant else x.value[spatial]
    sliced = LiveChannels(value, x.live, x.const)
    return [_channel_range(stripper, None, 0, sliced, start, stop)]
