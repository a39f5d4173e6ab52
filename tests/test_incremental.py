"""The closing's incremental count: equal to the stripped count at every step."""

import model_zoo
import numpy as np
import pytest

import keras_relaxprune as krp
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.cost.incremental import IncrementalCost
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("name", ["ops_and_nested", "unet", "densenet", "resnet_basic"])
def test_incremental_cost_equals_cost_fractions(name):
    gated = krp.add_gates(model_zoo.ALL[name]())
    graph = analyze(gated)
    rng = np.random.default_rng(0)
    keep = graph.keep_vectors()
    cost = IncrementalCost.build(graph, "flops", keep)
    for step in range(12):
        # Sparse masks empty whole groups and slices: collapse must match too.
        density = rng.choice([0.0, 0.2, 0.6, 1.0])
        masks = {
            root: (rng.random(len(keep[root])) < density).astype("float32")
            for root in graph.gated_groups()
            if rng.random() < 0.5
        }
        expected = cost_fractions(graph, {**keep, **masks})
        fraction, evaluated = cost.evaluate(masks)
        assert fraction == pytest.approx(expected["flops"], abs=1e-12)
        if step % 2:
            cost.apply(evaluated)
            keep.update(masks)
            for metric in ("flops", "params"):
                total = cost.totals[metric] / cost.plan.dense[metric]
                assert total == pytest.approx(expected[metric], abs=1e-12)


def _assign(gated, graph, keep):
    for root, gate in graph.gates.items():
        gate.keep_mask.assign(np.asarray(keep[root], "float32"))


@pytest.mark.parametrize(
    "name", ["resnet_basic", "unet", "mobilenet_v2", "densenet", "ops_and_nested"]
)
def test_incremental_totals_equal_count_flops_and_count_params(name):
    """Random masks, set on the gates: the incremental totals are the
    numbers `count_flops` and `count_params` print."""
    gated = krp.add_gates(model_zoo.ALL[name]())
    graph = analyze(gated)
    rng = np.random.default_rng(1)
    keep = graph.keep_vectors()
    cost = IncrementalCost.build(graph, "params", keep)
    assert cost.plan.dense["flops"] == krp.count_flops(gated)
    for _ in range(5):
        masks = {
            root: (rng.random(len(keep[root])) < rng.choice([0.1, 0.5, 0.9])).astype("float32")
            for root in graph.gated_groups()
        }
        cost.commit(masks)
        keep.update(masks)
        _assign(gated, graph, keep)
        assert cost.totals["flops"] == krp.count_flops(gated)
        assert cost.totals["params"] == krp.count_params(gated)


def test_a_collapsed_residual_branch_is_counted_as_count_flops_counts_it():
    """Every inner channel of one residual block removed: the block's
    second conv collapses (its input is a constant), in both counts."""
    gated = krp.add_gates(model_zoo.resnet_basic())
    graph = analyze(gated)
    keep = graph.keep_vectors()
    cost = IncrementalCost.build(graph, "flops", keep)
    inner = next(
        root for root, gate in graph.gates.items() if gate.name == "stage1_block1_1_conv_gate"
    )
    fraction = cost.commit({inner: np.zeros_like(keep[inner])})
    assert any(node_cost.collapsed for node_cost in cost.costs)
    graph.gates[inner].keep_mask.assign(np.zeros_like(keep[inner]))
    assert cost.totals["flops"] == krp.count_flops(gated)
    assert cost.totals["params"] == krp.count_params(gated)
    assert fraction == pytest.approx(krp.count_flops(gated) / cost.plan.dense["flops"])
    assert (
        fraction
        < cost_fractions(
            graph, {**keep, inner: np.r_[1.0, np.zeros(len(keep[inner]) - 1)].astype("float32")}
        )["flops"]
    )


def test_evaluate_leaves_the_state_until_apply():
    gated = krp.add_gates(model_zoo.resnet_bottleneck())
    graph = analyze(gated)
    keep = graph.keep_vectors()
    cost = IncrementalCost.build(graph, "flops", keep)
    root = graph.gated_groups()[0]
    fraction, change = cost.evaluate(
        {root: np.zeros_like(keep[root]) + np.eye(1, len(keep[root]), dtype="float32")[0]}
    )
    assert cost.fraction == 1.0 > fraction
    cost.apply(change)
    assert cost.fraction == fraction
    assert cost.copy_with({root: keep[root]}).fraction == 1.0
