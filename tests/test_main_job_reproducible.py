"""The main job (examples/prune_cifar10.py) run twice prints the same table.

The job compiles its fits with XLA and leaves TensorFlow's op determinism
off (`--deterministic-ops` turns it on, and XLA off): seeds alone make the
XLA run repeat bit for bit on one CPU machine, which this test checks.
"""

from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import load_script

import keras_relaxprune as krp
from keras_relaxprune_apps import cifar_resnet

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COMPARED = (
    "dense_accuracy",
    "pruned_accuracy",
    "pruned_accuracy_before_fine_tune",
    "dense_flops",
    "pruned_flops",
    "dense_params",
    "pruned_params",
)

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the main job exports with TensorFlow"
)


@pytest.fixture(scope="module")
def untrained_dense_file(cifar_available, tmp_path_factory):
    """A ResNet-8 (width 8) as built, seeded: the job's start, not its quality."""
    keras.utils.set_random_seed(0)
    model = cifar_resnet(depth=8, width=8, include_preprocessing=True, classifier_activation=None)
    path = tmp_path_factory.mktemp("dense") / "resnet8_dense.keras"
    model.save(path)
    return path


def _keep_masks(model):
    return [
        keras.ops.convert_to_numpy(layer.keep_mask)
        for layer in model.layers
        if isinstance(layer, krp.ChannelGate)
    ]


@needs_tensorflow
@pytest.mark.slow
def test_main_job_twice_prints_the_same_table(untrained_dense_file, tmp_path, monkeypatch, capsys):
    """Two runs of the main job's code path on 512 images: the same masks,
    accuracies, FLOPs, params and weights, so the same printed table."""
    module = load_script(EXAMPLES / "prune_cifar10.py")
    masks, op_determinism = [], []
    prune_and_strip = module.prune_and_strip

    def recording(*args, **kwargs):
        # No public TensorFlow API reads the setting (job_steps uses the same).
        from tensorflow.python.framework import config

        op_determinism.append(bool(config.is_op_determinism_enabled()))
        pruned = prune_and_strip(*args, **kwargs)
        masks.append(_keep_masks(pruned.gated))
        return pruned

    monkeypatch.setattr(module, "prune_and_strip", recording)
    runs = []
    for run in ("first", "second"):
        summary = module.main(
            [
                "--dense",
                str(untrained_dense_file),
                "--train-limit",
                "512",
                "--test-limit",
                "200",
                "--batch-size",
                "64",
                "--prune-epochs",
                "2",
                "--run-name",
                "twice",
                "--latency-runs",
                "0",
                "--verbose",
                "0",
                "--checkpoint-dir",
                str(tmp_path / run / "checkpoints"),
                "--run-dir",
                str(tmp_path / run / "runs"),
                "--saved-model-dir",
                str(tmp_path / run / "saved_models"),
            ]
        )
        table = capsys.readouterr().out.split("summary:")[0]
        runs.append((summary, table))
    (first, first_table), (second, second_table) = runs
    assert {key: first[key] for key in COMPARED} == {key: second[key] for key in COMPARED}
    assert op_determinism == [False, False]  # XLA on: Keras turns it off under determinism
    assert len(masks) == 2 and len(masks[0]) == len(masks[1]) > 0
    for one, other in zip(*masks):
        np.testing.assert_array_equal(one, other)
    assert 0.0 < first["remaining_flops"] < 1.0
    weights = [
        keras.saving.load_model(summary["exported"]["keras"]).get_weights()
        for summary in (first, second)
    ]
    for one, other in zip(*weights):
        np.testing.assert_array_equal(one, other)
    assert "FLOPs" in first_table and first_table == second_table
