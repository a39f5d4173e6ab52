"""Latency targets: TFLite (LiteRT), XLA and the protocol of a user's own."""

import keras
import pytest

import keras_relaxprune as krp
from keras_relaxprune.latency.latency_targets import machine_name, target_name, time_requests

CONV = keras.layers.serialize(keras.layers.Conv2D(8, 3, padding="same"))


@pytest.mark.backend_agnostic
def test_names_are_safe_for_file_names():
    assert machine_name() and "/" not in machine_name()

    class Odd:
        name = "my npu / v2"

        def time_layer(self, layer_config, input_shape):
            return 0.001

    assert target_name(Odd()) == "my-npu-v2"
    assert time_requests(Odd(), [(CONV, (1, 8, 8, 4))] * 2) == [0.001, 0.001]
    assert krp.TFLiteTarget(num_threads=2).name.endswith("xnnpack-t2")


@pytest.mark.backend_agnostic
def test_a_subclass_of_the_protocol_gets_time_layers():
    class Constant(krp.LatencyTarget):
        name = "constant"

        def time_layer(self, layer_config, input_shape):
            return 2e-6

    assert Constant().time_layers([(CONV, (1, 8, 8, 4))] * 3) == [2e-6] * 3


@pytest.mark.backend_agnostic
def test_tflite_target_times_layers_and_a_wider_conv_takes_longer():
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(krp.LatencyTableError, match="TensorFlow backend"):
            krp.TFLiteTarget().time_layer(CONV, (1, 8, 8, 4))
        return
    pytest.importorskip("ai_edge_litert")
    wide = keras.layers.serialize(keras.layers.Conv2D(128, 3, padding="same"))
    small, large = krp.TFLiteTarget(runs=9).time_layers(
        [(CONV, (1, 16, 16, 4)), (wide, (1, 16, 16, 128))]
    )
    assert 0 <= small < large < 1.0  # 4x8 vs 128x128 channels: 500x the MACs


@pytest.mark.backend_agnostic
def test_xla_target_times_a_layer_on_the_current_backend():
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip("XLA through TensorFlow or JAX")
    seconds = krp.XLATarget(runs=3).time_layer(CONV, (1, 8, 8, 4))
    assert 0 <= seconds < 1.0
