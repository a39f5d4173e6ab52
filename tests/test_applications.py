"""keras.applications graphs: gated, masked at random, stripped exactly."""

import keras
import numpy as np
import pytest
from helpers import gates, random_masks

import keras_relaxprune as krp

APPLICATIONS = {
    "MobileNetV2": lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(64, 64, 3), alpha=0.35, classes=10, classifier_activation=None
    ),
    "ResNet50": lambda: keras.applications.ResNet50(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
    ),
    # Squeeze-excitation convs with a fused swish: gates fold into the readers.
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
    ),
    "DenseNet121": lambda: keras.applications.DenseNet121(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
    ),
    "ConvNeXtTiny": lambda: keras.applications.ConvNeXtTiny(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_application_strips_exactly(name):
    model = APPLICATIONS[name]()
    assert krp.count_params(model) == model.count_params()
    gated = krp.add_gates(model)
    rng = np.random.default_rng(0)
    for gate in gates(gated):
        gate.logits.assign(rng.normal(0.05, 0.05, gate.channels).astype("float32"))
    random_masks(gated, 0, keep=0.6)
    stripped = krp.strip_pruning(gated)
    x = rng.random((2, 64, 64, 3), "float32") * 255.0
    expected = np.asarray(keras.ops.convert_to_numpy(gated(x)))
    actual = np.asarray(keras.ops.convert_to_numpy(stripped(x)))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert krp.count_flops(stripped) == krp.count_flops(gated) < krp.count_flops(model)
    assert stripped.count_params() == krp.count_params(gated)


@pytest.mark.slow
def test_freshly_gated_densenet_strips_exactly():
    """No channel removed at all: BN over each concatenation keeps its gates
    folded through the slices (this was refused)."""
    model = APPLICATIONS["DenseNet121"]()
    gated = krp.add_gates(model)
    stripped = krp.strip_pruning(gated)
    x = np.random.default_rng(1).random((2, 64, 64, 3), "float32") * 255.0
    expected = np.asarray(keras.ops.convert_to_numpy(gated(x)))
    actual = np.asarray(keras.ops.convert_to_numpy(stripped(x)))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert stripped.count_params() == krp.count_params(gated)
