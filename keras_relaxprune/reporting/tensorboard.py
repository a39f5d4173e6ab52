"""TensorBoard summaries of a pruning run, written by `PruningCallback`.

Everything goes into `log_dir/train`, the run `keras.callbacks.TensorBoard`
writes its training logs to, so the two share one dashboard:

- scalars, per epoch (`pruning/...`) and every N steps if asked
  (`pruning_steps/...`): remaining FLOPs and params (hard: what
  `strip_pruning` keeps; relaxed: the cost in the loss), the ramped
  target, lambda, the gate temperature, the freezing threshold, the alive
  channels in all and per channel group (`alive_channels/<group>`);
- a histogram of the gate values of each group (`gates/<group>`), on fixed
  buckets over [0, 1] so epochs compare;
- an image per epoch, channels kept vs original per layer
  (`pruning/channels_kept`), and at the end the pruning report as
  Markdown text (`pruning/report`).

Under the TensorFlow backend the summaries go through `tf.summary`. Under
JAX or PyTorch the records are written by the `tensorboard` package itself
(its protobufs and record writer; no tensorboardX, and TensorFlow is not
imported). Both give the same event files; the tensors and their plugin
metadata are built once, here, for both.
"""

import os
import socket
import sys
import time
import warnings

import keras
import numpy as np

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.reporting.charts import channels_kept_chart, report_markdown
from keras_relaxprune.reporting.report import pruning_report

RUN = "train"
GATE_BUCKETS = 20
_NO_FIT = object()

# Values of `PruningCallback`'s logs -> (tag, description).
_LOGGED = {
    "remaining_flops": (
        "remaining_flops",
        "Hard remaining FLOPs fraction: what "
        "strip_pruning keeps (the keep masks; at the epoch after "
        "which the budget closes, the masks the closing gives).",
    ),
    "remaining_params": (
        "remaining_params",
        "Hard remaining params fraction (as remaining_flops).",
    ),
    "pruning_target": ("target", "Remaining fraction the ramp asks for now."),
    "pruning_lambda": ("lambda", "Strength of the sparsity regulariser."),
    "gate_temperature": (
        "gate_temperature",
        "Inverse temperature (scale) of the gates: gate = sigmoid(scale * logit).",
    ),
}
_DESCRIPTIONS = {
    "relaxed_flops": "Relaxed remaining FLOPs fraction (gate values), as in the loss.",
    "relaxed_params": "Relaxed remaining params fraction (gate values).",
    "threshold": "Gates below this value are frozen off while over budget.",
    "alive_channels": "Channels with keep_mask 1, over all prunable groups.",
}


class PruningSummaries:
    """Writes the state of a `PruningCallback` as TensorBoard summaries.

    `PruningCallback(log_dir=...)` makes one; users do not build it. Where
    the summaries go: `log_dir/train` when `log_dir` is given, otherwise
    `<TensorBoard.log_dir>/train` of a `keras.callbacks.TensorBoard` in the
    same `fit` (in any position of the callback list), otherwise nowhere.

    Args:
        log_dir: directory of the TensorBoard logs, or `None`.
        every_n_steps: also write the scalars every this many training
            steps (tags `pruning_steps/...`, step = optimizer iterations).
            `None` writes per epoch only.
    """

    def __init__(self, log_dir=None, every_n_steps=None):
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(
                f"PruningCallback: log_every_n_steps={every_n_steps!r} must be "
                "a positive integer or None."
            )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.every_n_steps = every_n_steps
        self._writer = None
        self._fit = _NO_FIT  # the `params` dict of the fit being logged
        self._batches = 0
        self._last_epoch = None
        self._last_alive = None

    def write_epoch(self, callback, epoch, logs=None):
        """Writes scalars, gate histograms and the channels chart of `epoch`."""
        writer = self._writer_for(callback)
        if writer is None:
            return
        logs = logs or {}
        values = {k: logs[k] for k in (*_LOGGED, "remaining_latency") if k in logs}
        if not all(k in values for k in _LOGGED):
            values = callback._progress_logs()
        self._write_state(writer, callback, values, epoch)
        writer.flush()

    def write_step(self, callback):
        """Writes the scalars every `every_n_steps` calls (batch begin)."""
        writer = self._writer_for(callback) if self.every_n_steps else None
        if writer is None:
            return
        self._batches += 1  # after `_writer_for`, which restarts it in a new fit
        if self._batches == 1 or (self._batches - 1) % self.every_n_steps:
            return
        model = callback.model
        # JAX keeps the training state outside the variables between epochs.
        getattr(model, "jax_state_sync", lambda: None)()
        step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        scalars = _scalars(callback, callback._progress_logs())
        for name, (value, description) in scalars.items():
            if "/" not in name:
                writer.write(
                    f"pruning_steps/{name}",
                    np.float32(value),
                    step,
                    _metadata("scalars", description),
                )
        writer.flush()

    def write_train_end(self, callback):
        """Writes the final state (if the masks changed) and the report."""
        writer = self._writer
        if writer is None or self._last_epoch is None:
            self._close()
            return
        step = self._last_epoch
        if _alive(callback) != self._last_alive:  # the budget closed at the end
            step += 1
            self._write_state(writer, callback, callback._progress_logs(), step)
        report = _report(callback)
        text = np.array(report_markdown(report, title=None).encode(), dtype=object)
        writer.write(
            "pruning/report",
            text,
            step,
            _metadata("text", "Per-layer channels, params and FLOPs kept (pruning_report)."),
        )
        self._close()

    def _write_state(self, writer, callback, values, step):
        for name, (value, description) in _scalars(callback, values).items():
            tag = name if "/" in name else f"pruning/{name}"
            writer.write(tag, np.float32(value), step, _metadata("scalars", description))
        for name, gate in _named_gates(callback):
            buckets = _gate_buckets(keras.ops.convert_to_numpy(gate.gate_values()))
            writer.write(
                f"gates/{name}",
                buckets,
                step,
                _metadata("histograms", f"Gate values of the channel group of '{name}'."),
            )
        png = channels_kept_chart(
            _report(callback),
            _gated_model(callback),
            title=f"Channels kept per layer, epoch {step + 1}",
        )
        writer.write(
            "pruning/channels_kept",
            _image_tensor(png),
            step,
            _metadata("images", "Channels kept (blue) vs original (grey) per layer."),
        )
        self._last_epoch, self._last_alive = step, _alive(callback)

    def _writer_for(self, callback):
        if self._fit is not callback.params:  # a new fit: look again
            self._close()
            self._fit = callback.params
            directory = self.log_dir
            if directory is None:
                tensorboard = find_tensorboard_callback(callback)
                directory = None if tensorboard is None else tensorboard.log_dir
            if directory is not None:
                self._writer = _open_writer(os.path.join(directory, RUN))
        return self._writer

    def _close(self):
        if self._writer is not None:
            self._writer.close()
        self._writer, self._fit = None, _NO_FIT
        self._batches, self._last_epoch, self._last_alive = 0, None, None


def find_tensorboard_callback(callback):
    """The `keras.callbacks.TensorBoard` in the same `fit` as `callback`, or None."""
    return next(
        (
            each
            for each in internals.fellow_callbacks(callback)
            if isinstance(each, keras.callbacks.TensorBoard)
        ),
        None,
    )


def print_message(message, params=None):
    """Prints a line the way Keras' callbacks do, clear of the progress bar.

    With `fit(verbose=1)` the progress bar ends its epoch line only after
    every other callback has run, so the message starts on a new line.
    Without interactive logging (`keras.config.disable_interactive_logging`)
    it goes to absl logging, as Keras' own messages do.
    """
    if not keras.config.is_interactive_logging_enabled():
        from absl import logging

        logging.info(message)
        return
    verbose = (params or {}).get("verbose", 1)
    sys.stdout.write(("" if verbose in (0, 2) else "\n") + message + "\n")
    sys.stdout.flush()


def _scalars(callback, values):
    """Tag name -> (value, description) of every scalar summary."""
    budget = callback._budget
    scalars = {tag: (values[key], text) for key, (tag, text) in _LOGGED.items()}
    relaxed = budget.graph_cost().fractions(_soft_gates)
    progress = _number(budget.progress(budget.step)) if _number(budget.ramp_on) else 1.0
    threshold = _number(budget.initial_threshold) + progress * (
        _number(budget.final_threshold) - _number(budget.initial_threshold)
    )
    alive = _alive(callback)
    scalars.update(
        {
            "relaxed_flops": (_number(relaxed["flops"]), _DESCRIPTIONS["relaxed_flops"]),
            "relaxed_params": (_number(relaxed["params"]), _DESCRIPTIONS["relaxed_params"]),
            "threshold": (threshold, _DESCRIPTIONS["threshold"]),
            "alive_channels": (sum(alive), _DESCRIPTIONS["alive_channels"]),
        }
    )
    if "latency" in relaxed and "remaining_latency" in values:
        # Predicted from the latency table given to `add_gates`.
        scalars["remaining_latency"] = (
            values["remaining_latency"],
            "Hard remaining latency fraction, predicted from the latency table.",
        )
        scalars["relaxed_latency"] = (
            _number(relaxed["latency"]),
            "Relaxed remaining latency fraction (gate values), as in the loss.",
        )
    for (name, gate), count in zip(_named_gates(callback), alive):
        scalars[f"alive_channels/{name}"] = (
            count,
            f"Alive channels of the group of '{name}' (of {gate.channels}).",
        )
    return scalars


def _named_gates(callback):
    """(group name, gate) of each gated group, named by its first producer."""
    graph = callback._graph
    return [(graph.groups.producers[root][0], graph.gates[root]) for root in graph.gated_groups()]


def _alive(callback):
    return [
        int(np.sum(keras.ops.convert_to_numpy(gate.keep_mask)))
        for _, gate in _named_gates(callback)
    ]


def _gate_buckets(values):
    """`[left, right, count]` rows over fixed buckets of [0, 1]."""
    edges = np.linspace(0.0, 1.0, GATE_BUCKETS + 1)
    counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=edges)
    return np.stack([edges[:-1], edges[1:], counts], axis=1).astype("float64")


def _image_tensor(png):
    """The image plugin's tensor: width, height, then the encoded image."""
    width, height = (int.from_bytes(png[i : i + 4], "big") for i in (16, 20))
    return np.array([str(width).encode(), str(height).encode(), png], dtype=object)


def _report(callback):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # barriers were reported by add_gates
        return pruning_report(_gated_model(callback))


def _gated_model(callback):
    return callback._graph.flat.model


def _soft_gates(gate):
    return gate.gate_values()


def _number(value):
    return float(keras.ops.convert_to_numpy(value))


def _metadata(plugin, description):
    """`SummaryMetadata` of a tensor summary for one TensorBoard plugin."""
    try:
        from tensorboard.plugins.histogram import metadata as histograms
        from tensorboard.plugins.image import metadata as images
        from tensorboard.plugins.scalar import metadata as scalars
        from tensorboard.plugins.text import metadata as text
    except ImportError as error:
        raise ImportError(
            "PruningCallback(log_dir=...) and a TensorBoard callback need the "
            "tensorboard package: pip install keras-relaxprune[tensorboard]"
        ) from error
    module = {"scalars": scalars, "histograms": histograms, "images": images, "text": text}[plugin]
    return module.create_summary_metadata(display_name=None, description=description)


def _open_writer(directory):
    if keras.backend.backend() == "tensorflow":
        return _TensorFlowWriter(directory)
    return _EventFileWriter(directory)


class _TensorFlowWriter:
    """Writes through `tf.summary` (any file system TensorFlow knows)."""

    def __init__(self, directory):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(directory)

    def write(self, tag, value, step, metadata):
        tf = self._tf
        # record_if(True): a TensorBoard(update_freq=N) callback may have
        # pushed a condition that would drop summaries off its own steps.
        with self._writer.as_default(), tf.summary.record_if(True):
            tf.summary.write(
                tag, tf.constant(value), step=step, metadata=metadata.SerializeToString()
            )

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


class _EventFileWriter:
    """Writes event records with the `tensorboard` package, no TensorFlow."""

    def __init__(self, directory):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        os.makedirs(directory, exist_ok=True)
        name = (
            f"events.out.tfevents.{int(time.time()):010d}."
            f"{socket.gethostname()}.{os.getpid()}.{id(self)}.relaxprune"
        )
        self._records = RecordWriter(open(os.path.join(directory, name), "wb"))
        self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, tag, value, step, metadata):
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.util import tensor_util

        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(
                    tag=tag, metadata=metadata, tensor=tensor_util.make_tensor_proto(value)
                )
            ]
        )
        self._add(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def _add(self, event):
        self._records.write(event.SerializeToString())

    def flush(self):
        self._records.flush()

    def close(self):
        self._records.close()
