"""Families of layers and raw ops that several rule tables share.

Channel rules (`rules.py`), cost rules (`cost.py`) and removal rules
(`structural.py`) each treat these families alike; listing them once keeps
the three tables in step when a layer type is added.
"""

from keras import layers
from keras.src.ops import nn as nn_ops
from keras.src.ops import numpy as np_ops

POOLING = (
    layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
    layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
    layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D,
    layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
)

# Move positions, never mix channels; a uniform constant channel stays so.
RESAMPLING = (
    layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D,
    layers.Cropping1D, layers.Cropping2D, layers.Cropping3D,
    layers.Resizing, layers.RandomFlip, layers.RandomCrop,
    layers.RandomTranslation, layers.RandomRotation, layers.RandomZoom,
)

REGULARIZATION = (
    layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D,
    layers.SpatialDropout3D, layers.GaussianNoise, layers.GaussianDropout,
    layers.AlphaDropout, layers.ActivityRegularization,
)

ZERO_PADDING = (layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D)

ACTIVATION_LAYERS = (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.Activation)

ELEMENTWISE_OPS = (
    nn_ops.Relu, nn_ops.Relu6, nn_ops.Sigmoid, nn_ops.Silu, nn_ops.Gelu,
    nn_ops.Elu, nn_ops.Selu, nn_ops.LeakyRelu, nn_ops.HardSigmoid,
    nn_ops.HardSilu, nn_ops.Softplus, np_ops.Tanh, np_ops.Abs,
    np_ops.Negative, np_ops.Square,
)

MERGE_LAYERS = (
    layers.Add, layers.Subtract, layers.Multiply, layers.Average,
    layers.Maximum, layers.Minimum,
)

MERGE_OPS = (
    np_ops.Add, np_ops.Subtract, np_ops.Multiply, np_ops.Divide,
    np_ops.Maximum, np_ops.Minimum,
)

MERGES = MERGE_LAYERS + MERGE_OPS
