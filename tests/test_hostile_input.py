"""Bad inputs across the API and the command line, refused with a message.

Each row of the catalogue is a call, the `PruningError` subclass it must
raise (never a bare TypeError, ValueError or ZeroDivisionError from deep
inside) and a pattern its message must match: the argument's name and the
value received. Every message also says what to pass instead. Command-line
rows run `relaxprune` in this process: exit status 2 and one line on stderr.
"""

import re
import warnings

import model_zoo
import numpy as np
import pytest
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    UnsupportedModelError,
)
from keras_relaxprune_apps.cli import main

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def nets():
    dense = model_zoo.resnet_basic()  # input (16, 16, 3), first conv 'stem_conv'
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gated = krp.add_gates(dense)
        small = krp.strip_pruning(gated)
    return {"dense": dense, "gated": gated, "small": small}


def _callback(**kwargs):
    return lambda nets, tmp: krp.PruningCallback(**{"target": 0.5, **kwargs})


def _on(function, net="dense", *args, **kwargs):
    return lambda nets, tmp: function(nets[net], *args, **kwargs)


API_CASES = [
    # PruningCallback
    (
        "threshold scalar",
        _callback(threshold=0.1),
        ArgumentTypeError,
        r"threshold=0\.1 is a single number, not a pair.*threshold=\(0\.02, 0\.2\)",
    ),
    (
        "threshold reversed",
        _callback(threshold=(0.5, 0.1)),
        InvalidArgumentError,
        r"threshold=\(0\.5, 0\.1\) starts above where it ends",
    ),
    (
        "threshold above 1",
        _callback(threshold=(0.1, 1.5)),
        InvalidArgumentError,
        r"threshold=1\.5 is out of range",
    ),
    (
        "threshold of 3",
        _callback(threshold=(0.1, 0.2, 0.3)),
        InvalidArgumentError,
        r"threshold=\(0\.1, 0\.2, 0\.3\) has 3 values, not 2",
    ),
    (
        "target negative",
        _callback(target=-0.5),
        InvalidArgumentError,
        r"target=-0\.5 is out of range.*strictly between 0 and 1",
    ),
    (
        "target percent",
        _callback(target=90),
        InvalidArgumentError,
        r"target=90 is out of range.*0\.9 removes 90%",
    ),
    (
        "target nan",
        _callback(target=float("nan")),
        InvalidArgumentError,
        r"target=nan is not a finite number",
    ),
    ("target bool", _callback(target=True), ArgumentTypeError, r"target=True is a bool"),
    ("target str", _callback(target="0.5"), ArgumentTypeError, r"target='0\.5' is a str"),
    ("target None", _callback(target=None), ArgumentTypeError, r"target=None is a NoneType"),
    (
        "callback metric typo",
        _callback(metric="flop"),
        InvalidArgumentError,
        r"metric='flop' is not a known metric \(did you mean 'flops'\?\)",
    ),
    (
        "lambda_ negative",
        _callback(lambda_=-1.0),
        InvalidArgumentError,
        r"lambda_=-1\.0 is out of range.*>= 0",
    ),
    ("round_to 0", _callback(round_to=0), InvalidArgumentError, r"round_to=0 is out of range"),
    (
        "round_to 2.5",
        _callback(round_to=2.5),
        InvalidArgumentError,
        r"round_to=2\.5 is not a whole number",
    ),
    (
        "min_keep 1",
        _callback(min_keep=1.0),
        InvalidArgumentError,
        r"min_keep=1\.0 is out of range.*fraction in \[0, 1\)",
    ),
    (
        "begin after end",
        _callback(begin_step=100, end_step=10),
        InvalidArgumentError,
        r"end_step=10 is out of range.*begin_step=100",
    ),
    (
        "begin_step negative",
        _callback(begin_step=-5),
        InvalidArgumentError,
        r"begin_step=-5 is out of range",
    ),
    (
        "gate_prior unknown",
        _callback(gate_prior="bn-gamma"),
        InvalidArgumentError,
        r"gate_prior='bn-gamma'.*did you mean 'bn_gamma'",
    ),
    (
        "calibration_steps 0",
        _callback(calibration_steps=0),
        InvalidArgumentError,
        r"calibration_steps=0 is out of range",
    ),
    (
        "calibration_data str",
        _callback(calibration_data="train/"),
        ArgumentTypeError,
        r"calibration_data='train/' is a str",
    ),
    (
        "cost_exponent 2",
        _callback(cost_exponent=2),
        InvalidArgumentError,
        r"cost_exponent=2 is out of range.*\[0, 1\]",
    ),
    (
        "final_scale 0",
        _callback(final_scale=0),
        InvalidArgumentError,
        r"final_scale=0 is out of range",
    ),
    (
        "lambda_rate str",
        _callback(lambda_rate="fast"),
        ArgumentTypeError,
        r"lambda_rate='fast' is a str",
    ),
    ("verbose str", _callback(verbose="yes"), ArgumentTypeError, r"verbose='yes' is a str"),
    (
        "log_every_n_steps 0",
        _callback(log_every_n_steps=0),
        InvalidArgumentError,
        r"log_every_n_steps=0 is out of range",
    ),
    # add_gates
    (
        "initial_scale 0",
        _on(krp.add_gates, initial_scale=0),
        InvalidArgumentError,
        r"initial_scale=0 is out of range.*positive",
    ),
    (
        "initial_gate 1",
        _on(krp.add_gates, initial_gate=1.0),
        InvalidArgumentError,
        r"initial_gate=1\.0 is out of range.*strictly between 0 and 1",
    ),
    (
        "exclude unknown",
        _on(krp.add_gates, exclude=["no_such_layer"]),
        InvalidArgumentError,
        r"exclude names layers that model 'resnet_basic' does not have: \['no_such_layer'\]"
        r".*'stem_conv'",
    ),
    (
        "exclude typo",
        _on(krp.add_gates, exclude="stem_cnv"),
        InvalidArgumentError,
        r"\['stem_cnv'\] \(did you mean 'stem_cnv' -> 'stem_conv'\?\)",
    ),
    (
        "exclude layer object",
        lambda nets, tmp: krp.add_gates(
            nets["dense"], exclude=[nets["dense"].get_layer("stem_conv")]
        ),
        ArgumentTypeError,
        r"exclude holds .*Conv2D.*pass its name, 'stem_conv'",
    ),
    (
        "add_gates metric case",
        _on(krp.add_gates, metric="FLOPs"),
        InvalidArgumentError,
        r"metric='FLOPs' is not a known metric \(did you mean 'flops'\?\)",
    ),
    (
        "strict str",
        _on(krp.add_gates, strict="yes"),
        ArgumentTypeError,
        r"strict='yes' is a str; pass True or False",
    ),
    (
        "add_gates rank",
        _on(krp.add_gates, input_shape=(16, 16)),
        InvalidArgumentError,
        r"input_shape=\(16, 16\) has 2 dimensions.*takes 3",
    ),
    (
        "add_gates path",
        lambda nets, tmp: krp.add_gates("model.keras"),
        UnsupportedModelError,
        r"model='model\.keras' is a str, not a Keras model; pass the loaded model",
    ),
    (
        "add_gates layer",
        lambda nets, tmp: krp.add_gates(layers.Dense(3)),
        UnsupportedModelError,
        r"model=<Dense.*is a Dense, not a Keras model",
    ),
    (
        "add_gates None",
        lambda nets, tmp: krp.add_gates(None),
        UnsupportedModelError,
        r"model=None is a NoneType, not a Keras model",
    ),
    (
        "add_gates twice",
        _on(krp.add_gates, "gated"),
        InvalidArgumentError,
        r"model 'resnet_basic_gated' already has gates",
    ),
    # count_flops / count_params
    (
        "input_shape zero",
        _on(krp.count_flops, input_shape=(0, 32, 3)),
        InvalidArgumentError,
        r"input_shape=\(0, 32, 3\) has the size 0",
    ),
    (
        "input_shape batch",
        _on(krp.count_flops, input_shape=(1, 16, 16, 3)),
        InvalidArgumentError,
        r"input_shape=\(1, 16, 16, 3\) has 4 dimensions.*batch size out",
    ),
    (
        "input_shape channels",
        _on(krp.count_flops, input_shape=(16, 16, 4)),
        InvalidArgumentError,
        r"input_shape=\(16, 16, 4\) has 4 channels.*takes 3",
    ),
    (
        "input_shape str",
        _on(krp.count_flops, input_shape="16,16,3"),
        ArgumentTypeError,
        r"input_shape='16,16,3' is not a shape",
    ),
    (
        "input_shape two",
        _on(krp.count_flops, input_shape=[(16, 16, 3), (16, 16, 3)]),
        InvalidArgumentError,
        r"input_shape=.*gives 2 shape\(s\).*has 1 inputs",
    ),
    (
        "input_shape float",
        _on(krp.count_flops, input_shape=(16.5, 16, 3)),
        InvalidArgumentError,
        r"input_shape=\(16\.5, 16, 3\) has the size 16\.5",
    ),
    (
        "by_layer str",
        _on(krp.count_flops, by_layer="yes"),
        ArgumentTypeError,
        r"by_layer='yes' is a str",
    ),
    (
        "count_params array",
        lambda nets, tmp: krp.count_params(np.zeros(3)),
        UnsupportedModelError,
        r"count_params: model=array\(.*is a ndarray",
    ),
    # strip_pruning
    (
        "strip threshold 2",
        _on(krp.strip_pruning, "gated", threshold=2),
        InvalidArgumentError,
        r"strip_pruning: threshold=2 is out of range.*\[0, 1\)",
    ),
    (
        "strip threshold str",
        _on(krp.strip_pruning, "gated", threshold="0.1"),
        ArgumentTypeError,
        r"threshold='0\.1' is a str",
    ),
    (
        "strip path",
        lambda nets, tmp: krp.strip_pruning("gated.keras"),
        UnsupportedModelError,
        r"strip_pruning: model='gated\.keras' is a str",
    ),
    # export: refused before anything is written
    (
        "export format",
        lambda nets, tmp: krp.export(nets["small"], tmp / "out", formats=("keras", "onnx")),
        InvalidArgumentError,
        r"formats=\('keras', 'onnx'\) must name some of.*unknown: \['onnx'\]",
    ),
    (
        "export formats joined",
        lambda nets, tmp: krp.export(nets["small"], tmp / "out", formats="keras,tflite"),
        InvalidArgumentError,
        r"formats=\('keras,tflite',\) must name some of",
    ),
    (
        "export quantization",
        lambda nets, tmp: krp.export(nets["small"], tmp / "out", tflite_quantization="int4"),
        InvalidArgumentError,
        r"tflite_quantization='int4' is not a known.*'float16'",
    ),
    (
        "export path None",
        lambda nets, tmp: krp.export(nets["small"], None),
        ArgumentTypeError,
        r"export: path=None is a NoneType, not a path",
    ),
    (
        "export pruned_from",
        lambda nets, tmp: krp.export(nets["small"], tmp / "out", pruned_from="gated.keras"),
        UnsupportedModelError,
        r"pruned_from='gated\.keras' is a str",
    ),
]


@pytest.mark.parametrize(
    "call, error, pattern", [pytest.param(*case[1:], id=case[0]) for case in API_CASES]
)
def test_api_refuses(nets, tmp_path, call, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        call(nets, tmp_path)
    assert isinstance(info.value, krp.PruningError)
    assert re.search(r"\bpass\b|\buse\b", str(info.value), re.IGNORECASE), (
        "the message says what to pass instead"
    )
    assert not (tmp_path / "out").exists()  # refused before any work


def test_numpy_scalars_and_lists_are_accepted(nets):
    callback = krp.PruningCallback(
        target=np.float32(0.5),
        begin_step=np.int64(0),
        end_step=np.int32(10),
        round_to=np.int64(8),
        threshold=np.array([0.0, 0.0]),
        lambda_=np.float64(1),
        verbose=True,
        calibration_steps=None,
    )
    assert (callback.target, callback.round_to, callback.threshold) == (0.5, 8, (0.0, 0.0))
    assert isinstance(callback.target, float) and isinstance(callback.round_to, int)
    dense = nets["dense"]
    at_128 = krp.count_flops(dense, input_shape=[128, 128, 3])
    assert at_128 == krp.count_flops(dense, input_shape=(128, 128, 3)) > krp.count_flops(dense)
    assert krp.count_flops(dense, input_shape=[(16, 16, 3)]) == krp.count_flops(dense)
    assert krp.strip_pruning(nets["gated"], threshold=np.float32(0.05)) is not None


def test_exclude_accepts_real_names_and_predicates(nets):
    dense = nets["dense"]
    for exclude in ("stem_conv", ["stem_conv"], {"stem_conv"}, lambda layer: False):
        krp.add_gates(dense, exclude=exclude)


# Command line, in this process (tests/test_cli.py runs it as a subprocess).
CLI_CASES = [
    (
        "input-shape rank",
        ["count", "{dense}", "--input-shape", "32", "32"],
        r"--input-shape=\(32, 32\) has 2 dimensions.*pass e\.g\. 16 16 3",
    ),
    (
        "input-shape zero",
        ["count", "{dense}", "--input-shape", "0", "16", "3"],
        r"--input-shape=\(0, 16, 3\) has the size 0",
    ),
    (
        "input-shape word",
        ["count", "{dense}", "--input-shape", "32", "x"],
        r"argument --input-shape: invalid int value: 'x'",
    ),
    ("empty .keras", ["count", "{empty}"], r"MODEL '.*empty\.keras' is empty \(0 bytes\)"),
    (
        "garbage .keras",
        ["count", "{garbage}"],
        r"MODEL '.*garbage\.keras' is not a \.keras file: a \.keras file is a zip archive",
    ),
    (
        "truncated .keras",
        ["count", "{truncated}"],
        r"MODEL '.*truncated\.keras' is truncated or corrupt",
    ),
    ("garbage .h5", ["count", "{garbage_h5}"], r"MODEL '.*garbage\.h5' is not an HDF5 file"),
    ("missing file", ["count", "{tmp}/missing.keras"], r"MODEL '.*missing\.keras' does not exist"),
    ("directory", ["count", "{tmp}"], r"MODEL '.*' is a directory; pass a \.keras file"),
    ("wrong extension", ["count", "{text}"], r"MODEL '.*model\.txt' has the extension '\.txt'"),
    (
        "strip dense",
        ["strip", "{dense}", "{tmp}/out"],
        r"MODEL '.*dense\.keras' has no ChannelGate layer.*nothing to strip",
    ),
    (
        "strip format",
        ["strip", "{gated}", "{tmp}/out", "--formats", "keras", "onnx"],
        r"argument --formats: invalid choice: 'onnx'",
    ),
    (
        "strip threshold",
        ["strip", "{gated}", "{tmp}/out", "--threshold", "2"],
        r"strip: --threshold=2\.0 is out of range.*\[0, 1\)",
    ),
    (
        "strip threshold nan",
        ["strip", "{gated}", "{tmp}/out", "--threshold", "nan"],
        r"--threshold=nan is not a finite number",
    ),
    ("strip into a file", ["strip", "{gated}", "{text}"], r"OUT_DIR '.*model\.txt' is a file"),
    (
        "report dense garbage",
        ["report", "{gated}", "--dense", "{garbage}"],
        r"--dense '.*garbage\.keras' is not a \.keras file",
    ),
    ("unknown command", ["prune-everything"], r"argument COMMAND: invalid choice"),
    ("missing model", ["count"], r"the following arguments are required: MODEL"),
]


@pytest.fixture(scope="module")
def files(nets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    nets["dense"].save(tmp / "dense.keras")
    nets["gated"].save(tmp / "gated.keras")
    data = (tmp / "dense.keras").read_bytes()
    (tmp / "truncated.keras").write_bytes(data[: len(data) // 2])
    (tmp / "empty.keras").write_bytes(b"")
    (tmp / "garbage.keras").write_bytes(b"not a model\n")
    (tmp / "garbage.h5").write_bytes(b"not a model\n")
    (tmp / "model.txt").write_text("a model\n")
    names = ("dense", "gated", "truncated", "empty", "garbage")
    paths = {name: str(tmp / f"{name}.keras") for name in names}
    return dict(
        paths, garbage_h5=str(tmp / "garbage.h5"), text=str(tmp / "model.txt"), tmp=str(tmp)
    )


@pytest.mark.parametrize(
    "argv, pattern", [pytest.param(*case[1:], id=case[0]) for case in CLI_CASES]
)
def test_command_line_refuses(files, capsys, argv, pattern):
    status = main([arg.format(**files) for arg in argv])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert status == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("relaxprune: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err


def test_command_line_accepts_another_input_size(files, capsys):
    assert main(["count", files["dense"], "--input-shape", "128", "128", "3"]) == 0
    assert '"flops"' in capsys.readouterr().out


def test_catalogue_size():
    assert len(API_CASES) + len(CLI_CASES) >= 25


# Warnings
def _lambda_net():
    return model_zoo.lambda_barrier_net(name="lambda_net")


def test_barrier_warning_is_given_once_per_layer():
    """add_gates warns; counting, reporting, the callback and stripping,
    which analyse the same graph again, do not repeat it."""
    model = _lambda_net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gated = krp.add_gates(model)
        krp.count_flops(model)
        krp.count_flops(gated)
        krp.count_flops(gated, input_shape=(16, 16, 3))
        krp.count_params(gated)
        krp.pruning_report(model, gated)
        krp.PruningCallback(target=0.3).set_model(gated)
        krp.strip_pruning(gated)
    about_reverse = [w for w in caught if "'reverse' (Lambda)" in str(w.message)]
    assert len(about_reverse) == 1
    assert about_reverse[0].filename == __file__  # points at the add_gates call


def test_strip_pruning_of_a_model_without_gates_warns_and_copies(nets):
    dense = nets["dense"]
    with pytest.warns(
        UserWarning,
        match=r"'resnet_basic' has no ChannelGate, so nothing "
        r"was pruned",
    ):
        copy = krp.strip_pruning(dense)
    assert copy is not dense and copy.count_params() == dense.count_params()
