"""PruningCallback keeps the gate logits out of the optimizer's weight decay."""

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates

import keras_relaxprune as krp
from keras_relaxprune.budget.fit_target import gated_model, is_sgd

pytestmark = pytest.mark.backend_agnostic

STEPS = 4
BATCH = 8


def _fit_gated(weight_decay, initial_weights=None):
    """Fits a gated two-conv net for STEPS steps under AdamW(lr=1e-3).

    Half the channels of every gate are switched off (`keep_mask` 0)
    beforehand: their logits get exactly zero gradient, so Adam leaves them
    where they are and only weight decay could move them. Returns the
    gated model and its weights before training.
    """
    keras.utils.set_random_seed(0)
    gated = krp.add_gates(model_zoo.two_conv_net())
    if initial_weights is not None:
        gated.set_weights(initial_weights)
    for gate in gates(gated):
        mask = np.ones(gate.channels, "float32")
        mask[::2] = 0.0
        gate.keep_mask.assign(mask)
    initial = gated.get_weights()
    rng = np.random.default_rng(0)
    x = rng.random((STEPS * BATCH, 8, 8, 3), "float32")
    y = rng.integers(0, 10, STEPS * BATCH)
    gated.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    gated.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[krp.PruningCallback(target=0.5, end_step=10**6)],
    )
    return gated, initial


def _off_logits(gated):
    """The logits of the channels switched off before training."""
    return np.concatenate([keras.ops.convert_to_numpy(g.logits)[::2] for g in gates(gated)])


def _kernel(gated, name):
    return keras.ops.convert_to_numpy(gated.get_layer(name).kernel)


def test_weight_decay_shrinks_kernels_but_not_gate_logits():
    """With AdamW(weight_decay=0.5) the gate logits of switched-off channels
    end exactly where a run without decay leaves them (where they started:
    they get no gradient), while a conv kernel ends measurably smaller than
    in the run without decay."""
    decayed, initial = _fit_gated(weight_decay=0.5)
    plain, plain_initial = _fit_gated(weight_decay=0.0, initial_weights=initial)
    for start, same in zip(initial, plain_initial):
        np.testing.assert_array_equal(start, same)  # both runs start alike
    assert np.all(_off_logits(decayed) != 0.0)
    # Decay would have moved them by lr * 0.5 * |logit| per step, ~5e-4 relative.
    np.testing.assert_allclose(_off_logits(decayed), _off_logits(plain), rtol=1e-6, atol=0)
    for name in ("conv_a", "conv_b"):
        kernel, reference = _kernel(decayed, name), _kernel(plain, name)
        assert np.max(np.abs(kernel - reference)) > 1e-5
        assert np.linalg.norm(kernel) < np.linalg.norm(reference)


def test_is_sgd_sees_through_loss_scaling_only():
    sgd = keras.optimizers.SGD(0.1)
    assert is_sgd(sgd)
    assert is_sgd(keras.optimizers.LossScaleOptimizer(sgd))
    assert not is_sgd(keras.optimizers.Adam())
    assert not is_sgd(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()))
    assert not is_sgd(None)


def _regularised_net(regularised=True):
    """A small net whose `call` adds a loss (an activity regulariser), as
    the budget layer of a gated model does."""
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4)(inputs)
    if regularised:
        x = keras.layers.ActivityRegularization(l2=1.0)(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_a_distillers_student_is_the_gated_model_and_its_losses_count():
    """`gated_model` returns a plain model itself; for a Distiller, the
    student, and the Distiller's loss then includes the losses the student
    adds in `call` (the budget penalty), wrapped once however often asked."""
    plain = _regularised_net()
    assert gated_model(plain) is plain
    student = _regularised_net()
    distiller = keras.distillation.Distiller(
        teacher=_regularised_net(regularised=False),
        student=student,
        distillation_losses=keras.distillation.LogitsDistillation(temperature=2.0),
        student_loss_weight=0.5,
    )
    distiller.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    without_losses = distiller.compute_loss
    assert gated_model(distiller) is student
    with_losses = distiller.compute_loss
    assert gated_model(distiller) is student and distiller.compute_loss is with_losses

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 6)).astype("float32"), np.zeros(4, "int64")
    y_pred = distiller(x, training=True)
    added = sum(float(keras.ops.convert_to_numpy(loss)) for loss in distiller.losses)
    assert added > 0.0
    first = float(keras.ops.convert_to_numpy(without_losses(x, y, y_pred)))
    second = float(keras.ops.convert_to_numpy(with_losses(x, y, y_pred)))
    assert second == pytest.approx(first + added, rel=1e-5)
