"""Cost model: parameters and FLOPs of every layer, dense, hard or relaxed.

One counter serves three purposes. Each layer's cost is written once, in
its `LayerSupport` record, as a function of its input and output channel
counts. Fed with full widths it is the dense cost; fed with the number of
channels whose `keep_mask` is 1 it is the hard cost (exactly what
`strip_pruning` keeps); fed with the sums of the gate values it is the
relaxed, differentiable cost used in the loss. FLOPs are 2 x
multiply-accumulates (MACs) of conv/depthwise/transposed/separable/dense
layers, plus one FLOP per output element of batch normalisation,
activations, merges and pooling.
"""

import math

from keras_relaxprune.errors import UnknownSpatialSizeError
from keras_relaxprune.layer_support import find_support


class LayerShapes:
    """Static shapes around a node, for the spatial factors of its cost."""

    def __init__(self, flat, tensors, params_only=False, gate_follows=False):
        self.flat = flat
        self.params_only = params_only
        self.gate_follows = gate_follows  # a ChannelGate reads the output
        self.in_shape = tuple(tensors[flat.inputs[0]].shape) if flat.inputs else ()
        self.out_shape = tuple(tensors[flat.outputs[0]].shape)

    def positions(self, shape):
        sizes = shape[1:-1]
        if any(size is None for size in sizes):
            if self.params_only:
                return 0
            raise UnknownSpatialSizeError(
                f"Layer '{self.flat.name}' has unknown spatial size {shape}: "
                "pass `input_shape=(H, W, C)` to count FLOPs."
            )
        return math.prod(sizes)

    @property
    def out_positions(self):
        return self.positions(self.out_shape)

    @property
    def in_positions(self):
        return self.positions(self.in_shape)


def node_cost(flat, tensors, cin, cout, params_only=False, gate_follows=False):
    """(params, macs, elementwise FLOPs) of one node for given channel counts.

    Layers without a cost rule (barriers, reshapes, padding, concatenation)
    cost their own weight count and no FLOPs: their channels are fixed, or
    they hold no per-channel weights.
    """
    support = find_support(flat.operation)
    if support is None or support.cost is None:
        params = flat.operation.count_params() if hasattr(flat.operation, "weights") else 0
        return params, 0, 0
    shapes = LayerShapes(flat, tensors, params_only, gate_follows)
    return support.cost(shapes, flat.operation, cin, cout)


def combines_inputs(operation):
    """Whether `operation` is an elementwise merge of several inputs."""
    support = find_support(operation)
    return support is not None and support.combines_inputs
