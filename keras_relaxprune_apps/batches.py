"""Seeded, augmented training batches (classification, segmentation) that resume exactly."""

import keras
import numpy as np

from keras_relaxprune_apps.datasets import augment_crop_flip


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, crop-and-flip augmented batches of raw images, as a `PyDataset`.

    Augmentation runs outside the model in NumPy (Keras' `RandomCrop` and
    `RandomFlip` inside a model turn XLA off on JAX). The order and the
    augmentation depend only on `(seed, epoch, batch)`; `EpochSync` tells
    the dataset which epoch `fit` is in, also after `BackupAndRestore`
    resumed a run, so a resumed run sees the batches the uninterrupted run
    would have seen. The last partial batch is dropped so that one batch
    shape is compiled once.

    Args:
        images: uint8 array `(N, H, W, C)`, raw pixels.
        labels: integer class labels `(N,)`.
        batch_size: images per batch.
        seed: seed of the order and the augmentation.
        num_classes: when given, labels are one-hot (for a loss with
            `label_smoothing`); sparse otherwise. Defaults to `None`.
        augment: apply reflect-pad-4 random crops and flips. Defaults to `True`.

    Example:

    ```python
    batches = AugmentedBatches(x, y, batch_size=128, seed=0)
    model.fit(batches, epochs=30, shuffle=False, callbacks=[EpochSync(batches)])
    ```
    """

    def __init__(self, images, labels, batch_size, seed, num_classes=None, augment=True, **kwargs):
        super().__init__(**kwargs)
        if len(images) < batch_size:
            raise ValueError(f"{len(images)} training images < batch size {batch_size}.")
        self.images, self.labels = images, np.asarray(labels)
        self.batch_size, self.seed = int(batch_size), seed
        self.num_classes, self.augment = num_classes, augment
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Selects the order and augmentation of epoch `epoch`."""
        self.epoch = int(epoch)
        self._order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, index):
        picks = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = self.images[picks]
        if self.augment:
            batch = augment_crop_flip(batch, np.random.default_rng([self.seed, self.epoch, index]))
        labels = self.labels[picks]
        if self.num_classes:
            labels = np.eye(self.num_classes, dtype="float32")[labels]
        return batch.astype("float32"), labels


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

    def __init__(
        self, images, labels, batch_size, size, seed, max_zoom=1.5, augment=True, **kwargs
    ):
        # The order per epoch, the length and `set_epoch` are AugmentedBatches'.
        super().__init__(images, labels, batch_size, seed, augment=augment, **kwargs)
        self.size, self.max_zoom = tuple(size), float(max_zoom)

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        picks = self._order[index * self.batch_size : (index + 1) * self.batch_size]
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


class EpochSync(keras.callbacks.Callback):
    """Tells an `AugmentedBatches` which epoch `fit` is in (also after a resume).

    Args:
        batches: the `AugmentedBatches` given to `fit`.
        first_epoch: the data epoch of `fit`'s first epoch; a second `fit` on
            the same batches (e.g. a fine-tune after pruning) passes the number
            of epochs already trained, so it sees new orders and augmentations.
    """

    def __init__(self, batches, first_epoch=0):
        super().__init__()
        self.batches = batches
        self.first_epoch = int(first_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(self.first_epoch + epoch)
