"""Smoke test of the main job, examples/prune_cifar10.py, with tiny settings."""

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "prune_cifar10.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("prune_cifar10", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def job():
    from keras_relaxprune.datasets import CIFAR10_ARCHIVE, _find_archive

    if _find_archive(CIFAR10_ARCHIVE) is None:
        pytest.skip(f"{CIFAR10_ARCHIVE} not found (set KRP_DATA_DIR)")
    return _load_example()


def test_prune_cifar10_main_smoke(job, tmp_path):
    target = 0.5
    summary = job.main([
        "--depth", "8", "--train-limit", "256", "--test-limit", "100",
        "--batch-size", "128", "--dense-epochs", "1", "--epochs", "1",
        "--target", str(target), "--run-name", "smoke",
        "--checkpoint-dir", str(tmp_path / "checkpoints"),
        "--run-dir", str(tmp_path / "runs"),
        "--saved-model-dir", str(tmp_path / "saved_models"),
        "--verbose", "0",
    ])

    assert abs(summary["remaining_flops_fraction"] - (1 - target)) <= 0.01
    assert summary["flops_pruned"] < summary["flops_dense"]
    for key in ("dense_accuracy", "pruned_accuracy"):
        assert isinstance(summary[key], float)
        assert 0.0 <= summary[key] <= 1.0
    assert summary["dense_source"] == "trained"
    assert (tmp_path / "checkpoints" / "resnet8_dense.weights.h5").is_file()
    path = Path(summary["summary_path"])
    assert path == tmp_path / "runs" / "smoke" / "summary.json"
    assert json.loads(path.read_text())["remaining_flops_fraction"] == pytest.approx(
        summary["remaining_flops_fraction"])
    assert summary["stripped"] and summary["strip_max_abs_diff"] < 1e-4
    assert summary["stripped_flops"] == summary["flops_pruned"]
    assert (tmp_path / "saved_models" / "smoke" / "model.keras").is_file()
