"""Closing the budget: choose the final masks so the hard cost meets it.

The relaxed regulariser ranks channels (by gate value); closing turns the
ranking into a hard budget. Each group keeps one of a list of allowed counts
(any count from 1, or the multiples of `round_to` and its full size), always
its best-scored channels, and closing picks the counts in three steps:
removal (units of channels, all groups merged, lowest score first, until the
cost is at or below the target), fill (switched-off units from the highest
score down, each kept when the cost stays at or below the target, until it
is within 1% of it), and, when the fill stops short of that band, a
branch-and-bound over the groups' counts. Candidates are priced by
`_IncrementalCost`, which recomputes only the layers a changed group touches.
"""

import heapq
import logging
import time

import numpy as np

from keras_relaxprune.cost import node_cost
from keras_relaxprune.counting import cost_fractions, layer_costs
from keras_relaxprune.layer_kinds import MERGES
from keras_relaxprune.pruning_logs import print_message

TOLERANCE = 0.01
# Cost evaluations the exact search may spend (about a second on ResNet-50).
SEARCH_EVALUATIONS = 20000
# The search recurses once per group. Nets with more groups have fine units,
# and the fill reaches the band on its own.
MAX_SEARCH_GROUPS = 500

_logger = logging.getLogger(__name__)


def minimum_fraction(graph, metric, round_to=1):
    """Smallest reachable cost fraction: every prunable group at its floor.

    Args:
        graph: a `ChannelGraph` of a gated model (`graph.analyze`).
        metric: `"flops"` or `"params"`.
        round_to: a group's floor is `min(round_to, size)` channels.
            Defaults to 1.

    Returns:
        The hard remaining fraction of `metric` (float).

    Example:

    >>> minimum_fraction(analyze(gated), "flops") < 0.5
    True
    """
    keep = graph.keep_vectors()
    for root in graph.gated_groups():
        keep[root] = np.zeros_like(keep[root])
        keep[root][: min(round_to, len(keep[root]))] = 1.0
    return cost_fractions(graph, keep)[metric]


def project_masks(graph, metric, target, round_to=1, verbose=False):
    """`close_budget` with the gates' current pre-activations as scores.

    Args:
        graph: a `ChannelGraph` of a gated model.
        metric: `"flops"` or `"params"`.
        target: remaining cost fraction to reach, e.g. 0.5.
        round_to: kept channels per group are a multiple of it. Defaults to 1.
        verbose: print what closing does while it runs. Defaults to False.

    Returns:
        Group root -> 0/1 keep vector (numpy float32).

    Example:

    >>> masks = project_masks(analyze(gated), "flops", 0.5)
    """
    values = {root: _gate_values(graph, root) for root in graph.gated_groups()}
    return close_budget(graph, metric, target, round_to, scores=values,
                        verbose=verbose)


def close_budget(graph, metric, target, round_to=1, scores=None, verbose=False):
    """Group root -> final 0/1 keep vector with the hard cost near `target`.

    The hard `metric` fraction lands in `[target - 0.01, target]` whenever a
    configuration in that band exists, else at the largest reachable fraction
    at or below `target` (every group at its floor if none is). A group keeps
    at least `min(round_to, size)` channels and a multiple of `round_to` (or
    all of them). It keeps its best-scored channels; channels already
    switched off (`keep_mask` 0) come back only once all its alive ones are
    kept, or to reach its floor.

    Args:
        graph: a `ChannelGraph` of a gated model.
        metric: `"flops"` or `"params"`.
        target: remaining cost fraction to reach, e.g. 0.5.
        round_to: kept channels per group are a multiple of it. Defaults to 1.
        scores: group root -> per-channel score, lowest switched off first.
            Defaults to the gates' pre-activations. Ties go to the group
            with the largest share of its channels kept (tied groups shrink
            alike), then to the larger cost saved per channel.
        verbose: print what closing does while it runs; the messages also
            go to the `keras_relaxprune.projection` logger. Defaults to False.

    Returns:
        Group root -> 0/1 keep vector (numpy float32), for every scored group.

    Example:

    >>> keep = close_budget(graph, "flops", 0.5, scores=l1_norms)
    >>> cost_fractions(graph, {**graph.keep_vectors(), **keep})["flops"] <= 0.5
    True
    """
    started, say = time.perf_counter(), _reporter(verbose)
    values = scores if scores is not None else {
        root: _gate_values(graph, root) for root in graph.gated_groups()}
    keep = graph.keep_vectors()
    levels = {root: _Levels(values[root], keep[root], round_to) for root in values}
    state = {root: group.start for root, group in levels.items()}
    model = _IncrementalCost.build(graph, metric, {**keep, **_masks(levels, state)})
    say(f"Closing the {metric} budget: {len(levels)} channel groups, "
        f"{sum(g.size for g in levels.values())} channels, {model.fraction:.4f} "
        f"of the cost left, target {target:.4f}.")
    savings = _savings(model, levels, state)
    state = _remove(model, levels, state, savings, target)
    say(_progress("removal", model))
    state = _fill(model, levels, state, target)
    say(_progress("fill", model))
    if model.fraction < target - TOLERANCE and 0 < len(levels) <= MAX_SEARCH_GROUPS:
        state = _search(model, levels, state, savings, target)
        say(_progress("search over group widths", model))
    unreachable = " (unreachable target: every group at its floor)"
    say(f"Budget closed at {model.fraction:.4f} of the {metric}"
        f"{unreachable if model.fraction > target else ''} in "
        f"{time.perf_counter() - started:.1f} s.")
    return _masks(levels, state)


def _progress(step, model):
    return (f"  after {step}: {model.fraction:.4f} "
            f"({model.stats['evaluations']} cost evaluations)")


def _reporter(verbose):
    def say(message):
        _logger.info(message)
        if verbose:
            print_message(message)

    return say


def _gate_values(graph, root):
    """The gates' pre-activations `scale * logits`: ranked like the gate
    values, without the ties that a saturated sigmoid makes (at scale 500
    every open gate is exactly 1.0 in float64, and the ranking would fall
    back to graph order)."""
    gate = graph.gates[root]
    logits = np.asarray(gate.logits.numpy(), "float64")
    return float(gate.scale.numpy()) * logits


class _Levels:
    """The counts one group may keep, and the channels each count keeps.

    Channels rank alive first, then by score (highest first), then by index;
    level `i` keeps the first `counts[i]`. `start` is the level of the largest
    count not above the channels alive now (level 0 when fewer are alive).
    """

    def __init__(self, scores, alive, round_to):
        self.scores = np.asarray(scores, "float64")
        self.size = size = len(self.scores)
        index = np.arange(size)
        self.order = np.lexsort((index, -self.scores, np.asarray(alive) == 0))
        self.counts = sorted(set(range(min(round_to, size), size + 1, round_to)) | {size})
        below = [i for i, count in enumerate(self.counts) if count <= np.sum(alive)]
        self.start = below[-1] if below else 0

    def mask(self, level):
        keep = np.zeros(self.size, "float32")
        keep[self.order[:self.counts[level]]] = 1.0
        return keep

    def unit_score(self, level):
        """Mean score of the channels between `level` and `level + 1`."""
        unit = self.order[self.counts[level]:self.counts[level + 1]]
        return float(self.scores[unit].mean())


def _masks(levels, state):
    return {root: levels[root].mask(state[root]) for root in levels}


def _move(model, levels, state, new_state):
    """Commits `new_state` (root -> level), changing only the groups that differ."""
    changed = {r: levels[r].mask(new_state[r]) for r in levels if new_state[r] != state[r]}
    if changed:
        model.commit(changed)
    return dict(new_state)


def _savings(model, levels, state):
    """Root -> cost fraction saved per channel by the group's next removal."""
    result = dict.fromkeys(levels, 0.0)
    for root, group in levels.items():
        level = state[root]
        if level > 0:
            fraction, _ = model.evaluate({root: group.mask(level - 1)})
            channels = group.counts[level] - group.counts[level - 1]
            result[root] = (model.fraction - fraction) / channels
    return result


def _remove(model, levels, state, savings, target):
    """Switches off the lowest-scored units until the cost is <= target.

    The removal order is fixed up front, so the shortest sufficient prefix
    is found by bisection: a handful of evaluations, each of which
    recomputes only the layers of the groups that differ from the last.
    """
    if model.fraction <= target:
        return state
    units = []
    for position, (root, group) in enumerate(levels.items()):
        for level in range(state[root] - 1, -1, -1):
            key = (group.unit_score(level), -group.counts[level] / group.size,
                   -savings[root], position)
            units.append((key, root, level))
    units.sort(key=lambda unit: unit[0])

    def after(count):
        result = dict(state)
        for _, root, level in units[:count]:
            result[root] = min(result[root], level)
        return result

    current = _move(model, levels, state, after(len(units)))
    if model.fraction > target:
        return current  # unreachable: every group at its floor
    low, high = 0, len(units)
    while high - low > 1:
        middle = (low + high) // 2
        current = _move(model, levels, current, after(middle))
        if model.fraction <= target:
            high = middle
        else:
            low = middle
    return _move(model, levels, current, after(high))


def _fill(model, levels, state, target):
    """Switches units back on, best score first, while the cost stays <= target.

    A group whose next unit would overshoot is dropped from the scan (its
    later units cost more still); the others go on.
    """
    state, queue = dict(state), []

    def push(position, root):
        group, level = levels[root], state[root]
        if level + 1 < len(group.counts):
            key = (-group.unit_score(level), group.counts[level + 1] / group.size,
                   position)
            heapq.heappush(queue, (key, root))

    for position, root in enumerate(levels):
        push(position, root)
    while queue and model.fraction < target - TOLERANCE:
        key, root = heapq.heappop(queue)
        fraction, change = model.evaluate({root: levels[root].mask(state[root] + 1)})
        if fraction <= target:
            model.apply(change)
            state[root] += 1
            push(key[-1], root)
    return state


def _search(model, levels, state, savings, target):
    """Branch-and-bound over the groups' levels, for the band or the best fit.

    Groups are assigned one at a time, costliest first, each from its top
    level down. Two more cost models bound a partial assignment: the other
    groups at their floor (the least it can cost) and at their top (the
    most). A level whose least cost exceeds the target is skipped; one whose
    most cost fits ends the group's loop, as no lower level can beat it. The
    search stops at the first configuration in the band, or after
    `SEARCH_EVALUATIONS` evaluations with the best found so far.
    """
    roots = sorted(levels, key=lambda root: -savings[root] * levels[root].size)
    top = {root: len(levels[root].counts) - 1 for root in roots}
    low = model.copy_with(_masks(levels, dict.fromkeys(levels, 0)))
    high = model.copy_with(_masks(levels, top))
    limit = model.stats["evaluations"] + SEARCH_EVALUATIONS
    best, assigned = {"fraction": model.fraction, "state": state}, {}

    def visit(depth):
        root = roots[depth]
        group = levels[root]
        for level in range(top[root], -1, -1):
            if model.stats["evaluations"] > limit:
                return True
            low.commit({root: group.mask(level)})
            if low.fraction > target:
                continue
            high.commit({root: group.mask(level)})
            assigned[root] = level
            if high.fraction <= target:
                if high.fraction > best["fraction"]:
                    best.update(fraction=high.fraction, state={**top, **assigned})
                if best["fraction"] >= target - TOLERANCE:
                    return True
                break
            if visit(depth + 1):
                return True
        low.commit({root: group.mask(0)})
        high.commit({root: group.mask(top[root])})
        assigned.pop(root, None)
        return False

    visit(0)
    return _move(model, levels, state, best["state"])


class _CostPlan:
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
            maps = [[(None if s.group is None else find(s.group), s.start, s.stop)
                     for s in m] for m in (in_maps[0], out_maps[0])] if known else []
            weights = getattr(node.operation, "weights", [])
            self.nodes.append({
                "maps": maps, "merge": isinstance(node.operation, MERGES),
                "inputs": [k for k, m in zip(node.inputs, in_maps) if m is not None],
                "params": sum(int(np.prod(w.shape)) for w in weights),
                "outputs": node.outputs, "call": id(node.operation)})
            for root in {s[0] for m in maps for s in m if s[0] is not None}:
                self.readers.setdefault(root, []).append(index)
            self.producer.update(dict.fromkeys(node.outputs, index))
            for key in node.inputs:
                self.consumers.setdefault(key, []).append(index)
            self.calls.setdefault(id(node.operation), []).append(index)
        dense = layer_costs(graph, lambda m: sum(s.length for s in m))
        self.dense = {"flops": sum(c.flops for c in dense),
                      "params": sum(c.params for c in dense)}

    def node_cost(self, index, cin, cout):
        key = (index, cin, cout)
        if key not in self.memo:
            flat = self.graph.flat
            self.memo[key] = node_cost(flat.nodes[index], flat.tensors, cin, cout)
        return self.memo[key]


def _prefix(mask):
    return np.concatenate([[0], np.cumsum(mask, dtype="int64")])


class _IncrementalCost:
    """Hard remaining fraction of one metric, updated as group masks change.

    Follows `counting.layer_costs(..., hard=True)` node by node: a node's
    cost depends on the alive channels of its first input and output and,
    through collapse, on which of its inputs are constants. A change of
    some groups' masks recomputes the nodes that read those groups, and the
    consumers of every node whose collapse state flips, in graph order.
    `stats` counts evaluations and node recomputations (shared by copies).
    """

    def __init__(self, plan, metric, sums, stats):
        self.plan, self.metric, self.sums, self.stats = plan, metric, sums, stats
        self.state = []
        for index in range(len(plan.nodes)):
            self.state.append(self._node(index, {}, {}))
        self.totals = {"flops": sum(s[2] for s in self.state),
                       "params": sum(self._call_params(c, {}) for c in plan.calls)}

    @classmethod
    def build(cls, graph, metric, keep):
        sums = {root: _prefix(mask) for root, mask in keep.items()}
        return cls(_CostPlan(graph), metric, sums, {"evaluations": 1, "nodes": 0})

    def copy_with(self, masks):
        self.stats["evaluations"] += 1
        sums = {**self.sums, **{root: _prefix(m) for root, m in masks.items()}}
        return _IncrementalCost(self.plan, self.metric, sums, self.stats)

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
            if new[0] != self.state[index][0]:
                for key in plan.nodes[index]["outputs"]:
                    for consumer in plan.consumers.get(key, ()):
                        heapq.heappush(queue, consumer)
        calls = {plan.nodes[i]["call"] for i in changed}
        totals = {
            "flops": self.totals["flops"] + sum(
                new[2] - self.state[i][2] for i, new in changed.items()),
            "params": self.totals["params"] + sum(
                self._call_params(c, changed) - self._call_params(c, {}) for c in calls),
        }
        return totals[self.metric] / plan.dense[self.metric], (sums, changed, totals)

    def apply(self, change):
        sums, changed, self.totals = change
        self.sums.update(sums)
        for index, new in changed.items():
            self.state[index] = new

    def commit(self, masks):
        fraction, change = self.evaluate(masks)
        self.apply(change)
        return fraction

    def _call_params(self, call, changed):
        """A layer's weights count at its first call that is not a constant."""
        for index in self.plan.calls[call]:
            constant, params, _ = changed.get(index) or self.state[index]
            if not constant:
                return params
        return 0

    def _node(self, index, sums, changed):
        """(constant, params, flops) of node `index`, as `layer_costs` counts it."""
        self.stats["nodes"] += 1
        plan, node = self.plan, self.plan.nodes[index]
        live = 0
        for key in node["inputs"]:
            producer = plan.producer.get(key)
            live += producer is None or not (changed.get(producer) or self.state[producer])[0]
        counts = [self._count(m, sums) for m in node["maps"]]
        if (counts and counts[1] == 0) or (node["inputs"] and not live):
            return (True, 0, 0)
        if not counts:
            return (False, node["params"], 0)
        params, macs, elementwise = plan.node_cost(index, *counts)
        if node["merge"]:
            elementwise = elementwise * max(live - 1, 0)
        return (False, params, 2 * macs + elementwise)

    def _count(self, channel_map, sums):
        total = 0
        for root, start, stop in channel_map:
            if root is None:
                total += stop - start
            else:
                prefix = sums[root] if root in sums else self.sums[root]
                total += int(prefix[stop] - prefix[start])
        return total
