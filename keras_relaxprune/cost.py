"""Cost model: parameters and FLOPs of every layer, dense, hard or relaxed.

One counter serves three purposes. Each layer's cost is written once as a
function of its input and output channel counts. Fed with full widths it is
the dense cost; fed with the number of channels whose `keep_mask` is 1 it is
the hard cost (exactly what `strip_pruning` keeps); fed with the sums of the
gate values it is the relaxed, differentiable cost used in the loss. FLOPs
are 2 x multiply-accumulates (MACs) of conv/depthwise/transposed/separable/
dense layers, plus one FLOP per output element of batch normalisation,
activations, merges and pooling.
"""

import math

from keras import layers

from keras_relaxprune import layer_kinds as kinds
from keras_relaxprune.gates import ChannelGate
from keras_relaxprune.registry import RuleRegistry

_REGISTRY = RuleRegistry()
# @cost_rule(LayerClass) registers `rule(shapes, layer, cin, cout) -> (params,
# macs, elementwise FLOPs)`.
cost_rule = _REGISTRY.register


class LayerShapes:
    """Static shapes around a node, for the spatial factors of its cost."""

    def __init__(self, flat, tensors):
        self.flat = flat
        self.in_shape = tuple(tensors[flat.inputs[0]].shape) if flat.inputs else ()
        self.out_shape = tuple(tensors[flat.outputs[0]].shape)

    def positions(self, shape):
        sizes = shape[1:-1]
        if any(size is None for size in sizes):
            raise ValueError(
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


def _fused_activation(layer):
    name = getattr(getattr(layer, "activation", None), "__name__", "linear")
    return 0 if name == "linear" else 1


def _bias(layer, cout):
    return cout if getattr(layer, "use_bias", False) else 0


@cost_rule(layers.Conv1D, layers.Conv2D, layers.Conv3D)
def _conv_cost(shapes, layer, cin, cout):
    # Grouped convs (groups > 1) are barriers: their widths never change.
    kernel = math.prod(layer.kernel_size) / getattr(layer, "groups", 1)
    macs = shapes.out_positions * kernel * cin * cout
    elementwise = _fused_activation(layer) * shapes.out_positions * cout
    return kernel * cin * cout + _bias(layer, cout), macs, elementwise


@cost_rule(layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
def _transposed_cost(shapes, layer, cin, cout):
    kernel = math.prod(layer.kernel_size)
    macs = shapes.in_positions * kernel * cin * cout
    elementwise = _fused_activation(layer) * shapes.out_positions * cout
    return kernel * cin * cout + _bias(layer, cout), macs, elementwise


@cost_rule(layers.DepthwiseConv1D, layers.DepthwiseConv2D)
def _depthwise_cost(shapes, layer, cin, cout):
    kernel = math.prod(layer.kernel_size)
    macs = shapes.out_positions * kernel * cout
    elementwise = _fused_activation(layer) * shapes.out_positions * cout
    return kernel * cout + _bias(layer, cout), macs, elementwise


@cost_rule(layers.SeparableConv1D, layers.SeparableConv2D)
def _separable_cost(shapes, layer, cin, cout):
    kernel = math.prod(layer.kernel_size)
    depth = cin * layer.depth_multiplier
    params = kernel * depth + depth * cout + _bias(layer, cout)
    macs = shapes.out_positions * (kernel * depth + depth * cout)
    elementwise = _fused_activation(layer) * shapes.out_positions * cout
    return params, macs, elementwise


@cost_rule(layers.Dense)
def _dense_cost(shapes, layer, cin, cout):
    rows = math.prod(shapes.out_shape[1:-1])
    elementwise = _fused_activation(layer) * rows * cout
    return cin * cout + _bias(layer, cout), rows * cin * cout, elementwise


@cost_rule(layers.BatchNormalization, layers.LayerNormalization)
def _normalization_cost(shapes, layer, cin, cout):
    vectors = len(layer.weights)
    return vectors * cout, 0, shapes.out_positions * cout


_ONE_FLOP_PER_OUTPUT = (
    *kinds.ACTIVATION_LAYERS, *kinds.MERGES, *kinds.POOLING, *kinds.ELEMENTWISE_OPS,
)


@cost_rule(*_ONE_FLOP_PER_OUTPUT)
def _elementwise_cost(shapes, layer, cin, cout):
    return 0, 0, shapes.out_positions * cout


@cost_rule(ChannelGate)
def _free(shapes, layer, cin, cout):
    return 0, 0, 0


def node_cost(flat, tensors, cin, cout):
    """(params, macs, elementwise FLOPs) of one node for given channel counts.

    Layers without a rule (barriers, reshapes, padding, concatenation) cost
    their own weight count and no FLOPs: their channels are fixed, so that
    count does not change with pruning.
    """
    rule = _REGISTRY.find(flat.operation)
    if rule is None:
        params = flat.operation.count_params() if hasattr(flat.operation, "weights") else 0
        return params, 0, 0
    return rule(LayerShapes(flat, tensors), flat.operation, cin, cout)
