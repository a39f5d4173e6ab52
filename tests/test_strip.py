"""strip_pruning: exact removal, collapse, refusal, counts."""

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates, random_masks
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.layers.pruning_budget import PruningBudget

pytestmark = pytest.mark.backend_agnostic


def _randomize(model, seed):
    """Random gate logits and BN statistics, so folding and constants matter."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, krp.ChannelGate):
            layer.logits.assign(rng.normal(0.0, 0.05, layer.channels).astype("float32"))
        if isinstance(layer, layers.BatchNormalization):
            width = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, width),
                    rng.normal(0, 0.2, width),
                    rng.normal(0, 0.2, width),
                    rng.uniform(0.5, 1.5, width),
                ]
            )


def _assert_same(stripped, gated, seed=0):
    shape = gated.input_shape[1:]
    x = np.random.default_rng(seed).random((3, *shape), "float32")
    expected = np.asarray(keras.ops.convert_to_numpy(gated(x)))
    actual = np.asarray(keras.ops.convert_to_numpy(stripped(x)))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


EXACT = sorted(model_zoo.ALL)


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("seed", [1, 2])
def test_strip_is_exact_and_counts_match(name, seed):
    gated = krp.add_gates(model_zoo.ALL[name]())
    _randomize(gated, seed)
    random_masks(gated, seed, keep=0.5)
    stripped = krp.strip_pruning(gated)
    _assert_same(stripped, gated)
    assert krp.count_params(stripped) == krp.count_params(gated) == stripped.count_params()
    assert krp.count_flops(stripped) == krp.count_flops(gated)
    assert not any(isinstance(l, (krp.ChannelGate, PruningBudget)) for l in stripped.layers)


def test_densenet_bn_over_concat_is_gated_per_part_and_slices_vanish():
    gated = krp.add_gates(model_zoo.densenet_chain())
    _randomize(gated, 4)
    random_masks(gated, 4, keep=0.5)
    stripped = krp.strip_pruning(gated)
    _assert_same(stripped, gated)
    assert krp.count_flops(stripped) == krp.count_flops(gated)
    ops = {type(l).__name__ for l in stripped.operations}
    assert "GetItem" not in ops  # the per-part gating leaves no slice behind


def test_constant_reaching_padded_conv_is_protected_not_guessed():
    """sigmoid(0) = 0.5 would reach a padded conv: conv_a's channels are kept
    whole at add_gates (with a warning), so strip never has to refuse."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    x = layers.Activation("sigmoid", name="sigmoid")(x)  # sigmoid(0) = 0.5
    x = layers.Conv2D(4, 3, padding="same", name="conv_b")(x)
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    with pytest.warns(UserWarning, match="'conv_a'.*'sigmoid'.*'conv_b'"):
        gated = krp.add_gates(keras.Model(inputs, outputs))
    assert "conv_a_gate" not in {layer.name for layer in gated.layers}
    random_masks(gated, 0)
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).random((2, 8, 8, 3), "float32")
    np.testing.assert_allclose(small(x), gated(x), rtol=1e-4, atol=1e-5)


def test_layer_names_survive_and_widths_shrink():
    model = model_zoo.resnet_basic()
    gated = krp.add_gates(model)
    random_masks(gated, 5, keep=0.5)
    stripped = krp.strip_pruning(gated)
    names = {l.name for l in model.layers}
    assert {l.name for l in stripped.layers} == names
    original = model.get_layer("stage3_block1_1_conv").filters
    assert stripped.get_layer("stage3_block1_1_conv").filters < original


def test_fully_pruned_residual_branch_collapses_into_its_shortcut():
    model = model_zoo.resnet_basic()
    gated = krp.add_gates(model)
    _randomize(gated, 6)
    inner = gated.get_layer("stage2_block1_1_conv_gate")
    inner.keep_mask.assign(np.zeros(inner.channels, "float32"))
    stripped = krp.strip_pruning(gated)
    _assert_same(stripped, gated)
    names = {l.name for l in stripped.layers}
    # The branch's convs and BNs are gone; its constant output became an offset.
    for gone in (
        "stage2_block1_1_conv",
        "stage2_block1_1_bn",
        "stage2_block1_2_conv",
        "stage2_block1_2_bn",
    ):
        assert gone not in names
    assert "stage2_block1_add_collapsed" in names
    assert len(stripped.layers) < len(model.layers)
    assert krp.count_flops(stripped) == krp.count_flops(gated)


def test_threshold_removes_weak_gates_too():
    gated = krp.add_gates(model_zoo.mlp_head())
    gate = gated.get_layer("fc1_gate")
    logits = np.full(gate.channels, 0.1, "float32")
    logits[:10] = -0.1  # gate values sigmoid(50 * -0.1) = 0.007
    gate.logits.assign(logits)
    stripped = krp.strip_pruning(gated, threshold=0.05)
    assert stripped.get_layer("fc1").units == gate.channels - 10
    mask = np.ones(gate.channels, "float32")
    mask[:10] = 0
    gate.keep_mask.assign(mask)
    _assert_same(stripped, gated)


def test_model_without_gates_is_copied_unchanged():
    model = model_zoo.resnet_basic()
    copy = krp.strip_pruning(model)
    _assert_same(copy, model)
    assert copy.count_params() == model.count_params()


def test_gated_model_loaded_from_keras_file_strips(tmp_path):
    gated = krp.add_gates(model_zoo.mobilenet_v2_block_net())
    _randomize(gated, 7)
    random_masks(gated, 7)
    path = str(tmp_path / "gated.keras")
    gated.save(path)
    loaded = keras.saving.load_model(path)
    _assert_same(krp.strip_pruning(loaded), gated)


def test_output_losing_every_channel_is_refused():
    gated = krp.add_gates(model_zoo.conv1d_net())
    for gate in gates(gated):
        gate.keep_mask.assign(np.zeros(gate.channels, "float32"))
    with pytest.raises(
        krp.StripError, match="model output would be a constant|reaching a model output"
    ):
        krp.strip_pruning(gated)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export needs TensorFlow")
def test_stripped_model_exports_to_saved_model_and_tflite(tmp_path):
    from keras_relaxprune.exporting.export import load_saved_model_fn, run_tflite

    gated = krp.add_gates(model_zoo.resnet_bottleneck())
    _randomize(gated, 8)
    random_masks(gated, 8, keep=0.4)
    stripped = krp.strip_pruning(gated)
    paths = krp.export(stripped, str(tmp_path / "small"))
    x = np.random.default_rng(0).random((2, 16, 16, 3), "float32")
    expected = np.asarray(gated(x))
    np.testing.assert_allclose(load_saved_model_fn(paths["saved_model"])(x), expected, atol=1e-4)
    np.testing.assert_allclose(run_tflite(paths["tflite"], x), expected, atol=1e-4)
    reloaded = keras.saving.load_model(paths["keras"])
    np.testing.assert_allclose(np.asarray(reloaded(x)), expected, atol=1e-5)


def test_report_compares_dense_and_stripped_layer_by_layer():
    model = model_zoo.resnet_basic()
    gated = krp.add_gates(model)
    random_masks(gated, 9, keep=0.5)
    stripped = krp.strip_pruning(gated)
    report = krp.pruning_report(model, stripped)
    assert report.totals["flops_after"] == krp.count_flops(stripped)
    assert report.totals["params_before"] == model.count_params()
    row = next(r for r in report.rows if r["name"] == "stage3_block1_1_conv")
    assert row["channels_before"] == 32
    assert row["channels_after"] == stripped.get_layer("stage3_block1_1_conv").filters
    assert "stage3_block1_1_conv" in str(report)
    assert report.to_dict()["totals"] == report.totals


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="loads a JAX-made file on TF")
def test_gated_model_saved_on_jax_strips_on_tensorflow(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, "tests")
        import numpy as np, keras_relaxprune as krp, model_zoo
        from helpers import random_masks
        gated = krp.add_gates(model_zoo.resnet_basic())
        random_masks(gated, 11, keep=0.5)
        x = np.random.default_rng(0).random((2, 16, 16, 3), "float32")
        np.save(r"{tmp_path / "x.npy"}", x)
        np.save(r"{tmp_path / "y.npy"}", np.asarray(gated(x)))
        gated.save(r"{tmp_path / "gated.keras"}")
    """)
    env = dict(os.environ, KERAS_BACKEND="jax")
    root = os.path.dirname(os.path.dirname(__file__))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    gated = keras.saving.load_model(str(tmp_path / "gated.keras"))
    stripped = krp.strip_pruning(gated)
    x, expected = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(np.asarray(stripped(x)), expected, rtol=1e-5, atol=1e-6)


def test_batch_norm_without_scale_or_center_takes_the_folded_gate():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(scale=False, center=False, name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    gated = krp.add_gates(keras.Model(inputs, outputs))
    rng = np.random.default_rng(12)
    gated.get_layer("bn").set_weights([rng.normal(0, 0.2, 6), rng.uniform(0.5, 1.5, 6)])
    gate = gated.get_layer("conv_gate")
    gate.logits.assign(rng.normal(0.0, 0.05, 6).astype("float32"))
    gate.keep_mask.assign(np.array([1, 0, 1, 1, 0, 1], "float32"))
    stripped = krp.strip_pruning(gated)
    _assert_same(stripped, gated)


def test_stripping_before_any_channel_is_off_warns():
    gated = krp.add_gates(model_zoo.mlp_head())
    with pytest.warns(UserWarning, match="no channel .* is switched off"):
        krp.strip_pruning(gated)
