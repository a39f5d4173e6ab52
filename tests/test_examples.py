"""The main job (examples/prune_cifar10.py) and the dense trainer, end to end on tiny data."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import SimulatedKill, load_script

import keras_relaxprune as krp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHANCE = 0.1  # 10 classes
# Test accuracy the tiny pruned run (and its dense start) must reach: 1.5x
# chance. Measured on the 100 test images: dense 0.29, pruned 0.26.
MIN_ACCURACY = 1.5 * CHANCE


def _load(name):
    return load_script(EXAMPLES / f"{name}.py")


@pytest.fixture(scope="module")
def dense_file(cifar_available, tmp_path_factory):
    """A tiny dense model trained by the dense trainer (4 epochs, 512 images)."""
    out = tmp_path_factory.mktemp("dense")
    record = _load("train_dense_cifar10").main(
        [
            "--depth",
            "8",
            "--epochs",
            "4",
            "--train-limit",
            "512",
            "--test-limit",
            "200",
            "--batch-size",
            "64",
            "--name",
            "tiny_dense",
            "--validation-freq",
            "4",
            "--no-jit",  # XLA's compile is most of a 4-epoch fit on CPU
            "--checkpoint-dir",
            str(out / "checkpoints"),
            "--out-dir",
            str(out),
            "--verbose",
            "0",
        ]
    )
    path = out / "tiny_dense.keras"
    assert record["model"] == "tiny_dense.keras" and path.is_file()
    assert json.loads((out / "tiny_dense.json").read_text())["epochs"] == 4
    return path


@pytest.fixture(scope="module")
def calibrated_dense_file(dense_file):
    """The tiny dense model with its BatchNormalization statistics re-estimated.

    32 steps move the moving statistics (momentum 0.99) only a quarter of
    the way from their initial values, so in inference mode the trained file
    itself scores about chance; re-estimated, it predicts what it learned.
    """
    (x, _), _ = _load("train_dense_cifar10").load_cifar10(train_limit=512, test_limit=200, seed=0)
    model = keras.saving.load_model(dense_file, compile=False)
    krp.recalibrate_batchnorm(model, x.astype("float32"))
    path = dense_file.with_name("tiny_dense_calibrated.keras")
    model.save(path)
    return path


def test_dense_trainer_ships_a_model_that_takes_raw_pixels(dense_file):
    """The shipped model carries its preprocessing, outputs logits, and its
    JSON record holds its own accuracy on the 200 test images."""
    model = keras.saving.load_model(dense_file, compile=False)
    names = [type(layer).__name__ for layer in model.layers[:3]]
    assert names == ["InputLayer", "Rescaling", "Normalization"]
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits
    _, (xt, yt) = _load("train_dense_cifar10").load_cifar10(train_limit=512, test_limit=200, seed=0)
    assert len(yt) == 200
    logits = model.predict(xt.astype("float32"), verbose=0)
    record = json.loads(dense_file.with_suffix(".json").read_text())
    assert record["test_images"] == 200
    assert record["test_accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == yt))


def test_dense_trainer_width_sets_the_channels_of_every_stage(cifar_available, tmp_path):
    """`--width 4` trains a ResNet whose stages have 4, 8 and 16 channels, a
    quarter of the default's FLOPs at width 8, and the record names the width."""
    _load("train_dense_cifar10").main(
        [
            "--depth",
            "8",
            "--width",
            "4",
            "--epochs",
            "1",
            "--train-limit",
            "128",
            "--test-limit",
            "50",
            "--batch-size",
            "64",
            "--name",
            "thin",
            "--no-jit",
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
            "--out-dir",
            str(tmp_path),
            "--verbose",
            "0",
        ]
    )
    model = keras.saving.load_model(tmp_path / "thin.keras", compile=False)
    widths = sorted(
        {layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    )
    assert widths == [4, 8, 16]
    assert json.loads((tmp_path / "thin.json").read_text())["width"] == 4


def test_dense_trainer_refuses_a_width_below_one(capsys):
    """`--width 0` stops at argument parsing: one line naming the flag, exit 2."""
    with pytest.raises(SystemExit) as stopped:
        _load("train_dense_cifar10").parse_args(["--width", "0"])
    assert stopped.value.code == 2
    assert "--width: must be a whole number 1 or above, got 0" in capsys.readouterr().err


def test_main_job_passes_callback_json_and_refuses_what_is_not_json(capsys):
    """`--callback` reaches the job as a dict; text that is not JSON stops at
    argument parsing, exit 2, naming the flag. `--deterministic-ops` is off
    unless asked (the fits then compile with XLA)."""
    job = _load("prune_cifar10")
    args = job.parse_args(["--callback", '{"end_step": 780}'])
    assert args.callback == {"end_step": 780} and args.deterministic_ops is False
    assert job.parse_args(["--deterministic-ops"]).deterministic_ops is True
    with pytest.raises(SystemExit) as stopped:
        job.parse_args(["--callback", "{end_step: 780"])
    assert stopped.value.code == 2
    assert "--callback" in capsys.readouterr().err


def test_main_job_weight_decay_defaults_to_the_measured_one_and_refuses_a_negative(capsys):
    """`--weight-decay` is 5e-2 unless given, 0 turns it off; a negative value
    stops at parsing, exit 2."""
    job = _load("prune_cifar10")
    assert job.parse_args([]).weight_decay == 0.05
    assert job.parse_args(["--weight-decay", "0"]).weight_decay == 0.0
    with pytest.raises(SystemExit) as stopped:
        job.parse_args(["--weight-decay", "-1"])
    assert stopped.value.code == 2
    assert "--weight-decay" in capsys.readouterr().err


def test_main_job_exports_files_that_load_and_match_the_report(calibrated_dense_file, tmp_path):
    """The summary's FLOPs, params and accuracies are those of the exported
    files, the budget is met, both accuracies are well above chance, every
    export format agrees with the Keras file, and summary.json holds the
    returned summary."""
    dense_file = calibrated_dense_file
    target = 0.5
    summary = _load("prune_cifar10").main(
        [
            "--dense",
            str(dense_file),
            "--train-limit",
            "256",
            "--test-limit",
            "100",
            "--batch-size",
            "64",
            "--prune-epochs",
            "3",
            "--target",
            str(target),
            "--run-name",
            "smoke",
            "--latency-runs",
            "5",
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
    dense = keras.saving.load_model(dense_file, compile=False)
    small = keras.saving.load_model(summary["exported"]["keras"], compile=False)
    # The reported reduction is the exported model's.
    assert summary["pruned_flops"] == krp.count_flops(small)
    assert summary["pruned_params"] == krp.count_params(small) == small.count_params()
    assert summary["dense_flops"] == krp.count_flops(dense)
    assert 1 - target - 0.01 <= summary["remaining_flops"] <= 1 - target
    # The reported accuracy is the exported model's on the same test images.
    from keras_relaxprune_apps import load_cifar10

    _, (xt, yt) = load_cifar10(train_limit=256, test_limit=100, seed=0)
    logits = small.predict(xt.astype("float32"), verbose=0)
    assert np.mean(np.argmax(logits, -1) == yt) == pytest.approx(summary["pruned_accuracy"])
    dense_logits = dense.predict(xt.astype("float32"), verbose=0)
    assert np.mean(np.argmax(dense_logits, -1) == yt) == pytest.approx(summary["dense_accuracy"])
    assert summary["test_images"] == len(yt) == 100
    assert summary["dense_accuracy"] >= MIN_ACCURACY
    assert summary["pruned_accuracy"] >= MIN_ACCURACY
    assert summary["pruned_params"] < summary["dense_params"]
    # Every format loads and agrees with the Keras file.
    from keras_relaxprune.exporting.export import load_saved_model_fn, run_tflite

    x = xt[:4].astype("float32")
    np.testing.assert_allclose(
        run_tflite(summary["exported"]["tflite"], x), small.predict(x, verbose=0), atol=1e-3
    )
    serve = load_saved_model_fn(summary["exported"]["saved_model"])
    np.testing.assert_allclose(np.asarray(serve(x)), small.predict(x, verbose=0), atol=1e-3)
    assert summary["pruned_tflite_bytes"] < summary["dense_tflite_bytes"]
    assert summary["pruned_tflite_latency_ms"] > 0
    assert summary["pruned_accuracy_before_fine_tune"] is None  # the plain call: one fit
    assert not (tmp_path / "checkpoints" / "smoke").exists()  # backups cleaned up
    saved = json.loads(Path(summary["summary_path"]).read_text())
    assert saved["remaining_flops"] == pytest.approx(summary["remaining_flops"])
    assert saved == json.loads(json.dumps(summary))


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("method", ["ours", "uniform"])
def test_comparison_cell_prunes_strips_and_records(
    calibrated_dense_file, tmp_path, method, without_xla
):
    """One cell of the comparison grid (benchmarks/pretrained_pruning.py): ours
    prunes in a gated fit and fine-tunes stripped, a baseline fine-tunes
    stripped throughout; the record's cost is the budget's."""
    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    record = module.main(
        [
            "--dense",
            str(calibrated_dense_file),
            "--method",
            method,
            "--target",
            "0.5",
            "--epochs",
            "2",
            "--prune-epochs",
            "1",
            "--train-limit",
            "256",
            "--test-limit",
            "100",
            "--batch-size",
            "64",
            "--recalibrate",
            "4",
            "--out",
            str(tmp_path),
            "--name",
            "cell",
            "--verbose",
            "0",
            "--save",
            str(tmp_path / "small.keras"),
        ]
    )
    assert json.loads((tmp_path / "cell.json").read_text()) == json.loads(json.dumps(record))
    assert 0.49 <= record["remaining_flops"] <= 0.5
    saved = keras.saving.load_model(record["file"])  # the fine-tuned network
    assert getattr(saved, "optimizer", None) is None
    assert (krp.count_flops(saved), krp.count_params(saved)) == (record["flops"], record["params"])
    assert record["test_images"] == 100 and record["epochs"] == 2
    assert 0.0 <= record["test_accuracy"] <= 1.0
    if method == "ours":
        assert 0.0 <= record["stripped_test_accuracy_before_fine_tune"] <= 1.0
    assert record["train_steps"] == 2 * 4  # 256 images in batches of 64, 2 epochs


def test_comparison_cell_refuses_a_save_path_that_is_not_keras(capsys):
    """`--save` must name a `.keras` file: anything else is refused at
    parsing, in one line naming the option, before any training."""
    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    assert module.parse_args(["--dense", "d.keras", "--save", "m.keras"]).save == "m.keras"
    with pytest.raises(SystemExit) as stop:
        module.parse_args(["--dense", "d.keras", "--save", "model.h5"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--save" in error and "model.h5" in error


def test_comparison_cell_prunes_for_part_of_an_epoch(calibrated_dense_file, tmp_path, without_xla):
    """`--prune-steps`: the gated fit is that many steps, the stripped fine-tune
    the rest, so the run trains as many steps as `--epochs` full epochs."""
    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    record = module.main(
        [
            "--dense",
            str(calibrated_dense_file),
            "--target",
            "0.5",
            "--epochs",
            "2",
            "--prune-steps",
            "2",
            "--train-limit",
            "256",
            "--test-limit",
            "100",
            "--batch-size",
            "64",
            "--recalibrate",
            "2",
            "--out",
            str(tmp_path),
            "--name",
            "cell",
            "--verbose",
            "0",
        ]
    )
    assert 0.49 <= record["remaining_flops"] <= 0.5
    assert record["prune_steps"] == 2
    assert record["train_steps"] == 2 + 2 * 3  # 2 gated + 2 stripped epochs of 3 steps
    assert 0.0 <= record["stripped_test_accuracy_before_fine_tune"] <= 1.0


def test_comparison_cell_fine_tunes_with_label_smoothing(
    calibrated_dense_file, tmp_path, capsys, without_xla
):
    """`--label-smoothing`: one-hot labels and a smoothed categorical loss in
    the gated fit, the distillation and the stripped fine-tune; the accuracy
    the fits report is the categorical one. A value above 1 is refused at
    parsing, in one line naming the option."""
    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    loss = module.label_loss(module.parse_args(["--dense", "d.keras", "--label-smoothing", "0.1"]))
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.get_config()["label_smoothing"] == 0.1
    assert module.label_loss(module.parse_args(["--dense", "d.keras"])) is None
    with pytest.raises(SystemExit) as stop:
        module.parse_args(["--dense", "d.keras", "--label-smoothing", "1.5"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--label-smoothing" in error and "1 or below" in error
    accuracies = []
    fine_tune = module.fine_tune

    def recording(model, dense, batches, callbacks, *args, **kwargs):
        seen = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: accuracies.append(logs["accuracy"])
        )
        return fine_tune(model, dense, batches, [*callbacks, seen], *args, **kwargs)

    module.fine_tune = recording
    record = module.main(
        [
            "--dense",
            str(calibrated_dense_file),
            "--target",
            "0.5",
            "--epochs",
            "2",
            "--prune-epochs",
            "1",
            "--distill",
            "--label-smoothing",
            "0.1",
            "--train-limit",
            "256",
            "--test-limit",
            "100",
            "--batch-size",
            "64",
            "--out",
            str(tmp_path),
            "--name",
            "cell",
            "--verbose",
            "0",
        ]
    )
    assert record["label_smoothing"] == 0.1
    assert 0.49 <= record["remaining_flops"] <= 0.5
    assert len(accuracies) == 2 and all(0.0 < a <= 1.0 for a in accuracies)


def test_comparison_cell_resumes_after_a_kill_where_it_stopped(
    calibrated_dense_file, tmp_path, monkeypatch, capsys, without_xla
):
    """`--backup`: a cell killed in the stripped network's fine-tune goes on
    from its last finished epoch when run again (no second gated fit) and
    records what the uninterrupted cell records; the folder is removed. A
    run with other settings refuses the folder."""
    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    argv = [
        "--dense",
        str(calibrated_dense_file),
        "--target",
        "0.5",
        "--epochs",
        "3",
        "--prune-epochs",
        "1",
        "--train-limit",
        "256",
        "--test-limit",
        "100",
        "--batch-size",
        "64",
        "--recalibrate",
        "2",
        "--name",
        "cell",
        "--verbose",
        "0",
    ]
    whole = module.main([*argv, "--out", str(tmp_path / "whole")])
    backup = tmp_path / "backup"
    fine_tune = module.fine_tune

    def killed_in_the_stripped_fit(model, *args, **kwargs):
        if kwargs.get("backup"):
            args = (args[0], args[1], [*args[2], SimulatedKill(2, at="begin")], *args[3:])
        return fine_tune(model, *args, **kwargs)

    monkeypatch.setattr(module, "fine_tune", killed_in_the_stripped_fit)
    with pytest.raises(KeyboardInterrupt):
        module.main([*argv, "--out", str(tmp_path / "cut"), "--backup", str(backup)])
    assert (backup / "stripped.keras").is_file()
    monkeypatch.setattr(module, "fine_tune", fine_tune)
    other = [*argv, "--out", str(tmp_path / "cut"), "--backup", str(backup)]
    other[other.index("--target") + 1] = "0.6"
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        module.main(other)
    assert refused.value.code == 2
    assert "another run's backup" in capsys.readouterr().err
    resumed = module.main([*argv, "--out", str(tmp_path / "cut"), "--backup", str(backup)])
    assert "resumed: the stripped network" in capsys.readouterr().out
    assert resumed["resumed"] and not backup.exists()
    for key in (
        "test_accuracy",
        "train_steps",
        "remaining_flops",
        "stripped_test_accuracy_before_fine_tune",
    ):
        assert resumed[key] == whole[key], key


def test_comparison_cell_distils_with_the_weight_temperature_and_decay_asked(
    calibrated_dense_file, tmp_path, monkeypatch, without_xla
):
    """`--student-loss-weight`, `--temperature` and `--weight-decay` reach the
    `Distiller` of both fits (the gated and the stripped one) and the record."""
    from keras_relaxprune_apps import recipe

    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    distillers = []
    trainer = recipe.trainer

    def recording_trainer(*args, **kwargs):
        model = trainer(*args, **kwargs)
        distillers.append(model)
        return model

    monkeypatch.setattr(recipe, "trainer", recording_trainer)
    record = module.main(
        [
            "--dense",
            str(calibrated_dense_file),
            "--distill",
            "--target",
            "0.5",
            "--student-loss-weight",
            "0.1",
            "--temperature",
            "2",
            "--epochs",
            "2",
            "--weight-decay",
            "0.005",
            "--prune-epochs",
            "1",
            "--train-limit",
            "128",
            "--test-limit",
            "50",
            "--batch-size",
            "64",
            "--recalibrate",
            "2",
            "--out",
            str(tmp_path),
            "--name",
            "cell",
            "--verbose",
            "0",
        ]
    )
    assert len(distillers) == 2
    for distiller in distillers:
        assert isinstance(distiller, keras.distillation.Distiller)
        assert distiller.student_loss_weight == 0.1
        assert distiller.distillation_losses[0].temperature == 2.0
        assert distiller.optimizer.weight_decay == pytest.approx(0.005)
    assert record["weight_decay"] == 0.005
    assert record["distillation"] == {"student_loss_weight": 0.1, "temperature": 2.0}


@pytest.mark.parametrize(
    "option, value",
    [
        ("--student-loss-weight", "1.5"),
        ("--student-loss-weight", "-0.1"),
        ("--temperature", "0"),
        ("--weight-decay", "-1e-3"),
    ],
)
def test_comparison_cell_refuses_settings_out_of_range(option, value, capsys):
    """A weight outside [0, 1], a temperature not above 0 or a negative weight
    decay stops at the command line (exit 2, one line naming the option),
    before any data loads."""
    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    with pytest.raises(SystemExit) as stop:
        module.parse_args(["--dense", "x.keras", "--distill", option, value])
    assert stop.value.code == 2
    assert option in capsys.readouterr().err


def test_the_reference_recipe_pushes_with_the_penalty_s_own_gradient():
    """The reference recipe's penalty is `lambda * |R - 0|` as written:
    its gradient pushes each gate in proportion to its channel's cost, and
    lambda stays fixed, whatever the callback's defaults."""
    module = load_script(BENCHMARKS / "pretrained_pruning.py")
    reference = module.ReferenceRecipe(lambda_=4.0, metric="flops")
    assert (reference.cost_exponent, reference.lambda_rate, reference.lambda_) == (1.0, 0.0, 4.0)


def test_comparison_report_writes_the_table_and_the_plot(tmp_path):
    """`pruning_table.py --report-only`: one table row per record (seeds
    included), one row of seed statistics per method and budget, and the
    Pareto plot, without running a cell."""
    module = load_script(BENCHMARKS / "pruning_table.py")
    base = {
        "metric": "flops",
        "target": 0.9,
        "remaining_params": 0.1,
        "dense_test_accuracy": 0.87,
        "epochs": 3,
        "train_images": 50000,
        "backend": "tensorflow",
        "device": "CPU",
    }
    for seed, accuracy in ((0, 0.68), (1, 0.66)):
        record = {
            **base,
            "method": "l1_norm",
            "seed": seed,
            "test_accuracy": accuracy,
            "remaining_flops": 0.098,
        }
        (tmp_path / f"l1_{seed}.json").write_text(json.dumps(record))
    ours = {
        **base,
        "method": "ours",
        "seed": 0,
        "test_accuracy": 0.74,
        "remaining_flops": 0.099,
        "prune_epochs": 1,
        "callback": module.recipe_options("flops"),
    }
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    variant = {
        **ours,
        "test_accuracy": 0.70,
        "callback": {**module.recipe_options("flops"), "cost_exponent": 0.0},
    }
    (tmp_path / "ours_ce0.json").write_text(json.dumps(variant))
    module.main(["--dense", "unused.keras", "--out", str(tmp_path), "--report-only"])
    rows = (tmp_path / "table.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[4] for row in rows] == ["74.00%", "70.00%", "68.00%", "66.00%"]
    assert "3 (1 gated + 2 stripped)" in rows[0]
    # Only the options that differ from the recipe name a variant.
    assert [row.split(" | ")[0] for row in rows[:2]] == ["| ours", "| ours cost_exponent=0.0"]
    means = (tmp_path / "mean_over_seeds.md").read_text().splitlines()[2:]
    assert [row.strip("| ").split(" | ")[2:] for row in means] == [
        ["1", "74.00%", "74.00%", "74.00%"],
        ["1", "70.00%", "70.00%", "70.00%"],
        ["2", "67.00%", "66.00%", "68.00%"],
    ]
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_comparison_report_keeps_each_fine_tune_apart(tmp_path):
    """Runs with another fine-tune length, learning rate, weight decay or
    label smoothing are not seeds of one cell: each is its own row of the
    statistics, and the table names the learning rate where it is not the
    default and the weight decay and label smoothing where there are."""
    module = load_script(BENCHMARKS / "pruning_table.py")
    base = {
        "method": "ours",
        "metric": "flops",
        "target": 0.75,
        "seed": 0,
        "remaining_flops": 0.25,
        "remaining_params": 0.4,
        "dense_test_accuracy": 0.9,
        "train_images": 50000,
        "backend": "jax",
        "device": "GPU",
        "prune_epochs": 2,
        "callback": module.recipe_options("flops"),
    }
    for name, epochs, lr, prune_lr, decay, smoothing, accuracy in (
        ("e20", 20, 0.01, None, 0.0, 0.0, 0.885),
        ("e30", 30, 0.01, None, 0.0, 0.0, 0.888),
        ("e30_lr05", 30, 0.05, 0.01, 0.0, 0.0, 0.880),
        ("e30_wd", 30, 0.01, None, 5e-3, 0.0, 0.886),
        ("e30_wd_ls", 30, 0.01, None, 5e-3, 0.1, 0.887),
    ):
        record = {
            **base,
            "epochs": epochs,
            "lr": lr,
            "prune_lr": prune_lr,
            "weight_decay": decay,
            "label_smoothing": smoothing,
            "test_accuracy": accuracy,
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    module.main(["--dense", "unused.keras", "--out", str(tmp_path), "--report-only"])
    rows = (tmp_path / "table.md").read_text().splitlines()[2:]
    assert "30 (2 gated + 28 stripped), peak lr 0.05 (gated 0.01)" in rows[4]
    assert "30 (2 gated + 28 stripped), weight decay 0.005, label smoothing 0.1" in rows[1]
    assert "30 (2 gated + 28 stripped), weight decay 0.005 |" in rows[2]
    assert "peak lr" not in rows[0] + rows[1] + rows[2] + rows[3]
    assert "weight decay" not in rows[0] + rows[3] + rows[4]
    assert "label smoothing" not in "".join(rows[0:1] + rows[2:])
    means = (tmp_path / "mean_over_seeds.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[2] for row in means] == ["1", "1", "1", "1", "1"]
    assert "[20 (2 gated + 18 stripped)]" in means[3]


SCRIPTS = sorted([*EXAMPLES.glob("*.py"), *BENCHMARKS.glob("*.py")])


def is_command(path):
    """A script run as a command (the others are modules the commands import)."""
    return 'if __name__ == "__main__":' in path.read_text()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_script_imports_and_describes_its_options(script, capsys, monkeypatch):
    """Each example and benchmark imports (every module it names exists) and
    a command's `--help` lists its options."""
    monkeypatch.syspath_prepend(str(script.parent))  # as `python <script>` has it
    module = load_script(script)
    if not is_command(script):
        assert module.__doc__, f"{script.name} says what it is in a docstring"
        return
    with pytest.raises(SystemExit) as stop:
        module.parse_args(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_the_offline_gpu_script_shows_its_use_when_asked_nothing():
    """`benchmarks/offline_gpu.sh` without a command prints its header (pack,
    cell, the example) and exits 2; `cell` without a name stops before
    running anything."""
    import subprocess

    script = BENCHMARKS / "offline_gpu.sh"
    shown = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert shown.returncode == 2
    assert "offline_gpu.sh pack DENSE.keras" in shown.stderr
    assert "offline_gpu.sh cell ours+distill_flops75_e120_p2_wd5e-2_s0" in shown.stderr
    nameless = subprocess.run(["bash", str(script), "cell"], capture_output=True, text=True)
    assert nameless.returncode != 0 and "cell needs a name" in nameless.stderr
