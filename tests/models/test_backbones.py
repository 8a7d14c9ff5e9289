"""Backbones: parity with the authors' PyTorch models, shapes at the papers' sizes, sizes.

The parity tests load each fixture's `weights.npz` through the generated name table, feed
its `input` and compare the intermediate (`stage_*_clip0`) and final backbone arrays,
in eval mode (BN running statistics) and, for `trainbn_*`, with batch statistics.
"""

import dataclasses
import fnmatch
import functools
import json
import os

import keras
import numpy as np
import pytest

from tfvssl.convert import backbone_table, keras_to_torch_state_dict, load_torch_state_dict
from tfvssl.models import backbone_layers
from tfvssl.models.backbones import available_backbones, build_backbone
from tfvssl.models.layers import BatchNorm, NormOptions

# Trainable parameters of the authors' models (BN running statistics are buffers), counted
# with torch 2.13 on VCOP @ 7a1710d (C3D(), R3DNet, R2Plus1DNet), video-pace @ cc1e561
# (S3D(space_to_depth=False) without fc), DPC @ 1592e5f (resnet*_2d3d_full) and
# torchvision 0.29 (resnet18 without fc, conv1 widened to 30 channels).
PARAMETERS = {
    "c3d": 27_661_440,
    "r3d": 14_361_792,
    "r3d18": 33_166_272,
    "r21d": 14_365_303,
    "r21d18": 33_178_423,
    "s3dg": 9_125_072,
    "r2d3d18": 14_057_536,
    "r2d3d34": 32_422_208,
    "resnet18_2d": 11_261_184,
}

# Input and output shapes at the papers' sizes (batch axis left out).
PAPER_SHAPES = {
    "c3d": ((16, 112, 112, 3), (4, 14, 14, 512), (2, 7, 7, 512)),
    "r3d": ((16, 112, 112, 3), (4, 14, 14, 256), (2, 7, 7, 512)),
    "r3d18": ((16, 112, 112, 3), (4, 14, 14, 256), (2, 7, 7, 512)),
    "r21d": ((16, 112, 112, 3), (4, 14, 14, 256), (2, 7, 7, 512)),
    "r21d18": ((16, 112, 112, 3), (4, 14, 14, 256), (2, 7, 7, 512)),
    "s3dg": ((64, 224, 224, 3), (16, 14, 14, 832), (8, 7, 7, 1024)),
    "r2d3d18": ((5, 128, 128, 3), (3, 8, 8, 256), (2, 4, 4, 256)),
    "r2d3d34": ((5, 128, 128, 3), (3, 8, 8, 256), (2, 4, 4, 256)),
    "resnet18_2d": ((224, 224, 30), (14, 14, 256), (7, 7, 512)),
}

_RESNET_STAGES = {"relu1": "relu1"} | {
    f"conv{stage}": f"conv{stage}_block1_outrelu" for stage in range(2, 6)
}
_S3DG_STAGES = [
    "conv1", "maxpool_2a", "conv_2b", "conv_2c", "gating", "maxpool_3a", "mixed_3b", "mixed_3c",
    "maxpool_4a", "mixed_4b", "mixed_4f", "maxpool_5a", "mixed_5b", "mixed_5c",
]
_R2D3D_STAGES = {
    "stem": "maxpool", "layer1": "layer1_1_relu2", "layer2": "layer2_1_relu2",
    "layer3": "layer3_1_relu2", "layer4": "layer4_1_add",
}


@dataclasses.dataclass(frozen=True)
class Fixture:
    """How a reference folder exercises a backbone.

    Attributes:
      backbone: `BACKBONES` name.
      layout: of `io.npz -> input`: "tuples" `[B, 3, C, T, H, W]` (VCOP, one backbone
        call per slot, of which we repeat the first), "blocks" `[B, N, C, SL, H, W]`
        (DPC/MemDPC, one call on the B*N blocks) or "clips" `[B, C, T, H, W]`.
      torch_prefix: the backbone's prefix in `weights.npz`.
      ignore: the method's own tensors in `weights.npz`.
      stages: fixture stage name -> Keras layer whose output it is.
      pooled: name of the array holding `stage5` averaged over T, H, W ("" if none).
      full: name of the array holding `stage5` itself ("" if none).
      norm: BatchNorm options of the reference backbone.
    """

    backbone: str
    layout: str
    torch_prefix: str
    ignore: tuple
    stages: dict
    pooled: str = ""
    full: str = ""
    norm: NormOptions = NormOptions()

    @property
    def arrays(self):
        """Names of the arrays of `io.npz` this backbone reproduces."""
        names = [f"stage_{stage}_clip0" for stage in self.stages]
        names += [name for name in (self.pooled, self.full) if name]
        if not self.norm.always_batch_stats:
            names += [f"trainbn_{name}" for name in names]
        return names


FIXTURES = {
    "vcop_c3d": Fixture(
        "c3d", "tuples", "base_network.", ("fc7.*", "fc8.*"),
        {name: name for name in ("pool1", "pool2", "pool3", "pool4", "relu5b")}, pooled="clip_feature",
    ),
    "vcop_r3d": Fixture(
        "r3d", "tuples", "base_network.", ("fc7.*", "fc8.*"), _RESNET_STAGES, pooled="clip_feature"
    ),
    "vcop_r21d": Fixture(
        "r21d", "tuples", "base_network.", ("fc7.*", "fc8.*"), _RESNET_STAGES, pooled="clip_feature"
    ),
    "pace_s3dg": Fixture(
        "s3dg", "clips", "", ("fc.*",), {name: name for name in _S3DG_STAGES}, pooled="pooled_feature"
    ),
    "dpc_rnn_resnet18": Fixture(
        "r2d3d18", "blocks", "backbone.", ("agg.*", "network_pred.*"), _R2D3D_STAGES,
        full="backbone_out", norm=NormOptions(always_batch_stats=True),
    ),
    "memdpc_bd_resnet18": Fixture(
        "r2d3d18", "blocks", "backbone.", ("agg_f.*", "agg_b.*", "network_pred.*", "mb"),
        _R2D3D_STAGES, full="backbone_out",
    ),
}


def _channels_last(clips):
    """`[B, C, T, H, W]` -> `[B, T, H, W, C]`."""
    return np.transpose(clips, (0, 2, 3, 4, 1))


def _backbone_input(inputs, layout):
    """The (first) batch the reference fed its backbone, channels-last (see `Fixture.layout`).

    Of VCOP's three calls, one per tuple slot, only the first is repeated: the others run
    the same code on other data, and each costs about a second on two CPU cores.
    """
    if layout == "tuples":
        return _channels_last(inputs[:, 0])
    if layout == "blocks":
        return _channels_last(inputs.reshape(-1, *inputs.shape[2:]))
    return _channels_last(inputs)


@dataclasses.dataclass
class Run:
    """What one fixture's backbone produced: arrays by fixture name, and its initial weights' std."""

    ours: dict
    reference: dict
    init_std: dict
    init_stats: dict


@functools.cache
def _run(folder, path):
    """Builds, checks the init of, loads and runs the backbone of fixture `folder`, once."""
    spec = FIXTURES[folder]
    keras.utils.set_random_seed(0)
    model = build_backbone(spec.backbone, (None, None, None, 3), norm=spec.norm)
    table = backbone_table(model, spec.torch_prefix, running_stats=not spec.norm.always_batch_stats)
    initial = keras_to_torch_state_dict(model, table)
    init_std = {name: float(np.std(value)) for name, value in initial.items()}
    with open(os.path.join(path, "meta.json")) as file:
        init_stats = json.load(file)["init_stats"]
    weights = dict(np.load(os.path.join(path, "weights.npz")))
    load_torch_state_dict(model, weights, table, ignore=spec.ignore)
    io = dict(np.load(os.path.join(path, "io.npz")))
    clips = _backbone_input(io["input"], spec.layout)
    stage_outputs = {stage: model.get_layer(layer).output for stage, layer in spec.stages.items()}
    probe = keras.Model(model.input, {**model.output, **stage_outputs})
    ours = {}
    # Eval first: the training-mode pass updates the BN moving statistics.
    for prefix, training in (("", False), ("trainbn_", True)):
        if training and spec.norm.always_batch_stats:
            continue
        outputs = probe(clips, training=training)
        for stage in spec.stages:
            ours[f"{prefix}stage_{stage}_clip0"] = outputs[stage].numpy()[0:1]
        if spec.pooled:
            ours[prefix + spec.pooled] = np.mean(outputs["stage5"].numpy(), axis=(1, 2, 3))
        if spec.full:
            ours[prefix + spec.full] = outputs["stage5"].numpy()
    reference = {}
    for name in spec.arrays:
        array = io[name]
        if spec.layout == "tuples" and name.endswith(spec.pooled):
            array = array[:, 0]  # [B, tuple slot, 512]
        if array.ndim == 5:  # [B, C, T, H, W] maps; stage arrays may keep only t 0:4
            array = _channels_last(array)
            ours[name] = ours[name][:, : array.shape[1]]
        reference[name] = array
    return Run(ours, reference, init_std, init_stats)


def _fixture_run(fixture_dir, folder):
    return _run(folder, fixture_dir(folder))


# pace_s3dg's arrays are held in tests/convert/test_s3dg_parity.py, in float64 and in
# float32 to the fixture README's bounds: from mixed_5b on, training-mode BatchNorm makes
# its float32 arrays unreachable to 1e-4 by any float32 code.
_PARITY_CASES = [
    (folder, array) for folder, spec in FIXTURES.items() if folder != "pace_s3dg" for array in spec.arrays
]


@pytest.mark.parametrize("folder,array", _PARITY_CASES)
def test_matches_pytorch_reference(fixture_dir, folder, array):
    run = _fixture_run(fixture_dir, folder)
    ours, reference = run.ours[array], run.reference[array]
    assert ours.shape == reference.shape
    # Relative to the array's own scale, not max(1, scale): the eval arrays of the deeper
    # VCOP/Pace nets fade to 1e-2..1e-9 and would otherwise pass whatever we computed.
    tolerance = 1e-4 * float(np.max(np.abs(reference)))
    error = float(np.max(np.abs(ours - reference)))
    assert error <= tolerance, f"{folder}/{array}: max|diff| {error:.3g} > {tolerance:.3g}"


@pytest.mark.parametrize("folder", FIXTURES)
def test_initial_weight_spread_matches_reference_init(fixture_dir, folder):
    spec, run = FIXTURES[folder], _fixture_run(fixture_dir, folder)
    backbone_tensors = {
        name
        for name in run.init_stats
        if not name.endswith("num_batches_tracked")
        and not any(fnmatch.fnmatchcase(name, pattern) for pattern in spec.ignore)
    }
    assert set(run.init_std) == backbone_tensors
    for name, std in run.init_std.items():
        stats = run.init_stats[name]
        # The spread of a sample std is below 0.71 * std / sqrt(n) for these uniform and
        # normal inits; both sides are samples, so allow about 5 of it.
        tolerance = 5.0 * stats["orig_std"] / np.sqrt(np.prod(stats["shape"])) + 1e-7
        assert abs(std - stats["orig_std"]) <= tolerance, (name, std, stats["orig_std"])


@functools.cache
def _model(name):
    """Each backbone, built once per module for any T/H/W, with batch-statistics BN."""
    input_shape = (None, None, 30) if name == "resnet18_2d" else (None, None, None, 3)
    return build_backbone(name, input_shape, norm=NormOptions(always_batch_stats=True))


def test_the_table_lists_every_backbone():
    assert set(PAPER_SHAPES) <= set(available_backbones())


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_output_shapes_at_paper_sizes(name):
    clip_shape, stage4, stage5 = PAPER_SHAPES[name]
    # Symbolically, through the model built for any T/H/W: no tensor is computed.
    outputs = _model(name).compute_output_spec(keras.KerasTensor((2, *clip_shape)))
    assert tuple(outputs["stage4"].shape) == (2, *stage4)
    assert tuple(outputs["stage5"].shape) == (2, *stage5)


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_parameter_count_equals_reference(name):
    model = _model(name)
    assert sum(int(np.prod(weight.shape)) for weight in model.trainable_weights) == PARAMETERS[name]


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_norm_options_reach_every_batchnorm(name):
    batch_norms = [
        layer for layer in _model(name).layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms and all(isinstance(bn, BatchNorm) and bn.always_batch_stats for bn in batch_norms)


def test_resnet18_2d_initialises_as_torchvision():
    # No fixture: torchvision draws conv kernels from N(0, 2 / fan_out), BN gamma 1, beta 0.
    for layer in _model("resnet18_2d").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            np.testing.assert_array_equal(layer.gamma.numpy(), 1)
            np.testing.assert_array_equal(layer.beta.numpy(), 0)
        elif layer.weights:
            kernel = layer.kernel.numpy()
            expected = np.sqrt(2 / (np.prod(kernel.shape[:-2]) * kernel.shape[-1]))
            assert abs(kernel.std() - expected) <= 5 * 0.71 * expected / np.sqrt(kernel.size), layer.name


def test_factorised_widths_match_the_r21d_reference():
    # Middle widths of VCOP's R(2+1)D: stem, block convs, and the 1x1x1 shortcuts.
    cases = {
        ((3, 7, 7), 3, 64): 83, ((3, 3, 3), 64, 64): 144, ((3, 3, 3), 64, 128): 230,
        ((3, 3, 3), 128, 128): 288, ((3, 3, 3), 128, 256): 460, ((3, 3, 3), 256, 256): 576,
        ((3, 3, 3), 256, 512): 921, ((3, 3, 3), 512, 512): 1152, ((1, 1, 1), 64, 128): 42,
        ((1, 1, 1), 128, 256): 85, ((1, 1, 1), 256, 512): 170,
    }
    for (kernel, cin, cout), width in cases.items():
        assert backbone_layers.conv2plus1d_width(kernel, cin, cout) == width


@pytest.mark.parametrize("name", ["r2d3d18", "r3d", "r21d", "resnet18_2d"])
def test_narrow_backbones_scale_every_stage_and_keep_the_map_sizes(name):
    clip_shape, stage4, stage5 = PAPER_SHAPES[name]
    narrow = build_backbone(f"{name}_w16", clip_shape)

    outputs = narrow.compute_output_spec(keras.KerasTensor((2, *clip_shape)))
    assert tuple(outputs["stage4"].shape) == (2, *stage4[:-1], stage4[-1] // 4)
    assert tuple(outputs["stage5"].shape) == (2, *stage5[:-1], stage5[-1] // 4)
    # A quarter of the width: about a sixteenth of the weights.
    count = sum(int(np.prod(weight.shape)) for weight in narrow.trainable_weights)
    assert 1 / 20 < count / PARAMETERS[name] < 1 / 12


def test_unknown_and_unscalable_backbone_names_are_clear():
    with pytest.raises(ValueError, match=r"--backbone=r2d3d19: unknown backbone; choose one of .*r2d3d18"):
        build_backbone("r2d3d19", (4, 32, 32, 3))
    with pytest.raises(ValueError, match=r"--backbone=c3d_w16: unknown backbone.*<name>_w<channels> of r2d3d18"):
        build_backbone("c3d_w16", (16, 112, 112, 3))


def test_resnet18_2d_needs_a_known_channel_count():
    with pytest.raises(ValueError, match="known channel count"):
        build_backbone("resnet18_2d", (224, 224, None))


def test_self_gating_scales_channels_by_their_gate_and_survives_saving(tmp_path):
    clips = keras.Input((2, 3, 3, 4))
    model = keras.Model(clips, backbone_layers.SelfGating(name="gating")(clips))
    x = np.random.default_rng(0).normal(size=(2, 2, 3, 3, 4)).astype("float32")
    fc = model.get_layer("gating").fc
    gate = 1 / (1 + np.exp(-(x.mean(axis=(1, 2, 3)) @ fc.kernel.numpy() + fc.bias.numpy())))
    np.testing.assert_allclose(model(x).numpy(), x * gate[:, None, None, None, :], rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "gating.keras")
    reloaded = keras.models.load_model(tmp_path / "gating.keras")
    np.testing.assert_array_equal(reloaded(x).numpy(), model(x).numpy())
