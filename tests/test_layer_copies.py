"""Fresh copies of layers: changed widths, the same callables, the same state."""

import keras
import numpy as np
import pytest
from helpers import Apply, nested_conv_model
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph.flat_graph import flatten
from keras_relaxprune.graph.layer_copies import copy_state, fresh_layer, safe_name

pytestmark = pytest.mark.backend_agnostic


def test_fresh_layer_applies_changes_and_flattens_scoped_names():
    node = flatten(nested_conv_model()).nodes[0]
    layer = fresh_layer(node, filters=2)
    assert isinstance(layer, layers.Conv2D) and not layer.built
    assert layer.filters == 2 and layer.name == safe_name("block/conv") == "block_conv"


def _single(layer, shape=(6, 6, 3)):
    inputs = keras.Input(shape)
    return flatten(keras.Model(inputs, layer(inputs))).nodes[0]


def test_fresh_layer_keeps_the_very_callables_of_the_original():
    def relu(x):  # named like the built-in, computing something else
        return keras.ops.relu(x) + 1.0

    def penalty(weights):
        return keras.ops.sum(weights)

    node = _single(layers.Conv2D(2, 1, activation=relu, kernel_regularizer=penalty))
    copy = fresh_layer(node)
    assert copy.activation is relu and copy.kernel_regularizer is penalty
    assert fresh_layer(node, filters=1).activation is relu


def test_copy_state_restores_what_keras_loading_restores():
    norm = layers.Normalization()
    norm.adapt(np.arange(24, dtype="float32").reshape(2, 4, 3))
    node = _single(norm, (4, 3))
    copy = fresh_layer(node)
    copy.build((None, 4, 3))
    copy_state(norm, copy)
    x = np.ones((1, 4, 3), "float32")
    np.testing.assert_allclose(copy(x), norm(x))


def test_a_layer_that_cannot_be_copied_is_reused_or_refused_by_name():
    weightless = _single(Apply(keras.ops.tanh, name="apply"))
    assert fresh_layer(weightless) is weightless.operation
    with pytest.raises(krp.UnsupportedModelError, match="'apply'.*get_config"):
        fresh_layer(weightless, units=2)
