"""Tests of keras_relaxprune.exporting.latency: `tflite_latency` (LiteRT)."""

import keras
import numpy as np
import pytest

from keras_relaxprune.exporting.export import export
from keras_relaxprune.exporting.latency import tflite_latency

# A `.tflite` file is written by `export`, which needs the TensorFlow backend;
# the `tf` extra installs LiteRT (ai_edge_litert) beside it.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TFLite export and LiteRT need the TensorFlow backend",
)


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path_factory.mktemp("latency") / "model"
    return export(keras.Model(inputs, outputs), path, formats=("tflite",))["tflite"]


def test_median_and_tenth_percentile_of_real_invocations(tflite_file):
    sample = np.random.default_rng(0).random((1, 16, 16, 3)).astype("float32")
    timing = tflite_latency(tflite_file, sample, runs=20, warmup=2, num_threads=1)
    assert set(timing) == {"median_s", "p10_s"}
    assert 0.0 < timing["p10_s"] <= timing["median_s"] < 1.0


class _CountingInterpreter:
    """Stands in for LiteRT's `Interpreter` and records what it is asked."""

    made = []

    def __init__(self, model_path, num_threads):
        self.model_path, self.num_threads = model_path, num_threads
        self.calls, self.invocations = [], 0
        _CountingInterpreter.made.append(self)

    def get_input_details(self):
        return [{"index": 7, "dtype": np.float32}]

    def resize_tensor_input(self, index, shape):
        self.calls.append(("resize", index, tuple(shape)))

    def allocate_tensors(self):
        self.calls.append(("allocate",))

    def set_tensor(self, index, value):
        self.calls.append(("set", index, value.dtype, value.shape))

    def invoke(self):
        self.invocations += 1


def test_warmup_then_timed_runs_on_the_sample_resized_and_cast(monkeypatch, tflite_file):
    from ai_edge_litert import interpreter

    monkeypatch.setattr(interpreter, "Interpreter", _CountingInterpreter)
    _CountingInterpreter.made.clear()
    sample = np.zeros((3, 8, 8, 3), "float64")  # cast to the input's float32
    timing = tflite_latency(tflite_file, sample, runs=9, warmup=4, num_threads=3)
    (made,) = _CountingInterpreter.made
    assert (made.model_path, made.num_threads) == (str(tflite_file), 3)
    assert made.invocations == 4 + 9
    assert made.calls == [
        ("resize", 7, (3, 8, 8, 3)),
        ("allocate",),
        ("set", 7, np.dtype("float32"), (3, 8, 8, 3)),
    ]
    assert timing["p10_s"] <= timing["median_s"]
