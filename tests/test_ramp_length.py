"""A budget ramped over a few dozen steps is warned about before training."""

import warnings

import keras
import numpy as np
import pytest

import keras_relaxprune as krp
from keras_relaxprune.budget.ramp_length import SHORT_RAMP_STEPS, warn_if_short

pytestmark = pytest.mark.backend_agnostic


def _fit(**options):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    gated = krp.add_gates(keras.Model(inputs, keras.layers.Dense(3)(x)))
    gated.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 3), dtype=np.float32), rng.integers(0, 3, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gated.fit(
            x,
            y,
            batch_size=16,
            epochs=4,
            verbose=0,
            callbacks=[krp.PruningCallback(0.5, **options)],
        )
    return [str(w.message) for w in caught if "ramps over only" in str(w.message)]


def test_a_fit_of_a_few_dozen_steps_is_warned_with_the_fix():
    messages = _fit()  # 4 epochs of 4 steps: the ramp takes 3 epochs, 12 steps
    assert len(messages) == 1
    assert "only 12 training steps" in messages[0]
    assert "more epochs or data" in messages[0]


def test_a_ramp_of_enough_steps_is_not_warned():
    assert _fit(end_step=SHORT_RAMP_STEPS) == []  # closes when the fit ends


def test_unknown_or_long_ramps_are_not_warned():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_short(None, 0.5)
        assert not warn_if_short(SHORT_RAMP_STEPS, 0.5)
    with pytest.warns(UserWarning, match="only 39 training steps"):
        assert warn_if_short(39, 0.5)
