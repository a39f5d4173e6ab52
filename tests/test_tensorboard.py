"""TensorBoard summaries of PruningCallback: served, in event files, any order."""

import contextlib
import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest

import keras_relaxprune as krp
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.reporting.tensorboard import GATE_BUCKETS, print_message
from keras_relaxprune_apps.models import cifar_resnet

pytest.importorskip("tensorboard")
# Tiny runs: the budget warnings about thin groups and short ramps are expected.
pytestmark = pytest.mark.filterwarnings("ignore:PruningCallback:UserWarning")

EPOCHS, BATCH, SAMPLES = 3, 16, 64  # 4 steps per epoch; the budget closes at epoch 3
LOGGED = {
    "remaining_flops": "remaining_flops",
    "remaining_params": "remaining_params",
    "pruning_target": "target",
    "pruning_lambda": "lambda",
    "gate_temperature": "gate_temperature",
}


def _fit(epochs=EPOCHS, callbacks=(), fit_verbose=0, **pruning):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 16, 16, 3), dtype="float32")
    y = rng.integers(0, 10, SAMPLES)
    gated = krp.add_gates(cifar_resnet(depth=8, width=4, input_shape=(16, 16, 3)))
    gated.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    callback = krp.PruningCallback(target=0.5, **pruning)
    history = gated.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        verbose=fit_verbose,
        callbacks=[c if c != "pruning" else callback for c in callbacks] or [callback],
    )
    return gated, callback, history.history


def _final_state(callback):
    """What the callback's state gives after fit (= its last epoch's summaries)."""
    graph, budget = callback._graph, callback._budget
    relaxed = budget.graph_cost().fractions(lambda gate: gate.gate_values())
    hard = cost_fractions(graph, graph.keep_vectors())
    groups = {graph.groups.producers[root][0]: graph.gates[root] for root in graph.gated_groups()}
    alive = {name: float(np.sum(gate.keep_mask.numpy())) for name, gate in groups.items()}
    edges = np.linspace(0.0, 1.0, GATE_BUCKETS + 1)
    return {
        "scalars": {
            "pruning/remaining_flops": hard["flops"],
            "pruning/relaxed_flops": float(keras.ops.convert_to_numpy(relaxed["flops"])),
            "pruning/relaxed_params": float(keras.ops.convert_to_numpy(relaxed["params"])),
            "pruning/threshold": float(budget.final_threshold.numpy()),
            "pruning/alive_channels": sum(alive.values()),
            **{f"alive_channels/{name}": count for name, count in alive.items()},
        },
        "histograms": {
            f"gates/{name}": np.histogram(
                keras.ops.convert_to_numpy(gate.gate_values()), bins=edges
            )[0]
            for name, gate in groups.items()
        },
    }


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A short pruning fit writing to `log_dir`; on JAX, with TensorFlow unimportable."""
    log_dir = tmp_path_factory.mktemp("tensorboard")
    with pytest.MonkeyPatch.context() as patch:
        if keras.backend.backend() != "tensorflow":
            patch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` fails
        _, callback, history = _fit(log_dir=log_dir, log_every_n_steps=2)
    return log_dir, history, _final_state(callback)


def _check_values(scalars, histograms, history, final):
    """`scalars(tag)` -> [(step, value)], `histograms(tag)` -> [(step, buckets)]."""
    for key, name in LOGGED.items():
        points = scalars(f"pruning/{name}")
        assert [step for step, _ in points] == list(range(EPOCHS))
        np.testing.assert_allclose([v for _, v in points], history[key], rtol=1e-6)
    for tag, value in final["scalars"].items():
        step, last = scalars(tag)[-1]
        assert step == EPOCHS - 1
        assert last == pytest.approx(value, rel=1e-6), tag
    for tag, counts in final["histograms"].items():
        step, buckets = histograms(tag)[-1]
        buckets = np.asarray(buckets)
        assert step == EPOCHS - 1 and buckets.shape == (GATE_BUCKETS, 3)
        np.testing.assert_allclose(
            buckets[:, :2].T, [np.linspace(0, 1, 21)[:-1], np.linspace(0, 1, 21)[1:]]
        )
        np.testing.assert_array_equal(buckets[:, 2], counts)
    # Every 2 steps: optimizer iterations 2, 4, ..., 10 of the 12.
    steps = scalars("pruning_steps/remaining_flops")
    assert [step for step, _ in steps] == [2, 4, 6, 8, 10]
    assert steps[-1][1] == pytest.approx(history["remaining_flops"][-1], rel=1e-6)


def _event_file_values(run_dir):
    """Tag -> [(step, numpy value)] from every event file of a run directory."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    values = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "*tfevents*"))):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                array = tensor_util.make_ndarray(value.tensor)
                values.setdefault(value.tag, []).append((event.step, array))
    return {tag: sorted(points, key=lambda p: p[0]) for tag, points in values.items()}


@pytest.mark.backend_agnostic
def test_event_files_hold_what_the_callback_computed(logged_run):
    log_dir, history, final = logged_run
    values = _event_file_values(log_dir / "train")

    def scalars(tag):
        return [(step, float(value)) for step, value in values[tag]]

    _check_values(scalars, values.__getitem__, history, final)
    assert [step for step, _ in values["pruning/channels_kept"]] == list(range(EPOCHS))
    width, height, png = values["pruning/channels_kept"][-1][1]
    assert png.startswith(b"\x89PNG") and int(width) > 300 and int(height) > 200
    ((step, report),) = values["pruning/report"]
    assert step == EPOCHS - 1 and b"| **total** |" in report.item()


@contextlib.contextmanager
def _tensorboard_server(log_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(log_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path, **query):
        url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(query)}"
        with opener.open(url, timeout=10) as response:
            return json.loads(response.read())

    try:
        yield get
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_for(get, timeout=60.0):
    """Polls until the server has loaded the report, the last summary written."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if "pruning/report" in get("/data/plugin/text/tags").get("train", []):
                return
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"tensorboard served no pruning report within {timeout} s")
        time.sleep(0.5)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.summary path; JAX is checked on the event files",
)
def test_tensorboard_server_serves_what_the_callback_computed(logged_run):
    log_dir, history, final = logged_run
    with _tensorboard_server(log_dir) as get:
        _wait_for(get)
        tags = get("/data/plugin/scalars/tags")["train"]
        assert set(final["scalars"]) | {f"pruning/{n}" for n in LOGGED.values()} <= set(tags)
        assert "strip_pruning" in tags["pruning/remaining_flops"]["description"]

        def scalars(tag):
            return [
                (step, value)
                for _, step, value in get("/data/plugin/scalars/scalars", run="train", tag=tag)
            ]

        def histograms(tag):
            return [
                (step, buckets)
                for _, step, buckets in get(
                    "/data/plugin/histograms/histograms", run="train", tag=tag
                )
            ]

        assert set(final["histograms"]) <= set(get("/data/plugin/histograms/tags")["train"])
        _check_values(scalars, histograms, history, final)
        assert "pruning/channels_kept" in get("/data/plugin/images/tags")["train"]
        assert "pruning/report" in get("/data/plugin/text/tags")["train"]


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("order", ["tensorboard_first", "tensorboard_last"])
def test_pruning_values_reach_tensorboard_in_any_callback_order(tmp_path, order):
    pytest.importorskip("tensorflow")  # keras.callbacks.TensorBoard writes with it
    tensorboard = keras.callbacks.TensorBoard(tmp_path, write_graph=False)
    callbacks = [tensorboard, "pruning"]
    if order == "tensorboard_last":
        callbacks.reverse()
    _, _, history = _fit(epochs=2, callbacks=callbacks)
    values = _event_file_values(tmp_path / "train")
    assert [step for step, _ in values["epoch_loss"]] == [0, 1]
    for key, name in LOGGED.items():
        np.testing.assert_allclose(
            [float(v) for _, v in values[f"pruning/{name}"]], history[key], rtol=1e-6
        )
    assert ("epoch_remaining_flops" in values) == (order == "tensorboard_last")


@pytest.mark.backend_agnostic
def test_verbose_line_is_not_joined_to_the_progress_bar(capsys):
    _fit(epochs=1, fit_verbose=1, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("pruning: ") for line in lines)
    assert not any("loss" in line and "pruning: " in line for line in lines)


@pytest.mark.backend_agnostic
def test_nothing_is_written_without_log_dir_or_tensorboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit(epochs=1, log_every_n_steps=1)
    assert os.listdir(tmp_path) == []


def test_bad_step_interval_is_refused():
    with pytest.raises(ValueError, match="log_every_n_steps=0"):
        krp.PruningCallback(target=0.5, log_every_n_steps=0)


@pytest.mark.backend_agnostic
def test_a_budget_closed_when_fit_ends_is_written_one_step_later(tmp_path):
    """A one-epoch fit closes the budget in `on_train_end`: the closed masks
    and the report are written at the next step; the epoch's own scalar
    already gave the closed cost (its logs do)."""
    _, callback, history = _fit(epochs=1, log_dir=tmp_path)
    values = _event_file_values(tmp_path / "train")
    final = _final_state(callback)["scalars"]
    alive = [(step, float(value)) for step, value in values["pruning/alive_channels"]]
    assert [step for step, _ in alive] == [0, 1]
    assert alive[1][1] == final["pruning/alive_channels"] < alive[0][1]
    remaining = [(step, float(value)) for step, value in values["pruning/remaining_flops"]]
    assert remaining == [
        (0, pytest.approx(final["pruning/remaining_flops"], rel=1e-6)),
        (1, pytest.approx(final["pruning/remaining_flops"], rel=1e-6)),
    ]
    assert history["remaining_flops"] == [pytest.approx(remaining[0][1], rel=1e-6)]
    assert [step for step, _ in values["pruning/report"]] == [1]


@pytest.mark.parametrize(("verbose", "written"), [(1, "\npruning: 50%\n"), (2, "pruning: 50%\n")])
def test_print_message_starts_clear_of_a_progress_bar(capsys, verbose, written):
    print_message("pruning: 50%", {"verbose": verbose})
    assert capsys.readouterr().out == written


def test_print_message_logs_when_interactive_logging_is_off(capsys, monkeypatch):
    from absl import logging

    seen = []
    monkeypatch.setattr(logging, "info", seen.append)
    keras.config.disable_interactive_logging()
    try:
        print_message("pruning: 50%", {"verbose": 1})
    finally:
        keras.config.enable_interactive_logging()
    assert seen == ["pruning: 50%"] and capsys.readouterr().out == ""
