"""The stripped cost of a gated graph, updated incrementally as group masks change.

Used by `closing.close_budget`: a change of one group's mask recomputes
only the nodes that read that group (and the nodes downstream whose
collapse flips), each priced by the same rule as `count_flops`
(`node_cost`), so the totals follow `layer_costs(..., as_stripped=True)`.
"""

import dataclasses
import heapq

import numpy as np

from keras_relaxprune.cost.count import dense_channels, kept_channels, layer_costs
from keras_relaxprune.cost.node_cost import cost_nodes, node_cost, shared_params


@dataclasses.dataclass(frozen=True)
class Span:
    """A run of channels `[start, stop)` of the group `root` (None: fixed)."""

    root: object
    start: int
    stop: int


class CostPlan:
    """What stays fixed while closing: each node's `CostNode` and its channel
    maps with group roots resolved, which nodes read each group, the
    consumers of each tensor, the calls of each layer, the dense totals."""

    def __init__(self, graph):
        find = graph.groups.find

        def spans(channel_map):
            if channel_map is None:
                return None
            return [
                Span(None if s.group is None else find(s.group), s.start, s.stop)
                for s in channel_map
            ]

        self.graph, self.nodes = graph, cost_nodes(graph)
        self.in_spans = [spans(node.in_map) for node in self.nodes]
        self.out_spans = [spans(node.out_map) for node in self.nodes]
        self.output_spans = [[spans(m) for m in node.output_maps] for node in self.nodes]
        self.inner_spans = [spans(node.inner_map) for node in self.nodes]
        self.readers, self.producer, self.consumers, self.calls = {}, {}, {}, {}
        for index, node in enumerate(self.nodes):
            read = [self.in_spans[index] or [], self.out_spans[index] or []]
            read += [m for m in self.output_spans[index] if m]
            read += [self.inner_spans[index] or []]
            for root in {span.root for m in read for span in m if span.root is not None}:
                self.readers.setdefault(root, []).append(index)
            self.producer.update(dict.fromkeys(node.flat.outputs, index))
            for key in node.flat.inputs:
                self.consumers.setdefault(key, []).append(index)
            self.calls.setdefault(id(node.flat.operation), []).append(index)
        dense = layer_costs(graph, dense_channels)
        self.dense = {"flops": sum(c.flops for c in dense), "params": sum(c.params for c in dense)}
        # Seconds; 0 unless the graph has a latency model (`latency_model`).
        self.dense["latency"] = sum(c.latency for c in dense)


def _holds_constant(cost):
    """Whether a node's `NodeCost` makes a constant (it, or an output of it)."""
    return bool(cost.collapsed or cost.constant_outputs)


def _prefix(mask):
    return np.concatenate([[0], np.cumsum(mask, dtype="int64")])


class IncrementalCost:
    """Stripped remaining fraction of one metric, updated as group masks change.

    Follows `layer_costs(..., as_stripped=True)` node by node: a node's
    cost (`node_cost`) depends on the kept channels of its inputs and
    outputs and, through collapse, on which of its inputs are constants. A
    change of some groups' masks recomputes the nodes that read those
    groups, and the consumers of every node whose collapse flips, in graph
    order. `stats` counts evaluations and node recomputations (shared by
    copies).

    Two rules of `layer_costs` look upstream, which a node-by-node update
    cannot: a node whose outputs reach the model outputs only as constants,
    and a group whose every producer collapsed, cost nothing. Both need a
    constant somewhere (a collapsed node or a split part with no channel
    left); while there is one, the totals are recounted whole with
    `layer_costs` (with the closing's masks, where every group keeps a
    channel, only below a slice or split part whose channels are all
    removed).

    Args:
        plan: the graph's `CostPlan`.
        metric: `"flops"`, `"params"` or `"latency"` (with a latency model
            attached to the graph), the metric of `fraction`.
        sums: group root -> prefix sums of its 0/1 keep vector.
        stats: `{"evaluations": n, "nodes": m}`, counted in place.

    Example:

    >>> cost = IncrementalCost.build(graph, "flops", graph.keep_vectors())
    >>> fraction, change = cost.evaluate({root: smaller_mask})
    >>> cost.apply(change)
    """

    def __init__(self, plan, metric, sums, stats):
        self.plan, self.metric, self.sums, self.stats = plan, metric, sums, stats
        self.costs = []  # each node's NodeCost; a node reads its producers' ones
        for index in range(len(plan.nodes)):
            self.costs.append(self._node(index, {}, {}))
        self.constants = sum(_holds_constant(cost) for cost in self.costs)
        self.totals = self._summed({})
        if self.constants:
            self.totals = self._recounted({})

    @classmethod
    def build(cls, graph, metric, keep):
        """An `IncrementalCost` of `graph` for masks `keep` (root -> 0/1 vector)."""
        sums = {root: _prefix(mask) for root, mask in keep.items()}
        return cls(CostPlan(graph), metric, sums, {"evaluations": 1, "nodes": 0})

    def copy_with(self, masks):
        """A new count of the same plan with `masks` changed (shares `stats`)."""
        self.stats["evaluations"] += 1
        sums = {**self.sums, **{root: _prefix(m) for root, m in masks.items()}}
        return IncrementalCost(self.plan, self.metric, sums, self.stats)

    @property
    def fraction(self):
        return self.totals[self.metric] / self.plan.dense[self.metric]

    def evaluate(self, masks):
        """(fraction, change) with `masks` (root -> 0/1 vector); `apply(change)`
        makes it the current state."""
        self.stats["evaluations"] += 1
        plan, sums, changed = self.plan, {r: _prefix(m) for r, m in masks.items()}, {}
        queue = sorted({i for root in masks for i in plan.readers.get(root, ())})
        while queue:
            index = heapq.heappop(queue)
            if index in changed:
                continue
            new = changed[index] = self._node(index, sums, changed)
            old = self.costs[index]
            if (new.collapsed, new.constant_outputs) != (old.collapsed, old.constant_outputs):
                for key in plan.nodes[index].flat.outputs:
                    for consumer in plan.consumers.get(key, ()):
                        heapq.heappush(queue, consumer)
        constants = self.constants + sum(
            _holds_constant(new) - _holds_constant(self.costs[i]) for i, new in changed.items()
        )
        if constants:
            totals = self._recounted(sums)
        elif self.constants:
            # The totals were recounted whole: the per-node costs do not
            # add up to them, so they cannot be updated by differences.
            totals = self._summed(changed)
        else:
            calls = {id(plan.nodes[i].flat.operation) for i in changed}
            totals = {
                "flops": self.totals["flops"]
                + sum(new.flops - self.costs[i].flops for i, new in changed.items()),
                "params": self.totals["params"]
                + sum(self._call_params(c, changed) - self._call_params(c, {}) for c in calls),
                "latency": self.totals["latency"]
                + sum(new.latency - self.costs[i].latency for i, new in changed.items()),
            }
        return (
            totals[self.metric] / plan.dense[self.metric],
            _Change(sums, changed, totals, constants),
        )

    def apply(self, change):
        """Makes the `change` of an `evaluate` the current state."""
        self.totals, self.constants = change.totals, change.constants
        self.sums.update(change.sums)
        for index, new in change.costs.items():
            self.costs[index] = new

    def commit(self, masks):
        """`evaluate(masks)` and `apply` it; returns the new fraction."""
        fraction, change = self.evaluate(masks)
        self.apply(change)
        return fraction

    def _summed(self, changed):
        """Both totals as the sums of the node costs, with `changed` applied
        (exact while no node holds a constant)."""
        costs = [changed.get(index) or cost for index, cost in enumerate(self.costs)]
        return {
            "flops": sum(cost.flops for cost in costs),
            "params": sum(self._call_params(c, changed) for c in self.plan.calls),
            "latency": sum(cost.latency for cost in costs),
        }

    def _recounted(self, sums):
        """Both totals by `layer_costs`, with the masks of `sums` applied."""
        keep = {
            root: np.diff(prefix).astype("float32")
            for root, prefix in {**self.sums, **sums}.items()
        }
        graph = self.plan.graph
        costs = layer_costs(graph, kept_channels(graph, keep), as_stripped=True)
        return {
            "flops": sum(c.flops for c in costs),
            "params": sum(c.params for c in costs),
            "latency": sum(c.latency for c in costs),
        }

    def _call_params(self, call, changed):
        """A layer's weights, counted once over its calls (`shared_params`)."""
        return sum(
            shared_params(
                [changed.get(index) or self.costs[index] for index in self.plan.calls[call]]
            )
        )

    def _node(self, index, sums, changed):
        """The `NodeCost` of node `index`, with the masks of `sums` and the
        nodes already recomputed in `changed`."""
        self.stats["nodes"] += 1
        plan, node = self.plan, self.plan.nodes[index]
        live_inputs = 0
        for key in node.channel_inputs:
            producer = plan.producer.get(key)
            cost = None if producer is None else (changed.get(producer) or self.costs[producer])
            live_inputs += cost is None or not (cost.collapsed or key in cost.constant_outputs)
        cin = cout = None
        if node.tracked:
            cin = self._count(plan.in_spans[index], sums)
            cout = self._count(plan.out_spans[index], sums)
        output_counts = [
            None if m is None else self._count(m, sums) for m in plan.output_spans[index]
        ]
        inner = plan.inner_spans[index]
        inner = None if inner is None else self._count(inner, sums)
        return node_cost(node, cin, cout, live_inputs, output_counts, inner)

    def _count(self, spans, sums):
        total = 0
        for span in spans:
            if span.root is None:
                total += span.stop - span.start
            else:
                prefix = sums[span.root] if span.root in sums else self.sums[span.root]
                total += int(prefix[span.stop] - prefix[span.start])
        return total


@dataclasses.dataclass(frozen=True)
class _Change:
    """What an `evaluate` found: the new prefix sums, the recomputed nodes'
    costs, the totals and the number of nodes holding a constant."""

    sums: dict
    costs: dict
    totals: dict
    constants: int
