"""Latency of an exported `.tflite` model in the LiteRT interpreter."""

import statistics
import time

import numpy as np


def tflite_latency(tflite_path, sample, runs=100, warmup=5, num_threads=2):
    """Median seconds of one LiteRT `invoke` on `sample`.

    Args:
        tflite_path: a `.tflite` file written by `export`.
        sample: one input batch (numpy), e.g. shape `(1, 32, 32, 3)`.
        runs: timed invocations. Defaults to 100.
        warmup: untimed invocations first (allocation, weight packing).
            Defaults to 5.
        num_threads: interpreter threads. Defaults to 2.

    Returns:
        A dict with `median_s` and `p10_s` (10th percentile: the quiet-machine
        speed on a shared CPU).

    Example:

    ```python
    paths = krp.export(small, "saved_models/small", formats=("tflite",))
    tflite_latency(paths["tflite"], x_test[:1])["median_s"]
    ```
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=num_threads)
    sample = np.asarray(sample)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], sample.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], sample.astype(detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "p10_s": float(np.percentile(times, 10))}
