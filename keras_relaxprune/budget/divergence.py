"""Stopping a pruning fit whose loss is no longer finite.

Once the loss is NaN or infinite, so are the weights, and neither the rest
of the ramp nor a closing on them gives a usable network. The fit stops at
the first such loss, the weights (gate masks included) of the start of that
epoch come back, and the message says what to lower.
"""

import numpy as np

from keras_relaxprune.errors import PruningError


class DivergenceGuard:
    """Restores the last good epoch and raises when the loss diverges.

    Args:
        lambda_: the callback's penalty weight, named in the message: a
            number, or a function returning the one in force when the loss
            diverges.
    """

    def __init__(self, lambda_):
        self.lambda_ = lambda_ if callable(lambda_) else (lambda: lambda_)
        self.epoch = 0
        self.last_good = None  # the weights at the start of the current epoch

    def epoch_begins(self, epoch, model):
        """Remembers `model`'s weights (and masks) to give back if this epoch diverges."""
        self.epoch, self.last_good = epoch, model.get_weights()

    def check_batch(self, model, batch, loss):
        """After a training batch: raises if its `loss` is not finite."""
        if loss is not None and not np.isfinite(float(loss)):
            self.diverged(model, f"batch {batch + 1} of epoch {self.epoch + 1}", loss)

    def check_epoch(self, model, epoch, loss):
        """After an epoch: raises if its `loss` is not finite."""
        if not np.isfinite(float(loss)):
            self.diverged(model, f"epoch {epoch + 1}", loss)

    def diverged(self, model, where, loss):
        """Restores the epoch's starting weights, stops `fit` and raises.

        Raises:
            PruningError: naming the loss, where it diverged and the fix.
        """
        restored = self.last_good is not None
        if restored:
            model.set_weights(self.last_good)
        model.stop_training = True
        raise PruningError(
            f"PruningCallback: the loss became {float(loss)} in {where}; training "
            "stopped"
            + (
                " and the weights and masks of the start of that epoch were restored"
                if restored
                else ""
            )
            + ". Lower the learning "
            f"rate or lambda_ (now {self.lambda_()}), or check the data for NaN."
        )
