"""The trained models shipped in saved_models/ are what their records say."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_relaxprune as krp

pytestmark = pytest.mark.backend_agnostic

MODELS = Path(__file__).resolve().parents[1] / "saved_models"
DENSE = MODELS / "resnet20_cifar10_dense.keras"
PRUNED = MODELS / "resnet20_cifar10_flops50.keras"
QUARTER = MODELS / "resnet20_cifar10_flops25.keras"
LONG = MODELS / "resnet20_cifar10_flops50_e20.keras"


def _record(model_path):
    return json.loads(model_path.with_suffix(".json").read_text())


@pytest.mark.parametrize("path", [PRUNED, QUARTER, LONG], ids=["flops50", "flops25", "flops50_e20"])
def test_a_pruned_resnet20_has_the_flops_and_params_of_its_record(path):
    dense = keras.saving.load_model(DENSE, compile=False)
    pruned = keras.saving.load_model(path, compile=False)
    record = _record(path)
    assert krp.count_flops(pruned) == record["flops"]
    assert krp.count_params(pruned) == record["params"]
    assert krp.count_flops(pruned) / krp.count_flops(dense) == pytest.approx(
        record["remaining_flops"]
    )
    assert pruned.input_shape == dense.input_shape == (None, 32, 32, 3)
    assert pruned.output_shape == (None, 10)


@pytest.mark.parametrize(
    "path", [DENSE, PRUNED, QUARTER, LONG], ids=["dense", "flops50", "flops25", "flops50_e20"]
)
def test_a_shipped_model_scores_its_recorded_accuracy_on_raw_pixels(path, cifar_available):
    """Raw 0-255 RGB in (preprocessing inside the model), logits out; on
    1,000 class-balanced test images the accuracy is within 4 points of the
    record's (measured on all 10,000: a 1,000-image sample has a standard
    error of about 1.1 points)."""
    from keras_relaxprune_apps.datasets import load_cifar10

    _, (images, labels) = load_cifar10(train_limit=10, test_limit=1000, seed=0)
    model = keras.saving.load_model(path, compile=False)
    logits = model.predict(images.astype("float32"), batch_size=250, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == labels))
    assert accuracy == pytest.approx(_record(path)["test_accuracy"], abs=0.04)


UNET_NAMES = ("dense", "flops10", "params10")
UNETS = [MODELS / f"unet_camvid_{name}.keras" for name in UNET_NAMES]


@pytest.mark.parametrize("path", UNETS, ids=UNET_NAMES)
def test_a_shipped_camvid_unet_has_its_record_and_segments_raw_pixels(path, request):
    """A shipped U-Net: FLOPs and params as recorded, 176x240 raw 0-255 RGB
    in, per-pixel logits for the 11 classes out, and on all 101 val frames
    the recorded pixel accuracy (void ignored), within 0.5 points (another
    backend's arithmetic)."""
    from keras_relaxprune_apps.datasets import load_camvid

    model = keras.saving.load_model(path, compile=False)
    record = _record(path)
    assert krp.count_flops(model) == record["flops"]
    assert krp.count_params(model) == record["params"]
    assert model.input_shape == (None, 176, 240, 3)
    assert model.output_shape == (None, 176, 240, 11)
    request.getfixturevalue("camvid_available")  # skips, or fails in CI
    images, labels = load_camvid(split="val", size=(176, 240))
    predicted = np.argmax(
        keras.ops.convert_to_numpy(
            model.predict(images.astype("float32"), batch_size=8, verbose=0)
        ),
        axis=-1,
    )
    valid = labels != 11
    accuracy = float(np.mean(predicted[valid] == labels[valid]))
    assert abs(accuracy - record["val_pixel_accuracy"]) <= 0.005
