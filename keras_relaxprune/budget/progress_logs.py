"""What `PruningCallback` adds to each epoch's `logs`, and its one-line summary.

The values reach the progress bar, `History` and TensorBoard through `logs`
(and `reporting/tensorboard.py` writes them itself). The remaining fractions
are hard counts, what `strip_pruning` would keep; at the end of the epoch
after which the budget closes they are those of the masks the closing gives.
"""

import keras

from keras_relaxprune.cost.count import cost_fractions


def progress_logs(budget, graph, remaining_target, closing_masks=None):
    """The pruning state as `logs` values.

    Args:
        budget: the model's `PruningBudget`.
        graph: the gated model's analysed graph.
        remaining_target: the fraction of the cost the budget keeps.
        closing_masks: group root -> keep mask the closing gives, counted
            instead of the gates' masks; `None` counts the masks as they are.

    Returns:
        A dict with `remaining_flops`, `remaining_params` (and
        `remaining_latency` with a latency table), `pruning_target` (the
        ramped target now), `pruning_lambda` and `gate_temperature`.
    """
    keep = graph.keep_vectors()
    if closing_masks is not None:
        keep.update(closing_masks)
    fractions = cost_fractions(graph, keep)
    ramp_on = bool(budget.ramp_on.numpy())
    if ramp_on:
        target_now = _scalar(budget.ramped_target(_scalar(budget.progress(budget.step))))
    else:
        target_now = remaining_target
    gates = list(graph.gates.values())
    return {
        "remaining_flops": fractions["flops"],
        "remaining_params": fractions["params"],
        **({"remaining_latency": fractions["latency"]} if "latency" in fractions else {}),
        "pruning_target": target_now,
        "pruning_lambda": float(budget.penalty_weight.numpy()),
        "gate_temperature": float(gates[0].scale.numpy()) if gates else 0.0,
    }


def describe(logs):
    """The line `PruningCallback(verbose=1)` prints at each epoch's end."""
    return (
        f"pruning: {logs['remaining_flops']:.1%} FLOPs, "
        f"{logs['remaining_params']:.1%} params left "
        f"(target now {logs['pruning_target']:.1%})"
    )


def _scalar(tensor):
    return float(keras.ops.convert_to_numpy(tensor))
