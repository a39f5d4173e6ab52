"""Tests of keras_relaxprune.graph.config_keys: copying a layer whose config
holds keys its own constructor refuses."""

import warnings

import keras
import numpy as np
import pytest
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph.config_keys import unaccepted_keys

pytestmark = pytest.mark.backend_agnostic


class Projection(layers.Layer):
    """x @ kernel * factor; its config also saves `fan_out`, derived from
    `units`, which `__init__` passes on to `Layer`, which refuses it (as
    keras-hub's ViT patch embedding does with `num_patches`)."""

    def __init__(self, units, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        # `_factor` is private: only the output check can see a copy lose it.
        self.units, self._factor, self.fan_out = units, factor, units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) * self._factor

    def get_config(self):
        return {**super().get_config(), "units": self.units, "factor": self._factor,
                "fan_out": self.fan_out}  # fmt: skip


class ForgetfulProjection(Projection):
    """Saves no `factor`: a copy from its config has the same public
    settings but computes something else."""

    def get_config(self):
        config = super().get_config()
        del config["factor"]
        return config


def _model(projection):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = layers.Dense(8, activation="relu", name="before")(inputs)
    x = projection(x)
    x = layers.Dense(8, activation="relu", name="after")(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x))


def test_unaccepted_keys_are_those_no_constructor_names():
    config = Projection(5, name="p").get_config()
    assert unaccepted_keys(Projection, config) == ["fan_out"]
    assert unaccepted_keys(layers.Dense, layers.Dense(3).get_config()) == []


def test_a_layer_saving_a_derived_key_is_copied_and_computes_the_same():
    model = _model(Projection(6, factor=2.5, name="projection"))
    with pytest.raises(TypeError):
        Projection.from_config(model.get_layer("projection").get_config())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the projection is a barrier
        gated = krp.add_gates(model)
    copy = gated.get_layer("projection")
    assert copy is not model.get_layer("projection") and copy._factor == 2.5
    for layer in gated.layers:
        if isinstance(layer, krp.ChannelGate):
            layer.logits.assign(np.full(layer.channels, 10.0, "float32"))
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(gated(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_copy_that_would_compute_something_else_is_refused():
    model = _model(ForgetfulProjection(6, factor=2.5, name="projection"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(krp.UnsupportedModelError, match="'projection'.*get_config"):
            krp.add_gates(model)
