"""The plain call against the two-fit recipe: one grid, one table.

The plain call is what the design card writes: `add_gates`, then the
user's own `fit` with `PruningCallback(target)` for all its epochs, then
`strip_pruning`. The recipe prunes in a first fit of one epoch at a
constant rate, strips, and fine-tunes the stripped network with a cosine
rate for the other epochs. Every cell is one `benchmarks/pretrained_pruning.py`
run from the same dense network, data, augmentation, seed and number of
steps; the cells differ only in the protocol, the optimizer and its rate:

- `recipe`: 1 gated epoch (SGD-Nesterov, constant 0.01) + stripped epochs, cosine;
- `plain_cosine`: one gated fit, SGD-Nesterov 0.01 cosine to 0 over the fit;
- `plain_constant`: the same at a constant 0.01 (the callback lowers the rate
  after the budget closes, its default `final_lr_factor=0.01`);
- `plain_constant_kept`: the same with `final_lr_factor=None` (the rate stays);
- `adam_cosine`, `adam_constant`, `adam_constant_kept`: the same three with
  Adam at 0.001 (Keras' default rate);
- `adam_cosine_1e-4`: Adam at 0.0001, cosine to 0.

A cell whose JSON exists is skipped, and a cell cut short resumes from its
backup (`checkpoints/plain_fit_vs_recipe/<cell>`), so the grid goes on after
a kill. When done (or with `--report-only`) it writes `<out>/table.md`.

Reduced CPU protocol (ResNet-20, 10,000 training images, 3 epochs, all
10,000 test images; about 3 minutes a cell on 2 idle cores):

    nohup nice -n 10 python benchmarks/plain_fit_vs_recipe.py > logs/plain_fit.log 2>&1 &

Full protocol (all 50,000 images; 5 and 20 epochs; pending GPU):

    KERAS_BACKEND=jax python benchmarks/plain_fit_vs_recipe.py --train-limit 0 \\
        --epochs 5 20 --seeds 0 1 --out benchmarks/results/plain_fit_vs_recipe_full
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrained_pruning import main as run_cell

# name: (pretrained_pruning.py arguments, PruningCallback arguments)
PROTOCOLS = {
    "plain_cosine": (["--schedule", "cosine"], {}),
    "recipe": (["--prune-epochs", "1", "--schedule", "cosine"], {}),
    "plain_constant": (["--schedule", "constant"], {}),
    "plain_constant_kept": (["--schedule", "constant"], {"final_lr_factor": None}),
    "adam_cosine": (["--optimizer", "adam", "--lr", "0.001", "--schedule", "cosine"], {}),
    "adam_constant": (["--optimizer", "adam", "--lr", "0.001", "--schedule", "constant"], {}),
    "adam_constant_kept": (
        ["--optimizer", "adam", "--lr", "0.001", "--schedule", "constant"],
        {"final_lr_factor": None},
    ),
    "adam_cosine_1e-4": (["--optimizer", "adam", "--lr", "0.0001", "--schedule", "cosine"], {}),
}
# Every protocol at the first target; the main comparison at the others.
MAIN_PROTOCOLS = ("plain_cosine", "recipe", "plain_constant")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense", default="saved_models/resnet20_cifar10_dense.keras")
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    p.add_argument("--epochs", type=int, nargs="+", default=[3])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--train-limit", type=int, default=10000, help="0 = all 50,000")
    p.add_argument("--protocols", nargs="+", choices=tuple(PROTOCOLS), default=None)
    p.add_argument("--out", default="benchmarks/results/plain_fit_vs_recipe")
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def cells(args):
    """`(name, argv)` of every cell, in the order they run: the first seed
    before the next, the first target's every protocol before the others."""
    for seed in args.seeds:
        for epochs in args.epochs:
            for index, target in enumerate(args.targets):
                names = args.protocols or (tuple(PROTOCOLS) if index == 0 else MAIN_PROTOCOLS)
                for name in names:
                    extra, callback = PROTOCOLS[name]
                    cell = f"{name}_flops{round(100 * target)}_e{epochs}_s{seed}"
                    argv = [
                        "--dense", args.dense,
                        "--target", str(target),
                        "--epochs", str(epochs),
                        "--train-limit", str(args.train_limit),
                        "--seed", str(seed),
                        "--recalibrate", "50",
                        "--callback", json.dumps(callback),
                        "--name", cell,
                        "--out", args.out,
                        "--backup", f"checkpoints/plain_fit_vs_recipe/{cell}",
                        *extra,
                    ]  # fmt: skip
                    yield cell, argv


def write_table(out):
    """`out/table.md`: one row per cell, then the mean over seeds."""
    records = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*.json"))}
    if not records:
        return
    lines = [
        "| cell | protocol | optimizer | schedule | target | epochs | seed | test acc. | "
        "dense | change | FLOPs kept |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups = {}
    for name, r in records.items():
        protocol = name.rsplit("_flops", 1)[0]
        change = r["test_accuracy"] - r["dense_test_accuracy"]
        lines.append(
            f"| {name} | {protocol} | {r.get('optimizer', 'sgd')} | {r['schedule']} | "
            f"{r['target']} | {r['epochs']} | {r['seed']} | {r['test_accuracy']:.2%} | "
            f"{r['dense_test_accuracy']:.2%} | {100 * change:+.2f} | {r['remaining_flops']:.3f} |"
        )
        key = (protocol, r["target"], r["epochs"])
        groups.setdefault(key, []).append(100 * change)
    lines += [
        "",
        "Mean change over seeds (points of test accuracy against dense):",
        "",
        "| protocol | target | epochs | seeds | mean change | min | max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (protocol, target, epochs), changes in sorted(groups.items(), key=lambda kv: kv[0][1:]):
        lines.append(
            f"| {protocol} | {target} | {epochs} | {len(changes)} | "
            f"{statistics.mean(changes):+.2f} | {min(changes):+.2f} | {max(changes):+.2f} |"
        )
    first = next(iter(records.values()))
    lines += [
        "",
        f"{first['train_images']} training images, {first['test_images']} test images, "
        f"device: {first.get('device')}, backend: {first.get('backend')}.",
    ]
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if not args.report_only:
        for cell, cell_argv in cells(args):
            if (out / f"{cell}.json").is_file():
                continue
            print(f"=== {cell}", flush=True)
            run_cell(cell_argv)
            write_table(out)
    write_table(out)


if __name__ == "__main__":
    main(sys.argv[1:])
