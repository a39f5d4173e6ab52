"""Training-step overhead of a gated ResNet over the dense one.

Same process, same fixed in-memory batch, same optimizer and `jit_compile=True`:

* dense: `cifar_resnet(depth)` trained with plain `fit`;
* gated: `krp.add_gates(dense)` trained with `fit(callbacks=[PruningCallback])`,
  so every step runs the gates and the in-graph sparsity regulariser
  (relaxed cost, hard cost, temperature and freezing updates).

Each step is timed by a callback (from `on_train_batch_begin` to
`on_train_batch_end`, after blocking on the loss, so JAX's asynchronous
dispatch is waited for). The first `--warmup` steps of every round (XLA
compilation in round 1) are not timed. Rounds alternate dense, gated, dense,
gated... so drift of a shared machine hits both alike; the medians over all
timed steps are compared. The budget ramp of `PruningCallback` spans one
round and its budget is closed when that `fit` ends; later gated rounds run
the very same compiled step (the regulariser is multiplied by an inactive
flag, not skipped), so they cost the same.

No TensorFlow import: it runs on any Keras backend.

    python benchmarks/overhead.py --backend-note "2 shared CPU cores"
    KERAS_BACKEND=jax python benchmarks/overhead.py --batch-size 256

Goal: gated / dense <= 1.10. Results: `benchmarks/results/`.
"""

import argparse
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune_apps import (
    cifar_resnet,
    device_name,
    non_negative_int,
    open_fraction,
    positive_int,
)

GOAL = 1.10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--steps", type=positive_int, default=30, help="timed steps per round")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed steps per round")
    p.add_argument("--rounds", type=positive_int, default=3, help="alternating dense/gated rounds")
    p.add_argument("--target", type=open_fraction, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend-note", default="", help="free text for the report")
    return p.parse_args(argv)


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training step, after the first `skip` steps."""

    def __init__(self, skip):
        super().__init__()
        self.skip, self.times, self._start = skip, [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            float(logs["loss"])  # blocks until the step has really run
        if batch >= self.skip:
            self.times.append(time.perf_counter() - self._start)


class FixedBatch(keras.utils.PyDataset):
    """The same in-memory batch, `steps` times per epoch."""

    def __init__(self, x, y, steps):
        super().__init__()
        self.x, self.y, self.steps = x, y, steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return self.x, self.y


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        jit_compile=True,
    )
    return model


def time_round(model, data, args, callbacks=()):
    """Per-step times of one `fit` of warmup + steps steps."""
    timer = StepTimer(skip=args.warmup)
    history = model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[*callbacks, timer])
    return timer.times, history.history


def measure(args):
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size).astype("int32")
    data = FixedBatch(x, y, args.warmup + args.steps)
    dense = compiled(cifar_resnet(args.depth))
    gated = compiled(krp.add_gates(dense))
    times = {"dense": [], "gated": []}
    rounds = {"dense": [], "gated": []}
    remaining = []
    for _ in range(args.rounds):
        step_times, _ = time_round(dense, data, args)
        times["dense"] += step_times
        rounds["dense"].append(statistics.median(step_times))
        callback = krp.PruningCallback(target=args.target)
        step_times, history = time_round(gated, data, args, [callback])
        times["gated"] += step_times
        rounds["gated"].append(statistics.median(step_times))
        remaining.append(round(history["remaining_flops"][-1], 3))
    flops = (krp.count_flops(dense), krp.count_flops(gated))
    return times, rounds, remaining, flops


def report(args, times, rounds, remaining, flops):
    dense = statistics.median(times["dense"])
    gated = statistics.median(times["gated"])
    ratio = gated / dense
    lines = [
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"backend: {keras.backend.backend()} (keras {keras.__version__}), device: {device_name()}",
        f"note: {args.backend_note or '-'}",
        f"command: {shlex.join(['python', *sys.argv])}",
        f"model: ResNet-{args.depth}, batch {args.batch_size}, jit_compile=True, "
        f"{args.rounds} rounds x {args.steps} timed steps (+{args.warmup} warm-up)",
        f"FLOPs: dense {flops[0]:,}; gated after the ramp {flops[1]:,} (hard "
        f"count; the gated step still computes every channel); remaining "
        f"FLOPs fraction after each gated round: {remaining}",
        f"dense median step: {1000 * dense:.1f} ms  "
        f"({args.batch_size / dense:.0f} img/s; per round "
        f"{', '.join(f'{1000 * r:.1f}' for r in rounds['dense'])} ms)",
        f"gated median step: {1000 * gated:.1f} ms  "
        f"({args.batch_size / gated:.0f} img/s; per round "
        f"{', '.join(f'{1000 * r:.1f}' for r in rounds['gated'])} ms)",
        f"ratio gated/dense: {ratio:.3f}  (goal <= {GOAL:.2f}: "
        f"{'met' if ratio <= GOAL else 'NOT met'})",
    ]
    return "\n".join(lines), ratio


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    text, ratio = report(args, *measure(args))
    print(text)
    return ratio


if __name__ == "__main__":
    main(sys.argv[1:])
