"""A gated model lives no longer than the references its user keeps."""

import gc
import weakref

import keras
import model_zoo
import numpy as np
import pytest

import keras_relaxprune as krp

pytestmark = pytest.mark.backend_agnostic


def _gated():
    return krp.add_gates(model_zoo.two_conv_net())


def _is_collected(reference):
    gc.collect()
    return reference() is None


def test_gated_model_is_collected_once_unreferenced():
    """A model made by `add_gates` is freed when its last reference goes."""
    gated = _gated()
    reference = weakref.ref(gated)
    del gated
    assert _is_collected(reference)


def test_gated_model_is_collected_after_fit_with_pruning_callback():
    """A gated model trained for one step with `PruningCallback` (which links
    the budget layer to the model's channel graph) is freed too."""
    gated = _gated()
    gated.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).random((4, 8, 8, 3), "float32")
    y = np.arange(4)
    callback = krp.PruningCallback(target=0.5, end_step=10**6)
    gated.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    reference = weakref.ref(gated)
    del gated, callback
    assert _is_collected(reference)
