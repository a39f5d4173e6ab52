"""A deterministic latency target and tiny models for the latency tests."""

import math

import keras
from keras import layers


class FakeTarget:
    """Seconds = 1e-9 x MACs of a convolution or Dense (depthwise: its
    channels' MACs) + 1e-6; counts its calls. A plain object: the target
    protocol needs only `name` and `time_layer`."""

    name = "fake-target"

    def __init__(self):
        self.calls = 0

    def time_layer(self, layer_config, input_shape):
        self.calls += 1
        config = layer_config["config"]
        cin = input_shape[-1]
        positions = math.prod(input_shape[1:-1])
        kernel = math.prod(config.get("kernel_size", (1,)))
        if layer_config["class_name"] == "Activation":
            return 1e-9 * math.prod(input_shape)
        cout = config.get("filters", config.get("units", cin))
        if "filters" not in config and "units" not in config:
            return 1e-9 * positions * kernel * cin + 1e-6
        # A stride shrinks the output positions.
        stride = math.prod(config.get("strides", (1,)))
        return 1e-9 * positions / stride * kernel * cin * cout + 1e-6


def two_conv_net():
    """conv 16 -> BN -> ReLU -> depthwise -> conv 24 -> pooling -> Dense."""
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv_a")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = layers.Conv2D(24, 1, name="conv_b")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(5, name="classifier")(x))
