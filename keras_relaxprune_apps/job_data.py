"""The data of a pruning job: CIFAR-10, CamVid, a TensorFlow Datasets set or
an image folder, as in-memory arrays (`load_job_data`)."""

import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_relaxprune import arguments
from keras_relaxprune.errors import InvalidArgumentError, PruningError

WHERE = "run_pruning_job"
DATASETS = "cifar10, camvid, tfds:NAME (e.g. tfds:mnist) or folder:PATH"
CAMVID_SIZE = (176, 240)  # half resolution (rounded to a multiple of 8), the CPU protocol
FOLDER_SIZE = (256, 256)  # keras.utils.image_dataset_from_directory's default


@dataclass
class JobData:
    """Training and test arrays of a job: uint8 images `(N, H, W, C)`, int32
    labels `(N,)` (classification) or `(N, H, W)` (segmentation)."""

    name: str
    task: str  # "classification" or "segmentation"
    num_classes: int
    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    ignore_class: int = None  # a segmentation label that is not scored


def dataset_spec(spec):
    """`(kind, argument)` of a dataset spec, or `InvalidArgumentError`."""
    text = spec if isinstance(spec, str) else ""
    kind, _, rest = text.partition(":")
    if text in ("cifar10", "camvid"):
        return text, None
    if kind in ("tfds", "folder") and rest.strip():
        if kind == "folder" and not os.path.isdir(rest):
            raise InvalidArgumentError(
                f"{WHERE}: dataset='{text}': the folder '{rest}' does not exist; pass "
                "folder:PATH to a folder of class subfolders (or with train/ and test/)."
            )
        return kind, rest
    raise InvalidArgumentError(
        f"{WHERE}: dataset={arguments.shown(spec)} is not a dataset; pass {DATASETS}."
    )


def load_job_data(dataset, image_size=None, train_limit=None, test_limit=None, seed=0):
    """Loads a dataset as in-memory arrays for `run_pruning_job`.

    Args:
        dataset: a spec, `"cifar10"`, `"camvid"`, `"tfds:NAME"` or
            `"folder:PATH"`, or its parsed `(kind, argument)` pair.
        image_size: `(height, width)` to resize to, or `None` for the
            dataset's own size (CamVid: 176 x 240, a folder: 256 x 256).
        train_limit: at most this many training images. Defaults to `None`.
        test_limit: at most this many test images. Defaults to `None`.
        seed: seed of the subsets and of a folder's held-out split.

    Returns:
        A `JobData`.

    Example:

    >>> data = load_job_data("cifar10", train_limit=500, test_limit=100)
    >>> data.images.shape, data.num_classes
    ((500, 32, 32, 3), 10)
    """
    kind, argument = dataset if isinstance(dataset, tuple) else dataset_spec(dataset)
    loaders = {
        "cifar10": _load_cifar10,
        "camvid": _load_camvid,
        "tfds": _load_tfds,
        "folder": _load_folder,
    }
    name = kind if argument is None else f"{kind}:{argument}"
    try:
        data = loaders[kind](argument, image_size, (train_limit, test_limit), seed)
    except PruningError:
        raise
    except (OSError, ValueError, ImportError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise InvalidArgumentError(
            f"{WHERE}: dataset='{name}' could not be loaded ({type(error).__name__}: "
            f"{detail[:300]})."
        ) from error
    if len(data.test_images) == 0:
        raise InvalidArgumentError(
            f"{WHERE}: dataset='{name}' has no test images; add a test/ folder or more "
            "images per class."
        )
    return data


def _load_cifar10(_, size, limits, seed):
    from keras_relaxprune_apps.datasets import load_cifar10

    (x, y), (xt, yt) = load_cifar10(train_limit=limits[0], test_limit=limits[1], seed=seed)
    return JobData(
        "cifar10",
        "classification",
        10,
        _resized(x, size),
        y.astype("int32"),
        _resized(xt, size),
        yt.astype("int32"),
    )


def _load_camvid(_, size, limits, seed):
    from keras_relaxprune_apps import datasets

    x, y = datasets.load_camvid(split="train", limit=limits[0], size=size)
    xt, yt = datasets.load_camvid(split="val", limit=limits[1], size=size)
    return JobData(
        "camvid",
        "segmentation",
        datasets.CAMVID_NUM_CLASSES,
        x,
        y.astype("int32"),
        xt,
        yt.astype("int32"),
        ignore_class=datasets.CAMVID_IGNORE_LABEL,
    )


def _load_tfds(name, size, limits, seed):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise InvalidArgumentError(
            f"{WHERE}: dataset='tfds:{name}' needs TensorFlow Datasets; install it with "
            "`pip install keras-relaxprune[data]`."
        ) from None
    try:
        builder = tfds.builder(name)
        builder.download_and_prepare()
    except Exception as error:
        detail = " ".join(str(error).split())[:200]
        raise InvalidArgumentError(
            f"{WHERE}: dataset='tfds:{name}' could not be prepared ({type(error).__name__}: "
            f"{detail}); check the name in tfds.list_builders() and the network."
        ) from error
    splits = builder.info.splits
    if "train" not in splits:
        raise InvalidArgumentError(
            f"{WHERE}: dataset='tfds:{name}' has no 'train' split (it has "
            f"{sorted(splits)}); pass a classification dataset such as tfds:cifar10."
        )
    test = next((s for s in ("test", "validation") if s in splits), None)
    train_split, test_split = ("train", test) if test else ("train[:90%]", "train[90%:]")
    if "label" not in builder.info.features:
        raise InvalidArgumentError(
            f"{WHERE}: dataset='tfds:{name}' has no 'label' feature; pass an image "
            "classification dataset such as tfds:cifar10."
        )
    labels = builder.info.features["label"]
    arrays = [
        _tfds_arrays(builder, split, size, limit, name)
        for split, limit in ((train_split, limits[0]), (test_split, limits[1]))
    ]
    (x, y), (xt, yt) = arrays
    return JobData(f"tfds:{name}", "classification", int(labels.num_classes), x, y, xt, yt)


def _tfds_arrays(builder, split, size, limit, name):
    import tensorflow as tf

    try:
        dataset = builder.as_dataset(split=split, as_supervised=True)
    except Exception as error:
        raise InvalidArgumentError(
            f"{WHERE}: dataset='tfds:{name}' has no (image, label) pairs "
            f"({type(error).__name__}); pass an image classification dataset."
        ) from error
    if limit:
        dataset = dataset.take(limit)

    def rgb(image, label):
        image = tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image
        if size is not None:
            image = tf.image.resize(image, size)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    pairs = list(dataset.map(rgb).as_numpy_iterator())
    if len({image.shape for image, _ in pairs}) > 1:
        raise InvalidArgumentError(
            f"{WHERE}: dataset='tfds:{name}' has images of different sizes; pass "
            "image_size (--image-size H W)."
        )
    return (
        np.stack([image for image, _ in pairs]),
        np.array([label for _, label in pairs], dtype="int32"),
    )


def _load_folder(path, size, limits, seed):
    root = Path(path)
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = next(
        (
            root / n
            for n in ("test", "val", "validation")
            if train_dir != root and (root / n).is_dir()
        ),
        None,
    )
    common = {
        "image_size": size,
        "batch_size": 64,
        "seed": seed,
        "label_mode": "int",
        "verbose": False,
    }
    if test_dir is None:
        train, test = keras.utils.image_dataset_from_directory(
            train_dir, validation_split=0.2, subset="both", **common
        )
    else:
        train = keras.utils.image_dataset_from_directory(train_dir, **common)
        test = keras.utils.image_dataset_from_directory(
            test_dir, class_names=train.class_names, shuffle=False, **common
        )
    if len(train.class_names) < 2:
        raise InvalidArgumentError(
            f"{WHERE}: dataset='folder:{path}' has {len(train.class_names)} class "
            f"folder(s) in '{train_dir}'; pass a folder with one subfolder per class."
        )
    (x, y), (xt, yt) = (_numpy(d, limit) for d, limit in zip((train, test), limits))
    return JobData(f"folder:{path}", "classification", len(train.class_names), x, y, xt, yt)


def _numpy(dataset, limit):
    pairs = list(dataset.as_numpy_iterator())
    if not pairs:
        return np.zeros((0, 1, 1, 3), "uint8"), np.zeros((0,), "int32")
    images = np.concatenate([x for x, _ in pairs])[:limit]
    labels = np.concatenate([y for _, y in pairs])[:limit]
    return np.clip(np.round(images), 0, 255).astype("uint8"), labels.astype("int32")


def _resized(images, size):
    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return images
    parts = [
        keras.ops.convert_to_numpy(
            keras.ops.image.resize(images[i : i + 500].astype("float32"), size)
        )
        for i in range(0, len(images), 500)
    ]
    return np.clip(np.round(np.concatenate(parts)), 0, 255).astype("uint8")
