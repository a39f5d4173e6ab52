"""A budget ramped over a few dozen steps is warned about before training."""

import warnings

import pytest
from helpers import fit_warnings, linked_two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.budget import ramp_length
from keras_relaxprune.budget.ramp_length import SHORT_RAMP_STEPS, default_ramp_epochs, warn_if_short

pytestmark = pytest.mark.backend_agnostic


def _fit(callback=None, epochs=4, **options):
    gated = linked_two_conv_net()[1]
    callback = callback or krp.PruningCallback(0.5, **options)
    messages = fit_warnings(gated, "sgd", callback, epochs)
    return [m for m in messages if "ramps over only" in m]


def test_a_fit_of_a_few_dozen_steps_is_warned_with_the_fix():
    messages = _fit()  # 4 epochs of 4 steps: the ramp takes 3 epochs, 12 steps
    assert len(messages) == 1
    assert "only 12 training steps" in messages[0]
    assert "more epochs or data" in messages[0]


def test_a_ramp_of_enough_steps_is_not_warned():
    assert _fit(end_step=SHORT_RAMP_STEPS) == []  # closes when the fit ends


def test_unknown_or_long_ramps_are_not_warned():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_short(None, 0.5)
        assert not warn_if_short(SHORT_RAMP_STEPS, 0.5)
    with pytest.warns(UserWarning, match="only 39 training steps"):
        assert warn_if_short(39, 0.5)


@pytest.mark.parametrize(
    "epochs, steps, expected",
    [
        (5, 390, 1),  # the main job: one epoch holds the steps
        (20, 390, 1),
        (5, 150, 2),
        (3, 78, 2),  # at most 75% of the fit
        (5, 100, 3),
        (4, 4, 3),
        (1, 39, 1),
        (2, 1000, 1),
        (5, None, 3),  # unknown length: 75%
    ],
)
def test_the_default_ramp_is_the_fewest_epochs_that_hold_its_steps(epochs, steps, expected):
    assert default_ramp_epochs(epochs, steps) == expected


def test_the_default_ramp_counts_its_steps_from_begin_step():
    assert default_ramp_epochs(10, 390, begin_step=390) == 2
    assert default_ramp_epochs(10, 390, begin_step=100) == 2  # 400 steps
    assert default_ramp_epochs(4, 390, begin_step=2000) == 3  # at most 75%


def test_a_fit_with_long_epochs_closes_after_the_ramp_epochs(monkeypatch):
    """5 epochs of 4 steps with an 8-step default ramp: the budget ramps
    over 2 epochs and closes when the third begins."""
    monkeypatch.setattr(ramp_length, "DEFAULT_RAMP_STEPS", 8)
    callback = krp.PruningCallback(0.5)
    _fit(callback=callback, epochs=5)
    assert callback._closing_epoch == 2
