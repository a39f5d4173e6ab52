"""Latency of dense vs stripped networks at several FLOPs keep fractions.

For each requested keep fraction `k` (remaining FLOPs / dense FLOPs) the
benchmark builds, without any training:

* `uniform`: `krp.add_gates(dense)` with every channel group keeping its
  first `ceil(r * channels)` channels, one ratio `r` for all groups, found
  by bisection so that the hard FLOPs fraction is as close to `k` as the
  channel counts allow; gate logits are set to 10 (gates = 1.0), then
  `krp.strip_pruning`. This is the best case a channel pruner can produce.
* `random`: the same with a different ratio per group (seeded uniform draws,
  scaled together by bisection to the same FLOPs), i.e. the non-uniform
  widths a real pruner ends with.
* `random+round<N>` (with `--round-to N`, N > 1): the same random per-group
  pattern, but the masks come from the library's channel rounding,
  `keras_relaxprune.budget.closing.close_budget(graph, "flops", target,
  round_to=N)`: the gate logits rank channel `i` of a group with base ratio
  `b` and `c` channels by `b * c / (i + 0.5)` (so a global threshold gives
  the scaled random pattern), and the projection keeps a multiple of `N`
  channels per group (or the whole group), hard FLOPs <= the target.
* a uniformly narrowed dense baseline of equal FLOPs (METHOD.md, "Speed is
  not FLOPs"). CIFAR ResNet: `cifar_resnet(depth, width=w)` built from
  scratch, `w` the width whose FLOPs are nearest `k`; the stripped models
  then target that net's exact FLOPs fraction, so the comparison is at equal
  FLOPs (and `uniform` has the very same layer widths: the difference is
  what removal leaves behind). ResNet-50: keras.applications has no width
  option, so the `uniform` stripped model itself is the baseline.

Every stripped model is checked against its gated model on one batch (max
abs diff of the outputs, and of the logits relative to the largest one).
Latency is the median of all timed runs (a second table repeats the ratios
from 10th percentiles), models interleaved in short turns so the drift of a
shared machine hits all alike:

(a) TFLite (LiteRT interpreter, `num_threads=2`), batch 1, float32, written by
    `krp.export(model, dir, formats=("tflite",))`; TensorFlow backend only.
(b) Keras `predict_on_batch` with `jit_compile=True` (XLA), batch 32
    (ResNet-50) or 128 (CIFAR); on JAX (256 by default) only this one.

Goals (DECISIONS.md, "Measured limits"): TFLite batch 1 with a requested
keep >= 0.25 (cuts up to 4x): speed-up >= 0.8 x FLOPs factor; everywhere
else: stripped latency within 10% of the uniform net of equal FLOPs.

    python benchmarks/speedup.py                          # ResNet-50, 224x224
    python benchmarks/speedup.py --model cifar_resnet56 --keep 0.5 0.25 0.1
    python benchmarks/speedup.py --model cifar_resnet56 --keep 0.25 0.1 --round-to 8
    KERAS_BACKEND=jax python benchmarks/speedup.py --batch-size 256

The models come from `speedup_variants.py`, the timing from
`latency_timing.py`. Default ResNet-50 run (keep 0.5, 0.25, 0.1): about 10
minutes on 2 CPU cores. Results: `benchmarks/results/speedup_cpu.md`.
"""

import argparse
import os
import re
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from keras_relaxprune_apps import device_name, number_type, positive_int

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from latency_timing import interleaved, say, tflite_runners, xla_runners
from speedup_variants import build_dense, build_variants

SPEEDUP_GOAL = 0.8  # speed-up >= 0.8 x FLOPs factor ...
FACTOR_LIMIT = 4.0  # ... where DECISIONS.md says it holds (TFLite, <= ~4x)
UNIFORM_GOAL = 1.10  # elsewhere: stripped <= 1.10 x uniform latency
KEEP_FRACTION = number_type(0.0, 1.0, low_open=True)  # remaining FLOPs, (0, 1]

# Timed runs per model (all rounds together) and XLA batch, per model family.
# Measured on 2 shared EPYC cores: dense ResNet-50 at 224 takes 40-80 ms per
# image in TFLite (XNNPACK) and ~3 s per XLA batch of 32, so the default run
# (7 models) takes about 10 minutes; CIFAR nets are 20-50x cheaper.
DEFAULTS = {
    "resnet50": {"tflite_runs": 200, "xla_runs": 40, "batch": 32, "check": 2},
    "cifar": {"tflite_runs": 1000, "xla_runs": 80, "batch": 128, "check": 16},
    "quick": {"tflite_runs": 8, "xla_runs": 4, "batch": 16, "check": 4},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="resnet50", help="resnet50 or cifar_resnet<depth> (e.g. cifar_resnet56)"
    )
    p.add_argument(
        "--keep",
        type=KEEP_FRACTION,
        nargs="+",
        default=None,
        help="remaining FLOPs fractions; default 0.5 0.25 0.1 (0.5 with --quick)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="XLA batch; default 32 (ResNet-50), 128 (CIFAR), 256 on JAX",
    )
    p.add_argument("--tflite-runs", type=positive_int, default=None)
    p.add_argument("--xla-runs", type=positive_int, default=None)
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=None,
        help="interleaved rounds the runs are split into",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--round-to",
        type=positive_int,
        default=1,
        help="N > 1 adds the pattern random+round<N>: the random widths "
        "rounded to multiples of N by close_budget (default 1: off)",
    )
    p.add_argument("--no-tflite", action="store_true")
    p.add_argument(
        "--quick", action="store_true", help="tiny test mode: cifar_resnet8, keep 0.5, few runs"
    )
    p.add_argument("--note", default="", help="free text for the report")
    args = p.parse_args(argv)
    return _resolve(args)


def _resolve(args):
    if args.quick:
        args.model = "cifar_resnet8"
    args.keep = args.keep or ([0.5] if args.quick else [0.5, 0.25, 0.1])
    family = "quick" if args.quick else "resnet50" if args.model == "resnet50" else "cifar"
    if family == "cifar" and not re.fullmatch(r"cifar_resnet\d+", args.model):
        raise SystemExit(f"--model: resnet50 or cifar_resnet<depth>, not {args.model!r}")
    defaults = DEFAULTS[family]
    jax = keras.backend.backend() == "jax"
    if args.batch_size is None:
        args.batch_size = 256 if jax and not args.quick else defaults["batch"]
    args.tflite_runs = args.tflite_runs or defaults["tflite_runs"]
    args.xla_runs = args.xla_runs or defaults["xla_runs"]
    args.rounds = args.rounds or (2 if args.quick else 40)
    args.check_batch = defaults["check"]
    args.tflite = keras.backend.backend() == "tensorflow" and not args.no_tflite
    return args


# Report -------------------------------------------------------------------


def goal(runtime, keep, factor, speedup, versus_uniform, is_baseline):
    """(which goal applies, met?) following DECISIONS.md's measured limits.

    The requested keep picks the goal: keep 0.25 may land on a factor of
    4.002, which is still the "up to ~4x" case.
    """
    if runtime == "tflite" and 1.0 / keep <= FACTOR_LIMIT:
        return f">= {SPEEDUP_GOAL} x factor", speedup >= SPEEDUP_GOAL * factor
    if is_baseline:
        return "(is the uniform net)", None
    return f"<= {UNIFORM_GOAL:.2f} x uniform", versus_uniform <= UNIFORM_GOAL


def make_rows(args, variants, latencies):
    """One row per stripped model and runtime, latencies in milliseconds.

    The main columns use medians; the `_p10` ones repeat the ratios from
    10th percentiles, a check against the machine's two-speed noise.
    """
    rows = []
    for variant in variants:
        for runtime, seconds in latencies.items():
            row = {
                **variant,
                "model": args.model,
                "runtime": runtime,
                "batch": 1 if runtime == "tflite" else args.batch_size,
                "flops_factor": 1.0 / variant["flops_fraction"],
            }
            for stat, suffix in (("median", ""), ("p10", "_p10")):
                row.update(
                    {
                        key + suffix: value
                        for key, value in ratios(
                            runtime,
                            variant,
                            row["flops_factor"],
                            {k: v[stat] for k, v in seconds.items()},
                        ).items()
                    }
                )
            rows.append(row)
    return rows


def ratios(runtime, variant, factor, seconds):
    dense, small = seconds["dense"], seconds[variant["name"]]
    uniform = seconds[variant["baseline"]]
    speedup = dense / small
    name, met = goal(
        runtime,
        variant["keep"],
        factor,
        speedup,
        small / uniform,
        variant["name"] == variant["baseline"],
    )
    return {
        "dense_ms": 1000 * dense,
        "stripped_ms": 1000 * small,
        "uniform_ms": 1000 * uniform,
        "speedup": speedup,
        "speedup_over_factor": speedup / factor,
        "stripped_over_uniform": small / uniform,
        "goal": name,
        "met": met,
    }


COLUMNS = (
    ("model", "{}"),
    ("keep", "{:g}"),
    ("pattern", "{}"),
    ("flops_fraction", "{:.3f}"),
    ("flops_factor", "{:.2f}"),
    ("params", "{:,}"),
    ("max_abs_diff", "{:.1e}"),
    ("logit_rel_diff", "{:.1e}"),
    ("runtime", "{}"),
    ("batch", "{}"),
    ("dense_ms", "{:.2f}"),
    ("stripped_ms", "{:.2f}"),
    ("uniform_ms", "{:.2f}"),
    ("speedup", "{:.2f}"),
    ("speedup_over_factor", "{:.2f}"),
    ("stripped_over_uniform", "{:.3f}"),
    ("goal", "{}"),
    ("met", "{}"),
)
P10_COLUMNS = (
    ("model", "{}"),
    ("keep", "{:g}"),
    ("pattern", "{}"),
    ("runtime", "{}"),
    ("dense_ms_p10", "{:.2f}"),
    ("stripped_ms_p10", "{:.2f}"),
    ("uniform_ms_p10", "{:.2f}"),
    ("speedup_p10", "{:.2f}"),
    ("speedup_over_factor_p10", "{:.2f}"),
    ("stripped_over_uniform_p10", "{:.3f}"),
    ("goal_p10", "{}"),
    ("met_p10", "{}"),
)


def table(rows, columns):
    """A markdown table of the rows."""

    def cell(row, key, form):
        if key.startswith("met"):
            return {True: "met", False: "NOT met", None: "-"}[row[key]]
        return form.format(row[key])

    lines = ["| " + " | ".join(key for key, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row, k, f) for k, f in columns) + " |")
    return "\n".join(lines)


def environment(args):
    """Date, command, backend and library versions, device."""
    versions = [f"keras {keras.__version__}"]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        versions.append(f"tensorflow {tf.__version__}")
    elif backend == "jax":
        import jax

        versions.append(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    return "\n".join(
        [
            f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
            f"command: {shlex.join(['python', *sys.argv])}",
            f"backend: {backend} ({', '.join(versions)})",
            f"device: {device_name(accelerators=False)}; {args.note or '-'}",
            f"runs per model: tflite {args.tflite_runs if args.tflite else 0} (batch 1, "
            f"2 threads), xla {args.xla_runs} (batch {args.batch_size}), in "
            f"{args.rounds} interleaved rounds; medians",
        ]
    )


def main(argv=None):
    """Runs the benchmark, prints the table, returns the rows (list of dicts)."""
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    say(environment(args))
    dense, builder = build_dense(args.model)
    shape = tuple(dense.input_shape[1:])
    rng = np.random.default_rng(args.seed)
    sample = lambda n: rng.normal(size=(n, *shape)).astype("float32")  # noqa: E731
    models, variants = build_variants(args, dense, builder, sample(args.check_batch))
    latencies = {}
    if args.tflite:
        with tempfile.TemporaryDirectory() as workdir:
            runners = tflite_runners(models, sample(1), workdir)
            latencies["tflite"] = interleaved(runners, args.tflite_runs, args.rounds, "tflite")
    runners = xla_runners(models, sample(args.batch_size))
    latencies["xla"] = interleaved(runners, args.xla_runs, args.rounds, "xla")
    rows = make_rows(args, variants, latencies)
    say("\nMedians:\n" + table(rows, COLUMNS))
    say("\nThe same ratios from 10th percentiles (the quiet machine):\n" + table(rows, P10_COLUMNS))
    say(f"wall time: {time.perf_counter() - started:.0f} s")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
