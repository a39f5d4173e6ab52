"""Coverage of keras.applications: one model per family reaches the goal.

For each family (random weights, a small input), every gate of the gated
model keeping one channel leaves at most 30% of the dense FLOPs
(`least_flops_fraction`, from `benchmarks/coverage.py`, which writes the
docs' coverage table); random masks strip exactly with equal counts. The
heavier graphs are `slow`.
"""

from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import gates, load_script

import keras_relaxprune as krp

pytestmark = pytest.mark.backend_agnostic

COVERAGE = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "coverage.py")
FAST = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "VGG16")
SLOW = sorted(set(COVERAGE.APPLICATIONS) - set(FAST))


def _reaches_the_goal(name):
    build, shape = COVERAGE.APPLICATIONS[name]
    keras.backend.clear_session()
    row = COVERAGE.check_model(name, build, shape)
    assert "error" not in row, row
    assert row["least_flops"] <= COVERAGE.GOAL, row
    assert row["strip_exact"], row
    assert row["counts_equal"], row


def test_every_family_is_listed():
    assert set(FAST) | set(SLOW) == set(COVERAGE.APPLICATIONS)
    assert len(COVERAGE.APPLICATIONS) == 14


@pytest.mark.parametrize("name", FAST)
def test_application_reaches_the_coverage_goal(name):
    if keras.backend.backend() != "tensorflow" and name != "MobileNet":
        pytest.skip("the same graph rules as on TensorFlow; MobileNet covers JAX")
    _reaches_the_goal(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_heavier_application_reaches_the_coverage_goal(name):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the same graph rules as on TensorFlow; the four fast families cover JAX")
    _reaches_the_goal(name)


def _small_convnet():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="first")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="second")(keras.layers.ReLU()(x))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_least_flops_fraction_counts_one_channel_per_gate_and_restores_masks():
    model = _small_convnet()
    gated = krp.add_gates(model)
    masks = {gate.name: np.arange(gate.channels) % 2 for gate in gates(gated)}
    for gate in gates(gated):
        gate.keep_mask.assign(masks[gate.name].astype("float32"))
    least = COVERAGE.least_flops_fraction(model, gated)
    for gate in gates(gated):  # the masks as they were
        np.testing.assert_array_equal(gate.keep_mask.numpy(), masks[gate.name])
    for gate in gates(gated):
        gate.keep_mask.assign(np.eye(gate.channels, dtype="float32")[0])
    assert least == krp.count_flops(gated) / krp.count_flops(model)
    assert 0 < least < 0.3


def test_rows_name_what_stops_the_rest_and_errors():
    row = COVERAGE.check_model("ViT", COVERAGE.keras_vit, (32, 32, 3))
    assert row["strip_exact"] and row["counts_equal"], row
    assert row["stoppers"] and all(s["flops_fraction"] > 0 for s in row["stoppers"]), row

    def broken():
        raise ValueError("no such model")

    failed = COVERAGE.check_model("broken", broken, (8, 8, 3))
    assert failed["error"] == "ValueError: no such model"
    text = COVERAGE.table([row, failed])
    assert "| broken | 8x8x3 |" in text and "fails to gate: `ValueError: no such model`" in text


def test_multiplier_blocks_reach_the_goal():
    row = COVERAGE.check_model("blocks", COVERAGE.multiplier_blocks, (32, 32, 3))
    assert row["least_flops"] <= COVERAGE.GOAL and row["strip_exact"] and row["counts_equal"]
