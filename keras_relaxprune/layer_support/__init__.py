"""One `LayerSupport` record per family of layers, and `register_layer`.

Importing this package registers every built-in family:

- `convolution`: Conv1D/2D/3D, their transposes, SeparableConv, Dense
  (the producers of prunable channels);
- `depthwise`: DepthwiseConv1D/2D;
- `batch_normalization`: BatchNormalization;
- `elementwise`: activation layers and ops, Identity;
- `spatial`: pooling, resampling, padding, dropout and noise, Flatten;
- `merge`: Add, Subtract, Multiply, Average, Maximum, Minimum and ops;
- `concatenation`: Concatenate and `ops.concatenate`;
- `channel_slicing`: `ops.split` and `x[..., a:b]`;
- `channel_mixing`: LayerNormalization, GroupNormalization, Softmax (protected)
  and Rescaling;
- `collapse`: what a layer left without live channels becomes.
"""

from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support import (  # noqa: F401 (registers the families)
    batch_normalization,
    channel_mixing,
    channel_slicing,
    concatenation,
    convolution,
    depthwise,
    elementwise,
    merge,
    spatial,
)
from keras_relaxprune.layer_support.elementwise import (
    free,
    one_flop_per_output,
    pass_through,
    remove_elementwise,
)
from keras_relaxprune.layer_support.record import (
    FoldTarget,
    GateFold,
    LayerSupport,
    find_support,
    register_layer,
    unsupported_reason,
)

__all__ = [
    "FoldTarget", "GateFold", "LayerSupport", "LiveChannels", "find_support",
    "free", "one_flop_per_output", "pass_through", "register_layer",
    "remove_elementwise", "unsupported_reason",
]
