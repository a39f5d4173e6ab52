"""Two suspects for the plain call trailing the two-fit recipe, measured.

After the budget closes, the plain call goes on training the gated model,
where the recipe trains the stripped one. Two things differ there:

- `gates`: the kept gates stay trainable (`sigmoid(500 * logit)`); if they
  drifted away from 1, the gated network would train a different
  parametrisation than the stripped one. This fits the shipped ResNet-20 to
  50% of its FLOPs (10,000 images, 3 epochs of 78 steps, SGD-Nesterov 0.01
  cosine, the ramp over epoch 1, seed 0) and records the quantiles of the
  kept gates at every epoch start and at the end.
- `bn`: the plain call re-estimates BatchNorm statistics when `fit` ends
  (`calibration_data`), the recipe's stripped fine-tune keeps its moving
  averages. This re-estimates a stripped network again, three times on
  other training batches (random images, flips) and once on the first
  images unflipped, and records the test accuracy each time: the spread
  the re-estimation itself brings.

Each writes `benchmarks/results/closing_diagnostics/<what>.json`.

    python benchmarks/closing_diagnostics.py gates
    python benchmarks/closing_diagnostics.py bn --model STRIPPED.keras
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from keras_relaxprune_apps import DATA_DIR_ENV, job_records, load_cifar10  # noqa: E402

# This repository keeps its offline archives in ../shared/data (README).
os.environ.setdefault(DATA_DIR_ENV, str(ROOT.parent / "shared" / "data"))

OUT = ROOT / "benchmarks" / "results" / "closing_diagnostics"
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("gates", "bn"))
    p.add_argument("--dense", default=str(ROOT / "saved_models" / "resnet20_cifar10_dense.keras"))
    p.add_argument("--model", default=None, help="bn: the stripped network (.keras)")
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--calibration-images", type=int, default=6400)
    p.add_argument("--out", default=str(OUT))
    return p.parse_args(argv)


class KeptGates(keras.callbacks.Callback):
    """Records the kept gates' quantiles at every epoch start and at the end."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def _record(self, when):
        kept = []
        for layer in self.model.layers:
            if isinstance(layer, krp.ChannelGate):
                gate = keras.ops.convert_to_numpy(layer.gate_values())
                kept.append(gate[keras.ops.convert_to_numpy(layer.keep_mask) > 0])
        kept = np.concatenate(kept)
        self.rows.append(
            {
                "when": when,
                "kept": int(kept.size),
                "quantiles": dict(zip(map(str, QUANTILES), np.quantile(kept, QUANTILES).tolist())),
                "below_0.9999": int((kept < 0.9999).sum()),
            }
        )
        print(self.rows[-1], flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._record(f"epoch {epoch + 1} begins")

    def on_train_end(self, logs=None):
        self._record("fit ends")


def gates(args):
    keras.utils.set_random_seed(0)
    (x, y), _ = load_cifar10(train_limit=args.train_limit, test_limit=10, seed=0)
    x = x.astype("float32")
    dense = keras.saving.load_model(args.dense, compile=False)
    gated = krp.add_gates(dense)
    steps = len(x) // 128
    cosine = keras.optimizers.schedules.CosineDecay(0.01, 3 * steps)
    gated.compile(
        optimizer=keras.optimizers.SGD(cosine, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    recorder = KeptGates()
    callback = krp.PruningCallback(0.5, end_step=steps)
    gated.fit(x, y, batch_size=128, epochs=3, callbacks=[callback, recorder], verbose=2)
    return {"steps_per_epoch": steps, "epochs": 3, "target": 0.5, "rows": recorder.rows}


def bn(args):
    if not args.model:
        raise SystemExit("closing_diagnostics.py bn: pass --model STRIPPED.keras")
    (x, _), (x_test, y_test) = load_cifar10(seed=0)
    model = keras.saving.load_model(args.model, compile=False)

    def accuracy():
        logits = model.predict(x_test.astype("float32"), batch_size=500, verbose=0)
        return float((logits.argmax(-1) == y_test.reshape(-1)).mean())

    saved = model.get_weights()
    rows = [{"statistics": "as saved", "test_accuracy": accuracy()}]
    rng = np.random.default_rng(1)
    for trial in range(3):
        images = x[rng.permutation(len(x))[: args.calibration_images]].astype("float32")
        flip = rng.random(len(images)) < 0.5
        images[flip] = images[flip, :, ::-1]
        model.set_weights(saved)
        krp.recalibrate_batchnorm(model, images)
        rows.append(
            {"statistics": f"re-estimated, random batches {trial}", "test_accuracy": accuracy()}
        )
    model.set_weights(saved)
    krp.recalibrate_batchnorm(model, x[: args.calibration_images].astype("float32"))
    rows.append({"statistics": "re-estimated, first images", "test_accuracy": accuracy()})
    for row in rows:
        print(row, flush=True)
    return {"model": args.model, "calibration_images": args.calibration_images, "rows": rows}


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    record = {"gates": gates, "bn": bn}[args.what](args)
    argv = sys.argv[1:] if argv is None else list(argv)
    record.update(job_records.run_record(start, 0, "benchmarks/closing_diagnostics.py", argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.what}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
