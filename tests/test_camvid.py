"""The CamVid U-Net examples (dense training, pruning) end to end on tiny data,
and the Keras pieces they rely on: MeanIoU ignoring void pixels, per-pixel
logits distillation."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import load_script

import keras_relaxprune as krp
from keras_relaxprune_apps import datasets

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VOID = datasets.CAMVID_IGNORE_LABEL
NUM_CLASSES = datasets.CAMVID_NUM_CLASSES
SIZE = (32, 48)  # tiny, divisible by 2 for the two-level U-Net below
FRAMES = 8

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the examples compile with XLA on TensorFlow and export SavedModel/TFLite",
)


def _load(name):
    return load_script(EXAMPLES / f"{name}.py")


def _val_frames():
    images, labels = datasets.load_camvid(split="val", limit=FRAMES, size=SIZE)
    return images.astype("float32"), labels


def _mean_iou(y_true, logits):
    metric = keras.metrics.MeanIoU(
        num_classes=NUM_CLASSES, ignore_class=VOID, sparse_y_true=True, sparse_y_pred=False
    )
    metric.update_state(y_true, logits)
    return float(metric.result())


@pytest.mark.backend_agnostic
def test_mean_iou_ignores_void_pixels():
    """Predictions on void pixels do not change the score, which equals the
    IoU computed by hand over the labelled pixels."""
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, NUM_CLASSES, (2, 6, 8))
    y_true[:, :2] = VOID
    logits = rng.normal(size=(2, 6, 8, NUM_CLASSES)).astype("float32")
    changed = logits.copy()
    changed[:, :2] = rng.normal(size=changed[:, :2].shape) * 10
    assert not np.array_equal(np.argmax(logits[:, :2], -1), np.argmax(changed[:, :2], -1))
    assert _mean_iou(y_true, changed) == pytest.approx(_mean_iou(y_true, logits))
    known = y_true != VOID
    truth, predicted = y_true[known], np.argmax(logits, -1)[known]
    ious = []
    for c in range(NUM_CLASSES):
        union = np.sum((truth == c) | (predicted == c))
        if union:
            ious.append(np.sum((truth == c) & (predicted == c)) / union)
    assert _mean_iou(y_true, logits) == pytest.approx(np.mean(ious), rel=1e-5)


@pytest.mark.backend_agnostic
def test_logits_distillation_is_a_per_pixel_kl():
    """`LogitsDistillation` with an explicit `KLDivergence` on per-pixel
    logits is the mean over pixels of KL(teacher || student) at temperature
    T, times T**2 (what `examples/prune_camvid.py` relies on)."""
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(2, 4, 5, NUM_CLASSES)).astype("float32") * 3
    student = rng.normal(size=(2, 4, 5, NUM_CLASSES)).astype("float32") * 3
    temperature = 2.0
    loss = keras.distillation.LogitsDistillation(
        temperature=temperature, loss=keras.losses.KLDivergence()
    )
    value = float(keras.ops.convert_to_numpy(loss.compute_loss(teacher, student)))

    def softmax(z):
        e = np.exp(z / temperature - np.max(z / temperature, -1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(teacher.astype("float64")), softmax(student.astype("float64"))
    per_pixel = np.sum(p * np.log(p / q), axis=-1)
    assert per_pixel.shape == (2, 4, 5)
    assert value == pytest.approx(temperature**2 * per_pixel.mean(), rel=1e-4)


@pytest.fixture(scope="module")
def dense_file(camvid_available, tmp_path_factory):
    """A tiny dense U-Net made by the dense trainer (1 epoch, 8 frames)."""
    out = tmp_path_factory.mktemp("dense")
    record = _load("train_dense_camvid").main(
        [
            "--epochs",
            "1",
            "--size",
            *map(str, SIZE),
            "--widths",
            "8",
            "16",
            "--train-limit",
            str(FRAMES),
            "--val-limit",
            str(FRAMES),
            "--batch-size",
            "4",
            "--name",
            "tiny_unet_camvid_dense",
            "--validation-freq",
            "2",
            "--no-jit",  # XLA's compile is most of this fit on CPU
            "--checkpoint-dir",
            str(out / "checkpoints"),
            "--out-dir",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert record["model"] == "tiny_unet_camvid_dense.keras"
    return out / record["model"]


def test_segmentation_batches_resize_like_the_loader(camvid_available):
    """Without augmentation a batch is the frames `load_camvid(size=...)`
    gives; with it, labels keep valid class ids and batches are seeded."""
    batches_module = _load("train_dense_camvid")
    images, labels = datasets.load_camvid(split="val", limit=4)
    resized, resized_labels = datasets.load_camvid(split="val", limit=4, size=SIZE)
    plain = batches_module.SegmentationBatches(images, labels, 4, SIZE, seed=0, augment=False)
    x, y = plain[0]
    order = plain._order
    np.testing.assert_array_equal(x, resized[order].astype("float32"))
    np.testing.assert_array_equal(y, resized_labels[order])
    augmented = batches_module.SegmentationBatches(images, labels, 4, SIZE, seed=0)
    x, y = augmented[0]
    assert x.shape == (4, *SIZE, 3) and y.shape == (4, *SIZE)
    assert set(np.unique(y)) <= set(np.unique(labels))
    np.testing.assert_array_equal(augmented[0][0], x)


@needs_tensorflow
@pytest.mark.slow
def test_dense_trainer_ships_a_unet_that_takes_raw_pixels(dense_file):
    """The model carries its preprocessing, outputs 11-channel per-pixel
    logits, and its record holds Keras' MeanIoU of itself on the val frames."""
    model = keras.saving.load_model(dense_file, compile=False)
    names = [type(layer).__name__ for layer in model.layers[:3]]
    assert names == ["InputLayer", "Rescaling", "Normalization"]
    assert model.output_shape == (None, *SIZE, NUM_CLASSES)
    assert model.layers[-1].get_config()["activation"] == "linear"
    images, labels = _val_frames()
    logits = model.predict(images, verbose=0)
    record = json.loads(dense_file.with_suffix(".json").read_text())
    assert record["val_images"] == FRAMES and record["size"] == list(SIZE)
    assert record["val_mean_iou"] == pytest.approx(_mean_iou(labels, logits), rel=1e-5)
    known = labels != VOID
    accuracy = np.mean(np.argmax(logits, -1)[known] == labels[known])
    assert record["val_pixel_accuracy"] == pytest.approx(accuracy)
    assert record["flops"] == krp.count_flops(model)


@needs_tensorflow
@pytest.mark.slow
def test_pruning_job_exports_files_that_load_and_match_the_summary(
    dense_file, tmp_path, without_xla
):
    """The exported model meets the FLOPs budget and is the one the summary
    describes; every export format agrees with the Keras file; `--callback`
    reaches `PruningCallback` (every pruned group keeps a multiple of 4)."""
    target = 0.5
    summary = _load("prune_camvid").main(
        [
            "--dense",
            str(dense_file),
            "--target",
            str(target),
            "--prune-epochs",
            "1",
            "--epochs",
            "1",
            "--train-limit",
            str(FRAMES),
            "--val-limit",
            str(FRAMES),
            "--batch-size",
            "4",
            "--run-name",
            "smoke",
            "--latency-runs",
            "3",
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
            "--run-dir",
            str(tmp_path / "runs"),
            "--saved-model-dir",
            str(tmp_path / "saved_models"),
            "--verbose",
            "0",
            "--callback",
            '{"round_to": 4}',
        ]
    )
    small = keras.saving.load_model(summary["exported"]["keras"], compile=False)
    widths = {
        layer.name: layer.filters
        for layer in small.layers
        if hasattr(layer, "filters") and layer.name != "logits"
    }
    assert widths and all(width % 4 == 0 for width in widths.values()), widths
    assert summary["pruned_flops"] == krp.count_flops(small)
    assert summary["pruned_params"] == krp.count_params(small)
    assert 1 - target - 0.01 <= summary["remaining_flops"] <= 1 - target
    assert summary["strip_max_difference"] < 1e-3
    for key in (
        "dense_mean_iou",
        "pruned_mean_iou",
        "pruned_mean_iou_before_fine_tune",
        "dense_pixel_accuracy",
        "pruned_pixel_accuracy",
    ):
        assert 0.0 <= summary[key] <= 1.0, key
    images, labels = _val_frames()
    logits = small.predict(images, verbose=0)
    assert summary["pruned_mean_iou"] == pytest.approx(_mean_iou(labels, logits), rel=1e-5)
    from keras_relaxprune.exporting.export import load_saved_model_fn, run_tflite

    x = images[:2]
    np.testing.assert_allclose(run_tflite(summary["exported"]["tflite"], x), logits[:2], atol=1e-3)
    serve = load_saved_model_fn(summary["exported"]["saved_model"])
    np.testing.assert_allclose(np.asarray(serve(x)), logits[:2], atol=1e-3)
    assert summary["pruned_tflite_bytes"] < summary["dense_tflite_bytes"]
    saved = json.loads(Path(summary["summary_path"]).read_text())
    assert saved == json.loads(json.dumps(summary))
    assert not (tmp_path / "checkpoints" / "smoke").exists()


@needs_tensorflow
@pytest.mark.slow
def test_pruning_job_runs_a_baseline_with_the_same_epochs(dense_file, tmp_path, without_xla):
    """`--method l1_norm`: no gated fit; the baseline's masks meet the budget,
    the stripped network fine-tunes for --prune-epochs + --epochs, and the
    run name says which method made it."""
    summary = _load("prune_camvid").main(
        [
            "--dense",
            str(dense_file),
            "--method",
            "l1_norm",
            "--target",
            "0.5",
            "--prune-epochs",
            "1",
            "--epochs",
            "1",
            "--train-limit",
            str(FRAMES),
            "--val-limit",
            str(FRAMES),
            "--batch-size",
            "4",
            "--latency-runs",
            "0",
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
            "--run-dir",
            str(tmp_path / "runs"),
            "--saved-model-dir",
            str(tmp_path / "saved_models"),
            "--verbose",
            "0",
        ]
    )
    assert summary["run_name"] == "tiny_unet_camvid_l1_norm_flops50"
    assert 0.4 <= summary["remaining_flops"] <= 0.5  # one width ratio for all
    assert summary["strip_max_difference"] < 1e-3
    assert summary["pruned_mean_iou"] != summary["pruned_mean_iou_before_fine_tune"]
