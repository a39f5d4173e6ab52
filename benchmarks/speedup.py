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
  `keras_relaxprune.budget_closing.close_budget(graph, "flops", target,
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

Default ResNet-50 run (keep 0.5, 0.25, 0.1): about 10 minutes on 2 CPU cores. Results:
`benchmarks/results/speedup_cpu.md`.
"""

import argparse
import math
import os
import re
import shlex
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_relaxprune as krp  # noqa: E402
from keras_relaxprune.channel_graph import analyze  # noqa: E402
from keras_relaxprune.models import cifar_resnet  # noqa: E402
from keras_relaxprune.budget_closing import close_budget  # noqa: E402
from keras_relaxprune.option_types import positive_int  # noqa: E402

SPEEDUP_GOAL = 0.8    # speed-up >= 0.8 x FLOPs factor ...
FACTOR_LIMIT = 4.0    # ... where DECISIONS.md says it holds (TFLite, <= ~4x)
UNIFORM_GOAL = 1.10   # elsewhere: stripped <= 1.10 x uniform latency
OPEN_LOGIT = 10.0     # sigmoid(50 * 10) == 1.0 in float32: gates fully open

# Timed runs per model (all rounds together) and XLA batch, per model family.
# Measured on 2 shared EPYC cores: dense ResNet-50 at 224 takes 40-80 ms per
# image in TFLite (XNNPACK) and ~3 s per XLA batch of 32, so the default run
# (7 models) takes about 10 minutes; CIFAR nets are 20-50x cheaper.
DEFAULTS = {
    "resnet50": {"tflite_runs": 200, "xla_runs": 40, "batch": 32, "check": 2},
    "cifar": {"tflite_runs": 1000, "xla_runs": 80, "batch": 128, "check": 16},
    "quick": {"tflite_runs": 8, "xla_runs": 4, "batch": 16, "check": 4},
}


def say(*parts):
    print(*parts, flush=True)  # the log is read while a long run goes on


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50",
                   help="resnet50 or cifar_resnet<depth> (e.g. cifar_resnet56)")
    p.add_argument("--keep", type=float, nargs="+", default=None,
                   help="remaining FLOPs fractions; default 0.5 0.25 0.1 (0.5 with --quick)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="XLA batch; default 32 (ResNet-50), 128 (CIFAR), 256 on JAX")
    p.add_argument("--tflite-runs", type=positive_int, default=None)
    p.add_argument("--xla-runs", type=positive_int, default=None)
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="interleaved rounds the runs are split into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--round-to", type=positive_int, default=1,
                   help="N > 1 adds the pattern random+round<N>: the random widths "
                        "rounded to multiples of N by close_budget (default 1: off)")
    p.add_argument("--no-tflite", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="tiny test mode: cifar_resnet8, keep 0.5, few runs")
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
    if args.round_to < 1:
        raise SystemExit(f"--round-to: a positive integer, not {args.round_to}")
    return args


# Models -------------------------------------------------------------------

def build_dense(name):
    """The dense model and, for CIFAR ResNets, a builder of narrowed ones."""
    if name == "resnet50":
        model = keras.applications.ResNet50(
            weights=None, input_shape=(224, 224, 3), classes=1000)
        return model, None
    depth = int(name[len("cifar_resnet"):])
    return cifar_resnet(depth), lambda width: cifar_resnet(depth, width=width)


def gates_of(model):
    return [layer for layer in model.layers if isinstance(layer, krp.ChannelGate)]


def apply_ratios(gated, ratios):
    """Each group keeps its first ceil(r * channels) channels (at least one)."""
    for gate, ratio in zip(gates_of(gated), ratios):
        # -1e-9: r * c that is an integer up to rounding must not round up.
        kept = max(1, min(gate.channels, math.ceil(ratio * gate.channels - 1e-9)))
        mask = np.zeros(gate.channels, "float32")
        mask[:kept] = 1.0
        gate.keep_mask.assign(mask)
        gate.logits.assign(np.full(gate.channels, OPEN_LOGIT, "float32"))


def fit_masks(gated, dense_flops, target, base):
    """Scales the per-group ratios `base` so the hard FLOPs fraction is nearest `target`.

    The fraction only grows with the scale but moves in channel-sized
    steps, so bisection keeps the best fraction it has seen, not the last.
    """
    def fraction(scale):
        apply_ratios(gated, np.minimum(1.0, scale * base))
        return krp.count_flops(gated) / dense_flops

    low, high = 0.0, 1.0 / float(np.min(base))
    best = (abs(fraction(high) - target), high)
    for _ in range(40):
        middle = 0.5 * (low + high)
        value = fraction(middle)
        best = min(best, (abs(value - target), middle))
        low, high = (middle, high) if value < target else (low, middle)
    return fraction(best[1])


def output_diff(a, b, x):
    """(max abs diff of the outputs, max diff of the logits / max |logit|).

    Untrained nets give near-uniform (ResNet-50) or one-hot (CIFAR ResNet)
    softmax outputs, where an output diff hides errors: the logits do not.
    """
    out_a = keras.ops.convert_to_numpy(a(x, training=False))
    out_b = keras.ops.convert_to_numpy(b(x, training=False))
    logits_a, logits_b = logits(a, x), logits(b, x)
    relative = np.max(np.abs(logits_a - logits_b)) / np.max(np.abs(logits_a))
    return float(np.max(np.abs(out_a - out_b))), float(relative)


def logits(model, x):
    """The final Dense layer's pre-activation output (the model output otherwise)."""
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense):
        return keras.ops.convert_to_numpy(model(x, training=False))
    features = keras.Model(model.input, last.input)(x, training=False)
    kernel, *bias = last.get_weights()
    return keras.ops.convert_to_numpy(features) @ kernel + (bias[0] if bias else 0.0)


def project_rounded(gated, dense_flops, target, base, round_to):
    """Masks from `close_budget(..., round_to)` ranking the random pattern `base`.

    Channel `i` of a group with base ratio `b` and `c` channels gets the
    rank value `log(b * c / (i + 0.5))`, written into the logits so that
    `sigmoid(scale * logits)` orders the channels by it. A threshold on it
    keeps the first `~ s * b * c` channels of every group (capped at `c`),
    i.e. the scaled random pattern of `fit_masks`; the projection removes
    the lowest-ranked channels in units that keep each group at a multiple
    of `round_to` (or whole), until the hard FLOPs fraction is <= `target`.
    Then the gates are opened (logits = OPEN_LOGIT) as for the other patterns.
    """
    gates = gates_of(gated)
    for gate, ratio in zip(gates, base):
        rank = np.log(ratio * gate.channels / (np.arange(gate.channels) + 0.5))
        scale = float(keras.ops.convert_to_numpy(gate.scale))
        gate.logits.assign((rank / scale).astype("float32"))
        gate.keep_mask.assign(np.ones(gate.channels, "float32"))
    graph = analyze(gated)
    masks = close_budget(graph, "flops", target, round_to=round_to)
    for root, keep in masks.items():
        graph.gates[root].keep_mask.assign(keep)
    for gate in gates:
        gate.logits.assign(np.full(gate.channels, OPEN_LOGIT, "float32"))
    return krp.count_flops(gated) / dense_flops


def group_widths(gated):
    """`[(kept, size), ...]` of the gated channel groups (graph order)."""
    graph = analyze(gated)
    keep = graph.keep_vectors()
    return [(int(round(float(np.sum(keep[root])))), int(keep[root].size))
            for root in graph.gated_groups()]


def stripped(dense, target, base, check_x, round_to=None):
    """(stripped model, FLOPs fraction, (abs, relative) output diff, group widths).

    `round_to=None`: masks from `fit_masks` (nearest the target); an integer:
    from `project_rounded` (at or below the target, multiples of it).
    """
    gated = krp.add_gates(dense)
    dense_flops = krp.count_flops(dense)
    if round_to is None:
        fraction = fit_masks(gated, dense_flops, target, base)
    else:
        fraction = project_rounded(gated, dense_flops, target, base, round_to)
        if fraction > target + 1e-9:
            say(f"  NOTE: round_to={round_to} cannot reach FLOPs fraction {target:.4f}: "
                f"every group keeps at least min({round_to}, size) channels; "
                f"landed at {fraction:.4f}")
    small = krp.strip_pruning(gated)
    if krp.count_flops(small) != krp.count_flops(gated):
        say(f"  WARNING: count_flops(stripped) {krp.count_flops(small):,} != "
            f"hard count of the gated model {krp.count_flops(gated):,}")
    return small, fraction, output_diff(gated, small, check_x), group_widths(gated)


def uniform_width(builder, dense_flops, keep, full_width=16):
    """The CIFAR width whose FLOPs fraction is nearest `keep`, and that fraction."""
    guess = full_width * math.sqrt(keep)  # FLOPs grow about as width squared
    best = None
    for width in {max(1, math.floor(guess)), max(1, math.ceil(guess))}:
        fraction = krp.count_flops(builder(width)) / dense_flops
        best = min(best or (9.0, 0, 0), (abs(fraction - keep), width, fraction))
    return best[1], best[2]


def build_variants(args, dense, builder, check_x):
    """The models to time: `dense`, and per keep the stripped ones and their baseline.

    Returns `(models, variants)`: name -> model, and one dict per stripped
    model with its keep, pattern, FLOPs fraction, params, exactness and the
    name of the uniform baseline it is compared with.
    """
    dense_flops = krp.count_flops(dense)
    groups = len(gates_of(krp.add_gates(dense)))
    # One seeded draw for all keeps: the random pattern differs only in scale.
    random_base = np.random.default_rng(args.seed).uniform(0.3, 1.0, size=groups)
    models, variants = {"dense": dense}, []
    say(f"{args.model}: {dense_flops:,} FLOPs, {dense.count_params():,} params, "
        f"{groups} channel groups")
    for keep in args.keep:
        target, baseline = keep, f"{keep:g}/uniform"
        if builder is not None:
            width, target = uniform_width(builder, dense_flops, keep)
            baseline = f"{keep:g}/baseline"
            models[baseline] = builder(width)
            say(f"keep {keep:g}: baseline cifar_resnet(width={width}) has FLOPs "
                f"fraction {target:.4f}; the stripped models target it")
        patterns = [("uniform", np.ones(groups), None), ("random", random_base, None)]
        if args.round_to > 1:
            patterns.append((f"random+round{args.round_to}", random_base, args.round_to))
        for pattern, base, round_to in patterns:
            start = time.perf_counter()
            small, fraction, diff, group_kept = stripped(
                dense, target, base, check_x, round_to)
            name = f"{keep:g}/{pattern}"
            models[name] = small
            variants.append({
                "name": name, "keep": keep, "pattern": pattern, "baseline": baseline,
                "target": target, "round_to": round_to or 1,
                "flops_fraction": fraction, "params": small.count_params(),
                "max_abs_diff": diff[0], "logit_rel_diff": diff[1],
                "group_widths": group_kept,
            })
            say(f"keep {keep:g} {pattern}: FLOPs fraction {fraction:.4f}, params "
                f"{small.count_params():,}, widths {widths(small)}, max abs diff "
                f"{diff[0]:.2e}, logits relative {diff[1]:.1e} "
                f"({time.perf_counter() - start:.0f} s)")
            say(f"  group widths (kept/size): "
                f"{' '.join(f'{k}/{n}' for k, n in group_kept)}")
    return models, variants


def widths(model):
    """Output channels of the convolutions, compressed (for the log)."""
    counts = [layer.filters for layer in model.layers
              if isinstance(layer, keras.layers.Conv2D)]
    return f"{len(counts)} convs, min {min(counts)}, max {max(counts)}, first 8 {counts[:8]}"


# Timing -------------------------------------------------------------------

def interleaved(runners, runs, rounds, label):
    """Seconds per call of each runner: `{name: {"median": s, "p10": s}}`.

    The runners take turns, `runs / rounds` calls each per round, and the
    order flips every round. On the shared 2-core machine a call runs at
    one of two speeds (whether another job holds a core), switching every
    few seconds; short turns give every model the same mix of both. The
    10th percentile estimates the speed of the quiet machine.
    """
    times = {name: [] for name in runners}
    rounds = max(1, min(rounds, runs))
    per_round = max(1, math.ceil(runs / rounds))
    names = list(runners)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            for _ in range(per_round):
                start = time.perf_counter()
                runners[name]()
                times[name].append(time.perf_counter() - start)
        if (round_index + 1) % max(1, rounds // 5) == 0 or round_index + 1 == rounds:
            medians = ", ".join(f"{n} {1000 * statistics.median(t):.1f}"
                                for n, t in times.items())
            say(f"  {label} after round {round_index + 1}/{rounds}, medians (ms): {medians}")
    return {name: {"median": statistics.median(t), "p10": float(np.percentile(t, 10))}
            for name, t in times.items()}


def tflite_runners(models, sample, workdir):
    """name -> a call running the model's `.tflite` once at batch 1."""
    from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 (TF only)

    runners = {}
    for index, (name, model) in enumerate(models.items()):
        start = time.perf_counter()
        path = krp.export(model, os.path.join(workdir, f"m{index}"),
                          formats=("tflite",))["tflite"]
        interpreter = Interpreter(model_path=path, num_threads=2)
        tensor = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(tensor, sample.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(tensor, sample)
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        # A wrong conversion would make every latency meaningless.
        reference = keras.ops.convert_to_numpy(model(sample, training=False))
        say(f"  tflite {name}: {os.path.getsize(path) / 2**20:.1f} MiB, vs Keras "
            f"max abs diff {np.max(np.abs(output - reference)):.1e} "
            f"({time.perf_counter() - start:.0f} s)")
        for _ in range(2):  # warm-up: first invokes allocate and pack weights
            interpreter.invoke()
        runners[name] = interpreter.invoke
    return runners


def xla_runners(models, batch):
    """name -> a call of `predict_on_batch` compiled with XLA (compiled here)."""
    batch = keras.ops.convert_to_tensor(batch)
    runners = {}
    for name, model in models.items():
        model.compile(jit_compile=True)
        start = time.perf_counter()
        model.predict_on_batch(batch)  # compiles
        compiled = time.perf_counter() - start
        model.predict_on_batch(batch)
        say(f"  xla {name}: compiled in {compiled:.0f} s")
        # predict_on_batch returns numpy, so each call waits for the result.
        runners[name] = lambda m=model: m.predict_on_batch(batch)
    return runners


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
            row = {**variant, "model": args.model, "runtime": runtime,
                   "batch": 1 if runtime == "tflite" else args.batch_size,
                   "flops_factor": 1.0 / variant["flops_fraction"]}
            for stat, suffix in (("median", ""), ("p10", "_p10")):
                row.update({key + suffix: value for key, value in
                            ratios(runtime, variant, row["flops_factor"],
                                   {k: v[stat] for k, v in seconds.items()}).items()})
            rows.append(row)
    return rows


def ratios(runtime, variant, factor, seconds):
    dense, small = seconds["dense"], seconds[variant["name"]]
    uniform = seconds[variant["baseline"]]
    speedup = dense / small
    name, met = goal(runtime, variant["keep"], factor, speedup, small / uniform,
                     variant["name"] == variant["baseline"])
    return {
        "dense_ms": 1000 * dense, "stripped_ms": 1000 * small,
        "uniform_ms": 1000 * uniform, "speedup": speedup,
        "speedup_over_factor": speedup / factor,
        "stripped_over_uniform": small / uniform, "goal": name, "met": met,
    }


COLUMNS = (
    ("model", "{}"), ("keep", "{:g}"), ("pattern", "{}"), ("flops_fraction", "{:.3f}"),
    ("flops_factor", "{:.2f}"), ("params", "{:,}"), ("max_abs_diff", "{:.1e}"),
    ("logit_rel_diff", "{:.1e}"), ("runtime", "{}"), ("batch", "{}"), ("dense_ms", "{:.2f}"), ("stripped_ms", "{:.2f}"),
    ("uniform_ms", "{:.2f}"), ("speedup", "{:.2f}"), ("speedup_over_factor", "{:.2f}"),
    ("stripped_over_uniform", "{:.3f}"), ("goal", "{}"), ("met", "{}"),
)
P10_COLUMNS = (
    ("model", "{}"), ("keep", "{:g}"), ("pattern", "{}"), ("runtime", "{}"),
    ("dense_ms_p10", "{:.2f}"), ("stripped_ms_p10", "{:.2f}"), ("uniform_ms_p10", "{:.2f}"),
    ("speedup_p10", "{:.2f}"), ("speedup_over_factor_p10", "{:.2f}"),
    ("stripped_over_uniform_p10", "{:.3f}"), ("goal_p10", "{}"), ("met_p10", "{}"),
)


def table(rows, columns):
    """A markdown table of the rows."""
    def cell(row, key, form):
        if key.startswith("met"):
            return {True: "met", False: "NOT met", None: "-"}[row[key]]
        return form.format(row[key])

    lines = ["| " + " | ".join(key for key, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row, k, f) for k, f in columns) + " |")
    return "\n".join(lines)


def environment(args):
    """Date, command, backend and library versions, device."""
    versions = [f"keras {keras.__version__}"]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415 (only on TF)

        versions.append(f"tensorflow {tf.__version__}")
    elif backend == "jax":
        import jax  # noqa: PLC0415 (only on JAX)

        versions.append(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    return "\n".join([
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"command: {shlex.join(['python', *sys.argv])}",
        f"backend: {backend} ({', '.join(versions)})",
        f"device: {cpu_name()}, {os.cpu_count()} logical CPUs visible; {args.note or '-'}",
        f"runs per model: tflite {args.tflite_runs if args.tflite else 0} (batch 1, "
        f"2 threads), xla {args.xla_runs} (batch {args.batch_size}), in "
        f"{args.rounds} interleaved rounds; medians",
    ])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


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
    say("\nThe same ratios from 10th percentiles (the quiet machine):\n"
        + table(rows, P10_COLUMNS))
    say(f"wall time: {time.perf_counter() - started:.0f} s")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
