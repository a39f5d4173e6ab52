"""`PruningBudget`: the in-graph relaxed cost, the target ramp, freezing,
and the penalty's gradient reaching the gate logits."""

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates

import keras_relaxprune as krp
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.cost.relaxed import GraphCost, keep_masks, soft_gates
from keras_relaxprune.layers.pruning_budget import link_budget

pytestmark = pytest.mark.backend_agnostic


def _linked(**values):
    gated = krp.add_gates(model_zoo.two_conv_net(classes=4))
    budget, graph = link_budget(gated)
    for name, value in values.items():
        getattr(budget, name).assign(value)
    return gated, budget, graph


def _number(value):
    return float(keras.ops.convert_to_numpy(value))


def test_the_target_ramps_cubically_from_one_to_the_remaining_fraction():
    _, budget, _ = _linked(remaining_target=0.2, begin_step=10.0, end_step=30.0)
    assert _number(budget.progress(10.0)) == 0.0
    assert _number(budget.progress(20.0)) == pytest.approx(0.5)
    assert _number(budget.progress(40.0)) == 1.0
    assert _number(budget.ramped_target(0.0)) == pytest.approx(1.0)
    assert _number(budget.ramped_target(0.5)) == pytest.approx(0.2 + 0.8 * 0.125)
    assert _number(budget.ramped_target(1.0)) == pytest.approx(0.2)


def test_the_relaxed_cost_is_the_graph_cost_of_the_gate_values():
    gated, budget, graph = _linked()
    gates(gated)[0].logits.assign(np.linspace(-1.0, 1.0, gates(gated)[0].channels))
    relaxed = budget.graph_cost().fractions(soft_gates)
    again = GraphCost(graph).fractions(soft_gates)
    for metric in ("flops", "params"):
        assert _number(relaxed[metric]) == pytest.approx(_number(again[metric]))
        assert 0.0 < _number(relaxed[metric]) < 1.0
    masks_only = budget.graph_cost().fractions(keep_masks)
    expected = cost_fractions(graph, graph.keep_vectors())
    assert _number(masks_only["flops"]) == pytest.approx(expected["flops"]) == 1.0
    flops = budget.budgeted(relaxed)
    assert _number(flops) == pytest.approx(_number(relaxed["flops"]))


def test_a_training_call_freezes_low_gates_and_adds_the_penalty():
    gated, budget, _ = _linked(
        ramp_on=1.0, penalty_weight=2.0, base_penalty_weight=2.0, remaining_target=0.1, end_step=1.0
    )
    gate = gates(gated)[0]
    logits = np.full(gate.channels, 2.0, "float32")
    logits[:3] = -2.0  # below the threshold at every temperature
    gate.logits.assign(logits)
    x = np.zeros((2, 8, 8, 3), "float32")
    gated(x, training=True)
    assert _number(budget.step) == 1.0
    mask = keras.ops.convert_to_numpy(gate.keep_mask)
    np.testing.assert_array_equal(mask, [0, 0, 0, 1, 1, 1, 1, 1])
    relaxed = _number(budget.budgeted(budget.graph_cost().fractions(soft_gates)))
    (penalty,) = gated.losses
    assert _number(penalty) == pytest.approx(2.0 * (relaxed - 0.1), rel=1e-4)
    gated(x, training=False)  # inference: no step, no change
    assert _number(budget.step) == 1.0


def test_nothing_is_frozen_or_penalised_while_the_ramp_is_off():
    gated, budget, _ = _linked(penalty_weight=2.0, remaining_target=0.1, end_step=1.0)
    gate = gates(gated)[0]
    gate.logits.assign(np.full(gate.channels, -2.0, "float32"))
    gated(np.zeros((2, 8, 8, 3), "float32"), training=True)
    assert keras.ops.convert_to_numpy(gate.keep_mask).sum() == gate.channels
    assert sum(_number(loss) for loss in gated.losses) == 0.0


def test_the_penalty_gradient_reaches_every_gate_logit():
    """A task loss of zero: one SGD step moves the logits by the penalty
    alone, and it closes every gate a little (at the initial temperature,
    where no gate is saturated)."""
    gated, budget, _ = _linked(
        ramp_on=1.0, penalty_weight=1.0, base_penalty_weight=1.0, remaining_target=0.1, end_step=1.0
    )
    budget.final_scale.assign(_number(budget.initial_scale))  # gates not saturated
    before = [keras.ops.convert_to_numpy(g.logits).copy() for g in gates(gated)]
    gated.compile(optimizer=keras.optimizers.SGD(1.0), loss=lambda y, p: 0.0 * keras.ops.mean(p))
    x, y = np.zeros((4, 8, 8, 3), "float32"), np.zeros((4, 4), "float32")
    gated.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert _number(budget.step) == 1.0
    for gate, old in zip(gates(gated), before):
        assert (keras.ops.convert_to_numpy(gate.logits) < old).all()
