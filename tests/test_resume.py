"""A run killed between epochs resumes (BackupAndRestore) to the same masks."""

import keras
import numpy as np
import pytest

import keras_relaxprune as krp
from helpers import gates
from keras_relaxprune.budget import find_budget
from keras_relaxprune.models import cifar_resnet

pytestmark = pytest.mark.backend_agnostic


class _Kill(keras.callbacks.Callback):
    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            raise KeyboardInterrupt("simulated kill")


def _run(backup_dir, extra_callbacks=()):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((96, 32, 32, 3), "float32")
    y = rng.integers(0, 10, 96)
    gated = krp.add_gates(cifar_resnet(depth=8, width=8))
    gated.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss="sparse_categorical_crossentropy")
    callbacks = [krp.PruningCallback(target=0.6),
                 keras.callbacks.BackupAndRestore(str(backup_dir)), *extra_callbacks]
    gated.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    return gated


def test_killed_run_resumes_to_the_uninterrupted_masks(tmp_path):
    reference = _run(tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "killed", [_Kill(after_epoch=1)])
    resumed = _run(tmp_path / "killed")
    assert float(find_budget(resumed).step.numpy()) == float(find_budget(reference).step.numpy())
    for a, b in zip(gates(reference), gates(resumed)):
        np.testing.assert_array_equal(a.keep_mask.numpy(), b.keep_mask.numpy())
        np.testing.assert_allclose(a.scale.numpy(), b.scale.numpy())
