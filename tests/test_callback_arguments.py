"""`PruningCallback`'s arguments are checked, in order, before any training."""

import inspect

import pytest

import keras_relaxprune as krp
from keras_relaxprune.budget.callback_arguments import checked_arguments
from keras_relaxprune.errors import InvalidArgumentError

pytestmark = pytest.mark.backend_agnostic


def _arguments(**changes):
    """`PruningCallback`'s defaults (target 0.5), with `changes`."""
    signature = inspect.signature(krp.PruningCallback.__init__)
    defaults = {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {"target": 0.5, **defaults, **changes}


def test_the_defaults_are_kept_as_the_callback_keeps_them():
    values = checked_arguments(**_arguments())
    # Every argument becomes an attribute but the two the summaries keep.
    assert set(values) == set(_arguments()) - {"log_dir", "log_every_n_steps"}
    assert values["target"] == 0.5
    assert values["threshold"] == (0.02, 0.2)
    for optional in ("end_step", "metric", "lambda_rate", "cost_exponent"):
        assert values[optional] is None, optional
    assert values["final_lr_factor"] == 0.01
    assert values["calibration_steps"] == 50


def test_none_stays_none_and_numbers_are_kept():
    values = checked_arguments(
        **_arguments(
            end_step=30,
            begin_step=10,
            calibration_steps=None,
            final_lr_factor=None,
            lambda_rate=1,
            verbose=True,
            gate_prior=None,
        )
    )
    assert (values["begin_step"], values["end_step"]) == (10, 30)
    assert values["calibration_steps"] is None
    assert values["final_lr_factor"] is None
    assert values["lambda_rate"] == 1.0
    assert values["verbose"] == 1
    assert values["gate_prior"] is None


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"target": 2.0, "round_to": 0}, "target=2"),  # the first wrong one is reported
        ({"round_to": 0, "final_lr_factor": 0.0}, "round_to=0"),
        ({"begin_step": 20, "end_step": 10}, "end_step=10.*begin_step=20"),
        ({"threshold": (0.3, 0.1)}, "threshold="),
        ({"log_every_n_steps": 0}, "log_every_n_steps=0"),
        ({"gate_prior": "random"}, "gate_prior='random'"),
        ({"cost_exponent": 1.5}, "cost_exponent=1.5"),
        ({"final_lr_factor": 0.0}, "final_lr_factor=0"),
    ],
)
def test_a_wrong_value_is_refused_by_name(changes, named):
    with pytest.raises(InvalidArgumentError, match=f"^PruningCallback: {named}"):
        checked_arguments(**_arguments(**changes))
