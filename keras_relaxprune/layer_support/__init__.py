"""One `LayerSupport` record per family of layers, and `register_layer`.

Importing this package registers every built-in family:

- `convolution`: Conv1D/2D/3D, their transposes, SeparableConv, Dense
  (the producers of prunable channels);
- `depthwise`: DepthwiseConv1D/2D (any `depth_multiplier`);
- `batch_normalization`: BatchNormalization;
- `elementwise`: activation layers and ops (`ops.abs`, `ops.clip`, ...), Identity;
- `spatial`: pooling, resampling, padding, dropout and noise, `ops.mean`
  over positions and `ops.reshape`;
- `flatten`: Flatten (channels tiled once per position);
- `time_distributed`: TimeDistributed, by the record of the layer it wraps;
- `attention`: MultiHeadAttention (whole heads) and its gated form;
- `merge`: Add, Subtract, Multiply, Average, Maximum, Minimum and ops, and
  ops of a tensor and scalars (`x / 2.0`, `x ** 2`, `x > 0`, `ops.where`);
- `concatenation`: Concatenate and `ops.concatenate`;
- `channel_slicing`: `ops.split` and `x[..., a:b]`;
- `channel_mixing`: LayerNormalization, GroupNormalization, Softmax (protected)
  and Rescaling;
- `collapse`: what a layer left without live channels becomes;
- `removed_constants`: what each layer makes of a removed channel's constant
  (one answer for `add_gates`' protection and for `strip_pruning`).

The queries below read the records, so code elsewhere never names a Keras
layer class: `has_kernel`, `kernel_axes`, `collapses_to_bias`,
`changes_zero`, `is_multiply`, `passes_scale`, `takes_producer_gate`,
`is_batch_normalization`, `has_moving_statistics` and
`removed_constant_fate`.
"""

from keras_relaxprune.graph.live_channels import LiveChannels
from keras_relaxprune.layer_support import (  # noqa: F401 (registers the families)
    attention,
    batch_normalization,
    channel_mixing,
    channel_slicing,
    concatenation,
    convolution,
    depthwise,
    elementwise,
    flatten,
    merge,
    spatial,
    time_distributed,
)
from keras_relaxprune.layer_support.batch_normalization import has_moving_statistics
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
    changes_zero,
    collapses_to_bias,
    find_support,
    has_kernel,
    is_batch_normalization,
    is_multiply,
    kernel_axes,
    passes_scale,
    register_layer,
    takes_producer_gate,
    unsupported_reason,
)
from keras_relaxprune.layer_support.removed_constants import (
    ABSORBED,
    BROKEN,
    CARRIED,
    removed_constant_fate,
)

__all__ = [
    "ABSORBED",
    "BROKEN",
    "CARRIED",
    "FoldTarget",
    "GateFold",
    "LayerSupport",
    "LiveChannels",
    "changes_zero",
    "collapses_to_bias",
    "find_support",
    "free",
    "has_kernel",
    "has_moving_statistics",
    "is_batch_normalization",
    "is_multiply",
    "kernel_axes",
    "one_flop_per_output",
    "pass_through",
    "passes_scale",
    "register_layer",
    "remove_elementwise",
    "removed_constant_fate",
    "takes_producer_gate",
    "unsupported_reason",
]
