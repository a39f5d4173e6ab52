"""Latency targets: the runtimes a latency table is measured on.

A target times one layer at given input and output widths. Any object with
a `name` and a `time_layer(layer_config, input_shape) -> seconds` method is
a target (`LatencyTarget` documents the protocol); a target may also offer
`time_layers(requests) -> [seconds, ...]` to time many layers at once,
which the table prefers. Two are built in: `TFLiteTarget` (LiteRT with
XNNPACK, batch 1: the default) and `XLATarget` (the layer jit-compiled by
Keras on the current backend).

TensorFlow is imported only inside `TFLiteTarget`, when it measures: the
conversion to TFLite is export territory.
"""

import contextlib
import importlib.metadata
import io
import os
import platform
import re
import statistics
import tempfile
import time

import keras
import numpy as np

from keras_relaxprune.errors import LatencyTableError

# An activation layer timed alone prices elementwise work (`elementwise_probe`).
_ELEMENTWISE_PROBE = {
    "module": "keras.layers",
    "class_name": "Activation",
    "config": {"activation": "relu6"},
}
_ELEMENTWISE_SHAPE = (1, 32, 32, 64)
# A layer too small to take measurable time: the cost of one timed call.
_EMPTY_PROBE = {
    "module": "keras.layers",
    "class_name": "Activation",
    "config": {"activation": "linear"},
}
_EMPTY_SHAPE = (1, 1, 1, 1)
# Interleaved rounds a layer's timed runs are split into.
_ROUNDS = 3


class LatencyTarget:
    """The protocol of a latency target (subclassing it is optional).

    A target is any object with these members:

    - `name`: a short string naming the runtime and its settings (for
      example `"tflite-2.3.0-xnnpack-t1"`); table files are named by it.
    - `time_layer(layer_config, input_shape) -> float`: seconds of one
      forward pass of the layer `keras.layers.deserialize(layer_config)`
      on an input of `input_shape` (batch included), net of the target's
      own call overhead.
    - optionally `time_layers(requests) -> list of float`: the same for a
      list of `(layer_config, input_shape)` pairs, for targets that amortise
      a conversion or a compilation over many layers.

    Example:

    ```python
    class MyRuntime(krp.LatencyTarget):
        name = "my-npu-v2"

        def time_layer(self, layer_config, input_shape):
            layer = keras.layers.deserialize(layer_config)
            return my_npu.benchmark(layer, input_shape)  # seconds

    table = krp.LatencyTable(MyRuntime())
    ```
    """

    name = "custom"

    def time_layer(self, layer_config, input_shape):
        raise NotImplementedError

    def time_layers(self, requests):
        return [self.time_layer(config, shape) for config, shape in requests]


def time_requests(target, requests):
    """Seconds per `(layer_config, input_shape)` request, by `target`'s
    `time_layers` when it has one, else one `time_layer` call each."""
    requests = list(requests)
    if not requests:
        return []
    if hasattr(target, "time_layers"):
        seconds = list(target.time_layers(requests))
    else:
        seconds = [target.time_layer(config, shape) for config, shape in requests]
    if len(seconds) != len(requests) or not all(np.isfinite(s) and s >= 0 for s in seconds):
        raise LatencyTableError(
            f"Latency target {target_name(target)!r} returned {seconds!r} for "
            f"{len(requests)} layers: it must return one non-negative number of "
            "seconds per layer."
        )
    return [float(s) for s in seconds]


def target_name(target):
    """A target's `name`, checked: letters, digits, `.`, `_` and `-`."""
    name = str(getattr(target, "name", "") or type(target).__name__)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def elementwise_probe():
    """The request that prices one elementwise FLOP: (config, input_shape, FLOPs)."""
    return _ELEMENTWISE_PROBE, _ELEMENTWISE_SHAPE, float(np.prod(_ELEMENTWISE_SHAPE))


def machine_name():
    """This machine, for table file names: architecture and CPU model."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1]
                    break
    except OSError:
        pass
    cpu = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*", "", cpu)
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{platform.machine()}-{cpu}").strip("-").lower()


class TFLiteTarget(LatencyTarget):
    """Times layers in LiteRT (TFLite) with XNNPACK at batch 1.

    Layers are converted in batches: one `.tflite` conversion with one
    signature per layer, so a table of hundreds of layer widths needs a
    few conversions; each layer then runs as a model of its own (the
    median of `runs` invokes), less the time of an empty model (the cost
    of a call from Python). Needs the TensorFlow backend and `ai-edge-litert`;
    a table measured once is cached and can be read under any backend.

    Args:
        num_threads: interpreter threads. Defaults to 1.
        runs: timed invokes per layer; their median is kept. Defaults to 15.
        warmup: untimed calls of each signature first. Defaults to 2.
        batch_size: layers converted per `.tflite` file. Defaults to 128.

    Example:

    ```python
    table = krp.LatencyTable(krp.TFLiteTarget(num_threads=1)).profile(model)
    ```
    """

    def __init__(self, num_threads=1, runs=15, warmup=2, batch_size=128):
        self.num_threads = int(num_threads)
        self.runs, self.warmup, self.batch_size = int(runs), int(warmup), int(batch_size)

    @property
    def name(self):
        try:
            version = importlib.metadata.version("ai-edge-litert")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return f"tflite-{version}-xnnpack-t{self.num_threads}"

    def time_layer(self, layer_config, input_shape):
        return self.time_layers([(layer_config, input_shape)])[0]

    def time_layers(self, requests):
        if keras.backend.backend() != "tensorflow":
            raise LatencyTableError(
                "TFLiteTarget measures layers under the TensorFlow backend, not "
                f"{keras.backend.backend()!r}. Profile the table once with "
                "KERAS_BACKEND=tensorflow (it is cached and read under any backend), "
                "or use krp.XLATarget()."
            )
        requests = [(_EMPTY_PROBE, _EMPTY_SHAPE)] + list(requests)
        seconds = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            if start:
                chunk = [(_EMPTY_PROBE, _EMPTY_SHAPE)] + chunk
            timed = self._time_converted(_converted(chunk), len(chunk))
            seconds += [max(t - timed[0], 0.0) for t in timed[1:]]
        return seconds

    def _time_converted(self, flatbuffer, count):
        """Median seconds of each signature, each run as its own model.

        The interpreter applies XNNPACK to a model's first subgraph only
        (the others run the slower built-in kernels: 3x on a small
        convolution), so each signature's subgraph is written out as the
        only one of a model of its own, with only its own weights. The
        layers are then timed in interleaved rounds, so a burst of load
        on a shared machine spreads over all of them.
        """
        from ai_edge_litert.interpreter import Interpreter
        from tensorflow.lite.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
        subgraphs, signatures, buffers = model.subgraphs, model.signatureDefs, model.buffers
        by_name = {bytes(sig.signatureKey).decode(): sig for sig in signatures}
        empty = flatbuffer_utils.schema_fb.BufferT()
        calls = []
        for index in range(count):
            subgraph = subgraphs[by_name[f"layer_{index}"].subgraphIndex]
            used = {tensor.buffer for tensor in subgraph.tensors}
            model.subgraphs, model.signatureDefs = [subgraph], []
            model.buffers = [b if i in used or i == 0 else empty for i, b in enumerate(buffers)]
            single = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
            interpreter = Interpreter(model_content=single, num_threads=self.num_threads)
            calls.append(self._prepared(interpreter, index))
        model.subgraphs, model.signatureDefs, model.buffers = subgraphs, signatures, buffers
        times = [[] for _ in calls]
        rounds = min(_ROUNDS, self.runs)
        for _ in range(rounds):
            for index, invoke in enumerate(calls):
                for _ in range(-(-self.runs // rounds)):
                    started = time.perf_counter()
                    invoke()
                    times[index].append(time.perf_counter() - started)
        return [statistics.median(t) for t in times]

    def _prepared(self, interpreter, seed):
        """The interpreter's `invoke`, with an input set and warmed up."""
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        sample = np.random.default_rng(seed).random(detail["shape"], "float32")
        interpreter.set_tensor(detail["index"], sample)
        for _ in range(self.warmup):
            interpreter.invoke()
        return interpreter.invoke

    def time_models(self, models, runs=30):
        """Median seconds of whole Keras models at batch 1, exported with
        `krp.export` and timed in interleaved rounds by `tflite_latency`."""
        from keras_relaxprune.exporting.export import export
        from keras_relaxprune.exporting.latency import tflite_latency

        with tempfile.TemporaryDirectory() as folder:
            paths = [
                export(model, os.path.join(folder, f"m{i}"), formats=("tflite",))["tflite"]
                for i, model in enumerate(models)
            ]
            samples = [
                np.random.default_rng(0).random((1, *model.input_shape[1:]), "float32")
                for model in models
            ]
            times = [[] for _ in models]
            for _ in range(_ROUNDS):
                for index, path in enumerate(paths):
                    timed = tflite_latency(
                        path,
                        samples[index],
                        runs=-(-runs // _ROUNDS),
                        warmup=self.warmup,
                        num_threads=self.num_threads,
                    )
                    times[index].append(timed["median_s"])
        return [statistics.median(t) for t in times]


def _converted(requests):
    """One TFLite flatbuffer with a signature `layer_<i>` per request."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    functions = []
    for index, (config, shape) in enumerate(requests):
        layer = keras.layers.deserialize(config)
        layer.build(tuple(shape))

        def forward(x, layer=layer):
            return {"output": layer(x)}

        forward.__name__ = f"layer_{index}"
        spec = tf.TensorSpec(tuple(shape), tf.float32)
        function = tf.function(forward, input_signature=[spec]).get_concrete_function()
        # Frozen, so weights are constants XNNPACK can pack (a resource
        # variable would keep the layer out of the delegate).
        frozen = convert_variables_to_constants_v2(function)
        frozen.graph.name = f"layer_{index}"  # the converter names signatures by it
        functions.append(frozen)
    # With a trackable object the converter takes several functions (one
    # signature each); the frozen functions hold no variables to track.
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, tf.Module())
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints each save
        return converter.convert()


class XLATarget(LatencyTarget):
    """Times layers jit-compiled by Keras on the current backend.

    Each layer is wrapped in a one-layer model compiled with
    `jit_compile=True` and timed with `predict_on_batch` (median of `runs`
    calls), less the time of the same call on an empty model.

    Args:
        batch_size: the batch of the timed input. Defaults to 1.
        runs: timed calls per layer. Defaults to 20.

    Example:

    ```python
    table = krp.LatencyTable(krp.XLATarget(batch_size=32)).profile(model)
    ```
    """

    def __init__(self, batch_size=1, runs=20):
        self.batch_size, self.runs = int(batch_size), int(runs)
        self._empty = None

    @property
    def name(self):
        return f"xla-{keras.backend.backend()}-keras{keras.__version__}-b{self.batch_size}"

    def time_layer(self, layer_config, input_shape):
        if self._empty is None:
            self._empty = self._time(_EMPTY_PROBE, _EMPTY_SHAPE)
        return max(self._time(layer_config, input_shape) - self._empty, 0.0)

    def _time(self, layer_config, input_shape):
        shape = (self.batch_size, *tuple(input_shape)[1:])
        inputs = keras.Input(shape[1:], batch_size=self.batch_size)
        model = keras.Model(inputs, keras.layers.deserialize(layer_config)(inputs))
        model.compile(jit_compile=True)
        sample = np.random.default_rng(0).random(shape, "float32")
        for _ in range(2):
            model.predict_on_batch(sample)
        times = []
        for _ in range(self.runs):
            started = time.perf_counter()
            model.predict_on_batch(sample)
            times.append(time.perf_counter() - started)
        return statistics.median(times)
