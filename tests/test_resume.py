"""A run killed between epochs resumes (BackupAndRestore) to the same masks."""

import keras
import numpy as np
import pytest
from helpers import SimulatedKill, gates

import keras_relaxprune as krp
from keras_relaxprune.layers.pruning_budget import find_budget
from keras_relaxprune_apps.models import cifar_resnet

pytestmark = pytest.mark.backend_agnostic


def _run(backup_dir, extra_callbacks=()):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((96, 32, 32, 3), "float32")
    y = rng.integers(0, 10, 96)
    gated = krp.add_gates(cifar_resnet(depth=8, width=8))
    gated.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    callbacks = [
        krp.PruningCallback(target=0.6),
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        *extra_callbacks,
    ]
    gated.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    return gated


def test_killed_run_resumes_to_the_uninterrupted_masks(tmp_path):
    reference = _run(tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "killed", [SimulatedKill(1)])
    resumed = _run(tmp_path / "killed")
    assert float(find_budget(resumed).step.numpy()) == float(find_budget(reference).step.numpy())
    for a, b in zip(gates(reference), gates(resumed)):
        np.testing.assert_array_equal(a.keep_mask.numpy(), b.keep_mask.numpy())
        np.testing.assert_allclose(a.scale.numpy(), b.scale.numpy())


def test_run_killed_by_a_signal_mid_epoch_resumes_meets_the_budget(tmp_path):
    """SIGKILL in the middle of an epoch: the rerun resumes from the last
    backup, completes, meets the budget, and no channel switched off before
    the kill comes back on."""
    import json
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "killed_fit.py")
    # On JAX most of a run is compiling (each eager op once per shape): the
    # rerun reads what the killed run compiled from JAX's persistent cache
    # (12 s instead of 35 here). TensorFlow ignores these variables.
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    killed = subprocess.run(
        [sys.executable, script, "kill", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "final.json").exists()
    before = json.loads((tmp_path / "epochs.json").read_text())
    assert sorted(before) == ["0", "1"]  # killed during the third epoch
    resumed = subprocess.run(
        [sys.executable, script, "resume", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = json.loads((tmp_path / "final.json").read_text())
    assert 0.39 <= final["flops"] / final["dense_flops"] <= 0.41
    for at_kill, at_end in zip(before["1"], final["masks"]):
        assert all(end <= kill for kill, end in zip(at_kill, at_end))
