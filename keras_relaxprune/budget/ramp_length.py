"""How many steps the budget ramps over, and a warning when they are too few.

The gates learn which channels matter while the budget ramps: the task loss
pushes back on the penalty step by step. Over a few dozen steps it cannot,
the gates sharpen (temperature 50 -> 500) before the weights follow, and the
closing ranks channels mostly by the gate prior; a FLOPs budget then
empties whole groups whose channels cost most. Measured on the shipped
ResNet-20 (87.14%), 50% of the FLOPs, SGD-Nesterov 0.01, distillation:
a ramp of 39 steps (5,000 images, batch 128, one epoch) left three blocks'
first convs at 1 of 16 channels and 55.4% right after the strip, 57.1%
after two stripped epochs; a ramp of 390 steps (all 50,000 images) 82.45%
right after the strip (docs/accuracy.md, "Short fits").
"""

import math
import warnings

# Fewer ramp steps than this get a warning before training.
SHORT_RAMP_STEPS = 100
# The default ramp: the fewest whole epochs of at least this many steps
# (ramps of 314 and 390 steps did well on the ResNet-56 and ResNet-20 fits of
# docs/accuracy.md, 39 did not)...
DEFAULT_RAMP_STEPS = 300
# ... and at most this fraction of the fit's epochs (rounded down, at least 1).
LONGEST_DEFAULT_RAMP = 0.75


def default_ramp_epochs(epochs, steps_per_epoch, begin_step=0):
    """Epochs the budget ramps over when `PruningCallback` has no `end_step`.

    The fewest whole epochs that hold `DEFAULT_RAMP_STEPS` steps after
    `begin_step`, so that the rest of the fit fine-tunes with the masks
    fixed at a rate still near its peak, but at most 75% of the epochs (at
    least one). Measured on the
    shipped ResNet-20, 50% of the FLOPs, 5 epochs of 390 steps, cosine
    (docs/accuracy.md, "The main job under the plain call"): a ramp over
    3 epochs (75%, the default until 2026-12-07) left the network 2.01
    points below dense, 2 epochs 1.53, 1 epoch (the two-fit recipe's
    ramp) 1.54 (seed 0). A longer ramp only shortens the fine-tune after
    the closing, where the rate has already decayed.

    Args:
        epochs: the fit's epochs.
        steps_per_epoch: its steps per epoch, or `None` when unknown.
        begin_step: the step where the ramp starts. Defaults to 0.

    Returns:
        A whole number of epochs, between 1 and `max(1, int(0.75 * epochs))`.

    Example:

    >>> default_ramp_epochs(5, 390)  # the main job: 390 steps are enough
    1
    >>> default_ramp_epochs(3, 78)  # 10,000 images: 2 epochs (156 steps)
    2
    """
    longest = max(1, int(LONGEST_DEFAULT_RAMP * epochs))
    if not steps_per_epoch:
        return longest
    needed = math.ceil((begin_step + DEFAULT_RAMP_STEPS) / steps_per_epoch)
    return min(longest, max(1, needed))


def warn_if_short(ramp_steps, target):
    """Warns, before training, when the budget ramps over too few steps.

    Args:
        ramp_steps: training steps between `begin_step` and `end_step`, or
            `None` when the fit's length is unknown.
        target: the callback's target (fraction of the cost to remove).

    Returns:
        Whether it warned.

    Example:

    >>> warn_if_short(39, 0.5)  # doctest: +SKIP
    True
    """
    if ramp_steps is None or ramp_steps >= SHORT_RAMP_STEPS:
        return False
    warnings.warn(
        f"PruningCallback(target={target}): the budget ramps over only "
        f"{int(ramp_steps)} training steps. Gates need at least "
        f"{SHORT_RAMP_STEPS} to learn which channels matter; with fewer, the "
        "closing ranks channels mostly by their prior and may leave whole "
        "groups at one channel (on a ResNet-20, a 39-step ramp to half the "
        "FLOPs scored 30 points below dense). Prune over more steps (more "
        "epochs or data, a smaller batch, or end_step=), or lower the target.",
        stacklevel=3,
    )
    return True
