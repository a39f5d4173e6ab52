"""Prune an ImageNet ResNet-50 (`keras.applications`) to half its FLOPs, strip and export it.

The main job's recipe (`examples/prune_cifar10.py`) at ImageNet scale,
written for one machine with several GPUs:

1. `keras.applications.ResNet50(weights="imagenet", classifier_activation=None)`
   rebuilt to take raw 0-255 RGB (`dense_resnet50`): its caffe preprocessing
   (RGB to BGR, then the ImageNet mean subtracted) is a `Normalization`
   layer inside the model plus the channel flip folded into `conv1`'s kernel,
   so the exported SavedModel or TFLite model takes raw pixels;
2. ImageNet streamed through `tf.data` (`imagenet_data.py`; `--data tfds`:
   `imagenet2012` from TensorFlow Datasets, prepared once from the ILSVRC2012
   tars; or
   `--data folder:PATH`: `PATH/train/<wnid>/*.JPEG` and `PATH/val/<wnid>/*.JPEG`
   through `keras.utils.image_dataset_from_directory`), augmented outside
   the model (random resized crop and flip; val: resize to 256, centre
   crop 224);
3. prune (`prune_and_strip`): `krp.add_gates` and `--prune-epochs` (2) of `fit` with
   `krp.PruningCallback(target, **recipe_options(metric))` (the budget ramps over
   the first epoch and closes; BatchNormalization statistics are
   re-estimated on `--calibration-steps` training batches), SGD-Nesterov at
   a constant `--lr`, the dense network teaching through
   `keras.distillation.Distiller` (`--no-distill` to train on labels only);
4. `krp.strip_pruning`, checked against the gated model;
5. fine-tune (`fine_tune`) the stripped network for `--epochs` (10), learning rate
   cosine to 0, distillation again;
6. top-1 and top-5 accuracy of the dense and the pruned network on the
   validation split, `krp.export` (`.keras`, SavedModel, TFLite) into
   `saved_models/<run-name>/`, one before/after table and
   `runs/<run-name>/summary.json`.

`--distribute` trains on every local GPU: `tf.distribute.MirroredStrategy`
on TensorFlow, `keras.distribution.DataParallel` on JAX (docs/devices.md);
`--batch-size` is the global batch. `BackupAndRestore` backs both
fits up into `checkpoints/<run-name>/` each epoch and the stripped model is
kept there between them: the same command started again after a kill
resumes at the last finished epoch (the data order is not replayed).

Needs ImageNet (ILSVRC2012, about 150 GB) and GPUs; the defaults (2 pruning
epochs, 10 fine-tuning epochs, batch 256, learning rate 0.01) are a plan,
not a measured setting. This script has only been run end to end on a tiny
generated image folder with random weights (`tests/test_imagenet_example.py`).

TensorFlow Datasets (download `ILSVRC2012_img_train.tar` and
`ILSVRC2012_img_val.tar` from image-net.org into the manual folder first;
the first run prepares the TFRecords in `--tfds-data-dir`, several hours):

    KERAS_BACKEND=tensorflow python examples/imagenet_resnet50.py --distribute \\
        --data tfds --tfds-data-dir ~/tensorflow_datasets \\
        --manual-dir ~/tensorflow_datasets/downloads/manual

An image folder (`train/` and `val/` with one subfolder per class, named by
WordNet id: sorted, they give the Keras ImageNet class order):

    KERAS_BACKEND=tensorflow python examples/imagenet_resnet50.py --distribute \\
        --data folder:/data/imagenet

On JAX (`keras.distribution.DataParallel`; the data still streams through
`tf.data`, and only the `.keras` file is exported):

    KERAS_BACKEND=jax python examples/imagenet_resnet50.py --distribute \\
        --data folder:/data/imagenet
"""

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from keras_relaxprune_apps import (
    STRIP_TOLERANCE,
    accuracy,
    add_job_arguments,
    cost_summary,
    export_and_time,
    fine_tune,
    non_negative_int,
    positive_int,
    print_before_after,
    prune_and_strip,
    reproducible,
    run_record,
    write_summary,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_data import batched, load_imagenet

# keras.applications.imagenet_utils.preprocess_input(mode="caffe") subtracts
# (103.939, 116.779, 123.68) from BGR pixels: the same means in RGB order.
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
IMAGENET_CLASSES = 1000
STRIP_RELATIVE_TOLERANCE = 1e-4  # of the largest logit (`strip_tolerance`)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--weights",
        choices=("imagenet", "none"),
        default="imagenet",
        help="ImageNet weights (downloaded by Keras) or random ones",
    )
    p.add_argument("--data", default="tfds", help="tfds or folder:PATH")
    p.add_argument(
        "--tfds-data-dir",
        default=None,
        help="TensorFlow Datasets data_dir (default ~/tensorflow_datasets)",
    )
    p.add_argument(
        "--manual-dir", default=None, help="folder holding ILSVRC2012_img_{train,val}.tar"
    )
    p.add_argument("--image-size", type=positive_int, default=224)
    p.add_argument(
        "--steps-per-epoch",
        type=non_negative_int,
        default=0,
        help="cap on the steps of an epoch; 0 = one pass over the training set",
    )
    p.add_argument(
        "--val-steps",
        type=non_negative_int,
        default=0,
        help="validation batches evaluated; 0 = the whole split",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="global, over all devices")
    p.add_argument(
        "--calibration-steps",
        type=non_negative_int,
        default=50,
        help="training batches that re-estimate BatchNormalization statistics",
    )
    p.add_argument("--distribute", action="store_true", help="data parallel over the local GPUs")
    p.add_argument(
        "--no-jit-compile",
        dest="jit_compile",
        action="store_false",
        help="train without XLA (starts faster; on CPU XLA's compile of "
        "ResNet-50 outlasts a few-step test)",
    )
    add_job_arguments(p, prune_epochs=2, epochs=10, run_name="resnet50_imagenet_<metric><kept %>")
    args = p.parse_args(argv)
    if args.data != "tfds" and not args.data.startswith("folder:"):
        p.error("--data must be tfds or folder:PATH")
    if args.image_size < 32:
        p.error("--image-size must be at least 32 (ResNet-50 downsamples 32x)")
    return args


def dense_resnet50(weights, image_size, classes=IMAGENET_CLASSES):
    """ResNet-50 that takes raw 0-255 RGB images and outputs logits.

    Keras' ResNet-50 expects `resnet50.preprocess_input` (caffe style: RGB
    to BGR, then the ImageNet mean subtracted) outside the model. Here the
    mean subtraction is a `Normalization` layer (variance 1) and the channel
    flip is folded into `conv1`'s kernel (a convolution is linear in its
    input channels, and zero padding commutes with the flip), so the model
    is exactly `ResNet50(preprocess_input(x))` with stock layers only, which
    `add_gates`, saving and TFLite all take.

    Args:
        weights: `"imagenet"` or `None` (random).
        image_size: the input's height and width. ImageNet weights fit any
            size (global pooling before the classifier).
        classes: output classes; 1000 with ImageNet weights.

    Returns:
        A functional model `(image_size, image_size, 3)` -> `(classes,)` logits.
    """
    shape = (224, 224, 3) if weights == "imagenet" else (image_size, image_size, 3)
    source = keras.applications.ResNet50(
        weights=weights, input_shape=shape, classes=classes, classifier_activation=None
    )
    return raw_rgb_resnet50(source, image_size)


def raw_rgb_resnet50(source, image_size):
    """A copy of a caffe-preprocessed ResNet-50 that takes raw RGB (`dense_resnet50`).

    Args:
        source: a `keras.applications.ResNet50` (any weights, any input size)
            that expects `resnet50.preprocess_input`.
        image_size: the copy's input height and width.

    Returns:
        A model with `source`'s weights: `model(x) == source(preprocess_input(x))`.
    """
    inputs = keras.Input((image_size, image_size, 3), name="image")
    centred = keras.layers.Normalization(
        mean=IMAGENET_MEAN_RGB, variance=(1.0, 1.0, 1.0), name="imagenet_mean"
    )(inputs)
    model = keras.applications.ResNet50(
        weights=None,
        input_tensor=centred,
        classes=source.output.shape[-1],
        classifier_activation=None,
    )
    for layer in source.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    conv1 = model.get_layer("conv1_conv")
    kernel, bias = conv1.get_weights()
    conv1.set_weights([kernel[:, :, ::-1, :], bias])  # reads RGB as the BGR kernel did
    return model


def distribution_scope(distribute):
    """The scope that builds and compiles models for every local device."""
    if not distribute:
        return contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":
        strategy = tf.distribute.MirroredStrategy()
        print(f"MirroredStrategy over {strategy.num_replicas_in_sync} device(s)")
        return strategy.scope()
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    raise SystemExit(
        f"error: --distribute is written for TensorFlow and JAX, not {keras.backend.backend()}."
    )


def strip_tolerance(gated, images):
    """The strip check's tolerance: float32 round-off at the logits' scale.

    `STRIP_TOLERANCE` (1e-3) suits logits of a trained network (ImageNet
    ResNet-50: tens); an untrained one fed raw pixels can reach 1e5, where
    a relative error of 1e-7 (float32) is already 1e-2. Through 50 layers
    the round-off reached 1.5e-5 of the largest logit (an untrained
    ResNet-50 at 32 px, TensorFlow CPU with another job on the cores), so
    the check allows 1e-4; a wrong strip differs by a sizeable fraction of it.
    """
    scale = float(np.max(np.abs(gated.predict(images, verbose=0))))
    return max(STRIP_TOLERANCE, STRIP_RELATIVE_TOLERANCE * scale)


def plain_copy(model, path):
    """`model` saved and loaded again outside any distribution scope, for export."""
    model.save(path)
    return keras.saving.load_model(path, compile=False)


def prune_and_evaluate(train, val, num_classes, steps, check_images, args, checkpoints):
    """The dense model, pruned, stripped and fine-tuned; top-1/top-k of both."""
    top_k = (1, min(5, num_classes))
    val_steps = args.val_steps or None
    dense = dense_resnet50(
        None if args.weights == "none" else "imagenet", args.image_size, num_classes
    )
    dense_top1, dense_top5 = accuracy(dense, val, top_k=top_k, steps=val_steps)
    fits = {
        "teacher": dense if args.distill else None,
        "lr": args.lr,
        "checkpoints": checkpoints,
        "steps_per_epoch": steps,
        "verbose": args.verbose,
        "jit_compile": args.jit_compile,
    }
    pruned = prune_and_strip(
        dense,
        train,
        args.target,
        args.metric,
        epochs=args.prune_epochs,
        check_images=check_images,
        strip_tolerance=strip_tolerance,
        calibration_data=train.take(args.calibration_steps),
        callback_options={"calibration_steps": args.calibration_steps},
        **fits,
    )
    before_fine_tune = accuracy(pruned.stripped, val, steps=val_steps)
    fine_tune(pruned.stripped, train, args.epochs, **fits)
    pruned_top1, pruned_top5 = accuracy(pruned.stripped, val, top_k=top_k, steps=val_steps)
    return (
        dense,
        pruned.stripped,
        {
            "dense_top1_accuracy": dense_top1,
            "dense_top5_accuracy": dense_top5,
            "pruned_top1_accuracy": pruned_top1,
            "pruned_top5_accuracy": pruned_top5,
            "pruned_top1_accuracy_before_fine_tune": before_fine_tune,
            "strip_check": pruned.strip_check,
        },
    )


def measure_and_export(dense, small, sample, args, run_name):
    """Costs of both models, the export of the pruned one, file sizes, latency."""
    with tempfile.TemporaryDirectory() as tmp:
        if args.distribute:
            dense = plain_copy(dense, Path(tmp) / "dense.keras")
            small = plain_copy(small, Path(tmp) / "pruned.keras")
        return {
            **cost_summary(dense, small),
            **export_and_time(
                dense, small, sample, str(Path(args.saved_model_dir) / run_name), args.latency_runs
            ),
        }


def main(argv=None):
    """Runs the job; returns the summary dict (also written as JSON)."""
    args = parse_args(argv)
    # Seeded only: Keras turns XLA off under op determinism, and a long run wants XLA.
    with reproducible(args.seed, deterministic_ops=args.deterministic_ops):
        start = time.time()
        run_name = args.run_name or (
            f"resnet50_imagenet_{args.metric}{round(100 * (1 - args.target))}"
        )
        train, val, num_train, num_val, num_classes = load_imagenet(args)
        if args.weights == "imagenet" and num_classes != IMAGENET_CLASSES:
            raise SystemExit(
                f"error: ImageNet weights need the {IMAGENET_CLASSES} ImageNet "
                f"classes; {args.data} has {num_classes}."
            )
        train, val = batched(train, val, args.batch_size)
        steps = num_train // args.batch_size
        steps = min(steps, args.steps_per_epoch) if args.steps_per_epoch else steps
        check_images = next(iter(val))[0].numpy()[:32]
        checkpoints = Path(args.checkpoint_dir) / run_name
        with distribution_scope(args.distribute):
            dense, small, quality = prune_and_evaluate(
                train, val, num_classes, steps, check_images, args, checkpoints
            )
        shutil.rmtree(checkpoints, ignore_errors=True)
        val_images = min(num_val, args.val_steps * args.batch_size) if args.val_steps else num_val
        summary = {
            "run_name": run_name,
            "data": args.data,
            "weights": args.weights,
            "train_images": num_train,
            "steps_per_epoch": steps,
            "val_images": val_images,
            **quality,
            **measure_and_export(dense, small, check_images[:1], args, run_name),
            **run_record(
                start,
                args.seed,
                "examples/imagenet_resnet50.py",
                sys.argv[1:] if argv is None else argv,
            ),
            "args": vars(args),
        }
        print_before_after(
            f"{run_name}: before / after",
            summary,
            [
                (f"top-1 accuracy ({val_images} val images)", "top1_accuracy"),
                (f"top-{min(5, num_classes)} accuracy", "top5_accuracy"),
            ],
        )
        write_summary(summary, Path(args.run_dir) / run_name / "summary.json")
        return summary


if __name__ == "__main__":
    main(sys.argv[1:])
