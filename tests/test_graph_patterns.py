"""Graph patterns that were silently wrong, crashed or were refused late.

Each model here is either gated and stripped exactly (to float tolerance,
with the stripped counts equal to the gated hard counts), or refused or
protected at `add_gates` with a message naming the layer.
"""

import keras
import numpy as np
import pytest
from helpers import gates, random_masks
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


def _exact(model, seed=0, input_shape=None, **gate_kwargs):
    """Gates, random masks, strips; asserts exactness and equal counts."""
    gated = krp.add_gates(model, input_shape=input_shape, **gate_kwargs)
    random_masks(gated, seed=seed)
    small = krp.strip_pruning(gated)
    shape = input_shape or model.input_shape[1:]
    x = np.random.default_rng(seed).normal(size=(2, *shape)).astype("float32")
    np.testing.assert_allclose(
        small.predict(x, verbose=0), gated.predict(x, verbose=0), rtol=1e-4, atol=1e-4
    )
    assert krp.count_flops(small, input_shape=input_shape) == krp.count_flops(gated)
    assert krp.count_params(small) == krp.count_params(gated)
    return gated, small


def _strips_exactly(gated):
    """Strips `gated` as its masks stand; asserts equal outputs and counts."""
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).random((2, *gated.input_shape[1:]), "float32")
    np.testing.assert_allclose(
        small.predict(x, verbose=0), gated.predict(x, verbose=0), rtol=1e-4, atol=1e-5
    )
    assert krp.count_flops(small) == krp.count_flops(gated)
    assert krp.count_params(small) == krp.count_params(gated)
    return small


def _reasons(model):
    graph = analyze(model)
    return " | ".join(r for rs in graph.groups.reasons.values() for r in rs)


def _head(x, name="head"):
    return layers.Dense(3, name=name)(layers.GlobalAveragePooling2D()(x))


def test_shared_conv_with_tied_outputs_is_protected_and_exact():
    """A siamese tower whose two outputs are added: the shared conv's one
    set of weights cannot be sliced per call, so it is a barrier."""
    inputs = keras.Input((8, 8, 3))
    stem = layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    shared = layers.Conv2D(6, 3, padding="same", name="shared")
    merged = layers.Add()([shared(stem), shared(layers.ReLU()(stem))])
    after = layers.Conv2D(5, 3, padding="same", name="after")(merged)
    model = keras.Model(inputs, _head(layers.ReLU()(after)))
    assert "called 2 times" in _reasons(model)
    _exact(model)


def test_nested_model_called_twice_strips_exactly():
    block_in = keras.Input((8, 8, 4))
    block = keras.Model(block_in, layers.Conv2D(4, 1, name="inner")(block_in), name="block")
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    y = layers.Conv2D(4, 3, padding="same", name="mid")(block(x))
    z = layers.Conv2D(5, 3, padding="same", name="after")(layers.Add()([block(y), y]))
    model = keras.Model(inputs, _head(layers.ReLU()(z)))
    _exact(model)


def _fused(activation):
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", activation=activation, name="mixed")(inputs)
    x = layers.Conv2D(5, 3, padding="same", name="after")(x)
    return keras.Model(inputs, _head(x))


@pytest.mark.parametrize("activation", ["softmax", "log_softmax", layers.ReLU(max_value=0.2)])
def test_channel_mixing_or_unknown_activations_are_protected(activation):
    """A fused softmax mixes channels; a layer object other than
    `Activation` is not known to act per channel."""
    model = _fused(activation)
    assert "mixed: activation" in _reasons(model)
    _exact(model)


def test_activation_layer_object_is_read_not_taken_as_linear():
    """`activation=Activation("sigmoid")` is a sigmoid: its gate is not
    folded through it but into the convolution reading it."""
    from keras_relaxprune.layer_support.activations import activation_name

    model = _fused(layers.Activation("sigmoid"))
    assert activation_name(model.get_layer("mixed")) == "sigmoid"
    assert "mixed: activation" not in _reasons(model)
    _exact(model)


def test_softmax_activation_layer_protects_its_channels():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = layers.Activation("softmax", name="soft")(x)
    model = keras.Model(inputs, _head(layers.Conv2D(4, 1)(x)))
    assert "soft: activation 'softmax'" in _reasons(model)
    _exact(model)


def test_resizing_that_pads_is_exact():
    inputs = keras.Input((8, 6, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="sigmoid", name="conv")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Resizing(8, 8, pad_to_aspect_ratio=True, fill_value=0.0)(x)
    model = keras.Model(inputs, _head(layers.Conv2D(4, 1, name="after")(x)))
    _exact(model)


def test_concatenate_along_a_spatial_axis_strips():
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(6, 3, padding="same", name="a")(inputs)
    b = layers.Conv2D(6, 3, padding="same", name="b")(inputs)
    x = layers.Concatenate(axis=1)([a, b])
    model = keras.Model(inputs, _head(layers.Conv2D(4, 3, padding="same")(x)))
    _exact(model)


def test_batch_renormalization_strips():
    try:
        layers.BatchNormalization(renorm=True)
    except (TypeError, ValueError):
        pytest.skip("this Keras has no BatchNormalization(renorm=...) (added in 3.14)")
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(renorm=True, name="bn")(x)
    model = keras.Model(inputs, _head(layers.ReLU()(x)))
    gated, small = _exact(model)
    kept = int(gates(gated)[0].keep_mask.numpy().sum())
    assert all(w.shape == (kept,) for w in small.get_layer("bn").weights)


@pytest.mark.parametrize("merge", [layers.Add, layers.Multiply])
def test_broadcast_merge_protects_the_single_channel(merge):
    """A 1-channel map merged into a wide one: the single channel is kept;
    after an Add a removed channel would still hold it, so the wide group
    is kept too; after a Multiply it is zero, so the wide group is pruned."""
    inputs = keras.Input((8, 8, 3))
    wide = layers.Conv2D(6, 3, padding="same", name="wide")(inputs)
    one = layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="one")(inputs)
    x = layers.Conv2D(5, 3, padding="same", name="after")(merge()([wide, one]))
    model = keras.Model(inputs, _head(layers.ReLU()(x)))
    assert "broadcasts it over 6 channels" in _reasons(model)
    gated, _ = _exact(model)
    names = {g.name for g in gates(gated)}
    assert "one_gate" not in names
    assert ("wide_gate" in names) == (merge is layers.Multiply)


def test_unknown_spatial_size_is_gated_with_an_input_shape():
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization()(x)
    model = keras.Model(inputs, _head(layers.ReLU()(x)))
    with (
        pytest.raises(krp.UnknownSpatialSizeError, match="input_shape=")
        if hasattr(krp, "UnknownSpatialSizeError")
        else pytest.raises(krp.PruningError)
    ):
        krp.add_gates(model)
    gated, _ = _exact(model, input_shape=(16, 16, 3))
    assert krp.count_flops(gated) == krp.count_flops(gated, input_shape=(16, 16, 3))
    gated.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).normal(size=(32, 16, 16, 3)).astype("float32")
    y = np.zeros(32, "int64")
    gated.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[krp.PruningCallback(target=0.3)])
    dense_flops = krp.count_flops(model, input_shape=(16, 16, 3))
    assert krp.count_flops(gated) <= 0.71 * dense_flops


def test_squeeze_excite_with_fused_sigmoid_is_protected_up_front():
    """x * sigmoid(conv(...)): the gate after the sigmoid conv cannot fold
    into it nor into the Multiply; the group is protected at add_gates."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="features")(inputs)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(2, 1, activation="relu", name="squeeze")(s)
    s = layers.Conv2D(8, 1, activation="sigmoid", name="excite")(s)
    model = keras.Model(inputs, _head(layers.Multiply()([x, s])))
    assert "'excite' has activation 'sigmoid'" in _reasons(model)
    _exact(model)


def test_swish_conv_read_by_pooling_is_protected_up_front():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="swish", name="swish_conv")(inputs)
    x = layers.Conv2D(5, 3, padding="same", name="after")(layers.MaxPooling2D()(x))
    model = keras.Model(inputs, _head(layers.ReLU()(x)))
    assert "'swish_conv' has activation" in _reasons(model)
    _exact(model)


def test_rescaling_after_a_gate_strips():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = layers.Rescaling(0.5, offset=0.25)(layers.ReLU()(x))
    model = keras.Model(inputs, _head(layers.Conv2D(4, 1, name="after")(x)))
    _exact(model)


def test_bn_over_part_of_a_group_then_padded_conv_is_protected():
    """x[..., :8] -> BN -> 3x3 conv: no gate can follow the BN (it sees part
    of a group), so that group is protected rather than refused later."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(12, 3, padding="same", name="wide")(inputs)
    part = layers.BatchNormalization(name="bn_part")(x[..., :8])
    y = layers.Conv2D(4, 3, padding="same", name="after")(part)
    model = keras.Model(inputs, _head(layers.Concatenate()([y, x[..., 8:]])))
    assert "'bn_part' (BatchNormalization) renormalises part" in _reasons(model)
    _exact(model)


@pytest.mark.parametrize("layer", ["bn", "depthwise"])
def test_bn_or_depthwise_over_an_unpruned_concatenation_strips(layer):
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = layers.Conv2D(4, 3, padding="same", name="b")(inputs)
    x = layers.Concatenate()([a, b])
    x = (
        layers.BatchNormalization(name="over")
        if layer == "bn"
        else layers.DepthwiseConv2D(3, padding="same", name="over")
    )(x)
    model = keras.Model(inputs, _head(layers.ReLU()(x)))
    gated = krp.add_gates(model)
    small = krp.strip_pruning(gated)  # no channel removed at all
    x_in = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        small.predict(x_in, verbose=0), gated.predict(x_in, verbose=0), rtol=1e-4, atol=1e-4
    )
    _exact(model, seed=3)


def test_conv_transpose_into_concatenate_counts_match():
    """The drawn case of the property test: upconv -> concat."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="c0")(inputs)
    up = layers.Conv2DTranspose(4, 2, strides=2, name="upconv")(x)
    skip = layers.UpSampling2D()(x)
    model = keras.Model(inputs, _head(layers.Concatenate()([up, skip])))
    for seed in range(3):
        _exact(model, seed=seed)


def test_batch_norm_without_scale_or_center_counts_its_new_gamma():
    """The stripped BN gets a gamma (the gate folds into it): the gated
    model's hard count says so, and no beta appears."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(scale=False, center=False, name="bn")(x)
    model = keras.Model(inputs, _head(layers.ReLU()(x)))
    gated, small = _exact(model)
    assert [w.path.rsplit("/", 1)[-1] for w in small.get_layer("bn").weights] == [
        "gamma",
        "moving_mean",
        "moving_variance",
    ]


def test_bn_without_gamma_read_through_a_slice_strips():
    """A protected BN without gamma, read by a slice: no gate folds into it
    (this raised an AssertionError)."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    b = layers.BatchNormalization(scale=False, center=False, name="bnp")(x)
    mixed = layers.Conv2D(3, 1, name="after")(layers.LayerNormalization()(b))
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (mixed, b[..., 1:4])]
    model = keras.Model(inputs, layers.Dense(3)(layers.Concatenate()(pooled)))
    _exact(model)


def _squeeze_excite_net():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    squeezed = keras.layers.GlobalAveragePooling2D(name="squeeze")(x)
    squeezed = keras.layers.Reshape((1, 1, 16), name="to_1x1")(squeezed)
    squeezed = keras.layers.Conv2D(4, 1, activation="relu", name="reduce")(squeezed)
    x = keras.layers.Conv2D(8, 3, name="after")(x)
    x = keras.layers.Reshape((-1, 8), name="positions")(x)  # keeps the channel axis
    heads = [keras.layers.GlobalAveragePooling1D()(x), keras.layers.Flatten()(squeezed)]
    outputs = keras.layers.Dense(3)(keras.layers.Concatenate()(heads))
    return keras.Model(inputs, outputs)


def test_a_reshape_that_keeps_the_channel_axis_is_pruned_through():
    """The squeeze Reshape((1, 1, C)) of EfficientNet-style blocks and a
    Reshape((-1, C)) pass channels through; strip rewrites their target shapes."""
    model = _squeeze_excite_net()
    gated = krp.add_gates(model)
    gated_layers = {layer.name for layer in gated.layers}
    assert "reduce" in gated_layers
    for seed in range(3):
        random_masks(gated, seed)
        small = krp.strip_pruning(gated)
        x = np.random.default_rng(seed).random((4, 8, 8, 3), "float32")
        np.testing.assert_allclose(small(x), gated(x), rtol=1e-4, atol=1e-5)
        assert krp.count_flops(small) == krp.count_flops(gated)
        assert krp.count_params(small) == krp.count_params(gated)
    widths = {
        layer.name: layer.get_config()["target_shape"]
        for layer in small.layers
        if isinstance(layer, keras.layers.Reshape)
    }
    assert widths["to_1x1"][-1] < 16 and widths["positions"][-1] < 8


def test_a_reshape_across_the_channel_axis_stays_a_barrier():
    inputs = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    x = keras.layers.Reshape((4, 32), name="fold")(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    with pytest.raises(krp.errors.UnsupportedLayerError, match="fold.*channel axis"):
        krp.add_gates(model, strict=True)


@pytest.mark.parametrize(
    "make_value",
    [
        lambda: layers.Activation("sigmoid", name="maker"),
        lambda: layers.Rescaling(0.5, offset=0.25, name="maker"),
        lambda: layers.Resizing(6, 8, pad_to_aspect_ratio=True, fill_value=0.5, name="maker"),
    ],
    ids=["sigmoid_layer", "rescaling_offset", "resizing_fill"],
)
def test_a_removed_channel_made_non_zero_before_padding_is_protected_at_add_gates(make_value):
    """conv -> gate -> f with f(0) != 0 -> padded conv: a removed channel would
    reach the padded conv as a non-zero constant, which it cannot take
    exactly; the group is protected (with a warning naming the layer) when
    the model is gated, not refused by strip_pruning after training."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = make_value()(x)
    x = layers.Conv2D(4, 3, padding="same", name="padded")(x)
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    graph = analyze(model)
    conv_group = next(root for root, names in graph.groups.producers.items() if "conv" in names)
    assert graph.groups.is_protected(conv_group)
    reasons = " ".join(graph.groups.reasons[graph.groups.find(conv_group)])
    assert "'maker'" in reasons
    # A uniform constant is stopped by the padded conv; a padding fill by itself.
    assert "'padded'" in reasons or "writes values of its own" in reasons
    with pytest.warns(UserWarning, match="maker"):
        krp.add_gates(model)


def test_a_removed_channel_made_non_zero_before_a_dense_head_stays_prunable():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.Activation("sigmoid", name="maker")(x)
    x = layers.Conv2D(4, 1, name="pointwise")(x)  # folds the constant into its bias
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    gated = krp.add_gates(model)
    random_masks(gated, 0)
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).random((2, 8, 8, 3), "float32")
    np.testing.assert_allclose(small(x), gated(x), rtol=1e-4, atol=1e-5)
    assert krp.count_flops(small) == krp.count_flops(gated) < krp.count_flops(model)


@pytest.mark.parametrize("mask", [[0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]])
def test_a_split_part_with_every_channel_removed_is_counted_as_strip_keeps(mask):
    """ops.split of a gated conv, both parts read: a part left without
    channels is a constant that strip drops while the other part lives on;
    the hard count (and the budget's incremental count) agree with strip."""
    from keras_relaxprune.cost.count import cost_fractions, sized_graph
    from keras_relaxprune.cost.incremental import IncrementalCost

    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    a, b = keras.ops.split(x, 2, axis=-1)
    heads = [layers.GlobalAveragePooling2D()(a), layers.GlobalAveragePooling2D()(b)]
    outputs = layers.Dense(2, name="head")(layers.Concatenate()(heads))
    model = keras.Model(inputs, outputs)
    gated = krp.add_gates(model)
    gated.get_layer("conv_gate").keep_mask.assign(np.array(mask, "float32"))
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).random((2, 8, 8, 3), "float32")
    np.testing.assert_allclose(small(x), gated(x), rtol=1e-4, atol=1e-5)
    assert krp.count_flops(small) == krp.count_flops(gated)
    assert krp.count_params(small) == krp.count_params(gated)
    graph = sized_graph(gated)
    keep = graph.keep_vectors()
    for metric in ("flops", "params"):
        incremental = IncrementalCost.build(graph, metric, keep).fraction
        assert incremental == pytest.approx(cost_fractions(graph, keep)[metric])


def test_a_conv_read_only_through_a_slice_of_removed_channels_costs_nothing():
    """conv -> x[..., 1:3] -> head, with channels 1 and 2 removed: the
    slice is a constant, so strip drops the conv although the group keeps
    channels 0 and 3; the hard count drops it too."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    side = layers.Conv2D(3, 3, padding="same", name="side")(inputs)
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (x[..., 1:3], side)]
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Concatenate()(pooled)))
    gated = krp.add_gates(model)
    gated.get_layer("conv_gate").keep_mask.assign(np.array([1, 0, 0, 1], "float32"))
    small = _strips_exactly(gated)
    assert "conv" not in [layer.name for layer in small.layers]


def test_a_group_whose_producer_collapsed_is_a_constant_for_its_readers():
    """A split part with every channel removed -> relu -> 1x1 conv: the conv
    reads only constants and collapses to its bias, so its group's kept
    channel is a constant the head folds into its bias; the hard count
    takes the head's input as strip does."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    a, b = keras.ops.split(x, 2, axis=-1)
    c = layers.Conv2D(2, 1, name="collapsing")(layers.ReLU()(b))
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (a, c)]
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Concatenate()(pooled)))
    gated = krp.add_gates(model)
    gated.get_layer("conv_gate").keep_mask.assign(np.array([1, 1, 0, 0], "float32"))
    gated.get_layer("collapsing").bias.assign(np.array([0.5, -0.25], "float32"))
    small = _strips_exactly(gated)
    assert "collapsing" not in [layer.name for layer in small.layers]


@pytest.mark.parametrize("reader", ["transposed", "padded"])
def test_a_conv_reading_only_split_parts_before_padding_is_protected_at_add_gates(reader):
    """conv -> split -> 1x1 conv on one part -> padded or transposed conv:
    with every channel of the part removed (its group keeps the other
    part's) the 1x1 conv emits its bias, a constant the padded reader
    cannot take exactly. The group is protected when the model is gated,
    with a warning naming the 1x1 conv; the model strips exactly."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    a, b = keras.ops.split(x, 2, axis=-1)
    y = layers.Conv2D(3, 1, name="part_reader")(b)
    y = (
        layers.Conv2DTranspose(3, 2, strides=2, name="blocking")(y)
        if reader == "transposed"
        else layers.Conv2D(3, 3, padding="same", name="blocking")(y)
    )
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (a, y)]
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Concatenate()(pooled)))
    assert "'part_reader' (Conv2D) reads only parts of channel groups" in _reasons(model)
    assert "'blocking'" in _reasons(model)
    with pytest.warns(UserWarning, match="part_reader"):
        gated = krp.add_gates(model)
    assert "conv_gate" not in [layer.name for layer in gated.layers]
    random_masks(gated, 0)
    _strips_exactly(gated)


def test_a_constant_concatenated_along_space_is_protected_at_add_gates():
    """conv -> Rescaling(offset) concatenated along the height with the
    plain conv output: a removed channel is the offset in one half and 0 in
    the other, no constant a reader could drop. Protected up front."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    shifted = layers.Rescaling(0.5, offset=0.25, name="maker")(x)
    y = layers.Concatenate(axis=1, name="along_height")([shifted, x])
    side = layers.Conv2D(3, 3, padding="same", name="side")(inputs)
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (y, side)]
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Concatenate()(pooled)))
    reasons = _reasons(model)
    assert "'maker'" in reasons and "'along_height'" in reasons
    with pytest.warns(UserWarning, match="maker"):
        gated = krp.add_gates(model)
    random_masks(gated, 0)
    _strips_exactly(gated)


def test_a_depth_multiplier_conv_reached_by_a_collapsed_branch_is_refused():
    """stem (wholly off) -> 1x1 conv (collapses to its bias) ->
    DepthwiseConv2D(depth_multiplier=2, padding="same"): the bias meets its
    zero padding, and no gate follows a multiplied map to zero it again.
    Only a whole group off reaches it: strip_pruning refuses, naming it."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    y = layers.Conv2D(2, 1, bias_initializer="ones", name="collapsing")(x)  # a non-zero bias
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="multiplier")(y)
    side = layers.Conv2D(3, 3, padding="same", name="side")(inputs)
    pooled = [layers.GlobalAveragePooling2D()(t) for t in (y, side)]
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Concatenate()(pooled)))
    gated = krp.add_gates(model)
    gated.get_layer("stem_gate").keep_mask.assign(np.zeros(4, "float32"))
    with pytest.raises(krp.StripError, match="'multiplier' .*depth_multiplier=2"):
        krp.strip_pruning(gated)


def test_a_broadcast_add_whose_one_channel_input_collapsed_adds_its_constant_everywhere():
    """Add of a wide tensor and a one-channel conv whose input group is
    wholly off: the one-channel conv collapses to its bias, which strip adds
    to every channel of the wide input (a `Rescaling` offset)."""
    inputs = keras.Input((8, 8, 3))
    wide = layers.Conv2D(4, 3, padding="same", name="wide")(inputs)
    feeding = layers.Conv2D(3, 3, padding="same", name="feeding")(inputs)
    single = layers.Conv2D(1, 1, name="single")(feeding)
    model = keras.Model(inputs, _head(layers.Add()([wide, single])))
    gated = krp.add_gates(model)
    gated.get_layer("feeding_gate").keep_mask.assign(np.zeros(3, "float32"))
    gated.get_layer("single").bias.assign(np.array([0.7], "float32"))
    small = _strips_exactly(gated)
    assert "single" not in [layer.name for layer in small.layers]


def test_a_conv_without_bias_after_a_sigmoid_counts_the_bias_strip_adds():
    """Removed channels reach a bias-less 1x1 conv as sigmoid(0) = 0.5: strip
    folds them into a bias the conv did not have, and the hard count of
    the gated model counts that bias."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.Activation("sigmoid")(x)
    x = layers.Conv2D(2, 1, use_bias=False, name="no_bias")(x)
    gated = krp.add_gates(keras.Model(inputs, _head(x)))
    gated.get_layer("conv_gate").keep_mask.assign(np.array([1, 0, 0, 1], "float32"))
    small = _strips_exactly(gated)
    assert small.get_layer("no_bias").use_bias


@pytest.mark.parametrize("product", ["layer", "op"])
def test_squeeze_excite_product_read_by_a_conv_is_pruned_exactly(product):
    """x * sigmoid(conv(...)) -> 1x1 projection (EfficientNet's blocks):
    the gate after the sigmoid conv cannot fold into it, but the Multiply
    passes it on to the projection's kernel rows; nothing is protected."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="features")(inputs)
    x = layers.Activation("swish")(layers.BatchNormalization()(x))
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(2, 1, activation="swish", name="squeeze")(s)
    s = layers.Conv2D(8, 1, activation="sigmoid", name="excite")(s)
    y = layers.Multiply()([x, s]) if product == "layer" else x * s
    y = layers.Conv2D(4, 1, use_bias=False, name="project")(y)
    model = keras.Model(inputs, _head(layers.BatchNormalization()(y)))
    assert "excite" not in _reasons(model) and "features" not in _reasons(model)
    for seed in range(3):
        gated, small = _exact(model, seed=seed)
    assert small.get_layer("excite").filters < 8
