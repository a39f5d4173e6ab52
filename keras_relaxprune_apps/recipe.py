"""The measured pruning recipe's building blocks, shared by the jobs that use it.

The recipe (docs/guide.md): one gated fit in which
`PruningCallback(**recipe_options(metric))` ramps and closes the budget, `strip_pruning`
checked against the gated model (`check_strip`), then a fine-tune of the
stripped network; in both fits SGD-Nesterov and the dense network teaching
through `keras.distillation.Distiller` (`trainer`); the callbacks of the
gated fit (`pruning_callbacks`) and the command-line options every job
shares (`add_job_arguments`). What a job records and shows is
`job_records`.
"""

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune_apps.option_types import (
    non_negative_int,
    open_fraction,
    positive,
    positive_int,
)

# The callback options of the method study (docs/accuracy.md);
# with SGD they are `PruningCallback`'s defaults, spelled out so records stay
# reproducible. `cost_exponent` is the callback's per-metric default (`recipe_options`).
RECIPE = {"lambda_rate": 1.0, "gate_prior": "bn_gamma"}
DISTILL_TEMPERATURE = 4.0
FINE_TUNE_LR = 0.01  # SGD-Nesterov's peak rate of the measured recipe
DISTILL_STUDENT_LOSS_WEIGHT = 0.5  # the label loss's share; the rest is distillation
STRIP_TOLERANCE = 1e-3  # max |gated - stripped| of the outputs, float32 round-off
# Variables weight decay leaves alone, as in the dense recipe: BatchNorm's scale and
# shift and biases (`PruningCallback` keeps the gates' logits out itself).
NO_WEIGHT_DECAY = ("gamma", "beta", "bias")
# Decoupled weight decay of the pruning jobs' fits: each step takes lr * 5e-2 of a
# kernel; on the main job +0.45 points over none, mean of 3 seeds (docs/accuracy.md).
PRUNING_WEIGHT_DECAY = 5e-2


def recipe_options(metric):
    """The recipe's `PruningCallback` options for a budget metric, every one spelled out.

    Args:
        metric: `"flops"` or `"params"`.

    Returns:
        `RECIPE` with the metric's `cost_exponent`
        (`DEFAULT_COST_EXPONENT`: 0.5 for FLOPs, 0 for params).

    Example:

    >>> recipe_options("flops")
    {'lambda_rate': 1.0, 'gate_prior': 'bn_gamma', 'cost_exponent': 0.5}
    """
    from keras_relaxprune.budget.callback import DEFAULT_COST_EXPONENT

    return {**RECIPE, "cost_exponent": DEFAULT_COST_EXPONENT[metric]}


def optimizer_for(lr=FINE_TUNE_LR, steps=None, optimizer="sgd", weight_decay=0.0):
    """The recipe's optimizer: SGD with Nesterov momentum 0.9 (or Adam).

    Args:
        lr: the (peak) learning rate. Defaults to 0.01.
        steps: training steps of a cosine decay to 0, or `None` for a
            constant rate.
        optimizer: `"sgd"` (the measured recipe) or `"adam"`. Defaults to `"sgd"`.
        weight_decay: decoupled weight decay of the kernels (Keras'
            `weight_decay`: each step takes `lr * weight_decay` of a
            weight away), never of `NO_WEIGHT_DECAY`. Defaults to 0.

    Returns:
        A `keras.optimizers.SGD` or `keras.optimizers.Adam`.

    Example:

    >>> optimizer_for(0.01, steps=100, weight_decay=5e-3).nesterov
    True
    """
    rate = lr if steps is None else keras.optimizers.schedules.CosineDecay(lr, steps)
    decay = weight_decay or None
    if optimizer == "adam":
        chosen = keras.optimizers.Adam(rate, weight_decay=decay)
    else:
        chosen = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if decay:
        chosen.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return chosen


def distiller_for(
    student,
    teacher,
    temperature=DISTILL_TEMPERATURE,
    student_loss_weight=DISTILL_STUDENT_LOSS_WEIGHT,
):
    """A `keras.distillation.Distiller` in which `teacher`'s logits teach `student`.

    `LogitsDistillation` gets an explicit `keras.losses.KLDivergence`: Keras
    3.15 resolves the default `"kl_divergence"` string to a function and then
    takes the KL of logits, not of softened probabilities. `KLDivergence`
    sums over the last axis, so per-pixel logits distil pixel by pixel.

    Args:
        student: the model to train (gated or stripped), outputting logits.
        teacher: the dense model.
        temperature: the distillation temperature. Defaults to 4.
        student_loss_weight: weight of the label loss against the
            distillation loss. Defaults to 0.5.

    Returns:
        The uncompiled `Distiller`.

    Example:

    ```python
    distiller_for(krp.add_gates(dense), dense).compile(optimizer="sgd", loss=loss)
    ```
    """
    return keras.distillation.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=temperature, loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=student_loss_weight,
    )


def trainer(
    student,
    teacher=None,
    lr=FINE_TUNE_LR,
    steps=None,
    loss=None,
    metrics=("accuracy",),
    temperature=DISTILL_TEMPERATURE,
    student_loss_weight=DISTILL_STUDENT_LOSS_WEIGHT,
    optimizer="sgd",
    weight_decay=0.0,
    jit_compile=True,
):
    """A compiled model that trains `student`, distilled from `teacher` if given.

    The optimizer is `optimizer_for(lr, steps, optimizer, weight_decay)`,
    the distillation `distiller_for(student, teacher, ...)`; see them for
    the arguments they share.

    Args:
        student: the model to train (gated or stripped), outputting logits.
        teacher: the dense model, or `None` to train on labels only.
        lr, steps, optimizer, weight_decay: as in `optimizer_for`.
        loss: the label loss. Defaults to
            `SparseCategoricalCrossentropy(from_logits=True)`.
        metrics: compiled metrics. Defaults to `("accuracy",)`.
        temperature, student_loss_weight: as in `distiller_for`.
        jit_compile: compile the steps with XLA. Defaults to `True`.

    Returns:
        The compiled `student` (without a teacher) or `Distiller` (built
        where the input size is known, so `keras.callbacks.BackupAndRestore`
        can save it before the first step).

    Example:

    ```python
    gated = krp.add_gates(dense)
    trainer(gated, teacher=dense).fit(
        batches, epochs=1, callbacks=[krp.PruningCallback(0.5, **recipe_options("flops"))])
    ```
    """
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = student
    if teacher is not None:
        model = distiller_for(student, teacher, temperature, student_loss_weight)
    model.compile(
        optimizer=optimizer_for(lr, steps, optimizer, weight_decay),
        loss=loss,
        metrics=list(metrics),
        jit_compile=jit_compile,
    )
    shape = tuple(student.inputs[0].shape[1:])
    if teacher is not None and None not in shape:
        model(keras.ops.zeros((1, *shape), "float32"))  # built: BackupAndRestore saves it
    return model


def check_strip(gated, small, images, tolerance=STRIP_TOLERANCE):
    """Checks that the stripped model computes what the gated one does.

    Args:
        gated: the gated model after pruning.
        small: `strip_pruning(gated)`.
        images: a few inputs.
        tolerance: the largest absolute output difference allowed.

    Returns:
        The largest absolute output difference on `images`.

    Raises:
        StripError: the difference is above `tolerance`.

    Example:

    >>> check_strip(gated, krp.strip_pruning(gated), x_test[:16])  # doctest: +SKIP
    1.1e-06
    """
    images = np.asarray(images, "float32")
    difference = float(
        np.max(np.abs(gated.predict(images, verbose=0) - small.predict(images, verbose=0)))
    )
    if not difference <= tolerance:
        raise krp.StripError(
            f"strip_pruning: the stripped model differs from the gated one by "
            f"{difference:.2e} (> {tolerance:g}); please report this model."
        )
    return difference


def add_job_arguments(
    parser,
    target=0.5,
    prune_epochs=1,
    epochs=2,
    lr=FINE_TUNE_LR,
    latency_runs=100,
    verbose=1,
    run_name="<model>_<metric><kept %>",
):
    """Adds the command-line options every pruning job shares to `parser`.

    `--target`, `--metric`, `--prune-epochs`, `--epochs`, `--lr`,
    `--no-distill`, `--seed`, `--deterministic-ops`, `--run-name`, `--checkpoint-dir`, `--run-dir`,
    `--saved-model-dir`, `--latency-runs` and `--verbose`, with the given
    defaults; a number out of range (a target outside (0, 1), a gated fit
    of no epochs, a rate not above 0) stops at parsing, exit 2.

    Args:
        parser: an `argparse.ArgumentParser`.
        target, prune_epochs, epochs, lr, latency_runs, verbose: defaults.
        run_name: what the default run name is, for the help text.

    Example:

    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_job_arguments(parser, target=0.9)
    >>> parser.parse_args([]).target
    0.9
    """
    kept = f"{1 - target:.0%}".replace("%", "%%")
    parser.add_argument(
        "--target",
        type=open_fraction,
        default=target,
        help=f"fraction of the cost to remove ({target} leaves {kept})",
    )
    parser.add_argument("--metric", choices=("flops", "params"), default="flops")
    parser.add_argument(
        "--prune-epochs",
        type=positive_int,
        default=prune_epochs,
        help="epochs of the fit with PruningCallback: the budget ramps over the fewest "
        "epochs that hold 300 steps (at most 75%%) and closes, the rest fine-tune with "
        "fixed masks",
    )
    parser.add_argument(
        "--epochs",
        type=non_negative_int,
        default=epochs,
        help="epochs of a separate fine-tune of the stripped model; 0: the gated fit's "
        "rate decays with a cosine (the plain call), else it is constant and the "
        "fine-tune's decays (the two-fit recipe)",
    )
    parser.add_argument(
        "--lr",
        type=positive,
        default=lr,
        help="peak rate: cosine to 0 over the gated fit, or with --epochs constant "
        "there and cosine to 0 in the fine-tune",
    )
    parser.add_argument(
        "--no-distill",
        dest="distill",
        action="store_false",
        help="train on labels only (default: the dense model teaches)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deterministic-ops",
        action="store_true",
        help="TensorFlow's op determinism (XLA off, about 2x slower on CPU); without it "
        "the seeded XLA fit already repeats bit for bit on the same CPU machine",
    )
    parser.add_argument("--run-name", default=None, help=f"default {run_name}".replace("%", "%%"))
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--run-dir", default="runs")
    parser.add_argument("--saved-model-dir", default="saved_models")
    parser.add_argument(
        "--latency-runs",
        type=non_negative_int,
        default=latency_runs,
        help="timed TFLite runs per model; 0: write the .keras file only",
    )
    parser.add_argument("--verbose", type=int, default=verbose, help="fit verbosity")


def pruning_callbacks(target, metric, calibration_data, backup_dir=None, **options):
    """The callbacks of the recipe's gated fit, in the order that resumes right.

    `PruningCallback(target, metric, calibration_data, **recipe_options(metric))`
    and then a `keras.callbacks.BackupAndRestore(backup_dir)`: listed before it, the
    callback configures the budget at train begin and a restored backup
    then overwrites that state, so a resumed fit goes on where it stopped.

    Args:
        target: fraction of the cost to remove, in (0, 1).
        metric: `"flops"` or `"params"`.
        calibration_data: training batches for BN re-estimation.
        backup_dir: the `BackupAndRestore` folder, or `None` for no backup.
        **options: more `PruningCallback` arguments (e.g. `calibration_steps`).

    Returns:
        A list of the callbacks (the backup last).

    Example:

    ```python
    trainer(gated, dense).fit(batches, epochs=1, callbacks=[
        EpochSync(batches), *pruning_callbacks(0.5, "flops", batches, "ckpt/prune")])
    ```
    """
    callbacks = [
        krp.PruningCallback(
            target=target,
            metric=metric,
            calibration_data=calibration_data,
            **{**recipe_options(metric), **options},
        )
    ]
    if backup_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
    return callbacks
