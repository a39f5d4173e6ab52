"""Smoke test of benchmarks/speedup.py in its tiny `--quick` mode."""

from pathlib import Path

import keras
import pytest
from helpers import load_script

SPEEDUP = Path(__file__).resolve().parents[1] / "benchmarks" / "speedup.py"
ROUND_TO = 4


def _load_speedup():
    return load_script(SPEEDUP)


# TFLite timing needs TensorFlow; on JAX the script times XLA only, which the
# GPU run exercises, so CI's JAX pass skips this (it is not backend_agnostic).
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the speed-up benchmark's TFLite path needs TensorFlow",
)
def test_speedup_quick_rows():
    keep = 0.5
    rows = _load_speedup().main(["--quick", "--keep", str(keep), "--round-to", str(ROUND_TO)])

    runtimes = {row["runtime"] for row in rows}
    assert runtimes == {"tflite", "xla"}
    rounded = f"random+round{ROUND_TO}"
    assert {row["pattern"] for row in rows} == {"uniform", "random", rounded}
    for row in rows:
        assert abs(row["flops_fraction"] - keep) <= 0.05, row
        assert row["max_abs_diff"] < 1e-4, row
        # The softmax of an untrained net saturates; its logits show any error.
        assert row["logit_rel_diff"] < 1e-5, row
        for key in ("dense_ms", "stripped_ms", "uniform_ms"):
            assert row[key] > 0, (key, row)
        assert row["flops_factor"] == pytest.approx(1 / row["flops_fraction"])
        assert row["params"] > 0
        assert row["group_widths"], row

    rounded_rows = [row for row in rows if row["pattern"] == rounded]
    assert {row["runtime"] for row in rounded_rows} == {"tflite", "xla"}
    for row in rounded_rows:
        assert row["round_to"] == ROUND_TO
        # close_budget: hard cost at or below the target (reachable here).
        assert row["flops_fraction"] <= row["target"] + 1e-9, row
        for kept, size in row["group_widths"]:
            assert 0 < kept <= size, row["group_widths"]
            assert kept % ROUND_TO == 0 or kept == size, row["group_widths"]
    # The rounding is not vacuous: the unrounded random widths are not all multiples.
    random_widths = next(r["group_widths"] for r in rows if r["pattern"] == "random")
    assert any(kept % ROUND_TO and kept != size for kept, size in random_widths)


@pytest.mark.parametrize("options", [["--keep", "0"], ["--keep", "1.5"], ["--round-to", "0"]])
def test_speedup_refuses_an_out_of_range_option_at_parsing(options, capsys):
    with pytest.raises(SystemExit) as stop:
        _load_speedup().parse_args(options)
    assert stop.value.code == 2
    assert "error: argument" in capsys.readouterr().err
