"""keras-cv 0.9 models (random weights): gated, pruned a few steps, stripped
exactly. keras-cv is in maintenance (keras-hub succeeds it); these run where
it is installed (`pip install -e '.[cv]'`).
"""

import warnings

import keras
import numpy as np
import pytest

keras_cv = pytest.importorskip(
    "keras_cv", reason="keras-cv is not installed: pip install -e '.[cv]'")

import keras_relaxprune as krp  # noqa: E402
from keras_relaxprune.channel_graph import analyze  # noqa: E402

SHAPE = (32, 32, 3)


def resnet(stackwise_filters=(16, 32), stackwise_strides=(1, 2), block_type="block"):
    return keras_cv.models.ResNetBackbone(
        stackwise_filters=list(stackwise_filters),
        stackwise_blocks=[1] * len(stackwise_filters),
        stackwise_strides=list(stackwise_strides), include_rescaling=False,
        block_type=block_type)


def deeplab_v3_plus():
    # P5 (1/32) is upsampled 8x to meet P2 (1/4): four stages are needed;
    # basic blocks keep the graph (and TensorFlow's tracing time) small.
    backbone = resnet((64, 16, 16, 16), (1, 2, 2, 2), block_type="basic_block")
    return keras_cv.models.DeepLabV3Plus(
        backbone=backbone, num_classes=3, projection_filters=8,
        spatial_pyramid_pooling=keras_cv.layers.SpatialPyramidPooling(
            dilation_rates=[1, 2], num_channels=16, name="aspp"))


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("build, expected", [
    (resnet, (6, 7, [])),
    # The ASPP head is one subclassed layer: the backbone channels feeding it
    # are protected, the rest (low-level projection, head) prune.
    (deeplab_v3_plus, (9, 11, ["aspp"])),
], ids=["resnet", "deeplab_v3_plus"])
def test_prunable_groups_and_barriers(build, expected):
    model = build()
    graph = analyze(model)
    roots = {graph.groups.find(group) for _, group in graph.producers}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        krp.add_gates(model, input_shape=SHAPE)
    named = sorted(str(w.message).split("'")[1] for w in caught
                   if "keras_relaxprune: layer" in str(w.message))
    assert (len(graph.prunable_groups()), len(roots), named) == expected


@pytest.mark.parametrize("build", [
    pytest.param(resnet, marks=pytest.mark.backend_agnostic), deeplab_v3_plus,
], ids=["resnet", "deeplab_v3_plus"])
def test_prune_strip_export(build, tmp_path):
    keras.utils.set_random_seed(0)
    model = build()
    gated = krp.add_gates(model, input_shape=SHAPE)
    rng = np.random.default_rng(0)
    x = rng.random((16, *SHAPE), "float32")
    y = rng.random((16, *keras.ops.shape(gated(x[:1]))[1:]), "float32")
    gated.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    gated.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[krp.PruningCallback(target=0.3)])
    remaining = krp.count_flops(gated) / krp.count_flops(model, input_shape=SHAPE)
    assert 0.69 <= remaining <= 0.71

    small = krp.strip_pruning(gated)
    expected = keras.ops.convert_to_numpy(gated(x[:4]))
    actual = keras.ops.convert_to_numpy(small(x[:4]))
    scale = max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)
    assert krp.count_flops(small, input_shape=SHAPE) == krp.count_flops(gated)
    assert small.count_params() == krp.count_params(gated) < model.count_params()

    paths = krp.export(small, tmp_path, formats=("keras",))
    loaded = keras.ops.convert_to_numpy(keras.saving.load_model(paths["keras"])(x[:4]))
    np.testing.assert_allclose(loaded, actual, rtol=1e-5, atol=1e-5 * scale)
