"""The recipe's building blocks: trainer, strip check, the gated fit's callbacks."""

import keras
import numpy as np
import pytest

from keras_relaxprune.errors import StripError
from keras_relaxprune_apps import recipe

pytestmark = pytest.mark.backend_agnostic


def _net(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_trainer_is_sgd_nesterov_with_a_cosine_and_distils_with_kl_of_probabilities():
    student, teacher = _net(0), _net(1)
    plain = recipe.trainer(student, lr=0.05, steps=10)
    assert plain is student
    assert plain.optimizer.nesterov and float(plain.optimizer.momentum) == 0.9
    schedule = plain.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["decay_steps"] == 10
    assert recipe.trainer(_net(3), lr=0.05).optimizer.get_config()[
        "learning_rate"
    ] == pytest.approx(0.05)
    distiller = recipe.trainer(student, teacher, lr=0.05)
    assert isinstance(distiller, keras.distillation.Distiller) and distiller.built
    loss = distiller.distillation_losses[0]
    assert isinstance(loss.loss, keras.losses.KLDivergence)
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype("float32")
    y = np.arange(16) % 3
    history = distiller.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert isinstance(recipe.trainer(_net(2), optimizer="adam").optimizer, keras.optimizers.Adam)


def test_check_strip_returns_the_difference_or_refuses():
    net = _net(0)
    x = np.ones((2, 8, 8, 3), "float32")
    assert recipe.check_strip(net, net, x) == 0.0
    with pytest.raises(StripError, match="differs from the gated one"):
        recipe.check_strip(net, _net(1), x)


def test_pruning_callbacks_put_the_budget_before_the_backup(tmp_path):
    import keras_relaxprune as krp

    callbacks = recipe.pruning_callbacks(
        0.5, "flops", None, tmp_path / "backup", calibration_steps=7
    )
    assert [type(c) for c in callbacks] == [krp.PruningCallback, keras.callbacks.BackupAndRestore]
    budget = callbacks[0]
    assert budget.target == 0.5 and budget.calibration_steps == 7
    assert {
        "lambda_rate": budget.lambda_rate,
        "cost_exponent": budget.cost_exponent,
        "gate_prior": budget.gate_prior,
    } == recipe.recipe_options("flops")
    assert recipe.recipe_options("flops")["cost_exponent"] == 0.5
    assert recipe.recipe_options("params")["cost_exponent"] == 0.0


def _bn_net(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_trainer_weight_decay_shrinks_kernels_and_spares_batchnorm_and_biases():
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 3
    lr, decay = 0.1, 0.5
    plain, decayed = _bn_net(0), _bn_net(0)
    initial = {w.path: keras.ops.convert_to_numpy(w) for w in plain.trainable_weights}
    for net, weight_decay in ((plain, 0.0), (decayed, decay)):
        recipe.trainer(net, lr=lr, weight_decay=weight_decay).fit(
            x, y, batch_size=8, epochs=1, shuffle=False, verbose=0
        )
    for a, b in zip(plain.trainable_weights, decayed.trainable_weights):
        gap = keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)
        if a.name in recipe.NO_WEIGHT_DECAY:
            np.testing.assert_allclose(gap, 0.0, atol=1e-6, err_msg=a.path)
        else:  # one step takes lr * decay of the weight away
            np.testing.assert_allclose(gap, lr * decay * initial[a.path], atol=1e-5, err_msg=a.path)


@pytest.mark.parametrize(
    "option, value",
    [
        ("--target", "1"),
        ("--target", "0"),
        ("--prune-epochs", "0"),
        ("--epochs", "-1"),
        ("--lr", "nan"),
        ("--latency-runs", "-5"),
    ],
)
def test_job_arguments_refuse_a_number_out_of_range_at_parsing(option, value, capsys):
    """A pruning job's shared options stop at parsing (exit 2, one line
    naming the option) when a number is out of range."""
    import argparse

    parser = argparse.ArgumentParser()
    recipe.add_job_arguments(parser)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args([option, value])
    assert stop.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err
