"""Channel multiples under a latency budget: predicted against measured TFLite latency.

The shipped ResNet-20 is gated with a freshly measured and calibrated
`LatencyTable(TFLiteTarget(num_threads=1))`, its gates set from the filters'
L1 norms (no training), and the budget closed to keep 0.5 of the latency and,
for comparison, 0.5 of the FLOPs, each with `round_to` 1, 4 and 8. Every
stripped model and the dense one are measured in the same interleaved
rounds (LiteRT + XNNPACK, batch 1, 1 thread, medians). Writes
`benchmarks/results/latency_budget/round_to.md`:

    KERAS_BACKEND=tensorflow python benchmarks/latency_round_to.py
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from latency_budget import ROOT, _meta, load, measure

import keras_relaxprune as krp
from keras_relaxprune.budget.baselines import set_gate_prior
from keras_relaxprune.budget.closing import close_budget
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.layers.pruning_budget import link_budget

ROUND_TO = (1, 4, 8)


def closed_models(gated, graph, round_to):
    """{"<metric>_r<k>": (stripped model, cost fractions)} for every metric and multiple."""
    set_gate_prior(graph, "l1_norm")
    result = {}
    for metric in ("latency", "flops"):
        for multiple in round_to:
            masks = close_budget(graph, metric, 0.5, round_to=multiple)
            for root, keep in masks.items():
                graph.gates[root].keep_mask.assign(keep)
            result[f"{metric}_r{multiple}"] = (
                krp.strip_pruning(gated),
                cost_fractions(graph, graph.keep_vectors()),
            )
            for root in masks:
                graph.gates[root].keep_mask.assign(np.ones(graph.groups.size[root], "float32"))
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--runs", type=int, default=10, help="invokes per model per round")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    dense = load("resnet20")
    table = krp.LatencyTable(krp.TFLiteTarget(num_threads=1), cache_dir=tempfile.mkdtemp())
    table.profile(dense)
    table.calibrate(dense)
    gated = krp.add_gates(dense, metric="latency", latency_table=table)
    _, graph = link_budget(gated)
    closed = closed_models(gated, graph, ROUND_TO)
    models = {"dense": dense, **{name: model for name, (model, _) in closed.items()}}
    sample = np.random.default_rng(0).random((1, 32, 32, 3), "float32") * 255
    medians, _ = measure(models, sample, args.rounds, args.runs, tempfile.mkdtemp())
    meta = _meta(type("Args", (), {"note": ""})(), sys.argv[1:] if argv is None else argv)
    lines = [
        "# Channel multiples under a latency budget (ResNet-20, TFLite batch 1, 1 thread)",
        "",
        f"{meta['date']}, {meta['device']}. Command: `KERAS_BACKEND=tensorflow python "
        "benchmarks/latency_round_to.py`. Gates from L1 norms (no training), budget keeps 0.5.",
        "",
        "| budget | round_to | FLOPs | predicted latency | measured latency | measured ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, (_, fractions) in closed.items():
        metric, multiple = name.split("_r")
        lines.append(
            f"| {metric} 0.5 | {multiple} | {fractions['flops']:.3f} | "
            f"{fractions['latency']:.3f} | {medians[name] / medians['dense']:.3f} | "
            f"{1000 * medians[name]:.3f} (dense {1000 * medians['dense']:.3f}) |"
        )
    text = "\n".join(lines) + "\n"
    path = os.path.join(ROOT, "benchmarks/results/latency_budget/round_to.md")
    with open(path, "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
