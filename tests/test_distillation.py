"""PruningCallback inside Keras' own `keras.distillation.Distiller`."""

import keras
import numpy as np
import pytest

import keras_relaxprune as krp
from helpers import gates
from keras_relaxprune.models import cifar_resnet

pytestmark = pytest.mark.backend_agnostic


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, n)
    return x, y


def _teacher():
    keras.utils.set_random_seed(0)
    return cifar_resnet(depth=8, width=8, input_shape=(16, 16, 3),
                        include_preprocessing=True, classifier_activation=None)


def _distiller(teacher, student):
    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=keras.distillation.LogitsDistillation(temperature=4.0),
        student_loss_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return distiller


def test_distiller_with_pruning_callback_meets_budget_and_strips_exactly():
    teacher = _teacher()
    gated = krp.add_gates(teacher)
    x, y = _data()
    distiller = _distiller(teacher, gated)
    distiller.fit(x, y, batch_size=16, epochs=3, verbose=0,
                  callbacks=[krp.PruningCallback(target=0.5)])
    remaining = krp.count_flops(gated) / krp.count_flops(teacher)
    assert 0.49 <= remaining <= 0.50
    small = krp.strip_pruning(gated)
    assert krp.count_flops(small) == krp.count_flops(gated)
    np.testing.assert_allclose(small(x[:8]), gated(x[:8]), rtol=1e-4, atol=1e-4)


def test_distiller_loss_includes_the_budget_penalty():
    """Without the penalty the gates would not be pushed down in the ramp."""
    teacher = _teacher()
    x, y = _data()
    logits = {}
    for wired in (True, False):
        gated = krp.add_gates(teacher)
        distiller = _distiller(teacher, gated)
        callbacks = [krp.PruningCallback(target=0.9, lambda_=50.0, final_scale=50.0,
                                         end_step=1)] if wired else []
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
        logits[wired] = np.mean([np.mean(g.logits.numpy()) for g in gates(gated)])
    assert logits[True] < logits[False] - 0.02
