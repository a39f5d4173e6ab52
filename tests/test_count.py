"""count_params / count_flops against hand-computed numbers."""

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates, random_masks

import keras_relaxprune as krp

pytestmark = pytest.mark.backend_agnostic

# mlp_head: conv 3x3x3->8 (valid, relu) on 8x8 -> 6x6; GlobalMaxPool; 8->32->16->4.
MLP_PARAMS = (27 * 8 + 8) + (8 * 32 + 32) + (32 * 16 + 16) + (16 * 4 + 4)
MLP_FLOPS = (
    (2 * 36 * 27 * 8 + 36 * 8)  # conv MACs x2 + fused relu
    + 8  # global max pool output
    + (2 * 8 * 32 + 32)
    + (2 * 32 * 16 + 16)
    + 2 * 16 * 4
)


def _set_keep(gated, keep):
    for gate in gates(gated):
        (layer_name,) = {
            n.input_tensors[0]._keras_history.operation.name for n in gate._inbound_nodes
        }
        mask = np.zeros(gate.channels, "float32")
        mask[: keep[layer_name]] = 1.0
        gate.keep_mask.assign(mask)


def test_mlp_head_matches_hand_count():
    model = model_zoo.mlp_head()
    assert krp.count_params(model) == MLP_PARAMS == model.count_params()
    total, rows = krp.count_flops(model, by_layer=True)
    assert total == MLP_FLOPS
    assert {r["name"]: r["macs"] for r in rows}["conv"] == 36 * 27 * 8


def test_hard_count_of_gated_model_follows_keep_masks():
    gated = krp.add_gates(model_zoo.mlp_head())
    assert krp.count_params(gated) == MLP_PARAMS  # gates are not counted
    _set_keep(gated, {"conv": 4, "fc1": 10, "fc2": 5})
    params = (27 * 4 + 4) + (4 * 10 + 10) + (10 * 5 + 5) + (5 * 4 + 4)
    flops = (2 * 36 * 27 * 4 + 36 * 4) + 4 + (2 * 4 * 10 + 10) + (2 * 10 * 5 + 5) + 2 * 5 * 4
    assert krp.count_params(gated) == params
    assert krp.count_flops(gated) == flops


@pytest.mark.parametrize("name", sorted(model_zoo.ALL))
def test_dense_count_agrees_with_keras(name):
    model = model_zoo.ALL[name]()
    assert krp.count_params(model) == model.count_params()
    gated = krp.add_gates(model)
    assert krp.count_params(gated) == model.count_params()
    total, rows = krp.count_flops(model, by_layer=True)
    assert total == sum(r["flops"] for r in rows) == krp.count_flops(gated)
    assert 2 * sum(r["macs"] for r in rows) <= total


def test_resnet_stage_counts_shortcut_and_classifier():
    model = model_zoo.resnet_basic()
    _, rows = krp.count_flops(model, by_layer=True)
    by_name = {r["name"]: r for r in rows}
    # 1x1 projection, stride 2: 8x8 output, 8 -> 16 channels.
    assert by_name["stage2_block1_proj_conv"]["macs"] == 8 * 8 * 8 * 16
    assert by_name["classifier"]["macs"] == 32 * 10


def test_unknown_spatial_size_needs_input_shape():
    from keras_relaxprune_apps.models import small_unet

    model = small_unet(input_shape=(None, None, 3), num_classes=3, widths=(8, 16, 32))
    with pytest.raises(ValueError, match="input_shape"):
        krp.count_flops(model)
    assert krp.count_flops(model, input_shape=(16, 16, 3)) == krp.count_flops(model_zoo.unet())


@pytest.mark.parametrize("name", sorted(model_zoo.ALL))
def test_stripped_count_agrees_with_keras(name):
    model = model_zoo.ALL[name]()
    gated = krp.add_gates(model)
    random_masks(gated, 0)
    small = krp.strip_pruning(gated)
    assert krp.count_params(small) == small.count_params() == krp.count_params(gated)
    assert krp.count_params(small) < model.count_params()


@pytest.mark.backend_agnostic
def test_counting_at_another_size_renames_layers_whose_names_repeat_in_the_flat_graph():
    """Inner layers of nested models (or inlined composite layers) may share a
    name; counted at another input size, the flat graph is rebuilt as one
    model, which Keras refuses with two layers alike named."""

    def block(width):
        inputs = keras.Input((None, None, width))
        x = keras.layers.Conv2D(width, 3, padding="same", name="conv")(inputs)
        return keras.Model(inputs, keras.layers.Dropout(0.1, name="dropout")(x))

    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, block(4)(block(4)(inputs)))
    assert krp.count_flops(model, input_shape=(8, 8, 4)) == 2 * 2 * 8 * 8 * 9 * 4 * 4
