"""The relaxprune command on saved models."""

import json

import keras
import pytest

import keras_relaxprune as krp
import model_zoo
from helpers import random_masks
from keras_relaxprune.cli import main


@pytest.fixture
def saved(tmp_path):
    dense = model_zoo.resnet_basic()
    gated = krp.add_gates(dense)
    random_masks(gated, 0, keep=0.5)
    dense.save(tmp_path / "dense.keras")
    gated.save(tmp_path / "gated.keras")
    return tmp_path, dense, gated


def test_count_and_report(saved, capsys):
    path, dense, gated = saved
    main(["count", str(path / "gated.keras")])
    counted = json.loads(capsys.readouterr().out)
    assert counted == {"params": krp.count_params(gated), "flops": krp.count_flops(gated)}
    main(["report", str(path / "gated.keras"), "--dense", str(path / "dense.keras"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["flops_before"] == krp.count_flops(dense)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export needs TensorFlow")
def test_strip_exports(saved, capsys):
    path, _, gated = saved
    main(["strip", str(path / "gated.keras"), str(path / "out"), "--formats", "keras", "tflite"])
    result = json.loads(capsys.readouterr().out)
    assert result["flops"] == krp.count_flops(gated)
    assert (path / "out" / "model.tflite").is_file()


def test_bad_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["prune-everything"])
