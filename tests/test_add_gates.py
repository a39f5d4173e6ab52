"""`add_gates`: the gated copy, what it accepts and what it refuses."""

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gate_inputs, open_all_gates
from keras import layers

import keras_relaxprune as krp

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("name", sorted(model_zoo.ALL))
def test_gated_copy_computes_the_same_function(name):
    model = model_zoo.ALL[name]()
    gated = krp.add_gates(model)
    open_all_gates(gated)
    x = np.random.default_rng(0).random((2, *model.input_shape[1:]), "float32")
    np.testing.assert_allclose(gated(x), model(x), rtol=1e-5, atol=1e-5)
    originals = {id(w) for w in model.weights}
    assert not originals & {id(w) for w in gated.weights}


def test_exclude_by_name_and_predicate():
    model = model_zoo.mlp_head()
    gated = krp.add_gates(model, exclude=["fc1"])
    assert sorted(sum(gate_inputs(gated).values(), [])) == ["conv", "fc2"]
    gated = krp.add_gates(model, exclude=lambda layer: layer.name.startswith("fc"))
    assert sorted(sum(gate_inputs(gated).values(), [])) == ["conv"]


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_subclassed_model_is_refused_clearly():
    model = _Subclassed()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(krp.UnsupportedModelError, match="functional API"):
        krp.add_gates(model)


def test_model_with_nothing_to_prune_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2, name="only")(inputs))
    with pytest.raises(krp.NothingToPruneError, match="no prunable channel"):
        krp.add_gates(model)


def test_unknown_metric_is_refused():
    # "latency" is a metric now, refused without a table (test_latency_budget.py).
    with pytest.raises(krp.PruningError, match="metric"):
        krp.add_gates(model_zoo.mlp_head(), metric="energy")


def test_sequential_model_is_accepted():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(4, 3, name="c"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2, name="d"),
        ]
    )
    gated = krp.add_gates(model)
    assert sum(gate_inputs(gated).values(), []) == ["c"]


def _conv_net(**conv_kwargs):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv", **conv_kwargs)(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_add_gates_refuses_quantized_lora_and_channels_first_layers():
    """Stripping could not slice these exactly: refused at add_gates, by name."""
    from keras_relaxprune.errors import UnsupportedLayerError

    lora = _conv_net()
    lora.get_layer("head").enable_lora(2)
    with pytest.raises(UnsupportedLayerError, match="'head'.*LoRA"):
        krp.add_gates(lora)
    quantized = _conv_net()
    quantized.get_layer("head").quantize("int8")
    with pytest.raises(UnsupportedLayerError, match="'head'.*quantized"):
        krp.add_gates(quantized)
    inputs = keras.Input((3, 8, 8))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", name="cf")(inputs)
    x = keras.layers.Conv2D(4, 3, data_format="channels_first")(x)
    first = keras.Model(inputs, x)
    with pytest.raises(UnsupportedLayerError, match="'cf'.*channels_first"):
        krp.add_gates(first)


def test_added_layers_take_names_free_in_the_model():
    """A gate is "<producer>_gate" and the budget "pruning_budget" unless a
    user layer has that name: then the first free "<name>_1", "<name>_2"..."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="pruning_budget")(inputs)
    x = layers.ReLU(name="conv_gate")(x)
    x = layers.Conv2D(8, 3, padding="same", name="conv")(x)
    x = layers.ReLU(name="conv_gate_1")(x)
    x = layers.Conv2D(8, 3, padding="same", name="last")(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    names = [[layer.name for layer in krp.add_gates(model).layers[1:]] for _ in range(2)]
    assert names[0] == names[1]  # deterministic (the input layer aside)
    added = set(names[0]) - {layer.name for layer in model.layers}
    assert added == {"pruning_budget_1", "pruning_budget_gate", "conv_gate_2", "last_gate"}
