"""What a pruning job records and shows: where it ran, its files and its before/after table.

The jobs (`examples/`, `benchmarks/`, `relaxprune run`) write a record of
each run (`run_record`, `save_trained`, `write_summary`), export the
stripped model and time it against the dense one (`export_and_time`), and
print one before/after table (`print_before_after`).
"""

import os
import platform
import tempfile

import keras
import numpy as np


def device_name(accelerators=True):
    """What a job ran on, for its record: the accelerators, else the CPU.

    Args:
        accelerators: name the accelerators where there are any; `False`
            names the CPU (for what runs there, e.g. TFLite). Defaults to `True`.

    Returns:
        `"1 x NVIDIA H200"` (the device kind where the JAX backend names
        it), the devices Keras lists on other backends, or the CPU's model
        name, its logical cores and architecture, e.g.
        `"CPU (Intel(R) Xeon(R) Platinum 8481C, 2 cores, x86_64)"`.

    Example:

    >>> device_name()  # doctest: +SKIP
    'CPU (AMD EPYC 7B13, 2 cores, x86_64)'
    """
    found = [d for d in keras.distribution.list_devices() if "cpu" not in d.lower()]
    if not found or not accelerators:
        model = _cpu_model()
        return f"CPU ({model + ', ' if model else ''}{os.cpu_count()} cores, {platform.machine()})"
    if keras.backend.backend() == "jax":
        import jax

        return f"{len(found)} x " + ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return f"{len(found)} x " + ", ".join(found)


def _cpu_model():
    """The CPU's model name from `/proc/cpuinfo`, else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor()


def run_record(start, seed, script=None, argv=()):
    """The facts every job record carries: where it ran and how to run it again.

    Args:
        start: `time.time()` when the job (this run of it) started.
        seed: the job's random seed.
        script: the job's path as a user types it (`"examples/x.py"`), or
            `None` for a job called from Python.
        argv: the job's arguments (a list).

    Returns:
        A dict: `seed`, `backend`, `keras_version`, `device`, `date`,
        `wall_time_s` (of this run: a resumed job counts from its restart)
        and, with a `script`, the `command`.

    Example:

    >>> run_record(start, 0, "examples/prune_cifar10.py", [])["command"]  # doctest: +SKIP
    'python examples/prune_cifar10.py'
    """
    import time

    record = {
        "seed": seed,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "device": device_name(),
        "date": time.strftime("%Y-%m-%d"),
        "wall_time_s": round(time.time() - start),
    }
    if script is not None:
        record["command"] = " ".join(["python", script, *argv])
    return record


def save_trained(model, out_dir, name, record):
    """Saves `model` as `out_dir/name.keras` with its record beside it.

    Args:
        model: the trained Keras model.
        out_dir: the folder (created if missing).
        name: the file stem.
        record: a JSON-serialisable dict; `"model"` (the file name) is
            added first.

    Returns:
        The record as written (also printed).
    """
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{name}.keras")
    record = {"model": f"{name}.keras", **record}
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return record


def export_and_time(dense, small, sample, out, latency_runs=100, pruned_from=None):
    """Exports the stripped model; file sizes and TFLite latency of both.

    Args:
        dense: the dense model (exported to a temporary folder to measure it).
        small: the stripped model, exported into `out`.
        sample: one input batch (e.g. `x[:1]`) for the batch-1 latency.
        out: the export folder (`krp.export`).
        latency_runs: timed TFLite invocations per model; 0 writes and
            measures the `.keras` file only. Defaults to 100.
        pruned_from: the gated model, to write the pruning report too.

    Returns:
        A dict: `exported` (format -> path), `dense_`/`pruned_` `keras_bytes`,
        `tflite_bytes` and `tflite_latency_ms` (median). On a backend other
        than TensorFlow, or with `latency_runs=0`, only the `.keras` file is
        written and measured.

    Example:

    >>> export_and_time(dense, small, x_test[:1], "saved_models/small")  # doctest: +SKIP
    """
    from keras_relaxprune import export
    from keras_relaxprune.exporting.latency import tflite_latency

    if keras.backend.backend() != "tensorflow" or not latency_runs:  # TF writes the others
        written = export(small, out, formats=("keras",))
        return {
            "exported": {k: str(v) for k, v in written.items()},
            "pruned_keras_bytes": os.path.getsize(written["keras"]),
        }
    written = export(small, out, pruned_from=pruned_from)
    sample = np.asarray(sample, "float32")
    with tempfile.TemporaryDirectory() as tmp:
        dense_files = export(dense, tmp, formats=("keras", "tflite"))
        sizes = {
            "dense_keras_bytes": os.path.getsize(dense_files["keras"]),
            "dense_tflite_bytes": os.path.getsize(dense_files["tflite"]),
        }
        dense_latency = tflite_latency(dense_files["tflite"], sample, runs=latency_runs)
    pruned_latency = tflite_latency(written["tflite"], sample, runs=latency_runs)
    return {
        "exported": {k: str(v) for k, v in written.items()},
        **sizes,
        "pruned_keras_bytes": os.path.getsize(written["keras"]),
        "pruned_tflite_bytes": os.path.getsize(written["tflite"]),
        "dense_tflite_latency_ms": 1000 * dense_latency["median_s"],
        "pruned_tflite_latency_ms": 1000 * pruned_latency["median_s"],
    }


def print_before_after(title, summary, quality_rows=()):
    """Prints a job's before/after table with `rich`.

    Args:
        title: the table's title.
        summary: a dict with `dense_<key>` and `pruned_<key>` values for
            `flops`, `params`, `keras_bytes`, `tflite_bytes` and
            `tflite_latency_ms`, and `predicted_latency_s` (rows whose values
            are missing are left out).
        quality_rows: `(label, key)` pairs of fractions shown as
            percentages, their last column the change in percentage points,
            e.g. `("test accuracy", "accuracy")`.

    Example:

    >>> print_before_after("resnet20: before / after", summary,
    ...                    [("test accuracy", "accuracy")])  # doctest: +SKIP
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("", "dense", "pruned + stripped", "ratio / change"):
        table.add_column(column, justify="right" if column else "left")
    for label, key in quality_rows:
        before, after = summary[f"dense_{key}"], summary[f"pruned_{key}"]
        table.add_row(label, f"{before:.2%}", f"{after:.2%}", f"{100 * (after - before):+.2f} pt")
    rows = (
        ("FLOPs", "flops", ","),
        ("params", "params", ","),
        (".keras bytes", "keras_bytes", ","),
        (".tflite bytes", "tflite_bytes", ","),
        ("TFLite batch-1 latency (ms)", "tflite_latency_ms", ".3f"),
        ("predicted latency (s)", "predicted_latency_s", ".2e"),
    )
    for name, key, form in rows:
        before, after = summary.get(f"dense_{key}"), summary.get(f"pruned_{key}")
        if before is None or after is None:
            continue
        table.add_row(name, format(before, form), format(after, form), f"{after / before:.2f}x")
    Console().print(table)


def write_summary(summary, path, announce=True):
    """Writes a job's summary as JSON to `path` (its folder created) and
    records the path in it as `summary_path`.

    Args:
        summary: the job's summary dict (JSON-serialisable).
        path: the file to write.
        announce: print where it is. Defaults to `True`.

    Returns:
        The path written, as a `Path`.

    Example:

    >>> write_summary({"pruned_accuracy": 0.85}, "runs/job/summary.json")  # doctest: +SKIP
    summary: runs/job/summary.json
    """
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary["summary_path"] = str(path)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    if announce:
        print(f"summary: {path}")
    return path
