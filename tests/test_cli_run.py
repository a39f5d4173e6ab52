"""`relaxprune run`: a dataset pruned end to end on tiny subsets, and its refusals."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_relaxprune as krp
from keras_relaxprune_apps.cli import main
from keras_relaxprune_apps.models import cifar_resnet
from keras_relaxprune_apps.recipe import PRUNING_WEIGHT_DECAY

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the job exports SavedModel/TFLite"
)


@pytest.fixture(scope="module")
def tiny_dense_file(cifar_available, tmp_path_factory):
    """A ResNet-8 (width 8) fitted one epoch on 256 CIFAR-10 images."""
    from keras_relaxprune_apps.datasets import load_cifar10

    keras.utils.set_random_seed(0)
    (x, y), _ = load_cifar10(train_limit=256, test_limit=10, seed=0)
    model = cifar_resnet(depth=8, width=8, include_preprocessing=True, classifier_activation=None)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x.astype("float32"), y, batch_size=64, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("dense") / "tiny_dense.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """24 random 32 x 32 PNG images in two class folders (bright vs dark)."""
    root = tmp_path_factory.mktemp("folder") / "images"
    rng = np.random.default_rng(0)
    for label, (low, high) in enumerate(((0, 100), (155, 256))):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(12):
            pixels = rng.integers(low, high, (32, 32, 3)).astype("uint8")
            keras.utils.save_img(root / f"class{label}" / f"{index}.png", pixels)
    return root


@pytest.mark.slow
@needs_tensorflow
def test_run_prunes_cifar10_and_exports_what_the_summary_says(
    tiny_dense_file, tmp_path, capsys, monkeypatch
):
    """Also: a job killed after the strip resumes with the fine-tune (no
    second pruning fit) and removes its checkpoints when it ends."""
    from keras_relaxprune_apps import pruning_job

    out = tmp_path / "pruned"
    args = [
        "--dataset",
        "cifar10",
        "--model",
        str(tiny_dense_file),
        "--out",
        str(out),
        "--target",
        "0.5",
        "--prune-epochs",
        "1",
        "--epochs",
        "1",
        "--train-limit",
        "256",
        "--test-limit",
        "100",
        "--batch-size",
        "64",
        "--latency-runs",
        "5",
        "--verbose",
        "0",
    ]

    def killed(*_):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pruning_job, "evaluate", killed)  # right after the strip
        assert main(["run", *args]) == 130  # "interrupted"
    assert "interrupted" in capsys.readouterr().err
    assert (out / "checkpoints" / "stripped.keras").is_file()

    def pruned_again(*_, **__):
        raise AssertionError("the resumed job pruned again")

    monkeypatch.setattr(krp, "add_gates", pruned_again)
    status = main(["run", *args])
    captured = capsys.readouterr()
    assert not (out / "checkpoints").exists()
    assert status == 0, captured.err
    assert "before / after" in captured.out and "summary:" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    small = keras.saving.load_model(out / "model.keras", compile=False)
    dense = keras.saving.load_model(tiny_dense_file, compile=False)
    assert krp.count_flops(small) == summary["pruned_flops"]
    assert summary["dense_flops"] == krp.count_flops(dense)
    assert summary["pruned_flops"] <= 0.5 * summary["dense_flops"]
    assert summary["test_images"] == 100 and summary["train_images"] == 256
    assert 0.0 <= summary["pruned_accuracy"] <= 1.0
    assert summary["strip_max_difference"] <= 1e-3
    assert (out / "model.tflite").is_file() and (out / "pruning_report.json").is_file()
    assert summary["pruned_tflite_latency_ms"] > 0


@pytest.mark.slow
@needs_tensorflow
def test_run_with_a_latency_budget_meets_it_on_the_predicted_latency(
    tiny_dense_file, tmp_path, capsys, monkeypatch
):
    """`--metric latency`: the job measures a table on the target (a fake
    one here, timed by MACs), gates with it and reports the predicted
    latency; the stripped model keeps at most half of it."""
    from latency_fakes import FakeTarget

    monkeypatch.setenv("KERAS_RELAXPRUNE_LATENCY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(krp, "TFLiteTarget", lambda num_threads: FakeTarget())
    out = tmp_path / "pruned"
    status = main(
        [
            "run",
            *("--dataset", "cifar10", "--model", str(tiny_dense_file), "--out", str(out)),
            *("--target", "0.5", "--metric", "latency", "--prune-epochs", "1"),
            *("--train-limit", "256", "--test-limit", "50", "--batch-size", "64"),
            *("--latency-runs", "2", "--verbose", "0"),
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "predicted latency" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "latency" and summary["settings"]["latency_target"] == "tflite"
    assert 0.3 < summary["remaining_predicted_latency"] <= 0.5 + 1e-9
    assert summary["pruned_predicted_latency_s"] < summary["dense_predicted_latency_s"]
    assert (tmp_path / "cache" / "fake-target").is_dir()


@pytest.mark.slow
@needs_tensorflow
def test_run_twice_with_one_seed_gives_the_same_network(tiny_dense_file, tmp_path, monkeypatch):
    """Without `--deterministic-ops` the fits compile with XLA and the seed
    alone repeats the job bit for bit; the flag reaches `reproducible`."""
    from keras_relaxprune_apps import job_steps

    asked = []
    reproducible = job_steps.reproducible

    def recording(seed, deterministic_ops=True):
        asked.append(deterministic_ops)
        return reproducible(seed, deterministic_ops)

    monkeypatch.setattr(job_steps, "reproducible", recording)
    weights = []
    for run in ("first", "second"):
        out = tmp_path / run
        status = main(
            [
                "run",
                *("--dataset", "cifar10", "--model", str(tiny_dense_file), "--out", str(out)),
                *("--target", "0.5", "--prune-epochs", "1", "--train-limit", "128"),
                *("--test-limit", "20", "--batch-size", "32", "--latency-runs", "1"),
                "--verbose",
                "0",
            ]
        )
        assert status == 0
        small = keras.saving.load_model(out / "model.keras", compile=False)
        weights.append([keras.ops.convert_to_numpy(w) for w in small.weights])
    assert asked == [False, False]
    assert len(weights[0]) == len(weights[1])
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
    from keras_relaxprune_apps import pruning_job

    given = {}

    def fake_job(*args, **kwargs):
        given.update(kwargs)
        return {"summary_path": "summary.json"}

    monkeypatch.setattr(pruning_job, "run_pruning_job", fake_job)
    flags = ("--dataset", "cifar10", "--model", str(tiny_dense_file), "--out", str(tmp_path))
    assert main(["run", *flags, "--deterministic-ops"]) == 0
    assert given["deterministic_ops"] is True


def test_run_refuses_an_unknown_latency_target(capsys):
    status = main(
        [
            "run",
            "--dataset",
            "cifar10",
            "--model",
            "x.keras",
            "--out",
            "o",
            "--metric",
            "latency",
            "--latency-target",
            "npu",
        ]
    )
    assert status == 2
    assert "latency-target" in capsys.readouterr().err


@pytest.fixture(scope="module")
def untrained_two_class_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = cifar_resnet(
        depth=8, width=8, num_classes=2, include_preprocessing=True, classifier_activation=None
    )
    path = tmp_path_factory.mktemp("untrained") / "two_classes.keras"
    model.save(path)
    return path


@pytest.mark.slow
@needs_tensorflow
def test_run_on_an_image_folder_trains_the_dense_model_first(
    image_folder, untrained_two_class_file, tmp_path, capsys
):
    out = tmp_path / "folder_run"
    status = main(
        [
            "run",
            "--dataset",
            f"folder:{image_folder}",
            "--model",
            str(untrained_two_class_file),
            "--dense-epochs",
            "1",
            "--out",
            str(out),
            "--target",
            "0.5",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--latency-runs",
            "3",
            "--verbose",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == f"folder:{image_folder}"
    assert summary["image_size"] == [32, 32]  # the model's input size
    assert summary["train_images"] + summary["test_images"] == 24
    small = keras.saving.load_model(out / "model.keras", compile=False)
    assert small.output.shape[-1] == 2
    assert krp.count_flops(small) == summary["pruned_flops"] <= 0.5 * summary["dense_flops"]


def refusal(capsys, *args):
    """Runs `relaxprune run ARGS`; returns the exit status and the stderr lines."""
    status = main(["run", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.err.splitlines()


@pytest.mark.parametrize(
    "dataset, pattern",
    [
        ("imagenet", r"dataset='imagenet' is not a dataset; pass cifar10, camvid, tfds:NAME"),
        ("folder:/no/such/folder", r"the folder '/no/such/folder' does not exist"),
        ("tfds:", r"dataset='tfds:' is not a dataset"),
    ],
)
def test_a_bad_dataset_is_one_line_and_status_2(dataset, pattern, tmp_path, capsys):
    status, lines = refusal(
        capsys, "--dataset", dataset, "--model", "resnet20", "--out", tmp_path / "never"
    )
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("relaxprune: error: run_pruning_job: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--model", "missing.keras"], r"model 'missing\.keras' does not exist"),
        (["--model", "resnet18"], r"neither a model name nor a \.keras file"),
        (["--model", "resnet20", "--target", "1.5"], r"target=1\.5 is out of range"),
        (["--model", "resnet20"], r"built untrained and dense_epochs=0.*--dense-epochs N"),
        (["--model", "resnet20", "--weight-decay", "-1"], r"weight_decay=-1\.0 is out of range"),
    ],
)
def test_a_bad_model_or_target_is_one_line_and_status_2(
    extra, pattern, cifar_available, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    status, lines = refusal(capsys, "--dataset", "cifar10", "--out", "never", *extra)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("relaxprune: error: ")
    assert re.search(pattern, lines[0]), lines[0]


def test_python_dash_m_keras_relaxprune_shows_help():
    done = subprocess.run(
        [sys.executable, "-m", "keras_relaxprune_apps", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: relaxprune") and "run" in done.stdout
    assert "Traceback" not in done.stderr


class _FakeBuilder:
    """What `run_pruning_job` uses of a TFDS builder: 28 x 28 gray images."""

    def __init__(self, name):
        from types import SimpleNamespace

        self.info = SimpleNamespace(
            splits={"train": 40, "test": 10}, features={"label": SimpleNamespace(num_classes=3)}
        )

    def download_and_prepare(self):
        pass

    def as_dataset(self, split, as_supervised):
        import tensorflow as tf

        size = self.info.splits[split]
        images = np.arange(size * 28 * 28).reshape(size, 28, 28, 1) % 256
        return tf.data.Dataset.from_tensor_slices((images.astype("uint8"), np.arange(size) % 3))


@needs_tensorflow
def test_a_tfds_dataset_becomes_rgb_arrays_of_the_asked_size(monkeypatch):
    import types

    from keras_relaxprune_apps.pruning_job import load_job_data

    fake = types.ModuleType("tensorflow_datasets")
    fake.builder = _FakeBuilder
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    data = load_job_data("tfds:fake", image_size=(32, 32), train_limit=12)
    assert data.images.shape == (12, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.test_images.shape == (10, 32, 32, 3)
    assert data.num_classes == 3 and data.task == "classification"
    assert list(data.labels[:4]) == [0, 1, 2, 0]


def test_checkpoints_of_another_job_are_not_resumed(tmp_path, cifar_available, capsys):
    from keras_relaxprune_apps.job_settings import claim_checkpoints

    settings = {
        "dataset": ("cifar10", None),
        "model": "a.keras",
        "target": 0.5,
        "metric": "flops",
        "latency_target": "tflite",
        "prune_epochs": 1,
        "epochs": 2,
        "dense_epochs": 0,
        "train_limit": None,
        "batch_size": 128,
        "lr": 0.01,
        "weight_decay": 0.05,
        "distill": True,
        "seed": 0,
        "image_size": None,
        "out": str(tmp_path),
    }
    claim_checkpoints(settings)
    claim_checkpoints(dict(settings))  # the same job resumes
    for changed in ({"target": 0.75}, {"weight_decay": 0.0}):
        with pytest.raises(krp.errors.InvalidArgumentError, match="another job"):
            claim_checkpoints({**settings, **changed})


class _Reached(BaseException):
    """Raised by a stand-in fit: the job got that far (past the command's
    `except Exception`)."""


@pytest.mark.parametrize("flag, expected", [([], PRUNING_WEIGHT_DECAY), (["0"], 0.0)])
def test_run_weight_decay_reaches_both_fits_and_the_record(
    flag, expected, tiny_dense_file, tmp_path, monkeypatch
):
    """`--weight-decay` (default the main job's 5e-2, 0 turns it off) reaches
    the gated fit and the stripped fine-tune, and the job's settings."""
    from keras_relaxprune_apps import job_steps, pruning_job, recipe

    seen = []

    def stand_in(model, batches, epochs, **options):
        seen.append(options["weight_decay"])
        if len(seen) == 2:
            raise _Reached
        return 0

    monkeypatch.setattr(job_steps, "train", stand_in)
    monkeypatch.setattr(recipe, "check_strip", lambda *_: 0.0)
    args = ["--dataset", "cifar10", "--model", str(tiny_dense_file), "--out", tmp_path]
    args += [
        "--prune-epochs",
        "1",
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--test-limit",
        "10",
        "--batch-size",
        "32",
    ]
    args += ["--verbose", "0"] + (["--weight-decay", *flag] if flag else [])
    settings = {}
    original = pruning_job.checked_settings
    monkeypatch.setattr(
        pruning_job, "checked_settings", lambda given: settings.update(original(given)) or settings
    )
    with pytest.raises(_Reached):
        main(["run", *map(str, args)])
    assert seen == [expected, expected]
    assert settings["weight_decay"] == expected
