"""`LatencyTable.calibrate`: the table's sum fitted to whole-model timings."""

import pytest
from latency_fakes import FakeTarget, two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.latency.latency_calibration import fitted_line

pytestmark = pytest.mark.backend_agnostic


class WholeModelTarget(FakeTarget):
    """A fake target that also times whole models: 1e-10 x FLOPs + 0.2 ms."""

    name = "whole-model-target"

    def time_models(self, models):
        return [1e-10 * krp.count_flops(model) + 2e-4 for model in models]


def test_a_calibrated_table_meets_both_whole_model_timings():
    model = two_conv_net()
    target = WholeModelTarget()
    table = krp.LatencyTable(target, cache_dir=False, verbose=0).calibrate(model)
    calibration = table.calibration
    assert calibration["scale"] > 0 and calibration["fixed_s"] >= 0
    assert krp.estimate_latency(model, table) == pytest.approx(calibration["measured_s"][0])
    assert calibration["measured_s"][0] == pytest.approx(target.time_models([model])[0])
    # Saved with the table: a gated model predicts with it.
    gated = krp.add_gates(model, metric="latency", latency_table=table)
    assert krp.estimate_latency(gated) == pytest.approx(calibration["measured_s"][0])


def test_the_line_falls_back_to_a_ratio_when_noise_makes_it_negative():
    assert fitted_line([2.0, 1.0], [5.0, 3.0]) == {"fixed_s": 1.0, "scale": 2.0}
    assert fitted_line([2.0, 1.0], [2.0, 1.5]) == {"fixed_s": 1.0, "scale": 0.5}
    assert fitted_line([2.0, 1.0], [3.0, 3.5]) == {"fixed_s": 0.0, "scale": 1.5}


def test_a_target_that_cannot_time_a_model_is_refused():
    table = krp.LatencyTable(FakeTarget(), cache_dir=False, verbose=0)
    with pytest.raises(krp.LatencyTableError, match="time_models"):
        table.calibrate(two_conv_net())
