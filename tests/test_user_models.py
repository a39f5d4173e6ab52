"""Models written the way users write them: every copy computes what the original did.

Each small model below stands for a class of user code that the layer copies
made by `add_gates` and `strip_pruning` once got wrong (a custom activation
taken for the built-in of its name, adapted preprocessing state lost) or
crashed on (callables that Keras cannot serialise). Each must either prune
exactly or be refused with the library's own error naming the layer.
"""

import functools
import warnings

import keras
import model_zoo
import numpy as np
import pytest
from helpers import Apply, open_all_gates, random_masks, randomize_batch_norms
from keras import layers, ops

import keras_relaxprune as krp

pytestmark = pytest.mark.backend_agnostic

SHAPE = (8, 8, 3)


def _conv_net(activation=None, middle=None, name=None, **conv_options):
    """conv -> (middle) -> conv -> pooling -> Dense, on an 8x8x3 input."""
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(8, 3, padding="same", activation=activation, name="first", **conv_options)(
        inputs
    )
    if middle is not None:
        x = middle(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="second")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x), name=name)


def _data(model, seed=0):
    rng = np.random.default_rng(seed)
    tensor = model.inputs[0]
    shape = (4, *tensor.shape[1:])
    if "int" in str(tensor.dtype):
        return rng.integers(0, 6, shape).astype(str(tensor.dtype))
    return rng.uniform(-1, 2, shape).astype("float32")


def _outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _assert_open_gates_equal(model, gated, x):
    open_all_gates(gated)
    np.testing.assert_allclose(_outputs(gated, x), _outputs(model, x), rtol=1e-6, atol=1e-6)


def _assert_exact(model):
    """Gated with open gates == original; random masks strip exactly; counts agree."""
    x = _data(model)
    gated = krp.add_gates(model)
    _assert_open_gates_equal(model, gated, x)
    random_masks(gated, 0)
    small = krp.strip_pruning(gated)
    expected = _outputs(gated, x)
    np.testing.assert_allclose(
        _outputs(small, x), expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max()))
    )
    assert krp.count_params(small) == small.count_params()
    return gated, small


# --- callables Keras cannot (or should not) serialise -------------------------------


def relu(x):
    """Not Keras' relu: named like it, computing something else."""
    return ops.relu(x) + 0.1


def small_l2(weights):
    return 1e-4 * ops.sum(weights * weights)


def clip_to_one(weights):
    return ops.clip(weights, -1.0, 1.0)


def test_lambda_activation_is_kept():
    _assert_exact(_conv_net(activation=lambda t: ops.relu(t) * 2.0))


def test_partial_activation_is_kept():
    relu6 = functools.partial(keras.activations.relu, max_value=6.0)
    gated, _ = _assert_exact(_conv_net(activation=relu6))
    assert gated.get_layer("first").activation is relu6


def test_function_named_like_a_builtin_is_not_swapped_for_it():
    gated, small = _assert_exact(_conv_net(activation=relu))
    assert gated.get_layer("first").activation is relu
    assert small.get_layer("first").activation is relu


def test_function_regularizer_and_constraint_are_kept():
    model = _conv_net(
        kernel_regularizer=small_l2,
        kernel_constraint=clip_to_one,
        bias_regularizer=lambda b: 1e-3 * ops.sum(ops.abs(b)),
    )
    gated, small = _assert_exact(model)
    for copy in (gated.get_layer("first"), small.get_layer("first")):
        assert copy.kernel_regularizer is small_l2
        assert copy.kernel_constraint is clip_to_one
    assert len(gated.losses) == len(model.losses) == 2


# --- state that set_weights does not restore -----------------------------------------


def test_adapted_normalization_keeps_its_statistics():
    norm = layers.Normalization(name="norm")
    norm.adapt(np.random.default_rng(1).normal(3, 2, (16, *SHAPE)).astype("float32"))
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(norm(inputs))
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    _assert_exact(keras.Model(inputs, layers.Dense(3)(x)))


def test_adapted_integer_lookup_keeps_its_vocabulary():
    """A categorical map, indexed by an adapted lookup, embedded, then convolved."""
    lookup = layers.IntegerLookup(name="lookup")
    lookup.adapt(np.array([5, 3, 1, 3, 0, 5, 2], "int64"))
    inputs = keras.Input((8, 8), dtype="int64")
    x = layers.Embedding(lookup.vocabulary_size(), 4)(lookup(inputs))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    _assert_exact(keras.Model(inputs, layers.Dense(3)(x)))


# --- custom layers --------------------------------------------------------------------


class ScaledApply(Apply):
    """Like `Apply`, with a learned per-channel scale (weights, no `get_config`)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return self.function(inputs) * self.scale


class ScaledConv(layers.Conv2D):
    """A subclass with a constructor argument its inherited config omits."""

    def __init__(self, *args, factor=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.factor = factor

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel) * self.factor


def test_weightless_custom_layer_with_a_callable_is_reused_as_is():
    apply = Apply(lambda t: ops.tanh(t) * 1.5, name="custom")
    gated, _ = _assert_exact(_conv_net(middle=apply))
    assert gated.get_layer("custom") is apply


def test_custom_layer_with_weights_and_no_config_is_refused_by_name():
    model = _conv_net(middle=ScaledApply(ops.tanh, name="custom"))
    with pytest.raises(krp.UnsupportedModelError, match="'custom'.*get_config"):
        krp.add_gates(model)


def test_subclass_whose_config_loses_an_argument_is_refused_by_name():
    inputs = keras.Input(SHAPE)
    x = ScaledConv(8, 3, padding="same", factor=3.0, name="scaled")(inputs)
    x = layers.Conv2D(8, 3, padding="same")(layers.ReLU()(x))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(krp.UnsupportedModelError, match="'scaled'.*factor"):
        krp.add_gates(model)


# --- every model of the zoo -----------------------------------------------------------


def _normalized_net(norm):
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(norm(inputs))
    return keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))


def _user_models():
    norm = layers.Normalization()
    norm.adapt(np.random.default_rng(2).normal(1, 3, (8, *SHAPE)).astype("float32"))
    return {
        "lambda_activation": lambda: _conv_net(activation=lambda t: ops.relu(t) - 0.5),
        "partial_activation": lambda: _conv_net(
            activation=functools.partial(keras.activations.relu, max_value=0.5)
        ),
        "named_like_relu": lambda: _conv_net(activation=relu),
        "normalization": lambda: _normalized_net(norm),
        "lambda_barrier": model_zoo.lambda_barrier_net,
        "two_conv": model_zoo.two_conv_net,
    }


@pytest.mark.parametrize("name", [*model_zoo.ALL, *_user_models()])
def test_gated_model_with_open_gates_equals_the_original(name):
    build = model_zoo.ALL.get(name) or _user_models()[name]
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(build(), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gated = krp.add_gates(model)
    _assert_open_gates_equal(model, gated, _data(model))


# --- Flatten -> Dense and TimeDistributed -------------------------


def _mnist_convnet():
    """keras.io's MNIST convnet at 28x28x1 (64 filters before the Flatten)."""
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu", name="before_flatten")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.5)(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def _conv_bn_flatten_classifier():
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="before_flatten")(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Dense(16, activation="relu")(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(3)(x))


def _video_model():
    """TimeDistributed convolutions over 4 frames, then a per-frame Dense."""
    inputs = keras.Input((4, *SHAPE))
    x = layers.TimeDistributed(layers.Conv2D(8, 3, padding="same", activation="relu"))(inputs)
    x = layers.TimeDistributed(layers.MaxPooling2D(2))(x)
    x = layers.TimeDistributed(layers.Conv2D(8, 3, activation="relu"), name="before_flatten")(x)
    x = layers.TimeDistributed(layers.Flatten())(x)
    x = layers.TimeDistributed(layers.Dense(6, activation="relu"))(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(3)(x))


def _params_of(model, name):
    return model.get_layer(name).count_params()


@pytest.mark.parametrize(
    "build",
    [_mnist_convnet, _conv_bn_flatten_classifier, _video_model],
    ids=["mnist_convnet", "conv_bn_flatten_dense", "time_distributed"],
)
def test_the_conv_before_a_flatten_is_pruned_exactly(build):
    """The Flatten tiles its input's channels once per position, so the conv
    before it is gated and loses channels (and the Dense its rows)."""
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(build(), 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gated, small = _assert_exact(model)
    assert not [w for w in caught if "keras_relaxprune" in str(w.message)]  # no barrier
    assert krp.count_flops(small) == krp.count_flops(gated)
    assert small.count_params() == krp.count_params(gated) < model.count_params()
    assert _params_of(small, "before_flatten") < _params_of(model, "before_flatten")


def test_every_flatten_feature_of_a_removed_channel_is_removed():
    """Feature p * C + c of the Flatten is channel c at position p: with
    channel c removed, the Dense keeps (C - 1) of every C rows."""
    keras.utils.set_random_seed(0)
    model = _conv_bn_flatten_classifier()
    gated = krp.add_gates(model)
    mask = np.ones(8, "float32")
    mask[[1, 6]] = 0.0
    for gate in gated.layers:
        if isinstance(gate, krp.ChannelGate) and gate.channels == 8:
            gate.keep_mask.assign(mask)
    small = krp.strip_pruning(gated)
    x = _data(model)
    np.testing.assert_allclose(_outputs(small, x), _outputs(gated, x), rtol=1e-5, atol=1e-5)
    dense = [layer for layer in small.layers if isinstance(layer, layers.Dense)][0]
    assert dense.kernel.shape == (8 * 8 * 6, 16)


def test_a_flatten_of_unknown_spatial_size_stays_a_barrier():
    from keras_relaxprune.graph.tracing import analyze

    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.Flatten(name="flat")(layers.GlobalMaxPooling2D(keepdims=True)(x))
    y = layers.Conv2D(4, 3, padding="same", name="other")(inputs)
    y = layers.Reshape((-1, 4))(y)
    y = layers.Flatten(name="flat_unknown")(y)
    model = keras.Model(inputs, [layers.Dense(3)(x), y])
    graph = analyze(model)
    assert [b.layer for b in graph.barriers] == ["flat_unknown"]


def test_time_distributed_over_an_unfollowed_layer_stays_a_barrier():
    inputs = keras.Input((4, *SHAPE))
    x = layers.TimeDistributed(layers.Conv2D(8, 3, padding="same"), name="conv")(inputs)
    x = layers.TimeDistributed(layers.LayerNormalization(), name="wrapped_norm")(x)
    x = layers.TimeDistributed(layers.Conv2D(4, 3, padding="same"), name="after")(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling3D()(x)))
    with pytest.warns(UserWarning, match="wrapped_norm.*LayerNormalization"):
        gated, small = _assert_exact(model)
    assert _params_of(small, "conv") == _params_of(model, "conv")
    assert _params_of(small, "after") < _params_of(model, "after")


# --- activations by object, f(0) != 0 before a padded
# --- conv, counts of normalisations over other axes, equivalent spellings ------------


def _random_gate_values(gated, seed):
    """Gate values away from 1 (a wrong fold shows) and random keep masks."""
    rng = np.random.default_rng(seed)
    for layer in gated.layers:
        if isinstance(layer, krp.ChannelGate):
            layer.logits.assign(rng.uniform(-1.0, 1.0, layer.logits.shape).astype("float32"))
    random_masks(gated, seed)


def _strips_exactly(model, seeds=(0, 1, 2)):
    """Open gates == original; random gate values and masks strip exactly;
    the counts agree with Keras, dense and stripped. Returns the stripped models."""
    x = _data(model)
    assert krp.count_params(model) == model.count_params()
    gated = krp.add_gates(model)
    _assert_open_gates_equal(model, gated, x)
    smalls = []
    for seed in seeds:
        _random_gate_values(gated, seed)
        small = krp.strip_pruning(gated)
        expected = _outputs(gated, x)
        np.testing.assert_allclose(
            _outputs(small, x),
            expected,
            rtol=1e-5,
            atol=1e-5 * max(1.0, float(np.abs(expected).max())),
        )
        assert krp.count_params(small) == small.count_params() == krp.count_params(gated)
        smalls.append(small)
    return smalls


def _first_pruned(smalls):
    return any(small.get_layer("first").filters < 8 for small in smalls)


def _valid_net(middle):
    """conv -> middle -> 3x3 'valid' conv (absorbs a constant) -> head."""
    inputs = keras.Input(SHAPE)
    x = middle(layers.Conv2D(8, 3, padding="same", name="first")(inputs))
    x = layers.Conv2D(8, 3, padding="valid", activation="relu", name="second")(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x)))


def test_gate_does_not_fold_through_a_function_named_relu():
    with pytest.warns(UserWarning, match="first"):
        smalls = _strips_exactly(_conv_net(activation=relu))
    assert not _first_pruned(smalls)  # not known to act per channel: kept whole


@pytest.mark.parametrize(
    "activation",
    ["relu", "leaky_relu", layers.LeakyReLU(0.1), layers.ReLU(negative_slope=0.2)],
    ids=["relu", "leaky_relu", "LeakyReLU", "ReLU_slope"],
)
def test_keras_activation_objects_fold_like_their_names(activation):
    assert _first_pruned(_strips_exactly(_conv_net(activation=activation)))


OFFSETS = {
    "add": lambda t: t + 1.0,
    "maximum": lambda t: ops.maximum(t, 0.5),
    "relu_threshold": lambda t: layers.ReLU(threshold=0.5, negative_slope=0.1)(t),
    "sigmoid_map": lambda t: layers.Multiply()([layers.Activation("sigmoid")(t), ops.sigmoid(t)]),
    "exp": ops.exp,
    "log_sigmoid": ops.log_sigmoid,
}


@pytest.mark.parametrize("name", sorted(OFFSETS))
def test_a_value_made_from_zero_before_a_padded_conv_is_protected_at_add_gates(name):
    with pytest.warns(UserWarning, match="'first'.*kept whole.*'second'"):
        smalls = _strips_exactly(_conv_net(middle=OFFSETS[name]))
    assert not _first_pruned(smalls)


@pytest.mark.parametrize("name", sorted(OFFSETS))
def test_a_value_made_from_zero_before_a_valid_conv_is_pruned(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = _valid_net(OFFSETS[name])
        assert _first_pruned(_strips_exactly(model))


def _normalized(norm, shape=(6, 10, 3)):
    inputs = keras.Input(shape)
    x = layers.Conv2D(8, 3, padding="same", name="first")(inputs)
    x = norm(x)
    x = layers.Conv2D(5, 3, padding="same", name="second")(x)
    return keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize(
    "norm",
    [
        lambda: layers.BatchNormalization(axis=1),
        lambda: layers.BatchNormalization(axis=2),
        lambda: layers.LayerNormalization(axis=(1, 2, 3)),
        lambda: layers.LayerNormalization(),
        lambda: layers.GroupNormalization(groups=2),
    ],
    ids=["bn_axis1", "bn_axis2", "ln_axes123", "ln", "gn"],
)
def test_normalisations_over_other_axes_count_like_keras(norm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a barrier's warning (BN over another axis)
        smalls = _strips_exactly(_normalized(norm()))
    assert not _first_pruned(smalls)  # the statistics mix channels: kept whole


SPELLINGS = {
    "divide": lambda t: t / 2.0,
    "power": lambda t: t**2,
    "abs": lambda t: abs(t),
    "ops_abs": ops.abs,
    "mean_keepdims": lambda t: t * ops.mean(t, axis=(1, 2), keepdims=True),
    "ops_reshape": lambda t: ops.reshape(t, (-1, 4, 16, 8)),
    "clip": lambda t: ops.clip(t, -1.0, 1.0),
    "where": lambda t: ops.where(t > 0, t, 0.0),
    "sqrt": lambda t: ops.sqrt(ops.abs(t)),
    "celu": ops.celu,
    "hard_tanh": ops.hard_tanh,
    "softsign": ops.softsign,
}


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_equivalent_spellings_are_pruned_exactly(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no barrier, no protection
        model = _conv_net(middle=SPELLINGS[name])
        assert _first_pruned(_strips_exactly(model))


# --- reused layers, names like generated ones, Lambda layers


def _inputs_for(model, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-1, 2, (4, *t.shape[1:])).astype("float32") for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def _all_outputs(model, x):
    return [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(model(x, training=False))]


def _exact_with_equal_counts(model):
    """Open gates == original; random masks strip exactly; params (ours and
    Keras') and FLOPs agree, gated and stripped. Returns (gated, small)."""
    x = _inputs_for(model)
    gated = krp.add_gates(model)
    open_all_gates(gated)
    for actual, expected in zip(_all_outputs(gated, x), _all_outputs(model, x)):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    random_masks(gated, 0)
    small = krp.strip_pruning(gated)
    for actual, expected in zip(_all_outputs(small, x), _all_outputs(gated, x)):
        np.testing.assert_allclose(
            actual, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max()))
        )
    assert krp.count_params(small) == small.count_params() == krp.count_params(gated)
    assert krp.count_flops(small) == krp.count_flops(gated)
    return gated, small


def _no_library_warning(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _exact_with_equal_counts(build())
    assert not [w for w in caught if "keras_relaxprune" in str(w.message)]
    return result


def _reused_weightless_net():
    """One Activation, Concatenate, Add and pair of Reshapes, each called twice."""
    inputs = keras.Input(SHAPE)
    act, cat, add = (
        layers.Activation("relu", name="act"),
        layers.Concatenate(name="cat"),
        layers.Add(name="add"),
    )
    flat, back = layers.Reshape((64, 16), name="flat"), layers.Reshape((8, 8, 16), name="back")
    a = act(layers.Conv2D(8, 3, padding="same", name="a")(inputs))
    b = act(layers.Conv2D(8, 3, padding="same", name="b")(inputs))
    x = add([cat([a, b]), cat([b, a])])
    z = act(layers.Conv2D(16, 3, padding="same", name="c")(x))
    x = add([back(flat(x)), back(flat(z))])
    x = layers.Conv2D(8, 3, padding="same", name="d")(x)
    return keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))


def test_weightless_layers_called_at_several_places_strip_exactly():
    keras.utils.set_random_seed(0)
    model = _reused_weightless_net()
    _, small = _no_library_warning(lambda: model)
    assert small.count_params() < model.count_params()
    for name in ("act", "cat", "add", "flat", "back"):
        assert type(small.get_layer(name)) is type(model.get_layer(name))


def _shared_tower_net():
    """A Conv2D + BatchNormalization tower applied to two inputs, then prunable convs."""
    left, right = keras.Input(SHAPE, name="left"), keras.Input(SHAPE, name="right")
    conv = layers.Conv2D(8, 3, padding="same", name="tower_conv")
    norm = layers.BatchNormalization(name="tower_norm")
    x = layers.Concatenate()([norm(conv(left)), norm(conv(right))])
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="after")(x)
    x = layers.Conv2D(8, 3, padding="same", name="last")(x)
    return keras.Model([left, right], layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))


def test_a_shared_tower_stays_one_tower_and_what_follows_is_pruned():
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(_shared_tower_net(), 0)
    _, small = _no_library_warning(lambda: model)
    kinds = [type(layer).__name__ for layer in small.layers]
    assert kinds.count("Conv2D") == 3 and kinds.count("BatchNormalization") == 1
    for name in ("tower_conv", "tower_norm"):
        assert _params_of(small, name) == _params_of(model, name)
    assert _params_of(small, "after") < _params_of(model, "after")


def test_a_layer_with_weights_called_twice_on_prunable_maps_protects_them_by_name():
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="first")(inputs)
    shared = layers.Conv2D(8, 3, padding="same", name="shared")
    x = layers.Add()([shared(x), shared(layers.MaxPooling2D(3, 1, "same")(x))])
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    keras.utils.set_random_seed(0)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, small = _exact_with_equal_counts(model)
    named = [w for w in caught if "'shared' (Conv2D): called 2 times" in str(w.message)]
    assert len(named) == 1
    assert _params_of(small, "first") == _params_of(model, "first")
    assert _params_of(small, "shared") == _params_of(model, "shared")


def _names_like_generated_ones():
    """User layers named like the budget layer, gates and a collapsed Add's offset."""
    inputs = keras.Input(SHAPE)
    stem = layers.Conv2D(8, 3, padding="same", activation="relu", name="pruning_budget")(inputs)
    x = layers.ReLU(name="pruning_budget_gate")(stem)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2d")(x)
    x = layers.ReLU(name="conv2d_gate")(x)
    x = layers.BatchNormalization(name="outer_bn")(
        layers.Conv2D(8, 3, padding="same", name="outer")(x)
    )
    x = layers.ReLU(name="add_collapsed")(layers.Add(name="add")([stem, x]))
    x = layers.Conv2D(8, 3, padding="same", name="last")(x)
    return keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))


def test_names_the_library_makes_never_collide_with_user_names():
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(_names_like_generated_ones(), 0)
    gated, small = _no_library_warning(lambda: model)
    user = {layer.name: type(layer) for layer in model.layers}
    for result in (gated, small):
        assert all(
            type(result.get_layer(name)) is kind
            for name, kind in user.items()
            if name != model.layers[0].name
        )
    budgets = [layer for layer in gated.layers if isinstance(layer, krp.PruningBudget)]
    assert len(budgets) == 1 and budgets[0].name not in user
    # The inner group wholly off: the residual branch collapses into an
    # offset, named apart from the user's "add_collapsed".
    for gate in gated.layers:
        if isinstance(gate, krp.ChannelGate) and gate.channels == 4:
            gate.keep_mask.assign(np.zeros(4, "float32"))
    small = krp.strip_pruning(gated)
    x = _data(model)
    np.testing.assert_allclose(_outputs(small, x), _outputs(gated, x), rtol=1e-5, atol=1e-5)
    assert type(small.get_layer("add_collapsed")) is layers.ReLU
    assert "Rescaling" in [type(layer).__name__ for layer in small.layers]


class ShapeUnknown(layers.Layer):
    """A custom layer without `compute_output_shape` (Keras traces `call`)."""

    def call(self, inputs):
        return ops.concatenate([inputs, ops.square(inputs)], axis=-1)


LAMBDAS = {
    "scale": lambda: layers.Lambda(lambda t: t * 2.0, name="user_fn"),
    "with_output_shape": lambda: layers.Lambda(
        lambda t: t[..., :4], output_shape=(8, 8, 4), name="user_fn"
    ),
    "shape_function": lambda: layers.Lambda(
        lambda t: ops.concatenate([t, t], axis=-1),
        output_shape=lambda shape: (*shape[:-1], 2 * shape[-1]),
        name="user_fn",
    ),
    "arguments": lambda: layers.Lambda(
        lambda t, k: ops.relu(t) * k, arguments={"k": 0.5}, name="user_fn"
    ),
    "no_compute_output_shape": lambda: ShapeUnknown(name="user_fn"),
}


@pytest.mark.parametrize("name", sorted(LAMBDAS))
def test_lambda_layers_are_barriers_named_in_a_warning(name):
    keras.utils.set_random_seed(0)
    model = _conv_net(middle=LAMBDAS[name]())
    with pytest.warns(UserWarning, match="'user_fn'"):
        gated, small = _exact_with_equal_counts(model)
    assert _params_of(small, "first") == _params_of(model, "first")
    assert _params_of(small, "second") < _params_of(model, "second")


def test_a_lambda_of_unknown_channel_count_at_an_output_is_a_barrier():
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(8, 3, padding="same", name="first")(inputs)
    side = layers.Lambda(lambda t: t * 1.0, output_shape=(8, 8, None), name="user_fn")(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="second")(x)
    head = layers.Dense(3)(layers.GlobalAveragePooling2D()(x))
    keras.utils.set_random_seed(0)
    model = keras.Model(inputs, [head, side])
    with pytest.warns(UserWarning, match="'user_fn'"):
        _, small = _exact_with_equal_counts(model)
    assert _params_of(small, "first") == _params_of(model, "first")


# --- subclasses that compute below `call` -------------------------------------------


class _ShiftedConvolution(keras.layers.Conv2D):
    """Keeps Conv2D's `call` but adds a constant inside `convolution_op`."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel) + 1.0


class _RenamedConvolution(keras.layers.Conv2D):
    """Overrides only `__init__` (a default): computes what Conv2D computes."""

    def __init__(self, filters, **kwargs):
        kwargs.setdefault("padding", "same")
        super().__init__(filters, 3, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("kernel_size")
        return config


def _subclass_net(conv):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = conv(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.mark.backend_agnostic
def test_a_subclass_computing_below_call_is_a_barrier_naming_the_method():
    model = _subclass_net(_ShiftedConvolution(8, 3, padding="same", name="shifted"))
    with pytest.warns(UserWarning, match=r"shifted.*convolution_op\(\)"):
        gated = krp.add_gates(model)
    random_masks(gated, 0)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    small = krp.strip_pruning(gated)
    np.testing.assert_allclose(
        np.asarray(small(x, training=False)),
        np.asarray(gated(x, training=False)),
        rtol=1e-4,
        atol=1e-4,
    )
    shifted = small.get_layer("shifted")
    assert shifted.filters == 8  # protected, not sliced


@pytest.mark.backend_agnostic
def test_a_subclass_overriding_only_init_and_config_is_pruned_as_its_parent():
    model = _subclass_net(_RenamedConvolution(8, name="renamed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        gated = krp.add_gates(model)
    random_masks(gated, 0)
    small = krp.strip_pruning(gated)
    assert small.get_layer("renamed").filters < 8
