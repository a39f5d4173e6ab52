"""Channel choices of other pruning methods, as keep masks under one budget.

Each function sets the `keep_mask` of every gate of a freshly gated model so
that the hard cost (what `strip_pruning` keeps) is at or below the target,
choosing channels by its own criterion; the model then goes through the same
`strip_pruning` and fine-tune as ours, so only the channel choice differs.

- `uniform`: the same width ratio in every group, the first channels kept
  (no information at all: the floor any method must beat).
- `random`: uniform widths, channels drawn at random.
- `l1_norm`: uniform widths, channels with the largest filter L1 norms kept
  (Li et al. 2017, "Pruning Filters for Efficient ConvNets").
- `network_slimming`: one global ranking of BatchNormalization |gamma|
  (Liu et al. 2017), channels switched off from the smallest until the
  budget is met (without the paper's L1 sparsity training on gamma; each
  BN's |gamma| is divided by its mean and summed over the BNs of a channel
  group, so a residual stream tied across many BNs ranks high).
"""

import keras
import numpy as np

from keras_relaxprune.budget.closing import close_budget, minimum_fraction
from keras_relaxprune.cost.count import cost_fractions, sized_graph
from keras_relaxprune.errors import BudgetError, PruningError
from keras_relaxprune.layer_support import is_batch_normalization, kernel_axes

METHODS = ("uniform", "random", "l1_norm", "network_slimming")


def apply_baseline(gated, method, target, metric="flops", seed=0):
    """Sets the keep masks of `gated` by a baseline's channel choice.

    Args:
        gated: a model returned by `add_gates` (masks all ones).
        method: one of `"uniform"`, `"random"`, `"l1_norm"`,
            `"network_slimming"`.
        target: fraction of the cost to remove, in (0, 1).
        metric: `"flops"` or `"params"`. Defaults to `"flops"`.
        seed: seed of the `"random"` choice. Defaults to 0.

    Returns:
        The remaining cost fraction (hard count) after the masks were set.

    Example:

    ```python
    gated = krp.add_gates(dense)
    apply_baseline(gated, "l1_norm", target=0.5)   # about 0.5 left
    small = krp.strip_pruning(gated)
    ```
    """
    if method not in METHODS:
        raise PruningError(f"apply_baseline: method={method!r}; use one of {METHODS}.")
    if not 0.0 < target < 1.0:
        raise PruningError(f"apply_baseline: target={target!r} must be in (0, 1).")
    graph = sized_graph(gated)
    remaining = 1.0 - float(target)
    reachable = minimum_fraction(graph, metric)
    if reachable > remaining:
        raise BudgetError(
            f"apply_baseline: the smallest reachable {metric} fraction is "
            f"{reachable:.4f}, above the {remaining:.4f} that target={target} leaves."
        )
    if method == "network_slimming":
        scores = channel_scores(graph, _batchnorm_gamma)
        keep = close_budget(graph, metric, remaining, scores=scores)
    else:
        rank = {
            "uniform": _first_channels,
            "random": _random_channels(seed),
            "l1_norm": _l1_channels(graph),
        }[method]
        keep = _uniform_widths(graph, metric, remaining, rank)
    for root, mask in keep.items():
        graph.gates[root].keep_mask.assign(mask)
    return cost_fractions(graph, graph.keep_vectors())[metric]


def channel_scores(graph, layer_score):
    """Group root -> per-channel score summed over the layers producing it.

    `layer_score(layer)` returns a per-output-channel vector or `None`; each
    layer's vector is divided by its mean, so layers of one group (tied by
    a residual `Add`) weigh the same.
    """
    find = graph.groups.find
    scores = {root: np.zeros(graph.groups.size[root]) for root in graph.gated_groups()}
    for index, node in enumerate(graph.flat.nodes):
        values = layer_score(node.operation)
        out_maps = graph.out_maps(index)
        if values is None or not out_maps or out_maps[0] is None:
            continue
        values = np.asarray(values, "float64")
        values = values / max(values.mean(), 1e-12)
        offset = 0
        for segment in out_maps[0]:
            root = None if segment.group is None else find(segment.group)
            if root in scores:
                scores[root][segment.start : segment.stop] += values[
                    offset : offset + segment.length
                ]
            offset += segment.length
    return scores


def set_gate_prior(graph, criterion="l1_norm", spread=1.0):
    """Starts each gate from a magnitude criterion of its channel (a prior).

    The pre-activation `scale * logit` of channel c becomes `logit(g0) +
    spread * log(r_c)`, `g0` the current (initial) gate value and `r_c` the
    channel's relative magnitude: the weakest channels start nearest the
    threshold, and the penalty and the task loss take it from there.

    - `"l1_norm"`: filter L1 norm divided by its group's mean (a ranking
      within each group only).
    - `"bn_gamma"`: BatchNormalization |gamma|, each BN divided by its mean
      and summed over the BNs of a group (a channel tied across many BNs, a
      residual stream, scores high), divided by the mean over all gated
      channels (a ranking across groups, as Network Slimming's).

    Groups without a scored layer keep their gates.

    Args:
        graph: `analyze(gated)` of a freshly gated model.
        criterion: `"l1_norm"` or `"bn_gamma"`. Defaults to `"l1_norm"`.
        spread: weight of the prior. Defaults to 1.0.
    """
    layer_score = {"l1_norm": _filter_l1, "bn_gamma": _batchnorm_gamma}[criterion]
    scores = channel_scores(graph, layer_score)
    scored = [v for v in scores.values() if np.any(v > 0)]
    global_mean = np.concatenate(scored).mean() if scored else 1.0
    for root in graph.gated_groups():
        values = scores[root]
        if not np.any(values > 0):
            continue
        reference = values.mean() if criterion == "l1_norm" else global_mean
        relative = np.maximum(values / reference, 1e-3)
        gate = graph.gates[root]
        scale = float(keras.ops.convert_to_numpy(gate.scale))
        logits = np.asarray(keras.ops.convert_to_numpy(gate.logits), "float64")
        gate.logits.assign((scale * logits + spread * np.log(relative)) / scale)


def _batchnorm_gamma(layer):
    if is_batch_normalization(layer) and layer.scale:
        return np.abs(keras.ops.convert_to_numpy(layer.gamma))
    return None


def _filter_l1(layer):
    # Li et al.'s filters: a kernel holding output channels on its last
    # axis (convolutions, Dense); transposed convolutions are not ranked.
    if kernel_axes(layer) != (-2, -1):
        return None
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def _first_channels(root, size):
    return np.arange(size)


def _random_channels(seed):
    rng = np.random.default_rng(seed)
    return lambda root, size: rng.permutation(size)


def _l1_channels(graph):
    scores = channel_scores(graph, _filter_l1)
    return lambda root, size: np.argsort(-scores[root], kind="stable")


def _uniform_widths(graph, metric, remaining, rank):
    """Largest common width ratio whose cost fits; channels by `rank`."""
    roots = graph.gated_groups()
    order = {root: rank(root, graph.groups.size[root]) for root in roots}

    def masks(ratio):
        keep = graph.keep_vectors()
        for root in roots:
            size = graph.groups.size[root]
            mask = np.zeros(size, "float32")
            mask[order[root][: max(1, int(round(ratio * size)))]] = 1.0
            keep[root] = mask
        return keep

    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        if cost_fractions(graph, masks(middle))[metric] <= remaining:
            low = middle
        else:
            high = middle
    keep = masks(low)
    return {root: keep[root] for root in roots}
