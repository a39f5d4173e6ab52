"""`LiveChannels`: a tensor during removal, with what its dropped channels hold.

While `strip_pruning` rebuilds a model, each tensor of the gated graph is
described by the new tensor (`value`) holding its surviving channels
(`live`, indices into the original channels) and, for every channel that is
not live, the constant it would hold in the gated model with hardened gates
(`const`; NaN where it is not a known constant). A pruned channel is 0 right
after its gate; BN, activations and bias-carrying layers may turn that 0
into another constant, which consumers fold into their bias. A tensor with
no live channel at all (`value is None`) is a per-channel constant: that is
how a fully pruned residual branch collapses into its shortcut.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class LiveChannels:
    value: object  # KerasTensor of the live channels, or None
    live: np.ndarray  # sorted original indices present in `value`
    const: np.ndarray  # per original channel: constant if not live, NaN unknown
    # (tensor, lo, hi) when `value` is `tensor[..., lo:hi]`, so that a
    # concatenation of consecutive slices can give `tensor` back.
    origin: tuple = None

    @classmethod
    def full(cls, value, width):
        return cls(value, np.arange(width), np.full(width, np.nan, "float64"))

    @classmethod
    def constant(cls, const):
        return cls(None, np.arange(0), np.asarray(const, "float64"))

    @property
    def width(self):
        return len(self.const)

    @property
    def is_full(self):
        return len(self.live) == self.width

    @property
    def is_constant(self):
        return self.value is None

    def dropped(self):
        """Original indices of the channels that are not live."""
        mask = np.ones(self.width, bool)
        mask[self.live] = False
        return np.flatnonzero(mask)

    def with_value(self, value):
        return dataclasses.replace(self, value=value)


def opaque(value):
    """A tensor without a channel axis we track (its channels are all live)."""
    shape = getattr(value, "shape", ())
    width = shape[-1] if len(shape) >= 2 and shape[-1] is not None else 0
    return LiveChannels.full(value, width)
