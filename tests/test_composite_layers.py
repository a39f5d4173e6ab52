"""Composite layers (subclassed layers made of Keras layers), end to end.

keras-hub's MobileNetV3 and EfficientNetV2 blocks ship registered; a user's
own block is registered with `krp.register_composite`. Each model is gated
(with every gate open it computes what the original does), every gate is
set to keep one channel (the least FLOPs pruning can leave, at most 0.30 of
the dense model's), then given random masks and stripped: the stripped
model computes what the gated one does, with equal counts, holds only plain
Keras layers, and exports to a `.keras` file that loads.
"""

import re
import warnings

import keras
import numpy as np
import pytest
from helpers import gates, open_all_gates, random_masks, randomize_batch_norms
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph import composite
from keras_relaxprune_apps import hub_efficientnet, hub_mobilenet_v3

pytestmark = pytest.mark.backend_agnostic

SHAPE = (32, 32, 3)


def _least_flops_fraction(dense, gated, input_shape=None):
    """count_flops of `gated` with every gate keeping one channel, over the
    dense model's (the masks are left so)."""
    for gate in gates(gated):
        mask = np.zeros(gate.channels, "float32")
        mask[0] = 1.0
        gate.keep_mask.assign(mask)
    return krp.count_flops(gated) / krp.count_flops(dense, input_shape=input_shape)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _assert_close(actual, expected, tolerance=1e-4):
    scale = max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def _prune_strip_export(model, gated, shape, tmp_path, seed=1):
    """Open gates equal `model`; random masks strip exactly, counts equal,
    plain layers only, and the `.keras` export loads. Returns the least-FLOPs
    fraction."""
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    open_all_gates(gated)
    _assert_close(_numpy(gated(x)), _numpy(model(x)))
    least = _least_flops_fraction(model, gated, input_shape=shape)

    random_masks(gated, seed)
    small = krp.strip_pruning(gated)
    expected = _numpy(gated(x))
    _assert_close(_numpy(small(x)), expected)
    assert krp.count_flops(small, input_shape=shape) == krp.count_flops(gated)
    assert krp.count_params(small) == krp.count_params(gated) < model.count_params()
    assert {type(layer).__module__.split(".")[0] for layer in small.layers} == {"keras"}

    path = krp.export(small, tmp_path, formats=("keras",))["keras"]
    _assert_close(_numpy(keras.saving.load_model(path)(x)), expected, 1e-5)
    return least


# ---------------------------------------------------------------- keras-hub


def _efficientnet_v2():
    # EfficientNetV2's block types (a fused block, then two MBConv blocks
    # with squeeze-excite and a residual) in two small stages.
    return hub_efficientnet(("fused", "unfused"))


# (builder, highest least-FLOPs fraction accepted: measured 2026-12 with
# keras-hub 0.32, 0.030 and 0.012)
KERAS_HUB = {
    "mobilenet_v3": (hub_mobilenet_v3, 0.05),
    "efficientnet_v2": (_efficientnet_v2, 0.02),
}


@pytest.mark.parametrize("name", sorted(KERAS_HUB))
def test_keras_hub_backbone_blocks_prune_and_strip_exactly(name, tmp_path):
    # JAX compiles each model anew (about 60 s each on 2 busy cores, 12 s on
    # TF); the expansion and the graph rules do not depend on the backend,
    # and a user's own block below takes the same path on JAX.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the same graph rules as on TensorFlow; the user's own block covers JAX")
    pytest.importorskip("keras_hub", reason="keras-hub is not installed: pip install -e '.[hub]'")
    build, highest = KERAS_HUB[name]
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(build(), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gated = krp.add_gates(model, input_shape=SHAPE)
    least = _prune_strip_export(model, gated, SHAPE, tmp_path)
    assert least <= highest <= 0.30


# ------------------------------------------------------- a user's own block


class ConvBlock(layers.Layer):
    """A user's residual block: 1x1 expand, BN, ReLU, 3x3, BN, add."""

    def __init__(self, filters, hidden, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.hidden = filters, hidden
        self.expand = layers.Conv2D(hidden, 1, use_bias=False)
        self.expand_norm = layers.BatchNormalization()
        self.conv = layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.norm = layers.BatchNormalization()

    def call(self, x):
        y = keras.ops.relu(self.expand_norm(self.expand(x)))
        return x + self.norm(self.conv(y))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "hidden": self.hidden}


class WrittenOutBlock(ConvBlock):
    """The same block, registered with an expander written out."""


def _written_out(block, x):
    y = keras.ops.relu(block.expand_norm(block.expand(x)))
    return layers.Add()([x, block.norm(block.conv(y))])


def _user_model(block_class):
    inputs = keras.Input((16, 16, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, name="stem")(inputs)))
    x = block_class(8, 24, name="block_a")(x)
    x = block_class(8, 16, name="block_b")(x)
    outputs = layers.Dense(3)(layers.GlobalAveragePooling2D()(x))
    return randomize_batch_norms(keras.Model(inputs, outputs), seed=0)


@pytest.fixture
def register():
    """`krp.register_composite`, undone after the test."""
    registered = []

    def register(layer_class, expand=None):
        krp.register_composite(layer_class, expand)
        registered.append(layer_class)

    yield register
    for layer_class in registered:
        composite._EXPANDERS.pop(layer_class, None)


@pytest.mark.parametrize(
    "block_class, expand",
    [(ConvBlock, None), (WrittenOutBlock, _written_out)],
    ids=["own_call", "written_out"],
)
def test_user_composite_layer_prunes_and_strips_exactly(block_class, expand, register, tmp_path):
    keras.utils.set_random_seed(0)
    model = _user_model(block_class)
    barrier = re.escape(f"'block_a' ({block_class.__name__})")
    with pytest.warns(UserWarning, match=barrier), pytest.raises(krp.NothingToPruneError):
        krp.add_gates(model)
    register(block_class, expand)
    gated = krp.add_gates(model)
    assert _prune_strip_export(model, gated, (16, 16, 3), tmp_path) <= 0.30


class MisregisteredBlock(ConvBlock):
    """Registered with an expander that leaves out the residual."""


def test_an_expander_that_computes_something_else_is_refused(register):
    model = _user_model(MisregisteredBlock)
    register(
        MisregisteredBlock,
        lambda block, x: block.norm(block.conv(keras.ops.relu(block.expand_norm(block.expand(x))))),
    )
    with pytest.raises(
        krp.UnsupportedLayerError,
        match=re.escape("'block_a' (MisregisteredBlock) cannot be inlined: its expansion "),
    ) as caught:
        krp.add_gates(model)
    assert "krp.register_composite(MisregisteredBlock, expand)" in str(caught.value)
