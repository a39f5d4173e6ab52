"""Decisions of `graph/protection.py`: which groups are kept whole at
`add_gates` so that `strip_pruning` never refuses after training.

Each decision is checked on both sides: a group protected up front names the
layer that forced it; a group left prunable strips exactly with channels
removed (the answer `strip_pruning` acts on is the one protection read)."""

import keras
import numpy as np
import pytest
from helpers import gate_inputs, random_masks, randomize_batch_norms
from keras import layers
from scratch_conv import ScratchConv2D

import keras_relaxprune as krp
from keras_relaxprune.graph.protection import reader_refusing_a_scale
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.layer_support import (
    ABSORBED,
    BROKEN,
    CARRIED,
    removed_constant_fate,
)

pytestmark = pytest.mark.backend_agnostic


class PlainConv(ScratchConv2D):
    """A 2D convolution written from scratch (no Conv2D subclass), with
    Conv2D's weights and config keys: registered like Conv2D, it gets every
    Conv2D rule, the constant rule included."""


@pytest.fixture(autouse=True)
def _registered():
    krp.register_layer(PlainConv, like=keras.layers.Conv2D)


def _reasons(graph, producer):
    """Protection reasons of the group `producer` starts ("" if prunable)."""
    root = next(r for r, names in graph.groups.producers.items() if producer in names)
    root = graph.groups.find(root)
    return " | ".join(graph.groups.reasons.get(root, [])) if graph.groups.is_protected(root) else ""


def _strips_exactly(gated, seed=0):
    random_masks(gated, seed, keep=0.5)
    assert any(not np.all(g.keep_mask.numpy()) for g in gated.layers if hasattr(g, "keep_mask")), (
        "the masks must remove channels"
    )
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(seed).random((2, *gated.input_shape[1:]), "float32")
    np.testing.assert_allclose(
        small.predict(x, verbose=0), gated.predict(x, verbose=0), rtol=1e-4, atol=1e-5
    )
    assert krp.count_flops(small) == krp.count_flops(gated)
    return small


def _head(x):
    return layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x))


# A removed channel made non-zero (sigmoid(0) = 0.5), then read by...
READERS = {
    "padded_conv": (lambda: layers.Conv2D(4, 3, padding="same", name="reader"), True),
    "valid_conv": (lambda: layers.Conv2D(4, 3, padding="valid", name="reader"), False),
    "pointwise_conv": (lambda: layers.Conv2D(4, 1, padding="same", name="reader"), False),
    "transposed_conv": (lambda: layers.Conv2DTranspose(4, 1, name="reader"), True),
    "separable_conv": (lambda: layers.SeparableConv2D(4, 1, name="reader"), True),
    "padded_depthwise": (lambda: layers.DepthwiseConv2D(3, padding="same", name="reader"), True),
    "zero_padding": (lambda: layers.ZeroPadding2D(1, name="reader"), True),
    "pooling": (lambda: layers.MaxPooling2D(name="reader"), False),
    "registered_padded_conv": (lambda: PlainConv(4, 3, padding="same", name="reader"), True),
    "registered_valid_conv": (lambda: PlainConv(4, 3, padding="valid", name="reader"), False),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_constants_before_zero_padding_are_protected_and_absorbed_ones_strip(reader):
    """conv -> sigmoid -> reader: where the reader cannot take a constant
    exactly (zero padding at its borders, a transposed or separable kernel)
    the conv's group is protected, naming the reader; where it can (a 1x1 or
    'valid' kernel folds it into its bias, pooling carries it to the 1x1
    tail), the group stays prunable and strips exactly with channels removed.
    A layer registered like Conv2D (not a subclass) gets Conv2D's answer."""
    make, protected = READERS[reader]
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = layers.Activation("sigmoid", name="maker")(x)
    x = layers.Conv2D(5, 1, activation="relu", name="tail")(make()(x))
    model = keras.Model(inputs, _head(x))
    reasons = _reasons(analyze(model), "conv")
    if protected:
        assert "'maker'" in reasons and "'reader'" in reasons
        with pytest.warns(UserWarning, match="maker"):
            gated = krp.add_gates(model)
        assert "conv_gate" not in [layer.name for layer in gated.layers]
    else:
        assert reasons == ""
        _strips_exactly(krp.add_gates(model))


@pytest.mark.parametrize(
    "layer, rank, fate",
    [
        (layers.Dense(2), 2, ABSORBED),
        (layers.Conv2D(2, 3, padding="valid"), 4, ABSORBED),
        (layers.Conv2D(2, 1, padding="same"), 4, ABSORBED),
        (layers.Conv2D(2, 3, padding="same"), 4, BROKEN),
        (layers.Conv1D(2, 3, padding="causal"), 3, BROKEN),
        (layers.Conv2DTranspose(2, 1), 4, BROKEN),
        (layers.DepthwiseConv2D(3, padding="valid"), 4, CARRIED),
        (layers.DepthwiseConv2D(3, padding="same"), 4, BROKEN),
        (layers.ZeroPadding2D(1), 4, BROKEN),
        (layers.Concatenate(axis=-1), 4, CARRIED),
        (layers.Concatenate(axis=1), 4, BROKEN),
        (layers.BatchNormalization(), 4, CARRIED),
        (layers.Lambda(lambda t: t), 4, None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, layers.Layer) else str(value),
)
def test_removed_constant_fate_reads_the_record(layer, rank, fate):
    class Node:  # the two things the answer reads of a flat node
        operation, outputs = layer, ["out"]

    class Flat:
        tensors = {"out": keras.KerasTensor((1,) * rank)}

    assert removed_constant_fate(Node(), Flat()) == fate


def test_a_swish_conv_read_by_a_batch_norm_alone_gives_it_its_gate():
    """conv(swish) -> BN: the gate cannot fold into the swish conv, but a BN
    read by nothing else takes it (after the BN, into gamma and beta): the
    group stays prunable and strips exactly."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="swish", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, _head(layers.ReLU()(x)))
    assert _reasons(analyze(model), "conv") == ""
    gated = randomize_batch_norms(krp.add_gates(model), 0)
    assert sorted(gate_inputs(gated).values()) == [["bn"]]
    _strips_exactly(gated)


def test_a_swish_conv_read_by_a_batch_norm_and_another_layer_is_protected():
    """conv(swish) read by a BN and by a pooling layer: the gate would have
    to go right after the conv, where it cannot fold, and neither reader
    takes a scale into its kernel."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="swish", name="conv")(inputs)
    y = layers.BatchNormalization(name="bn")(x)
    z = layers.MaxPooling2D(1, name="pool")(x)
    model = keras.Model(inputs, _head(layers.Add()([y, z])))
    reasons = _reasons(analyze(model), "conv")
    assert "'conv' has activation" in reasons and "'bn' (BatchNormalization)" in reasons


@pytest.mark.parametrize(
    "after_product, refusing",
    [
        (lambda: layers.Conv2D(4, 1, name="after"), None),
        (lambda: layers.MaxPooling2D(1, name="after"), "after"),
    ],
    ids=["conv", "pooling"],
)
def test_an_unfoldable_gate_is_taken_through_a_product_by_a_kernel_only(after_product, refusing):
    """x * sigmoid(conv(...)): the gate after the sigmoid conv cannot fold
    into it; a scale on a full-width factor of a `Multiply` scales the
    product, so the product's readers are asked in turn: a convolution takes
    it into its kernel rows (prunable, exact), pooling does not (protected,
    and named)."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="features")(inputs)
    s = layers.Conv2D(2, 1, activation="relu", name="squeeze")(
        layers.GlobalAveragePooling2D(keepdims=True)(x)
    )
    s = layers.Conv2D(6, 1, activation="sigmoid", name="excite")(s)
    y = after_product()(layers.Multiply(name="product")([x, s]))
    model = keras.Model(inputs, _head(y))
    graph = analyze(model)
    excite = next(node for node in graph.flat.nodes if node.name == "excite")
    found = reader_refusing_a_scale(graph.flat, graph.flat.consumers(), excite.outputs[0])
    assert (None if found is None else found.name) == refusing
    reasons = _reasons(graph, "excite")
    if refusing is None:
        assert reasons == ""
        _strips_exactly(krp.add_gates(model))
    else:
        assert "'excite' has activation 'sigmoid'" in reasons and "'after'" in reasons


def test_a_kernel_reading_only_split_parts_before_a_barrier_is_protected():
    """conv -> split -> 1x1 conv on one part -> a barrier: with every channel
    of that part removed the 1x1 conv emits its bias, which a layer without
    a removal rule cannot take; its parts are protected up front."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    a, b = keras.ops.split(x, 2, axis=-1)
    y = layers.Conv2D(3, 1, name="part_reader")(b)
    y = layers.Lambda(lambda t: t * 2.0, name="barrier")(y)
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (a, y)]
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Concatenate()(pooled)))
    reasons = _reasons(analyze(model), "conv")
    assert "'part_reader' (Conv2D) reads only parts" in reasons and "'barrier'" in reasons


# What a node makes of a removed channel (0), found by running it on zeros.
ZERO_MAPS = {
    "add_scalar": (lambda t: t + 1.0, "uniform"),
    "maximum_scalar": (lambda t: keras.ops.maximum(t, 0.5), "uniform"),
    "relu_threshold": (lambda t: layers.ReLU(threshold=0.5, negative_slope=0.1)(t), "uniform"),
    "exp": (keras.ops.exp, "uniform"),
    "divide_by_it": (lambda t: 2.0 / t, "varying"),  # not finite: no constant at all
    "divide_scalar": (lambda t: t / 2.0, None),
    "power": (lambda t: t**2, None),
    "plain_relu": (lambda t: layers.ReLU()(t), None),
    "where": (lambda t: keras.ops.where(t > 0, t, 0.0), None),
}


@pytest.mark.parametrize("name", sorted(ZERO_MAPS))
def test_value_made_from_zero_runs_the_layer_on_zeros(name):
    from keras_relaxprune.layer_support.removed_constants import value_made_from_zero

    function, expected = ZERO_MAPS[name]
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, function(layers.Conv2D(4, 3, name="producer")(inputs)))
    graph = analyze(model)
    traced = {
        key
        for key, channel_map in graph.maps.items()
        if channel_map and any(s.group is not None for s in channel_map)
    }
    made = [value_made_from_zero(node, graph.flat, traced) for node in graph.flat.nodes]
    assert [m for m in made if m is not None] == ([expected] if expected else [])


@pytest.mark.parametrize("padding, protected", [("same", True), ("valid", False)])
def test_an_offset_before_a_conv_is_protected_only_where_padding_breaks_it(padding, protected):
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="producer")(inputs)
    x = layers.Conv2D(4, 3, padding=padding, name="reader")(keras.ops.maximum(x, 0.5))
    model = keras.Model(inputs, _head(x))
    graph = analyze(model)
    reasons = _reasons(graph, "producer")
    assert ("'reader' (Conv2D) cannot take exactly" in reasons) == protected
    if not protected:
        _strips_exactly(krp.add_gates(model))


# Between a gate that cannot fold (after gelu or a sigmoid) and the kernel
# that takes its scale: layers that map 0 to 0 and commute with a scale pass
# it on (`passes_scale`); noise that adds does not.
BETWEEN = {
    "dropout": (lambda: layers.Dropout(0.3, name="between"), None),
    "spatial_dropout": (lambda: layers.SpatialDropout1D(0.3, name="between"), None),
    "gaussian_dropout": (lambda: layers.GaussianDropout(0.3, name="between"), None),
    "identity": (lambda: layers.Identity(name="between"), None),
    "gaussian_noise": (lambda: layers.GaussianNoise(0.3, name="between"), "between"),
    "alpha_dropout": (lambda: layers.AlphaDropout(0.3, name="between"), "between"),
    "activity_regularization": (lambda: layers.ActivityRegularization(name="between"), "between"),
}


@pytest.mark.parametrize("between", sorted(BETWEEN))
def test_a_gelu_mlp_gate_passes_a_dropout_to_the_next_dense(between):
    """Dense(gelu) -> Dropout -> Dense (a transformer's MLP): the gate after
    the gelu cannot fold into it, and the Dropout hands its scale on to the
    second Dense, so the hidden width prunes and strips exactly."""
    make, refusing = BETWEEN[between]
    inputs = keras.Input((6, 8))
    x = layers.Dense(16, activation="gelu", name="hidden")(inputs)
    model = keras.Model(inputs, layers.Dense(8, name="out")(make()(x)))
    graph = analyze(model)
    hidden = next(node for node in graph.flat.nodes if node.name == "hidden")
    found = reader_refusing_a_scale(graph.flat, graph.flat.consumers(), hidden.outputs[0])
    assert (None if found is None else found.name) == refusing
    reasons = _reasons(graph, "hidden")
    if refusing is None:
        assert reasons == ""
        small = _strips_exactly(krp.add_gates(model))
        assert small.get_layer("hidden").units < 16
    else:
        assert "'hidden' has activation 'gelu'" in reasons and "'between'" in reasons


# Between a squeeze-excite product and the projection conv (EfficientNetV2's
# blocks pad before a 'valid' conv): (the layers, the class refusing the scale).
PASSING = {
    "zero_padding": (lambda: [layers.ZeroPadding2D(1)], None),
    "cropping": (lambda: [layers.Cropping2D(1)], None),
    "bilinear_upsampling": (lambda: [layers.UpSampling2D(interpolation="bilinear")], None),
    "padding_then_spatial_dropout": (
        lambda: [layers.ZeroPadding2D(1), layers.SpatialDropout2D(0.3)],
        None,
    ),
    "padding_then_pooling": (
        lambda: [layers.ZeroPadding2D(1), layers.MaxPooling2D()],
        "MaxPooling2D",
    ),
}


@pytest.mark.parametrize("passing", sorted(PASSING))
def test_a_squeeze_excite_gate_passes_zero_padding_to_a_valid_conv(passing):
    """conv -> BN -> swish -> x * sigmoid(...) -> ZeroPadding2D -> conv
    ('valid'): the excite gate's scale goes through the product and the
    padding (0 stays 0) into the projection's kernel rows; pooling cannot
    take it (protected, and named)."""
    make, refusing = PASSING[passing]
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", use_bias=False, name="expand")(inputs)
    x = layers.Activation("swish")(layers.BatchNormalization(name="expand_bn")(x))
    s = layers.Conv2D(2, 1, activation="swish", name="squeeze")(
        layers.GlobalAveragePooling2D(keepdims=True)(x)
    )
    s = layers.Conv2D(6, 1, activation="sigmoid", name="excite")(s)
    y = layers.Multiply(name="product")([x, s])
    for layer in make():
        y = layer(y)
    y = layers.Conv2D(5, 3, padding="valid", use_bias=False, name="project")(y)
    y = layers.Activation("relu")(layers.BatchNormalization(name="project_bn")(y))
    model = randomize_batch_norms(keras.Model(inputs, _head(y)), seed=1)
    graph = analyze(model)
    excite = next(node for node in graph.flat.nodes if node.name == "excite")
    found = reader_refusing_a_scale(graph.flat, graph.flat.consumers(), excite.outputs[0])
    reasons = _reasons(graph, "excite")
    if refusing is None:
        assert found is None and reasons == ""
        small = _strips_exactly(krp.add_gates(model))
        assert small.get_layer("expand").filters < 6
    else:
        assert found.class_name == refusing
        assert "'excite' has activation 'sigmoid'" in reasons
