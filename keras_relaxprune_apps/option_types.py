"""Types for command-line options that take a number within a range.

`argparse` calls an option's `type` with the option's text; these return the
number, or raise `argparse.ArgumentTypeError`, which argparse prints as one
line naming the option before it exits with status 2, so a value out of range
stops a script before any data loads. `nan` and `inf` are refused wherever a
bound is.
"""

import argparse
import math


def number_type(low=None, high=None, low_open=False, high_open=False, whole=False):
    """An `argparse` type for a finite number within `[low, high]`.

    Args:
        low: the smallest value allowed, or `None` for no lower bound.
        high: the largest value allowed, or `None` for no upper bound.
        low_open: `low` itself is refused (the value must be above it).
        high_open: `high` itself is refused (the value must be below it).
        whole: the value must be a whole number (returned as an `int`).

    Returns:
        A function of the option's text that returns the number.

    Example:

    ```python
    parser.add_argument("--temperature", type=number_type(0, low_open=True))
    ```
    """
    expected = _expected(low, high, low_open, high_open, whole)

    def parse(text):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        return value

    parse.__doc__ = f"An `argparse` type: the option's text as {expected}."
    return parse


def _expected(low, high, low_open, high_open, whole):
    """What `number_type` asks for, in words ("a number above 0")."""
    kind = "a whole number" if whole else "a number"
    words = []
    if low is not None:
        words.append(f"above {low:g}" if low_open else f"{low:g} or above")
    if high is not None:
        words.append(f"below {high:g}" if high_open else f"{high:g} or below")
    return " ".join([kind, " and ".join(words)]) if words else f"a finite {kind[2:]}"


fraction = number_type(0.0, 1.0)
open_fraction = number_type(0.0, 1.0, low_open=True, high_open=True)
positive = number_type(0.0, low_open=True)
non_negative = number_type(0.0)
positive_int = number_type(1, whole=True)
non_negative_int = number_type(0, whole=True)
