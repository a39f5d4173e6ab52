"""A non-finite loss stops the fit and gives back the epoch's starting weights."""

import keras
import numpy as np
import pytest

import keras_relaxprune as krp
from keras_relaxprune.budget.divergence import DivergenceGuard

pytestmark = pytest.mark.backend_agnostic


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_finite_losses_pass():
    model = _model()
    guard = DivergenceGuard(lambda_=2.0)
    guard.epoch_begins(0, model)
    guard.check_batch(model, 0, 0.7)
    guard.check_batch(model, 1, None)  # a batch without a loss in its logs
    guard.check_epoch(model, 0, 0.5)
    assert not getattr(model, "stop_training", False)


def test_a_nan_batch_restores_the_epochs_weights_and_says_what_to_lower():
    model = _model()
    guard = DivergenceGuard(lambda_=3.0)
    guard.epoch_begins(1, model)
    start = [np.copy(weight) for weight in model.get_weights()]
    model.set_weights([weight + 1.0 for weight in start])  # the epoch trains on
    with pytest.raises(
        krp.PruningError,
        match=r"loss became nan in batch 3 of epoch 2; training stopped and the weights "
        r"and masks .* restored\. .*lambda_ \(now 3\.0\)",
    ):
        guard.check_batch(model, 2, float("nan"))
    assert model.stop_training
    for now, then in zip(model.get_weights(), start):
        np.testing.assert_array_equal(now, then)


def test_an_infinite_epoch_loss_before_any_epoch_began_restores_nothing():
    model = _model()
    before = [np.copy(weight) for weight in model.get_weights()]
    with pytest.raises(krp.PruningError, match=r"loss became inf in epoch 1; training stopped\."):
        DivergenceGuard(lambda_=2.0).check_epoch(model, 0, np.inf)
    assert model.stop_training
    for now, then in zip(model.get_weights(), before):
        np.testing.assert_array_equal(now, then)
