"""The ImageNet ResNet-50 job (examples/imagenet_resnet50.py), end to end on a
tiny generated image folder with random weights."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import load_script

import keras_relaxprune as krp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CLASSES = ("n01440764", "n01443537", "n01484850")  # named like ImageNet's folders


def _load(name):
    return load_script(EXAMPLES / f"{name}.py")


@pytest.fixture(scope="module")
def example():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the job's test exports SavedModel and TFLite (TensorFlow)")
    return _load("imagenet_resnet50")


def _image_folder(root, train_per_class=6, val_per_class=3):
    """`root/{train,val}/<wnid>/*.JPEG` of random noise, 64 x 64 and 48 x 80."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label in CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (64, 64, 3) if i % 2 else (48, 80, 3)  # the crops handle both
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{label}_{i}.JPEG")
    return root


def test_model_takes_raw_rgb_as_resnet50_takes_preprocess_input(example):
    """The channel flip folded into conv1 and the mean in a Normalization
    layer compute exactly `ResNet50(resnet50.preprocess_input(x))`."""
    source = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=3, classifier_activation=None
    )
    model = example.raw_rgb_resnet50(source, 32)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32") * 255.0
    expected = source.predict(keras.applications.resnet50.preprocess_input(x.copy()), verbose=0)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), expected, atol=1e-4 * np.abs(expected).max()
    )
    assert [type(layer).__name__ for layer in model.layers[:2]] == ["InputLayer", "Normalization"]


def test_tfds_imagenet_streams_cropped_batches(example, tmp_path, monkeypatch):
    """`--data tfds` on TFDS' generated stand-in for imagenet2012 (offline):
    JPEGs decoded crop by crop, batches of the input size, 1000 classes."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from types import SimpleNamespace

    # The stand-in has no split metadata; these are the counts it is asked for.
    split = SimpleNamespace(num_examples=12, num_bytes=1 << 40)  # too big to cache
    monkeypatch.setattr(
        tfds.core.DatasetInfo,
        "splits",
        property(lambda info: {"train": split, "validation": split}),
    )
    args = example.parse_args(
        [
            "--data",
            "tfds",
            "--tfds-data-dir",
            str(tmp_path / "tfds"),
            "--manual-dir",
            str(tmp_path / "manual"),
            "--image-size",
            "32",
        ]
    )
    with tfds.testing.mock_data(num_examples=12):
        train, val, num_train, num_val, num_classes = example.load_imagenet(args)
        train, val = example.batched(train, val, 4)
        images, labels = next(iter(train))
        val_shapes = [tuple(images.shape) for images, _ in val]
    assert (num_train, num_val, num_classes) == (12, 12, 1000)
    assert tuple(images.shape) == (4, 32, 32, 3) and images.dtype == "float32"
    assert float(np.min(images)) >= 0.0 and float(np.max(images)) <= 255.0
    assert np.all((labels.numpy() >= 0) & (labels.numpy() < 1000))
    assert val_shapes == [(4, 32, 32, 3)] * 3


@pytest.mark.slow
def test_job_prunes_strips_and_exports_resnet50(example, tmp_path):
    """Half the FLOPs, the strip checked, the exported file loads and is the
    reported size, summary.json written, backups cleaned up."""
    target = 0.5
    folder = _image_folder(tmp_path / "imagenet")
    summary = example.main(
        [
            "--weights",
            "none",
            "--data",
            f"folder:{folder}",
            "--image-size",
            "32",
            "--steps-per-epoch",
            "2",
            "--prune-epochs",
            "1",
            "--epochs",
            "1",
            "--target",
            str(target),
            "--batch-size",
            "4",
            "--calibration-steps",
            "2",
            # Without XLA: its compile of ResNet-50 takes about a minute per fit
            # here; the .keras file only (exports are tested on small models).
            "--latency-runs",
            "0",
            "--run-name",
            "tiny",
            "--no-jit-compile",
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
    small = keras.saving.load_model(summary["exported"]["keras"], compile=False)
    assert summary["pruned_flops"] == krp.count_flops(small)
    assert summary["dense_flops"] == krp.count_flops(example.dense_resnet50(None, 32, 3))
    assert summary["pruned_params"] == krp.count_params(small) == small.count_params()
    assert 1 - target - 0.01 <= summary["remaining_flops"] <= 1 - target
    check = summary["strip_check"]
    assert check["max_difference"] <= check["tolerance"]
    assert summary["val_images"] == 9 and summary["steps_per_epoch"] == 2
    assert small.output.shape[-1] == len(CLASSES)
    assert type(small.layers[1]).__name__ == "Normalization"  # still takes raw pixels
    for key in (
        "dense_top1_accuracy",
        "pruned_top1_accuracy",
        "pruned_top1_accuracy_before_fine_tune",
    ):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["pruned_top5_accuracy"] == 1.0  # top-3 of 3 classes
    assert set(summary["exported"]) == {"keras"}
    assert not (tmp_path / "checkpoints" / "tiny").exists()
    saved = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
