"""Latency of several models measured side by side: interleaved turns, TFLite and XLA."""

import math
import os
import statistics
import time

import keras
import numpy as np

import keras_relaxprune as krp


def say(*parts):
    print(*parts, flush=True)  # the log is read while a long run goes on


def interleaved(runners, runs, rounds, label):
    """Seconds per call of each runner: `{name: {"median": s, "p10": s}}`.

    The runners take turns, `runs / rounds` calls each per round, and the
    order flips every round. On the shared 2-core machine a call runs at
    one of two speeds (whether another job holds a core), switching every
    few seconds; short turns give every model the same mix of both. The
    10th percentile estimates the speed of the quiet machine.
    """
    times = {name: [] for name in runners}
    rounds = max(1, min(rounds, runs))
    per_round = max(1, math.ceil(runs / rounds))
    names = list(runners)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            for _ in range(per_round):
                start = time.perf_counter()
                runners[name]()
                times[name].append(time.perf_counter() - start)
        if (round_index + 1) % max(1, rounds // 5) == 0 or round_index + 1 == rounds:
            medians = ", ".join(f"{n} {1000 * statistics.median(t):.1f}" for n, t in times.items())
            say(f"  {label} after round {round_index + 1}/{rounds}, medians (ms): {medians}")
    return {
        name: {"median": statistics.median(t), "p10": float(np.percentile(t, 10))}
        for name, t in times.items()
    }


def tflite_runners(models, sample, workdir):
    """name -> a call running the model's `.tflite` once at batch 1."""
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for index, (name, model) in enumerate(models.items()):
        start = time.perf_counter()
        path = krp.export(model, os.path.join(workdir, f"m{index}"), formats=("tflite",))["tflite"]
        interpreter = Interpreter(model_path=path, num_threads=2)
        tensor = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(tensor, sample.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(tensor, sample)
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        # A wrong conversion would make every latency meaningless.
        reference = keras.ops.convert_to_numpy(model(sample, training=False))
        say(
            f"  tflite {name}: {os.path.getsize(path) / 2**20:.1f} MiB, vs Keras "
            f"max abs diff {np.max(np.abs(output - reference)):.1e} "
            f"({time.perf_counter() - start:.0f} s)"
        )
        for _ in range(2):  # warm-up: first invokes allocate and pack weights
            interpreter.invoke()
        runners[name] = interpreter.invoke
    return runners


def xla_runners(models, batch):
    """name -> a call of `predict_on_batch` compiled with XLA (compiled here)."""
    batch = keras.ops.convert_to_tensor(batch)
    runners = {}
    for name, model in models.items():
        model.compile(jit_compile=True)
        start = time.perf_counter()
        model.predict_on_batch(batch)  # compiles
        compiled = time.perf_counter() - start
        model.predict_on_batch(batch)
        say(f"  xla {name}: compiled in {compiled:.0f} s")
        # predict_on_batch returns numpy, so each call waits for the result.
        runners[name] = lambda m=model: m.predict_on_batch(batch)
    return runners
