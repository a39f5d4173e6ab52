"""keras_relaxprune: structured pruning by continuous relaxation for Keras 3.

Three calls take a functional CNN to a physically smaller dense network:

```python
import keras_relaxprune as krp

gated = krp.add_gates(model, metric="flops")       # network augmentation
gated.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
gated.fit(x, y, epochs=10, callbacks=[krp.PruningCallback(target=0.5)])
print(krp.count_flops(gated) / krp.count_flops(model))   # ~0.5
```
"""

from keras_relaxprune.augmentation.add_gates import add_gates
from keras_relaxprune.budget.callback import PruningCallback
from keras_relaxprune.budget.recalibrate_bn import recalibrate_batchnorm
from keras_relaxprune.cost.count import count_flops, count_params
from keras_relaxprune.errors import (
    ArgumentTypeError,
    BudgetError,
    InvalidArgumentError,
    LatencyTableError,
    ModelFileError,
    NothingToPruneError,
    PruningError,
    StripError,
    UnknownSpatialSizeError,
    UnsupportedLayerError,
    UnsupportedModelError,
)
from keras_relaxprune.exporting.export import export
from keras_relaxprune.graph.composite import register_composite
from keras_relaxprune.latency.latency_estimate import estimate_latency
from keras_relaxprune.latency.latency_table import LatencyTable
from keras_relaxprune.latency.latency_targets import LatencyTarget, TFLiteTarget, XLATarget
from keras_relaxprune.layer_support import GateFold, LayerSupport, register_layer
from keras_relaxprune.layers.channel_gate import ChannelGate
from keras_relaxprune.layers.pruning_budget import PruningBudget
from keras_relaxprune.removal.strip import strip_pruning
from keras_relaxprune.reporting.report import PruningReport, pruning_report

__version__ = "0.1.0"

__all__ = [
    "add_gates",
    "ArgumentTypeError",
    "BudgetError",
    "ChannelGate",
    "count_flops",
    "count_params",
    "estimate_latency",
    "export",
    "GateFold",
    "InvalidArgumentError",
    "LatencyTable",
    "LatencyTableError",
    "LatencyTarget",
    "LayerSupport",
    "ModelFileError",
    "NothingToPruneError",
    "PruningBudget",
    "PruningCallback",
    "PruningError",
    "pruning_report",
    "PruningReport",
    "recalibrate_batchnorm",
    "register_composite",
    "register_layer",
    "StripError",
    "strip_pruning",
    "TFLiteTarget",
    "UnknownSpatialSizeError",
    "UnsupportedLayerError",
    "UnsupportedModelError",
    "XLATarget",
]
