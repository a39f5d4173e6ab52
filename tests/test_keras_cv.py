"""keras-cv 0.9 models (random weights): gated, pruned a few steps, stripped
exactly. keras-cv is in maintenance (keras-hub succeeds it); these run where
it is installed (`pip install -e '.[cv]'`).
"""

import warnings

import keras
import pytest

keras_cv = pytest.importorskip(
    "keras_cv", reason="keras-cv is not installed: pip install -e '.[cv]'"
)

from helpers import fit_strip_export  # noqa: E402

import keras_relaxprune as krp  # noqa: E402
from keras_relaxprune.graph.tracing import analyze  # noqa: E402

SHAPE = (32, 32, 3)


def resnet(stackwise_filters=(16, 32), stackwise_strides=(1, 2), block_type="block"):
    return keras_cv.models.ResNetBackbone(
        stackwise_filters=list(stackwise_filters),
        stackwise_blocks=[1] * len(stackwise_filters),
        stackwise_strides=list(stackwise_strides),
        include_rescaling=False,
        block_type=block_type,
    )


def deeplab_v3_plus():
    # P5 (1/32) is upsampled 8x to meet P2 (1/4): four stages are needed;
    # basic blocks keep the graph (and TensorFlow's tracing time) small.
    backbone = resnet((64, 16, 16, 16), (1, 2, 2, 2), block_type="basic_block")
    return keras_cv.models.DeepLabV3Plus(
        backbone=backbone,
        num_classes=3,
        projection_filters=8,
        spatial_pyramid_pooling=keras_cv.layers.SpatialPyramidPooling(
            dilation_rates=[1, 2], num_channels=16, name="aspp"
        ),
    )


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    "build, expected",
    [
        (resnet, (6, 7, [])),
        # The ASPP head is one subclassed layer: the backbone channels feeding it
        # are protected, the rest (low-level projection, head) prune.
        (deeplab_v3_plus, (9, 11, ["aspp"])),
    ],
    ids=["resnet", "deeplab_v3_plus"],
)
def test_prunable_groups_and_barriers(build, expected):
    model = build()
    graph = analyze(model)
    roots = {graph.groups.find(group) for _, group in graph.producers}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        krp.add_gates(model, input_shape=SHAPE)
    named = sorted(
        str(w.message).split("'")[1] for w in caught if "keras_relaxprune: layer" in str(w.message)
    )
    assert (len(graph.prunable_groups()), len(roots), named) == expected


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(resnet, marks=pytest.mark.backend_agnostic),
        deeplab_v3_plus,
    ],
    ids=["resnet", "deeplab_v3_plus"],
)
def test_prune_strip_export(build, tmp_path):
    keras.utils.set_random_seed(0)
    model = build()
    gated = krp.add_gates(model, input_shape=SHAPE)
    fit_strip_export(model, gated, SHAPE, tmp_path, lowest=0.69)
