"""recalibrate_batchnorm: moving statistics become the data's batch statistics."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.budget.recalibrate_bn import recalibrate_batchnorm
from keras_relaxprune.layers.pruning_budget import find_budget
from keras_relaxprune_apps.batches import AugmentedBatches

pytestmark = pytest.mark.backend_agnostic


def _net():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3)(x))


def _features(model, x):
    return keras.Model(model.inputs, model.get_layer("conv").output)(x)


@pytest.mark.parametrize("source", ["array", "pydataset", "list"])
def test_moving_statistics_equal_the_average_batch_statistics(source):
    model = _net()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 8, 8, 3)).astype("float32")
    data = {
        "array": x,
        "pydataset": AugmentedBatches(
            x.astype("uint8"), np.zeros(64, int), 16, seed=0, augment=False
        ),
        "list": [(x[i : i + 16], None) for i in range(0, 64, 16)],
    }[source]
    used = recalibrate_batchnorm(model, data, batch_size=16)
    assert used == 4
    # The batches recalibration saw (a PyDataset shuffles them).
    seen = np.concatenate([data[i][0] for i in range(len(data))]) if source == "pydataset" else x
    features = np.asarray(_features(model, seen))
    batches = features.reshape(4, 16, 8, 8, 4)
    expected_mean = batches.mean(axis=(1, 2, 3)).mean(axis=0)
    expected_var = batches.var(axis=(1, 2, 3)).mean(axis=0)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected_mean, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(bn.moving_variance.numpy(), expected_var, rtol=1e-3)
    assert bn.momentum == 0.99


def test_steps_limit_and_gated_state_is_restored():
    gated = krp.add_gates(_net())
    budget = find_budget(gated)
    budget.step.assign(7.0)
    x = np.random.default_rng(1).normal(size=(64, 8, 8, 3)).astype("float32")
    assert recalibrate_batchnorm(gated, x, steps=2, batch_size=16) == 2
    assert float(budget.step.numpy()) == 7.0
