"""What a layer makes of a removed channel that holds a non-zero constant.

A removed channel is 0 after its gate, but the layers after the gate may
turn it into a constant (sigmoid(0) = 0.5, a `Rescaling` offset, the bias of
a layer whose every input was removed). Each layer the constant reaches
either absorbs it exactly into its bias (Dense, a 1x1 or 'valid'
convolution), carries it on as a per-channel constant (activations,
BatchNormalization, pooling, an unpadded depthwise convolution, ...), or
breaks it: zero padding or a join along space makes the channel differ
between positions, so it is no constant any later layer could take.

Where a removed channel stops being 0 is answered per node by
`value_made_from_zero`: for a layer whose record says it may change a zero
(`LayerSupport.changes_zero`: activations, elementwise ops, `x + c`,
`ops.maximum(x, c)`, `ReLU(threshold=...)`, `Rescaling`, `Resizing`), the
layer is run on zeros. `removed_constant_fate` answers from the layer's record
(`LayerSupport.constant_input`); `add_gates` protects up front the channels
whose constant would be broken (`graph/protection.py`), and `strip_pruning`
folds the absorbed ones into biases and refuses any other (`removal/strip.py`),
with the same answer, so a model accepted by one is never refused by the other.
"""

import math

import keras
import numpy as np

from keras_relaxprune.layer_support.record import changes_zero, find_support

ABSORBED = "absorbed"
CARRIED = "carried"
BROKEN = "broken"

UNIFORM = "uniform"
VARYING = "varying"


def removed_constant_fate(node, flat):
    """What the layer of `node` makes of a removed input channel's non-zero constant.

    Args:
        node: a node of `flat` (a `flat_graph.FlatNode`).
        flat: the flattened graph holding it.

    Returns:
        `ABSORBED` (folded exactly into its bias), `CARRIED` (a per-channel
        constant of its output, for the layers after it to take), `BROKEN`
        (no longer one value per channel: padding, a join along space), or
        None for a layer without a record (a barrier: its channels are
        protected already).
    """
    support = find_support(node.operation)
    if support is None:
        return None
    if support.constant_input is None:
        return CARRIED
    rank = len(flat.tensors[node.outputs[0]].shape)
    return support.constant_input(node.operation, rank)


def zero_padded(layer):
    """Whether a windowed layer pads its input with zeros (a constant channel
    then differs at the borders): padding other than 'valid' and a window
    larger than one position."""
    window = getattr(layer, "kernel_size", (1,))
    return getattr(layer, "padding", "valid") != "valid" and math.prod(window) > 1


def always_broken(layer, rank):
    """The `constant_input` rule of a layer that breaks any constant it reads
    (zero padding; a transposed or separable convolution)."""
    return BROKEN


def value_made_from_zero(node, flat, traced):
    """What the layer of `node` makes of removed channels (zeros) in its inputs.

    Args:
        node: a node of `flat`.
        flat: the flattened graph holding it.
        traced: keys of the tensors whose channels may be removed; the
            node's other inputs (never removed, or protected where they meet
            a removed channel) keep a non-zero filler.

    Returns:
        None where a removed channel stays 0 (or the record says the layer
        never changes a zero), `UNIFORM` where it becomes one non-zero value
        per channel, `VARYING` where its values differ between positions (a
        padding fill) or are not finite (1 / 0): no constant a later layer
        could take.
    """
    if not changes_zero(node.operation) or not any(key in traced for key in node.inputs):
        return None
    args, kwargs = node.fill_in(
        {key: _filler(flat.tensors[key], key in traced) for key in node.inputs}
    )
    try:
        out = keras.ops.convert_to_numpy(node.operation(*args, **kwargs))
    except Exception:  # a layer that cannot run on such inputs: assume the worst
        return VARYING
    out = np.asarray(out, "float64")
    if not np.all(np.isfinite(out)):
        return VARYING
    if out.ndim < 2 or not np.any(out != 0):
        return None
    per_channel = out.reshape(-1, out.shape[-1])
    return UNIFORM if np.all(per_channel == per_channel[:1]) else VARYING


def _filler(tensor, removed):
    """Zeros for removed channels, ones otherwise, of the tensor's shape
    (batch 1, unknown sizes 4) and dtype."""
    shape = [1] + [4 if size is None else size for size in tuple(tensor.shape)[1:]]
    dtype = getattr(tensor, "dtype", "float32")
    return keras.ops.zeros(shape, dtype) if removed else keras.ops.ones(shape, dtype)
