"""`LatencyTable`: per-layer latency measured on a target, cached on disk.

For each layer signature (layer class, its config without the widths, and
the input's spatial size) the table holds grids of measured seconds over
(input width, output width): the widths the budget can reach, a few points
per axis, interpolated in between (`latency_model.Interpolated`). Layers
with one signature share their measurements. Each signature's grids are
one JSON file under `cache_dir`, named by target, machine and signature:
`<target>/<machine>/<signature hash>.json`, so a table measured once is
read back instead of measured again, and can be copied to another machine
of the same kind.
"""

import json
import os
import pathlib

import keras

from keras_relaxprune import arguments
from keras_relaxprune.cost.count import sized_graph
from keras_relaxprune.errors import InvalidArgumentError, LatencyTableError
from keras_relaxprune.graph.flat_graph import as_functional
from keras_relaxprune.latency.latency_model import table_layers
from keras_relaxprune.latency.latency_targets import (
    TFLiteTarget,
    elementwise_probe,
    machine_name,
    target_name,
    time_requests,
)

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "keras_relaxprune", "latency")
_VERSION = 1
# Layers timed per progress-bar step (and per conversion of `TFLiteTarget`).
_BATCH = 64


class LatencyTable:
    """Per-layer latency on a target runtime, measured once and cached.

    `profile(model)` times every layer of `model` that the table does not
    hold yet, at `grid_size` widths per axis between the fewest channels the
    budget can leave and the full width (fewer for layers whose widths
    cannot change), with a progress bar; measured grids are written to
    `cache_dir` and read from there next time. `add_gates(...,
    metric="latency", latency_table=table)` profiles the model and saves
    the table in the gated model; `estimate_latency` reads it.

    Args:
        target: the runtime to measure on: a `TFLiteTarget`, an
            `XLATarget`, or any object with a `name` and a
            `time_layer(layer_config, input_shape)` method
            (`LatencyTarget`). Defaults to `TFLiteTarget(num_threads=1)`.
        cache_dir: folder of the table files; None: the environment
            variable `KERAS_RELAXPRUNE_LATENCY_CACHE`, else
            `~/.cache/keras_relaxprune/latency`; False: no files.
        grid_size: measured widths per axis. Defaults to 5.
        verbose: show a progress bar while measuring. Defaults to 1.

    Example:

    ```python
    table = krp.LatencyTable(krp.TFLiteTarget(num_threads=1)).profile(model)
    krp.estimate_latency(model, table)  # seconds, predicted
    gated = krp.add_gates(model, metric="latency", latency_table=table)
    ```
    """

    def __init__(self, target=None, cache_dir=None, grid_size=5, verbose=1):
        self.target = TFLiteTarget(num_threads=1) if target is None else target
        if not hasattr(self.target, "time_layer") and not hasattr(self.target, "time_layers"):
            raise InvalidArgumentError(
                f"LatencyTable: target must have a `time_layer(layer_config, "
                f"input_shape)` method (see krp.LatencyTarget); got {self.target!r}."
            )
        self.grid_size = arguments.integer(
            "LatencyTable", "grid_size", grid_size, "a number of widths >= 2 (default 5)", low=2
        )
        self.verbose = verbose
        self.target_name = target_name(self.target)
        self.machine = machine_name()
        if cache_dir is None:
            cache_dir = os.environ.get("KERAS_RELAXPRUNE_LATENCY_CACHE", DEFAULT_CACHE_DIR)
        self.cache_dir = None if cache_dir is False else pathlib.Path(cache_dir).expanduser()
        self.entries = {}  # signature key -> {"signature": ..., "grids": [...]}
        self.seconds_per_elementwise_flop = None
        self.calibration = None  # `calibrate`: {"fixed_s": a, "scale": b, ...}
        self.measured = 0  # layer timings made by this object (0: all read back)

    @property
    def folder(self):
        """Where this target's tables for this machine live (None: no cache)."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / self.target_name / self.machine

    def profile(self, model, input_shape=None, reachable=True):
        """Measures the layers of `model` the table lacks; returns the table.

        Args:
            model: a Keras functional model, dense, gated or stripped.
            input_shape: the input shape without batch, for a model whose
                spatial size is unknown.
            reachable: measure every width the budget can reach (for
                `add_gates`); False: only the widths the model has.

        Returns:
            The table itself.
        """
        model = as_functional(arguments.model("LatencyTable.profile", "model", model))
        return self.profile_graph(sized_graph(model, input_shape), reachable)

    def profile_graph(self, graph, reachable=True):
        """`profile` for a `ChannelGraph`."""
        missing, positions, requests = {}, {}, []
        for layer in table_layers(graph, self.grid_size, reachable).values():
            self._load(layer)
            if self.grid_for(layer) is not None:
                continue
            missing.setdefault((layer.key, layer.in_axis, layer.out_axis), layer)
            known = self._known_points(layer.key)
            for point in layer.points():
                if point not in known and (layer.key, point) not in positions:
                    positions[(layer.key, point)] = len(requests)
                    requests.append(layer.request(*point))
        self._load_constants()
        probe = None
        if self.seconds_per_elementwise_flop is None:
            config, shape, probe = elementwise_probe()
            requests.append((config, shape))
        seconds = self._measure(requests)
        if probe is not None:
            self.seconds_per_elementwise_flop = seconds[-1] / probe
            self._save_constants()
        for layer in missing.values():
            points = self._known_points(layer.key)
            for point in layer.points():
                if point not in points:
                    points[point] = seconds[positions[(layer.key, point)]]
            self._add_grid(layer, points)
        return self

    def calibrate(self, model, keep=0.5, input_shape=None):
        """Fits the table's sum to whole-model timings of `model`; returns the table.

        Layers timed alone do not add up exactly to the model they come
        from (the runtime's per-model work, caches, fused ops). The target's
        `time_models` times `model` and a copy whose prunable channel
        groups keep their first `keep` of channels (stripped); the table
        then predicts `fixed_s + scale * (sum over layers)`, the line
        through both points. Needs a target with `time_models`
        (`TFLiteTarget` has one). The calibration is saved with the table
        (`get_config`) and applies to every model it prices: calibrate on
        the model you prune.

        Args:
            model: the dense model.
            keep: fraction of each prunable group kept in the narrow copy.
                Defaults to 0.5.
            input_shape: the input shape without batch, for a model whose
                spatial size is unknown.

        Returns:
            The table itself.
        """
        from keras_relaxprune.latency.latency_calibration import calibration_of

        self.profile(model, input_shape)
        self.calibration = None
        self.calibration = calibration_of(self, model, keep, input_shape)
        return self

    def grid_for(self, layer):
        """The smallest grid of `layer`'s signature that covers its axes, or None."""
        entry = self.entries.get(layer.key)
        if entry is None:
            return None
        covering = [
            grid
            for grid in entry["grids"]
            if _covers(grid["in"], layer.in_axis)
            and (layer.out_axis is None) == (grid["out"] is None)
            and (layer.out_axis is None or _covers(grid["out"], layer.out_axis))
        ]
        if not covering:
            return None
        return min(covering, key=lambda g: (len(g["in"]) * len(g["out"] or [1]), g["in"][-1]))

    def get_config(self):
        """The measured grids and constants (JSON-serialisable), without files."""
        return {
            "version": _VERSION,
            "target": self.target_name,
            "machine": self.machine,
            "grid_size": self.grid_size,
            "seconds_per_elementwise_flop": self.seconds_per_elementwise_flop,
            "calibration": self.calibration,
            "entries": self.entries,
        }

    @classmethod
    def from_config(cls, config, target=None, cache_dir=False):
        """A table holding the grids of `get_config()`; it measures with
        `target` (a `LatencyTarget`) if it must, and writes no files unless
        given `cache_dir`."""
        table = cls(
            target if target is not None else _Stored(config["target"]),
            cache_dir=cache_dir,
            grid_size=config.get("grid_size", 5),
            verbose=0,
        )
        table.machine = config.get("machine", table.machine)
        table.seconds_per_elementwise_flop = config.get("seconds_per_elementwise_flop")
        table.calibration = config.get("calibration")
        table.entries = json.loads(json.dumps(config.get("entries", {})))
        return table

    def _measure(self, requests):
        seconds = []
        bar = keras.utils.Progbar(len(requests), unit_name="layer") if self.verbose else None
        if bar is not None and requests:
            print(f"Measuring {len(requests)} layer widths on {self.target_name}")
        for start in range(0, len(requests), _BATCH):
            seconds += time_requests(self.target, requests[start : start + _BATCH])
            if bar is not None:
                bar.update(len(seconds))
        self.measured += len(requests)
        return seconds

    def _known_points(self, key):
        points = {}
        for grid in self.entries.get(key, {}).get("grids", []):
            outs = grid["out"] if grid["out"] is not None else [None]
            for i, cin in enumerate(grid["in"]):
                for j, cout in enumerate(outs):
                    points[(cin, cout)] = grid["seconds"][i][j]
        return points

    def _add_grid(self, layer, points):
        outs = layer.out_axis if layer.out_axis is not None else (None,)
        grid = {
            "in": list(layer.in_axis),
            "out": None if layer.out_axis is None else list(layer.out_axis),
            "seconds": [[points[(cin, cout)] for cout in outs] for cin in layer.in_axis],
        }
        entry = self.entries.setdefault(layer.key, {"signature": layer.signature, "grids": []})
        entry["grids"].append(grid)
        self._write(f"{layer.key}.json", entry)

    def _load(self, layer):
        if layer.key in self.entries or self.folder is None:
            return
        stored = self._read(f"{layer.key}.json")
        if stored is not None and stored.get("signature") == json.loads(
            json.dumps(layer.signature)
        ):
            self.entries[layer.key] = {"signature": stored["signature"], "grids": stored["grids"]}

    def _load_constants(self):
        if self.seconds_per_elementwise_flop is None and self.folder is not None:
            stored = self._read("constants.json")
            if stored is not None:
                self.seconds_per_elementwise_flop = stored["seconds_per_elementwise_flop"]

    def _save_constants(self):
        per_flop = self.seconds_per_elementwise_flop
        self._write("constants.json", {"seconds_per_elementwise_flop": per_flop})

    def _read(self, name):
        path = self.folder / name
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return stored if stored.get("version") == _VERSION else None

    def _write(self, name, content):
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        content = {"version": _VERSION, "target": self.target_name, **content}
        partial = self.folder / f".{name}.{os.getpid()}.partial"
        partial.write_text(json.dumps(content, indent=1))
        os.replace(partial, self.folder / name)  # readers never see half a file


def _covers(grid_axis, axis):
    return grid_axis[0] <= axis[0] and axis[-1] <= grid_axis[-1]


class _Stored:
    """The target of a table read back from a saved model: it cannot measure."""

    def __init__(self, name):
        self.name = name

    def time_layer(self, layer_config, input_shape):
        raise LatencyTableError(
            f"This latency table was read from a saved model ({self.name}) and "
            "cannot measure new layers: build a `LatencyTable(target)` and profile "
            "the model with it."
        )


def as_table(table_or_target):
    """A `LatencyTable`: `table_or_target` itself, or a new table measuring
    on it (a target)."""
    if isinstance(table_or_target, LatencyTable):
        return table_or_target
    return LatencyTable(table_or_target)


def table_for_gating(latency_table, metric, model, graph, input_shape=None):
    """The table config `add_gates` saves in the budget layer: `latency_table`
    (a table or a target) profiled at every width the budget can reach in
    `model` (`graph` is its channel graph); None without a table.

    Raises:
        LatencyTableError: `metric="latency"` without a table.
    """
    if latency_table is None:
        if metric == "latency":
            raise LatencyTableError(
                "add_gates(metric='latency') needs a latency table: pass "
                "`latency_table=krp.LatencyTable()` (measured with TFLite on this "
                "machine, then cached) or a `krp.LatencyTable(target)` for your runtime."
            )
        return None
    table = as_table(latency_table)
    table.profile_graph(graph if input_shape is None else sized_graph(model, input_shape))
    return table.get_config()
