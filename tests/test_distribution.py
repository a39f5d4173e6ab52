"""Pruning on two devices: tf.distribute.MirroredStrategy (TensorFlow) and
keras.distribution.DataParallel (JAX), against one device, same seed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.backend_agnostic

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_fit.py")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend not in ("tensorflow", "jax"):
        pytest.skip(f"no two-device setup written for {backend}")
    done = subprocess.run(
        [sys.executable, SCRIPT, str(tmp_path_factory.mktemp("dist"))],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_two_devices_give_the_single_device_masks_and_budget(result):
    single, multi = result["single"], result["multi"]
    assert result["devices"] == 2
    assert multi["masks"] == single["masks"]
    assert multi["flops"] == single["flops"] <= 0.51 * multi["dense_flops"]
    for a, b in zip(multi["logits"], single["logits"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_budget_state_is_identical_on_every_replica(result):
    """Gate masks, temperature, step and lambda: one value on all devices,
    so the regulariser and the schedule run once, not once per replica."""
    for name, copies in result["multi"]["replicas"].items():
        assert len(copies) == result["devices"], name
        assert all(copy == copies[0] for copy in copies), name
    assert result["multi"]["replicas"]["pruning_budget/step"][0] == 12.0  # 3 epochs x 4


def test_model_trained_on_two_devices_strips_and_exports(result):
    multi = result["multi"]
    assert multi["stripped_flops"] == multi["flops"]
    assert multi["strip_error"] < 1e-5 and multi["reload_error"] < 1e-6
