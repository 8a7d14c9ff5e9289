"""VCOP: order labels of decoded tuples, the pairwise head, per-slot BatchNorm, preprocessing."""

import collections
import itertools

import numpy as np
import pytest
import tensorflow as tf

import conftest
from conftest import configured_method
from tfvssl.methods.vcop import VCOP
from tfvssl.models import vcop_model

LEVEL = 5  # Grey level per frame index in the coded video.


def make_method(*args):
    return configured_method(VCOP, *args)


def coded_video(num_frames):
    return conftest.coded_video(num_frames, LEVEL)


def test_label_is_the_index_of_the_shuffled_order_and_every_order_is_equally_frequent():
    method = make_method(
        "--clip_length=3", "--clip_interval=2", "--tuple_length=3", "--resolution=12", "--frame_size=14,18"
    )
    orders = list(itertools.permutations(range(3)))
    seeds = tf.data.Dataset.range(600).map(lambda i: tf.stack([i, tf.constant(1, tf.int64)]))
    video = coded_video(40)
    stream = seeds.map(lambda seed: conftest.model_inputs(method, video, seed))
    labels = collections.Counter()
    for example in stream.as_numpy_iterator():
        assert example["tuple"].shape == (3, 3, 12, 12, 3)
        assert 0.0 <= example["tuple"].min() and example["tuple"].max() <= 1.0  # VCOP's [0, 1]
        frames = np.round(example["tuple"].mean(axis=(2, 3, 4)) * 255 / LEVEL).astype(int)
        # Each slot holds 3 consecutive frames; slots are 5 frames apart in time.
        np.testing.assert_array_equal(np.diff(frames, axis=1), 1)
        starts = frames[:, 0]
        np.testing.assert_array_equal(np.sort(starts) - starts.min(), [0, 5, 10])
        order = tuple(int(rank) for rank in np.argsort(np.argsort(starts)))
        assert orders.index(order) == example["label"]
        labels[int(example["label"])] += 1
    # 100 of each order expected (binomial sd ~9).
    assert sorted(labels) == list(range(6))
    assert min(labels.values()) >= 65 and max(labels.values()) <= 135


@pytest.fixture(scope="module")
def model():
    return vcop_model.ClipOrderPrediction(backbone="r3d", clip_length=4, resolution=16, tuple_length=4)


def test_pairwise_head_equals_numpy(model):
    features = np.random.default_rng(0).normal(size=(2, 4, 512)).astype(np.float32)
    out = model.order_logits(tf.constant(features), training=False)
    w7, b7 = model.fc7.kernel.numpy(), model.fc7.bias.numpy()
    w8, b8 = model.fc8.kernel.numpy(), model.fc8.bias.numpy()
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    fc7 = np.stack([np.concatenate([features[:, i], features[:, j]], -1) @ w7 + b7 for i, j in pairs], 1)
    np.testing.assert_allclose(out["fc7_out"], fc7, rtol=1e-4, atol=1e-4)
    logits = np.maximum(fc7, 0).reshape(2, -1) @ w8 + b8
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-4, atol=1e-4)
    assert out["logits"].shape == (2, 24)
    # Dropout 0.5 before fc8 acts in training only.
    dropped = model.order_logits(tf.constant(features), training=True)["logits"]
    assert not np.allclose(dropped, logits, atol=1e-3)


def test_batchnorm_statistics_are_per_slot_unless_folded(model):
    tuples = tf.random.stateless_normal([2, 4, 4, 16, 16, 3], [1, 0])
    changed = tf.concat([tuples[:, :1], 3.0 * tuples[:, 1:] + 1.0], axis=1)

    def features(fold, x, training):
        model.fold_clips = fold
        try:
            return model.clip_features(x, training=training).numpy()
        finally:
            model.fold_clips = False

    # In inference both encode every clip on its own. (Before any training-mode call,
    # which updates the moving statistics.)
    folded, per_slot = features(True, tuples, False), features(False, tuples, False)
    np.testing.assert_allclose(folded, per_slot, rtol=1e-5, atol=1e-6)
    # As the authors, slot 0 is normalised with its own clips' statistics: other slots do
    # not move it; folded, all clips share the statistics.
    np.testing.assert_allclose(
        features(False, changed, True)[:, 0], features(False, tuples, True)[:, 0], rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(features(True, changed, True)[:, 0], features(True, tuples, True)[:, 0], atol=1e-3)


def test_config_round_trip(model):
    clone = vcop_model.ClipOrderPrediction.from_config(model.get_config())
    assert clone.tuple_length == 4 and clone.fc8.units == 24 and not clone.fold_clips


def test_eval_clip_resizes_center_crops_and_scales_to_unit():
    method = make_method("--clip_length=2", "--resolution=8", "--frame_size=12,16")
    frames = np.zeros((2, 24, 32, 3), np.uint8)
    frames[:, :, 16:] = 255  # Right half white: after resize and centre crop, so is its right half.
    clip = method.eval_clip(tf.constant(frames)).numpy()
    assert clip.shape == method.clip_shape() == (2, 8, 8, 3)
    np.testing.assert_allclose(clip[:, :, :3], 0.0, atol=1e-6)
    np.testing.assert_allclose(clip[:, :, 5:], 1.0, atol=1e-6)


def test_retrieval_feature_is_conv5_max_pooled_over_1x2x2_and_flattened():
    from tfvssl.models import clip_encoder, layers

    # The authors' 512x2x3x3 feature of 16x112x112 clips through R(2+1)D (§4.1).
    paper = clip_encoder.build_clip_encoder("r21d", (16, 112, 112, 3), layers.NormOptions())
    assert paper.output["conv5_maxpool"].shape == (None, 9216)
    encoder = clip_encoder.build_clip_encoder("r3d", (4, 64, 64, 3), layers.NormOptions())
    out = encoder(tf.random.stateless_normal([2, 4, 64, 64, 3], [5, 0]))
    conv5 = out["feature_map"].numpy()  # [2, 1, 4, 4, 512]: two 2x2 windows a side.
    pooled = conv5.reshape(2, 1, 2, 2, 2, 2, 512).max(axis=(3, 5))
    np.testing.assert_allclose(out["conv5_maxpool"], pooled.reshape(2, -1), rtol=1e-6)
