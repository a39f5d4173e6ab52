"""What a job records and shows: the device it ran on, its before/after table."""

import keras
import pytest

from keras_relaxprune_apps import job_records

pytestmark = pytest.mark.backend_agnostic


def test_before_after_table_leaves_out_rows_it_has_no_values_for(capsys):
    summary = {
        "dense_accuracy": 0.9,
        "pruned_accuracy": 0.85,
        "dense_flops": 100,
        "pruned_flops": 50,
    }
    job_records.print_before_after("t", summary, [("test accuracy", "accuracy")])
    text = capsys.readouterr().out
    assert "90.00%" in text and "85.00%" in text and "0.50x" in text
    assert "params" not in text and "latency" not in text


def test_device_name_names_the_accelerators_or_the_cpu(monkeypatch):
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: ["cpu:0"])
    assert job_records.device_name().startswith("CPU (")
    if keras.backend.backend() != "jax":
        monkeypatch.setattr(keras.distribution, "list_devices", lambda: ["cpu:0", "gpu:0"])
        assert job_records.device_name() == "1 x gpu:0"
