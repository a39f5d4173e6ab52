"""Reference architectures used by the examples, benchmarks and tests.

`cifar_resnet` is the ResNet of He et al. (2016) for 32x32 inputs with
option-B shortcuts (1x1 convolution + BN where the shape changes); published
CIFAR numbers mostly use option A (zero-padding), 0.2% fewer MACs.
`small_unet` is a U-Net with skip concatenations and Conv2DTranspose.
"""

import keras
from keras import layers


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
