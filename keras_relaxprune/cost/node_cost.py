"""The one per-node cost rule: what a node costs for given channel counts.

Every count of the library reads this rule: `count_flops`/`count_params`
(channel counts from the keep masks), the closing's incremental count (the
same, updated group by group) and the in-graph budget (sums of gate values
or keep masks, as backend tensors). The per-layer part (a convolution's
kernel, a BatchNormalization's vectors) is the `cost` function of the
layer's `LayerSupport` record; this module adds what holds for every node:

- a merge (`Add`, `Multiply`, ...) costs one FLOP per output element for
  each live input beyond the first (the merge factor);
- counted as stripped, a node whose channel inputs are all constants, or
  that keeps no output channel, collapses: it costs nothing, and its
  outputs are constants; so is a split part with no channel left;
- a layer called several times has its weights counted once, at its first
  call that does not collapse (`shared_params`).

FLOPs are 2 x multiply-accumulates (MACs) plus elementwise FLOPs (one per
output element of batch normalisation, activations, merges and pooling).
"""

import dataclasses
import math

from keras_relaxprune.errors import UnknownSpatialSizeError
from keras_relaxprune.layer_support import find_support
from keras_relaxprune.layer_support.collapse import emits_constant


@dataclasses.dataclass(frozen=True)
class NodeCost:
    """What one node costs, and whether stripping turns it into a constant.

    Attributes:
        params: weights the node holds (a shared layer's at each call; see
            `shared_params`).
        macs: multiply-accumulates of one forward pass of one sample.
        elementwise: elementwise FLOPs (one per output element of a
            normalisation, activation, merge or pooling).
        collapsed: counted as stripped, the node emits a constant and is not
            built (then every cost is 0).
        constant_outputs: keys of its outputs that hold no channel once
            stripped (a split part whose channels are all removed).
        latency: seconds on the latency table's target (0 when the graph
            has no latency model: `latency.latency_model`).
    """

    params: float = 0
    macs: float = 0
    elementwise: float = 0
    collapsed: bool = False
    constant_outputs: frozenset = frozenset()
    latency: float = 0

    @property
    def flops(self):
        return 2 * self.macs + self.elementwise


COLLAPSED = NodeCost(collapsed=True)


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


class CostNode:
    """The fixed facts the rule reads about one node of a channel graph.

    Attributes:
        flat: the graph's node (`flat.operation`, `flat.inputs`, ...).
        in_map: the channel map of its first input; None when channels
            are not tracked through the node.
        out_map: the channel map of its first output, or None likewise.
        output_maps: the channel map of every output (None: untracked).
        inner_map: the channel map of the channels inside the node (a
            `MultiHeadAttention`'s heads), whose count its cost reads too;
            None for most nodes.
        channel_inputs: keys of the inputs whose channels are tracked.
        combines_inputs: the node is an elementwise merge.
        weight_count: its weights, for a node whose channels are untracked.
    """

    def __init__(self, graph, index, params_only=False, gated=frozenset()):
        flat = self.flat = graph.flat.nodes[index]
        in_maps, out_maps = graph.in_maps(index), graph.out_maps(index)
        tracked = bool(in_maps) and in_maps[0] is not None and out_maps[0] is not None
        self.in_map = in_maps[0] if tracked else None
        self.out_map = out_maps[0] if tracked else None
        self.output_maps = list(out_maps) if tracked else []
        self.inner_map = graph.inner_maps.get(index) if tracked else None
        self.channel_inputs = tuple(k for k, m in zip(flat.inputs, in_maps) if m is not None)
        support = find_support(flat.operation)
        self.combines_inputs = support is not None and support.combines_inputs
        self.weight_count = sum(math.prod(w.shape) for w in getattr(flat.operation, "weights", []))
        self._layer_cost = support.cost if support is not None else None
        latency_model = getattr(graph, "latency_model", None)
        self._latency = None if latency_model is None else latency_model.node_function(index)
        self._shapes = (
            LayerShapes(flat, graph.flat.tensors, params_only, flat.outputs[0] in gated)
            if tracked
            else None
        )
        self._memo = {}

    @property
    def tracked(self):
        return self.in_map is not None

    def layer_cost(self, cin, cout, inner=None):
        """The `LayerSupport` record's cost for `cin` input and `cout` output
        channels, and `inner` channels inside the node where it has an
        `inner_map` (memoised for integer counts); a layer without a cost
        rule costs its own weights and no FLOPs."""
        if self._layer_cost is None:
            return NodeCost(params=self.weight_count)
        counts = (cin, cout) if inner is None else (cin, cout, inner)
        memo = all(isinstance(count, int) for count in counts)
        if memo and counts in self._memo:
            return self._memo[counts]
        # A record's cost function returns (params, macs, elementwise).
        params, macs, elementwise = self._layer_cost(self._shapes, self.flat.operation, *counts)
        latency = 0 if self._latency is None else self._latency(cin, cout, elementwise)
        cost = NodeCost(params=params, macs=macs, elementwise=elementwise, latency=latency)
        if memo:
            self._memo[counts] = cost
        return cost


def cost_nodes(graph, params_only=False):
    """One `CostNode` per node of `graph`, in graph order."""
    gated = frozenset(graph.gated_tensors())
    return [CostNode(graph, index, params_only, gated) for index in range(len(graph.flat.nodes))]


def node_cost(node, cin, cout, live_inputs, output_counts=None, inner=None):
    """What `node` costs: the one rule every count of the library applies.

    Args:
        node: a `CostNode`.
        cin: channels of its first input (a number or a backend scalar; a
            relaxed count is a sum of gate values). Ignored when untracked.
        cout: channels of its first output, likewise.
        live_inputs: how many of its channel inputs are not constants (all
            of them, unless counted as stripped).
        output_counts: the channels kept in each output, one per
            `node.output_maps` (None where untracked), to count the node as
            stripped: it then collapses when every channel input is a
            constant or no output keeps a channel. None: no collapse (a
            relaxed count, whose counts are never exactly 0).
        inner: channels kept of `node.inner_map` (None where it has none).

    Returns:
        A `NodeCost`.
    """
    constant_outputs = frozenset()
    if output_counts is not None:
        widest = max((c for c in output_counts if c is not None), default=None)
        if emits_constant(bool(node.channel_inputs) and not live_inputs, widest):
            return COLLAPSED
        constant_outputs = frozenset(
            key for key, count in zip(node.flat.outputs, output_counts) if count == 0
        )
    if not node.tracked:
        return NodeCost(params=node.weight_count, constant_outputs=constant_outputs)
    cost = node.layer_cost(cin, cout, inner)
    if node.combines_inputs:
        cost = dataclasses.replace(cost, elementwise=cost.elementwise * max(live_inputs - 1, 0))
    if constant_outputs:
        cost = dataclasses.replace(cost, constant_outputs=constant_outputs)
    return cost


def shared_params(call_costs):
    """The params each call of one layer counts, from its calls' `NodeCost`s
    in graph order: its weights once, at the first call not collapsed."""
    first = next((i for i, cost in enumerate(call_costs) if not cost.collapsed), None)
    return [cost.params if i == first else 0 for i, cost in enumerate(call_costs)]
