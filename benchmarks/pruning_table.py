"""Run the comparison grid (methods x budgets) and write the table and plot.

Each cell is one `benchmarks/pretrained_pruning.py` run from the same dense
checkpoint with the same fine-tune; a cell whose JSON already exists is
skipped, and a cell cut short goes on from its last epoch (backed up in
`checkpoints/<out folder>/<cell>/`), so the grid resumes after a kill.
When the grid is done (or with `--report-only`) it writes
`<out>/table.md` (one row per run), `<out>/mean_over_seeds.md` (one row
per method, budget and fine-tune: the mean, min and max over its seeds)
and `<out>/pareto.png` (test accuracy against FLOPs kept, one line per
method, the mean over seeds).

CPU protocol (ResNet-20, about 5 hours in all on 2 cores): 3 epochs on all
50,000 training images; ours and the reference recipe prune with gates in
the first and fine-tune the stripped network in the other two, the
baselines choose their channels first and fine-tune for all three:

    nohup nice -n 10 python benchmarks/pruning_table.py \
        --dense saved_models/resnet20_cifar10_dense.keras \
        > logs/pruning_table.log 2>&1 &

GPU protocol (ResNet-56, JAX; run on one H200: about 3.5 minutes for an
ours+distill cell, 2.5 for ours, 1 for a baseline, XLA compiles included):
6 epochs on all 50,000 images, 1 gated + 5 stripped for ours; every
missing cell of the grid (about 50 minutes for all 28):

    KERAS_BACKEND=jax python benchmarks/pruning_table.py \
        --dense saved_models/resnet56_cifar10_dense.keras --epochs 6 \
        --prune-epochs 1 --out benchmarks/results/resnet56_gpu
"""

import argparse
import json
import sys
from pathlib import Path

from keras_relaxprune_apps import FINE_TUNE_LR, non_negative_int, positive_int, recipe_options

BUDGETS = (("flops", 0.5), ("flops", 0.75), ("flops", 0.9), ("params", 0.9))
METHODS = (
    ("ours", False),
    ("ours", True),
    ("l1_norm", False),
    ("network_slimming", False),
    ("uniform", False),
    ("random", False),
    ("reference", False),
)
# The reference recipe has no target: its lambda sets how much it removes.
# One lambda per budget row spreads its points along the Pareto plot.
REFERENCE_LAMBDA = {0.5: 1.0, 0.75: 4.0, 0.9: 16.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense", required=True)
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--prune-epochs", type=non_negative_int, default=1)
    p.add_argument("--train-limit", type=non_negative_int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--test-limit", type=non_negative_int, default=0, help="0 = all 10,000")
    p.add_argument("--recalibrate", type=non_negative_int, default=50)
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="cells to run, in this order, budget by budget (e.g. ours+distill "
        "uniform); default every method, the baselines first",
    )
    p.add_argument(
        "--budgets", nargs="+", default=None, help="e.g. flops50 params90 (default: all four)"
    )
    p.add_argument("--out", default="benchmarks/results/resnet20_cpu")
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def cell_name(args, method, distill, metric, target, seed):
    suffix = "+distill" if distill else ""
    return f"{method}{suffix}_{metric}{round(100 * target)}_e{args.epochs}_s{seed}"


def grid_cells(args):
    """(method, distill, metric, target) in the order they run."""
    budgets = BUDGETS
    if args.budgets:
        budgets = [
            b for name in args.budgets for b in BUDGETS if f"{b[0]}{round(100 * b[1])}" == name
        ]
    if args.methods:
        methods = [
            m
            for name in args.methods
            for m in METHODS
            if m[0] + ("+distill" if m[1] else "") == name
        ]
        return [m + b for b in budgets for m in methods]
    # The baselines first: their cells do not depend on our method.
    methods = sorted(METHODS, key=lambda m: m[0] in ("ours", "reference"))
    return [m + b for m in methods for b in budgets]


def run_grid(args):
    from pretrained_pruning import main as run_one

    for seed in args.seeds:
        for method, distill, metric, target in grid_cells(args):
            name = cell_name(args, method, distill, metric, target, seed)
            if (Path(args.out) / f"{name}.json").exists():
                continue
            argv = [
                "--dense",
                args.dense,
                "--method",
                method,
                "--target",
                str(target),
                "--metric",
                metric,
                "--epochs",
                str(args.epochs),
                "--train-limit",
                str(args.train_limit),
                "--seed",
                str(seed),
                "--test-limit",
                str(args.test_limit),
                "--prune-epochs",
                str(args.prune_epochs),
                "--recalibrate",
                str(args.recalibrate),
                "--out",
                args.out,
                "--name",
                name,
                "--backup",
                str(Path("checkpoints") / Path(args.out).name / name),
                "--callback",
                json.dumps(
                    {"lambda_": REFERENCE_LAMBDA[target]}
                    if method == "reference"
                    else recipe_options(metric)
                ),
            ]
            run_one(argv + (["--distill"] if distill else []))


def load_records(out):
    records = []
    for path in sorted(Path(out).glob("*.json")):
        record = json.loads(path.read_text())
        if "test_accuracy" in record:
            records.append(record)
    return records


def label(record):
    """Method name, with the callback options of ours that are not the recipe's."""
    options = record.get("callback") or {}
    recipe = recipe_options(record["metric"])
    differ = {k: v for k, v in options.items() if recipe.get(k) != v}
    if not differ or not record["method"].startswith("ours"):
        return record["method"]
    return record["method"] + " " + ", ".join(f"{k}={v}" for k, v in differ.items())


def epochs(record):
    """`3`, or `3 (1 gated + 2 stripped)` where the gates trained for part."""
    gated = record.get("prune_epochs") or 0
    if (
        not gated
        or gated >= record["epochs"]
        or not record["method"].startswith(("ours", "reference"))
    ):
        return str(record["epochs"])
    return f"{record['epochs']} ({gated} gated + {record['epochs'] - gated} stripped)"


def fine_tune_label(record):
    """`epochs(record)`, with the peak learning rate where it is not the recipe's
    and the weight decay and label smoothing where there are."""
    text = epochs(record)
    lr, gated_lr = record.get("lr", FINE_TUNE_LR), record.get("prune_lr")
    if lr != FINE_TUNE_LR or gated_lr is not None:
        text += f", peak lr {lr:g}" + (f" (gated {gated_lr:g})" if gated_lr is not None else "")
    if record.get("weight_decay"):
        text += f", weight decay {record['weight_decay']:g}"
    if record.get("label_smoothing"):
        text += f", label smoothing {record['label_smoothing']:g}"
    return text


def write_table(records, out):
    rows = [
        "| method | budget | FLOPs kept | params kept | test accuracy | dense | "
        "epochs | train images | seed | backend | device |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(records, key=lambda r: (r["metric"], r["target"], -r["test_accuracy"])):
        rows.append(
            f"| {label(r)} | {r['metric']} -{r['target']:.0%} | "
            f"{r['remaining_flops']:.1%} | {r['remaining_params']:.1%} | "
            f"{r['test_accuracy']:.2%} | {r['dense_test_accuracy']:.2%} | {fine_tune_label(r)} | "
            f"{r['train_images']} | {r['seed']} | {r['backend']} | {r['device']} |"
        )
    Path(out, "table.md").write_text("\n".join(rows) + "\n")
    return rows


def seeds_per_cell(records):
    """`{(metric, target, method label): [record, ...]}`, one entry per seed.

    Where the records differ in their fine-tune (length, learning rate,
    weight decay or label smoothing), each fine-tune is a cell of its own,
    named in brackets.
    """
    several = (
        len(
            {
                (
                    r["epochs"],
                    r.get("lr"),
                    r.get("prune_lr"),
                    r.get("weight_decay") or 0,
                    r.get("label_smoothing") or 0,
                )
                for r in records
            }
        )
        > 1
    )
    cells = {}
    for r in records:
        name = label(r) + (f" [{fine_tune_label(r)}]" if several else "")
        cells.setdefault((r["metric"], r["target"], name), []).append(r)
    return cells


def mean(runs, key):
    return sum(r[key] for r in runs) / len(runs)


def write_means(records, out):
    """`<out>/mean_over_seeds.md`: per method and budget, the seeds' mean, min and max."""
    rows = [
        "| method | budget | seeds | mean test accuracy | min | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (metric, target, method), runs in sorted(
        seeds_per_cell(records).items(),
        key=lambda item: (item[0][:2], -mean(item[1], "test_accuracy")),
    ):
        accuracies = [r["test_accuracy"] for r in runs]
        rows.append(
            f"| {method} | {metric} -{target:.0%} | {len(runs)} | "
            f"{mean(runs, 'test_accuracy'):.2%} | {min(accuracies):.2%} | "
            f"{max(accuracies):.2%} |"
        )
    Path(out, "mean_over_seeds.md").write_text("\n".join(rows) + "\n")
    return rows


def plot_pareto(records, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    cells = {key: runs for key, runs in seeds_per_cell(records).items() if key[0] == "flops"}
    for method in sorted({key[2] for key in cells}):
        # One point per budget: the mean over its seeds.
        points = sorted(
            (mean(runs, "remaining_flops"), mean(runs, "test_accuracy"))
            for key, runs in cells.items()
            if key[2] == method
        )
        axis.plot(
            [100 * p[0] for p in points], [100 * p[1] for p in points], marker="o", label=method
        )
    if records:
        axis.axhline(
            100 * records[0]["dense_test_accuracy"], color="grey", linestyle="--", label="dense"
        )
    axis.set_xlabel("FLOPs kept (%)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(Path(out, "pareto.png"), dpi=120)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if not args.report_only:
        run_grid(args)
    records = load_records(args.out)
    print("\n".join(write_table(records, args.out)))
    print("\n".join(write_means(records, args.out)))
    plot_pareto(records, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
