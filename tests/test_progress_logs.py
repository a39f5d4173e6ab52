"""The values `PruningCallback` adds to each epoch's logs, and its line."""

import numpy as np
import pytest
from helpers import linked_two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.budget.progress_logs import describe, progress_logs

pytestmark = pytest.mark.backend_agnostic

_linked = linked_two_conv_net


def test_an_untouched_model_logs_its_whole_cost_and_the_final_target():
    _, _, budget, graph = _linked()
    logs = progress_logs(budget, graph, remaining_target=0.4)
    assert logs["remaining_flops"] == pytest.approx(1.0)
    assert logs["remaining_params"] == pytest.approx(1.0)
    assert "remaining_latency" not in logs  # no latency table given
    assert logs["pruning_target"] == pytest.approx(0.4)  # no ramp on: the target itself
    gate = next(iter(graph.gates.values()))
    assert logs["gate_temperature"] == pytest.approx(float(gate.scale.numpy()))
    assert logs["pruning_lambda"] == pytest.approx(float(budget.penalty_weight.numpy()))


def test_closing_masks_are_counted_instead_of_the_gates_masks():
    """The epoch before the closing logs what the closing leaves, which is
    what the model counts once those masks are in its gates."""
    dense, gated, budget, graph = _linked()
    masks = {}
    for root in graph.gated_groups():
        keep = np.zeros(graph.groups.size[root], "float32")
        keep[:4] = 1.0
        masks[root] = keep
    closing = progress_logs(budget, graph, 0.5, closing_masks=masks)
    assert closing["remaining_flops"] < 0.5
    assert progress_logs(budget, graph, 0.5)["remaining_flops"] == pytest.approx(1.0)
    for root, keep in masks.items():
        graph.gates[root].keep_mask.assign(keep)
    assert closing["remaining_flops"] == pytest.approx(
        krp.count_flops(gated) / krp.count_flops(dense), rel=1e-6
    )
    assert closing["remaining_params"] == pytest.approx(
        krp.count_params(gated) / krp.count_params(dense), rel=1e-6
    )


def test_a_ramping_budget_logs_the_target_of_its_step():
    _, _, budget, graph = _linked()
    for name, value in {
        "ramp_on": 1.0,
        "begin_step": 0.0,
        "end_step": 10.0,
        "remaining_target": 0.5,
    }.items():
        getattr(budget, name).assign(value)
    targets = []
    for step in (0.0, 5.0, 10.0):
        budget.step.assign(step)
        targets.append(progress_logs(budget, graph, 0.5)["pruning_target"])
    # Polynomial (cubic) from 1 down to the kept fraction, as tfmot ramps.
    assert targets == pytest.approx([1.0, 0.5 + 0.5 * 0.5**3, 0.5])


def test_the_verbose_line_gives_both_fractions_and_the_target():
    line = describe({"remaining_flops": 0.4567, "remaining_params": 0.5, "pruning_target": 0.45})
    assert line == "pruning: 45.7% FLOPs, 50.0% params left (target now 45.0%)"
