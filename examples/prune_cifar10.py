"""Prune the shipped CIFAR-10 ResNet-20 to half its FLOPs, strip and export it.

The project's main job (README command 1), on CPU with TensorFlow + XLA:

1. load the trained dense model `saved_models/resnet20_cifar10_dense.keras`
   (raw 0-255 RGB in, logits out; trained by `examples/train_dense_cifar10.py`)
   and CIFAR-10 from the offline archive (`load_cifar10`);
2. prune: `krp.add_gates` and one epoch of `fit` (`--prune-epochs`) with
   `krp.PruningCallback(target)` and the method study's recipe (adaptive
   lambda, equal pushes, BN-gamma gate prior): the budget ramps over the
   epoch and closes when it ends; BatchNormalization statistics are
   re-estimated then (`calibration_data`);
3. `krp.strip_pruning`, checked against the gated model;
4. fine-tune: the stripped (smaller, faster) network trains on for
   `--epochs` (4) with the learning rate cosine to 0;
   in both fits the dense network teaches through
   `keras.distillation.Distiller` (`--no-distill` to train on labels only);
5. `krp.export` (`.keras`, SavedModel, TFLite) into `saved_models/<run-name>/`
   and one before/after table: test accuracy on all 10,000 test images,
   FLOPs, params, file sizes and TFLite batch-1 latency measured in this
   run; `runs/<run-name>/summary.json` holds it all.

`BackupAndRestore` backs both fits up into `checkpoints/<run-name>/` each
epoch and the stripped model is kept there between them: the same command
started again after a kill resumes where it stopped.

    python examples/prune_cifar10.py
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune_apps import job_records, recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keras_relaxprune_apps.batches import AugmentedBatches, EpochSync
from keras_relaxprune_apps.datasets import DATA_DIR_ENV, load_cifar10
from keras_relaxprune_apps.option_types import non_negative_int, positive_int

# This repository keeps its offline archives in ../shared/data (README).
os.environ.setdefault(DATA_DIR_ENV, str(Path(__file__).resolve().parents[2] / "shared" / "data"))

EVAL_BATCH = 500
DEFAULT_DENSE = "saved_models/resnet20_cifar10_dense.keras"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense", default=DEFAULT_DENSE,
                   help="trained dense .keras model (raw 0-255 input, logits out)")
    p.add_argument("--train-limit", type=non_negative_int, default=0,
                   help="class-balanced training subset; 0 = all 50,000")
    p.add_argument("--test-limit", type=non_negative_int, default=0, help="0 = all 10,000")
    p.add_argument("--batch-size", type=positive_int, default=128)
    recipe.add_job_arguments(p, epochs=4, latency_runs=200,
                             run_name="resnet<N>_cifar10_<metric><kept %>")
    return p.parse_args(argv)


def load_dense(path, args):
    """The dense model; without the shipped one, a short stand-in is trained."""
    if Path(path).is_file():
        return keras.saving.load_model(path, compile=False)
    if path != DEFAULT_DENSE:
        raise SystemExit(f"error: no dense model at {path}.")
    stand_in = Path(args.checkpoint_dir) / "resnet20_cifar10_dense_short.keras"
    print(f"note: {DEFAULT_DENSE} is not there; using a short stand-in "
          f"({stand_in}: 3 epochs on 10k images, far from converged). Train the "
          "real one with `python examples/train_dense_cifar10.py`.")
    if not stand_in.is_file():
        from train_dense_cifar10 import main as train_dense

        train_dense(["--epochs", "3", "--train-limit", "10000",
                     "--name", stand_in.stem, "--out-dir", str(stand_in.parent),
                     "--checkpoint-dir", args.checkpoint_dir,
                     "--validation-freq", "3", "--verbose", str(args.verbose)])
    return keras.saving.load_model(stand_in, compile=False)


def prune(dense, batches, args, checkpoints):
    """add_gates + a fit with PruningCallback; returns the stripped model.

    The budget ramps over 75% of `--prune-epochs` (all of a single epoch)
    and closes; the stripped model is saved in `checkpoints`, so a resumed
    job goes straight on to the fine-tune.
    """
    stripped_file = checkpoints / "stripped.keras"
    if stripped_file.is_file():
        return keras.saving.load_model(stripped_file, compile=False)
    gated = krp.add_gates(dense, metric=args.metric)
    model = recipe.trainer(gated, dense if args.distill else None, args.lr)
    callbacks = [EpochSync(batches), *recipe.pruning_callbacks(
        args.target, args.metric, batches, checkpoints / "prune")]
    model.fit(batches, epochs=args.prune_epochs, shuffle=False, verbose=args.verbose,
              callbacks=callbacks)
    small = krp.strip_pruning(gated)
    recipe.check_strip(gated, small, batches[0][0][:256])
    small.save(stripped_file)
    return small


def fine_tune(small, dense, batches, args, checkpoints):
    """The stripped (dense, smaller) network trained on, cosine to 0."""
    if args.epochs == 0:
        return small
    model = recipe.trainer(small, dense if args.distill else None, args.lr,
                           steps=args.epochs * len(batches))
    model.fit(batches, epochs=args.epochs, shuffle=False, verbose=args.verbose,
              callbacks=[EpochSync(batches, first_epoch=args.prune_epochs),
                         keras.callbacks.BackupAndRestore(str(checkpoints / "fine_tune"))])
    return small


def accuracy(model, images, labels):
    logits = model.predict(images, batch_size=EVAL_BATCH, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def main(argv=None):
    """Runs the job; returns the summary dict (also written as JSON)."""
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    start = time.time()
    dense = load_dense(args.dense, args)
    run_name = args.run_name or (
        f"{Path(args.dense).stem.replace('_dense', '')}_{args.metric}"
        f"{round(100 * (1 - args.target))}")
    (x, y), (xt, yt) = load_cifar10(train_limit=args.train_limit or None,
                                    test_limit=args.test_limit or None, seed=args.seed)
    xt = xt.astype("float32")
    batches = AugmentedBatches(x, y, args.batch_size, args.seed)
    dense_accuracy = accuracy(dense, xt, yt)
    checkpoints = Path(args.checkpoint_dir) / run_name
    small = prune(dense, batches, args, checkpoints)
    pruned_unfine_tuned = accuracy(small, xt, yt)
    small = fine_tune(small, dense, batches, args, checkpoints)
    shutil.rmtree(checkpoints, ignore_errors=True)
    summary = {
        "run_name": run_name, "dense_accuracy": dense_accuracy,
        "pruned_accuracy": accuracy(small, xt, yt), "test_images": len(yt),
        "pruned_accuracy_before_fine_tune": pruned_unfine_tuned,
        "dense_flops": krp.count_flops(dense), "pruned_flops": krp.count_flops(small),
        "dense_params": krp.count_params(dense), "pruned_params": krp.count_params(small),
    }
    summary.update(job_records.export_and_time(
        dense, small, xt[:1], str(Path(args.saved_model_dir) / run_name), args.latency_runs))
    summary.update(
        remaining_flops=summary["pruned_flops"] / summary["dense_flops"],
        remaining_params=summary["pruned_params"] / summary["dense_params"],
        wall_time_s=round(time.time() - start), args=vars(args),
        backend=keras.backend.backend(), keras_version=keras.__version__,
        device=f"CPU ({os.cpu_count()} cores)", date=time.strftime("%Y-%m-%d"))
    job_records.print_before_after(f"{run_name}: before / after", summary,
                              [(f"test accuracy ({len(yt)} images)", "accuracy")])
    job_records.write_summary(summary, Path(args.run_dir) / run_name / "summary.json")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
