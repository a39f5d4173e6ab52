"""Names of the layers the library adds or makes never collide (graph/names.py)."""

import keras
import pytest
from helpers import random_masks

import keras_relaxprune as krp
from keras_relaxprune.graph.flat_graph import flatten
from keras_relaxprune.graph.names import graph_names, unique_name


def test_unique_name_takes_the_first_free_suffix_and_records_it():
    taken = {"gate", "gate_1", "gate_3"}
    assert unique_name("gate", taken) == "gate_2"
    assert "gate_2" in taken
    assert unique_name("gate", taken) == "gate_4"
    assert unique_name("budget", taken) == "budget"


def _model_with_our_names():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2d")(inputs)
    x = keras.layers.ReLU(name="conv2d_gate")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="pruning_budget")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_graph_names_lists_every_layer_and_input():
    names = graph_names(flatten(_model_with_our_names()))
    assert {"image", "conv2d", "conv2d_gate", "pruning_budget", "head"} <= names


@pytest.mark.backend_agnostic
def test_added_and_stripped_layers_keep_user_names_and_take_free_ones():
    model = _model_with_our_names()
    gated = krp.add_gates(model)
    names = [layer.name for layer in gated.layers]
    assert len(names) == len(set(names))
    for user_name in ("conv2d", "conv2d_gate", "pruning_budget", "head"):
        assert user_name in names
    assert [layer.name for layer in krp.add_gates(model).layers] == names  # deterministic
    random_masks(gated, 0)
    small = krp.strip_pruning(gated)
    stripped = [layer.name for layer in small.layers]
    assert len(stripped) == len(set(stripped))
