"""Closing the budget: final masks from gate values."""

import numpy as np
import pytest

import keras_relaxprune as krp
import model_zoo
from helpers import gates
from keras_relaxprune.counting import cost_fractions
from keras_relaxprune.graph import analyze
from keras_relaxprune.projection import project_masks

pytestmark = pytest.mark.backend_agnostic


def _graph(seed):
    gated = krp.add_gates(model_zoo.resnet_bottleneck())
    rng = np.random.default_rng(seed)
    for gate in gates(gated):
        gate.logits.assign(rng.normal(0.0, 0.05, gate.channels).astype("float32"))
    return analyze(gated)


@pytest.mark.parametrize("target", [0.6, 0.3])
def test_masks_land_in_the_one_point_band_and_follow_gate_order(target):
    graph = _graph(0)
    masks = project_masks(graph, "flops", target)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    assert target - 0.01 <= fraction <= target
    for root, keep in masks.items():
        assert keep.sum() >= 1
        gate = graph.gates[root]
        values = np.asarray(gate.logits.numpy())
        if 0 < keep.sum() < len(keep):  # every kept channel beats every removed one
            assert values[keep == 1].min() >= values[keep == 0].max()


def test_round_to_keeps_multiples_inside_the_budget():
    graph = _graph(1)
    masks = project_masks(graph, "flops", 0.4, round_to=4)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    assert fraction <= 0.4
    assert fraction >= 0.3  # coarser units, but still close
    for keep in masks.values():
        alive = int(keep.sum())
        assert alive % 4 == 0 or alive == len(keep) or alive == min(4, len(keep))
