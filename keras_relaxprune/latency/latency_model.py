"""Per-node latency of a channel graph, read from a latency table.

Every count of the library prices a node by `node_cost`; with a latency
model attached to the graph (`attach_latency_model`) that rule also gives
each node a latency in seconds, so the hard counts (`count_flops`'s rule,
the closing's incremental count) and the relaxed in-graph cost all carry a
`latency` total beside FLOPs and params. A node is priced one of three
ways:

- a layer with a kernel (convolutions, depthwise and separable ones,
  Dense): interpolated in its table grid of measured (input, output)
  widths, bilinearly between grid points and clamped at its ends, so the
  relaxed cost (widths that are sums of gate values) stays differentiable
  in the gates; the grid is made monotone (non-decreasing in each width);
- BatchNormalization and ReLU/ReLU6 activations: free (runtimes fold
  them into the convolution or fuse them into the op before);
- any other node (merges, pooling, other activations): its elementwise
  FLOPs times the table's measured seconds per elementwise FLOP.

A calibrated table (`LatencyTable.calibrate`) scales every node by its
`scale` and adds its `fixed_s` once, to the first layer it prices.
"""

import dataclasses
import hashlib
import json
import math

import keras
import numpy as np
from keras import ops

from keras_relaxprune.errors import LatencyTableError
from keras_relaxprune.layer_support import collapses_to_bias, find_support, is_batch_normalization
from keras_relaxprune.layer_support.activations import known_activation

# Config entries that do not change a layer's speed, left out of its signature.
_SPEED_FREE = ("name", "trainable", "dtype", "seed")
_WIDTH_KEYS = ("filters", "units")


@dataclasses.dataclass(frozen=True)
class TableLayer:
    """A node priced by the table: its signature and the widths it may take.

    Attributes:
        index: the node's index in the graph.
        name: the node's name (for messages).
        key: a hash of `signature`, which names the table file.
        signature: layer class, its config without the widths, and the
            input's spatial size.
        template: the serialized layer, to rebuild it at any width.
        width_key: the config entry holding the output width (`filters`,
            `units`); None when the output width follows the input's
            (depthwise convolutions).
        spatial: the input's shape without batch and channels.
        in_axis: input widths to measure (sorted).
        out_axis: output widths to measure; None when tied to the input.
    """

    index: int
    name: str
    key: str
    signature: dict
    template: dict
    width_key: str | None
    spatial: tuple
    in_axis: tuple
    out_axis: tuple | None

    def request(self, cin, cout):
        """The `(layer_config, input_shape)` a target times for these widths."""
        config = json.loads(json.dumps(self.template))
        if self.width_key is not None:
            config["config"][self.width_key] = int(cout)
        return config, (1, *self.spatial, int(cin))

    def points(self):
        outs = self.out_axis if self.out_axis is not None else (None,)
        return [(cin, cout) for cin in self.in_axis for cout in outs]


def table_layers(graph, grid_size=5, reachable=True):
    """Node index -> `TableLayer` for each node the table prices.

    Args:
        graph: a `ChannelGraph` (`analyze`), dense or gated.
        grid_size: points per width axis. Defaults to 5.
        reachable: measure every width the budget can reach (from the
            channels no pruning removes, plus one per prunable part, up to
            the full width); False: only the widths the graph has now
            (a dense or stripped model to estimate).
    """
    result = {}
    for index, flat in enumerate(graph.flat.nodes):
        layer = flat.operation
        in_map, out_map = graph.in_maps(index)[0], graph.out_maps(index)[0]
        if not collapses_to_bias(layer) or in_map is None or out_map is None:
            continue
        template = keras.layers.serialize(layer)
        config = template.get("config", {})
        in_shape = tuple(graph.flat.tensors[flat.inputs[0]].shape)
        if config.get("groups", 1) != 1 or None in in_shape[1:]:
            continue
        template = {k: v for k, v in template.items() if k != "build_config"}
        width_key = next((key for key in _WIDTH_KEYS if key in config), None)
        signature = {
            "class": template.get("registered_name") or template.get("class_name"),
            "module": template.get("module"),
            "config": {k: v for k, v in config.items() if _affects_speed(k, width_key)},
            "spatial": list(in_shape[1:-1]),
        }
        key = hashlib.sha1(json.dumps(signature, sort_keys=True, default=str).encode())
        in_axis = _axis(graph, in_map, grid_size, reachable)
        out_axis = None if width_key is None else _axis(graph, out_map, grid_size, reachable)
        result[index] = TableLayer(
            index,
            flat.name,
            key.hexdigest()[:16],
            signature,
            template,
            width_key,
            in_shape[1:-1],
            in_axis,
            out_axis,
        )
    return result


def _affects_speed(key, width_key):
    if key in _SPEED_FREE or key == width_key:
        return False
    return not key.endswith(("_initializer", "_regularizer", "_constraint"))


def _axis(graph, channel_map, grid_size, reachable):
    """Widths to measure on one axis: `grid_size` points from the fewest
    channels the budget can leave to the full width."""
    full, least = 0, 0
    for segment in channel_map:
        full += segment.length
        root = None if segment.group is None else graph.groups.find(segment.group)
        fixed = root is None or graph.groups.is_protected(root)
        least += segment.length if fixed else 1
    if not reachable or least >= full or grid_size < 2:
        return (full,)
    return tuple(
        sorted({round(least + (full - least) * k / (grid_size - 1)) for k in range(grid_size)})
    )


class Interpolated:
    """Latency of one layer at any widths, from a measured grid.

    Bilinear between grid points, clamped at the grid's ends; the grid is
    made non-decreasing along both widths first, so more channels never
    predict less time. Works on numbers (the hard counts) and on backend
    tensors (the relaxed cost, differentiable in the widths).

    Args:
        in_axis: measured input widths (sorted).
        out_axis: measured output widths, or None (tied to the input).
        seconds: `len(in_axis) x len(out_axis)` seconds (one column when tied).
    """

    def __init__(self, in_axis, out_axis, seconds):
        self.in_axis = [float(w) for w in in_axis]
        self.out_axis = None if out_axis is None else [float(w) for w in out_axis]
        values = np.asarray(seconds, "float64").reshape(len(self.in_axis), -1)
        values = np.maximum.accumulate(np.maximum.accumulate(values, axis=0), axis=1)
        self.values = values

    def __call__(self, cin, cout):
        if _is_number(cin) and (self.out_axis is None or _is_number(cout)):
            rows = _tent_numbers(float(cin), self.in_axis)
            cols = [1.0] if self.out_axis is None else _tent_numbers(float(cout), self.out_axis)
            return float(np.asarray(rows) @ self.values @ np.asarray(cols))
        # A constant per call: a tensor kept across calls would belong to
        # the first traced graph only.
        values = ops.convert_to_tensor(self.values.astype("float32"))
        rows = _tent_tensors(cin, self.in_axis)
        tied = self.out_axis is None
        cols = ops.ones((1,), "float32") if tied else _tent_tensors(cout, self.out_axis)
        return ops.sum(rows[:, None] * cols[None, :] * values)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating))


def _tent_numbers(x, grid):
    """Weights of the grid points for `x` (piecewise-linear hat functions)."""
    if len(grid) == 1:
        return [1.0]
    x = min(max(x, grid[0]), grid[-1])
    weights = []
    for i, point in enumerate(grid):
        parts = []
        if i > 0:
            parts.append((x - grid[i - 1]) / (point - grid[i - 1]))
        if i < len(grid) - 1:
            parts.append((grid[i + 1] - x) / (grid[i + 1] - point))
        weights.append(min(max(min(parts), 0.0), 1.0))
    return weights


def _tent_tensors(x, grid):
    """`_tent_numbers` in backend ops, differentiable in `x`."""
    x = ops.cast(x, "float32")
    if len(grid) == 1:
        return ops.ones((1,), "float32")
    x = ops.clip(x, grid[0], grid[-1])
    weights = []
    for i, point in enumerate(grid):
        parts = []
        if i > 0:
            parts.append((x - grid[i - 1]) / (point - grid[i - 1]))
        if i < len(grid) - 1:
            parts.append((grid[i + 1] - x) / (grid[i + 1] - point))
        weight = parts[0] if len(parts) == 1 else ops.minimum(parts[0], parts[1])
        weights.append(ops.clip(weight, 0.0, 1.0))
    return ops.stack(weights)


def _fused(operation):
    """Folded or fused by the runtime into the op before it: free."""
    if is_batch_normalization(operation):
        return True
    if find_support(operation) is None or getattr(operation, "weights", None):
        return False
    if known_activation(operation) == "relu":
        return True
    # A ReLU layer capped at 6 (MobileNets) runs as the runtime's RELU6.
    cap = getattr(operation, "max_value", None)
    slope = float(getattr(operation, "negative_slope", 0.0) or 0.0)
    return cap is not None and math.isclose(float(cap), 6.0) and slope == 0.0


class LatencyModel:
    """Latency of each node of one graph, from a `LatencyTable`.

    Args:
        table: a `LatencyTable` holding every layer of the graph.
        graph: the `ChannelGraph` to price.
        reachable: the graph will be pruned: the table must cover every
            width the budget can reach (True), or only the widths it has.

    Raises:
        LatencyTableError: a layer of the graph is not in the table.
    """

    def __init__(self, table, graph, reachable=True):
        layers = table_layers(graph, table.grid_size, reachable)
        missing = [layer.name for layer in layers.values() if table.grid_for(layer) is None]
        if missing or table.seconds_per_elementwise_flop is None:
            raise LatencyTableError(
                f"The latency table ({table.target_name}) lacks "
                f"{', '.join(repr(n) for n in missing[:5]) or 'its elementwise probe'}"
                f"{' and more' if len(missing) > 5 else ''}: profile the model first "
                "(`table.profile(model)`), or pass a target to measure them."
            )
        self.functions = {}
        calibration = table.calibration or {}
        scale, fixed = calibration.get("scale", 1.0), calibration.get("fixed_s", 0.0)
        per_flop = scale * table.seconds_per_elementwise_flop
        for index, flat in enumerate(graph.flat.nodes):
            if index in layers:
                grid = table.grid_for(layers[index])
                seconds = scale * np.asarray(grid["seconds"], "float64")
                interpolated = Interpolated(grid["in"], grid["out"], seconds)
                # The calibration's fixed part rides on the first table layer:
                # it reads the model input, so it never collapses.
                self.functions[index] = _table_function(interpolated, fixed)
                fixed = 0.0
            elif not _fused(flat.operation):
                self.functions[index] = _elementwise_function(per_flop)

    def node_function(self, index):
        """`f(cin, cout, elementwise_flops) -> seconds` of node `index`, or
        None for a free node."""
        return self.functions.get(index)


def _table_function(interpolated, fixed=0.0):
    if fixed:
        return lambda cin, cout, elementwise: interpolated(cin, cout) + fixed
    return lambda cin, cout, elementwise: interpolated(cin, cout)


def _elementwise_function(per_flop):
    return lambda cin, cout, elementwise: elementwise * per_flop


def attach_latency_model(graph, model):
    """Makes every count of `graph` price latency with `model` (a
    `LatencyModel`; None removes it)."""
    graph.latency_model = model
    return graph


def has_latency(graph):
    """Whether counts of `graph` carry latency (a model is attached)."""
    return getattr(graph, "latency_model", None) is not None
