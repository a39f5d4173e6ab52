"""Closing the budget inside `fit`: reachability, timing, cached masks, freezing."""

import keras
import numpy as np
import pytest
from helpers import linked_two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.budget import freezing

pytestmark = pytest.mark.backend_agnostic

_linked = linked_two_conv_net


def test_an_unreachable_target_is_refused_with_the_largest_reachable_one():
    _, _, _, graph = _linked()
    freezing.check_reachable(graph, "flops", 0.5, round_to=1, min_keep=0.0)
    with pytest.raises(krp.BudgetError, match=r"target <= 0\.\d+.*round_to or min_keep"):
        freezing.check_reachable(graph, "flops", 0.9, round_to=1, min_keep=0.5)
    with pytest.raises(krp.BudgetError, match="PruningCallback\\(target=0.5\\)"):
        freezing.check_reachable(graph, "flops", 0.5, round_to=16, min_keep=0.0)


def test_when_the_budget_closes():
    _, _, budget, _ = _linked()
    budget.end_step.assign(8.0)
    budget.step.assign(4.0)
    assert not freezing.ramp_ended(budget)
    assert not freezing.closes_after_epoch(budget, 0, epochs=3, stopping=False)
    assert freezing.closes_after_epoch(budget, 2, epochs=3, stopping=False)  # fit ends
    assert freezing.closes_after_epoch(budget, 0, epochs=3, stopping=True)  # fit stops
    budget.step.assign(8.0)
    assert freezing.ramp_ended(budget)
    assert freezing.closes_after_epoch(budget, 1, epochs=3, stopping=False)
    budget.masks_final.assign(1.0)  # closed already: nothing more closes
    assert not freezing.closes_after_epoch(budget, 2, epochs=3, stopping=True)


def test_a_budget_closed_earlier_at_this_target_is_recognised():
    _, _, budget, _ = _linked()
    budget.remaining_target.assign(0.5)
    assert not freezing.closed_earlier(budget, 0.5)  # not closed yet
    budget.masks_final.assign(1.0)
    assert freezing.closed_earlier(budget, 0.5)
    assert not freezing.closed_earlier(budget, 0.3)  # a new target ramps again


@pytest.mark.parametrize(
    ("end_step", "steps", "first_epoch", "closing_epoch"),
    [(8.0, 4, 3, 2), (9.0, 4, 3, 3), (8.0, 4, 0, None), (8.0, None, 3, None)],
)
def test_the_closing_epoch_of_a_resumed_fit(end_step, steps, first_epoch, closing_epoch):
    assert freezing.earlier_closing_epoch(end_step, steps, first_epoch) == closing_epoch


def test_closing_masks_are_computed_once_per_gate_state():
    _, _, _, graph = _linked()
    closing = freezing.ClosingMasks()
    first = closing(graph, "flops", 0.5, 1, 0.0, verbose=False)
    assert closing(graph, "flops", 0.5, 1, 0.0, verbose=False) is first
    gate = next(iter(graph.gates.values()))
    logits = keras.ops.convert_to_numpy(gate.logits)
    gate.logits.assign(logits + np.linspace(-1.0, 1.0, logits.shape[-1], dtype="float32"))
    again = closing(graph, "flops", 0.5, 1, 0.0, verbose=False)
    assert again is not first  # the gates moved: a new closing


def test_freeze_fixes_the_masks_and_ends_the_ramp(recwarn):
    dense, gated, budget, graph = _linked()
    budget.ramp_on.assign(1.0)
    budget.penalty_weight.assign(2.0)
    masks = freezing.ClosingMasks()(graph, "flops", 0.5, 1, 0.0, verbose=False)
    freezing.freeze(graph, budget, masks, round_to=1)
    for root, keep in masks.items():
        np.testing.assert_array_equal(graph.gates[root].keep_mask.numpy(), keep)
    assert 0.49 <= krp.count_flops(gated) / krp.count_flops(dense) <= 0.5
    assert float(budget.ramp_on.numpy()) == 0.0
    assert float(budget.penalty_weight.numpy()) == 0.0
    assert float(budget.masks_final.numpy()) == 1.0
