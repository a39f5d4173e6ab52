"""Small keras-hub vision backbones, built from a config (random weights).

Each builds in well under a second and is pruned at 32x32x3 by the coverage
benchmark and the tests; together they exercise keras-hub's block types
(subclassed blocks inlined by `krp.register_composite`, grouped and
depthwise convolutions, squeeze-excite, CSP splits, pre-activation stems).
keras-hub is imported inside each function, so this module imports without
it (`pip install -e '.[hub]'` installs it).
"""


def hub_mobilenet_v3():
    """A two-stage `MobileNetBackbone` in MobileNetV3's form.

    Exercises keras-hub's subclassed MobileNetV3 blocks (inverted residuals
    whose depthwise convolution is `Conv2D(C, k, groups=C)`), its
    squeeze-excite layer, and ReLU and hard-swish stages.

    Returns:
        A `keras_hub.models.MobileNetBackbone`.
    """
    import keras_hub

    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=64,
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        last_layer_filter=64,
        squeeze_and_excite=0.5,
    )


def hub_efficientnet(block_types=("v1", "v1"), squeeze_and_excite_ratios=(0.25, 0.25)):
    """A two-stage `EfficientNetBackbone` (one block, then two with a residual).

    Args:
        block_types: keras-hub's block type of each stage: `"v1"` (EfficientNet's
            MBConv, built from Keras layers), `"fused"` (EfficientNetV2's
            FusedMBConv) or `"unfused"` (EfficientNetV2's MBConv); the V2 blocks
            are subclassed layers. Defaults to `("v1", "v1")`.
        squeeze_and_excite_ratios: each stage's squeeze-excite ratio (0.0: none).
            Defaults to `(0.25, 0.25)`.

    Returns:
        A `keras_hub.models.EfficientNetBackbone`.
    """
    import keras_hub

    return keras_hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3],
        stackwise_num_repeats=[1, 2],
        stackwise_input_filters=[16, 16],
        stackwise_output_filters=[16, 24],
        stackwise_expansion_ratios=[1, 4],
        stackwise_squeeze_and_excite_ratios=list(squeeze_and_excite_ratios),
        stackwise_strides=[1, 2],
        stackwise_block_types=list(block_types),
        width_coefficient=1.0,
        depth_coefficient=1.0,
        num_features=64,
        dropout=0.0,
    )


def hub_resnet(
    block_type="basic_block",
    input_conv_filters=(64,),
    stackwise_num_blocks=(1, 1),
    use_pre_activation=False,
):
    """A two-stage `ResNetBackbone` (64 then 32 filters, the second strided).

    Args:
        block_type: keras-hub's block: `"basic_block"`, `"bottleneck_block"` or
            `"bottleneck_block_vd"` (ResNet-vd's average-pooled shortcut).
            Defaults to `"basic_block"`.
        input_conv_filters: the stem's 3x3 convolutions (three of them: the vd
            stem). Defaults to `(64,)`.
        stackwise_num_blocks: blocks per stage. Defaults to `(1, 1)`.
        use_pre_activation: ResNetV2's pre-activation blocks, whose stem pads
            through `ops.pad`. Defaults to `False`.

    Returns:
        A `keras_hub.models.ResNetBackbone`.
    """
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=list(input_conv_filters),
        input_conv_kernel_sizes=[3] * len(input_conv_filters),
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=list(stackwise_num_blocks),
        stackwise_num_strides=[1, 2],
        block_type=block_type,
        use_pre_activation=use_pre_activation,
    )


def _hub_cspnet(**kwargs):
    """A two-stage CSP `CSPNetBackbone`; `kwargs` give the block."""
    import keras_hub

    return keras_hub.models.CSPNetBackbone(
        stem_filters=16,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 2],
        stackwise_strides=[2, 2],
        stackwise_num_filters=[32, 64],
        stage_type="csp",
        expand_ratio=[2.0, 1.0],
        bottle_ratio=[0.5, 1.0],
        block_ratio=[1.0, 0.5],
        **kwargs,
    )


def hub_cspdarknet():
    """CSPDarkNet-53's stage layout (timm's `cspdarknet53`) in two small stages.

    Exercises keras-hub's `"dark_block"` and its CSP stages, whose blocks add
    to one half of a `split`.

    Returns:
        A `keras_hub.models.CSPNetBackbone`.
    """
    return _hub_cspnet(block_type="dark_block", down_growth=True)


def hub_cspresnext():
    """CSPResNeXt (timm's `cspresnext50` layout) in two small stages.

    Exercises keras-hub's `"bottleneck_block"` in CSP stages with grouped
    convolutions: the bottleneck's 3x3 conv and each stage's down conv have
    `groups=4`.

    Returns:
        A `keras_hub.models.CSPNetBackbone`.
    """
    return _hub_cspnet(block_type="bottleneck_block", groups=4)


def hub_densenet():
    """A `DenseNetBackbone` of two stages of two dense blocks (growth rate 8).

    Exercises dense blocks (each concatenates its output to its input) and a
    transition layer between the stages.

    Returns:
        A `keras_hub.models.DenseNetBackbone`.
    """
    import keras_hub

    return keras_hub.models.DenseNetBackbone(stackwise_num_repeats=[2, 2], growth_rate=8)


def hub_vgg():
    """A `VGGBackbone` of two stages (one 16-filter conv, two 32-filter convs).

    Returns:
        A `keras_hub.models.VGGBackbone`.
    """
    import keras_hub

    return keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[1, 2], stackwise_num_filters=[16, 32]
    )


def hub_vit():
    """A `ViTBackbone` at 32x32x3: patches of 8, width 32, 2 blocks of 2 heads.

    Exercises keras-hub's subclassed ViT patch embedding and encoder blocks.

    Returns:
        A `keras_hub.models.ViTBackbone`.
    """
    import keras_hub

    return keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
    )
