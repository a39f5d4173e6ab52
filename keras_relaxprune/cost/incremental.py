"""The hard cost of a gated graph, updated incrementally as group masks change.

Used by `projection.close_budget`: a change of one group's mask recomputes
only the layers that read that group (and the nodes downstream whose
constant/live status flips), following `counting.layer_costs(..., hard=True)`.
"""

import heapq

import numpy as np

from keras_relaxprune.cost.count import hard_count, layer_costs
from keras_relaxprune.cost.node_cost import combines_inputs, node_cost
from keras_relaxprune.layer_support.collapse import emits_constant


class CostPlan:
    """What stays fixed while closing: each node's first input and output
    channel maps (group roots resolved), its channel inputs, which nodes read
    each group, the consumers of each tensor, the calls of each layer."""

    def __init__(self, graph):
        find, flat = graph.groups.find, graph.flat
        self.graph, self.nodes, self.readers, self.memo = graph, [], {}, {}
        self.producer, self.consumers, self.calls = {}, {}, {}
        for index, node in enumerate(flat.nodes):
            in_maps, out_maps = graph.in_maps(index), graph.out_maps(index)
            known = bool(in_maps) and in_maps[0] is not None and out_maps[0] is not None
            def segments(m):
                return [(None if s.group is None else find(s.group), s.start, s.stop)
                        for s in m]

            maps = [segments(in_maps[0]), segments(out_maps[0])] if known else []
            # Every output's channels: a split part with none left is a constant.
            parts = [segments(m) if m is not None else None for m in out_maps] if known else []
            weights = getattr(node.operation, "weights", [])
            self.nodes.append({
                "maps": maps, "parts": parts, "merge": combines_inputs(node.operation),
                "inputs": [k for k, m in zip(node.inputs, in_maps) if m is not None],
                "params": sum(int(np.prod(w.shape)) for w in weights),
                "outputs": node.outputs, "call": id(node.operation)})
            for root in {s[0] for m in maps + [p for p in parts if p]
                         for s in m if s[0] is not None}:
                self.readers.setdefault(root, []).append(index)
            self.producer.update(dict.fromkeys(node.outputs, index))
            for key in node.inputs:
                self.consumers.setdefault(key, []).append(index)
            self.calls.setdefault(id(node.operation), []).append(index)
        self.gated = graph.gated_tensors()
        dense = layer_costs(graph, lambda m: sum(s.length for s in m))
        self.dense = {"flops": sum(c.flops for c in dense),
                      "params": sum(c.params for c in dense)}

    def node_cost(self, index, cin, cout):
        key = (index, cin, cout)
        if key not in self.memo:
            flat, node = self.graph.flat, self.graph.flat.nodes[index]
            self.memo[key] = node_cost(node, flat.tensors, cin, cout,
                                       gate_follows=node.outputs[0] in self.gated)
        return self.memo[key]


def _holds_constant(state):
    """Whether a node's state (see `IncrementalCost._node`) makes a constant."""
    return bool(state[0] or state[3])


def _prefix(mask):
    return np.concatenate([[0], np.cumsum(mask, dtype="int64")])


class IncrementalCost:
    """Hard remaining fraction of one metric, updated as group masks change.

    Follows `counting.layer_costs(..., hard=True)` node by node: a node's
    cost depends on the alive channels of its first input and output and,
    through collapse, on which of its inputs are constants. A change of
    some groups' masks recomputes the nodes that read those groups, and the
    consumers of every node whose collapse state flips, in graph order.
    `stats` counts evaluations and node recomputations (shared by copies).

    Two rules of `layer_costs` look upstream, which a node-by-node update
    cannot: a node whose outputs reach the model outputs only as constants,
    and a group whose every producer collapsed, cost nothing. Both need a
    constant somewhere (a collapsed node or a split part with no channel
    left); while there is one, the totals are recounted whole with
    `layer_costs` (with the closing's masks, where every group keeps a
    channel, only below a slice or split part whose channels are all
    removed).
    """

    def __init__(self, plan, metric, sums, stats):
        self.plan, self.metric, self.sums, self.stats = plan, metric, sums, stats
        self.state = []
        for index in range(len(plan.nodes)):
            self.state.append(self._node(index, {}, {}))
        self.constants = sum(_holds_constant(state) for state in self.state)
        self.totals = {"flops": sum(s[2] for s in self.state),
                       "params": sum(self._call_params(c, {}) for c in plan.calls)}
        if self.constants:
            self.totals = self._recounted({})

    @classmethod
    def build(cls, graph, metric, keep):
        sums = {root: _prefix(mask) for root, mask in keep.items()}
        return cls(CostPlan(graph), metric, sums, {"evaluations": 1, "nodes": 0})

    def copy_with(self, masks):
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
            if (new[0], new[3]) != (self.state[index][0], self.state[index][3]):
                for key in plan.nodes[index]["outputs"]:
                    for consumer in plan.consumers.get(key, ()):
                        heapq.heappush(queue, consumer)
        constants = self.constants + sum(
            _holds_constant(new) - _holds_constant(self.state[i]) for i, new in changed.items())
        if constants:
            totals = self._recounted(sums)
        else:
            calls = {plan.nodes[i]["call"] for i in changed}
            totals = {
                "flops": self.totals["flops"] + sum(
                    new[2] - self.state[i][2] for i, new in changed.items()),
                "params": self.totals["params"] + sum(
                    self._call_params(c, changed) - self._call_params(c, {}) for c in calls),
            }
        return (totals[self.metric] / plan.dense[self.metric],
                (sums, changed, totals, constants))

    def apply(self, change):
        sums, changed, self.totals, self.constants = change
        self.sums.update(sums)
        for index, new in changed.items():
            self.state[index] = new

    def _recounted(self, sums):
        """Both totals by `layer_costs`, with the masks of `sums` applied."""
        keep = {root: np.diff(prefix).astype("float32")
                for root, prefix in {**self.sums, **sums}.items()}
        costs = layer_costs(self.plan.graph, hard_count(self.plan.graph, keep), hard=True)
        return {"flops": sum(c.flops for c in costs), "params": sum(c.params for c in costs)}

    def commit(self, masks):
        fraction, change = self.evaluate(masks)
        self.apply(change)
        return fraction

    def _call_params(self, call, changed):
        """A layer's weights count at its first call that is not a constant."""
        for index in self.plan.calls[call]:
            constant, params = (changed.get(index) or self.state[index])[:2]
            if not constant:
                return params
        return 0

    def _node(self, index, sums, changed):
        """(constant, params, flops, constant outputs) of node `index`, as
        `layer_costs` counts it."""
        self.stats["nodes"] += 1
        plan, node = self.plan, self.plan.nodes[index]
        live = 0
        for key in node["inputs"]:
            producer = plan.producer.get(key)
            state = None if producer is None else (changed.get(producer) or self.state[producer])
            live += state is None or not (state[0] or key in state[3])
        counts = [self._count(m, sums) for m in node["maps"]]
        parts = [None if m is None else self._count(m, sums) for m in node["parts"]]
        widest = max((c for c in parts if c is not None), default=None)
        if emits_constant(bool(node["inputs"]) and not live, widest if counts else None):
            return (True, 0, 0, frozenset())
        dropped = frozenset(key for key, c in zip(node["outputs"], parts) if c == 0)
        if not counts:
            return (False, node["params"], 0, dropped)
        params, macs, elementwise = plan.node_cost(index, *counts)
        if node["merge"]:
            elementwise = elementwise * max(live - 1, 0)
        return (False, params, 2 * macs + elementwise, dropped)

    def _count(self, channel_map, sums):
        total = 0
        for root, start, stop in channel_map:
            if root is None:
                total += stop - start
            else:
                prefix = sums[root] if root in sums else self.sums[root]
                total += int(prefix[stop] - prefix[start])
        return total
