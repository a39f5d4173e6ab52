"""The relaxprune command, run as a user runs it: in its own process.

Each run checks the exit status, that stderr holds no traceback, and that it
holds nothing but the command's own lines (`relaxprune: error: ...`, one line
per error): no TensorFlow or absl log lines. Until `keras_relaxprune` keeps
TensorFlow's start-up lines quiet (they are printed while the package is
imported, before the command's code runs, and TensorFlow ignores
`TF_CPP_MIN_LOG_LEVEL` for them), those few known start-up lines are
tolerated and `test_help_prints_nothing_on_stderr` is an expected failure.
"""

import json
import os
import re
import subprocess
import sys
import warnings

import keras
import model_zoo
import pytest
from helpers import random_masks

import keras_relaxprune as krp
from keras_relaxprune.exporting.export import FORMATS as EXPORT_FORMATS
from keras_relaxprune_apps.cli import FORMATS, main

# What TensorFlow prints while it is imported (TF 2.21, CPU).
START_UP_LINE = re.compile(
    r"port\.cc:\d+\] oneDNN|cudart_stub\.cc|cuda_platform\.cc|cpu_feature_guard\.cc"
    r"|^To enable the following instructions|before absl::InitializeLog\(\)"
)
NOISE_LINE = re.compile(
    r"^[IWEF]\d{4} |^(WARNING|INFO|ERROR):(absl|tensorflow)|tensorflow", re.IGNORECASE
)


def run_cli(*args, cwd=None):
    """`python -m keras_relaxprune_apps.cli ARGS` with the environment a user has."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")
    }
    env["KERAS_BACKEND"] = keras.backend.backend()
    return subprocess.run(
        [sys.executable, "-m", "keras_relaxprune_apps.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def own_lines(done):
    """stderr lines; fails on TensorFlow's start-up lines or any other noise."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert not [line for line in lines if START_UP_LINE.search(line)], done.stderr
    noise = [
        line for line in lines if NOISE_LINE.search(line) and not line.startswith("relaxprune: ")
    ]
    assert not noise, done.stderr
    return lines


def assert_refused(done, pattern):
    lines = own_lines(done)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("relaxprune: error: "), done.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli")
    dense = model_zoo.resnet_basic()
    gated = krp.add_gates(dense)
    random_masks(gated, 0, keep=0.5)
    dense.save(path / "dense.keras")
    gated.save(path / "gated.keras")
    return path, dense, gated


def test_help_prints_usage_and_exits_0():
    done = run_cli("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: relaxprune") and "strip" in done.stdout
    assert own_lines(done) == []


def test_help_prints_nothing_on_stderr():
    done = run_cli("--help")
    assert done.returncode == 0 and done.stderr == ""


def test_count_prints_json_only(saved):
    path, _, gated = saved
    done = run_cli("count", path / "gated.keras")
    assert done.returncode == 0 and own_lines(done) == []
    assert json.loads(done.stdout) == {
        "params": krp.count_params(gated),
        "flops": krp.count_flops(gated),
    }


def test_wrong_input_rank_is_one_line_not_a_traceback(saved):
    path, _, _ = saved
    done = run_cli("count", path / "dense.keras", "--input-shape", "32", "32")
    assert_refused(done, r"--input-shape=\(32, 32\) has 2 dimensions.*16 16 3")


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("empty.keras", b"", r"'empty\.keras' is empty \(0 bytes\)"),
        ("garbage.h5", b"<html>not found</html>", r"'garbage\.h5' is not an HDF5 file"),
        ("truncated.keras", None, r"'truncated\.keras' is truncated or corrupt"),
    ],
)
def test_unreadable_model_file_is_named_with_what_is_wrong(saved, name, content, pattern):
    path, _, _ = saved
    if content is None:
        data = (path / "dense.keras").read_bytes()
        content = data[: len(data) // 2]
    (path / name).write_bytes(content)
    assert_refused(run_cli("count", name, cwd=path), r"MODEL " + pattern)


def test_strip_of_a_plain_model_is_refused(saved):
    path, _, _ = saved
    done = run_cli("strip", path / "dense.keras", path / "plain_out")
    assert_refused(done, r"has no ChannelGate layer.*nothing to strip")
    assert not (path / "plain_out").exists()


def test_bogus_format_is_refused_before_loading(saved):
    path, _, _ = saved
    done = run_cli("strip", path / "missing.keras", path / "out", "--formats", "onnx")
    assert_refused(done, r"argument --formats: invalid choice: 'onnx'")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export needs TensorFlow")
def test_strip_exports_without_noise(saved):
    path, _, gated = saved
    done = run_cli("strip", path / "gated.keras", path / "out", "--formats", "keras", "tflite")
    assert done.returncode == 0, done.stderr
    assert own_lines(done) == []  # the TFLite converter's logs are discarded
    result = json.loads(done.stdout)
    assert result["flops"] == krp.count_flops(gated)
    assert (path / "out" / "model.tflite").is_file()
    assert (path / "out" / "pruning_report.json").is_file()


def test_count_and_report_in_process(saved, capsys):
    path, dense, gated = saved
    assert main(["count", str(path / "gated.keras")]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert counted == {"params": krp.count_params(gated), "flops": krp.count_flops(gated)}
    assert (
        main(["report", str(path / "gated.keras"), "--dense", str(path / "dense.keras"), "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["flops_before"] == krp.count_flops(dense)


def test_library_warnings_are_one_line_each_others_dropped(saved, capsys, monkeypatch):
    path, _, _ = saved

    def warn_then_refuse(model, threshold=None):
        for source in (krp.removal.strip.__file__, keras.__file__):  # the library's, Keras'
            warnings.warn_explicit("strip_pruning: first\nline", UserWarning, source, 1)
        raise krp.StripError("strip_pruning: cannot")

    monkeypatch.setattr(krp, "strip_pruning", warn_then_refuse)
    assert main(["strip", str(path / "gated.keras"), str(path / "never")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "relaxprune: warning: strip_pruning: first line",
        "relaxprune: error: strip_pruning: cannot",
    ]


def test_bad_command_exits_with_status_2(capsys):
    assert main(["prune-everything"]) == 2
    assert capsys.readouterr().err.startswith("relaxprune: error: argument COMMAND")


def test_formats_match_export():
    assert FORMATS == EXPORT_FORMATS
