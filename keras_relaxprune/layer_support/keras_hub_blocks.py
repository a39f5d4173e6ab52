"""The composite blocks of keras-hub's vision backbones, registered.

keras-hub writes the blocks of MobileNetV3 and EfficientNetV2 as
subclassed layers whose `call` is a chain of Keras layers and `keras.ops`:
each is registered with `register_composite` and its own `call` as the
expander, so its insides are traced, pruned and stripped into plain Keras
layers. Loaded when keras-hub has been imported (a model holding these
blocks was built with it), never by `import keras_relaxprune` itself; the
check of each expansion (`graph/composite.py`) refuses a block whose
`call` a later keras-hub changed into something the trace cannot follow.
"""

import importlib

from keras_relaxprune.graph.composite import register_composite

# module of keras_hub.src.models -> its composite block classes
BLOCKS = {
    "mobilenet.mobilenet_backbone": (
        "ConvBnActBlock",
        "DepthwiseConvBlock",
        "InvertedResidualBlock",
        "SqueezeAndExcite2D",
    ),
    "efficientnet.cba": ("CBABlock",),
    "efficientnet.fusedmbconv": ("FusedMBConvBlock",),
    "efficientnet.mbconv": ("MBConvBlock",),
    "vit.vit_layers": ("ViTEncoder", "ViTEncoderBlock", "MLP"),  # heads: attention.py
}


def register():
    """Registers every block class this keras-hub defines (a class a
    version lacks is skipped); returns the classes registered."""
    registered = []
    for module_name, class_names in BLOCKS.items():
        try:
            module = importlib.import_module(f"keras_hub.src.models.{module_name}")
        except ImportError:
            continue
        for class_name in class_names:
            cls = getattr(module, class_name, None)
            if cls is not None:
                register_composite(cls)
                registered.append(cls)
    return registered
