"""`relaxprune`: the command line for saved models.

    relaxprune count MODEL.keras [--input-shape 360 480 3]
    relaxprune report GATED.keras [--dense DENSE.keras] [--json] [--out DIR]
    relaxprune strip GATED.keras OUT_DIR [--threshold 0.05] [--formats keras tflite]
    relaxprune run --dataset cifar10 --model DENSE.keras --target 0.5 --out DIR

An error is one line on stderr (`relaxprune: error: ...`) and exit status 2;
warnings of keras_relaxprune are one line each (`relaxprune: warning: ...`).
What TensorFlow's native code writes to stderr while a command runs (start-up,
CPU-feature and converter logs) is discarded.
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import warnings

from keras_relaxprune_apps.model_files import load_model_file
from keras_relaxprune_apps.recipe import PRUNING_WEIGHT_DECAY

# export.FORMATS, known here without importing TensorFlow.
FORMATS = ("keras", "saved_model", "tflite")
# Read by TensorFlow's C++ logging and glog when TensorFlow is loaded.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2"}
# Warnings from the library and from this package are ours.
_PACKAGES = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (__file__, importlib.util.find_spec("keras_relaxprune").origin)
)


class CommandLineError(Exception):
    """A command line that argparse refused (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CommandLineError(f"{message} (see `{self.prog} --help`)")


def _parser():
    parser = _Parser(prog="relaxprune", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    count = commands.add_parser("count", help="params and FLOPs of a .keras model")
    count.add_argument("model", metavar="MODEL")
    count.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        metavar="SIZE",
        help="size of one sample without the batch, e.g. 360 480 3",
    )
    report = commands.add_parser("report", help="per-layer table of a gated model")
    report.add_argument("model", metavar="MODEL")
    report.add_argument("--dense", default=None, help="compare with this dense model")
    report.add_argument("--json", action="store_true", help="print JSON, not a table")
    report.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=(
            "also write pruning_report.json/.md, channels_kept.png and "
            "cost_per_stage.png into DIR (e.g. next to an exported model)"
        ),
    )
    strip = commands.add_parser("strip", help="strip a gated model and export it")
    strip.add_argument("model", metavar="MODEL")
    strip.add_argument("out_dir", metavar="OUT_DIR")
    strip.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="also remove channels whose gate is below this value in [0, 1)",
    )
    strip.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    _add_run_parser(commands)
    return parser


def _add_run_parser(commands):
    run = commands.add_parser(
        "run",
        help="prune a model on a dataset end to end",
        description="Prune, strip, fine-tune and export a model on a dataset; prints "
        "a before/after table and writes OUT/summary.json.",
    )
    run.add_argument(
        "--dataset",
        required=True,
        metavar="SPEC",
        help=(
            "cifar10, camvid, tfds:NAME or folder:PATH (class subfolders, or train/ "
            "with test/ or val/)"
        ),
    )
    run.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help=(
            "resnet20, resnet56, unet (untrained: needs --dense-epochs) or a trained "
            ".keras file (raw 0-255 RGB in, logits out)"
        ),
    )
    run.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="export directory, e.g. saved_models/resnet20_flops50",
    )
    run.add_argument(
        "--target",
        type=float,
        default=0.5,
        help="fraction of the cost to remove, in (0, 1) (default 0.5)",
    )
    run.add_argument(
        "--metric",
        choices=("flops", "params", "latency"),
        default="flops",
        help="the budget's cost; latency is predicted from per-layer timings on "
        "--latency-target, measured first and cached (default flops)",
    )
    run.add_argument(
        "--latency-target",
        choices=("tflite", "xla"),
        default="tflite",
        help="with --metric latency: LiteRT+XNNPACK batch 1, one thread (TensorFlow "
        "backend), or XLA-compiled Keras batch 1 (default tflite)",
    )
    run.add_argument(
        "--prune-epochs",
        type=int,
        default=3,
        help="epochs of the fit with PruningCallback: the budget ramps over the fewest "
        "epochs that hold 300 steps (at most 75%%) and closes, the rest fine-tune (default 3)",
    )
    run.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="epochs of a separate fine-tune of the stripped model; 0 (the default): the "
        "gated fit's rate decays with a cosine, else it is constant and the fine-tune's decays",
    )
    run.add_argument(
        "--dense-epochs",
        type=int,
        default=0,
        help="train the dense model first for this many epochs (default 0)",
    )
    run.add_argument("--train-limit", type=int, default=None, metavar="K")
    run.add_argument("--test-limit", type=int, default=None, metavar="K")
    run.add_argument("--batch-size", type=int, default=128)
    run.add_argument(
        "--lr",
        type=float,
        default=0.01,
        help="SGD-Nesterov's peak rate: cosine to 0 over the gated fit (with --epochs: "
        "constant there, then cosine to 0 in the fine-tune)",
    )
    run.add_argument(
        "--weight-decay",
        type=float,
        default=PRUNING_WEIGHT_DECAY,
        help="decoupled weight decay of the kernels in every fit, BatchNorm and biases "
        f"spared (default {PRUNING_WEIGHT_DECAY:g}; 0: none)",
    )
    run.add_argument(
        "--no-distill",
        dest="distill",
        action="store_false",
        help="train on labels only, without the dense model as teacher",
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--deterministic-ops",
        action="store_true",
        help="also ask the backend for deterministic ops (turns XLA off, about 2x "
        "slower; the seed alone repeats a run on one CPU machine)",
    )
    run.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="resize images (default: the model's input size)",
    )
    run.add_argument(
        "--latency-runs",
        type=int,
        default=100,
        help="timed TFLite invocations per model (default 100)",
    )
    run.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="fit verbosity: 0 silent, 1 progress bars, 2 one line per epoch",
    )


def main(argv=None):
    """Entry point of the `relaxprune` command; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help
        return done.code or 0
    except CommandLineError as error:
        return _fail(error)
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    notes, failure, status = [], None, 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _native_stderr_discarded():
                notes = _COMMANDS[args.command](args) or []
        except KeyboardInterrupt:
            failure, status = "interrupted", 130
        except Exception as error:
            failure = error
    _show_warnings(caught)
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    return 0 if failure is None else _fail(failure, status)


def _count(args):
    import keras_relaxprune as krp
    from keras_relaxprune import arguments

    model = load_model_file(args.model, "MODEL")
    input_shape = (
        None
        if args.input_shape is None
        else arguments.input_shape(
            "count", "--input-shape", tuple(args.input_shape), model, cli=True
        )
    )
    flops = krp.count_flops(model, input_shape=input_shape)
    _print(json.dumps({"params": krp.count_params(model), "flops": flops}))


def _report(args):
    import keras_relaxprune as krp

    _check_directory(args.out, "--out")
    model = load_model_file(args.model, "MODEL")
    dense = load_model_file(args.dense, "--dense") if args.dense else None
    report = krp.pruning_report(dense, model) if dense else krp.pruning_report(model)
    _print(report.to_json(indent=1) if args.json else str(report))
    if args.out:
        from keras_relaxprune.reporting.charts import write_report_files

        written = write_report_files(report, dense if dense is not None else model, args.out)
        return [json.dumps({"written": written})]
    return []


def _strip(args):
    import keras_relaxprune as krp
    from keras_relaxprune import arguments
    from keras_relaxprune.errors import InvalidArgumentError

    threshold = (
        None
        if args.threshold is None
        else arguments.real(
            "strip",
            "--threshold",
            args.threshold,
            "a gate value in [0, 1), e.g. --threshold 0.05",
            low=0.0,
            high=1.0,
            high_open=True,
        )
    )
    _check_directory(args.out_dir, "OUT_DIR")
    model = load_model_file(args.model, "MODEL")
    if not any(isinstance(layer, krp.ChannelGate) for layer in arguments.models_in(model)):
        raise InvalidArgumentError(
            f"MODEL '{args.model}' has no ChannelGate layer: it is not a gated model "
            "(one made by add_gates), so there is nothing to strip. Pass the gated "
            "model saved after training; to export a dense model as it is, call "
            "krp.export(model, OUT_DIR) in Python."
        )
    small = krp.strip_pruning(model, threshold=threshold)
    written = krp.export(small, args.out_dir, formats=tuple(args.formats), pruned_from=model)
    _print(
        json.dumps(
            {"params": krp.count_params(small), "flops": krp.count_flops(small), "written": written}
        )
    )


def _run(args):
    from keras_relaxprune_apps.pruning_job import run_pruning_job

    summary = run_pruning_job(
        args.dataset,
        args.model,
        args.out,
        target=args.target,
        metric=args.metric,
        latency_target=args.latency_target,
        prune_epochs=args.prune_epochs,
        epochs=args.epochs,
        dense_epochs=args.dense_epochs,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        distill=args.distill,
        seed=args.seed,
        image_size=args.image_size,
        latency_runs=args.latency_runs,
        verbose=args.verbose,
        deterministic_ops=args.deterministic_ops,
    )
    _print(f"summary: {summary['summary_path']}")


_COMMANDS = {"count": _count, "report": _report, "strip": _strip, "run": _run}


def _check_directory(path, what):
    """Refuses an output directory that is an existing file, before any work."""
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        from keras_relaxprune.errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"{what} '{path}' is a file; pass a directory (created if needed)."
        )


def _print(text):
    print(text, flush=True)


def _fail(error, status=2):
    text = " ".join(str(error).split())
    known = isinstance(error, (str, CommandLineError)) or type(error).__module__.startswith(
        "keras_relaxprune"
    )
    if not known:
        text = f"{type(error).__name__}: {text}"
    print(f"relaxprune: error: {text}", file=sys.stderr, flush=True)
    return status


def _show_warnings(caught):
    """keras_relaxprune's own warnings, one line each; other libraries' dropped."""
    seen = set()
    for record in caught:
        text = " ".join(str(record.message).split())
        ours = os.path.abspath(record.filename).startswith(_PACKAGES)
        if not ours or text in seen:
            continue
        seen.add(text)
        print(f"relaxprune: warning: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _native_stderr_discarded():
    """Discards what is written to stderr (file descriptor 2 and `sys.stderr`)
    inside: TensorFlow's native logs ignore `TF_CPP_MIN_LOG_LEVEL` until its
    logging is initialised. Errors and warnings are printed after it."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2: nothing to protect
        saved = None
    if saved is not None:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


if __name__ == "__main__":
    raise SystemExit(main())
