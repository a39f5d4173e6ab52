"""A 2D convolution written from scratch, for the tests of user layers."""

import keras


class ScratchConv2D(keras.layers.Layer):
    """A 2D convolution written from scratch (not a Conv2D subclass) with
    Conv2D's weights and config keys, so it can borrow Conv2D's record.

    Never registered itself: each test file registers its own subclass, so
    one file's registration cannot change what another file sees.
    """

    def __init__(self, filters, kernel_size, padding="valid", use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.padding, self.use_bias = filters, padding, use_bias
        self.kernel_size = (
            (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        )

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(*self.kernel_size, input_shape[-1], self.filters),
            initializer="glorot_uniform",
            name="kernel",
        )
        self.bias = (
            self.add_weight(shape=(self.filters,), initializer="random_normal", name="bias")
            if self.use_bias
            else None
        )

    def call(self, x):
        y = keras.ops.conv(x, self.kernel, padding=self.padding)
        return y + self.bias if self.use_bias else y

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "padding": self.padding,
            "kernel_size": self.kernel_size,
            "use_bias": self.use_bias,
        }
