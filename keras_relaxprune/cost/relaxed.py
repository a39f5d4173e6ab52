"""`GraphCost`: the remaining-cost fractions the in-graph budget reads.

The same per-node rule as `count_flops` (`node_cost`), with each gated
group's channel count replaced by a sum over its channels of a backend
vector: the gate values (the relaxed, differentiable cost in the loss) or
the keep masks (the masks-only cost that stops gate freezing).

Collapse is left out on purpose: the rule's collapse needs a channel count
of exactly 0, which a sum of gate values never is, and a keep-mask count
reaches it only below a slice or split part whose channels are all removed
(freezing keeps every group's strongest channel, and the closing every
group's floor). There the count without collapse is larger, never smaller,
than the stripped count, so freezing errs toward removing more, and the
closing, counted as stripped by the closing's incremental count, sets the
final masks. Collapse in-graph would add a branch per node to every
training step for that case alone.
"""

from keras import ops

from keras_relaxprune.cost.count import dense_channels, layer_costs
from keras_relaxprune.cost.node_cost import cost_nodes, node_cost, shared_params
from keras_relaxprune.latency.latency_model import has_latency


class GraphCost:
    """Remaining-cost fractions of a gated model, as backend tensors.

    `GraphCost(graph).fractions(vector_of)` returns `{"flops": f, "params":
    p}` (and `"latency"` when the graph has a latency model): the cost
    with each gated group's channel count replaced by the sum of
    `vector_of(gate)` over its channels, divided by the dense cost (same
    rule, every layer counted, shortcuts and classifier included).
    `vector_of=soft_gates` gives the differentiable cost used in the loss;
    `vector_of=keep_masks` gives the masks-only cost (without collapse).

    Args:
        graph: the `ChannelGraph` of a gated model (`analyze`).

    Example:

    >>> cost = GraphCost(analyze(gated))
    >>> float(cost.fractions(keep_masks)["flops"])
    1.0
    """

    def __init__(self, graph):
        self.graph = graph
        self.nodes = cost_nodes(graph)
        dense = layer_costs(graph, dense_channels)
        self.dense_flops = float(sum(c.flops for c in dense))
        self.dense_params = float(sum(c.params for c in dense))
        # With a latency model (`latency_model`): seconds, interpolated in
        # its table at the relaxed widths, differentiable in the gates.
        self.dense_latency = float(sum(c.latency for c in dense)) if has_latency(graph) else None
        self.calls = {}
        for index, node in enumerate(self.nodes):
            self.calls.setdefault(id(node.flat.operation), []).append(index)

    def _count(self, vector_of):
        """`count(channel_map)` as a sum of `vector_of(gate)`; each gate's
        vector and each map's sum is computed once per evaluation (the
        output of one node is the input of the next)."""
        groups, gates, vectors, totals = self.graph.groups, self.graph.gates, {}, {}

        def count(channel_map):
            key = tuple((segment.group, segment.start, segment.stop) for segment in channel_map)
            if key in totals:
                return totals[key]
            total = 0.0
            for segment in channel_map:
                root = None if segment.group is None else groups.find(segment.group)
                if root is None or root not in gates or groups.is_protected(root):
                    total = total + segment.length
                    continue
                if root not in vectors:
                    vectors[root] = vector_of(gates[root])
                total = total + ops.sum(vectors[root][segment.start : segment.stop])
            totals[key] = total
            return total

        return count

    def fractions(self, vector_of):
        count = self._count(vector_of)
        costs = []
        for node in self.nodes:
            cin = count(node.in_map) if node.tracked else None
            cout = count(node.out_map) if node.tracked else None
            inner = None if node.inner_map is None else count(node.inner_map)
            costs.append(node_cost(node, cin, cout, len(node.channel_inputs), inner=inner))
        params = [0] * len(costs)
        for indices in self.calls.values():
            for index, value in zip(indices, shared_params([costs[i] for i in indices])):
                params[index] = value
        flops = sum(cost.flops for cost in costs)
        fractions = {"flops": flops / self.dense_flops, "params": sum(params) / self.dense_params}
        if self.dense_latency:
            fractions["latency"] = sum(cost.latency for cost in costs) / self.dense_latency
        return fractions


def soft_gates(gate):
    """A gate's values `sigmoid(scale * logits) * keep_mask`: the relaxed count."""
    return gate.gate_values()


def keep_masks(gate):
    """A gate's 0/1 keep mask: the masks-only count."""
    return ops.convert_to_tensor(gate.keep_mask)
