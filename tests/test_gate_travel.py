"""The gates' travel over the ramp under Adam-like optimizers, and the warning
before a fit whose rate cannot carry them to their fence."""

import math

import helpers
import keras
import pytest
from helpers import fit_warnings, linked_two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.budget.gate_travel import gate_travel, median_distance
from keras_relaxprune.layers.channel_gate import INITIAL_GATE, INITIAL_SCALE

pytestmark = pytest.mark.backend_agnostic

CANNOT_REACH = "cannot learn which channels to drop"


def _fit_warnings(optimizer, **options):
    """The warnings of a 4-epoch fit (16 steps; the ramp: 12) with `optimizer`."""
    gated = linked_two_conv_net()[1]
    return fit_warnings(gated, optimizer, krp.PruningCallback(0.5, **options))


def test_travel_is_ramp_steps_times_the_rate_for_rate_sized_steps_only():
    assert gate_travel(keras.optimizers.Adam(1e-4), 156) == pytest.approx(0.0156)
    assert gate_travel(keras.optimizers.Lion(1e-3), 10) == pytest.approx(0.01)
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW(1e-3))
    assert gate_travel(scaled, 100) == pytest.approx(0.1)
    cosine = keras.optimizers.schedules.CosineDecay(1e-3, 1000)
    assert gate_travel(keras.optimizers.Adam(cosine), 100) == pytest.approx(0.1)  # its peak
    assert gate_travel(keras.optimizers.SGD(1e-4), 156) is None
    assert gate_travel(keras.optimizers.Adam(1e-4), None) is None


def test_gates_start_logit_099_over_50_from_their_fence():
    gates = helpers.gates(linked_two_conv_net()[1])
    expected = math.log(INITIAL_GATE / (1 - INITIAL_GATE)) / INITIAL_SCALE
    assert median_distance(gates) == pytest.approx(expected, rel=1e-5)
    assert median_distance([]) is None


def test_adam_too_slow_for_its_ramp_is_warned_about_with_the_rate_that_would_do():
    messages = [m for m in _fit_warnings(keras.optimizers.Adam(1e-5)) if CANNOT_REACH in m]
    assert len(messages) == 1, messages
    assert "under Adam" in messages[0] and "12-step ramp at 1e-05" in messages[0]
    assert "at least 0.0077" in messages[0]  # 0.092 / 12 steps (no BatchNormalization: no prior)


@pytest.mark.parametrize(
    "optimizer", [lambda: keras.optimizers.Adam(0.05), lambda: keras.optimizers.SGD(1e-5)]
)
def test_a_rate_that_can_carry_the_gates_or_sgd_is_not_warned_about(optimizer):
    assert not [m for m in _fit_warnings(optimizer()) if CANNOT_REACH in m]
