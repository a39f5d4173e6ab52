"""Reference architectures used by the examples, benchmarks and tests.

`cifar_resnet` is the ResNet of He et al. (2016) for 32x32 inputs with
option-B shortcuts (1x1 convolution + BN where the shape changes); published
CIFAR numbers mostly use option A (zero-padding), 0.2% fewer MACs.
`small_unet` is a U-Net with skip concatenations and Conv2DTranspose.
`small_vit` is a Vision Transformer built from Keras layers only (its
attention is `keras.layers.MultiHeadAttention`), plus `PositionEmbedding`.
"""

import math

import keras
from keras import layers, ops

import keras_relaxprune as krp


def _conv_bn(x, filters, kernel, strides=1, name=None, activation=True):
    x = layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if activation else x


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, name=f"{name}_1")
    y = _conv_bn(y, filters, 3, name=f"{name}_2", activation=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_proj", activation=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _bottleneck_block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn(x, filters, 1, name=f"{name}_1")
    y = _conv_bn(y, filters, 3, strides, name=f"{name}_2")
    y = _conv_bn(y, 4 * filters, 1, name=f"{name}_3", activation=False)
    if strides != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv_bn(x, 4 * filters, 1, strides, f"{name}_proj", activation=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# Channel statistics of the 367 CamVid training frames (0-1 scale).
CAMVID_MEAN = (0.4116, 0.4250, 0.4322)
CAMVID_STD = (0.3068, 0.3112, 0.3069)


def _standardize(x, mean, std):
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    return layers.Normalization(mean=mean, variance=[s * s for s in std], name="standardize")(x)


def cifar_preprocessing(x):
    """Raw 0-255 RGB -> CIFAR-10-standardised, inside the model."""
    return _standardize(x, CIFAR10_MEAN, CIFAR10_STD)


def cifar_resnet(
    depth=20,
    num_classes=10,
    width=16,
    input_shape=(32, 32, 3),
    bottleneck=False,
    name=None,
    include_preprocessing=False,
    classifier_activation="softmax",
):
    """CIFAR ResNet-`depth` (6n+2 basic, or 9n+2 bottleneck), option B.

    Args:
        depth: 20, 32, 44, 56, 110 (basic) or 9n+2 with `bottleneck=True`.
        num_classes: classifier width. Defaults to 10.
        width: channels of the first stage (doubled per stage). Defaults to 16.
        input_shape: one sample's shape. Defaults to `(32, 32, 3)`.
        bottleneck: use 1x1-3x3-1x1 bottleneck blocks.
        include_preprocessing: start with `Rescaling(1/255)` and a
            `Normalization` with CIFAR-10's channel statistics, so the model
            takes raw 0-255 RGB. Defaults to `False`.
        classifier_activation: activation of the classifier, `None` for
            logits. Defaults to `"softmax"`.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> model = cifar_resnet(56)
    >>> model.count_params()  # 0.86 M with option-B shortcuts
    """
    per_stage = (depth - 2) // (9 if bottleneck else 6)
    block = _bottleneck_block if bottleneck else _basic_block
    inputs = keras.Input(input_shape, name="image")
    x = cifar_preprocessing(inputs) if include_preprocessing else inputs
    x = _conv_bn(x, width, 3, name="stem")
    for stage in range(3):
        for index in range(per_stage):
            strides = 2 if stage > 0 and index == 0 else 1
            x = block(x, width * 2**stage, strides, f"stage{stage + 1}_block{index + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def small_unet(
    input_shape=(None, None, 3),
    num_classes=11,
    widths=(16, 32, 64),
    name="unet",
    include_preprocessing=False,
):
    """A small U-Net: conv blocks, max-pool down, Conv2DTranspose up, concat skips.

    Args:
        input_shape: one sample's shape; spatial size divisible by
            `2 ** (len(widths) - 1)`. Defaults to `(None, None, 3)`.
        num_classes: output channels (per-pixel logits). Defaults to 11.
        widths: channels per level. Defaults to `(16, 32, 64)`.
        name: the model's name. Defaults to `"unet"`.
        include_preprocessing: start with `Rescaling(1/255)` and a
            `Normalization` with the CamVid training frames' channel
            statistics, so the model takes raw 0-255 RGB. Defaults to `False`.

    Returns:
        An uncompiled functional `keras.Model` with per-pixel logits.

    Example:

    >>> model = small_unet((176, 240, 3), widths=(16, 32, 64, 128),
    ...                    include_preprocessing=True)
    >>> model.output_shape
    (None, 176, 240, 11)
    """
    inputs = keras.Input(input_shape, name="image")
    x = _standardize(inputs, CAMVID_MEAN, CAMVID_STD) if include_preprocessing else inputs
    skips = []
    for level, filters in enumerate(widths):
        x = _conv_bn(x, filters, 3, name=f"down{level}_a")
        x = _conv_bn(x, filters, 3, name=f"down{level}_b")
        if level < len(widths) - 1:
            skips.append(x)
            x = layers.MaxPooling2D(name=f"pool{level}")(x)
    for level in reversed(range(len(widths) - 1)):
        filters = widths[level]
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}_transpose")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _conv_bn(x, filters, 3, name=f"up{level}_a")
        x = _conv_bn(x, filters, 3, name=f"up{level}_b")
    outputs = layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="keras_relaxprune_apps")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per position to a `(batch, tokens, width)` sequence.

    Example:

    >>> PositionEmbedding()(keras.ops.zeros((2, 16, 8))).shape
    (2, 16, 8)
    """

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding",
            shape=tuple(input_shape[1:]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _position_channels(tracer, node, in_maps):
    # Its embedding has a column per channel: the channels stay (in a
    # transformer they are the residual width, which LayerNormalization
    # keeps whole anyway).
    tracer.protect(in_maps[0], f"{node.name} adds a learned vector over every channel")
    return [in_maps[0]]


def _position_cost(shapes, layer, cin, cout):
    size = math.prod(layer.embedding.shape)
    return size, 0, size  # one addition per element


krp.register_layer(PositionEmbedding, channels=_position_channels, cost=_position_cost)


def small_vit(
    input_shape=(32, 32, 3),
    num_classes=10,
    patch_size=4,
    width=64,
    depth=4,
    num_heads=4,
    mlp_width=128,
    name="small_vit",
    include_preprocessing=False,
    classifier_activation="softmax",
):
    """A small Vision Transformer (ViT) of Keras layers, pooled over its tokens.

    Patches are embedded by a strided `Conv2D`, given a learned position
    embedding, and passed through `depth` pre-norm encoder blocks
    (`LayerNormalization -> MultiHeadAttention -> Add`, then
    `LayerNormalization -> Dense(gelu) -> Dense -> Add`); a final
    `LayerNormalization`, a global average over the tokens and a `Dense`
    classifier follow. Attention heads and the MLP width are prunable; the
    residual width is not (LayerNormalization normalises over it).

    Args:
        input_shape: one image's shape, divisible by `patch_size`. Defaults
            to `(32, 32, 3)`.
        num_classes: classifier width. Defaults to 10.
        patch_size: side of the square patches. Defaults to 4.
        width: the residual (embedding) width. Defaults to 64.
        depth: encoder blocks. Defaults to 4.
        num_heads: attention heads per block, each of `width // num_heads`
            channels. Defaults to 4.
        mlp_width: hidden width of each block's MLP. Defaults to 128.
        name: the model's name. Defaults to `"small_vit"`.
        include_preprocessing: start with `Rescaling(1/255)` and a
            `Normalization` with CIFAR-10's channel statistics, so the model
            takes raw 0-255 RGB. Defaults to `False`.
        classifier_activation: activation of the classifier, `None` for
            logits. Defaults to `"softmax"`.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> model = small_vit(depth=2)
    >>> model.output_shape
    (None, 10)
    """
    inputs = keras.Input(input_shape, name="image")
    x = cifar_preprocessing(inputs) if include_preprocessing else inputs
    x = layers.Conv2D(width, patch_size, strides=patch_size, name="patch_embedding")(x)
    x = layers.Reshape((-1, width), name="tokens")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for block in range(1, depth + 1):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm1")(x)
        y = layers.MultiHeadAttention(
            num_heads, key_dim=width // num_heads, name=f"block{block}_attention"
        )(y, y)
        x = layers.Add(name=f"block{block}_add1")([x, y])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm2")(x)
        y = layers.Dense(mlp_width, activation="gelu", name=f"block{block}_mlp1")(y)
        y = layers.Dense(width, name=f"block{block}_mlp2")(y)
        x = layers.Add(name=f"block{block}_add2")([x, y])
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)
