"""A convolution with one input channel and one filter per group
(`Conv2D(C, k, groups=C)`, keras-hub MobileNetV3's depthwise convolution)
is pruned like a `DepthwiseConv2D`: its input and output channels are one
group, and stripping keeps `groups` equal to the channels kept."""

import keras
import numpy as np
import pytest
from helpers import gates, random_masks, randomize_batch_norms
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


def _model(use_bias=False, padding="same"):
    inputs = keras.Input((12, 12, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 1, name="expand")(inputs)))
    x = layers.Conv2D(16, 3, padding=padding, groups=16, use_bias=use_bias, name="grouped")(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.BatchNormalization()(layers.Conv2D(8, 1, use_bias=False, name="project")(x))
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    return randomize_batch_norms(keras.Model(inputs, outputs), seed=0)


def _group_of(graph, name):
    (index,) = [i for i, node in enumerate(graph.flat.nodes) if node.name == name]
    (segment,) = graph.out_maps(index)[0]
    return graph.groups.find(segment.group)


def test_input_and_output_channels_are_one_group():
    graph = analyze(_model())
    assert _group_of(graph, "grouped") == _group_of(graph, "expand")
    assert _group_of(graph, "expand") in graph.prunable_groups()


def test_with_a_bias_it_keeps_the_grouped_convolution_rule():
    """16 tied copies of a one-channel group: nothing of it can be pruned."""
    graph = analyze(_model(use_bias=True))
    (index,) = [i for i, node in enumerate(graph.flat.nodes) if node.name == "grouped"]
    out_map = graph.out_maps(index)[0]
    assert len(out_map) == 16 and {s.length for s in out_map} == {1}


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_strips_exactly_with_groups_equal_to_the_channels_kept(padding):
    model = _model(padding=padding)
    gated = krp.add_gates(model)
    random_masks(gated, seed=3)
    (kept,) = [int(g.keep_mask.numpy().sum()) for g in gates(gated) if g.channels == 16]
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(gated(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(x)), expected, atol=1e-4)
    grouped = small.get_layer("grouped")
    assert grouped.groups == grouped.filters == kept < 16
    assert krp.count_flops(small) == krp.count_flops(gated) < krp.count_flops(model)
    assert krp.count_params(small) == krp.count_params(gated)
