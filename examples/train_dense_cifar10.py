"""Train the dense CIFAR-10 ResNet (or small ViT) that the pruning runs start from.

One resumable, seeded command per shipped dense model:

    # ResNet-20, CPU (TensorFlow + XLA), about 6 minutes an epoch on 2 cores:
    mkdir -p logs
    nohup nice -n 10 python examples/train_dense_cifar10.py --depth 20 --epochs 30 \
        > logs/train_resnet20.log 2>&1 &
    # the same recipe for a uniformly thinner network trained from scratch
    # (first stage 8 channels: a quarter of the FLOPs, the size of a 75% cut):
    nohup nice -n 10 python examples/train_dense_cifar10.py --depth 20 --width 8 \
        --name resnet20w8_cifar10_scratch --out-dir runs/scratch \
        > logs/train_resnet20w8_scratch.log 2>&1 &
    # the small ViT (keras_relaxprune_apps.small_vit: 21.6 MFLOPs, AdamW), CPU:
    nohup nice -n 10 python examples/train_dense_cifar10.py --architecture vit \
        --epochs 20 > logs/train_vit.log 2>&1 &
    # ResNet-56, GPU (JAX), the full schedule:
    KERAS_BACKEND=jax python examples/train_dense_cifar10.py --depth 56 --epochs 200

ResNet recipe: SGD with Nesterov momentum 0.9, batch 128, learning rate warmed up
linearly to 0.1 over 2 epochs then cosine-decayed to 0, decoupled weight decay
5e-3 per unit learning rate (the same shrinkage as L2 5e-4 under momentum 0.9;
BN and biases excluded), label smoothing 0.1, reflect-pad-4 random crops and
horizontal flips outside the model. The model carries its preprocessing
(`Rescaling(1/255)` + CIFAR-10 `Normalization`) and outputs logits, so a
SavedModel or TFLite user feeds raw 0-255 RGB. The ViT recipe is the same
with AdamW (peak rate 1e-3, weight decay 0.05 per unit rate).

`keras.callbacks.BackupAndRestore` backs the run up into
`checkpoints/<name>/backup` at every epoch end: the same command started again
after a kill resumes at the last finished epoch, with the same data order.
The finished model goes to `saved_models/<name>.keras` with a JSON record
(`<name>.json`: test accuracy on all 10,000 test images, epochs, backend,
device, seed, command, wall time).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from keras_relaxprune_apps import (
    DATA_DIR_ENV,
    AugmentedBatches,
    EpochSync,
    cifar_resnet,
    fraction,
    load_cifar10,
    non_negative,
    non_negative_int,
    positive,
    positive_int,
    reproducible,
    run_record,
    save_trained,
    small_vit,
)

# This repository keeps its offline archives in ../shared/data (README).
os.environ.setdefault(DATA_DIR_ENV, str(Path(__file__).resolve().parents[2] / "shared" / "data"))

NUM_CLASSES = 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--architecture", choices=("resnet", "vit"), default="resnet")
    p.add_argument("--depth", type=int, default=20, help="ResNet depth, 6n+2")
    p.add_argument(
        "--width",
        type=positive_int,
        default=16,
        help="channels of the first stage (doubled per stage); 8 is a "
        "quarter of the FLOPs, the size of a 75%% FLOPs cut",
    )
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument(
        "--lr", type=positive, default=None, help="peak learning rate (ResNet 0.1, ViT 1e-3)"
    )
    p.add_argument("--warmup-epochs", type=non_negative_int, default=2)
    p.add_argument("--weight-decay", type=non_negative, default=None, help="ResNet 5e-3, ViT 0.05")
    p.add_argument("--label-smoothing", type=fraction, default=0.1)
    p.add_argument("--train-limit", type=non_negative_int, default=0, help="0 = all 50,000")
    p.add_argument("--test-limit", type=non_negative_int, default=0, help="0 = all 10,000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="cifar10_jpeg.npz or its folder")
    p.add_argument(
        "--name", default=None, help="default resnet<depth>_cifar10_dense or vit_cifar10_dense"
    )
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--out-dir", default="saved_models")
    p.add_argument("--validation-freq", type=positive_int, default=5)
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--no-jit", dest="jit", action="store_false")
    args = p.parse_args(argv)
    vit = args.architecture == "vit"
    args.name = args.name or ("vit_cifar10_dense" if vit else f"resnet{args.depth}_cifar10_dense")
    args.lr = args.lr or (1e-3 if vit else 0.1)
    if args.weight_decay is None:
        args.weight_decay = 0.05 if vit else 5e-3
    return args


def build(args, steps_per_epoch):
    if args.architecture == "vit":
        model = small_vit(include_preprocessing=True, classifier_activation=None)
    else:
        model = cifar_resnet(
            args.depth, width=args.width, include_preprocessing=True, classifier_activation=None
        )
    warmup = args.warmup_epochs * steps_per_epoch
    total = args.epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr / 10,
        warmup_target=args.lr,
        warmup_steps=warmup,
        decay_steps=max(total - warmup, 1),
    )
    if args.architecture == "vit":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)
    else:
        optimizer = keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=args.weight_decay
        )
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=args.label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=args.jit,
    )
    return model


def main(argv=None):
    """Trains (or resumes) the dense model and writes it with its record."""
    args = parse_args(argv)
    # Seeded only: Keras turns XLA off under op determinism, and a long run wants XLA.
    with reproducible(args.seed, deterministic_ops=False):
        start = time.time()
        (x, y), (xt, yt) = load_cifar10(
            args.data,
            train_limit=args.train_limit or None,
            test_limit=args.test_limit or None,
            seed=args.seed,
        )
        batches = AugmentedBatches(x, y, args.batch_size, args.seed, num_classes=NUM_CLASSES)
        test = (xt.astype("float32"), keras.utils.to_categorical(yt, NUM_CLASSES))
        model = build(args, len(batches))
        backup = Path(args.checkpoint_dir) / args.name / "backup"
        model.fit(
            batches,
            epochs=args.epochs,
            shuffle=False,
            verbose=args.verbose,
            validation_data=test,
            validation_freq=args.validation_freq,
            callbacks=[EpochSync(batches), keras.callbacks.BackupAndRestore(str(backup))],
        )
        accuracy = float(
            model.evaluate(*test, batch_size=500, verbose=0, return_dict=True)["accuracy"]
        )
        return save_trained(
            model,
            args.out_dir,
            args.name,
            {
                "test_accuracy": accuracy,
                "test_images": len(xt),
                "train_images": len(x),
                "epochs": args.epochs,
                "architecture": args.architecture,
                **({"width": args.width} if args.architecture == "resnet" else {}),
                **run_record(
                    start,
                    args.seed,
                    "examples/train_dense_cifar10.py",
                    sys.argv[1:] if argv is None else argv,
                ),
            },
        )


if __name__ == "__main__":
    main(sys.argv[1:])
