"""Latency as a budget: prune to a predicted TFLite latency, then measure it.

For each model (the shipped ResNet-20, `saved_models/resnet20_cifar10_dense.keras`,
and `keras.applications.MobileNetV2` at 128x128, alpha 1.0, random weights)
the script, on the TensorFlow backend:

1. profiles a `krp.LatencyTable` on `krp.TFLiteTarget(num_threads=1)`
   (LiteRT + XNNPACK, batch 1) in a fresh cache folder, so the profiling
   time is real (`--cache-dir` reuses one);
2. gates the model with `add_gates(..., metric="latency", latency_table=table)`,
   starts the gates from the filters' L1 norms (`gate_prior="l1_norm"`, no
   training) and closes the budget to keep 0.5 of the predicted latency,
   and, from the same gates, 0.5 of the FLOPs; strips both;
3. draws `--samples` random stripped widths (each channel group keeps a
   uniform random 15-100% of its channels);
4. exports every model to `.tflite` and measures them all at batch 1, one
   thread, in interleaved rounds (`--rounds`, `--runs` invokes per model per
   round, `exporting.latency.tflite_latency`; medians over rounds);
5. reports: for the two budgets, the measured latency fraction of dense;
   for the random widths, the Pearson r of predicted vs measured latency,
   the mean absolute error in %, for the calibrated table
   (`LatencyTable.calibrate`: the dense model and a half-width copy timed
   whole) and the raw one, and the same r for the FLOPs count.

Results: `benchmarks/results/latency_budget/` (`results.md`, `results.json`,
`measured_vs_flops.png`).

    KERAS_BACKEND=tensorflow python benchmarks/latency_budget.py
    KERAS_BACKEND=tensorflow python benchmarks/latency_budget.py --samples 8 --rounds 3

`--accuracy` runs the plain call (one SGD fit of `--epochs` with a cosine
rate and `PruningCallback`, then `strip_pruning`) on CIFAR-10 with the
shipped ResNet-20, once with a latency budget and once with a FLOPs budget
per `--accuracy-targets` (kept fractions), and measures the stripped models
the same way (`--accuracy-file`); `benchmarks/latency_accuracy.py` compares
them at equal measured latency:

    KERAS_BACKEND=tensorflow python benchmarks/latency_budget.py --accuracy \
        --train-limit 10000 --epochs 3 --accuracy-targets 0.4 0.5 0.6
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune.budget.baselines import set_gate_prior
from keras_relaxprune.budget.closing import close_budget
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.exporting.latency import tflite_latency
from keras_relaxprune.layers.pruning_budget import link_budget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(*parts):
    print(*parts, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"])
    parser.add_argument("--target", type=float, default=0.5, help="kept fraction")
    parser.add_argument("--samples", type=int, default=20, help="random stripped widths")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10, help="invokes per model per round")
    parser.add_argument("--grid-size", type=int, default=5)
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/latency_budget"))
    parser.add_argument("--note", default="", help="a line for the results file")
    parser.add_argument(
        "--no-calibration", action="store_true", help="skip `LatencyTable.calibrate`"
    )
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="instead: the README recipe on CIFAR-10 with a latency and a FLOPs budget",
    )
    parser.add_argument("--accuracy-targets", type=float, nargs="+", default=[0.5])
    parser.add_argument("--accuracy-file", default="accuracy.json", help="in --out")
    parser.add_argument("--train-limit", type=int, default=None, help="CIFAR-10 subset")
    parser.add_argument("--epochs", type=int, default=3, help="of the pruning fit")
    return parser.parse_args(argv)


def load(name):
    if name == "resnet20":
        return keras.saving.load_model(
            os.path.join(ROOT, "saved_models/resnet20_cifar10_dense.keras")
        )
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(
            input_shape=(128, 128, 3), alpha=1.0, weights=None, classes=10
        )
    raise SystemExit(f"unknown model {name!r}")


def budget_models(gated, graph, target):
    """{"latency": (small, fractions), "flops": ...}: one closing per metric,
    from the same gates (the filters' L1 norms)."""
    set_gate_prior(graph, "l1_norm")
    result = {}
    for metric in ("latency", "flops"):
        masks = close_budget(graph, metric, target)
        for root, keep in masks.items():
            graph.gates[root].keep_mask.assign(keep)
        result[metric] = (
            krp.strip_pruning(gated),
            cost_fractions(graph, graph.keep_vectors()),
        )
        for root in masks:
            graph.gates[root].keep_mask.assign(np.ones(graph.groups.size[root], "float32"))
    return result


def random_models(gated, graph, samples, seed=0):
    """`samples` stripped models with random widths: (small, fractions)."""
    rng = np.random.default_rng(seed)
    roots = graph.gated_groups()
    result = []
    for _ in range(samples):
        for root in roots:
            size = graph.groups.size[root]
            keep = np.zeros(size, "float32")
            keep[: max(1, int(np.ceil(rng.uniform(0.15, 1.0) * size)))] = 1.0
            graph.gates[root].keep_mask.assign(keep)
        result.append((krp.strip_pruning(gated), cost_fractions(graph, graph.keep_vectors())))
    for root in roots:
        graph.gates[root].keep_mask.assign(np.ones(graph.groups.size[root], "float32"))
    return result


def measure(models, sample, rounds, runs, workdir):
    """Seconds per model over interleaved rounds of `tflite_latency`: the
    median over rounds of each round's median, and of its 10th percentile
    (the quiet-machine speed)."""
    paths = {}
    for name, model in models.items():
        folder = os.path.join(workdir, name)
        paths[name] = krp.export(model, folder, formats=("tflite",))["tflite"]
    times = {name: [] for name in models}
    fastest = {name: [] for name in models}
    names = list(models)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            timed = tflite_latency(paths[name], sample, runs=runs, warmup=2, num_threads=1)
            times[name].append(timed["median_s"])
            fastest[name].append(timed["p10_s"])
        say(
            f"  round {index + 1}/{rounds}: dense {1000 * statistics.median(times['dense']):.2f} ms"
        )
    medians = {name: statistics.median(t) for name, t in times.items()}
    return medians, {name: statistics.median(t) for name, t in fastest.items()}


def pearson(a, b):
    return float(np.corrcoef(np.asarray(a, "float64"), np.asarray(b, "float64"))[0, 1])


def run_model(name, args, workdir):
    say(f"== {name}")
    model = load(name)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="latency_cache_")
    table = krp.LatencyTable(
        krp.TFLiteTarget(num_threads=1), cache_dir=cache, grid_size=args.grid_size
    )
    started = time.perf_counter()
    table.profile(model)
    profile_s = time.perf_counter() - started
    say(f"  profiled {table.measured} layer widths in {profile_s:.0f} s")
    raw = krp.LatencyTable.from_config(table.get_config())  # without calibration
    if not args.no_calibration:
        started = time.perf_counter()
        table.calibrate(model)
        say(f"  calibrated in {time.perf_counter() - started:.0f} s: {table.calibration}")
    gated = krp.add_gates(model, metric="latency", latency_table=table)
    _, graph = link_budget(gated)
    budgets = budget_models(gated, graph, args.target)
    randoms = random_models(gated, graph, args.samples)
    models = {"dense": model, **{f"{m}_budget": small for m, (small, _) in budgets.items()}}
    models.update({f"random_{i}": small for i, (small, _) in enumerate(randoms)})
    predicted = {key: krp.estimate_latency(small, table) for key, small in models.items()}
    predicted_raw = {key: krp.estimate_latency(small, raw) for key, small in models.items()}
    sample = np.random.default_rng(0).random((1, *model.input_shape[1:]), "float32") * 255
    measured, quiet = measure(models, sample, args.rounds, args.runs, os.path.join(workdir, name))
    dense_m, dense_p = measured["dense"], predicted["dense"]
    rows = []
    for metric, (_, fractions) in budgets.items():
        key = f"{metric}_budget"
        rows.append(
            {
                "budget": f"{metric} {args.target}",
                "flops_fraction": fractions["flops"],
                "predicted_latency_fraction": fractions["latency"],
                "measured_latency_fraction": measured[key] / dense_m,
                "measured_p10_latency_fraction": quiet[key] / quiet["dense"],
                "measured_ms": 1000 * measured[key],
                "dense_ms": 1000 * dense_m,
            }
        )
    keys = [f"random_{i}" for i in range(len(randoms))]
    truth = [measured[k] for k in keys]
    prediction = {
        "samples": len(keys),
        "pearson_r_latency": pearson([predicted[k] for k in keys], truth),
        "pearson_r_raw_table": pearson([predicted_raw[k] for k in keys], truth),
        "pearson_r_flops": pearson([f["flops"] for _, f in randoms], truth),
        "pearson_r_latency_p10": pearson([predicted[k] for k in keys], [quiet[k] for k in keys]),
        "mean_abs_error_pct": 100
        * float(np.mean([abs(predicted[k] / measured[k] - 1) for k in keys])),
        "mean_abs_error_pct_raw_table": 100
        * float(np.mean([abs(predicted_raw[k] / measured[k] - 1) for k in keys])),
        "dense_predicted_ms": 1000 * dense_p,
        "dense_measured_ms": 1000 * dense_m,
    }
    points = [
        {
            "flops_fraction": f["flops"],
            "predicted_fraction": predicted[k] / dense_p,
            "measured_fraction": measured[k] / dense_m,
            "predicted_ms": 1000 * predicted[k],
            "measured_ms": 1000 * measured[k],
            "measured_p10_ms": 1000 * quiet[k],
        }
        for k, (_, f) in zip(keys, randoms)
    ]
    return {
        "model": name,
        "profile_s": profile_s,
        "profiled_widths": table.measured,
        "calibration": table.calibration,
        "budgets": rows,
        "prediction": prediction,
        "random_points": points,
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for axis, result in zip(axes[0], results):
        points = result["random_points"]
        axis.scatter(
            [p["flops_fraction"] for p in points],
            [p["measured_fraction"] for p in points],
            s=14,
            c="grey",
            label="random widths",
        )
        for row, marker in zip(result["budgets"], ("o", "s")):
            axis.scatter(
                row["flops_fraction"],
                row["measured_latency_fraction"],
                s=60,
                marker=marker,
                label=f"budget: {row['budget']}",
            )
        axis.plot([0, 1], [0, 1], ":", color="black", linewidth=0.8)
        axis.set_xlabel("FLOPs fraction of dense")
        axis.set_ylabel("measured TFLite latency fraction (batch 1, 1 thread)")
        axis.set_title(result["model"])
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def markdown(results, meta):
    lines = [
        "# Latency budget: measured results",
        "",
        f"{meta['date']}, {meta['device']}, Keras {meta['keras']} ({meta['backend']}), "
        f"LiteRT batch 1, 1 thread. Command: `{meta['command']}`.",
        "",
    ]
    if meta["note"]:
        lines += [meta["note"], ""]
    lines += [
        "## Budgets (gates from the filters' L1 norms, no training; target keeps 0.5)",
        "",
        "| model | budget | FLOPs fraction | predicted latency fraction | measured "
        "latency fraction (medians) | same, 10th percentiles | measured ms (dense ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for row in result["budgets"]:
            lines.append(
                f"| {result['model']} | {row['budget']} | {row['flops_fraction']:.3f} | "
                f"{row['predicted_latency_fraction']:.3f} | "
                f"{row['measured_latency_fraction']:.3f} | "
                f"{row['measured_p10_latency_fraction']:.3f} | {row['measured_ms']:.2f} "
                f"({row['dense_ms']:.2f}) |"
            )
    lines += [
        "",
        "## Prediction over random stripped widths",
        "",
        "| model | samples | r, calibrated table | r, raw table | r, FLOPs | r vs 10th "
        "percentiles | mean abs error %, calibrated | error %, raw | dense predicted / "
        "measured ms | profiled widths (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        p = result["prediction"]
        lines.append(
            f"| {result['model']} | {p['samples']} | {p['pearson_r_latency']:.3f} | "
            f"{p['pearson_r_raw_table']:.3f} | {p['pearson_r_flops']:.3f} | "
            f"{p['pearson_r_latency_p10']:.3f} | "
            f"{p['mean_abs_error_pct']:.1f} | {p['mean_abs_error_pct_raw_table']:.1f} | "
            f"{p['dense_predicted_ms']:.2f} / "
            f"{p['dense_measured_ms']:.2f} | {result['profiled_widths']} "
            f"({result['profile_s']:.0f}) |"
        )
    lines += ["", "![measured latency vs FLOPs](measured_vs_flops.png)", ""]
    return "\n".join(lines)


def recipe(dense, metric, target, table, data, epochs):
    """The plain call with `metric`'s budget keeping `target`: one SGD fit of
    `epochs` with a cosine rate and `PruningCallback`, then `strip_pruning`:
    (stripped model, test accuracy, FLOPs fraction, predicted latency fraction)."""
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(0)  # every budget: the same data order and gate noise
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gated = krp.add_gates(dense, metric=metric, latency_table=table)
    cosine = keras.optimizers.schedules.CosineDecay(0.01, max(1, epochs * len(x) // 128))
    gated.compile(optimizer=keras.optimizers.SGD(cosine, momentum=0.9, nesterov=True), loss=loss)
    callback = krp.PruningCallback(target=1.0 - target, calibration_data=x)
    gated.fit(x, y, batch_size=128, epochs=epochs, callbacks=[callback], verbose=2)
    _, graph = link_budget(gated)
    fractions = cost_fractions(graph, graph.keep_vectors())
    small = krp.strip_pruning(gated)
    small.compile(loss=loss, metrics=["accuracy"])
    accuracy = small.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    return small, accuracy, fractions["flops"], fractions["latency"]


def run_accuracy(args, workdir):
    """Accuracy and measured latency of the shipped ResNet-20 pruned with a
    latency and a FLOPs budget at each of `--accuracy-targets` (kept fractions)."""
    from keras_relaxprune_apps import load_cifar10

    # The repository's offline archive, as the tests find it (README).
    os.environ.setdefault("KRP_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    dense = load("resnet20")
    data = load_cifar10(train_limit=args.train_limit)
    table = krp.LatencyTable(krp.TFLiteTarget(num_threads=1), cache_dir=args.cache_dir)
    table.profile(dense)
    if not args.no_calibration:
        table.calibrate(dense)
    models, rows = {"dense": dense}, []
    for target in args.accuracy_targets:
        for metric in ("latency", "flops"):
            small, accuracy, flops, latency = recipe(
                dense, metric, target, table, data, args.epochs
            )
            models[f"{metric}_{target}"] = small
            rows.append(
                {
                    "budget": f"{metric} {target}",
                    "accuracy": accuracy,
                    "flops_fraction": flops,
                    "predicted_latency_fraction": latency,
                }
            )
            say(f"  {rows[-1]}")
    sample = np.random.default_rng(0).random((1, 32, 32, 3), "float32") * 255
    measured, _ = measure(models, sample, args.rounds, args.runs, os.path.join(workdir, "acc"))
    for row in rows:
        key = row["budget"].replace(" ", "_")
        row["measured_latency_fraction"] = measured[key] / measured["dense"]
    return rows


def main(argv=None):
    args = parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("TFLite needs KERAS_BACKEND=tensorflow")
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="latency_budget_")
    if args.accuracy:
        rows = run_accuracy(args, workdir)
        with open(os.path.join(args.out, args.accuracy_file), "w") as handle:
            json.dump({**_meta(args, argv), "rows": rows}, handle, indent=1)
        for row in rows:
            say(row)
        return
    results = [run_model(name, args, workdir) for name in args.models]
    meta = _meta(args, argv)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"meta": meta, "results": results}, handle, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write(markdown(results, meta))
    plot(results, os.path.join(args.out, "measured_vs_flops.png"))
    say(markdown(results, meta))


def _meta(args, argv):
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "command": "KERAS_BACKEND=tensorflow python benchmarks/latency_budget.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "note": args.note,
    }


if __name__ == "__main__":
    main()
