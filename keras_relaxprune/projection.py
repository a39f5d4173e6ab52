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
        for root, channel in order[:count]:
            keep[root][channel] = 0.0
        fraction = cost_fractions(graph, keep)[metric]
    count = None
    while fraction < target - TOLERANCE:
        order = _revivable(keep, values)
        if not order:
            break
        count = count or _chunk(len(order), target - TOLERANCE / 2, fraction)
        trial = {root: vector.copy() for root, vector in keep.items()}
        for root, channel in order[:count]:
            trial[root][channel] = 1.0
        new_fraction = cost_fractions(graph, trial)[metric]
        if new_fraction <= target:
            keep, fraction, count = trial, new_fraction, None
        elif count == 1:
            break
        else:
            count //= 2
    return {root: keep[root] for root in values}


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
