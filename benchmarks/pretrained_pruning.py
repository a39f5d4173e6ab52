"""Prune a trained CIFAR-10 network with one method; record test accuracy.

Every method starts from the same dense checkpoint, with the same data,
augmentation, optimizer, schedule, number of steps and seed, and goes through
the same `strip_pruning`; only the channel choice differs:

- `ours`: `add_gates` + `PruningCallback(target)` in the fine-tune's `fit`
  (`--distill`: inside `keras.distillation.Distiller` with the dense
  network as teacher); with `--prune-epochs` (whole epochs) or
  `--prune-steps` (part of one) the gated fit is that long, then the
  stripped network fine-tunes for the rest of the run's steps;
- `uniform`, `random`, `l1_norm`, `network_slimming`: masks from
  `keras_relaxprune.budget.baselines.apply_baseline` under the same cost budget,
  stripped first, then fine-tuned for the same number of epochs;
- `reference`: the reference recipe's settings (gate scale fixed at 5,
  penalty `lambda * |R - 0|`, no closed-loop budget).

One run writes one JSON record (accuracy, FLOPs, params, device, backend,
epochs, seed, command) into `--out`; `--save FILE.keras` writes the
fine-tuned stripped network too. With `--backup DIR` a killed run
resumes: the stripped network (ours: after its gated fit) is kept in `DIR`
and its fine-tune is backed up every epoch
(`keras.callbacks.BackupAndRestore`), so the same command again goes on
with the fine-tune's next epoch (a gated fit cut short starts again);
`DIR` is removed when the record is written. Example (CPU, about 10
minutes for a ResNet-20 on 10k images x 3 epochs):

    python benchmarks/pretrained_pruning.py --dense saved_models/resnet20_cifar10_dense.keras \
        --method ours --target 0.5 --epochs 3 --train-limit 10000
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune.budget.baselines import apply_baseline
from keras_relaxprune_apps import (
    BASELINE_METHODS,
    DATA_DIR_ENV,
    DISTILL_STUDENT_LOSS_WEIGHT,
    DISTILL_TEMPERATURE,
    FINE_TUNE_LR,
    AugmentedBatches,
    accuracy,
    cost_summary,
    fraction,
    load_cifar10,
    non_negative,
    non_negative_int,
    open_fraction,
    positive,
    positive_int,
    reproducible,
    run_record,
    train,
)

# This repository keeps its offline archives in ../shared/data (README).
os.environ.setdefault(DATA_DIR_ENV, str(Path(__file__).resolve().parents[2] / "shared" / "data"))

METHODS = ("ours", "reference") + BASELINE_METHODS
REFERENCE_SCALE = 5.0


class ReferenceRecipe(krp.PruningCallback):
    """The reference recipe's settings, through the same in-graph budget layer.

    Gate scale fixed at 5 (`add_gates(initial_scale=5)`, `final_scale=5`),
    penalty `lambda * |R - 0|` from the first step (remaining target 0, no
    ramp) with its own gradient (`cost_exponent=1`: each gate pushed in
    proportion to its channel's cost), no freezing, no closed loop: when `fit` ends a channel
    is kept where its gate is at least 0.5 (a group keeps at least its strongest
    channel). What FLOPs that leaves depends on lambda, not on a target.
    """

    def __init__(self, lambda_=2.0, **kwargs):
        super().__init__(
            target=0.5,
            lambda_=lambda_,
            final_scale=REFERENCE_SCALE,
            lambda_rate=0.0,
            cost_exponent=1.0,
            **kwargs,
        )

    def _configure(self, budget):
        super()._configure(budget)
        for name, value in {
            "remaining_target": 0.0,
            "begin_step": 0.0,
            "end_step": 1.0,
            "initial_scale": REFERENCE_SCALE,
            "final_scale": REFERENCE_SCALE,
            "initial_threshold": 0.0,
            "final_threshold": 0.0,
        }.items():
            getattr(budget, name).assign(value)

    def on_epoch_begin(self, epoch, logs=None):
        pass  # no closing step

    def on_train_end(self, logs=None):
        for gate in self._graph.gates.values():
            values = keras.ops.convert_to_numpy(gate.gate_values())
            keep = (values >= 0.5).astype("float32")
            keep[np.argmax(values)] = 1.0
            gate.keep_mask.assign(keep * keras.ops.convert_to_numpy(gate.keep_mask))
        self._budget.ramp_on.assign(0.0)
        self._budget.masks_final.assign(1.0)
        self._recalibrate()


def keras_file(text):
    """A `--save` path: refused at parsing unless it ends in `.keras` (the
    save would otherwise fail only after the whole run)."""
    if not text.endswith(".keras"):
        raise argparse.ArgumentTypeError(f"{text!r} does not end in .keras")
    return text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense", required=True, help="dense .keras (raw 0-255 input, logits)")
    p.add_argument("--method", choices=METHODS, default="ours")
    p.add_argument("--target", type=open_fraction, default=0.5, help="fraction removed")
    p.add_argument("--metric", choices=("flops", "params"), default="flops")
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--train-limit", type=non_negative_int, default=10000)
    p.add_argument("--test-limit", type=non_negative_int, default=0, help="0 = all 10,000")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive, default=FINE_TUNE_LR)
    p.add_argument(
        "--prune-lr",
        type=positive,
        default=None,
        help="with --prune-epochs: the constant rate of the gated fit (default --lr)",
    )
    p.add_argument(
        "--weight-decay",
        type=non_negative,
        default=0.0,
        help="decoupled weight decay of the kernels in every fit (the dense recipe: 5e-3)",
    )
    p.add_argument(
        "--label-smoothing",
        type=fraction,
        default=0.0,
        help="label smoothing of the label loss in every fit (the dense "
        "recipe: 0.1; 0: sparse labels)",
    )
    p.add_argument("--schedule", choices=("constant", "cosine"), default="cosine")
    p.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default="sgd",
        help="SGD-Nesterov (momentum 0.9) or Adam, in every fit",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--prune-epochs",
        type=non_negative_int,
        default=0,
        help="ours: prune for this many of --epochs with gates, then strip and "
        "fine-tune the small network for the rest (0: all epochs gated)",
    )
    p.add_argument(
        "--prune-steps",
        type=non_negative_int,
        default=0,
        help="ours: prune for this many steps with gates (a fraction of an "
        "epoch), then strip and fine-tune the small network for --epochs "
        "epochs shortened so the run's steps add up to --epochs full ones",
    )
    p.add_argument("--distill", action="store_true")
    p.add_argument(
        "--student-loss-weight",
        type=fraction,
        default=DISTILL_STUDENT_LOSS_WEIGHT,
        help="with --distill: weight of the label loss (the rest: distillation)",
    )
    p.add_argument(
        "--temperature",
        type=positive,
        default=DISTILL_TEMPERATURE,
        help="with --distill: the distillation temperature",
    )
    p.add_argument(
        "--recalibrate",
        type=non_negative_int,
        default=0,
        help="BN recalibration batches before the final evaluation",
    )
    p.add_argument("--callback", default="{}", help="extra PruningCallback arguments as JSON")
    p.add_argument(
        "--diagnose",
        type=non_negative_int,
        default=0,
        help="each epoch: inference accuracy on this many test images",
    )
    p.add_argument("--name", default=None)
    p.add_argument(
        "--backup",
        default=None,
        help="folder that makes a killed run resumable (removed at the end)",
    )
    p.add_argument("--out", default="benchmarks/results/pretrained")
    p.add_argument(
        "--save",
        type=keras_file,
        default=None,
        help="also write the fine-tuned stripped network to this .keras "
        "file (without its optimizer)",
    )
    p.add_argument("--verbose", type=int, default=2)
    return p.parse_args(argv)


class FirstBatches(keras.utils.PyDataset):
    """The first `count` batches of each epoch of `batches` (an epoch cut short)."""

    def __init__(self, batches, count):
        super().__init__()
        self.batches, self.count = batches, min(int(count), len(batches))

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return self.batches[index]

    def set_epoch(self, epoch):
        self.batches.set_epoch(epoch)


def fine_tune(
    model,
    dense,
    batches,
    callbacks,
    args,
    epochs,
    first_epoch=0,
    schedule=None,
    lr=None,
    steps_per_epoch=None,
    backup=None,
    data_epoch=0,
):
    """One `fit` of `model` (as a Distiller's student with `--distill`) from
    epoch `first_epoch` to `epochs`, the data order `data_epoch` epochs on;
    its steps. With `backup` (a folder) the fit is backed up every epoch and
    resumes from there."""
    data = FirstBatches(batches, steps_per_epoch) if steps_per_epoch else batches
    return train(
        model,
        data,
        epochs,
        teacher=dense if args.distill else None,
        lr=args.lr if lr is None else lr,
        cosine=(schedule or args.schedule) == "cosine",
        initial_epoch=first_epoch,
        epochs_before=data_epoch,
        callbacks=callbacks,
        backup_dir=backup,
        verbose=args.verbose,
        temperature=args.temperature,
        student_loss_weight=args.student_loss_weight,
        weight_decay=args.weight_decay,
        loss=label_loss(args),
        optimizer=args.optimizer,
    )


def label_loss(args):
    """The label loss: sparse cross-entropy, or with `--label-smoothing` the
    categorical one on one-hot labels (`AugmentedBatches(num_classes=...)`)."""
    if not args.label_smoothing:
        return None  # the recipe's sparse cross-entropy
    return keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=args.label_smoothing
    )


class Diagnose(keras.callbacks.Callback):
    """Inference accuracy and hard cost at each epoch end (before/after BN recalibration)."""

    def __init__(self, gated, images, labels, train_images):
        super().__init__()
        self.gated, self.images, self.labels = gated, images, labels
        self.train_images = train_images
        self.rows = []

    def _accuracy(self):
        return accuracy(self.gated, self.images, self.labels)

    def on_epoch_end(self, epoch, logs=None):
        row = {
            "epoch": epoch + 1,
            "flops": krp.count_flops(self.gated),
            "train_accuracy": float((logs or {}).get("accuracy", np.nan)),
            "inference_accuracy": self._accuracy(),
        }
        krp.recalibrate_batchnorm(self.gated, self.train_images[:2560].astype("float32"))
        row["inference_accuracy_recalibrated"] = self._accuracy()
        self.rows.append(row)
        print("diagnose:", row, flush=True)


class StrippedBackup:
    """The stripped network kept between the fits, so that a resumed run skips
    what it has done: `--backup`'s `stripped.keras` and `stripped.json`
    (steps trained so far, accuracy right after the strip)."""

    def __init__(self, folder, args):
        self.folder = Path(folder) if folder else None
        self.settings = {
            k: v
            for k, v in sorted(vars(args).items())
            if k not in ("backup", "out", "name", "verbose")
        }

    def fine_tune_folder(self):
        return self.folder / "fine_tune" if self.folder else None

    def load(self):
        """`(stripped model, state)`, or `(None, None)` where there is none."""
        if not self.folder or not (self.folder / "stripped.json").is_file():
            return None, None
        state = json.loads((self.folder / "stripped.json").read_text())
        if state.pop("settings") != self.settings:
            print(
                f"pretrained_pruning.py: error: {self.folder} holds another run's "
                "backup (other settings); remove it or pass another --backup",
                file=sys.stderr,
            )
            raise SystemExit(2)
        model = keras.saving.load_model(self.folder / "stripped.keras", compile=False)
        print(f"resumed: the stripped network from {self.folder}", flush=True)
        return model, state

    def save(self, model, **state):
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
            model.save(self.folder / "stripped.keras")
            (self.folder / "stripped.json").write_text(
                json.dumps({**state, "settings": self.settings})
            )

    def remove(self):
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def save_without_optimizer(model, path):
    """Writes `model` to the `.keras` file `path` as an uncompiled copy (its
    weights, not the fine-tune's optimizer state)."""
    copy = keras.Model.from_config(model.get_config())  # uncompiled
    copy.set_weights(model.get_weights())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    copy.save(path)


def prune_and_strip(args, dense, batches, x, xt, yt):
    """The method's channel choice and `strip_pruning`: `(stripped model,
    state, diagnose)`, where `state` says how the stripped network's
    fine-tune goes on (its first epoch and steps per epoch, the data epoch
    it starts at) and holds the steps trained so far and the accuracy right
    after the strip (ours with two fits)."""
    reference = args.method == "reference"
    gated = krp.add_gates(
        dense, metric=args.metric, initial_scale=REFERENCE_SCALE if reference else 50.0
    )
    state = {
        "steps": 0,
        "stripped_accuracy": None,
        "first_epoch": 0,
        "data_epoch": 0,
        "steps_per_epoch": None,
    }
    if args.method not in ("ours", "reference"):
        apply_baseline(gated, args.method, args.target, args.metric, seed=args.seed)
        return krp.strip_pruning(gated), state, None
    callbacks = []
    options = json.loads(args.callback)
    if args.recalibrate:  # the callback re-estimates BN when fit ends
        options.update(calibration_data=batches, calibration_steps=args.recalibrate)
    callbacks.append(
        ReferenceRecipe(metric=args.metric, **options)
        if reference
        else krp.PruningCallback(target=args.target, metric=args.metric, **options)
    )
    diagnose = None
    if args.diagnose:
        diagnose = Diagnose(gated, xt[: args.diagnose].astype("float32"), yt[: args.diagnose], x)
        callbacks.append(diagnose)
    gated_epochs = 1 if args.prune_steps else args.prune_epochs or args.epochs
    # Pruned in a first fit at a constant rate, then fine-tuned stripped.
    two_fits = gated_epochs < args.epochs or bool(args.prune_steps)
    state["steps"] = fine_tune(
        gated,
        dense,
        batches,
        callbacks,
        args,
        gated_epochs,
        schedule="constant" if two_fits else None,
        lr=args.prune_lr if two_fits else None,
        steps_per_epoch=args.prune_steps or None,
    )
    small = krp.strip_pruning(gated)
    if not two_fits:
        state["first_epoch"] = args.epochs
        return small, state, diagnose
    state["stripped_accuracy"] = accuracy(small, xt, yt)
    print(f"stripped, before the fine-tune: {state['stripped_accuracy']:.2%}", flush=True)
    if args.prune_steps:  # as many steps in all as --epochs full epochs
        left = args.epochs * len(batches) - args.prune_steps
        state.update(data_epoch=1, steps_per_epoch=left // args.epochs)
    else:
        state["first_epoch"] = gated_epochs
    return small, state, diagnose


def cell_record(args, argv, small, dense, data, state, steps, start, diagnose):
    """The run's JSON record: test accuracy of `small` and `dense` on the
    test images, what `small` keeps, every setting that made it and the
    wall time since `start` (a `time.time()`)."""
    x, xt, yt = data
    costs = cost_summary(dense, small)
    return {
        "method": args.method + ("+distill" if args.distill else ""),
        "target": args.target,
        "metric": args.metric,
        "test_accuracy": accuracy(small, xt, yt),
        "dense_test_accuracy": accuracy(dense, xt, yt),
        "test_images": len(yt),
        "remaining_flops": costs["remaining_flops"],
        "remaining_params": costs["remaining_params"],
        "flops": costs["pruned_flops"],
        "params": costs["pruned_params"],
        "dense_flops": costs["dense_flops"],
        "dense_params": costs["dense_params"],
        "epochs": args.epochs,
        "prune_epochs": args.prune_epochs,
        "prune_steps": args.prune_steps,
        "train_steps": steps,
        "train_images": len(x),
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "prune_lr": args.prune_lr,
        "schedule": args.schedule,
        "optimizer": args.optimizer,
        "label_smoothing": args.label_smoothing,
        "callback": json.loads(args.callback),
        "recalibrate": args.recalibrate,
        "dense": args.dense,
        "distillation": (
            {"student_loss_weight": args.student_loss_weight, "temperature": args.temperature}
            if args.distill
            else None
        ),
        **run_record(
            start,
            args.seed,
            "benchmarks/pretrained_pruning.py",
            argv if argv is not None else sys.argv[1:],
        ),
        "stripped_test_accuracy_before_fine_tune": state["stripped_accuracy"],
        "diagnose": diagnose.rows if diagnose else None,
    }


def main(argv=None):
    args = parse_args(argv)
    # Seeded only: Keras turns XLA off under op determinism, and a long run wants XLA.
    with reproducible(args.seed, deterministic_ops=False):
        start = time.time()
        (x, y), (xt, yt) = load_cifar10(
            train_limit=args.train_limit or None, test_limit=args.test_limit or None, seed=args.seed
        )
        dense = keras.saving.load_model(args.dense, compile=False)
        one_hot = dense.output_shape[-1] if args.label_smoothing else None  # classes
        batches = AugmentedBatches(x, y, args.batch_size, args.seed, num_classes=one_hot)
        backup = StrippedBackup(args.backup, args)
        small, state = backup.load()
        resumed, diagnose = small is not None, None
        if not resumed:
            small, state, diagnose = prune_and_strip(args, dense, batches, x, xt, yt)
            backup.save(small, **state)
        steps = state["steps"]
        if state["first_epoch"] < args.epochs:  # the stripped network's fine-tune
            steps += fine_tune(
                small,
                dense,
                batches,
                [],
                args,
                args.epochs,
                first_epoch=state["first_epoch"],
                data_epoch=state["data_epoch"],
                steps_per_epoch=state["steps_per_epoch"],
                backup=backup.fine_tune_folder(),
            )
        if args.recalibrate and args.method not in ("ours", "reference"):
            krp.recalibrate_batchnorm(small, batches, steps=args.recalibrate)
        record = cell_record(args, argv, small, dense, (x, xt, yt), state, steps, start, diagnose)
        name = args.name or (
            f"{Path(args.dense).stem}_{record['method']}_"
            f"{args.metric}{round(100 * args.target)}_e{args.epochs}_s{args.seed}"
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if resumed:  # the wall time is the last part's
            record["resumed"] = True
        if args.save:
            save_without_optimizer(small, args.save)
            record["file"] = args.save
        (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        backup.remove()
        print(json.dumps({k: v for k, v in record.items() if k != "diagnose"}, indent=2))
        return record


if __name__ == "__main__":
    main(sys.argv[1:])
