"""Channel groups found by `analyze` (and the gates `add_gates` puts on them)
on hand-built graphs."""

import keras
import model_zoo
import pytest
from helpers import gate_inputs, gates
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


def _gate_for(gated, layer_name):
    hits = [g for g, inputs in gate_inputs(gated).items() if layer_name in inputs]
    assert len(hits) <= 1
    return hits[0] if hits else None


def test_resnet_basic_shares_one_gate_per_residual_stream():
    gated = krp.add_gates(model_zoo.resnet_basic())
    stream1 = _gate_for(gated, "stem_bn")
    assert stream1 == _gate_for(gated, "stage1_block1_2_bn")
    stream2 = _gate_for(gated, "stage2_block1_2_bn")
    assert stream2 == _gate_for(gated, "stage2_block1_proj_bn")
    inner = {_gate_for(gated, f"stage{s}_block1_1_bn") for s in (1, 2, 3)}
    assert len(inner) == 3 and None not in inner
    assert len({stream1, stream2, *inner}) == 5
    assert len(gates(gated)) == 6  # 3 streams + 3 inner groups
    assert _gate_for(gated, "classifier") is None


def test_resnet_bottleneck_groups():
    gated = krp.add_gates(model_zoo.resnet_bottleneck())
    for stage in (1, 2, 3):
        name = f"stage{stage}_block1"
        assert _gate_for(gated, f"{name}_3_bn") == _gate_for(gated, f"{name}_proj_bn")
        assert _gate_for(gated, f"{name}_1_bn") != _gate_for(gated, f"{name}_2_bn")
    # The stem feeds a conv and a projection, never an Add: its own group.
    assert _gate_for(gated, "stem_bn") not in {_gate_for(gated, "stage1_block1_3_bn"), None}
    assert len(gates(gated)) == 10


def test_unet_concat_keeps_groups_apart_and_gates_transposed_convs():
    model = model_zoo.unet()
    gated = krp.add_gates(model)
    convs = [l.name for l in model.layers if isinstance(l, (layers.Conv2D, layers.Conv2DTranspose))]
    assert len(gates(gated)) == len(convs) - 1  # all but the output conv
    assert _gate_for(gated, "logits") is None
    assert _gate_for(gated, "up0_transpose") is not None
    graph = analyze(model)
    concat = next(i for i, n in enumerate(graph.flat.nodes) if n.name == "up0_concat")
    (out_map,) = graph.out_maps(concat)
    groups = [graph.groups.find(s.group) for s in out_map]
    assert len(out_map) == 2 and groups[0] != groups[1]
    assert [s.length for s in out_map] == [8, 8]


def test_mobilenet_v2_depthwise_ties_expansion_and_stream_is_shared():
    gated = krp.add_gates(model_zoo.mobilenet_v2_block_net())
    stream = _gate_for(gated, "stem_bn")
    assert stream == _gate_for(gated, "ir0_project_bn") == _gate_for(gated, "ir1_project_bn")
    for index in (0, 1):
        expand = _gate_for(gated, f"ir{index}_expand_bn")
        assert expand == _gate_for(gated, f"ir{index}_dw_bn") != stream
    assert len(gates(gated)) == 3


def test_densenet_concat_chain():
    model = model_zoo.densenet_chain()
    gated = krp.add_gates(model)
    assert len(gates(gated)) == 4  # stem + three growth convs
    assert _gate_for(gated, "stem") == _gate_for(gated, "dense0_bn")
    graph = analyze(model)
    last = next(i for i, n in enumerate(graph.flat.nodes) if n.name == "dense2_concat")
    assert [s.length for s in graph.out_maps(last)[0]] == [8, 4, 4, 4]


def test_mlp_head_gates_hidden_units_not_logits():
    gated = krp.add_gates(model_zoo.mlp_head())
    assert sorted(sum(gate_inputs(gated).values(), [])) == ["conv", "fc1", "fc2"]


def test_conv1d():
    gated = krp.add_gates(model_zoo.conv1d_net())
    assert sorted(sum(gate_inputs(gated).values(), [])) == ["bn_a", "conv_b"]


def test_nested_functional_model_is_inlined():
    inner_in = keras.Input((8, 8, 8))
    y = layers.Conv2D(8, 3, padding="same", name="inner_conv")(inner_in)
    y = layers.BatchNormalization(name="inner_bn")(y)
    backbone = keras.Model(inner_in, layers.ReLU()(y), name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="outer_conv")(inputs)
    x = layers.Add(name="add")([x, backbone(x)])
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    gated = krp.add_gates(keras.Model(inputs, outputs))
    # The Add ties a layer outside the sub-model to one inside it.
    assert gate_inputs(gated) == {"outer_conv_gate": ["backbone_inner_bn", "outer_conv"]}


def test_split_slice_and_concat_ops_map_channels_exactly():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, padding="same", name="wide")(inputs)
    a, b = keras.ops.split(x, [4], axis=-1)
    y = keras.ops.concatenate([b, a], axis=-1)[..., 2:10]
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(y))
    graph = analyze(keras.Model(inputs, outputs))
    head = next(i for i, n in enumerate(graph.flat.nodes) if n.name == "head")
    (segment,) = graph.in_maps(head)[0]
    assert (segment.start, segment.stop) == (6, 14)


def test_partial_channel_tie_is_protected_not_guessed():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, padding="same", name="wide")(inputs)
    y = layers.Conv2D(8, 3, padding="same", name="narrow")(inputs)
    z = layers.Add(name="add")([x[..., :8], y])
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(z))
    graph = analyze(keras.Model(inputs, outputs))
    assert graph.prunable_groups() == []
    reasons = " ".join(sum(graph.groups.reasons.values(), []))
    assert "'add' ties channels that do not line up" in reasons


def _lambda_model():
    return model_zoo.lambda_barrier_net()


def test_unknown_layer_is_a_barrier_with_a_warning():
    with pytest.warns(UserWarning, match=r"'reverse' \(Lambda\)"):
        gated = krp.add_gates(_lambda_model())
    assert sorted(sum(gate_inputs(gated).values(), [])) == ["after"]


def test_strict_mode_refuses_unknown_layer_and_names_it():
    with pytest.raises(krp.UnsupportedLayerError, match=r"'reverse' \(Lambda\).*exclude"):
        krp.add_gates(_lambda_model(), strict=True)


def test_single_channel_residual_stream_stays_one_group():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(1, 3, padding="same", name="a")(inputs)
    y = layers.Conv2D(1, 3, padding="same", name="b")(x)
    z = layers.Add(name="add")([x, y])
    outputs = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(z))
    graph = analyze(keras.Model(inputs, outputs))
    assert not graph.barriers
    assert len(graph.prunable_groups()) == 1
