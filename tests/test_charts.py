"""Report charts (PNG), Markdown and JSON; `relaxprune report --out`; `export`."""

import io
import json

import keras
import numpy as np
import pytest
from helpers import random_masks

import keras_relaxprune as krp
from keras_relaxprune.exporting.export import export
from keras_relaxprune.reporting.charts import (
    REPORT_FILES,
    channels_kept_chart,
    report_markdown,
    stage_cost_chart,
    stage_costs,
    write_report_files,
)
from keras_relaxprune_apps.cli import main
from keras_relaxprune_apps.models import cifar_resnet

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def pruned():
    keras.utils.set_random_seed(0)
    dense = cifar_resnet(depth=8, width=8, input_shape=(16, 16, 3))
    gated = krp.add_gates(dense)
    random_masks(gated, 0, keep=0.5)
    return dense, gated, krp.pruning_report(gated)


def _picture(png):
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colors = {tuple(c) for c in np.asarray(image).reshape(-1, 3)}
    return image.size, colors


def _assert_real_chart(png, min_size):
    assert png.startswith(b"\x89PNG")
    (width, height), colors = _picture(png)
    assert width >= min_size[0] and height >= min_size[1]
    assert len(colors) > 20  # bars, text and anti-aliasing, not a blank canvas
    assert (31, 111, 180) in colors  # the "kept" / "after" bars are drawn


def test_channels_kept_chart(pruned):
    _, gated, report = pruned
    _assert_real_chart(channels_kept_chart(report, gated), (600, 400))


def test_stage_costs_and_chart(pruned):
    _, gated, report = pruned
    stages = stage_costs(report, gated)
    assert [s["stage"] for s in stages] == ["1: 16x16", "2: 8x8", "3: 4x4", "4: vector"]
    for key in ("flops_before", "flops_after", "params_before", "params_after"):
        assert sum(s[key] for s in stages) == report.totals[key]
    _assert_real_chart(stage_cost_chart(report, gated), (700, 400))


def test_report_markdown(pruned):
    _, _, report = pruned
    text = report_markdown(report)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| layer | class | channels | params | FLOPs |"
    assert len(table) == len(report.rows) + 3  # header, rule and total
    assert f"{report.totals['flops_fraction']:.1%} of the FLOPs" in text


def test_write_report_files(pruned, tmp_path):
    _, gated, report = pruned
    paths = write_report_files(report, gated, tmp_path / "out")
    assert {k: p.rsplit("/", 1)[1] for k, p in paths.items()} == REPORT_FILES
    with open(paths["report_json"]) as f:
        assert json.load(f) == json.loads(report.to_json())
    with open(paths["channels_chart"], "rb") as f:
        _assert_real_chart(f.read(), (600, 400))


def test_cli_report_out_writes_charts_and_report(pruned, tmp_path, capsys):
    dense, gated, _ = pruned
    dense.save(tmp_path / "dense.keras")
    gated.save(tmp_path / "gated.keras")
    main(
        [
            "report",
            str(tmp_path / "gated.keras"),
            "--dense",
            str(tmp_path / "dense.keras"),
            "--json",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    for name in REPORT_FILES.values():
        assert (tmp_path / "out" / name).is_file()
    with open(tmp_path / "out" / "pruning_report.json") as f:
        assert json.load(f) == printed
    assert printed["totals"]["flops_after"] == krp.count_flops(gated)


def test_export_writes_report_next_to_the_model(pruned, tmp_path):
    dense, gated, _ = pruned
    small = krp.strip_pruning(gated)
    written = export(small, tmp_path / "model", formats="keras", pruned_from=gated)
    assert list(written) == ["keras", *REPORT_FILES]
    with open(written["report_json"]) as f:
        totals = json.load(f)["totals"]
    assert totals["flops_after"] == krp.count_flops(small)
    assert totals["flops_before"] == krp.count_flops(dense)
    assert "pruning_report.md" in written["report_markdown"]
