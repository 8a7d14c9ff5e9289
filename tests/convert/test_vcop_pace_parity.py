"""Full-model parity of VCOP with the authors' PyTorch models, through the importer.

Each fixture's `weights.npz` is loaded with `convert.vcop_pace`, its `input` fed to our
model, and every output compared: in eval mode (BN running statistics, dropout off) and,
for `trainbn_*`, with BN on batch statistics and dropout off (each VCOP tuple slot in its
own backbone call, as the authors). Tolerance: 1e-4 of the array's own magnitude (the eval
features of these freshly initialised nets fade to 1e-5..1e-9, so a floor of 1 would let
anything pass), and exact accuracies. Pace's S3D-G: test_s3dg_parity.py.
"""

import functools
import os

import numpy as np
import pytest

from tfvssl.convert import vcop_pace
from tfvssl.models import clip_encoder, pace_model, vcop_model

VCOP_ARRAYS = ("clip_feature", "fc7_out", "logits", "loss", "acc")
FOLDERS = ("vcop_c3d", "vcop_r3d", "vcop_r21d")
CASES = [(folder, prefix + name) for folder in FOLDERS for prefix in ("", "trainbn_") for name in VCOP_ARRAYS]


def _load(path):
    weights = dict(np.load(os.path.join(path, "weights.npz")))
    return weights, dict(np.load(os.path.join(path, "io.npz")))


def _channels_last(clips):
    """`[..., C, T, H, W]` -> `[..., T, H, W, C]`."""
    return np.moveaxis(clips, -4, -1)


@functools.cache
def _vcop_run(folder, path):
    weights, io = _load(path)
    model = vcop_model.ClipOrderPrediction(backbone=folder.split("_")[1], clip_length=16, resolution=64)
    vcop_pace.load_vcop(model, weights)
    tuples = _channels_last(io["input"])
    ours = {}
    # Eval first: the training-mode pass updates the BN moving statistics.
    outputs = model(tuples, training=False)
    logs = clip_encoder.classification_logs(outputs["logits"], io["target"])
    features = model.clip_features(tuples, training=True)
    train_outputs = {"clip_feature": features, **model.order_logits(features, training=False)}
    train_logs = clip_encoder.classification_logs(train_outputs["logits"], io["target"])
    for prefix, out, log in (("", outputs, logs), ("trainbn_", train_outputs, train_logs)):
        for name in ("clip_feature", "fc7_out", "logits"):
            ours[prefix + name] = out[name].numpy()
        ours[prefix + "loss"], ours[prefix + "acc"] = log["loss"].numpy(), log["accuracy"].numpy()
    return ours, io


@pytest.mark.parametrize("folder,array", CASES)
def test_matches_pytorch_reference(fixture_dir, folder, array):
    path = fixture_dir(folder)
    ours, io = _vcop_run(folder, path)
    reference, ours = io[array], ours[array]
    assert ours.shape == reference.shape
    if array.endswith("acc"):
        assert ours == reference
        return
    tolerance = 1e-4 * float(np.max(np.abs(reference)))
    error = float(np.max(np.abs(ours - reference)))
    assert error <= tolerance, f"{folder}/{array}: max|diff| {error:.3g} > {tolerance:.3g}"


def test_pace_classifier_of_the_resnets_loads_from_linear(fixture_dir):
    # The Pace C3D/R3D/R(2+1)D files are VCOP's backbones with a `linear` pace classifier
    # at the top level (fixtures README): build that state dict from VCOP's R3D fixture.
    weights, io = _load(fixture_dir("vcop_r3d"))
    rng = np.random.default_rng(0)
    prefix = "base_network."
    state_dict = {name[len(prefix):]: value for name, value in weights.items() if name.startswith(prefix)}
    state_dict["linear.weight"] = rng.normal(size=(4, 512)).astype(np.float32)
    state_dict["linear.bias"] = rng.normal(size=4).astype(np.float32)
    model = pace_model.PacePrediction(backbone="r3d", clip_length=16, resolution=64, contrastive="none")
    vcop_pace.load_pace(model, state_dict)
    reference = io["clip_feature"][:, 0]  # Eval mode: slot 0 alone gives the same features.
    outputs = model(_channels_last(io["input"][:, 0]), training=False)
    np.testing.assert_allclose(outputs["embedding"], reference, rtol=0, atol=1e-4 * np.abs(reference).max())
    logits = reference @ state_dict["linear.weight"].T + state_dict["linear.bias"]
    np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-5, atol=1e-5)
