"""One pruning job, end to end: data, dense model, prune, strip, fine-tune, export.

`run_pruning_job` is what `relaxprune run` calls. It takes the main job's
steps (`job_steps`, as `examples/prune_cifar10.py` does): the plain call,
one `fit` with `PruningCallback` (its defaults: adaptive lambda, pushes
growing with the square root of a channel's FLOPs, BN-gamma gate prior,
BatchNormalization re-estimated) in which the budget ramps over the
fewest epochs that hold 300 steps (at most 75% of them) and closes and
the rest fine-tune, the learning rate cosine to
0 over the fit; `strip_pruning` checked against the gated model; with
`epochs`, a separate fine-tune of the stripped network (the two-fit
recipe); the dense network teaching through `keras.distillation.Distiller`;
then the export and one before/after table.

Datasets: `"cifar10"`, `"camvid"` (11 classes, label 11 = void, ignored),
`"tfds:NAME"` (a TensorFlow Datasets image classification set with
`(image, label)` pairs) or `"folder:PATH"` (class subfolders, in
`PATH/train` with an optional `PATH/test` or `PATH/val`, else in `PATH`
with 20% held out); archives are found through `$KRP_DATA_DIR`. Models:
`"resnet20"`, `"resnet56"` (CIFAR ResNets), `"unet"` (a small U-Net for
CamVid), a `.keras` file or a `keras.Model` that takes raw 0-255 RGB and
outputs logits; a named model is untrained, so it needs `dense_epochs`.

Each fit is backed up every epoch (`keras.callbacks.BackupAndRestore`) into
`out/checkpoints/`, with the trained dense, gated and stripped models kept
there between the fits: the same call after a kill resumes where it
stopped. The folder is removed when the job ends.
"""

import os
import shutil
import time
from pathlib import Path

import keras

import keras_relaxprune as krp
from keras_relaxprune.errors import InvalidArgumentError
from keras_relaxprune_apps import evaluation, job_records, job_steps, recipe
from keras_relaxprune_apps.job_data import CAMVID_SIZE, FOLDER_SIZE, load_job_data
from keras_relaxprune_apps.job_settings import WHERE, checked_settings, claim_checkpoints

DENSE_LR = 0.1  # dense training of a named model: SGD-Nesterov, cosine to 0
DENSE_WEIGHT_DECAY = 5e-3  # decoupled; L2 5e-4 under momentum 0.9


def run_pruning_job(
    dataset,
    model,
    out,
    target=0.5,
    metric="flops",
    latency_target="tflite",
    prune_epochs=3,
    epochs=0,
    dense_epochs=0,
    train_limit=None,
    test_limit=None,
    batch_size=128,
    lr=0.01,
    weight_decay=recipe.PRUNING_WEIGHT_DECAY,
    distill=True,
    seed=0,
    image_size=None,
    latency_runs=100,
    verbose=1,
    deterministic_ops=False,
):
    """Prunes a model on a dataset, strips, fine-tunes and exports it.

    Args:
        dataset: `"cifar10"`, `"camvid"`, `"tfds:NAME"` or `"folder:PATH"`
            (module docstring).
        model: `"resnet20"`, `"resnet56"`, `"unet"`, a `.keras` file or a
            `keras.Model` (trained in place by `dense_epochs`; pruning
            works on a copy).
        out: directory of the export and of `summary.json`.
        target: fraction of the cost to remove, in (0, 1). Defaults to 0.5.
        metric: `"flops"`, `"params"` or `"latency"` (predicted from a
            table of per-layer latencies measured on `latency_target` first;
            cached, see `krp.LatencyTable`). Defaults to `"flops"`.
        latency_target: with `metric="latency"`, the runtime timed:
            `"tflite"` (LiteRT + XNNPACK, batch 1, one thread; TensorFlow
            backend) or `"xla"` (XLA-compiled Keras, batch 1). Defaults to
            `"tflite"`.
        prune_epochs: epochs of the gated fit (`fit` with `PruningCallback`):
            the budget ramps over the fewest of them that hold 300 steps (at
            most 75%) and closes, the rest fine-tune with the masks fixed.
            Defaults to 3.
        epochs: epochs of a separate fine-tune of the stripped model. 0 (the
            default) is the plain call: one gated fit whose rate decays with
            a cosine to 0. With more, the gated fit's rate is constant and the
            fine-tune's decays (the two-fit recipe). Defaults to 0.
        dense_epochs: dense training epochs before pruning. Defaults to 0.
        train_limit: training images used (`None`: all). Defaults to `None`.
        test_limit: evaluate on this many test images. Defaults to `None`.
        batch_size: training batch size. Defaults to 128.
        lr: SGD-Nesterov's (peak) learning rate: cosine to 0 over the gated
            fit, or with `epochs`, constant there and cosine to 0 in the
            fine-tune. Defaults to 0.01.
        weight_decay: decoupled weight decay of the kernels in the gated fit
            and the fine-tune (each step takes `lr * weight_decay` of a
            kernel; BatchNormalization and biases spared); 0 turns it off.
            Defaults to 5e-2, the main job's (measured better than none).
        distill: the dense model teaches (logits, temperature 4, weight 0.5).
            Defaults to `True`.
        seed: seed of the data order, augmentation and subsets. Defaults to 0.
        image_size: `(height, width)` of the images. Defaults to `None`:
            the model's input size, else the dataset's (CamVid 176 x 240).
        latency_runs: timed TFLite invocations per model. Defaults to 100.
        verbose: `fit` verbosity, 0, 1 (progress bars) or 2. Defaults to 1.
        deterministic_ops: also turn on the backend's deterministic ops
            (`job_steps.reproducible`). Off, the fits compile with XLA and
            the seed alone repeats a run on one CPU machine; on, Keras turns
            XLA off (about 2x slower) and a run also repeats on GPU.
            Defaults to `False`.

    Resumable after a kill (module docstring).

    Returns:
        The summary dict, also written to `out/summary.json`: test quality
        (`dense_accuracy`/`pruned_accuracy`, or `dense_miou`/`pruned_miou`),
        FLOPs, params, file sizes, TFLite batch-1 latency and the exported paths.

    Example:

    ```python
    summary = run_pruning_job("cifar10", "saved_models/resnet20_cifar10_dense.keras",
                              "saved_models/resnet20_flops50", target=0.5)
    summary["remaining_flops"]  # 0.49 .. 0.50
    ```
    """
    settings = checked_settings(locals())
    start = time.time()
    claim_checkpoints(settings)
    with job_steps.reproducible(settings["seed"], settings["deterministic_ops"]):
        dense, data = _dense_model_and_data(settings)
        summary = _prune_and_measure(dense, data, settings)
    shutil.rmtree(settings["checkpoints"], ignore_errors=True)
    _record(summary, settings, start)
    return summary


def _record(summary, settings, start):
    """Adds the run's facts and settings to `summary`, prints its table and
    writes it to `out/summary.json` (the CLI says where)."""
    summary.update(
        job_records.run_record(start, settings["seed"]),
        settings={k: v for k, v in settings.items() if k not in ("model_object", "checkpoints")},
    )
    print_table(summary)
    job_records.write_summary(summary, Path(settings["out"]) / "summary.json", announce=False)


def _dense_model_and_data(s):
    """The dense model (trained when asked) and the job's data."""
    dense = s["model_object"]
    if dense is None and s["dense_epochs"] == 0:
        raise InvalidArgumentError(
            f"{WHERE}: model='{s['model']}' is built untrained and dense_epochs=0; pass "
            f"a trained .keras model, or dense_epochs=N (--dense-epochs N) to train it "
            "first."
        )
    if dense is None:
        _check_named_model_fits_dataset(s["model"], s["dataset"][0])
    size = _image_size(s, dense)
    data = load_job_data(s["dataset"], size, s["train_limit"], s["test_limit"], s["seed"])
    if dense is None:
        dense = _named_model(s["model"], data)
    _check_model_fits_data(dense, data)
    if len(data.images) < s["batch_size"]:
        raise InvalidArgumentError(
            f"{WHERE}: batch_size={s['batch_size']} is larger than the "
            f"{len(data.images)} training images; pass batch_size <= {len(data.images)}."
        )
    if s["dense_epochs"]:
        trained = s["checkpoints"] / "dense.keras"
        if trained.is_file():
            dense = keras.saving.load_model(trained, compile=False)
        else:
            _train_dense(dense, data, s)
            trained.parent.mkdir(parents=True, exist_ok=True)
            dense.save(trained)
    return dense, data


def _image_size(s, model):
    """Explicit size, else the model's fixed input size, else the dataset's."""
    fixed = None
    if model is not None and len(model.inputs) == 1 and len(model.inputs[0].shape) == 4:
        height, width = model.inputs[0].shape[1:3]
        fixed = (height, width) if height and width else None
    given = s["image_size"]
    if given and fixed and given != fixed:
        raise InvalidArgumentError(
            f"{WHERE}: image_size={given} differs from the model's input size {fixed}; "
            f"leave it out or pass {fixed[0]} {fixed[1]}."
        )
    kind = s["dataset"][0]
    default = {"camvid": CAMVID_SIZE, "folder": FOLDER_SIZE}.get(kind)
    return given or fixed or default


def _check_named_model_fits_dataset(name, kind):
    if name == "unet" and kind != "camvid":
        raise InvalidArgumentError(
            f"{WHERE}: model='unet' segments images; pass dataset='camvid', or a "
            "classification model (resnet20, resnet56) for this dataset."
        )
    if name != "unet" and kind == "camvid":
        raise InvalidArgumentError(
            f"{WHERE}: model='{name}' classifies images; for dataset='camvid' pass "
            "model='unet' or a segmentation .keras model."
        )


def _named_model(name, data):
    from keras_relaxprune_apps.models import cifar_resnet, small_unet

    shape = data.images.shape[1:]
    if name == "unet":
        # The U-Net of examples/train_dense_camvid.py: 4 levels, so sizes
        # divisible by 8, preprocessing inside.
        if shape[0] % 8 or shape[1] % 8:
            raise InvalidArgumentError(
                f"{WHERE}: model='unet' needs sizes divisible by 8, not {shape[:2]}; pass "
                "image_size, e.g. --image-size 176 240."
            )
        return small_unet(
            input_shape=shape,
            num_classes=data.num_classes,
            widths=(16, 32, 64, 128),
            include_preprocessing=True,
        )
    return cifar_resnet(
        int(name[len("resnet") :]),
        num_classes=data.num_classes,
        input_shape=shape,
        include_preprocessing=True,
        classifier_activation=None,
        name=name,
    )


def _check_model_fits_data(model, data):
    """The model's output is per image (classification) or per pixel."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InvalidArgumentError(
            f"{WHERE}: model '{model.name}' has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; pass a model with one image input and one output."
        )
    rank = len(model.outputs[0].shape)
    expected = 2 if data.task == "classification" else 4
    channels = model.outputs[0].shape[-1]
    if rank != expected or channels != data.num_classes:
        raise InvalidArgumentError(
            f"{WHERE}: model '{model.name}' outputs shape {tuple(model.outputs[0].shape)}, "
            f"but '{data.name}' ({data.task}) needs "
            f"{'(None, C)' if expected == 2 else '(None, H, W, C)'} logits with "
            f"C = {data.num_classes} classes; pass a model made for this dataset."
        )


def _batches(data, s):
    """Seeded shuffled batches; crops and flips for 32 x 32 classification."""
    from keras_relaxprune_apps.batches import AugmentedBatches

    augment = data.task == "classification" and data.images.shape[1:3] == (32, 32)
    return AugmentedBatches(data.images, data.labels, s["batch_size"], s["seed"], augment=augment)


def _loss_and_metrics(data):
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=data.ignore_class
    )
    return loss, (["accuracy"] if data.task == "classification" else [])


def _train_dense(model, data, s):
    import keras_relaxprune as krp
    from keras_relaxprune_apps.batches import EpochSync

    batches = _batches(data, s)
    schedule = keras.optimizers.schedules.CosineDecay(DENSE_LR, s["dense_epochs"] * len(batches))
    optimizer = keras.optimizers.SGD(
        schedule, momentum=0.9, nesterov=True, weight_decay=DENSE_WEIGHT_DECAY
    )
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    loss, metrics = _loss_and_metrics(data)
    trainer = keras.Model(model.inputs, model.outputs)  # leaves `model` uncompiled
    trainer.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=True)
    trainer.fit(
        batches,
        epochs=s["dense_epochs"],
        shuffle=False,
        verbose=s["verbose"],
        callbacks=[
            EpochSync(batches),
            keras.callbacks.BackupAndRestore(str(s["checkpoints"] / "dense_fit")),
        ],
    )
    krp.recalibrate_batchnorm(model, batches, steps=50)


def _latency_table(s):
    """With `metric="latency"`, the table of `latency_target` (`add_gates`
    measures the widths the budget can reach; cached on disk); else `None`."""
    if s["metric"] != "latency":
        return None
    if s["latency_target"] == "xla":
        return krp.LatencyTable(krp.XLATarget(batch_size=1))
    return krp.LatencyTable(krp.TFLiteTarget(num_threads=1))


def _prune_and_measure(dense, data, s):
    """add_gates + PruningCallback, strip, fine-tune, evaluate, export."""
    count_shape = _count_shape(dense, data)
    table = _latency_table(s)
    teacher = dense if s["distill"] else None
    batches = _batches(data, s)
    loss, metrics = _loss_and_metrics(data)
    fits = {
        "teacher": teacher,
        "lr": s["lr"],
        "weight_decay": s["weight_decay"],
        "checkpoints": s["checkpoints"],
        "verbose": s["verbose"],
        "loss": loss,
        "metrics": metrics,
    }
    pruned = job_steps.prune_and_strip(
        dense,
        batches,
        s["target"],
        s["metric"],
        check_images=data.test_images[:16],
        epochs=s["prune_epochs"],
        cosine=s["epochs"] == 0,
        epochs_before=s["dense_epochs"],
        gate_options={"input_shape": count_shape, "latency_table": table},
        **fits,
    )
    before_fine_tune = evaluate(pruned.stripped, data)
    job_steps.fine_tune(
        pruned.stripped,
        batches,
        s["epochs"],
        epochs_before=s["dense_epochs"] + s["prune_epochs"],
        **fits,
    )
    quality = "accuracy" if data.task == "classification" else "miou"
    summary = {
        "dataset": data.name,
        "model": s["model"],
        "task": data.task,
        "quality_metric": quality,
        "test_images": len(data.test_images),
        "train_images": len(data.images),
        "image_size": list(data.images.shape[1:3]),
        f"dense_{quality}": evaluate(dense, data),
        f"pruned_{quality}": evaluate(pruned.stripped, data),
        f"pruned_{quality}_before_fine_tune": before_fine_tune,
        "strip_max_difference": pruned.strip_check["max_difference"],
        "distilled": s["distill"],
        "target": s["target"],
        "metric": s["metric"],
        **job_steps.cost_summary(
            dense, pruned.stripped, input_shape=count_shape, latency_table=table
        ),
    }
    summary.update(
        job_records.export_and_time(
            dense,
            pruned.stripped,
            data.test_images[:1],
            s["out"],
            s["latency_runs"],
            pruned_from=pruned.gated,
        )
    )
    return summary


def _count_shape(model, data):
    """The sample shape FLOPs are counted at, where the model leaves it open."""
    known = all(size is not None for size in model.inputs[0].shape[1:])
    return None if known else tuple(data.images.shape[1:])


def evaluate(model, data):
    """Test accuracy (classification) or mean IoU (segmentation) of `model`."""
    if data.task == "classification":
        return evaluation.accuracy(model, data.test_images, data.test_labels)
    return evaluation.segmentation_scores(
        model, data.test_images, data.test_labels, data.num_classes, data.ignore_class
    )["mean_iou"]


def print_table(summary):
    """Prints the before/after table of a job's summary with `rich`."""
    quality = summary["quality_metric"]
    label = "test accuracy" if quality == "accuracy" else "test mIoU"
    job_records.print_before_after(
        f"{os.path.basename(summary['model'])} on {summary['dataset']}: before / after",
        summary,
        [(f"{label} ({summary['test_images']} images)", quality)],
    )
