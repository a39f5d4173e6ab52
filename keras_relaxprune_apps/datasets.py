"""Loaders for CIFAR-10 and CamVid: offline encoded-image NumPy archives first,
else (CIFAR-10) TensorFlow Datasets or the Keras download."""

import functools
import importlib.util
import io
import os
from pathlib import Path

import numpy as np

try:  # Pillow decodes faster than TF and exists where TensorFlow does not.
    from PIL import Image
except ImportError:  # pragma: no cover - depends on the environment
    Image = None

DATA_DIR_ENV = "KRP_DATA_DIR"
CIFAR10_ARCHIVE = "cifar10_jpeg.npz"
CAMVID_ARCHIVE = "camvid_jpeg.npz"
CAMVID_IGNORE_LABEL = 11
CAMVID_NUM_CLASSES = 11
CIFAR10_SOURCES = ("archive", "tfds", "keras")


def _candidate_dirs():
    env = os.environ.get(DATA_DIR_ENV)
    return [Path(env).expanduser()] if env else []


def _searched():
    return ", ".join(str(d) for d in _candidate_dirs()) or f"${DATA_DIR_ENV} is not set"


def _find_archive(filename, path=None):
    """Returns the archive path, or None when no search location holds it."""
    if path is not None:
        p = Path(path).expanduser()
        p = p / filename if p.is_dir() else p
        # An explicit location that is wrong must not silently fall back.
        if not p.is_file():
            raise FileNotFoundError(f"{filename} not found at '{path}'.")
        return p.resolve()
    for d in _candidate_dirs():
        if (d / filename).is_file():
            return (d / filename).resolve()
    return None


def _decode_one(data, gray=False):
    if Image is not None:
        with Image.open(io.BytesIO(data)) as im:
            # Label PNGs are class indices: converting them would remap values.
            return np.asarray(im if gray else im.convert("RGB"))
    import tensorflow as tf

    out = tf.io.decode_image(data, channels=0 if gray else 3, expand_animations=False)
    return out.numpy()[..., 0] if gray else out.numpy()


def _decode_many(blob, offsets, indices, gray=False):
    blobs = (blob[offsets[i] : offsets[i + 1]].tobytes() for i in indices)
    return np.stack([_decode_one(b, gray) for b in blobs])


def _balanced_indices(labels, limit, seed, stream):
    """Seeded random order; with `limit`, per-class counts differ by at most one."""
    # Separate streams per split so the test subset does not depend on train_limit.
    rng = np.random.default_rng([seed, stream])
    if limit is None or limit >= len(labels):
        return rng.permutation(len(labels))
    classes = np.unique(labels)
    if limit < len(classes):
        raise ValueError(f"limit={limit} is smaller than the {len(classes)} classes.")
    per_class = np.full(len(classes), limit // len(classes))
    per_class[rng.choice(len(classes), limit % len(classes), replace=False)] += 1
    picks = []
    for c, n in zip(classes, per_class):
        members = np.flatnonzero(labels == c)
        picks.append(rng.choice(members, min(n, len(members)), replace=False))
    # The archive is sorted by class; shuffling keeps `validation_split` usable.
    return rng.permutation(np.concatenate(picks))


@functools.lru_cache(maxsize=4)
def _load_cifar10_archive(archive, limits, seed):
    out = []
    with np.load(archive) as data:
        for stream, split in enumerate(("train", "test")):
            labels = data[f"{split}_labels"].astype(np.int64)
            idx = _balanced_indices(labels, limits[stream], seed, stream)
            images = _decode_many(data[f"{split}_jpeg"], data[f"{split}_offsets"], idx)
            out.append((images, labels[idx]))
    return tuple(out)


def _download_cifar10():
    import keras

    return keras.datasets.cifar10.load_data()


def _tfds_installed():
    # `tfds.load` builds `tf.data` pipelines, so it needs TensorFlow as well.
    return all(
        importlib.util.find_spec(name) is not None for name in ("tensorflow_datasets", "tensorflow")
    )


def _load_tfds_cifar10(data_dir=None):
    """Both splits of TFDS' `cifar10` (downloaded and prepared on first use)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "load_cifar10(source='tfds') needs TensorFlow Datasets: "
            "`pip install tensorflow-datasets` (or keras-relaxprune[data])."
        ) from error
    splits = tfds.load(
        "cifar10",
        split=["train", "test"],
        as_supervised=True,
        data_dir=None if data_dir is None else str(data_dir),
    )
    out = []
    for dataset in splits:
        # Batches, not `batch_size=-1`: that needs a known cardinality.
        images, labels = zip(*tfds.as_numpy(dataset.batch(10_000)))
        out.append((np.concatenate(images), np.concatenate(labels)))
    return tuple(out)


def _cifar10_source(source, path):
    if source is None:
        # An explicit `path` means the archive: it must not silently fall back.
        if path is not None or _find_archive(CIFAR10_ARCHIVE) is not None:
            return "archive"
        return "tfds" if _tfds_installed() else "keras"
    if source not in CIFAR10_SOURCES:
        raise ValueError(
            f"load_cifar10: source={source!r}; expected one of {CIFAR10_SOURCES} or None."
        )
    if source == "keras" and path is not None:
        raise ValueError(
            "load_cifar10: source='keras' takes no `path` (Keras "
            "caches its download in ~/.keras/datasets)."
        )
    return source


def _subsets(splits, limits, seed):
    """Class-balanced seeded subsets of in-memory `((x, y), (x, y))` splits."""
    out = []
    for stream, ((x, y), limit) in enumerate(zip(splits, limits)):
        y = np.asarray(y).reshape(-1).astype(np.int64)
        idx = _balanced_indices(y, limit, seed, stream)
        out.append((np.asarray(x, dtype=np.uint8)[idx], y[idx]))
    return tuple(out)


def load_cifar10(path=None, train_limit=None, test_limit=None, seed=0, source=None):
    """Loads CIFAR-10 from the offline JPEG archive, TFDS or the Keras download.

    Args:
        path: For the archive, the directory holding `cifar10_jpeg.npz`, or the
            file itself; when `None`, the folder named by `$KRP_DATA_DIR` is
            searched. For `source="tfds"`, the TFDS data directory (default:
            TFDS' own, `~/tensorflow_datasets`).
        train_limit: Optional size of a class-balanced training subset.
        test_limit: Optional size of a class-balanced test subset.
        seed: Seed for the subset choice and the image order.
        source: `"archive"` (the JPEG archive), `"tfds"`
            (`tfds.load("cifar10")`, downloaded and prepared on first use; needs
            `tensorflow-datasets`) or `"keras"`
            (`keras.datasets.cifar10.load_data()`). Defaults to `None`: the
            archive when `path` is given or the archive is found, else TFDS
            when it is installed, else Keras. Every source gives the same
            format and the same subset rule (the archive's JPEG pixels differ
            from the other two's).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images `(N, 32, 32, 3)`
        and int64 labels `(N,)`, in a seeded random order.

    Example:

    >>> (x, y), (xt, yt) = load_cifar10(train_limit=500, test_limit=100)
    >>> x.shape, y.shape
    ((500, 32, 32, 3), (500,))
    >>> (x, y), _ = load_cifar10(source="tfds", train_limit=500)  # with a network
    """
    limits = (train_limit, test_limit)
    source = _cifar10_source(source, path)
    if source == "tfds":
        return _subsets(_load_tfds_cifar10(path), limits, seed)
    if source == "keras":
        return _subsets(_download_cifar10(), limits, seed)
    archive = _find_archive(CIFAR10_ARCHIVE, path)
    if archive is None:
        raise FileNotFoundError(
            f"{CIFAR10_ARCHIVE} not found (searched: {_searched()}). Put it in a "
            f"directory and set the environment variable {DATA_DIR_ENV} to it, "
            "pass `path=`, or use source='tfds' or source='keras'."
        )
    splits = _load_cifar10_archive(str(archive), limits, seed)
    # Copies keep in-place edits by a caller out of the shared cache.
    return tuple((x.copy(), y.copy()) for x, y in splits)


def _resize(arrays, size, method):
    if Image is None:
        raise ImportError("Resizing CamVid needs Pillow: `pip install pillow`.")
    wh = (size[1], size[0])  # Pillow sizes are (width, height).
    return np.stack([np.asarray(Image.fromarray(a).resize(wh, method)) for a in arrays])


@functools.lru_cache(maxsize=4)
def _load_camvid_archive(archive, split, limit, size):
    with np.load(archive) as data:
        if f"{split}_jpeg" not in data.files:
            found = sorted(k[:-5] for k in data.files if k.endswith("_jpeg"))
            raise ValueError(f"Unknown CamVid split '{split}'; expected {found}.")
        offsets = data[f"{split}_jpeg_offsets"]
        idx = range(len(offsets) - 1 if limit is None else min(limit, len(offsets) - 1))
        images = _decode_many(data[f"{split}_jpeg"], offsets, idx)
        key = f"{split}_label_png"
        labels = _decode_many(data[key], data[key + "_offsets"], idx, gray=True)
    if size is not None:
        images = _resize(images, size, Image.BILINEAR if Image else None)
        # Nearest keeps labels valid class ids; interpolating would invent classes.
        labels = _resize(labels, size, Image.NEAREST if Image else None)
    return images, labels.astype(np.uint8)


def load_camvid(path=None, split="train", limit=None, size=None):
    """Loads the CamVid 11-class road-scene segmentation set from its archive.

    CamVid has no TensorFlow Datasets builder and no automatic download: the
    archive is the only source. For road scenes from TFDS, Cityscapes is
    there but needs a manual download (registration at
    cityscapes-dataset.com): put `leftImg8bit_trainvaltest.zip` and
    `gtFine_trainvaltest.zip` in a folder and pass it as `manual_dir`:

    ```python
    import tensorflow_datasets as tfds
    config = tfds.download.DownloadConfig(manual_dir="~/cityscapes_zips")
    train = tfds.load("cityscapes/semantic_segmentation", split="train",
                      download_and_prepare_kwargs={"download_config": config})
    # features: "image_left" (1024, 2048, 3), "segmentation_label" (1024, 2048, 1)
    ```

    Cityscapes' labels are its own 34 ids (19 used for training), not
    CamVid's 11 classes, so this function does not load it.

    Args:
        path: Directory holding `camvid_jpeg.npz`, or the file itself. When
            `None`, looks in the folder named by `$KRP_DATA_DIR`.
        split: `"train"` (367 frames) or `"val"` (101 frames).
        limit: Optional number of frames to keep, taken from the start.
        size: Optional `(height, width)`; images are resized bilinearly and
            labels with nearest neighbour.

    Returns:
        `(images, labels)`: uint8 `(N, H, W, 3)` and uint8 `(N, H, W)` with
        classes `0..10` and `CAMVID_IGNORE_LABEL` (11) for void pixels.

    Example:

    >>> images, labels = load_camvid(split="val", limit=4, size=(180, 240))
    >>> images.shape, labels.shape
    ((4, 180, 240, 3), (4, 180, 240))
    """
    archive = _find_archive(CAMVID_ARCHIVE, path)
    if archive is None:
        raise FileNotFoundError(
            f"{CAMVID_ARCHIVE} not found (searched: {_searched()}). CamVid has no "
            f"automatic download: put {CAMVID_ARCHIVE} in a directory and set the "
            f"environment variable {DATA_DIR_ENV} to it, or pass `path=`."
        )
    size = None if size is None else (int(size[0]), int(size[1]))
    images, labels = _load_camvid_archive(str(archive), split, limit, size)
    return images.copy(), labels.copy()


def augment_crop_flip(images, rng, pad=4, flip_prob=0.5):
    """Applies reflect-padded random crops and horizontal flips to a batch.

    Args:
        images: uint8 array `(N, H, W, C)`.
        rng: A `np.random.Generator` or an int seed.
        pad: Pixels of reflect padding on each side before cropping.
        flip_prob: Probability of flipping each image left-right.

    Returns:
        A new array with the shape and dtype of `images`.

    Example:

    >>> batch = np.zeros((128, 32, 32, 3), dtype=np.uint8)
    >>> augment_crop_flip(batch, np.random.default_rng(0)).shape
    (128, 32, 32, 3)
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"Expected a batch (N, H, W, C), got shape {images.shape}.")
    rng = np.random.default_rng(rng)
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    rows = rng.integers(0, 2 * pad + 1, size=n)[:, None] + np.arange(h)
    cols = rng.integers(0, 2 * pad + 1, size=n)[:, None] + np.arange(w)
    # Reversing the column index flips the crop with one gather, no extra copy.
    flip = rng.random(n) < flip_prob
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
