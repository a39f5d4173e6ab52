"""Time to close the budget, as a ratio to one training step of the same model.

For each model (`keras.applications.MobileNetV2` and `ResNet50`, random
weights, 10 classes) the script gates it with `krp.add_gates` and times
`close_budget(graph, "flops", target)`, the closing step `PruningCallback`
runs when its budget ramp ends, for two gate states:

* tied: fresh gates, every logit equal (the worst case for a closing that
  re-counts the whole graph per candidate channel; Adam also moves the logits
  of a group in lockstep, so ties are common in real runs);
* random: logits drawn from N(0, 0.05), every value distinct.

One training step is `gated.train_on_batch(x, y)` on a fixed batch (Adam,
sparse categorical cross-entropy, Keras' default `jit_compile="auto"`), timed
after warm-up steps, median of the timed ones. The ratio closing / step says
how many training steps closing costs.

`--compare-with FILE` also times a previous `budget_closing.py` (e.g.
`git show <commit>:keras_relaxprune/budget_closing.py > /tmp/closing_old.py`;
before commit 21ed393 the module was `keras_relaxprune/projection.py`)
on the models named by `--compare-models`, with the same gates.

No TensorFlow import: it runs on any Keras backend.

    python benchmarks/closing_speed.py --note "2 shared CPU cores"
    python benchmarks/closing_speed.py --targets 0.3,0.5,0.7 \
        --compare-with /tmp/closing_old.py --compare-models mobilenet_v2,resnet50

Results: `benchmarks/results/closing_speed_cpu.md`.
"""

import argparse
import importlib.util
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune.budget import closing as budget_closing
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune_apps import device_name, non_negative_int, positive_int

MODELS = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mobilenet_v2,resnet50")
    p.add_argument("--mobilenet-size", type=positive_int, default=64, help="input pixels")
    p.add_argument("--resnet-size", type=positive_int, default=128, help="input pixels")
    p.add_argument(
        "--targets",
        default="0.5",
        help="remaining FLOPs fractions closing aims at, comma-separated",
    )
    p.add_argument("--round-to", type=positive_int, default=1)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--steps", type=positive_int, default=5, help="timed training steps")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed training steps")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed closings per case")
    p.add_argument(
        "--compare-with", default=None, help="a previous budget_closing.py to time beside this one"
    )
    p.add_argument("--compare-models", default="mobilenet_v2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="", help="free text for the report")
    p.add_argument(
        "--output",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "results", "closing_speed_cpu.md"
        ),
    )
    return p.parse_args(argv)


def load_module(path):
    spec = importlib.util.spec_from_file_location("previous_budget_closing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_gates(graph, state, seed):
    """Fresh (tied) or random (distinct) logits, every channel alive."""
    rng = np.random.default_rng(seed)
    for gate in graph.gates.values():
        if state == "tied":
            logits = np.full(gate.channels, gate.logits.numpy()[0], "float32")
        else:
            logits = rng.normal(0.0, 0.05, gate.channels).astype("float32")
        gate.logits.assign(logits)
        gate.keep_mask.assign(np.ones(gate.channels, "float32"))


def time_closing(module, graph, target, args, repeats):
    """(median seconds, remaining FLOPs fraction) of `module.close_budget`."""
    times, masks = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        masks = module.close_budget(graph, "flops", target, args.round_to)
        times.append(time.perf_counter() - start)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    return statistics.median(times), fraction


def time_step(gated, args, size):
    """Median seconds of one compiled `train_on_batch` after warm-up."""
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.batch_size, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size).astype("int32")
    gated.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    for _ in range(args.warmup):
        gated.train_on_batch(x, y)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        float(np.asarray(gated.train_on_batch(x, y)).ravel()[0])  # waits for the step
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_model(name, args, previous):
    size = args.mobilenet_size if name == "mobilenet_v2" else args.resnet_size
    model = MODELS[name](input_shape=(size, size, 3), weights=None, classes=10)
    gated = krp.add_gates(model)
    graph = analyze(gated)
    roots = graph.gated_groups()
    row = {
        "model": name,
        "size": size,
        "groups": len(roots),
        "channels": sum(graph.groups.size[root] for root in roots),
    }
    compare = previous is not None and name in args.compare_models.split(",")
    for state in ("tied", "random"):
        set_gates(graph, state, args.seed)
        for target in _targets(args):
            row[state, target] = time_closing(budget_closing, graph, target, args, args.repeats)
            if compare:
                print(
                    f"{name}, {state} gates, target {target}: timing the previous closing...",
                    flush=True,
                )
                row[state, target, "previous"] = time_closing(previous, graph, target, args, 1)
    set_gates(graph, "tied", args.seed)
    row["step"] = time_step(gated, args, size)
    print(f"{name}: {row}", flush=True)
    return row


def _targets(args):
    return [float(t) for t in args.targets.split(",")]


def report(args, rows, wall):
    lines = [
        "# Budget closing time vs one training step (CPU)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"- command: `{shlex.join(['python', *sys.argv])}`",
        f"- backend: {keras.backend.backend()} (keras {keras.__version__})",
        f"- device: {device_name()}",
        f"- note: {args.note or '-'}",
        f"- closing: `close_budget(graph, 'flops', target, round_to="
        f"{args.round_to})`, median of {args.repeats} runs (previous: 1 run)",
        f"- step: `train_on_batch`, batch {args.batch_size}, Adam, median of "
        f"{args.steps} after {args.warmup} warm-up steps",
        f"- wall time of the benchmark: {wall:.0f} s",
        "",
        "| model | input | groups | channels | gates | target | closing s "
        "| FLOPs left | step s | closing / step | previous closing s "
        "| previous FLOPs left |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        for state in ("tied", "random"):
            for target in _targets(args):
                seconds, fraction = row[state, target]
                before = row.get((state, target, "previous"))
                previous = f"{before[0]:.2f} | {before[1]:.4f}" if before else "- | -"
                lines.append(
                    f"| {row['model']} | {row['size']} px | {row['groups']} | "
                    f"{row['channels']} | {state} | {target} | {seconds:.3f} | "
                    f"{fraction:.4f} | {row['step']:.3f} | "
                    f"{seconds / row['step']:.3f} | {previous} |"
                )
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    previous = load_module(args.compare_with) if args.compare_with else None
    start = time.perf_counter()
    rows = [measure_model(name, args, previous) for name in args.models.split(",")]
    text = report(args, rows, time.perf_counter() - start)
    print(text)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
