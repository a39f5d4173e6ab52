"""A pruning fit that can be killed by a signal mid-epoch, then resumed.

`python tests/killed_fit.py kill DIR` runs with BackupAndRestore into DIR,
records the keep masks at every epoch end in DIR/epochs.json, and kills its
own process (SIGKILL) in the middle of the third epoch. `python
tests/killed_fit.py resume DIR` runs the same fit again, which resumes from
the last backup, and writes the final masks and FLOPs to DIR/final.json.
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune_apps.models import cifar_resnet


def _masks(model):
    return [
        keras.ops.convert_to_numpy(layer.keep_mask).tolist()
        for layer in model.layers
        if isinstance(layer, krp.ChannelGate)
    ]


class _Record(keras.callbacks.Callback):
    def __init__(self, path, kill):
        super().__init__()
        self.path, self.kill, self.epoch = path, kill, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        epochs = json.load(open(self.path)) if os.path.exists(self.path) else {}
        epochs[str(epoch)] = _masks(self.model)
        json.dump(epochs, open(self.path, "w"))

    def on_train_batch_end(self, batch, logs=None):
        if self.kill and self.epoch == 2 and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)


def main(mode, directory):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((96, 32, 32, 3), "float32")
    y = rng.integers(0, 10, 96)
    dense = cifar_resnet(depth=8, width=8)
    gated = krp.add_gates(dense)
    gated.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    callbacks = [
        krp.PruningCallback(target=0.6),
        keras.callbacks.BackupAndRestore(os.path.join(directory, "backup")),
        _Record(os.path.join(directory, "epochs.json"), kill=mode == "kill"),
    ]
    gated.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0, callbacks=callbacks)
    json.dump(
        {
            "masks": _masks(gated),
            "flops": krp.count_flops(gated),
            "dense_flops": krp.count_flops(dense),
        },
        open(os.path.join(directory, "final.json"), "w"),
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
