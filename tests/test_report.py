"""Tests of keras_relaxprune.reporting.report: `pruning_report` and `PruningReport`."""

import json
import warnings

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates, random_masks

import keras_relaxprune as krp
from keras_relaxprune.reporting.report import PruningReport
from keras_relaxprune_apps.models import cifar_resnet

pytestmark = pytest.mark.backend_agnostic

ROW_KEYS = {
    "name",
    "class",
    "channels_before",
    "channels_after",
    "params_before",
    "params_after",
    "flops_before",
    "flops_after",
}


@pytest.fixture(scope="module")
def two_conv():
    """A two-conv net whose only gate (after `conv_b`) keeps 5 of 8 channels."""
    dense = model_zoo.two_conv_net()
    gated = krp.add_gates(dense, exclude=["conv_a"])
    (gate,) = gates(gated)
    gate.keep_mask.assign(np.array([0, 1, 0, 1, 1, 0, 1, 1], "float32"))
    return dense, gated


@pytest.fixture(scope="module")
def resnet():
    keras.utils.set_random_seed(0)
    dense = cifar_resnet(depth=8, width=8, input_shape=(16, 16, 3))
    gated = krp.add_gates(dense)
    random_masks(gated, seed=3, keep=0.5)
    return dense, gated, krp.strip_pruning(gated)


def _rows(report):
    return {row["name"]: row for row in report.rows}


def test_totals_are_the_counts_of_the_dense_and_the_hard_gated_model(resnet):
    dense, gated, _ = resnet
    totals = krp.pruning_report(gated).totals
    assert totals["flops_before"] == krp.count_flops(dense)
    assert totals["params_before"] == krp.count_params(dense)
    assert totals["flops_after"] == krp.count_flops(gated)
    assert totals["params_after"] == krp.count_params(gated)
    assert totals["flops_after"] < totals["flops_before"]
    assert totals["flops_fraction"] == pytest.approx(totals["flops_after"] / totals["flops_before"])
    assert totals["params_fraction"] == pytest.approx(
        totals["params_after"] / totals["params_before"]
    )


def test_a_stripped_model_reports_what_its_gated_model_reports(resnet):
    dense, gated, small = resnet
    from_gated, from_pair = krp.pruning_report(gated), krp.pruning_report(dense, small)
    assert from_pair.totals == from_gated.totals
    assert from_pair.totals["flops_after"] == krp.count_flops(small)
    assert _rows(from_pair) == _rows(from_gated)


def test_rows_add_up_to_the_totals(resnet):
    _, gated, _ = resnet
    report = krp.pruning_report(gated)
    for key in ("params", "flops"):
        for side in ("before", "after"):
            column = f"{key}_{side}"
            assert sum(row[column] for row in report.rows) == report.totals[column]


def test_per_layer_rows_give_channels_params_and_flops(two_conv):
    _, gated = two_conv
    rows = _rows(krp.pruning_report(gated))
    assert all(set(row) == ROW_KEYS for row in rows.values())
    assert all(row["class"] != "ChannelGate" for row in rows.values())  # folded away
    conv_a, conv_b, head = rows["conv_a"], rows["conv_b"], rows["head"]
    assert conv_a["class"] == "Conv2D" and head["class"] == "Dense"
    # conv_a is excluded: untouched.
    assert (conv_a["channels_before"], conv_a["channels_after"]) == (8, 8)
    assert conv_a["params_after"] == conv_a["params_before"] == 3 * 3 * 3 * 8
    # conv_b keeps 5 of its 8 filters: 3x3x8 weights each, 2 FLOPs per MAC
    # at 8x8 positions.
    assert (conv_b["channels_before"], conv_b["channels_after"]) == (8, 5)
    assert (conv_b["params_before"], conv_b["params_after"]) == (3 * 3 * 8 * 8, 3 * 3 * 8 * 5)
    assert conv_b["flops_after"] == 2 * 8 * 8 * 3 * 3 * 8 * 5
    # The head loses the input rows of the removed channels.
    assert (head["channels_before"], head["channels_after"]) == (10, 10)
    assert (head["params_before"], head["params_after"]) == (8 * 10 + 10, 5 * 10 + 10)


def test_a_dense_model_reports_nothing_removed():
    dense = model_zoo.two_conv_net()
    report = krp.pruning_report(dense)
    assert report.totals["flops_fraction"] == report.totals["params_fraction"] == 1.0
    for row in report.rows:
        assert row["channels_after"] == row["channels_before"]
        assert row["flops_after"] == row["flops_before"]


def test_to_dict_and_to_json_round_trip(resnet):
    _, gated, _ = resnet
    report = krp.pruning_report(gated)
    data = report.to_dict()
    assert set(data) == {"rows", "totals", "notes"}
    assert json.loads(report.to_json()) == data
    assert json.loads(report.to_json(indent=2)) == data
    assert PruningReport(**json.loads(report.to_json())) == report


def test_printing_shows_each_layer_the_changes_and_the_totals(two_conv):
    _, gated = two_conv
    report = krp.pruning_report(gated)
    text = str(report)
    lines = text.splitlines()
    for name in ("conv_a", "conv_b", "bn_b", "head"):
        assert any(name in line for line in lines), name
    conv_b = next(line for line in lines if " conv_b " in line)
    assert "8 -> 5" in conv_b and "576 -> 360" in conv_b
    conv_a = next(line for line in lines if " conv_a " in line)
    assert "->" not in conv_a  # unchanged: one number
    total = next(line for line in lines if " total " in line)
    totals = report.totals
    assert f"{totals['flops_before']:,} -> {totals['flops_after']:,}" in total
    assert f"({totals['flops_fraction']:.1%})" in total
    assert f"({totals['params_fraction']:.1%})" in total
    assert "note:" not in text


def test_notes_say_what_was_kept_on_purpose():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # add_gates warns about the barrier
        gated = krp.add_gates(model_zoo.lambda_barrier_net())
        report = krp.pruning_report(gated)
    assert len(report.notes) == 1 and "'reverse' (Lambda)" in report.notes[0]
    assert "model output" not in " ".join(report.notes)
    assert str(report).endswith(f"note: {report.notes[0]}\n")


def test_an_attention_row_shows_the_kept_heads():
    from keras_relaxprune.graph.tracing import analyze
    from keras_relaxprune.layer_support.attention import GatedMultiHeadAttention
    from keras_relaxprune_apps import small_vit

    keras.utils.set_random_seed(0)
    dense = small_vit(input_shape=(16, 16, 3), patch_size=4, width=16, depth=1, mlp_width=32)
    gated = krp.add_gates(dense)
    (attention,) = [layer for layer in gated.layers if isinstance(layer, GatedMultiHeadAttention)]
    attention.gate.keep_mask.assign(np.array([1, 0, 0, 1], "float32"))
    assert attention.gate in analyze(gated).gates.values()
    small = krp.strip_pruning(gated)
    for report in (krp.pruning_report(gated), krp.pruning_report(dense, small)):
        row = _rows(report)[attention.name]
        assert (row["heads_before"], row["heads_after"]) == (4, 2)
        assert (row["channels_before"], row["channels_after"]) == (16, 16)  # the residual width
        assert row["flops_after"] < row["flops_before"]
        line = next(line for line in str(report).splitlines() if f" {attention.name} " in line)
        assert "16; heads 4 -> 2" in line
        assert all("heads_before" not in r for r in report.rows if r["name"] != attention.name)
