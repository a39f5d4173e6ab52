"""Seeded, augmented training batches that resume exactly after a restart."""

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

    def __init__(self, images, labels, batch_size, seed, num_classes=None,
                 augment=True, **kwargs):
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
        self._order = np.random.default_rng([self.seed, self.epoch]).permutation(
            len(self.images))

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, index):
        picks = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        batch = self.images[picks]
        if self.augment:
            batch = augment_crop_flip(batch, np.random.default_rng(
                [self.seed, self.epoch, index]))
        labels = self.labels[picks]
        if self.num_classes:
            labels = np.eye(self.num_classes, dtype="float32")[labels]
        return batch.astype("float32"), labels


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
