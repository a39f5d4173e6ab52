"""The learning rate after the budget closes, when the user's rate is a constant.

Pruned in one `fit` at a constant rate, a network ends its fine-tuning epochs
at the rate it was pruned with, and scores far below the same fit with a
decaying rate (docs/accuracy.md, "Plain fit or recipe"). `PruningCallback`
therefore lowers a constant rate epoch by epoch once the budget has closed,
geometrically towards `final_factor` times the rate, and gives the optimizer
its own rate back when `fit` ends. A callback may change state only at epoch
boundaries (on JAX, a variable assigned between steps is not seen until the
next epoch), so the rate changes per epoch, the way
`keras.callbacks.LearningRateScheduler` changes it.
It leaves the rate alone where the user already decides it: a
`LearningRateSchedule` or callable rate, or a `LearningRateScheduler` or
`ReduceLROnPlateau` in the same `fit`.
"""

import keras

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.budget.fit_target import inner_optimizer

# Callbacks of the same `fit` that set the rate themselves.
RATE_CALLBACKS = (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau)


def constant_rate(optimizer):
    """The optimizer's rate if it is a constant (a variable), else `None`."""
    rate = getattr(inner_optimizer(optimizer), "learning_rate", None)
    if isinstance(rate, keras.Variable):
        return float(keras.ops.convert_to_numpy(rate))
    return None


def factor(epoch_after_closing, epochs_after_closing, final_factor):
    """The rate's multiplier in an epoch after the closing.

    Geometric from 1 towards `final_factor`, taken at each epoch's middle:
    one epoch after the closing trains at `final_factor ** 0.5` (0.1 for
    the default 0.01), two at 0.32 and 0.032, and so on.
    """
    return final_factor ** ((epoch_after_closing + 0.5) / max(epochs_after_closing, 1))


class RateAfterClosing:
    """Lowers a constant learning rate in the epochs after the budget closes.

    Args:
        callback: the `PruningCallback` (its model's optimizer, its fit).
        final_factor: the multiplier approached at the fit's last epoch, or
            `None` to leave the rate alone.
    """

    def __init__(self, callback, final_factor):
        self.callback = callback
        self.final_factor = final_factor
        self.rate = None  # the user's constant rate, while this fit lowers it
        self.closing_epoch = None

    def begin(self):
        """At `on_train_begin`: whether this fit's rate is ours to lower."""
        self.rate = self.closing_epoch = None
        if self.final_factor is None:
            return
        if any(isinstance(each, RATE_CALLBACKS) for each in self._fellows()):
            return
        self.rate = constant_rate(self._optimizer())

    def epoch_begins(self, epoch, closed, closing_epoch):
        """At `on_epoch_begin`, after a closing there: sets the epoch's rate.

        Args:
            epoch: the epoch starting.
            closed: whether the budget's masks are final.
            closing_epoch: the epoch at whose start the budget closed (or,
                resumed from a backup, closes), or `None` when unknown.
        """
        if self.rate is None or not closed or closing_epoch is None:
            return
        after = (self.callback.params.get("epochs") or 1) - closing_epoch
        if self.closing_epoch is None and epoch > closing_epoch:
            # Resumed from a backup taken after the closing: the rate read at
            # the start is the one set for the epoch before this one.
            self.rate /= factor(epoch - 1 - closing_epoch, after, self.final_factor)
        self.closing_epoch = closing_epoch
        multiplier = factor(epoch - closing_epoch, after, self.final_factor)
        self._optimizer().learning_rate = self.rate * multiplier

    def end(self):
        """At `on_train_end`: the optimizer gets the user's rate back."""
        if self.rate is not None and self.closing_epoch is not None:
            self._optimizer().learning_rate = self.rate
        self.rate = self.closing_epoch = None

    def _optimizer(self):
        optimizer = getattr(self.callback.model, "optimizer", None)
        return inner_optimizer(optimizer)

    def _fellows(self):
        return internals.fellow_callbacks(self.callback)
