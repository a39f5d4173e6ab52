"""Small hand-built functional graphs covering the channel rules."""

import keras
from keras import layers

from keras_relaxprune_apps.models import cifar_resnet, small_unet


def resnet_basic():
    return cifar_resnet(depth=8, width=8, input_shape=(16, 16, 3), name="resnet_basic")


def resnet_bottleneck():
    return cifar_resnet(
        depth=11, width=4, input_shape=(16, 16, 3), bottleneck=True, name="resnet_bottleneck"
    )


def unet():
    return small_unet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 16, 32))


def mobilenet_v2_block_net(input_shape=(16, 16, 3), width=8):
    """Stem + two inverted residuals with identity shortcuts."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for index, expand in enumerate((4, 6)):
        shortcut = x
        y = layers.Conv2D(width * expand, 1, use_bias=False, name=f"ir{index}_expand")(x)
        y = layers.BatchNormalization(name=f"ir{index}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"ir{index}_expand_relu")(y)
        y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"ir{index}_dw")(y)
        y = layers.BatchNormalization(name=f"ir{index}_dw_bn")(y)
        y = layers.ReLU(6.0, name=f"ir{index}_dw_relu")(y)
        y = layers.Conv2D(width, 1, use_bias=False, name=f"ir{index}_project")(y)
        y = layers.BatchNormalization(name=f"ir{index}_project_bn")(y)
        x = layers.Add(name=f"ir{index}_add")([shortcut, y])
    return _classified(inputs, x, "mobilenet_v2_blocks")


def _classified(inputs, features, name):
    """Global average pooling and a 10-way softmax classifier on `features`."""
    pooled = layers.GlobalAveragePooling2D(name="pool")(features)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(pooled)
    return keras.Model(inputs, outputs, name=name)


def densenet_chain():
    """Each conv sees the concatenation of everything before it."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = layers.ReLU(name="stem_relu")(x)
    for index in range(3):
        y = layers.BatchNormalization(name=f"dense{index}_bn")(x)
        y = layers.ReLU(name=f"dense{index}_relu")(y)
        y = layers.Conv2D(4, 3, padding="same", name=f"dense{index}_conv")(y)
        x = layers.Concatenate(name=f"dense{index}_concat")([x, y])
    return _classified(inputs, x, "densenet_chain")


def mlp_head():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.1, name="drop")(x)
    x = layers.Dense(16, activation="relu", name="fc2")(x)
    outputs = layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp_head")


def conv1d_net():
    inputs = keras.Input((32, 2))
    x = layers.Conv1D(8, 5, padding="same", name="conv_a")(inputs)
    x = layers.BatchNormalization(name="bn_a")(x)
    x = layers.ReLU(name="relu_a")(x)
    x = layers.MaxPooling1D(name="pool_a")(x)
    x = layers.Conv1D(16, 3, padding="valid", activation="relu", name="conv_b")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs, name="conv1d_net")


def ops_and_nested_net():
    """Raw ops (split, concatenate, slicing) and a nested functional block."""
    block_in = keras.Input((8, 8, 12))
    y = layers.Conv2D(12, 3, padding="same", use_bias=False, name="block_conv")(block_in)
    y = layers.BatchNormalization(name="block_bn")(y)
    block = keras.Model(block_in, layers.ReLU(name="block_relu")(y), name="block")
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(12, 3, padding="same", name="wide")(inputs)
    x = layers.ReLU(name="wide_relu")(x)
    x = layers.Add(name="residual")([x, block(x)])
    a, b = keras.ops.split(x, [4], axis=-1)
    x = keras.ops.concatenate([keras.ops.relu(b), a], axis=-1)[..., 2:10]
    x = layers.Conv2D(6, 1, name="mix")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x), name="ops_and_nested")


def two_conv_net(classes=10):
    """conv 8 -> BN -> ReLU -> conv 8 -> BN -> ReLU -> pooling -> Dense."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_a")(inputs)
    x = layers.BatchNormalization(name="bn_a")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_b")(x)
    x = layers.BatchNormalization(name="bn_b")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, name="head")(x))


ALL = {
    "ops_and_nested": ops_and_nested_net,
    "resnet_basic": resnet_basic,
    "resnet_bottleneck": resnet_bottleneck,
    "unet": unet,
    "mobilenet_v2": mobilenet_v2_block_net,
    "densenet": densenet_chain,
    "mlp_head": mlp_head,
    "conv1d": conv1d_net,
}


def lambda_barrier_net(name=None):
    """conv -> Lambda (a channel reversal: no rule, a barrier) -> conv -> head."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="before")(inputs)
    x = layers.Lambda(lambda t: t[..., ::-1], name="reverse")(x)
    x = layers.Conv2D(8, 3, padding="same", name="after")(x)
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name=name)
