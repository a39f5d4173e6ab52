"""Fits a tiny gated model on one device and on two, prints what to compare.

Run as a script in a fresh process (the devices must be set up before the
backend starts): `python tests/distributed_fit.py OUT_DIR`, with
KERAS_BACKEND=tensorflow (MirroredStrategy over 2 logical CPUs) or
KERAS_BACKEND=jax (keras.distribution.DataParallel over 2 host devices).
Prints one JSON object: masks, hard FLOPs, logits and the in-graph budget
state per replica, for the single-device and the two-device run.
"""

import json
import os
import sys

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_relaxprune as krp  # noqa: E402


def _net():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.ReLU()(keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs))
    x = keras.layers.ReLU()(keras.layers.Conv2D(8, 3, padding="same", name="b")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def _fit(scope):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 64)
    with scope():
        gated = krp.add_gates(_net())
        gated.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    gated.fit(
        x,
        y,
        batch_size=16,
        epochs=3,
        verbose=0,
        shuffle=False,
        callbacks=[krp.PruningCallback(target=0.5)],
    )
    return gated, x


def _replicas(variable):
    """The variable's value on each device (mirrored or replicated copies)."""
    value = variable.value
    components = getattr(value, "values", None)  # tf.distribute mirrored
    shards = getattr(value, "addressable_shards", None)  # a replicated jax.Array
    if components:
        values = components
    elif shards:
        values = [shard.data for shard in shards]
    else:
        values = [value]
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in values]


def _record(gated, x, out_dir, name):
    gates = [layer for layer in gated.layers if isinstance(layer, krp.ChannelGate)]
    budget = next(layer for layer in gated.layers if isinstance(layer, krp.PruningBudget))
    small = krp.strip_pruning(gated)
    paths = krp.export(small, os.path.join(out_dir, name), formats=("keras",))
    reloaded = keras.saving.load_model(paths["keras"], compile=False)
    return {
        "masks": [keras.ops.convert_to_numpy(g.keep_mask).tolist() for g in gates],
        "logits": [keras.ops.convert_to_numpy(g.logits).tolist() for g in gates],
        "flops": krp.count_flops(gated),
        "dense_flops": krp.count_flops(_net()),
        "stripped_flops": krp.count_flops(small),
        "strip_error": float(np.abs(np.asarray(small(x[:8])) - np.asarray(gated(x[:8]))).max()),
        "reload_error": float(np.abs(np.asarray(reloaded(x[:8])) - np.asarray(small(x[:8]))).max()),
        "replicas": {
            v.path: _replicas(v)
            for v in [gates[0].keep_mask, gates[0].scale, budget.step, budget.penalty_weight]
        },
    }


def main(out_dir):
    import contextlib

    result = {"backend": BACKEND}
    if BACKEND == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        one = tf.distribute.OneDeviceStrategy("/cpu:0").scope
        two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope
        result["devices"] = 2
        result["single"] = _record(*_fit(one), out_dir, "single")
        result["multi"] = _record(*_fit(two), out_dir, "multi")
    else:
        devices = keras.distribution.list_devices("cpu")
        result["devices"] = len(devices)
        result["single"] = _record(*_fit(contextlib.nullcontext), out_dir, "single")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        result["multi"] = _record(*_fit(contextlib.nullcontext), out_dir, "multi")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
