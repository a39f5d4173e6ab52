"""Attention heads of `MultiHeadAttention`: gated, counted, stripped, exported."""

import os
import warnings

import keras
import numpy as np
import pytest
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.cost.relaxed import GraphCost, soft_gates
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.layer_support.attention import GatedMultiHeadAttention
from keras_relaxprune_apps import small_vit

pytestmark = pytest.mark.backend_agnostic

SHAPE = (16, 16, 3)


def _vit(**overrides):
    keras.utils.set_random_seed(0)
    settings = dict(input_shape=SHAPE, patch_size=4, width=16, depth=2, num_heads=4, mlp_width=32)
    return small_vit(**{**settings, **overrides})


def _head_gates(graph):
    roots = [graph.groups.find(heads[0].group) for heads in graph.inner_maps.values()]
    return [graph.gates[root] for root in roots if root in graph.gates]


def _random_masks(graph, seed):
    """Random keep masks and gate values; each group keeps a channel."""
    rng = np.random.default_rng(seed)
    for root in graph.gated_groups():
        gate = graph.gates[root]
        mask = (rng.random(gate.channels) < 0.5).astype("float32")
        mask[rng.integers(gate.channels)] = 1.0
        gate.keep_mask.assign(mask)
        gate.logits.assign(rng.normal(0.02, 0.02, gate.channels).astype("float32"))


def _assert_strips_exactly(gated, x):
    small = krp.strip_pruning(gated)
    expected = keras.ops.convert_to_numpy(gated(x))
    actual = keras.ops.convert_to_numpy(small(x))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert krp.count_flops(small) == krp.count_flops(gated)
    assert small.count_params() == krp.count_params(small) == krp.count_params(gated)
    assert not any(isinstance(layer, GatedMultiHeadAttention) for layer in small.layers)
    return small


def test_heads_get_one_gate_each_and_the_open_gated_model_equals_the_dense_one():
    dense = _vit()
    gated = krp.add_gates(dense)
    graph = analyze(gated)
    head_gates = _head_gates(graph)
    assert [gate.channels for gate in head_gates] == [4, 4]
    attention = [layer for layer in gated.layers if isinstance(layer, GatedMultiHeadAttention)]
    assert [layer.gate for layer in attention] == head_gates
    for gate in graph.gates.values():
        gate.logits.assign(np.full(gate.channels, 10.0, "float32"))
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
    np.testing.assert_allclose(gated(x), dense(x), rtol=1e-5, atol=1e-5)
    assert krp.count_flops(gated) == krp.count_flops(dense)
    assert krp.count_params(gated) == dense.count_params()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_head_masks_strip_exactly_with_equal_counts(seed):
    gated = krp.add_gates(_vit())
    graph = analyze(gated)
    _random_masks(graph, seed)
    x = np.random.default_rng(seed).normal(size=(3, *SHAPE)).astype("float32")
    small = _assert_strips_exactly(gated, x)
    kept = [int(gate.keep_mask.numpy().sum()) for gate in _head_gates(graph)]
    heads = [layer.num_heads for layer in small.layers if "attention" in layer.name]
    assert heads == kept


def _attention_model(**options):
    """Cross-attention: 5 queries of width 8 attend 7 positions of width 6.

    (With `value_dim != key_dim` the tests give a `dropout`, which keeps
    Keras on its einsum path: its fused one refuses them on JAX.)"""
    keras.utils.set_random_seed(0)
    query, value = keras.Input((5, 8)), keras.Input((7, 6))
    attention = layers.MultiHeadAttention(name="attention", **options)
    return keras.Model([query, value], attention(query, value))


def test_count_flops_of_one_attention_layer_by_hand():
    model = _attention_model(num_heads=3, key_dim=4, value_dim=2, dropout=0.1)
    queries, positions, width_q, width_v, out = 5, 7, 8, 6, 8

    def by_hand(heads):
        macs = heads * (
            queries * width_q * 4  # query projection
            + positions * width_v * 4  # key projection
            + positions * width_v * 2  # value projection
            + queries * 2 * out  # output projection
            + queries * positions * 4  # scores Q K^T
            + queries * positions * 2  # weighted sum of the values
        )
        return 2 * macs + heads * (queries * positions + queries * 4)  # softmax, scaling

    assert krp.count_flops(model) == by_hand(3) == 4377
    assert krp.count_params(model) == model.count_params()
    gated = krp.add_gates(model)
    (gate,) = analyze(gated).gates.values()
    gate.keep_mask.assign(np.array([0, 1, 0], "float32"))
    assert krp.count_flops(gated) == by_hand(1)
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(2, 5, 8)).astype("float32"), rng.normal(size=(2, 7, 6)).astype("float32")]
    _assert_strips_exactly(gated, x)


@pytest.mark.parametrize(
    "options",
    [
        dict(num_heads=4, key_dim=3, value_dim=5, use_bias=False, dropout=0.1),
        dict(num_heads=2, key_dim=4, output_shape=(3, 2)),
    ],
    ids=["no_bias", "output_shape"],
)
def test_attention_variants_strip_exactly(options):
    gated = krp.add_gates(_attention_model(**options))
    graph = analyze(gated)
    (gate,) = graph.gates.values()
    mask = np.zeros(gate.channels, "float32")
    mask[-1] = 1.0
    gate.keep_mask.assign(mask)
    gate.logits.assign(np.linspace(-0.01, 0.03, gate.channels).astype("float32"))
    rng = np.random.default_rng(1)
    x = [rng.normal(size=(2, 5, 8)).astype("float32"), rng.normal(size=(2, 7, 6)).astype("float32")]
    _assert_strips_exactly(gated, x)


def test_heads_stay_whole_where_removing_one_changes_more_than_a_sum():
    keras.utils.set_random_seed(0)
    x = keras.Input((5, 8))
    hidden = layers.Dense(8, name="hidden")(x)
    y, scores = layers.MultiHeadAttention(2, 4, name="attention")(
        hidden, hidden, return_attention_scores=True
    )
    model = keras.Model(x, [layers.Dense(3, name="out")(y), scores])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = analyze(model)
    (heads,) = graph.inner_maps.values()
    assert graph.groups.is_protected(heads[0].group)
    assert "attention scores" in " ".join(graph.groups.reasons[graph.groups.find(heads[0].group)])


def test_the_relaxed_cost_has_gradients_for_the_head_gates():
    gated = krp.add_gates(_vit())
    graph = analyze(gated)
    cost = GraphCost(graph)
    logits = [gate.logits for gate in _head_gates(graph)]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            flops = cost.fractions(soft_gates)["flops"]
        grads = tape.gradient(flops, [v.value for v in logits])
    elif keras.backend.backend() == "jax":
        import jax

        def flops_of(values):
            with keras.StatelessScope(state_mapping=list(zip(logits, values))):
                return cost.fractions(soft_gates)["flops"]

        grads = jax.grad(flops_of)([v.value for v in logits])
    else:
        pytest.skip("gradient check written for TensorFlow and JAX")
    assert all(float(np.min(keras.ops.convert_to_numpy(g))) > 0 for g in grads)


def test_a_short_fit_meets_the_budget_and_the_stripped_vit_exports(tmp_path):
    dense = _vit()
    gated = krp.add_gates(dense)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, *SHAPE)).astype("float32")
    y = rng.integers(0, 10, 64)
    gated.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    gated.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[krp.PruningCallback(0.6)])
    assert 0.39 <= krp.count_flops(gated) / krp.count_flops(dense) <= 0.41
    small = _assert_strips_exactly(gated, x[:4])

    path = os.path.join(tmp_path, "gated.keras")
    gated.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x[:4]), gated(x[:4]), rtol=1e-5, atol=1e-6)
    assert krp.count_flops(loaded) == krp.count_flops(gated)
    np.testing.assert_allclose(krp.strip_pruning(loaded)(x[:4]), small(x[:4]), rtol=1e-5, atol=1e-6)

    formats = ("keras", "saved_model") if keras.backend.backend() == "tensorflow" else ("keras",)
    paths = krp.export(small, tmp_path / "export", formats=formats)
    reloaded = keras.saving.load_model(paths["keras"])
    np.testing.assert_allclose(reloaded(x[:4]), small(x[:4]), rtol=1e-5, atol=1e-6)
    if "saved_model" in paths:
        import tensorflow as tf

        serving = tf.saved_model.load(str(paths["saved_model"]))
        outputs = list(serving.signatures["serving_default"](tf.constant(x[:4])).values())
        np.testing.assert_allclose(outputs[0], small(x[:4]), rtol=1e-4, atol=1e-5)


def test_keras_hub_vit_encoder_heads_are_pruned_and_strip_exactly():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=8, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=32
    )
    # The encoder blocks alone, on the tokens (the whole backbone: below).
    tokens = keras.Input((5, 16))
    encoder = keras.Model(tokens, backbone.get_layer("vit_encoder")(tokens))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gated = krp.add_gates(encoder)
    graph = analyze(gated)
    assert [gate.channels for gate in _head_gates(graph)] == [4, 4]
    _random_masks(graph, 3)
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    _assert_strips_exactly(gated, x)


def _least_flops_fraction(gated, graph, dense):
    """count_flops with every gate (heads and MLP width) keeping one channel,
    over the dense model's."""
    for gate in graph.gates.values():
        mask = np.zeros(gate.channels, "float32")
        mask[0] = 1.0
        gate.keep_mask.assign(mask)
    return krp.count_flops(gated) / krp.count_flops(dense)


def test_the_whole_keras_hub_vit_backbone_gates_prunes_and_strips_exactly():
    """keras-hub 0.32's patch embedding saves `num_patches`, which its
    constructor refuses: it is copied without that key (checked to compute
    the same). Heads and MLP widths (gelu -> Dropout -> Dense) prune; the
    residual width stays (LayerNormalization)."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=4,
        num_layers=2,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gated = krp.add_gates(backbone)
    # Nothing is protected with a warning (the residual width is, silently).
    assert not [w for w in caught if "add_gates" in str(w.message)]
    graph = analyze(gated)
    assert sorted(graph.gates[root].channels for root in graph.gated_groups()) == [4, 4, 128, 128]
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    for gate in graph.gates.values():
        gate.logits.assign(np.full(gate.channels, 10.0, "float32"))
    np.testing.assert_allclose(gated(x), backbone(x), rtol=1e-5, atol=1e-5)
    # Measured 2026-12 (keras-hub 0.32): 0.157; the residual width and the
    # patch embedding stay.
    assert _least_flops_fraction(gated, graph, backbone) <= 0.20
    _random_masks(graph, 3)
    small = _assert_strips_exactly(gated, x)
    kept = [int(gate.keep_mask.numpy().sum()) for gate in _head_gates(graph)]
    attention = [layer for layer in small.layers if isinstance(layer, layers.MultiHeadAttention)]
    heads = [layer.num_heads for layer in attention]
    assert heads == kept and sum(kept) < 8
