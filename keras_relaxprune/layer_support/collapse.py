"""Collapse: a layer or branch left with no live channel becomes a constant.

When every channel a layer reads was removed, or every channel it writes,
its output no longer depends on the input: it is a per-channel constant
(its bias through its activation, or what the gate after it zeroes). Such a
layer costs nothing and is not built. A residual `Add` fed by a collapsed
branch keeps its live inputs and adds the branch's constant as an offset.
`counting.py` (hard cost) and the removal rules both decide with
`emits_constant`, so the FLOPs counted are the FLOPs kept.
"""

import numpy as np
from keras import layers

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support.activations import apply_activation


def emits_constant(inputs_all_constant, outputs_kept):
    """Whether a node collapses: all its channel inputs are constants, or
    none of its output channels is kept."""
    return bool(inputs_all_constant) or outputs_kept == 0


def constant_output(layer, x, bias):
    """What a collapsed weighted layer emits: its bias through its activation
    when its inputs are constant; unknown (NaN) when its outputs were all
    removed, which the gate after it turns into zeros."""
    if x.is_constant:
        return LiveChannels.constant(apply_activation(layer, bias))
    return LiveChannels.constant(np.full(len(bias), np.nan))


def collapse_merge(stripper, node, ins, live):
    """A merge with constant inputs: the live sum plus a per-channel offset.

    `live` holds the inputs that are not constants, the widest first (a
    one-channel input broadcast over the others may follow)."""
    if not isinstance(node.operation, (layers.Add, *internals.ADD_OPS)):
        raise StripError(
            f"strip_pruning: an input of '{node.name}' ({node.class_name}) lost all "
            "its channels; only Add can absorb a collapsed branch. Exclude that branch."
        )
    channels = live[0].live
    # A one-channel input broadcast over the others (`Add` of (..., 1) and
    # (..., C)) gives its constant to every channel.
    offset = sum(
        x.const[channels] if len(x.const) > 1 else np.full(len(channels), x.const[0])
        for x in ins
        if x.is_constant
    )
    if np.isnan(offset).any():
        raise StripError(f"strip_pruning: a collapsed input of '{node.name}' is not constant.")
    total = live[0].value
    if len(live) > 1:
        total = layers.Add(name=node.operation.name)([x.value for x in live])
    if not np.any(offset):
        return total
    return layers.Rescaling(
        1.0, offset=offset.astype("float32"), name=f"{node.operation.name}_collapsed"
    )(total)
