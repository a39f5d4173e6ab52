"""Tests of keras_relaxprune.exporting.export: .keras, SavedModel and TFLite files."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import randomize_batch_norms

from keras_relaxprune.errors import PruningError
from keras_relaxprune.exporting.export import export, load_saved_model_fn, run_tflite
from keras_relaxprune.layers.channel_gate import ChannelGate

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel/TFLite export needs the TensorFlow backend",
)

L = keras.layers


def _conv_bn_relu(x, filters):
    x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    return L.ReLU()(L.BatchNormalization()(x))


def _classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    a = _conv_bn_relu(inputs, 32)
    # 32x32x3x3 weights: over the 1024-element threshold below which the
    # TFLite quantisers leave a tensor in float32.
    b = _conv_bn_relu(a, 32)
    b = L.DepthwiseConv2D(3, padding="same", use_bias=False)(b)
    b = L.ReLU()(L.BatchNormalization()(b))
    x = L.GlobalAveragePooling2D()(L.Add()([a, b]))
    return randomize_batch_norms(keras.Model(inputs, L.Dense(10)(x)), seed=1)


def _segmenter():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((None, None, 3))
    x = _conv_bn_relu(inputs, 8)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    return randomize_batch_norms(keras.Model(inputs, L.Conv2D(3, 1)(x)), seed=3)


def _batch(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.fixture(scope="module")
def classifier():
    return _classifier()


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    return export(classifier, tmp_path_factory.mktemp("export") / "cnn_p90")


def test_layout(exported):
    assert list(exported) == ["keras", "saved_model", "tflite"]
    base = os.path.dirname(exported["keras"])
    assert exported == {
        "keras": os.path.join(base, "model.keras"),
        "saved_model": os.path.join(base, "saved_model"),
        "tflite": os.path.join(base, "model.tflite"),
    }
    assert os.path.isfile(os.path.join(base, "saved_model", "saved_model.pb"))


def test_keras_file_reloads(classifier, exported):
    x = _batch(4, 16, 16, 3)
    reloaded = keras.saving.load_model(exported["keras"])
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-5
    )


def test_saved_model_serving_default(classifier, exported):
    import tensorflow as tf

    assert "serving_default" in tf.saved_model.load(exported["saved_model"]).signatures
    x = _batch(5, 16, 16, 3)
    np.testing.assert_allclose(
        load_saved_model_fn(exported["saved_model"])(x),
        classifier.predict(x, verbose=0),
        atol=1e-4,
    )


def test_saved_model_cli_shows_serving_default(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed")
    shown = subprocess.run(
        [cli, "show", "--dir", exported["saved_model"], "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "serving_default" in shown


def test_tflite_float32_matches_keras(classifier, exported):
    for n in (1, 6):  # the interpreter is resized to each batch
        x = _batch(n, 16, 16, 3, seed=n)
        np.testing.assert_allclose(
            run_tflite(exported["tflite"], x),
            classifier.predict(x, verbose=0),
            atol=1e-4,
        )


def test_quantised_tflite_is_smaller(classifier, exported, tmp_path):
    x = _batch(4, 16, 16, 3)
    expected = classifier.predict(x, verbose=0)
    float32 = os.path.getsize(exported["tflite"])
    half = export(classifier, tmp_path, "tflite", tflite_quantization="float16")
    assert half == {"tflite": str(tmp_path / "model_float16.tflite")}
    assert os.path.getsize(half["tflite"]) < 0.75 * float32
    np.testing.assert_allclose(run_tflite(half["tflite"], x), expected, atol=1e-2)
    dynamic = export(classifier, tmp_path, ["tflite"], tflite_quantization="dynamic")
    assert os.path.getsize(dynamic["tflite"]) < os.path.getsize(half["tflite"])
    scale = np.abs(expected).max()
    assert np.abs(run_tflite(dynamic["tflite"], x) - expected).max() < 0.1 * scale
    assert not os.path.exists(tmp_path / "saved_model")  # scratch copy removed


def test_int8_tflite_with_representative_data(classifier, tmp_path):
    calibration = (_batch(1, 16, 16, 3, seed=s) for s in range(16))
    paths = export(
        classifier, tmp_path, "tflite", tflite_quantization="int8", representative_data=calibration
    )
    x = _batch(4, 16, 16, 3, seed=99)
    expected = classifier.predict(x, verbose=0)
    got = run_tflite(paths["tflite"], x)
    assert got.dtype == np.float32  # float interface around int8 kernels
    assert np.abs(got - expected).max() < 0.15 * np.abs(expected).max()


def test_unknown_spatial_size(tmp_path):
    model = _segmenter()
    paths = export(model, tmp_path / "seg", formats=("saved_model", "tflite"))
    serve = load_saved_model_fn(paths["saved_model"])
    for shape in [(2, 12, 20, 3), (1, 33, 17, 3)]:
        x = _batch(*shape)
        expected = model.predict(x, verbose=0)
        assert expected.shape == shape[:3] + (3,)
        np.testing.assert_allclose(serve(x), expected, atol=1e-4)
        np.testing.assert_allclose(run_tflite(paths["tflite"], x), expected, atol=1e-4)


def test_multiple_outputs_keep_model_order(tmp_path):
    inputs = keras.Input((8, 8, 3), name="image")
    features = L.Conv2D(4, 3)(inputs)
    pooled = L.GlobalAveragePooling2D()(features)
    outputs = [L.Dense(k)(pooled) for k in (5, 3, 2, 7, 1, 6, 4, 9, 8, 11, 12)]
    model = keras.Model(inputs, outputs)
    paths = export(model, tmp_path, ("saved_model", "tflite"))
    x = _batch(2, 8, 8, 3)
    expected = model.predict(x, verbose=0)
    for got in (
        load_saved_model_fn(paths["saved_model"])(x),
        run_tflite(paths["tflite"], {"image": x}),
    ):
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, atol=1e-4)


def test_gated_model_is_refused(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = ChannelGate()(L.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    with pytest.raises(PruningError, match="strip_pruning"):
        export(model, tmp_path / "gated")
    assert not os.path.exists(tmp_path / "gated")  # refused before writing


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"formats": ("keras", "onnx")}, ["formats", "onnx", "saved_model"]),
        ({"tflite_quantization": "int4"}, ["tflite_quantization", "float16"]),
        ({"tflite_quantization": "int8"}, ["representative_data"]),
        ({"representative_data": [np.zeros((1, 16, 16, 3))]}, ["representative_data", "int8"]),
    ],
)
def test_bad_arguments(classifier, tmp_path, kwargs, names):
    with pytest.raises(ValueError) as info:
        export(classifier, tmp_path / "bad", **kwargs)
    for name in names:
        assert name in str(info.value)
    assert not os.path.exists(tmp_path / "bad")


def test_other_backend_writes_keras_then_refuses(tmp_path):
    pytest.importorskip("jax")
    script = (
        "import keras\n"
        "from keras_relaxprune.exporting.export import export\n"
        "i = keras.Input((4, 4, 3))\n"
        "m = keras.Model(i, keras.layers.Conv2D(2, 3)(i))\n"
        f"export(m, {str(tmp_path / 'm')!r})\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "RuntimeError" in done.stderr and "KERAS_BACKEND=tensorflow" in done.stderr
    assert os.path.isfile(tmp_path / "m" / "model.keras")


def test_failed_export_leaves_the_previous_one_whole(classifier, tmp_path, monkeypatch):
    """A format failing half-way writes nothing under the final names and
    keeps an earlier good export; no staging folder is left behind."""
    export_module = sys.modules["keras_relaxprune.exporting.export"]
    export(classifier, tmp_path, ("keras", "saved_model"))
    before = {name: os.path.getmtime(tmp_path / name) for name in ("model.keras", "saved_model")}

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(export_module, "_write_tflite", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export(_classifier(), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "saved_model"]
    assert {name: os.path.getmtime(tmp_path / name) for name in before} == before
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    x = _batch(2, 16, 16, 3)
    np.testing.assert_allclose(reloaded(x), classifier(x), rtol=1e-5, atol=1e-5)
    paths = export(classifier, tmp_path, ("keras", "saved_model"))  # replaces both
    assert load_saved_model_fn(paths["saved_model"])(x).shape == (2, 10)


def test_mixed_precision_model_exports_a_float32_tflite(tmp_path):
    """A mixed_float16 model: the SavedModel and TFLite files are float32."""
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _classifier()
    finally:
        keras.config.set_dtype_policy("float32")
    paths = export(model, tmp_path, ("keras", "tflite"))
    x = _batch(2, 16, 16, 3)
    expected = np.asarray(model(x), "float32")
    np.testing.assert_allclose(run_tflite(paths["tflite"], x), expected, rtol=2e-2, atol=2e-2)
    policies = {layer.dtype_policy.name for layer in keras.saving.load_model(paths["keras"]).layers}
    assert "mixed_float16" in policies  # the .keras file keeps the mixed policy
