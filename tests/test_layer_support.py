"""One record per layer type: registering a user's own layers."""

import keras
import numpy as np
import pytest
from helpers import random_masks
from scratch_conv import ScratchConv2D

import keras_relaxprune as krp
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.layer_support import LiveChannels, find_support, pass_through

pytestmark = pytest.mark.backend_agnostic


class ScaledConv2D(ScratchConv2D):
    """A convolution written from scratch (not a Conv2D subclass) whose
    output is multiplied by a fixed factor: same weights and config keys as
    Conv2D, so it can borrow Conv2D's record."""

    def __init__(self, filters, kernel_size, padding="same", use_bias=True, factor=2.0, **kwargs):
        super().__init__(filters, kernel_size, padding=padding, use_bias=use_bias, **kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * super().call(x)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class ChannelScale(keras.layers.Layer):
    """A learned per-channel scale: its own record, written in full."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(input_shape[-1],), initializer="random_normal", name="scale"
        )

    def call(self, x):
        return x * self.scale


def _remove_channel_scale(stripper, node, ins, args, kwargs):
    (x,) = ins
    scale = keras.ops.convert_to_numpy(node.operation.scale)
    const = x.const * scale
    if x.is_constant:
        return [LiveChannels.constant(const)]
    _, value = stripper.build(node, x.value, [scale[x.live]])
    return [LiveChannels(value, x.live, const)]


def _channel_scale_cost(shapes, layer, cin, cout):
    return cout, 0, shapes.out_positions * cout


class SubclassedConv(keras.layers.Conv2D):
    """A Conv2D subclass whose call differs (weight standardisation)."""

    def call(self, x):
        kernel = self.kernel - keras.ops.mean(self.kernel, axis=(0, 1, 2), keepdims=True)
        return keras.ops.conv(x, kernel, padding=self.padding) + self.bias


def _net(conv_layer):
    inputs = keras.Input((12, 12, 3))
    x = conv_layer(8, 3, name="custom")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = ChannelScale(name="channel_scale")(x)
    x = keras.layers.Conv2D(6, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.fixture(autouse=True)
def _registered():
    krp.register_layer(ScaledConv2D, like=keras.layers.Conv2D)
    krp.register_layer(
        ChannelScale, channels=pass_through, cost=_channel_scale_cost, remove=_remove_channel_scale
    )


def test_custom_layers_prune_strip_exactly_and_count():
    """A layer borrowing Conv2D's record and one with its own record are
    gated, lose channels, strip to the same function and count the same."""
    model = _net(ScaledConv2D)
    gated = krp.add_gates(model)
    names = {g.name for g in gated.layers if isinstance(g, krp.ChannelGate)}
    assert "custom_gate" in names
    random_masks(gated, seed=0)
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(
        small.predict(x, verbose=0), gated.predict(x, verbose=0), atol=1e-5, rtol=1e-5
    )
    kept = int(gated.get_layer("custom_gate").keep_mask.numpy().sum())
    assert small.get_layer("custom").kernel.shape[-1] == kept < 8
    assert small.get_layer("channel_scale").scale.shape[0] == kept
    assert krp.count_flops(small) == krp.count_flops(gated) < krp.count_flops(model)
    assert krp.count_params(small) == small.count_params()


def test_subclass_overriding_call_is_a_barrier_until_registered():
    """Inheriting Conv2D's slicing would change a standardised conv: it is a
    barrier (warned) until registered, then prunable."""
    model = _net(SubclassedConv)
    assert find_support(model.get_layer("custom")) is None
    (barrier,) = [b for b in analyze(model).barriers if b.layer == "custom"]
    assert "overrides call" in barrier.reason and "register_layer" in barrier.reason
    assert "custom_gate" not in {g.name for g in krp.add_gates(model).layers}
    krp.register_layer(SubclassedConv, like=keras.layers.Conv2D)
    try:
        assert find_support(model.get_layer("custom")) is not None
        assert "custom_gate" in {g.name for g in krp.add_gates(model).layers}
    finally:
        from keras_relaxprune.layer_support import record

        record._RECORDS.pop(SubclassedConv)


def test_register_layer_refuses_bad_arguments():
    """Misuse is a PruningError naming what to pass."""
    with pytest.raises(krp.PruningError, match="layer classes"):
        krp.register_layer("Conv2D", like=keras.layers.Conv2D)
    with pytest.raises(krp.PruningError, match="not a supported layer class"):
        krp.register_layer(ChannelScale, like=ChannelScale.__mro__[1])
    with pytest.raises(krp.PruningError, match="channels="):
        krp.register_layer(ChannelScale)


class RecalibratedNorm(keras.layers.BatchNormalization):
    """A BatchNormalization subclass whose call differs (a barrier)."""

    def call(self, x, training=None):
        return super().call(x, training=training) * 1.0


def test_per_layer_facts_are_read_from_the_records():
    """Code outside `layer_support` asks the records, never a class tuple: a
    layer registered like Conv2D (no subclass) answers as Conv2D; a subclass
    that overrides call answers as a barrier, except for the moving
    statistics recalibration reads whatever `call` does."""
    from keras_relaxprune import layer_support as support

    layers = keras.layers
    assert support.has_kernel(ScaledConv2D(4, 3)) and support.has_kernel(layers.Dense(2))
    assert support.kernel_axes(layers.Conv2DTranspose(2, 3)) == (-1, -2)
    assert not support.has_kernel(layers.SeparableConv2D(2, 3))  # no `kernel`
    assert not support.has_kernel(SubclassedConv(2, 3))
    assert support.collapses_to_bias(layers.SeparableConv2D(2, 3))
    assert support.collapses_to_bias(layers.DepthwiseConv2D(3))
    assert not support.collapses_to_bias(layers.BatchNormalization())
    assert support.changes_zero(layers.Activation("sigmoid"))
    assert support.changes_zero(layers.Resizing(4, 4))
    assert not support.changes_zero(layers.ReLU()) and not support.changes_zero(layers.Add())
    assert support.changes_zero(layers.ReLU(threshold=0.5, negative_slope=0.1))
    assert support.is_multiply(layers.Multiply()) and not support.is_multiply(layers.Add())
    assert support.takes_producer_gate(layers.BatchNormalization())
    assert support.is_batch_normalization(layers.BatchNormalization())
    assert not support.takes_producer_gate(RecalibratedNorm())
    assert not support.is_batch_normalization(RecalibratedNorm())
    assert support.has_moving_statistics(RecalibratedNorm())
    assert not support.has_moving_statistics(layers.LayerNormalization())


def test_raw_products_are_multiplies_and_other_raw_merges_are_not():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, [inputs * inputs, inputs + inputs, inputs - inputs])
    from keras_relaxprune import layer_support as support
    from keras_relaxprune.graph.flat_graph import flatten

    answers = {
        node.class_name: support.is_multiply(node.operation) for node in flatten(model).nodes
    }
    assert answers == {"Multiply": True, "Add": False, "Subtract": False}


# --- Flatten and TimeDistributed records ---------------------------


def test_a_flatten_map_is_its_input_map_once_per_position():
    """Flatten of a 3x2 map of C channels: six tied copies of the conv's group."""
    from keras_relaxprune.graph.channel_maps import map_length

    inputs = keras.Input((3, 2, 4))
    conv = keras.layers.Conv2D(5, 1, name="conv")(inputs)
    flat = keras.layers.Flatten()(conv)
    model = keras.Model(inputs, keras.layers.Dense(2)(flat))
    graph = analyze(model)
    conv_map = graph.out_maps(0)[0]
    flat_node = next(i for i, node in enumerate(graph.flat.nodes) if node.class_name == "Flatten")
    flat_map = graph.out_maps(flat_node)[0]
    assert map_length(flat_map) == 30 and flat_map == tuple(conv_map) * 6
    assert graph.groups.whole_group(flat_map) == graph.groups.find(conv_map[0].group)
    assert not graph.barriers


def test_the_flatten_removal_rule_keeps_feature_p_times_c_plus_c():
    from keras_relaxprune.layer_support.flatten import tiled_channels

    x = LiveChannels(None, np.array([0, 2]), np.array([np.nan, 0.5, np.nan]))
    live, const = tiled_channels(x, 2)
    assert live.tolist() == [0, 2, 3, 5]
    np.testing.assert_array_equal(const, [np.nan, 0.5, np.nan] * 2)


def test_time_distributed_follows_only_the_layers_it_knows():
    from keras_relaxprune.layer_support.time_distributed import wrapped_support

    layers = keras.layers
    assert wrapped_support(layers.TimeDistributed(layers.Conv2D(4, 3))) is find_support(
        layers.Conv2D(4, 3)
    )
    assert wrapped_support(layers.TimeDistributed(layers.Flatten())) is find_support(
        layers.Flatten()
    )
    assert wrapped_support(layers.TimeDistributed(layers.LayerNormalization())) is None
    assert wrapped_support(layers.TimeDistributed(layers.BatchNormalization())) is None


def _named_relu(x):
    return keras.ops.relu(x) + 0.1


_named_relu.__name__ = "relu"


@pytest.mark.parametrize(
    "activation, known",
    [
        (None, "linear"),
        ("relu", "relu"),
        ("swish", "silu"),
        (keras.layers.LeakyReLU(0.1), "leaky_relu"),
        (keras.layers.ReLU(), "relu"),
        (keras.layers.ReLU(max_value=6.0), None),
        (keras.layers.Activation("relu"), "relu"),
        (keras.layers.ELU(0.5), "elementwise"),
        (_named_relu, None),
        ("softmax", None),
    ],
)
def test_activations_are_known_by_object_not_name(activation, known):
    from keras_relaxprune.layer_support.activations import known_activation

    layer = keras.layers.Dense(2, activation=activation)
    assert known_activation(layer.activation) == known
