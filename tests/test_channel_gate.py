"""Tests of keras_relaxprune.layers.channel_gate: the `ChannelGate` layer."""

import math

import keras
import numpy as np
import pytest

from keras_relaxprune.layers.channel_gate import INITIAL_GATE, INITIAL_SCALE, ChannelGate

pytestmark = pytest.mark.backend_agnostic


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _gate_with(input_channels, seed=0, scale=7.0, **kwargs):
    """A gate built for `input_channels`, with random logits, a random keep
    mask (both 0 and 1 present) and `scale`."""
    rng = np.random.default_rng(seed)
    gate = ChannelGate(**kwargs)
    gate.build((None, 4, 4, input_channels))
    count = gate.channels
    logits = rng.normal(scale=0.5, size=count).astype("float32")
    keep = (rng.random(count) < 0.6).astype("float32")
    keep[0], keep[-1] = 1.0, 0.0  # both kinds present
    gate.logits.assign(logits)
    gate.keep_mask.assign(keep)
    gate.scale.assign(scale)
    return gate, logits, keep


def test_output_is_input_times_sigmoid_of_scaled_logits_times_keep_mask():
    gate, logits, keep = _gate_with(6)
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 6)).astype("float32")
    expected = x * _sigmoid(7.0 * logits) * keep
    np.testing.assert_allclose(_numpy(gate(x)), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_numpy(gate.gate_values()), _sigmoid(7.0 * logits) * keep, rtol=1e-6)
    assert np.all(_numpy(gate(x))[..., keep == 0] == 0.0)  # pruned: exactly zero


@pytest.mark.parametrize(
    ("initial_gate", "initial_scale"), [(INITIAL_GATE, INITIAL_SCALE), (0.9, 5.0)]
)
def test_a_new_gate_starts_at_initial_gate_with_logits_scaled_down(initial_gate, initial_scale):
    gate = ChannelGate(initial_gate=initial_gate, initial_scale=initial_scale)
    x = np.ones((1, 3, 3, 4), "float32")
    np.testing.assert_allclose(_numpy(gate(x)), initial_gate, rtol=1e-5)
    logit = math.log(initial_gate / (1 - initial_gate)) / initial_scale
    np.testing.assert_allclose(_numpy(gate.logits), [logit] * 4, rtol=1e-5)
    assert float(_numpy(gate.scale)) == initial_scale
    np.testing.assert_array_equal(_numpy(gate.keep_mask), np.ones(4))


def test_only_the_logits_are_trainable_and_nothing_regularises_them():
    gate = ChannelGate()
    gate.build((None, 5))
    assert [w.name for w in gate.trainable_weights] == ["logits"]
    assert sorted(w.name for w in gate.non_trainable_weights) == ["keep_mask", "scale"]
    assert gate.channels == 5 and gate.scale.shape == ()
    gate(np.ones((2, 5), "float32"))
    assert gate.losses == []  # no regulariser on the logits (no decay to 0.5)


def test_channels_k_repeats_k_gates_over_tied_copies():
    """`channels=k` on `3k` channels: channel `j` of every copy has gate `j`."""
    gate, logits, keep = _gate_with(12, channels=4)
    assert gate.channels == 4 and gate.logits.shape == (4,)
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 12)).astype("float32")
    values = _sigmoid(7.0 * logits) * keep
    np.testing.assert_allclose(_numpy(gate(x)), x * np.tile(values, 3), rtol=1e-6, atol=1e-7)
    assert gate.compute_output_shape((2, 4, 4, 12)) == (2, 4, 4, 12)


def test_channels_that_do_not_tile_the_input_are_refused():
    gate = ChannelGate(channels=5)
    with pytest.raises(ValueError, match="5 gates, which do not tile an input of 12"):
        gate.build((None, 12))
    built = ChannelGate(channels=4)
    built.build((None, 8))
    with pytest.raises(ValueError, match="do not tile"):
        built(np.ones((1, 6), "float32"))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"initial_gate": 1.0}, "initial_gate must be in \\(0, 1\\)"),
        ({"initial_gate": 0.0}, "initial_gate must be in \\(0, 1\\)"),
        ({"channels": 0}, "channels must be positive"),
    ],
)
def test_bad_arguments_are_refused(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ChannelGate(**kwargs)


def test_an_unknown_channel_count_is_refused():
    with pytest.raises(ValueError, match="needs a known channel count"):
        ChannelGate().build((None, 4, 4, None))


@pytest.mark.parametrize("channels", [None, 2])
def test_config_round_trip(channels):
    gate = ChannelGate(initial_gate=0.9, initial_scale=20.0, channels=channels, name="g")
    config = gate.get_config()
    assert (config["initial_gate"], config["initial_scale"], config["channels"]) == (
        0.9,
        20.0,
        channels,
    )
    again = ChannelGate.from_config(config)
    assert again.get_config() == config
    revived = keras.layers.deserialize(keras.layers.serialize(gate))
    assert isinstance(revived, ChannelGate) and revived.get_config() == config


def test_a_saved_model_keeps_logits_masks_and_scale(tmp_path):
    inputs = keras.Input((4, 4, 6))
    gate = ChannelGate(channels=3, name="gate")
    model = keras.Model(inputs, gate(inputs))
    _, logits, keep = _gate_with(6, seed=4, channels=3)
    gate.logits.assign(logits)
    gate.keep_mask.assign(keep)
    gate.scale.assign(7.0)
    path = tmp_path / "gated.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(5).normal(size=(2, 4, 4, 6)).astype("float32")
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), rtol=1e-6)
    revived = loaded.get_layer("gate")
    assert isinstance(revived, ChannelGate) and revived.gate_count == 3
    np.testing.assert_array_equal(_numpy(revived.keep_mask), keep)
    assert float(_numpy(revived.scale)) == 7.0


def test_training_moves_open_gates_and_leaves_pruned_ones():
    """A pruned channel's gate is 0 whatever its logit: its logit gets no
    gradient, so a plain SGD step leaves it where it is."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    gate = ChannelGate(initial_scale=5.0)
    model = keras.Model(inputs, keras.layers.Dense(1)(gate(inputs)))
    keep = np.array([1, 0, 1, 0, 1, 1], "float32")
    gate.keep_mask.assign(keep)
    before = _numpy(gate.logits).copy()
    rng = np.random.default_rng(0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(
        rng.normal(size=(16, 6)).astype("float32"),
        rng.normal(size=(16, 1)).astype("float32"),
        epochs=1,
        batch_size=16,
        verbose=0,
    )
    after = _numpy(gate.logits)
    np.testing.assert_array_equal(after[keep == 0], before[keep == 0])
    assert np.all(after[keep == 1] != before[keep == 1])
    np.testing.assert_array_equal(_numpy(gate.keep_mask), keep)  # fit leaves masks alone


def test_mixed_precision_computes_in_float16_with_float32_variables():
    gate = ChannelGate(dtype="mixed_float16")
    y = gate(np.full((1, 4), 2.0, "float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert keras.backend.standardize_dtype(gate.logits.dtype) == "float32"
    np.testing.assert_allclose(_numpy(y).astype("float32"), 2 * INITIAL_GATE, rtol=1e-3)
