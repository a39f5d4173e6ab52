"""Closing the budget inside `fit`: when, with which masks, and freezing them.

`closing.py` decides which channels a closing switches off; this module is
what `PruningCallback` does around it: refuses a target the protected layers
cannot reach before training, tells when the ramp has ended, computes the
closing's masks once per gate state (the epoch's logs and the closing itself
see the same masks), and fixes them in the gates, after which the remaining
epochs fine-tune.
"""

import math

import keras
import numpy as np

from keras_relaxprune.budget.closing import close_budget, minimum_fraction, warn_thinned_to_floor
from keras_relaxprune.errors import BudgetError


def check_reachable(graph, metric, target, round_to, min_keep):
    """Refuses a `target` beyond what the protected layers and floors allow.

    Args:
        graph: the gated model's analysed graph.
        metric: `"flops"`, `"params"` or `"latency"`.
        target: the fraction of the cost to remove.
        round_to: the closing's channel multiple.
        min_keep: the fraction of its channels every group keeps.

    Raises:
        BudgetError: naming the smallest reachable fraction and the fix.
    """
    reachable = minimum_fraction(graph, metric, round_to, min_keep)
    remaining_target = 1.0 - target
    if reachable > remaining_target:
        raise BudgetError(
            f"PruningCallback(target={target}): the protected layers "
            f"alone keep {reachable:.1%} of the {metric}, more than the "
            f"{remaining_target:.1%} the target leaves. The smallest "
            f"reachable fraction is {reachable:.4f}: use target <= "
            f"{1 - reachable:.3f}, or protect fewer layers (or lower round_to "
            f"or min_keep)."
        )


def closed_earlier(budget, remaining_target):
    """Whether `budget` was closed, at this target, by an earlier fit (resumed)."""
    return bool(float(budget.masks_final.numpy())) and math.isclose(
        float(budget.remaining_target.numpy()), remaining_target, abs_tol=1e-6
    )


def ramp_ended(budget):
    """Whether the budget's step has reached the end of its ramp."""
    return float(budget.step.numpy()) >= float(budget.end_step.numpy())


def closes_after_epoch(budget, epoch, epochs, stopping):
    """Whether the budget closes before any more training.

    Args:
        budget: the model's `PruningBudget`.
        epoch: the epoch just ended (0-based).
        epochs: the epochs of the fit.
        stopping: whether the model stops training after this epoch.

    Returns:
        `True` while the masks are not final and the ramp has ended (closing
        at the next epoch's start) or `fit` ends now.
    """
    if float(budget.masks_final.numpy()):
        return False
    return epoch + 1 >= epochs or stopping or ramp_ended(budget)


def earlier_closing_epoch(end_step, steps_per_epoch, first_epoch):
    """The epoch the budget closed at, for a fit resumed after its closing.

    A fit resumed by `BackupAndRestore` starts past epoch 0; the budget
    closed at the start of the first epoch past `end_step`. A new fit of a
    model closed by an earlier one starts at 0: `None`, its rate is the
    user's.
    """
    if first_epoch == 0 or not steps_per_epoch:
        return None
    return math.ceil(end_step / steps_per_epoch - 1e-6)


class ClosingMasks:
    """The masks closing gives for the gates as they are, computed once per state.

    The epoch end that reports the closed cost and the closing itself (next
    epoch's start, or the end of `fit`) see the same gates, so they share
    one computation and the logs show exactly the masks the model gets.
    """

    def __init__(self):
        self._state = None
        self._masks = None

    def __call__(self, graph, metric, remaining_target, round_to, min_keep, verbose):
        """Group root -> 0/1 keep mask, as `close_budget` gives them.

        Args: those of `closing.close_budget`, `verbose` a bool.
        """
        state = [
            keras.ops.convert_to_numpy(variable)
            for gate in graph.gates.values()
            for variable in (gate.logits, gate.keep_mask, gate.scale)
        ]
        if self._state is None or not _same_arrays(self._state, state):
            self._masks = close_budget(
                graph, metric, remaining_target, round_to, verbose=verbose, min_keep=min_keep
            )
            self._state = state
        return self._masks


def freeze(graph, budget, masks, round_to):
    """Sets the gates' keep masks to `masks` and ends the ramp for good.

    The penalty stops and `masks_final` marks the budget closed, so a saved
    model resumes into fine-tuning. Warns about groups left at their floor.
    """
    for root, keep in masks.items():
        graph.gates[root].keep_mask.assign(keep)
    warn_thinned_to_floor(graph, masks, round_to)
    budget.ramp_on.assign(0.0)
    budget.penalty_weight.assign(0.0)
    budget.masks_final.assign(1.0)


def _same_arrays(first, second):
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))
