"""The flat view of a functional graph: inlining, rebuilding, fresh layers."""

import keras
import numpy as np
import pytest
from helpers import nested_conv_model
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph.flat_graph import (
    as_functional,
    call_original,
    flatten,
    rebuild,
)

pytestmark = pytest.mark.backend_agnostic


def test_nested_models_are_inlined_with_scoped_names():
    graph = flatten(nested_conv_model())
    assert [node.name for node in graph.nodes] == ["block/conv", "relu"]
    assert graph.nodes[0].inputs == graph.inputs
    assert graph.consumers()[graph.nodes[0].outputs[0]] == [(1, 0)]


def test_rebuild_keeps_input_and_output_structure_and_function():
    model = nested_conv_model()
    copy = rebuild(flatten(model), call_original, name="copy")
    x = {"image": np.random.default_rng(0).random((1, 6, 6, 4), "float32")}
    assert list(copy.input) == ["image"] and list(copy.output) == ["out"]
    np.testing.assert_allclose(copy(x)["out"], model(x)["out"], rtol=1e-6)


def test_sequential_is_made_functional_and_unbuilt_one_is_refused():
    built = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    assert as_functional(built).inputs
    with pytest.raises(krp.UnsupportedModelError, match="not built"):
        as_functional(keras.Sequential([layers.Dense(2)]))
