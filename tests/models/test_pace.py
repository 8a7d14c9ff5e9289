"""Pace prediction: training examples, the two contrastive variants, encoder and preprocessing.

Example tests feed a video whose frame k is a flat grey of level 20 * k, so the decoded,
resized, cropped clip tells which source frames the sampler chose.
"""

import collections
import fractions
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import conftest
from conftest import configured_method
from tfvssl.methods import pace as pace_method
from tfvssl.models import pace_model

LEVEL = 20  # Grey level per frame index in the coded video.


def make_method(*args):
    return configured_method(pace_method.Pace, *args)


def coded_video(num_frames):
    return conftest.coded_video(num_frames, LEVEL)


def examples(method, video, count):
    """The model inputs of `count` training examples with seeds (i, 0), in a tf.data graph."""
    seeds = tf.data.Dataset.range(count).map(lambda i: tf.stack([i, tf.constant(0, tf.int64)]))
    return list(seeds.map(lambda seed: conftest.model_inputs(method, video, seed)).as_numpy_iterator())


def authors_loop(start, pace_value, num_frames, clip_length):
    """The authors' wrapping loop, 0-based: a position advancing by the pace, restarting at
    frame 0 when the next frame would pass the end; slow paces repeat frames (floor)."""
    position, frames = fractions.Fraction(start), []
    for _ in range(clip_length):
        frames.append(math.floor(position))
        position += pace_value
        if math.floor(position) > num_frames - 1:
            position = fractions.Fraction(0)
    return frames


def test_labels_match_the_decoded_frames_for_every_pace_including_slow_and_wrapped():
    paces = ["1/3", "1/2", "1", "2", "3", "4"]
    num_frames, clip_length = 12, 8
    method = make_method(
        f"--paces={','.join(paces)}", f"--clip_length={clip_length}", "--resolution=16",
        "--frame_size=20,24", "--pace_jitter_prob=0", "--contrastive=same_context",
    )
    wrapped = collections.Counter()
    for example in examples(method, coded_video(num_frames), 60):
        assert example["clips"].shape == (2, clip_length, 16, 16, 3)
        assert example["pace"][0] != example["pace"][1]  # Two different paces per video.
        for clip, label in zip(example["clips"], example["pace"]):
            frames = np.round(clip.mean(axis=(1, 2, 3)) / LEVEL).astype(int)
            expected = authors_loop(frames[0], fractions.Fraction(paces[label]), num_frames, clip_length)
            np.testing.assert_array_equal(frames, expected, err_msg=f"pace {paces[label]}")
            wrapped[paces[label]] += int(np.any(np.diff(frames) < 0))
    # Every pace, the slow ones included, was seen wrapping around the end of the video.
    assert set(wrapped) == set(paces) and min(wrapped.values()) > 0


def test_pace_pairs_are_distinct_and_uniform():
    draws = tf.data.Dataset.range(2400).map(
        lambda i: pace_method.sample_pace_clips(30, 4, [1, 2, 3, 4], 2, tf.stack([i, i]))[1]
    )
    pairs = collections.Counter(tuple(labels) for labels in draws.as_numpy_iterator())
    # 12 ordered pairs of different paces, 200 each expected (binomial sd ~13.5).
    assert sorted(pairs) == [(a, b) for a in range(4) for b in range(4) if a != b]
    assert min(pairs.values()) >= 140 and max(pairs.values()) <= 260


def test_bad_pace_flags_are_named():
    with pytest.raises(ValueError, match="--paces=1,1"):
        make_method("--paces=1,1").validate()
    with pytest.raises(ValueError, match="--paces=1/0"):
        make_method("--paces=1/0").validate()
    with pytest.raises(ValueError, match="--paces=2"):
        make_method("--paces=2", "--contrastive=same_context").validate()
    make_method("--paces=2", "--contrastive=none").validate()
    with pytest.raises(ValueError, match="--pace_color_jitter=0.8,0.8,0.8,0.6"):
        make_method("--pace_color_jitter=0.8,0.8,0.8,0.6").validate()


# ----------------------------------------------------------------------------------------
# Contrastive variants against NumPy
# ----------------------------------------------------------------------------------------


def numpy_contrastive(features, positives, temperature=None):
    """Eq. 2/3 as read here: per query, the mean over its positives of
    -log(exp(s_ij) / sum_{k != i} exp(s_ik)); averaged over queries with a positive."""
    features = features.astype(np.float64)
    scores = features @ features.T / (temperature or 1.0)
    losses, hits = [], []
    for i in range(len(features)):
        others = [k for k in range(len(features)) if k != i]
        positive = [j for j in others if positives[i, j]]
        if not positive:
            continue
        log_norm = np.log(np.sum(np.exp(scores[i, others])))
        losses.append(np.mean([log_norm - scores[i, j] for j in positive]))
        hits.append(others[int(np.argmax(scores[i, others]))] in positive)
    return np.mean(losses), np.mean(hits)


@pytest.fixture(scope="module")
def tiny_models():
    def build(contrastive, **kwargs):
        return pace_model.PacePrediction(
            backbone="r3d", clip_length=4, resolution=16, num_paces=4, contrastive=contrastive, **kwargs
        )

    return build


def test_same_context_equals_numpy(tiny_models):
    model = tiny_models("same_context", temperature=0.5)
    features = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)  # 3 videos x 2
    video = np.arange(6) // 2
    logs = model.contrastive_logs(tf.constant(features), tf.constant([0, 1, 2, 3, 1, 0]), 2)
    loss, accuracy = numpy_contrastive(features, video[:, None] == video[None, :], temperature=0.5)
    np.testing.assert_allclose(logs["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], accuracy)


def test_same_pace_equals_numpy_with_several_and_no_positives(tiny_models):
    model = tiny_models("same_pace")
    features = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    labels = np.array([0, 1, 0, 2, 1, 0, 3])  # Paces 2 and 3 have a single clip: no positive.
    logs = model.contrastive_logs(tf.constant(features), tf.constant(labels), 1)
    loss, accuracy = numpy_contrastive(features, labels[:, None] == labels[None, :])
    np.testing.assert_allclose(logs["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], accuracy)


def test_global_negatives_across_replicas_equal_one_device(tiny_models):
    model = tiny_models("same_context", negatives="global")
    features = np.random.default_rng(2).normal(size=(8, 5)).astype(np.float32)  # 4 videos x 2
    video = np.arange(8) // 2
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    halves = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(features[4 * context.replica_id_in_sync_group :][:4])
    )
    logs = strategy.run(lambda f: model.contrastive_logs(f, tf.zeros([4], tf.int32), 2), args=(halves,))
    loss = strategy.reduce("MEAN", logs["loss"], axis=None)
    expected, _ = numpy_contrastive(features, video[:, None] == video[None, :])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_total_loss_weights_the_two_terms(tiny_models):
    model = tiny_models("same_context", lambda_cls=2.0, lambda_ctr=0.5, projection="mlp", projection_dim=3)
    clips = tf.random.stateless_uniform([2, 2, 4, 16, 16, 3], [3, 0], maxval=255.0)
    logs = model.compute_pretext({"clips": clips, "pace": tf.constant([[0, 1], [2, 3]])}, training=False)
    np.testing.assert_allclose(logs["loss"], 2.0 * logs["cls_loss"] + 0.5 * logs["ctr_loss"], rtol=1e-6)
    outputs = model(tf.reshape(clips, [4, 4, 16, 16, 3]), training=False)
    assert outputs["contrastive_features"].shape == (4, 3) and outputs["logits"].dtype == tf.float32


def test_a_few_steps_on_a_fixed_batch_learn_both_terms(tiny_models):
    keras.utils.set_random_seed(0)
    model = tiny_models("same_context", weight_decay=5e-3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    clips = tf.random.stateless_uniform([4, 2, 4, 16, 16, 3], [5, 0], maxval=255.0)
    batch = {"clips": clips, "pace": tf.constant([[0, 1], [2, 3], [1, 2], [3, 0]])}
    first = model.compute_pretext(batch, training=True)
    for _ in range(10):
        assert float(model.train_step(batch)["finite"]) == 1.0
    last = model.compute_pretext(batch, training=True)
    assert float(last["cls_loss"]) < 0.5 * float(first["cls_loss"])
    assert float(last["ctr_loss"]) < 0.5 * float(first["ctr_loss"])
    assert float(last["accuracy"]) == 1.0


# ----------------------------------------------------------------------------------------
# Encoder and preprocessing
# ----------------------------------------------------------------------------------------


def test_encoder_pools_the_last_two_stages_in_inference(tiny_models):
    encoder = tiny_models("none").build_encoder()
    clips = tf.random.stateless_normal([3, 4, 16, 16, 3], [4, 0])
    out = encoder(clips)
    assert out["p4"].shape == (3, 256) and out["p5"].shape == (3, 512)
    np.testing.assert_allclose(out["p5"], out["embedding"])
    pooled = tf.reduce_mean(out["feature_map"], axis=[1, 2, 3])
    np.testing.assert_allclose(out["p5"], pooled, rtol=1e-5, atol=1e-6)
    # BatchNorm uses its moving statistics: a clip's features do not depend on the batch.
    np.testing.assert_allclose(encoder(clips[:1])["p4"], out["p4"][:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bgr, expected", [(False, [10, 100, 200]), (True, [200, 100, 10])])
def test_eval_clip_is_raw_0_255_and_bgr_on_request(bgr, expected):
    method = make_method("--clip_length=2", "--resolution=8", "--frame_size=12,16", f"--pace_bgr={bgr}")
    frames = np.tile(np.array([10, 100, 200], np.uint8), (2, 30, 40, 1))
    clip = method.eval_clip(tf.constant(frames)).numpy()
    assert clip.shape == method.clip_shape() == (2, 8, 8, 3)
    np.testing.assert_allclose(clip, np.broadcast_to(np.float32(expected), clip.shape))


def test_batch_augment_jitters_every_frame_with_its_own_draw_and_keeps_0_255():
    method = make_method("--clip_length=4", "--resolution=8", "--frame_size=12,16", "--pace_color_jitter=0.8,0,0,0")
    clips = tf.fill([2, 2, 4, 8, 8, 3], tf.constant(100, tf.uint8))  # [B, K, T, R, R, 3]
    identity = tf.eye(8, batch_shape=[2, 2])  # The resize plans of windows already cropped.
    batch = {
        "clips": clips, "rows": identity, "cols": identity, "pace": tf.constant([[0, 1], [2, 3]]),
        "color_seed": tf.constant([[1, 2], [3, 4]]),
    }
    out = method.batch_augment(batch)
    assert out["clips"].shape == clips.shape and out["clips"].dtype == tf.float32
    np.testing.assert_array_equal(out["pace"], batch["pace"])
    brightness = out["clips"].numpy().mean(axis=(3, 4, 5)).reshape(-1) / 100  # One per frame.
    # Brightness factors uniform in [0.2, 1.8]; a frame is left alone with probability 0.2.
    assert len(np.unique(np.round(brightness, 4))) > 10 and 0.2 <= brightness.min() and brightness.max() <= 1.8
    # Without jitter the clips are the decoded 0-255 values, as the authors' loader feeds them.
    plain = make_method("--clip_length=4", "--resolution=8", "--frame_size=12,16", "--pace_jitter_prob=0")
    np.testing.assert_allclose(plain.batch_augment(batch)["clips"], 100.0, atol=1e-3)
