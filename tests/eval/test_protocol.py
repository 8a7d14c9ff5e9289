"""The test-time protocol: views of a video, aggregation, metrics and late fusion, against
brute-force NumPy computations; label fractions."""

import types

import numpy as np
import pytest
import tensorflow as tf

from tfvssl.eval import inputs, protocol
from tfvssl.methods import dpc


def brute_softmax(row):
    e = np.exp(row - row.max())
    return e / e.sum()


# Three videos: 3, 2 and 4 windows, one crop each; 4 classes.
VIEW_LOGITS = np.array([
    [2.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 3.0, 0.1, 0.0],  # video 0, label 1
    [0.0, 0.0, 5.0, 0.0], [1.0, 0.0, 0.0, 0.0],                        # video 1, label 0
    [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [9.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.5],  # video 2, label 3
])
VIDEOS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
CLIPS = np.array([0, 1, 2, 0, 1, 0, 1, 2, 3])
LABELS = np.array([1, 1, 1, 0, 0, 3, 3, 3, 3])
NAMES = ["a", "b", "c", "d"]


def test_video_level_accuracy_is_that_of_the_mean_of_the_windows_softmax():
    results = protocol.evaluate(VIEW_LOGITS, VIDEOS, CLIPS, LABELS, NAMES, ["v0", "v1", "v2"], "softmax")
    expected, hits = [], []
    for video, label in ((0, 1), (1, 0), (2, 3)):
        mean = np.mean([brute_softmax(row) for row in VIEW_LOGITS[VIDEOS == video]], axis=0)
        expected.append(mean)
        hits.append(np.argmax(mean) == label)
    got = np.array([v["probabilities"] for v in results["videos"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # Video 1: mean probabilities 0.58 for class 2, 0.24 for its class 0: wrong. Video 2: one
    # confident class-0 window (0.9996) loses to three class-3 windows (0.39 vs 0.37): right.
    assert hits == [True, False, True]
    assert results["video_level"]["top1"] == pytest.approx(2 / 3)
    # Clip level: 9 clips, correct ones: v0 clips 1, 2; v1 clip 1; v2 clips 0, 1, 3.
    assert results["clip_level"]["top1"] == pytest.approx(6 / 9)
    assert results["num_videos"] == 3 and results["num_clips"] == 9


def test_logit_averaging_differs_and_matches_brute_force():
    results = protocol.evaluate(VIEW_LOGITS, VIDEOS, CLIPS, LABELS, NAMES, ["v0", "v1", "v2"], "logits")
    for video, entry in enumerate(results["videos"]):
        mean_logits = VIEW_LOGITS[VIDEOS == video].mean(axis=0)
        np.testing.assert_allclose(entry["probabilities"], brute_softmax(mean_logits), atol=1e-6)
    # Video 2's mean logits favour the confident window's class 0 (2.25 > 0.875): wrong now.
    assert results["video_level"]["top1"] == pytest.approx(1 / 3)


def test_crops_are_averaged_within_a_clip_before_clip_level_scoring():
    # One video, two clips, two crops each; clip 0's crops disagree.
    logits = np.array([[4.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 2.0]])
    results = protocol.evaluate(
        logits, [0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1], ["x", "y"], ["v"], "softmax"
    )
    # Clip 0: mean softmax favours class 0 (wrong); clip 1 right.
    assert results["clip_level"]["top1"] == 0.5
    assert results["num_clips"] == 2 and results["num_views"] == 4


def test_top5_per_class_accuracy_and_confusion_matrix():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(7), size=40)
    labels = rng.integers(0, 6, size=40)  # Class 6 has no videos.
    metrics = protocol.video_metrics(probabilities, labels, [str(c) for c in range(7)])
    top5 = [label in np.argsort(-p)[:5] for p, label in zip(probabilities, labels)]
    assert metrics["top5"] == pytest.approx(np.mean(top5))
    predictions = probabilities.argmax(axis=1)
    matrix = np.array(metrics["confusion_matrix"])
    for true in range(7):
        for predicted in range(7):
            assert matrix[true, predicted] == np.sum((labels == true) & (predictions == predicted))
    for c in range(6):
        assert metrics["per_class_accuracy"][str(c)] == pytest.approx(np.mean(predictions[labels == c] == c))
    assert metrics["per_class_accuracy"]["6"] is None
    per_class = [np.mean(predictions[labels == c] == c) for c in range(6)]
    assert metrics["mean_class_accuracy"] == pytest.approx(np.mean(per_class))


def test_late_fusion_averages_the_streams_probabilities_by_filename():
    rgb = protocol.evaluate(VIEW_LOGITS, VIDEOS, CLIPS, LABELS, NAMES, ["v0", "v1", "v2"])
    flow_logits = np.roll(VIEW_LOGITS, 1, axis=1)
    flow = protocol.evaluate(flow_logits, VIDEOS, CLIPS, LABELS, NAMES, ["v0", "v1", "v2"])
    flow["videos"] = flow["videos"][::-1]  # Order must not matter.
    fused = protocol.fuse(rgb, flow)
    by_name = {v["filename"]: np.array(v["probabilities"]) for v in flow["videos"]}
    for video in fused["videos"]:
        mine = next(v for v in rgb["videos"] if v["filename"] == video["filename"])
        mean = (np.array(mine["probabilities"]) + by_name[video["filename"]]) / 2
        np.testing.assert_allclose(video["probabilities"], mean, atol=1e-6)
    assert "clip_level" not in fused and fused["fused_with"]["this"] == rgb["video_level"]["top1"]
    flow["videos"] = flow["videos"][1:]
    with pytest.raises(ValueError, match="--fuse_with"):
        protocol.fuse(rgb, flow)


def tiny_method(**overrides):
    config = dict(
        num_blocks=4, block_length=2, frame_stride=3, resolution=16, crop_fraction=0.875, modality="rgb"
    )
    config.update(overrides)
    return dpc.DPC(types.SimpleNamespace(**config))


def test_test_clips_are_half_overlapping_windows_or_uniform_clips():
    method = tiny_method()  # 8 frames at stride 3: a window spans 22 frames.
    # Half overlap: DPC's stride of N // 2 blocks = 2 * 2 * 3 = 12 frames.
    windows = inputs.clip_indices(tf.constant(70), method, inputs.Views("windows")).numpy()
    brute = [[s + 3 * k for k in range(8)] for s in range(0, 70 - 22 + 1, 12)]
    np.testing.assert_array_equal(windows, brute)
    # MemDPC's code: N * L * ds // 2 - 1 = 11 frames, given explicitly.
    memdpc_windows = inputs.clip_indices(tf.constant(70), method, inputs.Views("windows", window_stride=11)).numpy()
    np.testing.assert_array_equal(memdpc_windows[:, 0], np.arange(0, 70 - 22 + 1, 11))
    uniform = inputs.clip_indices(tf.constant(70), method, inputs.Views("uniform", num_clips=4)).numpy()
    starts = [k * (70 - 22) // 3 for k in range(4)]
    np.testing.assert_array_equal(uniform, [[s + 3 * k for k in range(8)] for s in starts])
    center = inputs.center_clip_indices(tf.constant(70), method).numpy()
    np.testing.assert_array_equal(center, (70 - 22) // 2 + 3 * np.arange(8))
    short = inputs.clip_indices(tf.constant(10), method, inputs.Views("windows")).numpy()
    np.testing.assert_array_equal(short, [np.minimum(3 * np.arange(8), 9)])


def test_ten_crops_are_five_crops_and_their_mirror_images():
    method = tiny_method()
    frames = tf.constant(np.random.default_rng(0).integers(0, 256, [8, 24, 32, 3]), tf.uint8)
    ten = inputs.crop_views(method, frames, inputs.Views(num_crops=10, crop_fraction=0.75)).numpy()
    assert ten.shape == (10, 8, 16, 16, 3)
    np.testing.assert_array_equal(ten[5:], ten[:5, :, :, ::-1])
    # Crop 5 is the centre 18 x 18 window (0.75 of 24), resized and normalised.
    center = tf.image.resize(frames[:, 3:21, 7:25], [16, 16], "nearest")
    np.testing.assert_allclose(ten[4], method.normalize(center), atol=1e-6)
    one = inputs.crop_views(method, frames, inputs.Views(num_crops=1)).numpy()
    np.testing.assert_allclose(one[0], method.eval_clip(frames), atol=1e-6)
    with pytest.raises(ValueError, match="--num_crops=4"):
        inputs.Views(num_crops=4)


def test_label_fraction_is_stratified_and_seeded():
    labels = np.repeat(np.arange(5), [10, 20, 30, 3, 1])
    chosen = inputs.select_fraction(labels, 0.1, seed=3)
    assert np.bincount(labels[chosen], minlength=5).tolist() == [1, 2, 3, 1, 1]
    np.testing.assert_array_equal(chosen, inputs.select_fraction(labels, 0.1, seed=3))
    assert not np.array_equal(inputs.select_fraction(labels, 0.5, seed=3), inputs.select_fraction(labels, 0.5, seed=4))
    assert len(inputs.select_fraction(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError, match="--label_fraction=0"):
        inputs.select_fraction(labels, 0.0, seed=0)
