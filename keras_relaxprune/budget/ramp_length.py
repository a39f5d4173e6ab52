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

import warnings

# Fewer ramp steps than this get a warning before training.
SHORT_RAMP_STEPS = 100


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
