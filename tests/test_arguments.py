"""Tests of keras_relaxprune.arguments: the checks of public functions' arguments."""

import pathlib

import keras
import model_zoo
import numpy as np
import pytest

from keras_relaxprune import arguments
from keras_relaxprune.errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    PruningError,
    UnsupportedModelError,
)

pytestmark = pytest.mark.backend_agnostic

WHERE = "f"
FRACTION = "a fraction strictly between 0 and 1"


def test_shown_cuts_long_values_and_names_numpy_scalars():
    assert arguments.shown("abc") == "'abc'"
    assert arguments.shown(np.float32(0.5)) == "float32(0.5)"
    long = arguments.shown(list(range(100)), limit=20)
    assert len(long) == 20 and long.endswith("...")


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.int64(1), np.array(0.25)])
def test_real_accepts_python_and_numpy_numbers(value):
    number = arguments.real(WHERE, "x", value, FRACTION, low=0.0, high=1.0)
    assert isinstance(number, float) and number == float(value)


@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [
        ("0.5", ArgumentTypeError, "x='0.5' is a str, not a number; pass a fraction"),
        (True, ArgumentTypeError, "x=True is a bool, not a number"),
        (None, ArgumentTypeError, "x=None is a NoneType, not a number"),
        (float("nan"), InvalidArgumentError, "x=nan is not a finite number"),
        (float("inf"), InvalidArgumentError, "x=inf is not a finite number"),
        (0.0, InvalidArgumentError, "x=0.0 is out of range; pass a fraction"),
        (1.0, InvalidArgumentError, "x=1.0 is out of range"),
        (-0.1, InvalidArgumentError, "out of range"),
    ],
)
def test_real_refusals_name_the_function_the_argument_and_the_fix(value, error, pattern):
    with pytest.raises(error, match=pattern) as caught:
        arguments.real(
            WHERE, "x", value, FRACTION, low=0.0, high=1.0, low_open=True, high_open=True
        )
    assert str(caught.value).startswith("f: ")


def test_real_bounds_are_closed_unless_told():
    assert arguments.real(WHERE, "x", 0.0, FRACTION, low=0.0, high=1.0) == 0.0
    assert arguments.real(WHERE, "x", 1.0, FRACTION, low=0.0, high=1.0) == 1.0
    assert arguments.real(WHERE, "x", 1e9, "anything") == 1e9  # no bounds


def test_a_type_error_is_also_a_python_type_error():
    with pytest.raises(TypeError):
        arguments.real(WHERE, "x", "1", "a number")
    with pytest.raises(ValueError):  # and, as every PruningError, a ValueError
        arguments.real(WHERE, "x", "1", "a number")


@pytest.mark.parametrize(
    ("value", "expected"), [(8, 8), (8.0, 8), (np.int32(3), 3), (np.array(4), 4)]
)
def test_integer_accepts_whole_numbers(value, expected):
    number = arguments.integer(WHERE, "n", value, "a count", low=1)
    assert isinstance(number, int) and number == expected


@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [
        (8.5, InvalidArgumentError, "n=8.5 is not a whole number; pass a count"),
        ("8", ArgumentTypeError, "n='8' is a str, not a whole number"),
        (True, ArgumentTypeError, "n=True is a bool"),
        (0, InvalidArgumentError, "n=0 is out of range"),
        (11, InvalidArgumentError, "n=11 is out of range"),
        (float("inf"), InvalidArgumentError, "not a whole number"),
    ],
)
def test_integer_refusals(value, error, pattern):
    with pytest.raises(error, match=pattern):
        arguments.integer(WHERE, "n", value, "a count", low=1, high=10)


def test_integer_takes_a_flag_only_when_told():
    assert arguments.integer(WHERE, "verbose", True, "0 or 1", bool_ok=True) == 1
    assert arguments.integer(WHERE, "verbose", False, "0 or 1", bool_ok=True) == 0


def test_boolean_refuses_truthy_values():
    assert arguments.boolean(WHERE, "strict", np.bool_(True)) is True
    for value in ("yes", 1, None):
        with pytest.raises(ArgumentTypeError, match="pass True or False"):
            arguments.boolean(WHERE, "strict", value)


def test_choice_lists_the_options_and_guesses_a_misspelling():
    options = (None, "flops", "params")
    assert arguments.choice(WHERE, "metric", "flops", options) == "flops"
    assert arguments.choice(WHERE, "metric", None, options) is None
    with pytest.raises(
        InvalidArgumentError,
        match="metric='FLOPS' is not a known metric \\(did you mean 'flops'\\?\\);"
        " pass one of None, 'flops', 'params'",
    ):
        arguments.choice(WHERE, "metric", "FLOPS", options)
    with pytest.raises(InvalidArgumentError) as caught:
        arguments.choice(WHERE, "metric", "latency", options)
    assert "did you mean" not in str(caught.value)
    with pytest.raises(InvalidArgumentError, match="metric=None"):
        arguments.choice(WHERE, "metric", None, ("flops",))  # None only if listed


def test_ordered_pair():
    pair = arguments.ordered_pair(WHERE, "threshold", [0.02, np.float32(0.5)], "(a, b)")
    assert pair == (0.02, 0.5) and all(isinstance(v, float) for v in pair)
    assert arguments.ordered_pair(WHERE, "threshold", (0.1, 0.1), "(a, b)") == (0.1, 0.1)
    with pytest.raises(ArgumentTypeError, match="is a single number, not a pair"):
        arguments.ordered_pair(WHERE, "threshold", 0.1, "(a, b)")
    with pytest.raises(ArgumentTypeError, match="is a str, not a pair"):
        arguments.ordered_pair(WHERE, "threshold", "0.1,0.2", "(a, b)")
    with pytest.raises(InvalidArgumentError, match="has 3 values, not 2"):
        arguments.ordered_pair(WHERE, "threshold", (0.1, 0.2, 0.3), "(a, b)")
    with pytest.raises(InvalidArgumentError, match="starts above where it ends \\(0.5 > 0.2\\)"):
        arguments.ordered_pair(WHERE, "threshold", (0.5, 0.2), "(a, b)")
    with pytest.raises(InvalidArgumentError, match="out of range"):
        arguments.ordered_pair(WHERE, "threshold", (0.5, 1.0), "(a, b)")  # end < high


def test_path():
    assert arguments.path(WHERE, "log_dir", pathlib.Path("logs/run")) == "logs/run"
    with pytest.raises(ArgumentTypeError, match="log_dir=3 is a int, not a path"):
        arguments.path(WHERE, "log_dir", 3)
    with pytest.raises(InvalidArgumentError, match="log_dir='  ' is empty"):
        arguments.path(WHERE, "log_dir", "  ")


def test_batches_accepts_arrays_and_iterables_only():
    array = np.zeros((2, 3))
    assert arguments.batches(WHERE, "data", array) is array
    assert arguments.batches(WHERE, "data", None) is None
    batches = [array, array]
    assert arguments.batches(WHERE, "data", batches) is batches
    for value in ("x.npy", {"x": array}, 3):
        with pytest.raises(ArgumentTypeError, match="pass training inputs"):
            arguments.batches(WHERE, "data", value)


def test_checks_name_the_function_once():
    check = arguments.Checks("PruningCallback")
    with pytest.raises(InvalidArgumentError, match="^PruningCallback: target=2"):
        check.real("target", 2, FRACTION, low=0.0, high=1.0)
    with pytest.raises(InvalidArgumentError, match="^PruningCallback: round_to=0"):
        check.integer("round_to", 0, ">= 1", low=1)
    with pytest.raises(InvalidArgumentError, match="^PruningCallback: metric='x'"):
        check.choice("metric", "x", ("flops",))
    assert check.ordered_pair("threshold", (0.1, 0.2), "(a, b)") == (0.1, 0.2)
    assert check.path("log_dir", "logs") == "logs"
    assert check.batches("data", None) is None


def test_model_says_what_to_pass_instead():
    model = model_zoo.two_conv_net()
    assert arguments.model(WHERE, "model", model) is model
    with pytest.raises(UnsupportedModelError, match="keras.saving.load_model\\('m.keras'\\)"):
        arguments.model(WHERE, "model", "m.keras")
    with pytest.raises(UnsupportedModelError, match="keras.Sequential"):
        arguments.model(WHERE, "model", keras.layers.Dense(2))
    with pytest.raises(UnsupportedModelError, match="is a int, not a Keras model"):
        arguments.model(WHERE, "model", 3)


def test_models_in_walks_nested_models():
    inner = model_zoo.two_conv_net()
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, inner(inputs))
    assert list(arguments.models_in(outer)).count(inner) == 1
    assert next(iter(arguments.models_in(outer))) is outer


def test_input_shape_for_one_input():
    model = model_zoo.two_conv_net()  # Input((8, 8, 3))
    check = arguments.input_shape
    assert check(WHERE, "input_shape", None, model) is None
    assert check(WHERE, "input_shape", (8, 8, 3), model) == (8, 8, 3)
    assert check(WHERE, "input_shape", np.array([16, 16, 3]), model) == (16, 16, 3)
    with pytest.raises(InvalidArgumentError, match="has 4 dimensions.*leave the batch size out"):
        check(WHERE, "input_shape", (1, 8, 8, 3), model)
    with pytest.raises(InvalidArgumentError, match="has 4 channels.*takes 3"):
        check(WHERE, "input_shape", (8, 8, 4), model)
    with pytest.raises(InvalidArgumentError, match="has the size 0; pass positive"):
        check(WHERE, "input_shape", (0, 8, 3), model)
    with pytest.raises(ArgumentTypeError, match="is not a shape"):
        check(WHERE, "input_shape", "8x8x3", model)
    with pytest.raises(InvalidArgumentError, match="has the size '8x8x3'"):
        check(WHERE, "input_shape", ["8x8x3"], model)
    with pytest.raises(InvalidArgumentError, match="e\\.g\\. 8 8 3"):
        check(WHERE, "input_shape", (8, 8, 4), model, cli=True)


def test_input_shape_for_several_inputs():
    a, b = keras.Input((None, None, 3)), keras.Input((4,))
    pooled = keras.layers.GlobalAveragePooling2D()(a)
    model = keras.Model([a, b], keras.layers.Concatenate()([pooled, b]))
    shapes = arguments.input_shape(WHERE, "input_shape", [(32, 32, 3), (4,)], model)
    assert shapes == [(32, 32, 3), (4,)]
    with pytest.raises(InvalidArgumentError, match="gives 1 shape\\(s\\).*has 2 inputs"):
        arguments.input_shape(WHERE, "input_shape", (32, 32, 3), model)


def test_layer_names():
    model = model_zoo.two_conv_net()
    check = arguments.layer_names
    assert check(WHERE, "exclude", None, model) is None
    predicate = lambda layer: False  # noqa: E731
    assert check(WHERE, "exclude", predicate, model) is predicate
    assert check(WHERE, "exclude", "conv_a", model) == "conv_a"
    assert check(WHERE, "exclude", ["conv_a", "head"], model) == ["conv_a", "head"]
    with pytest.raises(
        InvalidArgumentError,
        match="does not have: \\['conv_c'\\] \\(did you mean 'conv_c' -> 'conv_[ab]'\\?\\)",
    ):
        check(WHERE, "exclude", ["conv_c"], model)
    with pytest.raises(ArgumentTypeError, match="pass its name, 'conv_a'"):
        check(WHERE, "exclude", [model.get_layer("conv_a")], model)
    with pytest.raises(ArgumentTypeError, match="pass a list of layer names"):
        check(WHERE, "exclude", 3, model)


def test_every_refusal_is_a_pruning_error():
    for call in (
        lambda: arguments.real(WHERE, "x", "a", "b"),
        lambda: arguments.choice(WHERE, "m", "a", ("b",)),
        lambda: arguments.model(WHERE, "model", None),
    ):
        with pytest.raises(PruningError):
            call()
