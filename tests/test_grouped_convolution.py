"""Grouped convolutions (`groups=G`) are pruned exactly, every channel group
kept the same width.

The output of a grouped convolution is G tied copies of one new channel
group; its input is tied into G tiles (a 1x1 convolution's group feeding it
is split into G tied copies of a narrower group, whose gate repeats over
them). Each model here is gated, given masks (random, a group wholly off,
or from a short `PruningCallback` fit), stripped, and compared with the
gated model: outputs to float tolerance, `count_flops`/`count_params` of
the stripped model equal to the gated hard counts, and every stripped
grouped convolution still has `groups == G`.
"""

import math

import keras
import numpy as np
import pytest
from helpers import gates, random_masks, randomize_batch_norms
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.cost.relaxed import GraphCost, keep_masks
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


def _bn_relu(x):
    return layers.ReLU()(layers.BatchNormalization()(x))


def _resnext(groups=(4,), width=16, residual=True):
    """Stem conv, then 1x1 -> grouped 3x3 (one per entry of `groups`) -> 1x1,
    with a residual `Add`, on 16x16x3 images."""
    inputs = keras.Input((16, 16, 3))
    x = _bn_relu(layers.Conv2D(width, 3, padding="same", name="stem")(inputs))
    y = _bn_relu(layers.Conv2D(width, 1, name="reduce")(x))
    for position, count in enumerate(groups):
        y = _bn_relu(
            layers.Conv2D(width, 3, padding="same", groups=count, name=f"grouped{position}")(y)
        )
    y = layers.BatchNormalization()(layers.Conv2D(width, 1, name="expand")(y))
    z = layers.ReLU()(layers.Add()([x, y]) if residual else y)
    head = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(z))
    return keras.Model(inputs, head)


def _gate_named(gated, name):
    (gate,) = [g for g in gates(gated) if g.name == name]
    return gate


def _strips_exactly(gated, input_shape=(16, 16, 3)):
    """Strips `gated` as its masks stand; asserts equal outputs (inference
    mode) and counts; returns the stripped model."""
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).normal(size=(2, *input_shape)).astype("float32")
    expected = keras.ops.convert_to_numpy(gated(x, training=False))
    actual = keras.ops.convert_to_numpy(small(x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert krp.count_flops(small) == krp.count_flops(gated)
    assert krp.count_params(small) == krp.count_params(gated)
    return small


def _assert_grouped_kept(original, small):
    """Every grouped convolution that survives keeps its `groups`, with
    filters and inputs divisible by it (equal channel groups)."""
    for layer in original.layers:
        if getattr(layer, "groups", 1) == 1:
            continue
        try:
            stripped = small.get_layer(layer.name)
        except ValueError:
            continue  # collapsed: every channel of a group it needs was removed
        assert stripped.groups == layer.groups
        assert stripped.filters % layer.groups == 0
        in_per_group = stripped.kernel.shape[-2]
        assert stripped.input.shape[-1] == in_per_group * layer.groups


@pytest.mark.parametrize("groups", [4, 2])
def test_resnext_block_gates_the_grouped_conv_and_its_input(groups):
    model = _resnext((groups,))
    gated = krp.add_gates(model)
    # The grouped conv's output group and the 1x1 conv feeding it have one
    # gate per channel of a channel group, repeated over the G groups; the
    # residual stream (stem and expand, tied by the Add) has one gate.
    assert {g.name: g.channels for g in gates(gated)} == {
        "stem_gate": 16,
        "reduce_gate": 16 // groups,
        "grouped0_gate": 16 // groups,
    }
    graph = analyze(gated)
    assert not graph.barriers
    assert not any(graph.groups.is_protected(root) for root in graph.gates)


@pytest.mark.parametrize("groups", [4, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resnext_block_with_random_masks_strips_exactly(groups, seed):
    model = _resnext((groups,))
    randomize_batch_norms(model, seed)
    gated = krp.add_gates(model)
    random_masks(gated, seed=seed)
    small = _strips_exactly(gated)
    _assert_grouped_kept(model, small)
    assert krp.count_flops(small) < krp.count_flops(model)


@pytest.mark.parametrize("gate_name", ["reduce_gate", "grouped0_gate"])
def test_a_group_switched_wholly_off_collapses_exactly(gate_name):
    """The grouped conv's input group, or its output group, wholly off: the
    residual branch collapses into the shortcut plus a constant."""
    model = _resnext((4,))
    randomize_batch_norms(model, 3)
    gated = krp.add_gates(model)
    random_masks(gated, seed=3)
    gate = _gate_named(gated, gate_name)
    gate.keep_mask.assign(np.zeros(gate.channels, "float32"))
    small = _strips_exactly(gated)
    assert "grouped0" not in [layer.name for layer in small.layers]


def test_masks_from_a_short_fit_strip_exactly():
    model = _resnext((4,))
    gated = krp.add_gates(model)
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 16, 3), "float32")
    y = rng.integers(0, 3, 16)
    gated.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    gated.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[krp.PruningCallback(target=0.5)])
    assert any(not np.all(keras.ops.convert_to_numpy(g.keep_mask)) for g in gates(gated))
    remaining = krp.count_flops(gated) / krp.count_flops(model)
    assert remaining <= 0.51
    small = _strips_exactly(gated)
    _assert_grouped_kept(model, small)


@pytest.mark.parametrize("chain", [(4, 4), (4, 2), (2, 4)])
def test_chained_grouped_convs_strip_exactly(chain):
    """Same G: the second conv reads the first's copies as they are.
    4 then 2: each tile of the second holds two copies of the first's group.
    2 then 4: the first conv's output group is split into two tied copies."""
    model = _resnext(chain)
    randomize_batch_norms(model, 4)
    gated = krp.add_gates(model)
    graph = analyze(gated)
    assert not any(graph.groups.is_protected(root) for root in graph.gates)
    expected = {f"grouped{i}_gate": 16 // max(chain[i : i + 2]) for i in range(len(chain))}
    assert {name: _gate_named(gated, name).channels for name in expected} == expected
    for seed in range(3):
        random_masks(gated, seed=seed)
        _assert_grouped_kept(model, _strips_exactly(gated))


def test_grouped_conv_flops_and_params_follow_the_grouped_formula():
    model = _resnext((4,))
    _, rows = krp.count_flops(model, by_layer=True)
    (row,) = [r for r in rows if r["name"] == "grouped0"]
    kernel, positions = 3 * 3, 16 * 16
    assert row["macs"] == positions * kernel * (16 // 4) * 16
    assert row["params"] == kernel * (16 // 4) * 16 + 16
    assert row["params"] == model.get_layer("grouped0").count_params()
    assert krp.count_params(model) == model.count_params()


def test_relaxed_cost_with_hard_gates_equals_the_hard_cost():
    """The differentiable cost counts each tied copy: with the keep masks as
    gate values it is the hard cost."""
    gated = krp.add_gates(_resnext((4, 2)))
    random_masks(gated, seed=5)
    graph = analyze(gated)
    relaxed = GraphCost(graph).fractions(keep_masks)
    hard = cost_fractions(graph, graph.keep_vectors())
    assert math.isclose(float(relaxed["flops"]), hard["flops"], rel_tol=1e-6)
    assert math.isclose(float(relaxed["params"]), hard["params"], rel_tol=1e-6)


def test_gated_model_saves_and_loads(tmp_path):
    gated = krp.add_gates(_resnext((4,)))
    random_masks(gated, seed=6)
    path = str(tmp_path / "gated.keras")
    gated.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).random((2, 16, 16, 3), "float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(gated(x, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert _gate_named(loaded, "reduce_gate").channels == 4
    assert krp.count_flops(loaded) == krp.count_flops(gated)
    _strips_exactly(loaded)


def test_grouped_conv_added_to_a_plain_conv_ties_them():
    """`x + grouped(x)`: the plain conv's group is split into tied copies
    that line up with the grouped conv's output."""
    inputs = keras.Input((8, 8, 3))
    x = _bn_relu(layers.Conv2D(8, 3, padding="same", name="plain")(inputs))
    y = layers.BatchNormalization()(
        layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(x)
    )
    z = layers.ReLU()(layers.Add()([x, y]))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(z)))
    gated = krp.add_gates(model)
    assert [g.channels for g in gates(gated)] == [4]
    for seed in range(3):
        random_masks(gated, seed=seed)
        _assert_grouped_kept(model, _strips_exactly(gated, (8, 8, 3)))


@pytest.mark.parametrize("fused", [True, False])
def test_regnety_block_with_squeeze_excite_strips_exactly(fused):
    """RegNetY: grouped 3x3 -> squeeze-excite `Multiply` -> 1x1. The excite
    conv's group is split into tied copies that line up with the grouped
    conv's output, so both are pruned together."""
    inputs = keras.Input((16, 16, 3))
    x = _bn_relu(layers.Conv2D(16, 3, padding="same", name="stem")(inputs))
    y = _bn_relu(layers.Conv2D(16, 1, name="reduce")(x))
    y = _bn_relu(layers.Conv2D(16, 3, padding="same", groups=4, name="grouped0")(y))
    s = layers.GlobalAveragePooling2D(keepdims=True)(y)
    s = layers.Conv2D(4, 1, activation="relu", name="squeeze")(s)
    if fused:
        s = layers.Conv2D(16, 1, activation="sigmoid", name="excite")(s)
    else:
        s = layers.Activation("sigmoid")(layers.Conv2D(16, 1, name="excite")(s))
    y = layers.Multiply()([y, s])
    y = layers.BatchNormalization()(layers.Conv2D(16, 1, name="expand")(y))
    z = layers.ReLU()(layers.Add()([x, y]))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(z)))
    randomize_batch_norms(model, 9)
    gated = krp.add_gates(model)
    assert {g.name: g.channels for g in gates(gated)} == {
        "stem_gate": 16,
        "reduce_gate": 4,
        "grouped0_gate": 4,
        "squeeze_gate": 4,
    }
    for seed in range(3):
        random_masks(gated, seed=seed)
        _assert_grouped_kept(model, _strips_exactly(gated))


def test_grouped_conv_on_the_model_input_prunes_its_outputs():
    inputs = keras.Input((8, 8, 4))
    x = _bn_relu(layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(inputs))
    y = _bn_relu(layers.Conv2D(6, 3, padding="same", name="after")(x))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(y)))
    gated = krp.add_gates(model)
    assert _gate_named(gated, "grouped_gate").channels == 4
    random_masks(gated, seed=7)
    _assert_grouped_kept(model, _strips_exactly(gated, (8, 8, 4)))


def test_channels_that_do_not_line_up_across_groups_are_protected():
    """A concatenation of 6 and 2 channels into groups=2 (tiles of 4): the
    6-channel group straddles two tiles unevenly, so it is protected, with a
    reason naming the grouped conv; the rest is still pruned exactly."""
    inputs = keras.Input((8, 8, 3))
    a = _bn_relu(layers.Conv2D(6, 3, padding="same", name="six")(inputs))
    b = _bn_relu(layers.Conv2D(2, 3, padding="same", name="two")(inputs))
    x = layers.Concatenate()([a, b])
    y = _bn_relu(layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(x))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(y)))
    graph = analyze(model)
    reasons = " | ".join(r for rs in graph.groups.reasons.values() for r in rs)
    assert "'grouped' (Conv2D, groups=2)" in reasons
    gated = krp.add_gates(model)
    assert _gate_named(gated, "grouped_gate").channels == 4
    random_masks(gated, seed=8)
    _strips_exactly(gated, (8, 8, 3))


@pytest.mark.parametrize("rank", [1, 3])
def test_grouped_conv1d_and_conv3d_strip_exactly(rank):
    conv = {1: layers.Conv1D, 3: layers.Conv3D}[rank]
    pool = {1: layers.GlobalAveragePooling1D, 3: layers.GlobalAveragePooling3D}[rank]
    shape = (6,) * rank + (3,)
    inputs = keras.Input(shape)
    x = _bn_relu(conv(8, 1, name="reduce")(inputs))
    x = _bn_relu(conv(8, 3, padding="same", groups=4, name="grouped")(x))
    x = _bn_relu(conv(5, 1, name="expand")(x))
    model = keras.Model(inputs, layers.Dense(3)(pool()(x)))
    gated = krp.add_gates(model)
    assert _gate_named(gated, "reduce_gate").channels == 2
    for seed in range(2):
        random_masks(gated, seed=seed)
        _assert_grouped_kept(model, _strips_exactly(gated, shape))


def test_channel_gate_with_fewer_gates_repeats_them():
    gate = krp.ChannelGate(channels=2)
    x = keras.ops.ones((1, 3, 3, 6))
    gate(x)
    gate.keep_mask.assign(np.array([1.0, 0.0], "float32"))
    y = keras.ops.convert_to_numpy(gate(x))[0, 0, 0]
    np.testing.assert_allclose(y, [0.99, 0, 0.99, 0, 0.99, 0], atol=1e-6)
    restored = krp.ChannelGate.from_config(gate.get_config())
    assert restored.get_config()["channels"] == 2
    with pytest.raises(ValueError, match="do not tile"):
        gate(keras.ops.ones((1, 3, 3, 5)))


def test_split_group_rewrites_segments_modulo_its_new_width():
    from keras_relaxprune.graph.channel_maps import ChannelGroups, Segment

    groups = ChannelGroups()
    group = groups.new(8, "conv")
    sliced = (Segment(group, 2, 7),)
    new = groups.split(group, 4)
    assert groups.size[new] == 2 and groups.find(group) == new
    assert groups.producers[new] == ["conv"]
    assert groups.current(sliced) == (Segment(new, 0, 2), Segment(new, 0, 2), Segment(new, 0, 1))
    assert groups.whole_group((Segment(new, 0, 2),) * 4) == new
    assert groups.whole_group((Segment(new, 0, 1),)) is None
