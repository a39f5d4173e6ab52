"""Prune a CIFAR-10 ResNet to half its FLOPs with `keras_relaxprune`.

The project's main job, end to end on CPU (TensorFlow backend, XLA):

1. load CIFAR-10 from the offline archive (`load_cifar10`);
2. build `cifar_resnet(depth)` and train it dense for `--dense-epochs`, or
   load the dense checkpoint `--dense-weights` (`.weights.h5` or `.keras`) when
   it exists; a freshly trained one is saved there, so the next run reuses it;
3. `krp.add_gates` + `fit` with `krp.PruningCallback(target)`: the budget ramps
   for 75% of the epochs, then the masks are fixed and the rest fine-tunes;
4. report dense and pruned test accuracy, FLOPs and params before and after,
   and `krp.pruning_report`; `krp.strip_pruning` and `krp.export` into
   `saved_models/<run-name>`; write `runs/<run-name>/summary.json`.

Augmentation (reflect-pad 4 + random 32x32 crop + horizontal flip) is done in
NumPy outside the model by `augment_crop_flip`, per batch, seeded by
(seed, epoch, batch). `BackupAndRestore` backs each phase up into
`checkpoints/<run-name>/backup*` at every epoch end, so a killed run started
again with the same command resumes at the last finished epoch.

Default command (from the repository root; `logs/` is git-ignored):

    python examples/prune_cifar10.py
    # in the background, as measured below:
    mkdir -p logs
    nohup python examples/prune_cifar10.py > logs/prune_cifar10.log 2>&1 &

Measured on this machine, 2026-11-25 (2 vCPUs "AMD EPYC", TF 2.21.0 + Keras
3.15.1, XLA). Other engineers' test suites ran on the same two cores (load
average 2.5-3.7), so timings are noisy: the same pruning phase took 266 s in
one run and 438 s in the next.

    run 1 (no dense checkpoint: trains dense 3 epochs on 10k images, saves it)
        wall time             8 min 51 s (/usr/bin/time; summary "total" 526 s)
        phases (s)            load 2.5, dense train 221, dense eval 14,
                              pruning 3 epochs 266, pruned eval 21
        dense  test accuracy  0.3984   (all 10 000 test images)
        pruned test accuracy  0.4912   (3 more epochs of training: the short
                                        dense phase is far from converged)
        FLOPs                 82,101,578 -> 40,943,178  (49.9% left, target 50%)
        params                274,042 -> 145,009        (52.9% left)
    run 2 (same command, reuses checkpoints/resnet20_dense.weights.h5)
        wall time             8 min 05 s (pruning phase 438 s: busier CPU)
        accuracies, FLOPs     identical to run 1 (the job is seeded end to end)

These runs predate `strip_pruning`; the job now also strips, checks the
stripped model against the gated one on 256 test images and exports it.

Throughput seen: ResNet-20 dense ~120-145 img/s training, gated ~110 img/s
(see benchmarks/results/overhead_cpu_tf.md), ~500 img/s inference; XLA
compilation ~20-25 s per model. The accuracies are those of a short
budget run (3 + 3 epochs on a 10k subset), not of a converged ResNet-20
(~92% dense): use `--train-limit 50000 --dense-epochs 60 --epochs 30` and
more hours for that.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_relaxprune as krp  # noqa: E402
from keras_relaxprune.datasets import augment_crop_flip, load_cifar10  # noqa: E402
from keras_relaxprune.models import cifar_resnet  # noqa: E402

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], "float32")
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], "float32")
EVAL_BATCH = 250
STRIP_TOLERANCE = 1e-4  # max |diff| of softmax outputs, float32 round-off


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=20, help="ResNet depth, 6n+2")
    p.add_argument("--target", type=float, default=0.5,
                   help="fraction of the cost to remove (0.5 leaves half)")
    p.add_argument("--metric", choices=("flops", "params"), default="flops")
    p.add_argument("--train-limit", type=int, default=10000,
                   help="class-balanced training subset; 0 = all 50 000")
    p.add_argument("--test-limit", type=int, default=10000,
                   help="class-balanced test subset; 0 = all 10 000")
    p.add_argument("--dense-epochs", type=int, default=3,
                   help="dense training epochs when no dense checkpoint exists")
    p.add_argument("--epochs", type=int, default=3, help="pruning epochs")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dense-weights", default=None,
                   help="dense checkpoint (.weights.h5 or .keras); default "
                        "<checkpoint-dir>/resnet<depth>_dense.weights.h5")
    p.add_argument("--run-name", default=None,
                   help="default resnet<depth>_<metric><target %%>")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--run-dir", default="runs",
                   help="summary goes to <run-dir>/<run-name>/summary.json")
    p.add_argument("--saved-model-dir", default="saved_models")
    p.add_argument("--no-jit", dest="jit", action="store_false",
                   help="compile without XLA (jit_compile=False)")
    p.add_argument("--verbose", type=int, default=2, help="fit verbosity")
    args = p.parse_args(argv)
    if not 0.0 < args.target < 1.0:
        p.error("--target must be in (0, 1)")
    default_name = f"resnet{args.depth}_{args.metric}{round(100 * args.target)}"
    args.run_name = args.run_name or default_name
    args.dense_weights = args.dense_weights or str(
        Path(args.checkpoint_dir) / f"resnet{args.depth}_dense.weights.h5")
    if not args.dense_weights.endswith((".weights.h5", ".keras")):
        p.error("--dense-weights must end in .weights.h5 or .keras")
    return args


# --------------------------------------------------------------------- data

def normalize(images):
    """uint8 (N, 32, 32, 3) -> standardised float32."""
    return (images.astype("float32") / 255.0 - CIFAR_MEAN) / CIFAR_STD


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented, normalised training batches (last partial dropped).

    Dropping the remainder keeps one batch shape, so XLA compiles once. The
    order and the augmentation depend only on (seed, epoch, batch), and the
    epoch is set by `EpochSync`, so a resumed run sees the same batches.
    """

    def __init__(self, images, labels, batch_size, seed):
        super().__init__()
        if len(images) < batch_size:
            raise ValueError(f"{len(images)} training images < batch size {batch_size}.")
        self.images, self.labels = images, labels
        self.batch_size, self.seed = batch_size, seed
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.epoch = epoch
        self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, index):
        picks = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        batch = augment_crop_flip(self.images[picks], rng)
        return normalize(batch), self.labels[picks]


class EpochSync(keras.callbacks.Callback):
    """Tells `AugmentedBatches` the epoch `fit` is in (also after a resume)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


def fit(model, batches, epochs, callbacks, args):
    """`model.fit` on `batches`; our own order, so Keras does not shuffle."""
    return model.fit(batches, epochs=epochs, verbose=args.verbose, shuffle=False,
                     callbacks=[EpochSync(batches), *callbacks])


def load_data(args):
    train_limit = args.train_limit or None
    test_limit = args.test_limit or None
    (x, y), (xt, yt) = load_cifar10(train_limit=train_limit, test_limit=test_limit,
                                    seed=args.seed)
    print(f"data: {len(x)} training, {len(xt)} test images")
    return (x, y), (normalize(xt), yt)


# ------------------------------------------------------------------- models

def compile_model(model, args):
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=args.jit,
    )
    return model


def load_dense(path, depth):
    if path.endswith(".keras"):
        return keras.saving.load_model(path, compile=False)
    model = cifar_resnet(depth)
    model.load_weights(path)
    return model


def save_dense(model, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if path.endswith(".keras"):
        model.save(path)
    else:
        model.save_weights(path)


def dense_model(args, train):
    """Loads `--dense-weights`, or trains the dense model and saves it there."""
    if Path(args.dense_weights).exists():
        print(f"dense: loading {args.dense_weights}")
        return compile_model(load_dense(args.dense_weights, args.depth), args), "loaded"
    print(f"dense: no checkpoint at {args.dense_weights}; training "
          f"{args.dense_epochs} epochs")
    model = compile_model(cifar_resnet(args.depth), args)
    backup = Path(args.checkpoint_dir) / args.run_name / "backup_dense"
    batches = AugmentedBatches(*train, args.batch_size, args.seed)
    fit(model, batches, args.dense_epochs,
        [keras.callbacks.BackupAndRestore(str(backup))], args)
    save_dense(model, args.dense_weights)
    print(f"dense: saved {args.dense_weights}")
    return model, "trained"


def prune(dense, args, train):
    """add_gates + fit with PruningCallback; returns (gated model, history)."""
    gated = compile_model(krp.add_gates(dense, metric=args.metric), args)
    backup = Path(args.checkpoint_dir) / args.run_name / "backup"
    # PruningCallback first: at train begin BackupAndRestore then overwrites
    # the budget state with the backed-up one (so a resume wins), and at
    # epoch end the backup is written after the budget was closed.
    callbacks = [krp.PruningCallback(target=args.target, verbose=1),
                 keras.callbacks.BackupAndRestore(str(backup))]
    batches = AugmentedBatches(*train, args.batch_size, args.seed + 1)
    history = fit(gated, batches, args.epochs, callbacks, args)
    return gated, history.history


def accuracy(model, test):
    x, y = test
    return float(model.evaluate(x, y, batch_size=EVAL_BATCH, verbose=0,
                                return_dict=True)["accuracy"])


# ------------------------------------------------------- strip and export

def strip_and_export(gated, args, test):
    """Strips, checks the stripped model against the gated one, exports."""
    stripped = krp.strip_pruning(gated)
    x = test[0][:256]
    diff = float(np.max(np.abs(
        gated.predict(x, batch_size=128, verbose=0)
        - stripped.predict(x, batch_size=128, verbose=0))))
    out = {"stripped": True, "strip_max_abs_diff": diff,
           "stripped_flops": krp.count_flops(stripped),
           "stripped_params": krp.count_params(stripped)}
    print(f"strip: max |gated - stripped| on {len(x)} test images = {diff:.2e}; "
          f"stripped model {out['stripped_flops']:,} FLOPs, "
          f"{out['stripped_params']:,} params")
    if diff > STRIP_TOLERANCE:
        print(f"WARNING: stripped model differs from the gated one by {diff:.2e} "
              f"> {STRIP_TOLERANCE:g}")
    path = Path(args.saved_model_dir) / args.run_name
    # SavedModel and TFLite need the TensorFlow backend; .keras does not.
    formats = (("keras", "saved_model", "tflite")
               if keras.backend.backend() == "tensorflow" else ("keras",))
    written = krp.export(stripped, str(path), formats=formats)
    out["exported"] = {k: str(v) for k, v in written.items()}
    print(f"export: {out['exported']}")
    return out


# ------------------------------------------------------------------ summary

def cost_summary(dense, gated):
    flops = (krp.count_flops(dense), krp.count_flops(gated))
    params = (krp.count_params(dense), krp.count_params(gated))
    return {
        "flops_dense": flops[0], "flops_pruned": flops[1],
        "remaining_flops_fraction": flops[1] / flops[0],
        "params_dense": params[0], "params_pruned": params[1],
        "remaining_params_fraction": params[1] / params[0],
    }


def print_results(summary):
    s = summary
    print(f"\ndense  test accuracy: {s['dense_accuracy']:.4f}")
    print(f"pruned test accuracy: {s['pruned_accuracy']:.4f}  "
          f"(gated model; pruned channels are exactly 0)")
    print(f"FLOPs : {s['flops_dense']:,} -> {s['flops_pruned']:,}  "
          f"({s['remaining_flops_fraction']:.1%} left, target "
          f"{1 - s['args']['target']:.0%})")
    print(f"params: {s['params_dense']:,} -> {s['params_pruned']:,}  "
          f"({s['remaining_params_fraction']:.1%} left)")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in s["timings"].items()))


def write_summary(summary, args):
    path = Path(args.run_dir) / args.run_name / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    summary["summary_path"] = str(path)
    path.write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
    print(f"summary: {path}")
    return summary


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --------------------------------------------------------------------- main

class _Clock:
    """Wall time per phase."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.timings = {}

    def lap(self, name):
        now = time.perf_counter()
        self.timings[name] = round(now - self.last, 1)
        self.last = now

    def total(self):
        self.timings["total"] = round(time.perf_counter() - self.start, 1)
        return self.timings


def main(argv=None):
    """Runs the job; returns the summary dict (also written as JSON)."""
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    clock = _Clock()
    train, test = load_data(args)
    clock.lap("load_data")
    dense, dense_source = dense_model(args, train)
    clock.lap("dense_train" if dense_source == "trained" else "dense_load")
    dense_acc = accuracy(dense, test)
    clock.lap("dense_eval")
    gated, history = prune(dense, args, train)
    clock.lap("prune_train")
    pruned_acc = accuracy(gated, test)
    clock.lap("pruned_eval")
    summary = {"dense_accuracy": dense_acc, "pruned_accuracy": pruned_acc,
               **cost_summary(dense, gated), "dense_source": dense_source}
    print(krp.pruning_report(gated))
    summary.update(strip_and_export(gated, args, test))
    clock.lap("strip_export")
    summary.update(
        timings=clock.total(), history=history, args=vars(args),
        backend=keras.backend.backend(), keras_version=keras.__version__,
        date=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    print_results(summary)
    return write_summary(summary, args)


if __name__ == "__main__":
    main(sys.argv[1:])
