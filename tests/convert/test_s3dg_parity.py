"""S3D-G parity with the authors' model (video-pace `S3D`), through the importer, in float64
and in float32.

`pace_s3dg/io_f64.npz` holds every array of the fixture computed by the authors' model after
`model.double()`. In float32, training-mode BatchNorm over 16 values a channel amplifies
rounding block after block, so from `mixed_5b` on the float32 fixture is itself 2e-3 off the
exact answer and no float32 code meets it to 1e-4 (fixtures README). Hence:

- our model built in float64 is held to `io_f64.npz` at 1e-6 of each array's magnitude
  (the issue's 1e-6 * max(1, max|b|), stricter where the eval activations of this freshly
  initialised net fade to 1e-9 and a floor of 1 would pass anything); measured: 1e-10,
  5e-9 for the losses (computed in float32);
- our model in float32 is held to `io.npz` at the README's per-array bound, 1e-4 of the
  magnitude plus twice the fixture's own float32 error `max|io - io_f64|` (the README's max(1, ·) floor replaced by the
  magnitude, for the same reason).
"""

import functools
import os

import keras
import numpy as np
import pytest

from tfvssl.convert import vcop_pace
from tfvssl.models import clip_encoder, pace_model

STAGES = (
    "conv1", "maxpool_2a", "conv_2b", "conv_2c", "gating", "maxpool_3a", "mixed_3b", "mixed_3c",
    "maxpool_4a", "mixed_4b", "mixed_4f", "maxpool_5a", "mixed_5b", "mixed_5c",
)


@functools.cache
def _run(path, dtype):
    """Every array of the fixture's `io.npz` but the inputs, computed by our S3D-G Pace model
    built in `dtype`."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        model = pace_model.PacePrediction(backbone="s3dg", clip_length=16, resolution=64, num_paces=4)
    finally:
        keras.config.set_dtype_policy(previous)
    projection = model.projection.kernel.numpy().copy()
    vcop_pace.load_pace(model, dict(np.load(os.path.join(path, "weights.npz"))))
    # The authors released no contrastive model: the projection keeps its initial weights.
    np.testing.assert_array_equal(model.projection.kernel.numpy(), projection)
    io = dict(np.load(os.path.join(path, "io_f64.npz")))
    clips = np.moveaxis(io["input"], 1, -1).astype(dtype)  # [B, C, T, H, W] -> [B, T, H, W, C]
    backbone = model.encoder.get_layer("backbone")
    probe = keras.Model(backbone.input, {stage: backbone.get_layer(stage).output for stage in STAGES})
    ours = {}
    # Eval first: the training-mode pass updates the BN moving statistics.
    for prefix, training in (("", False), ("trainbn_", True)):
        stages = probe(clips, training=training)
        for stage, value in stages.items():
            reference = io[f"{prefix}stage_{stage}_clip0"]  # [1, C, t, h, w], maybe t 0:4
            ours[f"{prefix}stage_{stage}_clip0"] = np.moveaxis(value.numpy()[0:1], -1, 1)[:, :, : reference.shape[2]]
        embedding = model.encoder(clips, training=training)["embedding"]
        logits = model.pace_head(embedding, training=False)
        logs = clip_encoder.classification_logs(logits, io["label"])
        ours[prefix + "pooled_feature"], ours[prefix + "logits"] = embedding.numpy(), logits.numpy()
        ours[prefix + "loss"], ours[prefix + "acc"] = logs["loss"].numpy(), logs["accuracy"].numpy()
        assert embedding.dtype == dtype and logits.dtype == dtype
    return ours


def _max_error(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_pytorch_reference(fixture_dir, dtype):
    path = fixture_dir("pace_s3dg")
    exact = dict(np.load(os.path.join(path, "io_f64.npz")))
    fixture = dict(np.load(os.path.join(path, "io.npz")))
    ours = _run(path, dtype)
    assert sorted(ours) == sorted(set(exact) - {"input", "label"})
    failures = []
    for name, value in sorted(ours.items()):
        reference = exact[name] if dtype == "float64" else fixture[name]
        assert value.shape == reference.shape, name
        scale = float(np.max(np.abs(reference)))
        if dtype == "float64":
            tolerance = 1e-6 * scale
        else:
            tolerance = 1e-4 * scale + 2 * _max_error(fixture[name], exact[name])
        error = _max_error(value, reference)
        if error > tolerance:
            failures.append(f"{name}: max|diff| {error:.3g} > {tolerance:.3g}")
    assert not failures, failures
