"""The steps of a pruning job, written once for every job that takes them.

Every pruning job here (`examples/prune_cifar10.py`, `examples/prune_camvid.py`,
`examples/imagenet_resnet50.py`, `benchmarks/pretrained_pruning.py` and
`relaxprune run`) goes the same way: `with reproducible(seed):`, then
`prune_and_strip` (the recipe's gated fit, or a baseline's channel choice, then
`strip_pruning` checked against the gated model), `fine_tune` of the stripped
network, `evaluation.accuracy` or `evaluation.segmentation_scores` of both
networks and `cost_summary`; `job_records` exports, times, prints and writes
the record.
Each fit is `train`: the recipe's trainer (`recipe.trainer`), the data order
told which epoch it is in, and an optional backup that resumes a killed fit.
"""

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import keras

import keras_relaxprune as krp
from keras_relaxprune.budget.baselines import METHODS as BASELINE_METHODS
from keras_relaxprune.budget.baselines import apply_baseline
from keras_relaxprune_apps import recipe
from keras_relaxprune_apps.batches import EpochSync

CHECKPOINT_FILES = ("gated.keras", "stripped.keras", "strip.json")


@contextlib.contextmanager
def reproducible(seed, deterministic_ops=True):
    """Seeds every generator and runs the block with deterministic ops.

    `keras.utils.set_random_seed` seeds Python, NumPy and the backend. Seeds
    are not enough where an op sums in an order that depends on its threads,
    so on TensorFlow the block also runs with
    `tf.config.experimental.enable_op_determinism()` (and on PyTorch with
    `torch.use_deterministic_algorithms(True, warn_only=True)`); the setting
    the process had is restored when the block ends, so calling a job from
    Python leaves the caller's process as it was. JAX's XLA is
    deterministic on CPU; on GPU it reads
    `XLA_FLAGS=--xla_gpu_deterministic_ops=true` before JAX starts, which only
    the command's environment can set. The same job twice on the same
    machine then gives the same numbers; another machine (other CPU
    instructions, other library builds) may still round differently.

    Keras compiles nothing with XLA while TensorFlow's op determinism is on
    (`jit_compile=True` falls back to graph mode), so a long job that wants
    XLA's speed more than a bit-identical rerun passes
    `deterministic_ops=False`: seeds only, as before.

    Args:
        seed: the job's random seed, an integer.
        deterministic_ops: also ask the backend for deterministic ops.
            Defaults to `True`.

    Example:

    ```python
    with reproducible(0):
        pruned = prune_and_strip(dense, batches, 0.5, check_images=x[:64])
    ```
    """
    keras.utils.set_random_seed(seed)
    if not deterministic_ops:
        yield
        return
    previous = _deterministic_ops(True)
    try:
        yield
    finally:
        _deterministic_ops(previous)


def _deterministic_ops(enabled):
    """Turns the backend's deterministic ops on or off; returns what they were."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # Reading and turning off the setting has no public TensorFlow API.
        from tensorflow.python.framework import config

        was = bool(config.is_op_determinism_enabled())
        if enabled:
            tf.config.experimental.enable_op_determinism()
        else:
            config.disable_op_determinism()
        return was
    if backend == "torch":
        import torch

        was = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(enabled, warn_only=True)
        return was
    return enabled


def train(
    model,
    batches,
    epochs,
    *,
    teacher=None,
    lr=recipe.FINE_TUNE_LR,
    cosine=False,
    initial_epoch=0,
    epochs_before=0,
    steps_per_epoch=None,
    callbacks=(),
    backup_dir=None,
    verbose=1,
    **trainer_options,
):
    """One fit of the recipe: `model` trained, distilled from `teacher` if given.

    Args:
        model: the network to train (gated or stripped), outputting logits.
        batches: a `PyDataset` (an `AugmentedBatches` is told each epoch
            through `EpochSync`) or a `tf.data.Dataset` of `(images, labels)`.
        epochs: the fit's last epoch (Keras' `epochs`).
        teacher: the dense model teaching through `keras.distillation.Distiller`,
            or `None` to train on labels only. Defaults to `None`.
        lr: the learning rate (the cosine's peak). Defaults to 0.01.
        cosine: decay the rate to 0 over the fit's steps; constant otherwise.
            Defaults to `False`.
        initial_epoch: the epoch this fit starts at (Keras' `initial_epoch`).
        epochs_before: data epochs that earlier fits on the same batches used,
            so this fit sees new orders and augmentations. Defaults to 0.
        steps_per_epoch: steps of an epoch, `None` for all of `batches`.
        callbacks: more callbacks, placed before the backup.
        backup_dir: a `keras.callbacks.BackupAndRestore` folder that makes a
            killed fit resume at its last finished epoch, or `None`.
        verbose: `fit` verbosity. Defaults to 1.
        **trainer_options: more `recipe.trainer` arguments (`loss`,
            `metrics`, `temperature`, `optimizer`, `weight_decay`, ...).

    Returns:
        The optimizer steps the fit took, from its start (an `int`).

    Example:

    ```python
    train(krp.strip_pruning(gated), batches, 4, teacher=dense, cosine=True)
    ```
    """
    steps = (epochs - initial_epoch) * (steps_per_epoch or len(batches))
    trainer = recipe.trainer(model, teacher, lr, steps=steps if cosine else None, **trainer_options)
    callbacks = list(callbacks)
    if hasattr(batches, "set_epoch"):
        callbacks.insert(0, EpochSync(batches, first_epoch=epochs_before))
    if backup_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
    was_trainable = teacher.trainable if teacher is not None else None
    try:
        trainer.fit(
            batches,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            shuffle=False,
            verbose=verbose,
            callbacks=callbacks,
        )
    finally:
        if teacher is not None:  # the Distiller freezes its teacher
            teacher.trainable = was_trainable
    return int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))


@dataclass
class PrunedModels:
    """What `prune_and_strip` gives: the gated model, the stripped one, and
    the strip check (`max_difference` of the outputs and its `tolerance`)."""

    gated: keras.Model
    stripped: keras.Model
    strip_check: dict


def prune_and_strip(
    dense,
    batches,
    target,
    metric="flops",
    *,
    check_images,
    epochs=1,
    method="ours",
    teacher=None,
    lr=recipe.FINE_TUNE_LR,
    cosine=False,
    checkpoints=None,
    epochs_before=0,
    steps_per_epoch=None,
    callback_options=None,
    calibration_data=None,
    gate_options=None,
    strip_tolerance=recipe.STRIP_TOLERANCE,
    seed=0,
    verbose=1,
    **trainer_options,
):
    """Prunes `dense` to the budget and strips it, checked against the gated model.

    `method="ours"`: `krp.add_gates` and one gated fit (`train`) with
    `recipe.pruning_callbacks`: the budget ramps and closes and
    BatchNormalization is re-estimated. A baseline (`BASELINE_METHODS`:
    `"uniform"`, `"random"`, `"l1_norm"`, `"network_slimming"`) sets the
    keep masks under the same budget instead, without a fit. Then
    `krp.strip_pruning` and `recipe.check_strip`.

    Args:
        dense: the trained dense model (raw images in, logits out).
        batches: training batches (see `train`).
        target: fraction of the cost to remove, in (0, 1).
        metric: `"flops"` or `"params"`. Defaults to `"flops"`.
        check_images: a few inputs the strip is checked on.
        epochs: epochs of the gated fit. Defaults to 1.
        method: `"ours"` or one of `BASELINE_METHODS`. Defaults to `"ours"`.
        teacher: the dense model teaching, or `None`. Defaults to `None`.
        lr: the gated fit's learning rate. Defaults to 0.01.
        cosine: decay it to 0 with a cosine over the gated fit (the plain
            call: the fit prunes and fine-tunes); constant otherwise (a
            stripped fine-tune follows; the callback lowers a constant rate
            after the closing itself). Defaults to `False`.
        checkpoints: a folder that makes the job resumable: the gated fit is
            backed up in it every epoch, and the gated and stripped models are
            kept there, so a job run again after the strip goes straight on.
            Defaults to `None`.
        epochs_before: data epochs of earlier fits on `batches` (e.g. dense
            training). Defaults to 0.
        steps_per_epoch: steps of a gated epoch, `None` for all of `batches`.
        callback_options: more `PruningCallback` arguments (e.g. `min_keep`).
        calibration_data: batches that re-estimate BatchNormalization.
            Defaults to `batches`.
        gate_options: more `krp.add_gates` arguments (e.g. `input_shape`).
        strip_tolerance: the largest output difference allowed, or a function
            of `(gated, check_images)` that returns it. Defaults to 1e-3.
        seed: the random choice of the `"random"` baseline. Defaults to 0.
        verbose: `fit` verbosity. Defaults to 1.
        **trainer_options: more `recipe.trainer` arguments (see `train`).

    Returns:
        A `PrunedModels`.

    Example:

    ```python
    pruned = prune_and_strip(dense, batches, 0.5, teacher=dense, check_images=x[:64])
    krp.count_flops(pruned.stripped) / krp.count_flops(dense)  # 0.49 .. 0.50
    ```
    """
    folder = Path(checkpoints) if checkpoints is not None else None
    if folder is not None and all((folder / name).is_file() for name in CHECKPOINT_FILES):
        return _load_pruned(folder)
    gated = krp.add_gates(dense, metric=metric, **(gate_options or {}))
    if method == "ours":
        callbacks = recipe.pruning_callbacks(
            target,
            metric,
            batches if calibration_data is None else calibration_data,
            None if folder is None else folder / "gated_fit",
            **(callback_options or {}),
        )
        train(
            gated,
            batches,
            epochs,
            teacher=teacher,
            lr=lr,
            cosine=cosine,
            epochs_before=epochs_before,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
            **trainer_options,
        )
    else:
        apply_baseline(gated, method, target, metric, seed=seed)
    stripped = krp.strip_pruning(gated)
    tolerance = (
        strip_tolerance(gated, check_images) if callable(strip_tolerance) else strip_tolerance
    )
    difference = recipe.check_strip(gated, stripped, check_images, tolerance)
    pruned = PrunedModels(gated, stripped, {"max_difference": difference, "tolerance": tolerance})
    if folder is not None:
        _save_pruned(folder, pruned)
    return pruned


def _save_pruned(folder, pruned):
    folder.mkdir(parents=True, exist_ok=True)
    pruned.gated.save(folder / CHECKPOINT_FILES[0])
    pruned.stripped.save(folder / CHECKPOINT_FILES[1])
    (folder / CHECKPOINT_FILES[2]).write_text(json.dumps(pruned.strip_check))


def _load_pruned(folder):
    gated, stripped = (
        keras.saving.load_model(folder / name, compile=False) for name in CHECKPOINT_FILES[:2]
    )
    return PrunedModels(gated, stripped, json.loads((folder / CHECKPOINT_FILES[2]).read_text()))


def fine_tune(
    stripped,
    batches,
    epochs,
    *,
    teacher=None,
    lr=recipe.FINE_TUNE_LR,
    checkpoints=None,
    epochs_before=0,
    steps_per_epoch=None,
    verbose=1,
    **trainer_options,
):
    """Trains the stripped network on, the learning rate cosine to 0.

    Args:
        stripped: `krp.strip_pruning`'s model (trained in place).
        batches: training batches (see `train`).
        epochs: epochs of the fine-tune; 0 leaves `stripped` as it is.
        teacher: the dense model teaching, or `None`. Defaults to `None`.
        lr: the cosine's peak learning rate. Defaults to 0.01.
        checkpoints: the job's resumable folder (`prune_and_strip`); the
            fine-tune is backed up in it every epoch. Defaults to `None`.
        epochs_before: data epochs of earlier fits on `batches` (the gated
            fit's), so the fine-tune sees new orders. Defaults to 0.
        steps_per_epoch: steps of an epoch, `None` for all of `batches`.
        verbose: `fit` verbosity. Defaults to 1.
        **trainer_options: more `recipe.trainer` arguments (see `train`).

    Returns:
        The optimizer steps taken (0 for no epochs).

    Example:

    ```python
    fine_tune(pruned.stripped, batches, 4, teacher=dense, epochs_before=1)
    ```
    """
    if epochs == 0:
        return 0
    backup = None if checkpoints is None else Path(checkpoints) / "fine_tune_fit"
    return train(
        stripped,
        batches,
        epochs,
        teacher=teacher,
        lr=lr,
        cosine=True,
        epochs_before=epochs_before,
        steps_per_epoch=steps_per_epoch,
        backup_dir=backup,
        verbose=verbose,
        **trainer_options,
    )


def cost_summary(dense, stripped, input_shape=None, latency_table=None):
    """FLOPs and params of the dense and the stripped model, and what remains.

    Args:
        dense: the dense model.
        stripped: the stripped model.
        input_shape: the sample shape to count FLOPs at where the models
            leave it open (`krp.count_flops`). Defaults to `None`.
        latency_table: a `krp.LatencyTable`: the predicted latencies too.
            Defaults to `None`.

    Returns:
        A dict: `dense_flops`, `pruned_flops`, `dense_params`,
        `pruned_params`, `remaining_flops` and `remaining_params`; with a
        table also `dense_predicted_latency_s`, `pruned_predicted_latency_s`
        and `remaining_predicted_latency`.

    Example:

    >>> cost_summary(dense, pruned.stripped)["remaining_flops"]  # doctest: +SKIP
    0.4991
    """
    costs = {
        "dense_flops": krp.count_flops(dense, input_shape=input_shape),
        "pruned_flops": krp.count_flops(stripped, input_shape=input_shape),
        "dense_params": krp.count_params(dense),
        "pruned_params": krp.count_params(stripped),
    }
    costs.update(
        remaining_flops=costs["pruned_flops"] / costs["dense_flops"],
        remaining_params=costs["pruned_params"] / costs["dense_params"],
    )
    if latency_table is not None:
        dense_s, pruned_s = (
            krp.estimate_latency(model, latency_table, input_shape=input_shape)
            for model in (dense, stripped)
        )
        costs.update(
            dense_predicted_latency_s=dense_s,
            pruned_predicted_latency_s=pruned_s,
            remaining_predicted_latency=pruned_s / dense_s,
        )
    return costs


__all__ = [
    "BASELINE_METHODS",
    "PrunedModels",
    "cost_summary",
    "fine_tune",
    "prune_and_strip",
    "reproducible",
    "train",
]
