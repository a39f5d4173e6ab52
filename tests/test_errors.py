"""Tests of keras_relaxprune.errors: one hierarchy under `PruningError`."""

import inspect

import pytest

import keras_relaxprune as krp
from keras_relaxprune import errors

pytestmark = pytest.mark.backend_agnostic

ERRORS = [
    value
    for _, value in inspect.getmembers(errors, inspect.isclass)
    if value.__module__ == errors.__name__
]


def test_the_module_holds_the_expected_errors():
    assert {error.__name__ for error in ERRORS} == {
        "PruningError",
        "UnsupportedModelError",
        "UnsupportedLayerError",
        "NothingToPruneError",
        "BudgetError",
        "StripError",
        "UnknownSpatialSizeError",
        "InvalidArgumentError",
        "ArgumentTypeError",
        "ModelFileError",
        "LatencyTableError",
    }


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: error.__name__)
def test_every_error_is_a_pruning_error_and_carries_its_message(error):
    assert issubclass(error, krp.PruningError) and issubclass(error, ValueError)
    assert getattr(krp, error.__name__) is error  # public, as `krp.<Name>`
    assert error.__doc__ and error.__doc__.strip()
    message = f"{error.__name__}: layer 'conv' (Conv2D); pass exclude=['conv']."
    with pytest.raises(krp.PruningError) as caught:
        raise error(message)
    assert str(caught.value) == message and type(caught.value) is error


def test_an_argument_of_the_wrong_type_is_also_a_type_error():
    assert issubclass(krp.ArgumentTypeError, krp.InvalidArgumentError)
    assert issubclass(krp.ArgumentTypeError, TypeError)
    assert not issubclass(krp.InvalidArgumentError, TypeError)
