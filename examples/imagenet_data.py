"""ImageNet streamed through `tf.data` for `imagenet_resnet50.py`, augmented outside the model.

`load_imagenet` reads TensorFlow Datasets' `imagenet2012` or a folder of
class folders; training images get an Inception-style random resized crop
and a flip, val images a resize to 256/224 of the input size and a centre
crop.
"""

from pathlib import Path

import keras
import tensorflow as tf  # tf.data feeds every backend

RESIZE_RATIO = 256 / 224  # validation: resize to 256, centre crop 224


def crop_window(shape):
    """Inception-style random crop window: 8-100% of the area, aspect 3/4-4/3."""
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin, size


def random_resized_crop(image, size):
    """A random crop of a decoded image (`crop_window`) resized to `size`, flipped at random."""
    begin, window = crop_window(tf.shape(image))
    return _resize_and_flip(tf.slice(image, begin, window), size)


def random_resized_crop_jpeg(encoded, size):
    """`random_resized_crop` of a JPEG, decoding only the crop."""
    begin, window = crop_window(tf.image.extract_jpeg_shape(encoded))
    box = tf.stack([begin[0], begin[1], window[0], window[1]])
    return _resize_and_flip(tf.image.decode_and_crop_jpeg(encoded, box, channels=3), size)


def _resize_and_flip(image, size):
    image = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
    return tf.image.random_flip_left_right(image)


def center_crop(image, size):
    """Resize the shorter side to `size * 256 / 224`, crop the centre `size` x `size`."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = round(size * RESIZE_RATIO) / tf.reduce_min(shape)
    resized = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(tf.cast(image, tf.float32), resized, antialias=True)
    top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
    return image[top : top + size, left : left + size]


def load_imagenet(args):
    """Train and val streams of `(image, label)`, cropped to `--image-size`.

    Images are read and decoded as the stream reaches them (nothing is
    held in memory but the shuffle buffers); training images are augmented
    (`random_resized_crop`), val images centre-cropped (`center_crop`).

    Returns:
        `(train, val, num_train, num_val, num_classes)`, unbatched.
    """
    size, auto = args.image_size, tf.data.AUTOTUNE
    if args.data == "tfds":
        import tensorflow_datasets as tfds

        builder = tfds.builder("imagenet2012", data_dir=args.tfds_data_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
        )
        encoded = {"image": tfds.decode.SkipDecoding()}
        # Encoded JPEGs (about 110 kB each) in the shuffle buffer, not pixels.
        train = builder.as_dataset(
            split="train",
            shuffle_files=True,
            as_supervised=True,
            decoders=encoded,
            read_config=tfds.ReadConfig(shuffle_seed=args.seed),
        ).shuffle(10_000, seed=args.seed)
        train = train.map(
            lambda jpeg, label: (random_resized_crop_jpeg(jpeg, size), label),
            num_parallel_calls=auto,
        )
        val = builder.as_dataset(split="validation", as_supervised=True).map(
            lambda image, label: (center_crop(image, size), label), num_parallel_calls=auto
        )
        splits = builder.info.splits
        return (
            train,
            val,
            splits["train"].num_examples,
            splits["validation"].num_examples,
            builder.info.features["label"].num_classes,
        )
    root = Path(args.data[len("folder:") :])
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or val_dir is None:
        raise SystemExit(f"error: {root} needs train/ and val/ folders of class folders.")
    # Decoded to the centre square, RESIZE_RATIO x the input size: the val
    # images are then exactly `center_crop`'s resize, ready to crop.
    side = round(size * RESIZE_RATIO)
    common = {
        "label_mode": "int",
        "batch_size": None,
        "image_size": (side, side),
        "crop_to_aspect_ratio": True,
        "seed": args.seed,
        "verbose": False,
    }
    train = keras.utils.image_dataset_from_directory(root / "train", shuffle=True, **common)
    val = keras.utils.image_dataset_from_directory(
        val_dir, shuffle=False, class_names=train.class_names, **common
    )
    sizes = (len(train.file_paths), len(val.file_paths), len(train.class_names))
    train = train.map(
        lambda image, label: (random_resized_crop(image, size), label), num_parallel_calls=auto
    )
    val = val.map(lambda image, label: (center_crop(image, size), label), num_parallel_calls=auto)
    return (train, val, *sizes)


def batched(train, val, batch_size):
    """Repeated training batches (the last partial one dropped) and val batches."""
    auto = tf.data.AUTOTUNE
    train = train.batch(batch_size, drop_remainder=True).repeat().prefetch(auto)
    return train, val.batch(batch_size).prefetch(auto)
