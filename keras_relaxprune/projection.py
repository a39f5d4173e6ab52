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


def minimum_fraction(graph, metric):
    """Smallest reachable cost fraction: every prunable group at one channel."""
    keep = graph.keep_vectors()
    for root in graph.gated_groups():
        keep[root] = np.zeros_like(keep[root])
        keep[root][0] = 1.0
    return cost_fractions(graph, keep)[metric]


def project_masks(graph, metric, target):
    """Group root -> final 0/1 keep vector with the hard cost near `target`.

    The result's hard `metric` fraction is in `[target - 0.01, target]`
    whenever that interval is reachable.
    """
    keep = graph.keep_vectors()
    values = {root: _gate_values(graph, root) for root in graph.gated_groups()}
    fraction = cost_fractions(graph, keep)[metric]
    while fraction > target:
        order = _removable(keep, values)
        if not order:
            break
        count = _chunk(len(order), fraction, target)
        if count == 1:
            keep, fraction = _best_single_flip(graph, metric, keep, order, 0.0, target)
            continue
        for root, channel in order[:count]:
            keep[root][channel] = 0.0
        fraction = cost_fractions(graph, keep)[metric]
    while fraction < target - TOLERANCE:
        order = [c for c in _revivable(keep, values)]
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
    for root, channel in order:
        trial = {r: v.copy() for r, v in keep.items()}
        trial[root][channel] = value
        fraction = cost_fractions(graph, trial)[metric]
        if target - TOLERANCE <= fraction <= target:
            return trial, fraction
        if fallback is None and (value == 0.0 or fraction <= target):
            fallback = (trial, fraction)
    if fallback is None:
        return keep, cost_fractions(graph, keep)[metric]
    return fallback


def _gate_values(graph, root):
    gate = graph.gates[root]
    logits = np.asarray(gate.logits.numpy(), "float64")
    return 1.0 / (1.0 + np.exp(-float(gate.scale.numpy()) * logits))


def _removable(keep, values):
    """Alive channels, lowest gate first, leaving each group its best one."""
    result = []
    for root, gate in values.items():
        alive = np.flatnonzero(keep[root])
        if len(alive) <= 1:
            continue
        best = alive[np.argmax(gate[alive])]
        result.extend((gate[c], root, c) for c in alive if c != best)
    return [(root, c) for _, root, c in sorted(result, key=lambda r: r[0])]


def _revivable(keep, values):
    result = []
    for root, gate in values.items():
        result.extend((-gate[c], root, c) for c in np.flatnonzero(keep[root] == 0))
    return [(root, c) for _, root, c in sorted(result, key=lambda r: r[0])]


def _chunk(available, high, low):
    """How many channels to flip at once: a quarter of the estimated need."""
    share = (high - low) / max(high, 1e-9)
    return int(min(available, max(1, 0.25 * share * available)))
