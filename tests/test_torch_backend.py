"""The core on the PyTorch backend: runs when torch is installed, else skipped.

CI does not install torch (its wheel is several GB), so this test is skipped
there; `pip install torch` and run pytest to exercise it.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed"
)

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    import numpy as np, keras
    import keras_relaxprune as krp
    import model_zoo
    keras.utils.set_random_seed(0)
    dense = model_zoo.resnet_basic()
    gated = krp.add_gates(dense)
    gated.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((64, 16, 16, 3), "float32")
    y = np.random.default_rng(1).integers(0, 10, 64)
    gated.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[krp.PruningCallback(target=0.5)])
    fraction = krp.count_flops(gated) / krp.count_flops(dense)
    small = krp.strip_pruning(gated)
    diff = float(np.max(np.abs(keras.ops.convert_to_numpy(small(x[:4]))
                               - keras.ops.convert_to_numpy(gated(x[:4])))))
    print(f"RESULT {fraction:.4f} {diff:.2e}")
""")


def test_prune_and_strip_on_torch(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="torch")
    root = os.path.dirname(os.path.dirname(__file__))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fraction, diff = done.stdout.split("RESULT")[-1].split()
    assert 0.49 <= float(fraction) <= 0.51
    assert float(diff) < 1e-4
