"""The learning rate after the closing: lowered when constant, else left alone,
and the budget met with hard masks under every kind of schedule."""

import keras
import numpy as np
import pytest
from helpers import gates, linked_two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.budget.learning_rate import RateAfterClosing, constant_rate, factor
from keras_relaxprune.layers.pruning_budget import find_budget

pytestmark = pytest.mark.backend_agnostic

EPOCHS = 4  # the ramp ends after epoch 3 (75%); epoch 4 fine-tunes closed
STEPS = 4  # 64 samples, batch 16


def _data():
    rng = np.random.default_rng(0)
    return rng.random((64, 8, 8, 3), dtype=np.float32), rng.integers(0, 3, 64)


class RateLog(keras.callbacks.Callback):
    """The rate each epoch trains at, and the weights after it."""

    def __init__(self):
        super().__init__()
        self.rates, self.weights = [], []

    def on_epoch_end(self, epoch, logs=None):
        rate = self.model.optimizer.learning_rate
        self.rates.append(float(keras.ops.convert_to_numpy(rate)))
        self.weights.append([np.array(w) for w in self.model.trainable_weights])


def _fit(optimizer, epochs=EPOCHS, callbacks=(), **options):
    gated = linked_two_conv_net()[1]
    gated.compile(
        optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    log = RateLog()
    pruning = krp.PruningCallback(0.5, **options)
    gated.fit(
        *_data(),
        batch_size=16,
        epochs=epochs,
        verbose=0,
        callbacks=[pruning, *callbacks, log],
    )
    return gated, log


def test_factor_is_geometric_at_each_epoch_middle():
    assert factor(0, 1, 0.01) == pytest.approx(0.1)
    assert [factor(k, 2, 0.01) for k in range(2)] == pytest.approx([0.1**0.5, 0.1**1.5])
    assert factor(4, 5, 0.01) > 0.01


def test_constant_rate_is_lowered_after_the_closing_and_given_back():
    gated, log = _fit(keras.optimizers.SGD(0.05))
    assert log.rates[:3] == pytest.approx([0.05] * 3)
    assert log.rates[3] == pytest.approx(0.005)  # one epoch after the closing: 0.1x
    assert constant_rate(gated.optimizer) == pytest.approx(0.05)  # the user's rate back


def test_lowered_rate_is_the_one_the_steps_take():
    """Seen by the train step on every backend (set at an epoch's start):
    at a rate of 1e-12 the epoch after the closing leaves the weights as
    they were; with the rate kept it moves them."""
    _, lowered = _fit(keras.optimizers.SGD(0.05), final_lr_factor=1e-24)
    _, kept = _fit(keras.optimizers.SGD(0.05), final_lr_factor=None)

    def moved(log):
        return max(np.max(np.abs(a - b)) for a, b in zip(log.weights[2], log.weights[3]))

    assert kept.rates[3] == pytest.approx(0.05)
    assert moved(kept) > 1e-4
    assert moved(lowered) < 1e-9


@pytest.mark.parametrize(
    "case", ["cosine", "step_decay", "plateau", "scheduler", "opted_out"], ids=str
)
def test_rate_the_user_sets_is_left_alone(case):
    callbacks, options = (), {}
    rate = 0.05
    if case == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(0.05, EPOCHS * STEPS)
    elif case == "step_decay":
        rate = keras.optimizers.schedules.PiecewiseConstantDecay([8], [0.05, 0.005])
    elif case == "plateau":
        callbacks = (keras.callbacks.ReduceLROnPlateau("loss", patience=100),)
    elif case == "scheduler":
        callbacks = (keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr),)
    else:
        options = {"final_lr_factor": None}
    _, log = _fit(keras.optimizers.SGD(rate), callbacks=callbacks, **options)
    if case in ("plateau", "scheduler", "opted_out"):
        assert log.rates == pytest.approx([0.05] * EPOCHS)
    elif case == "step_decay":
        assert log.rates == pytest.approx([0.05, 0.05, 0.005, 0.005])  # steps 4, 8, 12, 16
    else:
        assert log.rates[-1] < 0.01  # the cosine's own decay, nothing more


@pytest.mark.parametrize("case", ["constant", "cosine", "step_decay", "plateau", "adam"], ids=str)
def test_budget_is_met_and_masks_are_hard_after_the_closing(case):
    callbacks = ()
    optimizer = keras.optimizers.SGD(0.05)
    if case == "cosine":
        optimizer = keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, 16))
    elif case == "step_decay":
        optimizer = keras.optimizers.SGD(
            keras.optimizers.schedules.PiecewiseConstantDecay([8], [0.05, 0.005])
        )
    elif case == "plateau":
        callbacks = (keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0),)
    elif case == "adam":
        optimizer = keras.optimizers.Adam(1e-3)
    gated, _ = _fit(optimizer, callbacks=callbacks)
    budget = find_budget(gated)
    assert float(keras.ops.convert_to_numpy(budget.masks_final)) == 1.0
    for gate in gates(gated):
        keep = keras.ops.convert_to_numpy(gate.keep_mask)
        assert set(np.unique(keep)) <= {0.0, 1.0}
    stripped = krp.strip_pruning(gated)
    remaining = krp.count_flops(stripped) / krp.count_flops(linked_two_conv_net()[0])
    assert 0.49 <= remaining <= 0.5 + 1e-9


class _Fit:
    """The parts of a `PruningCallback` that `RateAfterClosing` reads."""

    def __init__(self, rate, epochs):
        self.model = keras.Sequential([keras.layers.Dense(1)])
        self.model.compile(optimizer=keras.optimizers.SGD(rate), loss="mse")
        self.params = {"epochs": epochs}


def test_resumed_after_the_closing_goes_on_from_the_users_rate():
    """A backup taken two epochs after the closing (at epoch 2) holds the
    rate set for epoch 3; resumed at epoch 4, the rate is as if never cut."""
    epochs, closing = 6, 2
    fit = _Fit(0.05 * factor(1, epochs - closing, 0.01), epochs)
    rate = RateAfterClosing(fit, 0.01)
    rate._fellows = list  # no other callbacks
    rate.begin()
    rate.epoch_begins(4, closed=True, closing_epoch=closing)
    expected = 0.05 * factor(2, epochs - closing, 0.01)
    assert constant_rate(fit.model.optimizer) == pytest.approx(expected)
    rate.end()
    assert constant_rate(fit.model.optimizer) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, krp.InvalidArgumentError), (1.5, krp.InvalidArgumentError), ("x", krp.ArgumentTypeError)],
)
def test_a_final_lr_factor_out_of_range_is_refused_by_name(value, error):
    with pytest.raises(error, match="final_lr_factor"):
        krp.PruningCallback(0.5, final_lr_factor=value)
