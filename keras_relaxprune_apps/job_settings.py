"""The settings of a pruning job: checked before any work, and the claim on
its checkpoints folder that lets the same job resume and refuses another's."""

import json
import os
from pathlib import Path

import keras

from keras_relaxprune import arguments
from keras_relaxprune.errors import ArgumentTypeError, InvalidArgumentError
from keras_relaxprune_apps.job_data import dataset_spec
from keras_relaxprune_apps.model_files import load_model_file

WHERE = "run_pruning_job"
NAMED_MODELS = ("resnet20", "resnet56", "unet")
METRICS = ("flops", "params", "latency")
LATENCY_TARGETS = ("tflite", "xla")


_RESUMABLE = (
    "dataset",
    "model",
    "target",
    "metric",
    "latency_target",
    "prune_epochs",
    "epochs",
    "dense_epochs",
    "train_limit",
    "batch_size",
    "lr",
    "weight_decay",
    "distill",
    "seed",
    "image_size",
)


def claim_checkpoints(s):
    """Sets `s["checkpoints"]` (`out/checkpoints`); refuses to resume another
    job's checkpoints there and records this job's."""
    s["checkpoints"] = Path(s["out"]) / "checkpoints"
    job = json.loads(json.dumps({k: s[k] for k in _RESUMABLE}, default=str))
    record = s["checkpoints"] / "job.json"
    if record.is_file() and json.loads(record.read_text()) != job:
        raise InvalidArgumentError(
            f"{WHERE}: '{s['checkpoints']}' holds the checkpoints of another job "
            f"({record}); delete that folder or pass another out."
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(job))


def checked_settings(given):
    """The arguments of `run_pruning_job`, checked before any work."""
    check = arguments.Checks(WHERE)
    s = dict(given)
    s["target"] = check.real(
        "target",
        s["target"],
        "a fraction strictly between 0 and 1, e.g. 0.5 to remove half",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    s["metric"] = check.choice("metric", s["metric"], METRICS)
    s["latency_target"] = check.choice("latency_target", s["latency_target"], LATENCY_TARGETS)
    for name, low in (
        ("prune_epochs", 1),
        ("epochs", 0),
        ("dense_epochs", 0),
        ("batch_size", 1),
        ("latency_runs", 1),
        ("seed", 0),
    ):
        s[name] = check.integer(name, s[name], f"a whole number >= {low}", low=low)
    for name in ("train_limit", "test_limit"):
        if s[name] is not None:
            s[name] = (
                check.integer(name, s[name], "a number of images >= 1, or None for all", low=1)
                if s[name]
                else None
            )
    s["lr"] = check.real("lr", s["lr"], "a learning rate > 0, e.g. 0.01", low=0.0, low_open=True)
    s["weight_decay"] = check.real(
        "weight_decay", s["weight_decay"], "a weight decay >= 0, e.g. 0.05 (0: none)", low=0.0
    )
    s["verbose"] = check.integer("verbose", s["verbose"], "0, 1 or 2", low=0, high=2, bool_ok=True)
    for name in ("distill", "deterministic_ops"):
        s[name] = arguments.boolean(WHERE, name, s[name])
    if s["image_size"] is not None:
        pair = tuple(s["image_size"]) if isinstance(s["image_size"], (list, tuple)) else ()
        if len(pair) != 2:
            raise InvalidArgumentError(
                f"{WHERE}: image_size={arguments.shown(s['image_size'])} is not a "
                "(height, width) pair; pass two sizes, e.g. 32 32."
            )
        s["image_size"] = tuple(
            check.integer("image_size", v, "two sizes >= 1, e.g. 32 32", low=1) for v in pair
        )
    s["out"] = check.path("out", s["out"])
    if os.path.exists(s["out"]) and not os.path.isdir(s["out"]):
        raise InvalidArgumentError(
            f"{WHERE}: out='{s['out']}' is a file; pass a directory (created if needed)."
        )
    s["dataset"] = dataset_spec(s["dataset"])
    s["model_object"], s["model"] = model_spec(s["model"])
    return s


def model_spec(spec):
    """`(model or None, name or path)`: a model object, a named model, or a file."""
    if isinstance(spec, keras.Model):
        return spec, spec.name
    if not isinstance(spec, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"{WHERE}: model={arguments.shown(spec)} is a {type(spec).__name__}; pass "
            f"one of {', '.join(NAMED_MODELS)}, a .keras file or a keras.Model."
        )
    text = os.fspath(spec)
    if text in NAMED_MODELS:
        return None, text
    if os.path.splitext(text)[1].lower() not in (".keras", ".h5", ".hdf5"):
        raise InvalidArgumentError(
            f"{WHERE}: model='{text}' is neither a model name nor a .keras file; pass "
            f"one of {', '.join(NAMED_MODELS)} or the path of a trained .keras model."
        )
    return load_model_file(text, "model"), text
