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
`IncrementalCost`, which recomputes only the layers a changed group touches.
"""

import heapq
import logging
import math
import time
import warnings

import numpy as np

from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.cost.incremental import IncrementalCost
from keras_relaxprune.reporting.tensorboard import print_message

TOLERANCE = 0.01
# Cost evaluations the exact search may spend (about a second on ResNet-50).
SEARCH_EVALUATIONS = 20000
# The search recurses once per group. Nets with more groups have fine units,
# and the fill reaches the band on its own.
MAX_SEARCH_GROUPS = 500

_logger = logging.getLogger(__name__)


def group_floor(size, round_to=1, min_keep=0.0):
    """Fewest channels a group of `size` may keep.

    `min(round_to, size)`, raised to `ceil(min_keep * size)` rounded up to
    a multiple of `round_to` (at most `size`).

    Args:
        size: the group's channel count.
        round_to: kept counts are multiples of it (or the whole group).
            Defaults to 1.
        min_keep: fraction of its channels every group keeps. Defaults to 0.

    Returns:
        The floor (int).

    Example:

    >>> group_floor(128, round_to=1, min_keep=0.25), group_floor(16, 4, 0.1)
    (32, 4)
    """
    least = max(min(round_to, size), math.ceil(min_keep * size - 1e-9))
    return min(size, -(-least // round_to) * round_to)


def minimum_fraction(graph, metric, round_to=1, min_keep=0.0):
    """Smallest reachable cost fraction: every prunable group at its floor.

    Args:
        graph: a `ChannelGraph` of a gated model (`graph.analyze`).
        metric: `"flops"`, `"params"` or `"latency"` (a graph with a latency
            model: `link_budget` of a model gated with a latency table).
        round_to: a group's floor is `min(round_to, size)` channels.
            Defaults to 1.
        min_keep: and at least this fraction of them (`group_floor`).
            Defaults to 0.

    Returns:
        The hard remaining fraction of `metric` (float).

    Example:

    >>> minimum_fraction(analyze(gated), "flops") < 0.5
    True
    """
    keep = graph.keep_vectors()
    for root in graph.gated_groups():
        keep[root] = np.zeros_like(keep[root])
        keep[root][: group_floor(len(keep[root]), round_to, min_keep)] = 1.0
    return cost_fractions(graph, keep)[metric]


def close_budget(graph, metric, target, round_to=1, scores=None, verbose=False, min_keep=0.0):
    """Group root -> final 0/1 keep vector with the hard cost near `target`.

    The hard `metric` fraction lands in `[target - 0.01, target]` whenever a
    configuration in that band exists, else at the largest reachable fraction
    at or below `target` (every group at its floor if none is). A group keeps
    at least `group_floor(size, round_to, min_keep)` channels and a multiple
    of `round_to` (or all of them). It keeps its best-scored channels; channels already
    switched off (`keep_mask` 0) come back only once all its alive ones are
    kept, or to reach its floor.

    Args:
        graph: a `ChannelGraph` of a gated model.
        metric: `"flops"`, `"params"` or `"latency"` (a graph with a latency
            model: `link_budget` of a model gated with a latency table).
        target: remaining cost fraction to reach, e.g. 0.5.
        round_to: kept channels per group are a multiple of it. Defaults to 1.
        scores: group root -> per-channel score, lowest switched off first.
            Defaults to the gates' pre-activations. Ties go to the group
            with the largest share of its channels kept (tied groups shrink
            alike), then to the larger cost saved per channel.
        verbose: print what closing does while it runs; the messages also
            go to the `keras_relaxprune.budget.closing` logger. Defaults to False.
        min_keep: fraction of its channels every group keeps (a floor per
            group, so no stage is emptied). Defaults to 0.

    Returns:
        Group root -> 0/1 keep vector (numpy float32), for every scored group.

    Example:

    >>> keep = close_budget(graph, "flops", 0.5, scores=l1_norms)
    >>> cost_fractions(graph, {**graph.keep_vectors(), **keep})["flops"] <= 0.5
    True
    """
    started, say = time.perf_counter(), _reporter(verbose)
    values = (
        scores
        if scores is not None
        else {root: _gate_values(graph, root) for root in graph.gated_groups()}
    )
    keep = graph.keep_vectors()
    levels = {root: _Levels(values[root], keep[root], round_to, min_keep) for root in values}
    state = {root: group.start for root, group in levels.items()}
    cost = IncrementalCost.build(graph, metric, {**keep, **_masks(levels, state)})
    say(
        f"Closing the {metric} budget: {len(levels)} channel groups, "
        f"{sum(g.size for g in levels.values())} channels, {cost.fraction:.4f} "
        f"of the cost left, target {target:.4f}."
    )
    savings = _savings(cost, levels, state)
    state = _remove(cost, levels, state, savings, target)
    say(_progress("removal", cost))
    state = _fill(cost, levels, state, target)
    say(_progress("fill", cost))
    if cost.fraction < target - TOLERANCE and 0 < len(levels) <= MAX_SEARCH_GROUPS:
        state = _search(cost, levels, state, savings, target)
        say(_progress("search over group widths", cost))
    unreachable = " (unreachable target: every group at its floor)"
    say(
        f"Budget closed at {cost.fraction:.4f} of the {metric}"
        f"{unreachable if cost.fraction > target else ''} in "
        f"{time.perf_counter() - started:.1f} s."
    )
    return _masks(levels, state)


def _progress(step, cost):
    return f"  after {step}: {cost.fraction:.4f} ({cost.stats['evaluations']} cost evaluations)"


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

    def __init__(self, scores, alive, round_to, min_keep=0.0):
        self.scores = np.asarray(scores, "float64")
        self.size = size = len(self.scores)
        index = np.arange(size)
        self.order = np.lexsort((index, -self.scores, np.asarray(alive) == 0))
        floor = group_floor(size, round_to, min_keep)
        self.counts = sorted(set(range(floor, size + 1, round_to)) | {size})
        below = [i for i, count in enumerate(self.counts) if count <= np.sum(alive)]
        self.start = below[-1] if below else 0

    def mask(self, level):
        keep = np.zeros(self.size, "float32")
        keep[self.order[: self.counts[level]]] = 1.0
        return keep

    def unit_score(self, level):
        """Mean score of the channels between `level` and `level + 1`."""
        unit = self.order[self.counts[level] : self.counts[level + 1]]
        return float(self.scores[unit].mean())


def _masks(levels, state):
    return {root: levels[root].mask(state[root]) for root in levels}


def _move(cost, levels, state, new_state):
    """Commits `new_state` (root -> level), changing only the groups that differ."""
    changed = {r: levels[r].mask(new_state[r]) for r in levels if new_state[r] != state[r]}
    if changed:
        cost.commit(changed)
    return dict(new_state)


def _savings(cost, levels, state):
    """Root -> cost fraction saved per channel by the group's next removal."""
    result = dict.fromkeys(levels, 0.0)
    for root, group in levels.items():
        level = state[root]
        if level > 0:
            fraction, _ = cost.evaluate({root: group.mask(level - 1)})
            channels = group.counts[level] - group.counts[level - 1]
            result[root] = (cost.fraction - fraction) / channels
    return result


def _remove(cost, levels, state, savings, target):
    """Switches off the lowest-scored units until the cost is <= target.

    The removal order is fixed up front, so the shortest sufficient prefix
    is found by bisection: a handful of evaluations, each of which
    recomputes only the layers of the groups that differ from the last.
    """
    if cost.fraction <= target:
        return state
    units = []
    for position, (root, group) in enumerate(levels.items()):
        for level in range(state[root] - 1, -1, -1):
            key = (
                group.unit_score(level),
                -group.counts[level] / group.size,
                -savings[root],
                position,
            )
            units.append((key, root, level))
    units.sort(key=lambda unit: unit[0])

    def after(count):
        result = dict(state)
        for _, root, level in units[:count]:
            result[root] = min(result[root], level)
        return result

    current = _move(cost, levels, state, after(len(units)))
    if cost.fraction > target:
        return current  # unreachable: every group at its floor
    low, high = 0, len(units)
    while high - low > 1:
        middle = (low + high) // 2
        current = _move(cost, levels, current, after(middle))
        if cost.fraction <= target:
            high = middle
        else:
            low = middle
    return _move(cost, levels, current, after(high))


def _fill(cost, levels, state, target):
    """Switches units back on, best score first, while the cost stays <= target.

    A group whose next unit would overshoot is dropped from the scan (its
    later units cost more still); the others go on.
    """
    state, queue = dict(state), []

    def push(position, root):
        group, level = levels[root], state[root]
        if level + 1 < len(group.counts):
            key = (-group.unit_score(level), group.counts[level + 1] / group.size, position)
            heapq.heappush(queue, (key, root))

    for position, root in enumerate(levels):
        push(position, root)
    while queue and cost.fraction < target - TOLERANCE:
        key, root = heapq.heappop(queue)
        fraction, change = cost.evaluate({root: levels[root].mask(state[root] + 1)})
        if fraction <= target:
            cost.apply(change)
            state[root] += 1
            push(key[-1], root)
    return state


def _search(cost, levels, state, savings, target):
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
    low = cost.copy_with(_masks(levels, dict.fromkeys(levels, 0)))
    high = cost.copy_with(_masks(levels, top))
    limit = cost.stats["evaluations"] + SEARCH_EVALUATIONS
    best, assigned = {"fraction": cost.fraction, "state": state}, {}

    def visit(depth):
        root = roots[depth]
        group = levels[root]
        for level in range(top[root], -1, -1):
            if cost.stats["evaluations"] > limit:
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
    return _move(cost, levels, state, best["state"])


def warn_thinned_to_floor(graph, masks, round_to):
    """A group left with its last channel(s) is a stage nearly removed."""
    thinned, widths = [], set()
    for root, keep in masks.items():
        size, floor = len(keep), group_floor(len(keep), round_to)
        if size > floor and int(np.sum(keep)) <= floor:
            widths.add(int(np.sum(keep)))
            producers = graph.groups.producers[root]
            thinned.append(
                f"'{producers[0]}'"
                + (f" (+{len(producers) - 1} tied)" if len(producers) > 1 else "")
                + f": {int(np.sum(keep))} of {size}"
            )
    if thinned:
        warnings.warn(
            "PruningCallback: the budget left these channel groups at their "
            f"floor: {', '.join(thinned)}. The layers after them see only "
            f"{' or '.join(map(str, sorted(widths)))} channel"
            f"{'s' if max(widths) > 1 else ''} (inside a residual block the block "
            "then adds little to "
            "its shortcut, which residual networks tolerate). If accuracy "
            "suffers where no shortcut bypasses such a group, give every group "
            "a floor (`min_keep=0.25`), train longer before the budget closes, "
            "lower the target, or exclude those layers.",
            stacklevel=2,
        )
