"""Export of a pruned (plain dense) model to `.keras`, SavedModel and TFLite.

`export(model, "saved_models/resnet56_p90")` writes one directory:

```
saved_models/resnet56_p90/
    model.keras     # keras.saving.load_model, any backend
    saved_model/    # TF Serving; signatures "serving_default" and "serve"
    model.tflite    # float32; model_{float16,dynamic,int8}.tflite if quantised
```

With `pruned_from=gated` (the model it was stripped from, or the dense
original), the pruning report is written beside them: `pruning_report.json`,
`pruning_report.md`, `channels_kept.png` and `cost_per_stage.png` (these
need matplotlib: `pip install keras-relaxprune[tensorboard]`).

SavedModel and TFLite need TensorFlow (`pip install keras-relaxprune[tf]`) and
the TensorFlow backend: under another one `export` writes `model.keras`, then
raises `RuntimeError`; reload that file under `KERAS_BACKEND=tensorflow` and
export again. Unknown spatial sizes (`Input((None, None, 3))`) are kept in
every format; `run_tflite` resizes the interpreter to each batch.
"""

import os
import shutil
import tempfile

import keras
import numpy as np

from keras_relaxprune import arguments
from keras_relaxprune.errors import ArgumentTypeError, InvalidArgumentError, PruningError
from keras_relaxprune.layers.channel_gate import ChannelGate
from keras_relaxprune.layers.pruning_budget import PruningBudget

FORMATS = ("keras", "saved_model", "tflite")
QUANTIZATIONS = (None, "float16", "dynamic", "int8")


def export(
    model,
    path,
    formats=FORMATS,
    tflite_quantization=None,
    representative_data=None,
    pruned_from=None,
):
    """Writes a pruned model as `.keras`, TF SavedModel and/or TFLite files.

    Args:
        model: a plain Keras 3 model, e.g. the output of `krp.strip_pruning`.
            It must contain no `ChannelGate` or `PruningBudget` layer.
        path: directory to write into (created if needed); the files are
            `model.keras`, `saved_model/` and `model[_<quantization>].tflite`.
        formats: names among `"keras"`, `"saved_model"` and `"tflite"` (a
            single name may be passed as a string). Defaults to all three.
        tflite_quantization: `None` (float32), `"float16"` (float16 weights),
            `"dynamic"` (int8 weights, float activations) or `"int8"` (int8
            weights and activations calibrated on `representative_data`; the
            model's inputs and outputs stay float32).
        representative_data: iterable of input batches (numpy arrays, or
            dicts keyed by input name) used only by `"int8"`; a few dozen
            samples from the training set are enough.
        pruned_from: the gated model `model` was stripped from (or the
            dense original). When given, the pruning report comparing it
            with `model` is written too, as JSON, Markdown and two PNG
            charts (`keras_relaxprune.reporting.charts.write_report_files`). Defaults to `None`.

    Returns:
        A dict mapping each exported format to the path written (str);
        with `pruned_from`, also `"report_json"`, `"report_markdown"`,
        `"channels_chart"` and `"cost_chart"`.

    Example:

    ```python
    paths = export(small, "saved_models/resnet56_p90", tflite_quantization="float16",
                   pruned_from=gated)
    y = run_tflite(paths["tflite"], x_test[:8])   # .../model_float16.tflite
    ```
    """
    formats = _check_arguments(
        model, path, formats, tflite_quantization, representative_data, pruned_from
    )
    os.makedirs(path, exist_ok=True)
    if formats != ("keras",) and keras.backend.backend() != "tensorflow":
        # SavedModel/TFLite need TensorFlow: write the .keras file (whole),
        # then say how to get the rest.
        written = export(model, path, ("keras",)) if "keras" in formats else {}
        _tensorflow_for_export(written.get("keras"))
    # Everything is written into a staging folder first and moved into
    # place only when all of it succeeded: a crash or a failing format
    # never leaves a half-written export, nor destroys an earlier good one.
    staging = tempfile.mkdtemp(dir=path, prefix=".export-")
    try:
        staged = _write_all(
            model, staging, formats, tflite_quantization, representative_data, pruned_from
        )
        return {name: _move_into_place(item, path) for name, item in staged.items()}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_all(model, path, formats, tflite_quantization, representative_data, pruned_from):
    written = {}
    if "keras" in formats:
        written["keras"] = os.path.join(path, "model.keras")
        model.save(written["keras"])
    if formats != ("keras",):
        tf = _tensorflow_for_export(written.get("keras"))
        graph_model = _float32_copy(model)
        if "saved_model" in formats:
            written["saved_model"] = os.path.join(path, "saved_model")
            _save_saved_model(graph_model, written["saved_model"])
        if "tflite" in formats:
            written["tflite"] = _write_tflite(
                tf,
                graph_model,
                path,
                written.get("saved_model"),
                tflite_quantization,
                representative_data,
            )
    result = {name: written[name] for name in formats}
    if pruned_from is not None:
        result.update(_write_report(pruned_from, model, path))
    return result


def _move_into_place(staged, path):
    """Moves one staged file or folder to `path`, replacing an older one."""
    final = os.path.join(path, os.path.basename(staged))
    if os.path.isdir(final) and not os.path.islink(final):
        old = tempfile.mkdtemp(dir=path, prefix=".replaced-")
        os.replace(final, os.path.join(old, "previous"))
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)
    return final


def _float32_copy(model):
    """`model` itself, or a float32 copy of a mixed-precision model: the
    SavedModel and TFLite converters need one compute dtype (a float32
    TFLite by default; pass `tflite_quantization="float16"` for float16)."""
    if all(
        layer.dtype_policy.name == "float32"
        for layer in _all_layers(model)
        if hasattr(layer, "dtype_policy")
    ):
        return model

    def float32_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=float32_layer)
    copy.set_weights([np.asarray(w, "float32") for w in model.get_weights()])
    return copy


def run_tflite(tflite_path, inputs):
    """Runs a `.tflite` file on one batch in the LiteRT interpreter.

    Args:
        tflite_path: path of a file written by `export`.
        inputs: a numpy batch for a single-input model, or a dict mapping
            input names to batches. Any batch size (and spatial size, for
            models built with `None` dimensions) is accepted.

    Returns:
        The output as a numpy array, or a list of arrays (model output order)
        for a multi-output model.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # tf.lite.Interpreter is deprecated; last resort only.
        Interpreter = _import_tensorflow().lite.Interpreter
    # The signature runner resizes inputs to the batch shape before invoking,
    # and names its outputs, which fixes their order (output_0, output_1, ...).
    runner = Interpreter(model_path=str(tflite_path)).get_signature_runner()
    dtypes = {k: d["dtype"] for k, d in runner.get_input_details().items()}
    outputs = runner(**_feeds(dtypes, inputs))
    return _ordered(outputs)


def load_saved_model_fn(saved_model_dir):
    """Loads a SavedModel and returns a numpy function of its serving signature.

    Args:
        saved_model_dir: the `saved_model/` directory written by `export`.

    Returns:
        A callable taking a numpy batch (or a dict keyed by input name) and
        returning the output of `serving_default` as a numpy array (a list of
        arrays for a multi-output model).
    """
    tf = _import_tensorflow()
    loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures["serving_default"]
    specs = signature.structured_input_signature[1]
    dtypes = {k: spec.dtype.as_numpy_dtype for k, spec in specs.items()}

    def call(inputs):
        feeds = _feeds(dtypes, inputs)
        outputs = signature(**{k: tf.constant(v) for k, v in feeds.items()})
        return _ordered({k: v.numpy() for k, v in outputs.items()})

    call.loaded = loaded  # keeps the variables alive as long as `call`
    return call


def _check_arguments(model, path, formats, quantization, representative_data, pruned_from):
    arguments.model("export", "model", model)
    arguments.path("export", "path", path)
    if pruned_from is not None:
        arguments.model("export", "pruned_from", pruned_from)
    if isinstance(formats, str):
        formats = (formats,)
    names = ", ".join(map(repr, FORMATS))
    if not isinstance(formats, (list, tuple)) or not all(isinstance(name, str) for name in formats):
        raise ArgumentTypeError(
            f"export: formats={arguments.shown(formats)} is not a list of format "
            f"names; pass a tuple of names among {names}."
        )
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise InvalidArgumentError(
            f"export: formats={arguments.shown(formats)} must name some of {names}; "
            f"unknown: {unknown}. Pass one name per item, e.g. formats=('keras', 'tflite')."
        )
    formats = tuple(dict.fromkeys(formats))
    arguments.choice("export", "tflite_quantization", quantization, QUANTIZATIONS)
    if (quantization == "int8") != (representative_data is not None):
        raise InvalidArgumentError(
            "export: representative_data is required by, and only used with, "
            "tflite_quantization='int8'; pass a few dozen training inputs with it, "
            "or leave it out."
        )
    for layer in _all_layers(model):
        if isinstance(layer, (ChannelGate, PruningBudget)):
            raise PruningError(
                f"export: layer '{layer.name}' ({type(layer).__name__}) is a "
                "pruning layer; call `krp.strip_pruning(model)` first and "
                "export the model it returns."
            )
    return formats


def _write_report(pruned_from, model, path):
    from keras_relaxprune.reporting.charts import write_report_files
    from keras_relaxprune.reporting.report import pruning_report

    return write_report_files(pruning_report(pruned_from, model), pruned_from, path)


def _all_layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _all_layers(layer)  # nested functional/Sequential models


def _tensorflow_for_export(keras_file):
    # model.export under JAX needs jax2tf and rarely gives a servable graph;
    # a .keras file reloaded under TensorFlow always does.
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "export: SavedModel and TFLite need the TensorFlow backend, not "
            f"{keras.backend.backend()!r}. Load {keras_file or 'a .keras save'} "
            "with keras.saving.load_model in a process started with "
            "KERAS_BACKEND=tensorflow and call export again."
        )
    return _import_tensorflow()


def _import_tensorflow():
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError(
            "SavedModel/TFLite export needs TensorFlow: pip install keras-relaxprune[tf]"
        ) from err
    return tf


def _save_saved_model(model, directory):
    # Stale variables/ from an earlier export would mix with the new ones.
    shutil.rmtree(directory, ignore_errors=True)
    model.export(directory, format="tf_saved_model", verbose=False)


def _write_tflite(tf, model, path, saved_model_dir, quantization, data):
    name = f"model_{quantization}" if quantization else "model"
    target = os.path.join(path, name + ".tflite")
    # The converter reads a SavedModel; without one requested, use a scratch copy.
    with tempfile.TemporaryDirectory() as scratch:
        if saved_model_dir is None:
            saved_model_dir = os.path.join(scratch, "saved_model")
            _save_saved_model(model, saved_model_dir)
        flat = _convert_tflite(tf, saved_model_dir, quantization, data)
    with open(target, "wb") as f:
        f.write(flat)
    return target


def _convert_tflite(tf, saved_model_dir, quantization, representative_data):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["serving_default"]
    )
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":

        def batches():
            for batch in representative_data:
                if isinstance(batch, dict):
                    yield {k: np.asarray(v, "float32") for k, v in batch.items()}
                else:
                    yield [np.asarray(batch, "float32")]

        converter.representative_dataset = batches
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _feeds(dtypes, inputs):
    """Input name -> batch cast to the dtype the exported graph expects."""
    if not isinstance(inputs, dict):
        if len(dtypes) != 1:
            raise ValueError(
                f"The model has inputs {sorted(dtypes)}; pass a dict keyed by input name."
            )
        inputs = {next(iter(dtypes)): inputs}
    return {k: np.asarray(v, dtypes[k]) for k, v in inputs.items()}


def _ordered(outputs):
    # Keras export names outputs output_<i>; sort numerically, not as text.
    keys = sorted(outputs, key=lambda k: (len(k), k))
    values = [np.asarray(outputs[k]) for k in keys]
    return values[0] if len(values) == 1 else values
