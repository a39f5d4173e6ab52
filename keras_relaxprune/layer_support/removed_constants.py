"""What a layer makes of a removed channel that holds a non-zero constant.

A removed channel is 0 after its gate, but the layers after the gate may
turn it into a constant (sigmoid(0) = 0.5, a `Rescaling` offset, the bias of
a layer whose every input was removed). Each layer the constant reaches
either absorbs it exactly into its bias (Dense, a 1x1 or 'valid'
convolution), carries it on as a per-channel constant (activations,
BatchNormalization, pooling, an unpadded depthwise convolution, ...), or
breaks it: zero padding or a join along space makes the channel differ
between positions, so it is no constant any later layer could take.

`removed_constant_fate` answers from the layer's record
(`LayerSupport.constant_input`); `add_gates` protects up front the channels
whose constant would be broken (`graph/protection.py`), and `strip_pruning`
folds the absorbed ones into biases and refuses any other (`removal/strip.py`),
with the same answer, so a model accepted by one is never refused by the other.
"""

import math

from keras_relaxprune.layer_support.record import find_support

ABSORBED = "absorbed"
CARRIED = "carried"
BROKEN = "broken"


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
