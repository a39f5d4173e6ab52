"""Checks of the arguments of the public functions.

Each check returns the value in the form the function works with (a float,
an int, a tuple of shapes) or raises `InvalidArgumentError`
(`ArgumentTypeError` for a value of the wrong type) with a message that names
the function and the argument, shows the value received and says what to pass
instead, before any work is done. NumPy scalars (`np.float32(0.5)`) and 0-d
arrays are numbers like Python's; `True` and `False` are not.
"""

import difflib
import math
import numbers
import os

import numpy as np

from keras_relaxprune.errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    UnsupportedModelError,
)


def shown(value, limit=80):
    """`repr(value)`, cut to `limit` characters."""
    text = repr(value)
    if isinstance(value, np.generic):
        text = f"{type(value).__name__}({value.item()!r})"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value):
    """A 0-d array as its scalar; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def real(where, name, value, expected, low=None, high=None, low_open=False, high_open=False):
    """`value` as a finite float within the given bounds.

    `expected` says what to pass (e.g. "a fraction strictly between 0 and 1").
    """
    plain = _plain(value)
    if _is_bool(plain) or not isinstance(plain, numbers.Real):
        raise ArgumentTypeError(
            f"{where}: {name}={shown(value)} is a {type(value).__name__}, not a "
            f"number; pass {expected}."
        )
    number = float(plain)
    if not math.isfinite(number):
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} is not a finite number; pass {expected}."
        )
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} is out of range; pass {expected}."
        )
    return number


def integer(where, name, value, expected, low=None, high=None, bool_ok=False):
    """`value` as an int within [low, high]; integral floats (8.0) count,
    and `True`/`False` too with `bool_ok` (a `verbose` flag)."""
    plain = _plain(value)
    if bool_ok and _is_bool(plain):
        plain = int(plain)
    whole = isinstance(plain, numbers.Integral) or (
        isinstance(plain, numbers.Real) and math.isfinite(plain) and float(plain).is_integer()
    )
    if _is_bool(plain) or not isinstance(plain, numbers.Real):
        raise ArgumentTypeError(
            f"{where}: {name}={shown(value)} is a {type(value).__name__}, not a "
            f"whole number; pass {expected}."
        )
    if not whole:
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} is not a whole number; pass {expected}."
        )
    number = int(plain)
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} is out of range; pass {expected}."
        )
    return number


def boolean(where, name, value):
    """`value` as a bool; strings such as `"yes"` are refused, not truthy."""
    if not _is_bool(_plain(value)):
        raise ArgumentTypeError(
            f"{where}: {name}={shown(value)} is a {type(value).__name__}; pass True or False."
        )
    return bool(value)


def choice(where, name, value, options):
    """`value`, which must be one of `options` (`None` only if listed)."""
    if any(value is option or (isinstance(value, str) and value == option) for option in options):
        return value
    names = [option for option in options if isinstance(option, str)]
    listed = ", ".join(repr(option) for option in options)
    guess = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), names, n=1, cutoff=0.6)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
    raise InvalidArgumentError(
        f"{where}: {name}={shown(value)} is not a known {name}{guess}; pass one of {listed}."
    )


def ordered_pair(where, name, value, expected, low=0.0, high=1.0):
    """`(start, end)` as floats with `low <= start <= end < high`."""
    if isinstance(value, (str, bytes)) or not _is_sequence(value):
        kind = (
            "single number" if isinstance(_plain(value), numbers.Real) else (type(value).__name__)
        )
        raise ArgumentTypeError(
            f"{where}: {name}={shown(value)} is a {kind}, not a pair; pass {expected}."
        )
    if len(value) != 2:
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} has {len(value)} values, not 2; pass {expected}."
        )
    start, end = (real(where, name, v, expected, low=low, high=high, high_open=True) for v in value)
    if start > end:
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} starts above where it ends "
            f"({start:g} > {end:g}); pass {expected}."
        )
    return start, end


def path(where, name, value):
    """`value` as a non-empty `str` path."""
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"{where}: {name}={shown(value)} is a {type(value).__name__}, not a "
            "path; pass a directory name such as 'saved_models/resnet20'."
        )
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} is empty; pass a directory name such "
            "as 'saved_models/resnet20'."
        )
    return text


def batches(where, name, value):
    """Training inputs: an array, a `PyDataset`, a `tf.data.Dataset` or an
    iterable of batches (`None` passes)."""
    iterable = hasattr(value, "__iter__") or hasattr(value, "__getitem__")
    if value is None or (iterable and not isinstance(value, (str, bytes, dict))):
        return value
    raise ArgumentTypeError(
        f"{where}: {name}={shown(value)} is a {type(value).__name__}; pass training "
        "inputs: a NumPy array, a keras.utils.PyDataset, a tf.data.Dataset or an "
        "iterable of batches."
    )


class Checks:
    """The checks of this module with the function they serve named once:
    `check = Checks("PruningCallback"); check.real("target", target, ...)`."""

    def __init__(self, where):
        self.where = where

    def real(self, name, value, expected, **bounds):
        return real(self.where, name, value, expected, **bounds)

    def integer(self, name, value, expected, **bounds):
        return integer(self.where, name, value, expected, **bounds)

    def choice(self, name, value, options):
        return choice(self.where, name, value, options)

    def ordered_pair(self, name, value, expected):
        return ordered_pair(self.where, name, value, expected)

    def path(self, name, value):
        return path(self.where, name, value)

    def batches(self, name, value):
        return batches(self.where, name, value)


def model(where, name, value):
    """`value`, which must be a Keras model (functional or Sequential)."""
    import keras

    if isinstance(value, keras.Model):
        return value
    if isinstance(value, (str, os.PathLike)):
        fix = f"pass the loaded model, keras.saving.load_model({shown(os.fspath(value))})"
    elif isinstance(value, keras.layers.Layer):
        fix = (
            "pass the functional or Sequential keras.Model built from it, e.g. "
            "keras.Sequential([keras.Input(shape), layer])"
        )
    else:
        fix = "pass a functional or Sequential keras.Model"
    raise UnsupportedModelError(
        f"{where}: {name}={shown(value)} is a {type(value).__name__}, not a Keras model; {fix}."
    )


def models_in(value):
    """`value` and every model nested in it."""
    yield value
    for layer in getattr(value, "layers", ()):
        yield from models_in(layer)


def input_shape(where, name, value, of_model, cli=False):
    """`value` checked against the inputs of `of_model`.

    Returns `None`, one shape as a tuple (single-input models) or a list of
    tuples (one per input). A shape leaves out the batch size, has the rank
    of the model's input, positive sizes, and the model's channel count
    where that is known. `cli=True` writes sizes as the command line takes
    them (`16 16 3`).
    """
    if value is None:
        return None
    inputs = [tuple(x.shape)[1:] for x in of_model.inputs]
    several = _is_sequence(value) and len(value) > 0 and all(_is_sequence(item) for item in value)
    shapes = list(value) if several else [value]
    if len(shapes) != len(inputs):
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} gives {len(shapes)} shape(s), but model "
            f"'{of_model.name}' has {len(inputs)} inputs; pass one shape per input, "
            f"e.g. {_example(inputs, cli, several=True)}."
        )
    checked = [
        _one_shape(where, name, value, shape, expected, of_model, cli)
        for shape, expected in zip(shapes, inputs)
    ]
    return checked if several or len(checked) > 1 else checked[0]


def _one_shape(where, name, value, shape, expected, of_model, cli):
    example = _example([expected], cli)
    if isinstance(shape, (str, bytes)) or not _is_sequence(shape):
        raise ArgumentTypeError(
            f"{where}: {name}={shown(value)} is not a shape; pass the size of one "
            f"sample without the batch, e.g. {example}."
        )
    sizes = []
    for size in shape:
        plain = _plain(size)
        if _is_bool(plain) or not isinstance(plain, numbers.Integral) or plain < 1:
            raise InvalidArgumentError(
                f"{where}: {name}={shown(value)} has the size {shown(size)}; pass "
                f"positive whole numbers, e.g. {example}."
            )
        sizes.append(int(plain))
    if len(sizes) != len(expected):
        batch = "leave the batch size out and " if len(sizes) == len(expected) + 1 else ""
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} has {len(sizes)} dimensions, but model "
            f"'{of_model.name}' takes {len(expected)}: {_shape_text(expected)} per "
            f"sample; {batch}pass e.g. {example}."
        )
    if expected and expected[-1] is not None and sizes[-1] != expected[-1]:
        raise InvalidArgumentError(
            f"{where}: {name}={shown(value)} has {sizes[-1]} channels (last axis), "
            f"but model '{of_model.name}' takes {expected[-1]}; pass e.g. {example}."
        )
    return tuple(sizes)


def _example(shapes, cli, several=False):
    filled = [tuple(32 if size is None else size for size in shape) for shape in shapes]
    if cli:
        return " ".join(str(size) for size in filled[0])
    if several:
        return "[" + ", ".join(str(shape) for shape in filled) + "]"
    return str(filled[0])


def _shape_text(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"


def _is_sequence(value):
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def layer_names(where, name, value, of_model):
    """`exclude`: `None`, a predicate, or names of layers `of_model` has."""
    if value is None or callable(value):
        return value
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple, set, frozenset)):
        raise ArgumentTypeError(
            f"{where}: {name}={shown(value)} is a {type(value).__name__}; pass a "
            "list of layer names, or a predicate f(layer) -> bool."
        )
    not_names = [item for item in names if not isinstance(item, str)]
    if not_names:
        item = not_names[0]
        fix = (
            f"pass its name, {item.name!r}"
            if isinstance(getattr(item, "name", None), str)
            else "pass layer names (str)"
        )
        raise ArgumentTypeError(
            f"{where}: {name} holds {shown(item)}, a {type(item).__name__}, not a "
            f"layer name; {fix}."
        )
    known = _layer_names_of(of_model)
    unknown = sorted(set(names) - set(known))
    if unknown:
        close = {n: difflib.get_close_matches(n, known, n=1) for n in unknown}
        guesses = [f"{n!r} -> {c[0]!r}" for n, c in close.items() if c]
        guess = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        few = ", ".join(repr(n) for n in known[:6])
        raise InvalidArgumentError(
            f"{where}: {name} names layers that model '{of_model.name}' does not "
            f"have: {unknown}{guess}. Its layers include {few}"
            f"{', ...' if len(known) > 6 else ''} ({len(known)} in all); pass names "
            "from `[layer.name for layer in model.layers]`, or a predicate "
            "f(layer) -> bool."
        )
    return value


def _layer_names_of(of_model):
    """Names of the layers (nested models inlined) that `exclude` can match."""
    from keras_relaxprune.graph.flat_graph import flatten

    names = []
    for node in flatten(of_model).nodes:
        layer_name = getattr(node.operation, "name", None)
        if isinstance(layer_name, str) and layer_name not in names:
            names.append(layer_name)
    return names
