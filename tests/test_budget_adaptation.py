"""Adaptive lambda (in-graph dual ascent), BN calibration and the floor warning."""

import warnings

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates

import keras_relaxprune as krp
from keras_relaxprune.budget.closing import warn_thinned_to_floor
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.layers.pruning_budget import find_budget

pytestmark = pytest.mark.backend_agnostic


def _net():
    return model_zoo.two_conv_net(classes=4)


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n)


def _fit(gated, callback, epochs=1, lr=1e-4):
    gated.compile(
        optimizer=keras.optimizers.SGD(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = _data()
    gated.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback])


def test_lambda_grows_in_graph_while_the_relaxed_cost_lags():
    keras.utils.set_random_seed(0)
    dense = _net()
    logged = {}
    for rate in (0.0, 2.0):
        gated = krp.add_gates(dense)
        gated.compile(
            optimizer=keras.optimizers.SGD(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        x, y = _data()
        # A tiny learning rate: the gates cannot follow, the cost lags.
        history = gated.fit(
            x,
            y,
            batch_size=16,
            epochs=3,
            verbose=0,
            callbacks=[krp.PruningCallback(target=0.5, lambda_rate=rate, end_step=8)],
        )
        logged[rate] = history.history["pruning_lambda"]
    assert logged[0.0][0] == pytest.approx(2.0)
    assert logged[2.0][0] > 2.0 * 1.5
    assert logged[2.0][-1] == 0.0  # the budget closed: the regulariser is off


@pytest.mark.parametrize(
    "optimizer, rate",
    [
        (lambda: keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True), 1.0),
        (lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e-3)), 1.0),
        (lambda: keras.optimizers.Adam(1e-3), 0.0),
        (lambda: keras.optimizers.AdamW(1e-3), 0.0),
    ],
    ids=["sgd", "loss_scaled_sgd", "adam", "adamw"],
)
def test_lambda_adapts_by_default_with_sgd_only(optimizer, rate):
    """Adam normalises each step, so a growing lambda only winds up there."""
    gated = krp.add_gates(_net())
    gated.compile(
        optimizer=optimizer(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y = _data()
    gated.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[krp.PruningCallback(target=0.5)])
    assert float(find_budget(gated).penalty_weight_rate.numpy()) == rate


@pytest.mark.parametrize("end_step, bound", [(8, 2.0 * 1e4), (10_000, 2.0 * 0.1)])
def test_lambda_stays_within_its_bounds(end_step, bound):
    """Lagging (end_step 8): up to 1e4 x lambda_. Ahead of a slow ramp (the
    relaxed cost 0.99^2 is below a target still near 1): down to 0.1 x."""
    keras.utils.set_random_seed(0)
    gated = krp.add_gates(_net())
    gated.compile(
        optimizer=keras.optimizers.SGD(1e-6),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = _data()
    history = gated.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[krp.PruningCallback(target=0.5, lambda_rate=200.0, end_step=end_step)],
    )
    assert history.history["pruning_lambda"][-1] == pytest.approx(bound, rel=1e-5)


def test_calibration_data_reestimates_batchnorm_when_the_budget_closes():
    keras.utils.set_random_seed(0)
    gated = krp.add_gates(_net())
    x, _ = _data()
    bn = gated.get_layer("bn_a")
    before = np.asarray(bn.moving_mean.numpy()).copy()
    _fit(gated, krp.PruningCallback(target=0.5, calibration_data=x, calibration_steps=2), epochs=2)
    # One batch: the 64 images fit in the default calibration batch of 128.
    features = keras.Model(gated.inputs, gated.get_layer("conv_a").output)(x)
    expected = np.asarray(features).reshape(-1, 8).mean(axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected, rtol=1e-3, atol=1e-4)
    assert not np.allclose(before, expected)


def test_a_group_left_at_its_floor_is_named_in_a_warning():
    gated = krp.add_gates(_net())
    graph = analyze(gated)
    roots = graph.gated_groups()
    masks = {roots[0]: np.eye(8, dtype="float32")[0], roots[1]: np.ones(8, "float32")}
    with pytest.warns(UserWarning, match=r"'conv_a': 1 of 8"):
        warn_thinned_to_floor(graph, masks, round_to=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_thinned_to_floor(graph, {r: np.ones(8, "float32") for r in roots}, 1)


def _one_penalty_step(**options):
    """One SGD(1.0) step of the penalty alone; the gated model and its logits before."""
    keras.utils.set_random_seed(0)
    gated = krp.add_gates(_net())
    gated.compile(optimizer=keras.optimizers.SGD(1.0), loss=lambda y, p: 0.0 * keras.ops.mean(p))
    x, y = _data(16)
    before = [np.asarray(g.logits.numpy()).copy() for g in gates(gated)]
    gated.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[krp.PruningCallback(target=0.5, end_step=1, **options)],
    )
    return gated, before


@pytest.mark.parametrize("exponent", [1.0, 0.0])
def test_cost_exponent_sets_how_hard_each_gate_is_pushed(exponent):
    gated, before = _one_penalty_step(final_scale=50.0, cost_exponent=exponent)
    moves = [float(np.mean(b - np.asarray(g.logits.numpy()))) for b, g in zip(before, gates(gated))]
    assert all(m > 0 for m in moves)  # every gate pushed down
    ratio = moves[0] / moves[1]
    if exponent == 0.0:
        assert ratio == pytest.approx(1.0, rel=1e-3)  # equal push per channel
    else:
        assert abs(ratio - 1.0) > 0.05  # in proportion to each channel's cost


@pytest.mark.parametrize(
    "options, applied",
    [
        ({}, 0.5),
        ({"metric": "params"}, 0.0),
        ({"cost_exponent": 1.0}, 1.0),
        ({"metric": "params", "cost_exponent": 0.5}, 0.5),
    ],
    ids=["flops_default", "params_default", "explicit", "explicit_params"],
)
def test_the_cost_exponent_defaults_to_the_budget_metrics_measured_value(options, applied):
    """0.5 for FLOPs, 0 for params (README), unless the user sets it."""
    gated, _ = _one_penalty_step(**options)
    assert float(find_budget(gated).cost_exponent.numpy()) == applied


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"cost_exponent": 1.5}, "cost_exponent"),
        ({"cost_exponent": -0.1}, "cost_exponent"),
        ({"cost_exponent": "flat"}, "cost_exponent"),
        ({"lambda_rate": -1.0}, "lambda_rate"),
        ({"gate_prior": "gamma_l2"}, "gate_prior"),
    ],
)
def test_bad_method_arguments_are_refused_with_the_argument_named(kwargs, name):
    with pytest.raises(krp.PruningError, match=name):
        krp.PruningCallback(target=0.5, **kwargs)


def test_the_penalty_moves_gates_the_annealed_temperature_saturates():
    """At a high temperature an open gate's sigmoid is flat (gradient about 0);
    the penalty pushes through the initial temperature, so it still moves."""
    gated, before = _one_penalty_step(final_scale=5000.0)
    for gate, logits in zip(gates(gated), before):
        assert float(gate.scale.numpy()) == pytest.approx(5000.0)  # the step's scale
        # Saturated at that step: sigmoid(5000 * logit) is 1 in float32 ...
        assert np.all(
            keras.ops.convert_to_numpy(
                keras.ops.sigmoid(5000.0 * keras.ops.convert_to_tensor(logits))
            )
            == 1.0
        )
        # ... yet every logit moved down.
        assert np.all(logits - np.asarray(gate.logits.numpy()) > 1e-4)
