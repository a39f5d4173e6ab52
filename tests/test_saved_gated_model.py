"""A gated model saved before the package moved into subpackages still loads.

`tests/data/gated_model_0.1.0.keras` was written by keras_relaxprune 0.1.0's
flat layout (a small residual net, every third channel's keep mask 0); the
`.npz` beside it holds its outputs, its stripped model's outputs and its
counts, computed then. Loading resolves our layers by their registered names
(`keras_relaxprune>ChannelGate`, `keras_relaxprune>PruningBudget`), not by
module path, so a move must not break it.
"""

import pathlib

import keras
import numpy as np
import pytest

import keras_relaxprune as krp

DATA = pathlib.Path(__file__).resolve().parent / "data"


@pytest.mark.backend_agnostic
def test_gated_model_from_the_flat_layout_loads_counts_and_strips_the_same():
    gated = keras.saving.load_model(DATA / "gated_model_0.1.0.keras", compile=False)
    saved = np.load(DATA / "gated_model_0.1.0.npz")
    assert any(isinstance(layer, krp.ChannelGate) for layer in gated.layers)
    np.testing.assert_allclose(
        np.asarray(gated(saved["x"], training=False)), saved["gated"], rtol=1e-5, atol=1e-5
    )
    assert krp.count_flops(gated) == int(saved["flops"])
    assert krp.count_params(gated) == int(saved["params"])
    small = krp.strip_pruning(gated)
    np.testing.assert_allclose(
        np.asarray(small(saved["x"], training=False)), saved["stripped"], rtol=1e-5, atol=1e-5
    )
