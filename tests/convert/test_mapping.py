"""Name-mapping tables: generated backbone tables, every rule kind, and every failure."""

import functools
import gzip
import json
import os

import keras
import numpy as np
import pytest

from tfvssl.convert import (
    Rule,
    backbone_table,
    keras_to_torch_state_dict,
    load_torch_state_dict,
    torch_module_name,
)
from tfvssl.models import layers
from tfvssl.models.backbones import build_backbone

DATA = os.path.join(os.path.dirname(__file__), "data")


@functools.cache
def _reference_shapes():
    """{backbone: {PyTorch tensor name: shape}} of the authors' models (make_state_dict_shapes.py)."""
    with gzip.open(os.path.join(DATA, "state_dict_shapes.json.gz"), "rt") as file:
        return json.load(file)


@functools.cache
def _backbone(name):
    keras.utils.set_random_seed(1)
    input_shape = (None, None, 30) if name == "resnet18_2d" else (None, None, None, 3)
    return build_backbone(name, input_shape)


@pytest.mark.parametrize(
    "name", ["c3d", "r3d", "r3d18", "r21d", "r21d18", "s3dg", "r2d3d18", "r2d3d34", "resnet18_2d"]
)
def test_backbone_table_names_and_shapes_match_pytorch(name):
    model = _backbone(name)
    exported = keras_to_torch_state_dict(model, backbone_table(model))
    ours = {key: list(value.shape) for key, value in exported.items()}
    reference = {
        key: shape
        for key, shape in _reference_shapes()[name].items()
        if not key.endswith("num_batches_tracked")
    }
    assert ours == reference


def test_torch_module_names_keep_pytorch_underscores():
    assert torch_module_name("layer1_0_downsample_0") == "layer1.0.downsample.0"
    assert (
        torch_module_name("conv2_blocks_0_conv1_temporal_spatial_conv")
        == "conv2.blocks.0.conv1.temporal_spatial_conv"
    )
    assert (
        torch_module_name("conv3_block1_downsampleconv_spatial_conv")
        == "conv3.block1.downsampleconv.spatial_conv"
    )
    assert torch_module_name("mixed_4b_conv_b1_b_conv2") == "mixed_4b.conv_b1_b.conv2"
    assert torch_module_name("mixed_5c_gating_b3") == "mixed_5c.gating_b3"


def test_backbone_table_prefixes_and_untracked_batchnorm():
    table = backbone_table(_backbone("r2d3d18"), "backbone.", "encoder/", running_stats=False)
    assert table[0] == Rule("backbone.conv1", "encoder/conv1", "conv")
    assert table[1] == Rule("backbone.bn1", "encoder/bn1", "bn_untracked")
    gating = [rule for rule in backbone_table(_backbone("s3dg")) if "gating_b0" in rule.torch][0]
    assert gating == Rule("mixed_3b.gating_b0.fc", "mixed_3b_gating_b0/fc", "linear")


def _randomise_batchnorm_statistics(model):
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype("float32"))
            variance = rng.uniform(0.5, 2, size=layer.moving_variance.shape)
            layer.moving_variance.assign(variance.astype("float32"))


@pytest.mark.parametrize("name", ["r21d", "s3dg"])
def test_round_trip_through_pytorch_names(name):
    source = _backbone(name)
    _randomise_batchnorm_statistics(source)
    state_dict = keras_to_torch_state_dict(source, backbone_table(source, "base_network."))
    # Load into the backbone nested in a bigger model, as the methods hold it.
    keras.utils.set_random_seed(2)
    backbone = build_backbone(name, (None, None, None, 3), name="backbone")
    clips = keras.Input((None, None, None, 3))
    wrapper = keras.Model(clips, backbone(clips)["stage5"])
    load_torch_state_dict(wrapper, state_dict, backbone_table(backbone, "base_network.", "backbone/"))
    for ours, theirs in zip(backbone.weights, source.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    x = np.random.default_rng(0).normal(size=(2, 4, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(wrapper(x).numpy(), source(x)["stage5"].numpy())


class Bank(keras.layers.Layer):
    """A layer holding a raw parameter, like MemDPC's memory bank."""

    def build(self, input_shape):
        self.memory = self.add_weight(shape=(5, 3), initializer="zeros", name="memory")

    def call(self, x):
        return x @ keras.ops.transpose(self.memory)


def _tiny_model():
    """conv -> bn -> 1x1 conv (as a Dense) -> nested model with a linear layer and a bank."""
    frames = keras.Input((4, 4, 2))
    x = layers.Conv(3, (2, 2), use_bias=True, name="conv")(frames)
    x = layers.BatchNorm(name="bn")(x)
    x = keras.layers.Dense(6, name="proj")(keras.layers.GlobalAveragePooling2D()(x))
    head_input = keras.Input((6,))
    head_output = Bank(name="bank")(keras.layers.Dense(3, name="fc")(head_input))
    head = keras.Model(head_input, head_output, name="head")
    return keras.Model(frames, head(x))


TINY_TABLE = [
    Rule("features.0", "conv", "conv"),
    Rule("features.1", "bn", "bn"),
    Rule("proj", "proj", "conv1x1_as_dense"),
    Rule("head.fc", "head/fc", "linear"),
    Rule("mb", "head/bank/memory", "param"),
]


def _tiny_state_dict():
    rng = np.random.default_rng(3)

    def normal(*shape):
        return rng.normal(size=shape).astype("float32")

    return {
        "features.0.weight": normal(3, 2, 2, 2),
        "features.0.bias": normal(3),
        "features.1.weight": normal(3),
        "features.1.bias": normal(3),
        "features.1.running_mean": normal(3),
        "features.1.running_var": rng.uniform(1, 2, 3).astype("float32"),
        "features.1.num_batches_tracked": np.array(7),
        "proj.weight": normal(6, 3, 1, 1),
        "proj.bias": normal(6),
        "head.fc.weight": normal(3, 6),
        "head.fc.bias": normal(3),
        "mb": normal(5, 3),
    }


def test_every_kind_lands_in_keras_layout():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    load_torch_state_dict(model, state_dict, TINY_TABLE)
    weights = {variable.path: variable.numpy() for variable in model.weights}
    conv_kernel = state_dict["features.0.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(weights["conv/kernel"], conv_kernel)
    np.testing.assert_array_equal(weights["bn/moving_variance"], state_dict["features.1.running_var"])
    np.testing.assert_array_equal(weights["bn/gamma"], state_dict["features.1.weight"])
    np.testing.assert_array_equal(weights["proj/kernel"], state_dict["proj.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(weights["fc/kernel"], state_dict["head.fc.weight"].T)
    np.testing.assert_array_equal(weights["bank/memory"], state_dict["mb"])
    exported = keras_to_torch_state_dict(model, TINY_TABLE)
    assert set(exported) == set(state_dict) - {"features.1.num_batches_tracked"}
    for name, value in exported.items():
        np.testing.assert_array_equal(value, state_dict[name], err_msg=name)


def test_untracked_batchnorm_keeps_its_initial_statistics():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    del state_dict["features.1.running_mean"], state_dict["features.1.running_var"]
    untracked = Rule("features.1", "bn", "bn_untracked")
    table = [untracked if rule.keras == "bn" else rule for rule in TINY_TABLE]
    load_torch_state_dict(model, state_dict, table)
    bn = model.get_layer("bn")
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(3))
    # Running statistics in the state dict would be lost silently, so they are refused.
    with pytest.raises(ValueError, match=r"not mapped by any rule: 'features\.1\.running_mean'"):
        load_torch_state_dict(model, _tiny_state_dict(), table)


def test_unmapped_pytorch_tensor_fails_unless_ignored():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    state_dict["agg.cell_list.0.weight"] = np.zeros(2, "float32")
    message = r"PyTorch tensors not mapped by any rule: 'agg\.cell_list\.0\.weight'"
    with pytest.raises(ValueError, match=message):
        load_torch_state_dict(model, state_dict, TINY_TABLE)
    load_torch_state_dict(model, state_dict, TINY_TABLE, ignore=("agg.cell_list.0.*",))


def test_unassigned_keras_weight_fails_naming_the_missing_tensor():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    del state_dict["head.fc.bias"]
    message = r"left unassigned: 'fc/bias' \(no PyTorch tensor 'head\.fc\.bias'\)"
    with pytest.raises(ValueError, match=message):
        load_torch_state_dict(model, state_dict, TINY_TABLE)
    with pytest.raises(ValueError, match=r"left unassigned: 'bank/memory'"):
        load_torch_state_dict(model, _tiny_state_dict(), TINY_TABLE[:-1], ignore=("mb",))


def test_shape_mismatch_names_both_shapes():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    state_dict["head.fc.weight"] = np.zeros((4, 6), "float32")
    message = (
        r"PyTorch tensor 'head\.fc\.weight' of shape \(4, 6\) does not fit Keras weight 'fc/kernel' "
        r"of shape \(6, 3\)"
    )
    with pytest.raises(ValueError, match=message):
        load_torch_state_dict(model, state_dict, TINY_TABLE)


def test_conv1x1_as_dense_rejects_a_larger_kernel():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    state_dict["proj.weight"] = np.zeros((6, 3, 3, 3), "float32")
    message = r"'proj\.weight' of shape \(6, 3, 3, 3\) does not fit .* of shape \(3, 6\)"
    with pytest.raises(ValueError, match=message):
        load_torch_state_dict(model, state_dict, TINY_TABLE)


def test_failed_load_changes_nothing():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    before = [variable.numpy() for variable in model.weights]
    state_dict["stray"] = np.zeros(1, "float32")
    with pytest.raises(ValueError):
        load_torch_state_dict(model, state_dict, TINY_TABLE)
    for old, variable in zip(before, model.weights):
        np.testing.assert_array_equal(variable.numpy(), old)


def test_rule_errors():
    model, state_dict = _tiny_model(), _tiny_state_dict()
    with pytest.raises(ValueError, match=r"no Keras layer 'fc2' in 'head' \(path 'head/fc2'\)"):
        load_torch_state_dict(model, state_dict, TINY_TABLE + [Rule("x", "head/fc2", "linear")])
    message = r"'fc/kernel' is assigned twice, from 'head\.fc\.weight' and 'dup\.weight'"
    with pytest.raises(ValueError, match=message):
        load_torch_state_dict(
            model,
            state_dict | {"dup.weight": state_dict["head.fc.weight"]},
            TINY_TABLE + [Rule("dup", "head/fc", "linear")],
        )
    with pytest.raises(ValueError, match=r"the Keras layer has no variable 'bank'"):
        load_torch_state_dict(model, state_dict, TINY_TABLE[:-1] + [Rule("mb", "head/bank", "param")])
    with pytest.raises(ValueError, match=r"unknown kind 'deconv'"):
        Rule("up", "up", "deconv")
