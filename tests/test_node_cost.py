"""The per-node cost rule: `NodeCost` fields for a few layers."""

import keras
import pytest
from keras import layers

from keras_relaxprune.cost.node_cost import (
    COLLAPSED,
    NodeCost,
    cost_nodes,
    node_cost,
    shared_params,
)
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


def _nodes():
    """conv 3 -> 8 (3x3 same, relu) on 8x8, BN, a split in two, an Add of
    the parts and the BN output's first half, a shared Dense on both
    parts' pooled values."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    a, b = keras.ops.split(x, 2, axis=-1)
    merged = layers.Add(name="add")([a, b, x[..., :4]])
    dense = layers.Dense(5, name="fc")
    pooled = layers.GlobalAveragePooling2D(name="pool")
    outputs = layers.Add(name="sum")([dense(pooled(merged)), dense(pooled(a))])
    nodes = cost_nodes(analyze(keras.Model(inputs, outputs)))
    return {node.flat.name: node for node in nodes}, nodes


def _named(nodes, prefix):
    return [node for name, node in nodes.items() if name.startswith(prefix)]


def test_a_convolution_costs_its_kernel_bias_and_fused_activation():
    nodes, _ = _nodes()
    cost = node_cost(nodes["conv"], 3, 6, live_inputs=1)
    assert cost == NodeCost(params=9 * 3 * 6 + 6, macs=64 * 9 * 3 * 6, elementwise=64 * 6)
    assert cost.flops == 2 * 64 * 9 * 3 * 6 + 64 * 6
    assert not cost.collapsed and cost.constant_outputs == frozenset()


def test_batch_normalization_costs_four_vectors_and_one_flop_per_element():
    nodes, _ = _nodes()
    cost = node_cost(nodes["bn"], 8, 8, live_inputs=1)
    assert (cost.params, cost.macs, cost.elementwise) == (4 * 8, 0, 64 * 8)


def test_a_merge_costs_one_flop_per_element_for_each_live_input_beyond_the_first():
    nodes, _ = _nodes()
    add = nodes["add"]
    assert len(add.channel_inputs) == 3
    assert node_cost(add, 4, 4, live_inputs=3).elementwise == 2 * 64 * 4
    assert node_cost(add, 4, 4, live_inputs=1).elementwise == 0


def test_counted_as_stripped_a_node_collapses_without_live_inputs_or_kept_outputs():
    nodes, _ = _nodes()
    conv, add = nodes["conv"], nodes["add"]
    assert node_cost(conv, 3, 0, live_inputs=1, output_counts=[0]) == COLLAPSED
    assert node_cost(add, 4, 4, live_inputs=0, output_counts=[4]) == COLLAPSED
    assert COLLAPSED.flops == COLLAPSED.params == 0
    # Relaxed (no output counts): never collapses.
    assert not node_cost(conv, 3, 0, live_inputs=1).collapsed


def test_a_split_part_without_channels_is_a_constant_output():
    nodes, _ = _nodes()
    (split,) = _named(nodes, "split")
    assert len(split.output_maps) == 2
    cost = node_cost(split, 8, 0, live_inputs=1, output_counts=[0, 3])
    assert not cost.collapsed
    assert cost.constant_outputs == frozenset([split.flat.outputs[0]])


def test_a_shared_layer_counts_its_weights_at_its_first_live_call():
    _, nodes = _nodes()
    calls = [node for node in nodes if node.flat.operation.name == "fc"]
    assert len(calls) == 2
    live = [node_cost(node, 4, 5, live_inputs=1) for node in calls]
    assert live[0].params == live[1].params == 4 * 5 + 5
    assert shared_params(live) == [25, 0]
    assert shared_params([COLLAPSED, live[1]]) == [0, 25]
    assert shared_params([COLLAPSED, COLLAPSED]) == [0, 0]


class _OwnDense(layers.Dense):
    """A Dense that overrides `call`: no rule of its own, a barrier."""

    def call(self, inputs):
        return super().call(inputs) * 2.0


def test_a_layer_without_a_cost_rule_costs_its_own_weights_and_no_flops():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = _OwnDense(2, name="own")(x)
    graph = analyze(keras.Model(inputs, x), warn=False)
    nodes = {node.flat.name: node for node in cost_nodes(graph)}
    assert node_cost(nodes["own"], 4, 2, live_inputs=1) == NodeCost(params=4 * 2 + 2)
