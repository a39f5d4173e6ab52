"""`estimate_latency`: a dense, gated or stripped model's predicted latency."""

import numpy as np
import pytest
from latency_fakes import FakeTarget, two_conv_net

import keras_relaxprune as krp

pytestmark = pytest.mark.backend_agnostic


def test_a_gated_model_is_estimated_as_stripped():
    model = two_conv_net()
    table = krp.LatencyTable(FakeTarget(), cache_dir=False, verbose=0)
    gated = krp.add_gates(model, latency_table=table)
    assert krp.estimate_latency(gated) == pytest.approx(krp.estimate_latency(model, table))
    for layer in gated.layers:
        if isinstance(layer, krp.ChannelGate):
            keep = np.ones(layer.channels, "float32")
            keep[::2] = 0
            layer.keep_mask.assign(keep)
    small = krp.strip_pruning(gated)
    assert krp.estimate_latency(gated) == pytest.approx(krp.estimate_latency(small, table))
    assert krp.estimate_latency(small, table) < krp.estimate_latency(model, table)


def test_a_target_is_measured_into_a_table_on_the_fly(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RELAXPRUNE_LATENCY_CACHE", str(tmp_path))
    target = FakeTarget()
    seconds = krp.estimate_latency(two_conv_net(), target)
    assert seconds > 0 and target.calls > 0
    assert (tmp_path / "fake-target").is_dir()  # the default cache folder, overridden


def test_by_layer_rows_name_every_node():
    model = two_conv_net()
    total, rows = krp.estimate_latency(
        model, krp.LatencyTable(FakeTarget(), cache_dir=False, verbose=0), by_layer=True
    )
    assert {row["name"] for row in rows} >= {"conv_a", "depthwise", "conv_b", "classifier"}
    assert total == pytest.approx(sum(row["seconds"] for row in rows))


def test_the_report_shows_the_predicted_latency_of_a_gated_model():
    table = krp.LatencyTable(FakeTarget(), cache_dir=False, verbose=0)
    gated = krp.add_gates(two_conv_net(), latency_table=table)
    for layer in gated.layers:
        if isinstance(layer, krp.ChannelGate):
            keep = np.ones(layer.channels, "float32")
            keep[: layer.channels // 2] = 0
            layer.keep_mask.assign(keep)
    report = krp.pruning_report(gated)
    totals = report.totals
    assert totals["latency_before"] == pytest.approx(krp.estimate_latency(two_conv_net(), table))
    assert totals["latency_after"] == pytest.approx(krp.estimate_latency(gated))
    assert 0 < totals["latency_fraction"] < 1
    assert "predicted latency" in str(report)
    assert "latency_fraction" not in krp.pruning_report(krp.add_gates(two_conv_net())).totals
