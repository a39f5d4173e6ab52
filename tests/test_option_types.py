"""Number types of the scripts' command-line options."""

import argparse

import pytest

from keras_relaxprune_apps.option_types import (
    fraction,
    non_negative,
    non_negative_int,
    number_type,
    open_fraction,
    positive,
    positive_int,
)

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize(
    "parse, text, value",
    [
        (fraction, "0", 0.0),
        (fraction, "1", 1.0),
        (fraction, "0.25", 0.25),
        (open_fraction, "0.9", 0.9),
        (positive, "1e-6", 1e-6),
        (non_negative, "0", 0.0),
        (positive_int, "3", 3),
        (non_negative_int, "0", 0),
    ],
)
def test_a_value_within_the_bounds_comes_back_as_a_number(parse, text, value):
    assert parse(text) == value
    assert type(parse(text)) is type(value)


@pytest.mark.parametrize(
    "parse, text, words",
    [
        (fraction, "1.5", "a number 0 or above and 1 or below"),
        (fraction, "nan", "a number 0 or above and 1 or below"),
        (open_fraction, "1", "a number above 0 and below 1"),
        (open_fraction, "0", "a number above 0 and below 1"),
        (positive, "0", "a number above 0"),
        (positive, "nan", "a number above 0"),
        (positive, "inf", "a number above 0"),
        (non_negative, "-1e-3", "a number 0 or above"),
        (positive_int, "0", "a whole number 1 or above"),
        (positive_int, "2.5", "a whole number 1 or above"),
        (non_negative_int, "-1", "a whole number 0 or above"),
        (positive, "ten", "a number above 0"),
    ],
)
def test_a_value_out_of_range_or_not_a_number_is_refused_with_what_to_pass(parse, text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=f"must be {words}, got"):
        parse(text)


def test_an_unbounded_type_still_refuses_what_is_not_finite():
    anything = number_type()
    assert anything("-3.5") == -3.5
    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number"):
        anything("inf")


def test_argparse_prints_one_line_naming_the_option_and_exits_2(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--temperature", type=positive)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--temperature", "nan"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--temperature" in error and "must be a number above 0, got nan" in error
