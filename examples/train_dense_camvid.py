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
offline archive (`load_camvid`). Size: 176x240
by default: half resolution (180x240) rounded down to a multiple of 8, which
the U-Net's three 2x down-samplings need; every frame (train and val) is
resized whole to it (bilinear for images, nearest for labels), so the
aspect ratio changes by 2% and no border is cut. Validation mIoU and pixel
accuracy are measured at that size, on all 101 val frames.

Model: `small_unet`, widths 16-32-64-128 by
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

import keras_relaxprune as krp
from keras_relaxprune_apps import (
    CAMVID_NUM_CLASSES,
    DATA_DIR_ENV,
    EpochSync,
    SegmentationBatches,
    load_camvid,
    mean_iou_metric,
    non_negative,
    non_negative_int,
    number_type,
    positive,
    positive_int,
    reproducible,
    run_record,
    save_trained,
    segmentation_loss,
    segmentation_scores,
    small_unet,
)

# This repository keeps its offline archives in ../shared/data (README).
os.environ.setdefault(DATA_DIR_ENV, str(Path(__file__).resolve().parents[2] / "shared" / "data"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=120)
    p.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        default=(176, 240),
        metavar=("H", "W"),
        help="training and evaluation size; divisible by 2**(levels-1)",
    )
    p.add_argument(
        "--widths",
        type=positive_int,
        nargs="+",
        default=(16, 32, 64, 128),
        help="U-Net channels per level",
    )
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--lr", type=positive, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--warmup-epochs", type=non_negative_int, default=2)
    p.add_argument("--weight-decay", type=non_negative, default=1e-2)
    p.add_argument(
        "--max-zoom",
        type=number_type(1.0),
        default=1.5,
        help="random zoom in [1, max-zoom]; 1 turns it off",
    )
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
        p.error(
            f"--size {args.size[0]} {args.size[1]}: {len(args.widths)} levels "
            f"need multiples of {divisor}"
        )
    return args


def build(args, steps_per_epoch):
    model = small_unet(
        (*args.size, 3),
        num_classes=CAMVID_NUM_CLASSES,
        widths=tuple(args.widths),
        include_preprocessing=True,
        name="unet_camvid",
    )
    warmup = min(args.warmup_epochs, max(args.epochs - 1, 0)) * steps_per_epoch
    total = args.epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr / 10 if warmup else args.lr,
        warmup_target=args.lr,
        warmup_steps=warmup,
        decay_steps=max(total - warmup, 1),
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    model.compile(
        optimizer=optimizer,
        loss=segmentation_loss(),
        metrics=[mean_iou_metric()],
        jit_compile=args.jit,
    )
    return model


def main(argv=None):
    """Trains (or resumes) the dense U-Net and writes it with its record."""
    args = parse_args(argv)
    # Seeded only: Keras turns XLA off under op determinism, and a long run wants XLA.
    with reproducible(args.seed, deterministic_ops=False):
        start = time.time()
        images, labels = load_camvid(args.data, "train", limit=args.train_limit or None)
        val_images, val_labels = load_camvid(
            args.data, "val", limit=args.val_limit or None, size=args.size
        )
        batches = SegmentationBatches(
            images, labels, args.batch_size, args.size, args.seed, max_zoom=args.max_zoom
        )
        model = build(args, len(batches))
        backup = Path(args.checkpoint_dir) / args.name / "backup"
        model.fit(
            batches,
            epochs=args.epochs,
            shuffle=False,
            verbose=args.verbose,
            validation_data=(val_images.astype("float32"), val_labels.astype("int32")),
            validation_freq=args.validation_freq,
            callbacks=[EpochSync(batches), keras.callbacks.BackupAndRestore(str(backup))],
        )
        scores = segmentation_scores(model, val_images, val_labels)
        return save_trained(
            model,
            args.out_dir,
            args.name,
            {
                "val_mean_iou": scores["mean_iou"],
                "val_pixel_accuracy": scores["pixel_accuracy"],
                "val_class_iou": scores["class_iou"],
                "val_images": len(val_images),
                "train_images": len(images),
                "size": list(args.size),
                "widths": list(args.widths),
                "flops": krp.count_flops(model),
                "params": krp.count_params(model),
                "epochs": args.epochs,
                **run_record(
                    start,
                    args.seed,
                    "examples/train_dense_camvid.py",
                    sys.argv[1:] if argv is None else argv,
                ),
            },
        )


if __name__ == "__main__":
    main(sys.argv[1:])
