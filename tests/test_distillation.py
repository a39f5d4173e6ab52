"""PruningCallback inside Keras' own `keras.distillation.Distiller`."""

import keras
import numpy as np
import pytest
from helpers import gates

import keras_relaxprune as krp
from keras_relaxprune_apps.models import cifar_resnet

pytestmark = pytest.mark.backend_agnostic


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, n)
    return x, y


def _teacher():
    keras.utils.set_random_seed(0)
    return cifar_resnet(
        depth=8,
        width=8,
        input_shape=(16, 16, 3),
        include_preprocessing=True,
        classifier_activation=None,
    )


def _distiller(teacher, student):
    # `loss` given as a KLDivergence instance: Keras 3.15 resolves the default
    # "kl_divergence" string to a function, which LogitsDistillation then
    # applies to logits instead of softmax probabilities.
    distiller = keras.distillation.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=4.0, loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=0.5,
    )
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return distiller


def test_distiller_with_pruning_callback_meets_budget_and_strips_exactly():
    teacher = _teacher()
    gated = krp.add_gates(teacher)
    x, y = _data()
    distiller = _distiller(teacher, gated)
    distiller.fit(
        x, y, batch_size=16, epochs=3, verbose=0, callbacks=[krp.PruningCallback(target=0.5)]
    )
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
        callbacks = (
            [krp.PruningCallback(target=0.9, lambda_=50.0, final_scale=50.0, end_step=1)]
            if wired
            else []
        )
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
        logits[wired] = np.mean([np.mean(g.logits.numpy()) for g in gates(gated)])
    assert logits[True] < logits[False] - 0.02


def test_the_distillation_loss_used_is_the_kl_of_softened_probabilities():
    """What the examples and benchmarks configure: KL(softmax(t/T) || softmax(s/T)) * T^2."""
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(2, 8, 10)).astype("float32") * 3.0
    strategy = keras.distillation.LogitsDistillation(
        temperature=4.0, loss=keras.losses.KLDivergence()
    )
    got = float(keras.ops.convert_to_numpy(strategy.compute_loss(teacher, student)))

    def softmax(z):
        e = np.exp(z / 4.0 - (z / 4.0).max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(teacher), softmax(student)
    expected = np.mean(np.sum(p * np.log(p / q), -1)) * 16.0
    assert got >= 0.0
    np.testing.assert_allclose(got, expected, rtol=1e-4)
