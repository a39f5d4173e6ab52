"""Closing the budget: choose the final masks so the hard cost meets it.

The relaxed regulariser ranks channels (by gate value); this step turns the
ranking into a hard budget. Channels are switched off in increasing gate
order until the hard cost is at or below the target, or, when freezing
overshot, switched back on in decreasing order until it is within 1% below.
Each group keeps at least one channel, so no plain path disappears.
"""

import numpy as np

from keras_relaxprune.counting import cost_fractions

TOLERANCE = 0.01


def minimum_fraction(graph, metric, round_to=1):
    """Smallest reachable cost fraction: every prunable group at its floor
    (one channel, or `min(round_to, size)` when rounding)."""
    keep = graph.keep_vectors()
    for root in graph.gated_groups():
        keep[root] = np.zeros_like(keep[root])
        keep[root][: min(round_to, len(keep[root]))] = 1.0
    return cost_fractions(graph, keep)[metric]


def project_masks(graph, metric, target, round_to=1):
    """`close_budget` ranked by the gates' current values."""
    values = {root: _gate_values(graph, root) for root in graph.gated_groups()}
    return close_budget(graph, metric, target, round_to, scores=values)


def close_budget(graph, metric, target, round_to=1, scores=None):
    """Group root -> final 0/1 keep vector with the hard cost near `target`.

    `scores` (group root -> per-channel score) ranks the channels: lowest
    switched off first. Defaults to the gate values.

    The result's hard `metric` fraction is in `[target - 0.01, target]`
    whenever that interval is reachable. With `round_to > 1` every group
    keeps a multiple of `round_to` channels (or all of them, if fewer):
    channels are switched in units that restore the multiple, so the band
    may be wider, but the cost never exceeds the target when reachable.
    """
    keep = graph.keep_vectors()
    values = scores if scores is not None else {
        root: _gate_values(graph, root) for root in graph.gated_groups()}
    fraction = cost_fractions(graph, keep)[metric]
    while fraction > target:
        order = _units(keep, values, round_to, remove=True)
        if not order:
            break
        count = _chunk(len(order), fraction, target)
        if count == 1:
            keep, fraction = _best_single_flip(graph, metric, keep, order, 0.0, target)
            continue
        for root, channels in order[:count]:
            keep[root][channels] = 0.0
        fraction = cost_fractions(graph, keep)[metric]
    while fraction < target - TOLERANCE:
        order = _units(keep, values, round_to, remove=False)
        trial, new_fraction = _best_single_flip(graph, metric, keep, order, 1.0, target)
        if new_fraction > target or new_fraction <= fraction:
            break
        keep, fraction = trial, new_fraction
    return {root: keep[root] for root in values}


def _best_single_flip(graph, metric, keep, order, value, target):
    """Flips the first channel of `order` that lands within the band.

    Channels are tried in ranking order; the first whose flip leaves the
    cost in `[target - 0.01, target]` wins. If none does, the first channel
    that keeps the cost at or below the target does (removal: the first).
    """
    fallback = None
    for root, channels in order:
        trial = {r: v.copy() for r, v in keep.items()}
        trial[root][channels] = value
        fraction = cost_fractions(graph, trial)[metric]
        if target - TOLERANCE <= fraction <= target:
            return trial, fraction
        if fallback is None and (value == 0.0 or fraction <= target):
            fallback = (trial, fraction)
    if fallback is None:
        return keep, cost_fractions(graph, keep)[metric]
    return fallback


def _gate_values(graph, root):
    """The gates' pre-activations `scale * logits`: ranked like the gate
    values, without the ties that a saturated sigmoid makes (at scale 500
    every open gate is exactly 1.0 in float64, and the ranking would fall
    back to graph order)."""
    gate = graph.gates[root]
    logits = np.asarray(gate.logits.numpy(), "float64")
    return float(gate.scale.numpy()) * logits


def _units(keep, values, round_to, remove):
    """Channel units to switch off (lowest gates first) or on (highest first).

    A unit is the set of channels one step flips in one group: one channel,
    or with `round_to > 1` as many as bring the group to the next multiple.
    Every group keeps at least `min(round_to, size)` channels (its best).
    """
    result = []
    for root, gate in values.items():
        size = len(gate)
        alive = np.flatnonzero(keep[root])
        floor = min(round_to, size)
        if remove:
            ranked = alive[np.argsort(gate[alive], kind="stable")]
            removable = len(alive) - floor
            ranked = ranked[:max(removable, 0)]
            first = len(alive) % round_to or round_to
        else:
            dead = np.flatnonzero(keep[root] == 0)
            ranked = dead[np.argsort(-gate[dead], kind="stable")]
            first = (round_to - len(alive) % round_to) % round_to or round_to
        start = 0
        while start < len(ranked):
            stop = start + (first if start == 0 else round_to)
            unit = ranked[start:stop]
            score = gate[unit].mean() if remove else -gate[unit].mean()
            result.append((score, root, unit))
            start = stop
    result.sort(key=lambda r: r[0])
    return [(root, unit) for _, root, unit in result]


def _chunk(available, high, low):
    """How many channels to flip at once: a quarter of the estimated need."""
    share = (high - low) / max(high, 1e-9)
    return int(min(available, max(1, 0.25 * share * available)))
