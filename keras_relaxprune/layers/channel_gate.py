"""`ChannelGate`: the relaxed per-channel gate inserted by `add_gates`."""

import math

import keras
from keras import ops

from keras_relaxprune.layer_support import register_layer
from keras_relaxprune.layer_support.elementwise import free, pass_through

# The gate temperature schedule's defaults, used by `add_gates`,
# `PruningCallback` and the budget layer alike: the inverse temperature
# rises from INITIAL_SCALE to FINAL_SCALE over the ramp.
INITIAL_GATE = 0.99
INITIAL_SCALE = 50.0
FINAL_SCALE = 500.0


@keras.saving.register_keras_serializable(package="keras_relaxprune")
class ChannelGate(keras.layers.Layer):
    """Multiplies each channel (last axis) by a relaxed gate in [0, 1].

    The gate of channel `c` is `sigmoid(scale * logits[c]) * keep_mask[c]`.
    `logits` is trained with the network; `keep_mask` (1 = alive, 0 = pruned)
    and `scale` (the inverse temperature) are non-trainable. During `fit`
    the model's `PruningBudget` layer drives them step by step, in the train
    step itself, as `PruningCallback` configures it: `scale` rises so that
    gates polarise to 0 or 1, and a channel whose gate falls below the
    threshold is frozen off (`keep_mask` set to 0), after which it outputs
    exactly 0; the callback sets the final masks when the budget closes.

    One `ChannelGate` instance serves a whole channel *group*: when channels
    of several layers must be removed together (both inputs of a residual
    `Add`, say), the same layer is called after each of them. A tensor may
    hold its group as several tied copies (the output of a grouped
    convolution with `groups=G` holds G): a gate made with `channels=k` for
    a tensor of `G * k` channels repeats its k gates over the copies, so
    channel `j` of every copy is removed together.

    Args:
        initial_gate: gate value of every channel at creation. Defaults to
            0.99, close to 1 so that gating barely changes the network.
        initial_scale: starting inverse temperature. Defaults to 50. The
            logits are initialised to `logit(initial_gate) / initial_scale`,
            so under Adam (steps of about one learning rate) a gate can
            close within `logit(0.99) / (50 * lr)` steps: 92 at lr=1e-3.
        channels: number of gates. Defaults to None: one per input channel.
            When given, the input's channel count must be a multiple of it,
            and the gates repeat over the input's channels (tied copies).

    Example:

    >>> gate = ChannelGate()
    >>> y = gate(keras.ops.ones((2, 8, 8, 4)))
    >>> round(float(y[0, 0, 0, 0]), 2)
    0.99
    """

    def __init__(
        self, initial_gate=INITIAL_GATE, initial_scale=INITIAL_SCALE, channels=None, **kwargs
    ):
        super().__init__(**kwargs)
        if not 0.0 < initial_gate < 1.0:
            raise ValueError(f"ChannelGate: initial_gate must be in (0, 1), got {initial_gate}.")
        if channels is not None and int(channels) < 1:
            raise ValueError(f"ChannelGate: channels must be positive, got {channels}.")
        self.initial_gate = float(initial_gate)
        self.initial_scale = float(initial_scale)
        self.gate_count = None if channels is None else int(channels)
        self.supports_masking = True

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"ChannelGate '{self.name}' needs a known channel count (last axis).")
        channels = self.gate_count or channels
        self._copies(input_shape, channels)
        logit = math.log(self.initial_gate / (1.0 - self.initial_gate))
        self.logits = self.add_weight(
            name="logits",
            shape=(channels,),
            initializer=keras.initializers.Constant(logit / self.initial_scale),
            trainable=True,
        )
        self.keep_mask = self.add_weight(
            name="keep_mask",
            shape=(channels,),
            initializer="ones",
            trainable=False,
        )
        self.scale = self.add_weight(
            name="scale",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_scale),
            trainable=False,
        )

    @property
    def channels(self):
        return int(self.logits.shape[0])

    def gate_values(self):
        """The current gate vector, `sigmoid(scale * logits) * keep_mask`."""
        soft = ops.sigmoid(ops.cast(self.scale, self.logits.dtype) * self.logits)
        return soft * self.keep_mask

    def call(self, inputs):
        gate = ops.cast(self.gate_values(), inputs.dtype)
        copies = self._copies(inputs.shape, self.channels)
        return inputs * (ops.tile(gate, [copies]) if copies > 1 else gate)

    def _copies(self, input_shape, channels):
        """How many tied copies of the gates cover the input's channels."""
        copies, remainder = divmod(int(input_shape[-1]), channels)
        if remainder or not copies:
            raise ValueError(
                f"ChannelGate '{self.name}' has {channels} gates, which do not "
                f"tile an input of {input_shape[-1]} channels."
            )
        return copies

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            initial_gate=self.initial_gate,
            initial_scale=self.initial_scale,
            channels=self.gate_count,
        )
        return config


# A gate passes channels through and costs nothing (it is folded away).
register_layer(ChannelGate, channels=pass_through, cost=free)
