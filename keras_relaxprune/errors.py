"""Errors raised by keras_relaxprune.

All of them derive from `PruningError`, so `except krp.PruningError` catches
every refusal of the library. Messages name the layer (and its class) at fault
and say what the user can do about it.
"""


class PruningError(ValueError):
    """Base class of every error raised by keras_relaxprune."""


class UnsupportedModelError(PruningError):
    """The model is not a Keras functional (or Sequential) model."""


class UnsupportedLayerError(PruningError):
    """A layer on a path that must be pruned has no channel rule.

    Raised by `add_gates(..., strict=True)`; in the default mode the layer is a
    barrier instead and a warning names it.
    """


class NothingToPruneError(PruningError):
    """No channel of the model can be pruned (all protected or excluded)."""


class BudgetError(PruningError):
    """The requested budget cannot be met (e.g. the protected part alone is larger)."""


class StripError(PruningError):
    """`strip_pruning` cannot remove channels without changing the function."""


class UnknownSpatialSizeError(PruningError):
    """FLOPs need a spatial size the model leaves unknown (`None`): pass
    `input_shape=(H, W, C)`."""


class InvalidArgumentError(PruningError):
    """An argument has a value the function cannot use.

    The message names the argument, the value received and what to pass
    instead. Raised before any work is done.
    """


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument has the wrong type (a string where a number is expected,
    a number where a pair is expected). Also a `TypeError`."""


class ModelFileError(PruningError):
    """A model file cannot be read: missing, empty, truncated, or not a
    Keras `.keras`/`.h5` file. The message names the file and what is wrong."""


class LatencyTableError(PruningError):
    """A latency budget or estimate has no latency table to read (or the
    table lacks a layer): pass `latency_table=krp.LatencyTable(...)`."""
