"""Accuracy at equal measured latency: the latency budget against the FLOPs budget.

Reads the `accuracy*.json` files that `benchmarks/latency_budget.py --accuracy`
writes (one per run: its command, date, device and rows of budget, test
accuracy, FLOPs fraction, predicted and measured TFLite latency fraction),
and writes into their folder:

- `accuracy.md`: every row with its speed-up per FLOPs removed
  (`(1 - measured latency) / (1 - FLOPs)`: 1.0 when latency falls as fast as
  the FLOPs), and each budget's accuracy interpolated (piecewise linear in
  the measured latency fraction) at the measured latencies both budgets
  reach;
- `accuracy_vs_latency.png`: measured latency fraction against test
  accuracy, one line per budget.

    python benchmarks/latency_accuracy.py benchmarks/results/latency_budget/accuracy*.json
"""

import argparse
import json
import os

import numpy as np

METRICS = ("latency", "flops")


def load_rows(paths):
    """Every run's rows, each with its run's command and date."""
    rows = []
    for path in paths:
        with open(path) as handle:
            run = json.load(handle)
        meta = run.get("meta", run)
        for row in run["rows"]:
            metric, target = row["budget"].split()
            rows.append(
                {
                    **row,
                    "metric": metric,
                    "target": float(target),
                    "command": meta["command"],
                    "date": meta["date"],
                }
            )
    return sorted(rows, key=lambda r: (r["metric"], r["measured_latency_fraction"]))


def speed_up_per_flops_removed(row):
    return (1.0 - row["measured_latency_fraction"]) / (1.0 - row["flops_fraction"])


def accuracy_at(rows, metric, latency):
    """`metric`'s accuracy interpolated at a measured latency fraction, or
    `None` outside the latencies its rows reach."""
    points = sorted(
        (r["measured_latency_fraction"], r["accuracy"]) for r in rows if r["metric"] == metric
    )
    if not points or not points[0][0] <= latency <= points[-1][0]:
        return None
    xs, ys = zip(*points)
    return float(np.interp(latency, xs, ys))


def equal_latency_rows(rows):
    """(latency, latency budget's accuracy, FLOPs budget's accuracy) at every
    measured latency inside both budgets' ranges."""
    result = []
    for latency in sorted({r["measured_latency_fraction"] for r in rows}):
        both = [accuracy_at(rows, metric, latency) for metric in METRICS]
        if None not in both:
            result.append((latency, *both))
    return result


def markdown(rows):
    lines = [
        "# Accuracy at equal measured latency (shipped ResNet-20, CIFAR-10)",
        "",
        "Written by `python benchmarks/latency_accuracy.py "
        "benchmarks/results/latency_budget/accuracy*.json` from the runs below.",
        "",
        "| budget | test accuracy | FLOPs | predicted latency | measured latency "
        "| speed-up per FLOPs removed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['metric']} {r['target']:g} | {r['accuracy']:.2%} | "
            f"{r['flops_fraction']:.3f} | {r['predicted_latency_fraction']:.3f} | "
            f"{r['measured_latency_fraction']:.3f} | {speed_up_per_flops_removed(r):.2f} |"
        )
    for metric in METRICS:
        mean = np.mean([speed_up_per_flops_removed(r) for r in rows if r["metric"] == metric])
        lines.append(f"\nMean speed-up per FLOPs removed, {metric} budget: {mean:.2f}.")
    equal = equal_latency_rows(rows)
    lines += [
        "",
        "At equal measured latency (accuracy interpolated between each budget's rows):",
        "",
        "| measured latency | latency budget | FLOPs budget | difference |",
        "| --- | --- | --- | --- |",
    ]
    for latency, by_latency, by_flops in equal:
        lines.append(
            f"| {latency:.3f} | {by_latency:.2%} | {by_flops:.2%} | "
            f"{100 * (by_latency - by_flops):+.2f} pt |"
        )
    if not equal:
        lines.append("| (the two budgets' measured latencies do not overlap) | | | |")
    lines += ["", "Runs:", ""]
    for run in sorted({(r["date"], r["command"]) for r in rows}):
        lines.append(f"- {run[0]}: `{run[1]}`")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4))
    for metric, marker in zip(METRICS, ("o", "s")):
        points = [
            (r["measured_latency_fraction"], 100 * r["accuracy"])
            for r in rows
            if r["metric"] == metric
        ]
        axes.plot(*zip(*sorted(points)), marker=marker, label=f"{metric} budget")
    axes.set_xlabel("measured TFLite batch-1 latency / dense")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("ResNet-20, CIFAR-10: accuracy against measured latency")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="accuracy JSON files of latency_budget.py")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rows = load_rows(args.files)
    folder = os.path.dirname(os.path.abspath(args.files[0]))
    with open(os.path.join(folder, "accuracy.md"), "w") as handle:
        handle.write(markdown(rows))
    plot(rows, os.path.join(folder, "accuracy_vs_latency.png"))
    print(markdown(rows))


if __name__ == "__main__":
    main()
