"""`LiveChannels`: surviving channels and the constants of removed ones."""

import numpy as np
import pytest

from keras_relaxprune.graph.live_channels import LiveChannels, opaque

pytestmark = pytest.mark.backend_agnostic


def test_full_constant_and_dropped():
    full = LiveChannels.full("tensor", 4)
    assert full.is_full and not full.is_constant and full.width == 4
    assert full.dropped().size == 0 and np.isnan(full.const).all()
    partial = LiveChannels("tensor", np.array([0, 2]), np.array([np.nan, 1.5, np.nan, 0.0]))
    assert not partial.is_full
    np.testing.assert_array_equal(partial.dropped(), [1, 3])
    constant = LiveChannels.constant([1.0, 2.0])
    assert constant.is_constant and constant.width == 2 and constant.live.size == 0


def test_opaque_takes_the_last_axis_or_none():
    class Shaped:
        shape = (None, 5, 5, 7)

    assert opaque(Shaped()).width == 7
    assert opaque(3.0).width == 0
    assert opaque(Shaped()).with_value("x").value == "x"
