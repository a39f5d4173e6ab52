"""Train the dense CamVid U-Net that the segmentation pruning runs start from.

One resumable, seeded command (`examples/prune_camvid.py` prunes its output):

    # CPU (TensorFlow + XLA), half resolution (176x240), widths 16-32-64-128:
    mkdir -p logs
    nohup nice -n 10 python examples/train_dense_camvid.py --epochs 120 \
        > logs/train_unet_camvid_dense.log 2>&1 &
    # GPU: the wider U-Net (4x the FLOPs), same schedule:
    python examples/train_dense_camvid.py --epochs 120 --widths 32 64 128 256 \
        --name unet_camvid_wide_dense

Time (extrapolated, not a full epoch: 2 epochs of `--train-limit 64` at
176x240, TensorFlow 2.21 CPU, 2 cores shared with a benchmark job, load
average 3-5): the second epoch (no compilation) took 19-30 s for 64
frames, 0.30-0.47 s a frame, so one epoch of 360 frames (45 batches of 8)
takes about 1.8-2.8 minutes, 120 epochs about 3.6-5.6 hours (plus ~10 s
for each validation); the first epoch adds ~10-20 s of XLA compilation.
`--widths 32 64 128 256` (11.9 GFLOPs a frame, 4x) took 0.8-1.4 s a frame,
5-9 minutes an epoch: a GPU run.

Data: CamVid 11 classes (367 train / 101 val frames of 360x480) from the
offline archive (`keras_relaxprune_apps.datasets.load_camvid`). Size: 176x240
by default: half resolution (180x240) rounded down to a multiple of 8, which
the U-Net's three 2x down-samplings need; every frame (train and val) is
resized whole to it (bilinear for images, nearest for labels), so the
aspect ratio changes by 2% and no border is cut. Validation mIoU and pixel
accuracy are measured at that size, on all 101 val frames.

Model: `keras_relaxprune_apps.models.small_unet`, widths 16-32-64-128 by
default (3.0 GFLOPs a frame at 176x240, 0.48 M params), with its
preprocessing inside (`Rescaling(1/255)` + CamVid `Normalization`), so it
takes raw 0-255 RGB and outputs per-pixel logits for the 11 classes.
Recipe: AdamW, batch 8, learning rate warmed up over 2 epochs to 2e-3 then
cosine to 0, decoupled weight decay 1e-2 (BN and biases excluded),
`SparseCategoricalCrossentropy(from_logits=True, ignore_class=11)` (void
pixels carry no loss) and `MeanIoU(num_classes=11, ignore_class=11)` as
the metric. Augmentation
outside the model, in NumPy/Pillow (`SegmentationBatches`): a random zoom
in [1, 1.5] (a random window of the full-resolution frame resized to the
training size, the same for image and labels) and horizontal flips;
it needs Pillow (installed with matplotlib by the `tf` extra).

`keras.callbacks.BackupAndRestore` backs the run up into
`checkpoints/<name>/backup` at every epoch end: the same command started
again after a kill resumes at the last finished epoch, with the same data
order. The finished model goes to `saved_models/<name>.keras` with a JSON
record (`<name>.json`: val mIoU, per-class IoU and pixel accuracy on the
val frames, FLOPs, params, epochs, backend, device, seed, command, wall
time).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune_apps import job_records
from keras_relaxprune_apps.batches import AugmentedBatches, EpochSync
from keras_relaxprune_apps.datasets import (
    CAMVID_IGNORE_LABEL,
    CAMVID_NUM_CLASSES,
    DATA_DIR_ENV,
    load_camvid,
)
from keras_relaxprune_apps.models import small_unet
from keras_relaxprune_apps.option_types import (
    non_negative,
    non_negative_int,
    number_type,
    positive,
    positive_int,
)

# This repository keeps its offline archives in ../shared/data (README).
os.environ.setdefault(DATA_DIR_ENV, str(Path(__file__).resolve().parents[2] / "shared" / "data"))

EVAL_BATCH = 8


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=120)
    p.add_argument("--size", type=positive_int, nargs=2, default=(176, 240), metavar=("H", "W"),
                   help="training and evaluation size; divisible by 2**(levels-1)")
    p.add_argument("--widths", type=positive_int, nargs="+", default=(16, 32, 64, 128),
                   help="U-Net channels per level")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--lr", type=positive, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--warmup-epochs", type=non_negative_int, default=2)
    p.add_argument("--weight-decay", type=non_negative, default=1e-2)
    p.add_argument("--max-zoom", type=number_type(1.0), default=1.5,
                   help="random zoom in [1, max-zoom]; 1 turns it off")
    p.add_argument("--train-limit", type=non_negative_int, default=0, help="0 = all 367 frames")
    p.add_argument("--val-limit", type=non_negative_int, default=0, help="0 = all 101 frames")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="camvid_jpeg.npz or its folder")
    p.add_argument("--name", default="unet_camvid_dense")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--out-dir", default="saved_models")
    p.add_argument("--validation-freq", type=positive_int, default=10)
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--no-jit", dest="jit", action="store_false")
    args = p.parse_args(argv)
    divisor = 2 ** (len(args.widths) - 1)
    if args.size[0] % divisor or args.size[1] % divisor:
        p.error(f"--size {args.size[0]} {args.size[1]}: {len(args.widths)} levels "
                f"need multiples of {divisor}")
    return args


class SegmentationBatches(AugmentedBatches):
    """Seeded, augmented segmentation batches resized from full-resolution frames.

    Each image is zoomed by a random factor in `[1, max_zoom]` (a random
    window of `1/zoom` of the frame's height and width) and resized to
    `size`, bilinearly for the image and with nearest neighbour for the
    labels (class ids stay valid), then flipped left-right with probability
    0.5. With `augment=False` the whole frame is resized, exactly as
    `load_camvid(size=size)` does. The order and augmentation depend only
    on `(seed, epoch, batch)`; `EpochSync` sets the epoch, also after a
    resume. The last partial batch is dropped.

    Args:
        images: uint8 frames `(N, H, W, 3)`, raw pixels.
        labels: uint8 class ids `(N, H, W)`.
        batch_size: frames per batch.
        size: `(height, width)` of the batches.
        seed: seed of the order and the augmentation.
        max_zoom: largest zoom factor. Defaults to 1.5.
        augment: apply zoom and flips. Defaults to `True`.

    Example:

    ```python
    images, labels = load_camvid(split="train")
    batches = SegmentationBatches(images, labels, 8, (176, 240), seed=0)
    model.fit(batches, epochs=120, shuffle=False, callbacks=[EpochSync(batches)])
    ```
    """

    def __init__(self, images, labels, batch_size, size, seed, max_zoom=1.5,
                 augment=True, **kwargs):
        # The order per epoch, the length and `set_epoch` are AugmentedBatches'.
        super().__init__(images, labels, batch_size, seed, augment=augment, **kwargs)
        self.size, self.max_zoom = tuple(size), float(max_zoom)

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        picks = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        pairs = [self._augment(self.images[i], self.labels[i], rng) for i in picks]
        images, labels = (np.stack(part) for part in zip(*pairs))
        return images.astype("float32"), labels.astype("int32")

    def _augment(self, image, label, rng):
        from PIL import Image

        height, width = label.shape
        zoom = rng.uniform(1.0, self.max_zoom) if self.augment else 1.0
        box_h, box_w = height / zoom, width / zoom
        top, left = rng.uniform(0, height - box_h), rng.uniform(0, width - box_w)
        box = (left, top, left + box_w, top + box_h)
        target = (self.size[1], self.size[0])  # Pillow sizes are (width, height).
        image = np.asarray(Image.fromarray(image).resize(target, Image.BILINEAR, box=box))
        label = np.asarray(Image.fromarray(label).resize(target, Image.NEAREST, box=box))
        if self.augment and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return image, label


def mean_iou_metric():
    """Keras' MeanIoU over the 11 classes, void pixels (label 11) ignored."""
    return keras.metrics.MeanIoU(num_classes=CAMVID_NUM_CLASSES,
                                 ignore_class=CAMVID_IGNORE_LABEL, sparse_y_true=True,
                                 sparse_y_pred=False, name="mean_iou")


def segmentation_loss():
    """Per-pixel cross-entropy on logits; void pixels carry no loss."""
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=CAMVID_IGNORE_LABEL)


def evaluate_segmentation(model, images, labels, batch_size=EVAL_BATCH):
    """Mean IoU (Keras `MeanIoU`), per-class IoU and pixel accuracy, void ignored.

    Args:
        model: takes raw 0-255 frames, returns per-pixel logits.
        images: uint8 or float frames `(N, H, W, 3)`.
        labels: class ids `(N, H, W)`, `CAMVID_IGNORE_LABEL` for void.
        batch_size: frames per forward pass. Defaults to 8.

    Returns:
        A dict with `mean_iou`, `pixel_accuracy` (over non-void pixels) and
        `class_iou` (one value per class, `None` for a class neither in the
        labels nor in the predictions).
    """
    metric = mean_iou_metric()
    correct = valid = 0
    for start in range(0, len(images), batch_size):
        logits = model.predict_on_batch(
            np.asarray(images[start:start + batch_size], "float32"))
        truth = np.asarray(labels[start:start + batch_size])
        metric.update_state(truth, logits)
        known = truth != CAMVID_IGNORE_LABEL
        correct += int(np.sum((np.argmax(logits, axis=-1) == truth) & known))
        valid += int(np.sum(known))
    confusion = keras.ops.convert_to_numpy(metric.total_cm).astype("float64")
    hits = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - hits
    return {
        "mean_iou": float(metric.result()),
        "pixel_accuracy": correct / max(valid, 1),
        "class_iou": [float(h / u) if u else None for h, u in zip(hits, union)],
    }


def build(args, steps_per_epoch):
    model = small_unet((*args.size, 3), num_classes=CAMVID_NUM_CLASSES,
                       widths=tuple(args.widths), include_preprocessing=True,
                       name="unet_camvid")
    warmup = min(args.warmup_epochs, max(args.epochs - 1, 0)) * steps_per_epoch
    total = args.epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr / 10 if warmup else args.lr, warmup_target=args.lr,
        warmup_steps=warmup, decay_steps=max(total - warmup, 1))
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    model.compile(optimizer=optimizer, loss=segmentation_loss(),
                  metrics=[mean_iou_metric()], jit_compile=args.jit)
    return model



def main(argv=None):
    """Trains (or resumes) the dense U-Net and writes it with its record."""
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    start = time.time()
    images, labels = load_camvid(args.data, "train", limit=args.train_limit or None)
    val_images, val_labels = load_camvid(args.data, "val", limit=args.val_limit or None,
                                         size=args.size)
    batches = SegmentationBatches(images, labels, args.batch_size, args.size, args.seed,
                                  max_zoom=args.max_zoom)
    model = build(args, len(batches))
    backup = Path(args.checkpoint_dir) / args.name / "backup"
    model.fit(batches, epochs=args.epochs, shuffle=False, verbose=args.verbose,
              validation_data=(val_images.astype("float32"), val_labels.astype("int32")),
              validation_freq=args.validation_freq,
              callbacks=[EpochSync(batches), keras.callbacks.BackupAndRestore(str(backup))])
    scores = evaluate_segmentation(model, val_images, val_labels)
    return job_records.save_trained(model, args.out_dir, args.name, {
        "val_mean_iou": scores["mean_iou"],
        "val_pixel_accuracy": scores["pixel_accuracy"], "val_class_iou": scores["class_iou"],
        "val_images": len(val_images), "train_images": len(images),
        "size": list(args.size), "widths": list(args.widths),
        "flops": krp.count_flops(model), "params": krp.count_params(model),
        "epochs": args.epochs,
        **job_records.run_record("examples/train_dense_camvid.py",
                            sys.argv[1:] if argv is None else argv, start, args.seed),
    })


if __name__ == "__main__":
    main(sys.argv[1:])
