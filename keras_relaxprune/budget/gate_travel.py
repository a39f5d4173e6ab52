"""How far the gates can move while the budget ramps, under Adam-like optimizers.

A gate closes by learning when its logit crosses 0 (the gate's 0.5 fence).
Adam, AdamW, Adamax, Nadam and Lion normalise each step, so one step moves a
logit by about the learning rate whatever the gradient: over a ramp of `n`
steps at rate `lr`, at most about `n * lr`. The gates start
`logit(0.99) / 50 = 0.092` from it (moved by the BN-gamma prior, weaker
channels nearer: on the shipped ResNet-20 the median is then 0.081). When
the whole ramp cannot carry the median gate to the fence, the gates cannot
learn which channels to drop and the closing makes the cut by their prior. Measured on
the shipped ResNet-20 (87.14%), 50% of the FLOPs, one fit of 3 epochs on
10,000 images (a 156-step ramp), labels only: Adam at 0.001 (travel 0.16)
75.84%, at 0.0001 (travel 0.016) 61.07% (docs/accuracy.md, "The plain call
against the two-fit recipe"). SGD's step scales with the gradient, which the
penalty keeps growing, so it gets no such bound.
"""

import warnings

import keras
import numpy as np

from keras_relaxprune.budget.fit_target import inner_optimizer

# Optimizers whose step is about the learning rate, whatever the gradient's size.
RATE_SIZED_STEPS = (
    keras.optimizers.Adam,
    keras.optimizers.AdamW,
    keras.optimizers.Adamax,
    keras.optimizers.Nadam,
    keras.optimizers.Lion,
)


def current_rate(optimizer):
    """The learning rate `optimizer` steps at now (of a schedule: at its
    current step, for a decaying one the largest still to come), a float."""
    return float(keras.ops.convert_to_numpy(inner_optimizer(optimizer).learning_rate))


def gate_travel(optimizer, ramp_steps):
    """The most a gate's logit can move over the ramp, or `None` without a bound.

    Args:
        optimizer: the fit's optimizer (a `LossScaleOptimizer` is looked into).
        ramp_steps: the ramp's training steps, or `None` when unknown.

    Returns:
        `ramp_steps` times the current rate for an optimizer of
        `RATE_SIZED_STEPS`; `None` for any other optimizer or an unknown ramp.

    Example:

    >>> gate_travel(keras.optimizers.Adam(1e-4), 156)  # doctest: +ELLIPSIS
    0.0156...
    """
    if ramp_steps is None or not isinstance(inner_optimizer(optimizer), RATE_SIZED_STEPS):
        return None
    return ramp_steps * current_rate(optimizer)


def median_distance(gates):
    """The median over all gated channels of `|logit|`: how far a gate
    starts from its 0.5 fence (`None` without gates)."""
    logits = [np.abs(np.ravel(keras.ops.convert_to_numpy(gate.logits))) for gate in gates]
    return float(np.median(np.concatenate(logits))) if logits else None


def warn_if_gates_cannot_reach(optimizer, ramp_steps, gates, target):
    """Warns, before training, when the ramp cannot move the gates to their fence.

    Args:
        optimizer: the fit's optimizer.
        ramp_steps: the ramp's training steps, or `None` when unknown.
        gates: the model's `ChannelGate` layers, their prior already set.
        target: the callback's target (fraction of the cost to remove).

    Returns:
        Whether it warned.

    Example:

    >>> warn_if_gates_cannot_reach(keras.optimizers.Adam(1e-4), 156, gates, 0.5)  # doctest: +SKIP
    True
    """
    travel = gate_travel(optimizer, ramp_steps)
    distance = median_distance(gates)
    if travel is None or not distance or travel >= distance:
        return False
    name = type(inner_optimizer(optimizer)).__name__
    warnings.warn(
        f"PruningCallback(target={target}): under {name} each step "
        "moves a gate's logit by about the learning rate, so over the "
        f"{int(ramp_steps)}-step ramp at {current_rate(optimizer):.3g} the gates move at "
        f"most about {travel:.3g}, less than the {distance:.3g} the median gate "
        "starts from its 0.5 fence. They cannot learn which channels to drop, and "
        "the closing makes the cut by their prior (on a ResNet-20, Adam at 0.0001 "
        "scored 15 points below Adam at 0.001). Ramp at a rate of at least "
        f"{distance / ramp_steps:.2g} (a schedule may start there and decay), use "
        "SGD, or ramp over more steps (end_step=).",
        stacklevel=3,
    )
    return True
