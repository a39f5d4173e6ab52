"""`GraphCost`: the in-graph relaxed and masks-only cost fractions."""

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates, random_masks
from keras import layers
from test_count import MLP_FLOPS, MLP_PARAMS, _set_keep

import keras_relaxprune as krp
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.cost.relaxed import GraphCost, keep_masks, soft_gates
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


def test_relaxed_cost_equals_hard_cost_for_binary_gates_and_is_bilinear():
    gated = krp.add_gates(model_zoo.mlp_head())
    _set_keep(gated, {"conv": 4, "fc1": 10, "fc2": 5})
    for gate in gates(gated):
        gate.logits.assign(np.full(gate.channels, 50.0, "float32"))
    cost = GraphCost(analyze(gated))
    relaxed = {k: float(v) for k, v in cost.fractions(soft_gates).items()}
    assert relaxed["params"] == pytest.approx(krp.count_params(gated) / MLP_PARAMS, rel=1e-5)
    assert relaxed["flops"] == pytest.approx(krp.count_flops(gated) / MLP_FLOPS, rel=1e-5)
    # Half-open conv gates: fc1 sees 8 x 0.5 = 4 input channels (bilinear).
    for gate in gates(gated):
        gate.keep_mask.assign(np.ones(gate.channels, "float32"))
        gate.logits.assign(np.full(gate.channels, 50.0, "float32"))
    gates(gated)[0].logits.assign(np.zeros(8, "float32"))
    relaxed = float(cost.fractions(soft_gates)["params"])
    expected = (27 * 4 + 4) + (4 * 32 + 32) + (32 * 16 + 16) + (16 * 4 + 4)
    assert relaxed == pytest.approx(expected / MLP_PARAMS, rel=1e-5)


def test_relaxed_cost_has_gradients_for_every_gate():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    import tensorflow as tf

    gated = krp.add_gates(model_zoo.resnet_basic())
    cost = GraphCost(analyze(gated))
    logits = [g.logits for g in gates(gated)]
    with tf.GradientTape() as tape:
        flops = cost.fractions(soft_gates)["flops"]
    grads = tape.gradient(flops, [v.value for v in logits])
    assert all(g is not None and float(tf.reduce_min(g)) > 0 for g in grads)


@pytest.mark.parametrize("name", ["resnet_basic", "unet", "densenet", "mobilenet_v2"])
def test_masks_only_cost_equals_the_stripped_count_while_nothing_collapses(name):
    """Every group keeps a channel (as freezing and closing ensure): the
    in-graph masks-only cost is the stripped count."""
    gated = krp.add_gates(model_zoo.ALL[name]())
    graph = analyze(gated)
    cost = GraphCost(graph)
    for seed in range(3):
        random_masks(gated, seed, keep=0.4)
        expected = cost_fractions(graph, graph.keep_vectors())
        for metric, value in cost.fractions(keep_masks).items():
            assert float(value) == pytest.approx(expected[metric], rel=1e-5)


def test_masks_only_cost_is_above_the_stripped_count_below_an_emptied_slice():
    """conv -> x[..., :2] -> conv: with channels 0 and 1 removed the slice
    is a constant and the second conv collapses once stripped; in-graph it
    still counts (without collapse), so it is larger, never smaller."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    side = layers.Conv2D(4, 3, padding="same", name="side")(x[..., :2])
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (x, side)]
    gated = krp.add_gates(keras.Model(inputs, layers.Dense(2)(layers.Concatenate()(pooled))))
    gated.get_layer("conv_gate").keep_mask.assign(np.array([0, 0, 1, 1], "float32"))
    graph = analyze(gated)
    stripped = cost_fractions(graph, graph.keep_vectors())
    in_graph = GraphCost(graph).fractions(keep_masks)
    assert float(in_graph["flops"]) > stripped["flops"]
    assert float(in_graph["params"]) >= stripped["params"]
