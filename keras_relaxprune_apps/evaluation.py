"""How good a network is on held-out data: classification accuracy (top-k)
and segmentation quality (mean IoU, per-class IoU, pixel accuracy).

One place for every job's evaluation (`examples/`, `benchmarks/`, `relaxprune
run`), so that the dense and the pruned network are always scored the same way.
"""

import keras
import numpy as np

from keras_relaxprune_apps.datasets import CAMVID_IGNORE_LABEL, CAMVID_NUM_CLASSES

EVAL_BATCH = 250
SEGMENTATION_EVAL_BATCH = 8  # per-pixel logits of a whole split do not fit in memory


def accuracy(model, images, labels=None, top_k=1, steps=None, batch_size=EVAL_BATCH):
    """Classification accuracy: the fraction of images whose label is in the top k.

    Args:
        model: takes the images, returns logits (or probabilities).
        images: an array of images with `labels`, or an iterable of
            `(images, labels)` batches (e.g. a `tf.data.Dataset`).
        labels: integer class labels of the array `images`.
        top_k: an `int`, or a tuple of them for several accuracies in one pass.
            Defaults to 1 (the argmax is the label).
        steps: at most this many batches of an iterable. Defaults to all.
        batch_size: images per forward pass of an array. Defaults to 250.

    Returns:
        A float in [0, 1], or a tuple of them for a tuple `top_k`.

    Example:

    >>> accuracy(model, x_test, y_test)  # doctest: +SKIP
    0.8601
    >>> accuracy(model, val_batches, top_k=(1, 5))  # doctest: +SKIP
    (0.7612, 0.9287)
    """
    ks = (top_k,) if isinstance(top_k, int) else tuple(top_k)
    hits, seen = np.zeros(len(ks)), 0
    batches = images
    if labels is not None:
        batches = (
            (images[i : i + batch_size], labels[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        )
    for step, (x, y) in enumerate(batches):
        if steps is not None and step >= steps:
            break
        logits = keras.ops.convert_to_numpy(model.predict_on_batch(np.asarray(x, "float32")))
        y = np.asarray(y).reshape(-1)
        true_logit = logits[np.arange(len(y)), y][:, None]
        for index, k in enumerate(ks):
            ranked = (
                np.argmax(logits, axis=-1) == y
                if k == 1
                else np.sum(logits > true_logit, axis=-1) < k
            )
            hits[index] += int(np.sum(ranked))
        seen += len(y)
    scores = tuple(float(h / max(seen, 1)) for h in hits)
    return scores[0] if isinstance(top_k, int) else scores


def mean_iou_metric(num_classes=CAMVID_NUM_CLASSES, ignore_class=CAMVID_IGNORE_LABEL):
    """Keras' `MeanIoU` of per-pixel logits; `ignore_class` pixels are not scored.

    Args:
        num_classes: classes scored. Defaults to CamVid's 11.
        ignore_class: the label that is not scored, or `None`. Defaults to
            CamVid's void label, 11.

    Returns:
        A `keras.metrics.MeanIoU` named `"mean_iou"`.
    """
    return keras.metrics.MeanIoU(
        num_classes=num_classes,
        ignore_class=ignore_class,
        sparse_y_true=True,
        sparse_y_pred=False,
        name="mean_iou",
    )


def segmentation_loss(ignore_class=CAMVID_IGNORE_LABEL):
    """Per-pixel cross-entropy on logits; `ignore_class` pixels carry no loss.

    Args:
        ignore_class: the label without loss, or `None`. Defaults to CamVid's
            void label, 11.

    Returns:
        A `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.
    """
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class)


def segmentation_scores(
    model,
    images,
    labels,
    num_classes=CAMVID_NUM_CLASSES,
    ignore_class=CAMVID_IGNORE_LABEL,
    batch_size=SEGMENTATION_EVAL_BATCH,
):
    """Mean IoU (Keras `MeanIoU`), per-class IoU and pixel accuracy of a segmenter.

    Args:
        model: takes raw 0-255 frames, returns per-pixel logits.
        images: uint8 or float frames `(N, H, W, 3)`.
        labels: class ids `(N, H, W)`.
        num_classes: classes scored. Defaults to CamVid's 11.
        ignore_class: the label that is not scored (void), or `None`.
            Defaults to CamVid's, 11.
        batch_size: frames per forward pass. Defaults to 8.

    Returns:
        A dict with `mean_iou`, `pixel_accuracy` (over scored pixels) and
        `class_iou` (one value per class, `None` for a class neither in the
        labels nor in the predictions).

    Example:

    >>> segmentation_scores(unet, val_images, val_labels)["mean_iou"]  # doctest: +SKIP
    0.5213
    """
    metric = mean_iou_metric(num_classes, ignore_class)
    correct = valid = 0
    for start in range(0, len(images), batch_size):
        logits = keras.ops.convert_to_numpy(
            model.predict_on_batch(np.asarray(images[start : start + batch_size], "float32"))
        )
        truth = np.asarray(labels[start : start + batch_size])
        metric.update_state(truth, logits)
        known = truth != ignore_class
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
