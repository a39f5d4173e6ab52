"""Depthwise convolutions with `depth_multiplier=M` are pruned in tied blocks.

Output channel `c * M + m` of a `DepthwiseConv2D(depth_multiplier=M)` is
filter `m` of input channel `c`: removing input channel `c` removes its M
outputs. No gate serves the multiplied map whole, so a removed channel
leaves the layer (and the BatchNormalization after it) as a constant that
the pointwise convolution or Dense reading it takes into its bias. Each
model here is gated, given random masks, stripped and compared with the
gated model (outputs to float tolerance, equal counts); the least FLOPs
fraction (every gate keeping one channel) shows the layer is no barrier.
"""

import keras
import numpy as np
import pytest
from helpers import gates, random_masks, randomize_batch_norms
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic

SHAPE = (16, 16, 3)


def _bn_relu(x):
    return layers.ReLU()(layers.BatchNormalization()(x))


def _multiplier_blocks(multiplier=2, blocks=3, width=8, separable=False):
    """Stem, then `blocks` of depthwise (`depth_multiplier`) -> BN -> ReLU ->
    1x1 conv -> BN -> ReLU (or SeparableConv2D), pooled into a Dense head."""
    inputs = keras.Input(SHAPE)
    x = _bn_relu(layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs))
    for block in range(blocks):
        if separable:
            x = layers.SeparableConv2D(
                width, 3, padding="same", depth_multiplier=multiplier, name=f"separable{block}"
            )(x)
            x = _bn_relu(x)
            continue
        x = layers.DepthwiseConv2D(
            3, padding="same", depth_multiplier=multiplier, use_bias=False, name=f"depthwise{block}"
        )(x)
        x = _bn_relu(x)
        x = _bn_relu(layers.Conv2D(width, 1, use_bias=False, name=f"pointwise{block}")(x))
    head = layers.Dense(10, name="head")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, head)


def _least_flops_fraction(model, gated):
    """count_flops of `gated` with every gate keeping one channel, over the
    dense model's (the masks are set in place)."""
    for gate in gates(gated):
        mask = np.zeros(gate.channels, "float32")
        mask[0] = 1.0
        gate.keep_mask.assign(mask)
    return krp.count_flops(gated) / krp.count_flops(model)


def _strips_exactly(gated):
    small = krp.strip_pruning(gated)
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
    expected = keras.ops.convert_to_numpy(gated(x, training=False))
    actual = keras.ops.convert_to_numpy(small(x, training=False))
    scale = max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)
    assert krp.count_flops(small) == krp.count_flops(gated)
    assert small.count_params() == krp.count_params(gated)
    return small


def _gated(model):
    randomize_batch_norms(model, 1)
    gated = krp.add_gates(model)
    rng = np.random.default_rng(2)
    for gate in gates(gated):
        gate.logits.assign(rng.normal(0.05, 0.05, gate.channels).astype("float32"))
    return gated


def test_a_network_of_multiplier_blocks_is_no_barrier():
    model = _multiplier_blocks(multiplier=2)
    graph = analyze(model)
    assert not graph.barriers
    # The stem and every pointwise conv are prunable groups; each depthwise
    # conv is tied to the group it reads.
    assert len(graph.prunable_groups()) == 4
    gated = _gated(model)
    assert _least_flops_fraction(model, gated) <= 0.30
    _strips_exactly(gated)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_masks_remove_whole_multiplier_blocks_exactly(seed):
    model = _multiplier_blocks(multiplier=2)
    gated = _gated(model)
    random_masks(gated, seed)
    small = _strips_exactly(gated)
    stem_keep = gated.get_layer("stem_gate").keep_mask.numpy()
    kept = int(stem_keep.sum())
    depthwise = small.get_layer("depthwise0")
    assert depthwise.kernel.shape == (3, 3, kept, 2)
    assert small.get_layer("pointwise0").kernel.shape[2] == 2 * kept
    assert krp.count_flops(small) < krp.count_flops(model)


def test_multiplier_three_before_a_dense_head_folds_its_constants():
    """depthwise (M=3, with a bias) -> BN -> ReLU -> pooling -> Dense: the
    removed blocks' constants go into the Dense bias."""
    inputs = keras.Input(SHAPE)
    x = _bn_relu(layers.Conv2D(6, 3, padding="same", name="stem")(inputs))
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=3, name="depthwise")(x)
    x = _bn_relu(x)
    model = keras.Model(inputs, layers.Dense(5, name="head")(layers.GlobalAveragePooling2D()(x)))
    gated = _gated(model)
    assert _least_flops_fraction(model, gated) <= 0.30
    for seed in range(3):
        random_masks(gated, seed)
        small = _strips_exactly(gated)
        kept = int(gated.get_layer("stem_gate").keep_mask.numpy().sum())
        assert small.get_layer("depthwise").kernel.shape == (3, 3, kept, 3)
        assert small.get_layer("head").kernel.shape == (3 * kept, 5)


def test_multiplier_output_read_by_a_padded_conv_is_protected():
    """The removed blocks' constants would meet the zero padding of a 3x3
    conv: the group is kept whole (with a warning), not refused later."""
    inputs = keras.Input(SHAPE)
    x = _bn_relu(layers.Conv2D(4, 3, padding="same", name="stem")(inputs))
    x = _bn_relu(layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x))
    x = _bn_relu(layers.Conv2D(6, 3, padding="same", name="after")(x))
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    with pytest.warns(UserWarning, match="stem"):
        gated = _gated(model)
    assert [gate.name for gate in gates(gated)] == ["after_gate"]
    random_masks(gated, 0)
    _strips_exactly(gated)


def test_separable_conv_with_a_multiplier_prunes_its_inputs():
    model = _multiplier_blocks(multiplier=2, separable=True)
    assert not analyze(model).barriers
    gated = _gated(model)
    assert len(gates(gated)) == 4
    assert _least_flops_fraction(model, gated) <= 0.30
    for seed in range(2):
        random_masks(gated, seed)
        small = _strips_exactly(gated)
        kept = int(gated.get_layer("stem_gate").keep_mask.numpy().sum())
        assert small.get_layer("separable0").depthwise_kernel.shape == (3, 3, kept, 2)
