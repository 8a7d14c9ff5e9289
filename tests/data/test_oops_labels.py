"""Oops labelling as the authors' code does it: validity filter, clips, labels, oversampling,
windows, border trimming. The `authors_*` helpers transcribe the conditions of
`cvlab-columbia/oops` `dataloader.py` literally, as references."""

import statistics

import numpy as np
import pytest
import tensorflow as tf

from tfvssl.data import oops_labels


def authors_keep(annotation):
    """The authors' filter (a video is dropped when this is False)."""
    t_fail = sorted(annotation["t"])[len(annotation["t"]) // 2]
    return not (
        t_fail < 0 or not 0.01 <= statistics.median(annotation["rel_t"]) <= 0.99
        or annotation["len"] < 3.2 or annotation["len"] > 30
    )


def authors_labels(starts, ends, t_fail):
    """The authors' labels: index ranges from the first clip holding t_fail."""
    prev_label, first_one, first_two = 0, len(starts), len(starts)
    for index, (t_start, t_end) in enumerate(zip(starts, ends)):
        label = 1 if t_start <= t_fail <= t_end else 2 if t_start > t_fail else 0
        if label == 1 and prev_label == 0:
            first_one = index
        elif label == 2 and prev_label == 1:
            first_two = index
            break
        prev_label = label
    return [0] * first_one + [1] * (first_two - first_one) + [2] * (len(starts) - first_two)


def authors_added(counts):
    """Duplicates the authors add to each label of one video."""
    ratios = (1, 0.93, 1 / 0.93)
    mode = max((0, 1, 2), key=lambda i: counts[i])
    added = [0, 0, 0]
    for i in (0, 1, 2):
        if i != mode and counts[i] > 0:
            # A negative number adds nothing (their list slice `[:n]` of an empty list).
            added[i] = max(0, round(counts[i] * ((counts[mode] * ratios[i] / counts[i]) - 1)))
    return added


# ---- Validity filter ---------------------------------------------------------------------------


@pytest.mark.parametrize("annotation, kept", [
    ({"t": [2.0, 2.5, 3.0], "rel_t": [0.2, 0.25, 0.3], "len": 10.0}, True),
    # Duration bounds are inclusive.
    ({"t": [1.0], "rel_t": [0.3], "len": 3.2}, True),
    ({"t": [1.0], "rel_t": [0.3], "len": 3.19}, False),
    ({"t": [1.0], "rel_t": [0.1], "len": 30.0}, True),
    ({"t": [1.0], "rel_t": [0.1], "len": 30.01}, False),
    # Relative time bounds are inclusive.
    ({"t": [0.1], "rel_t": [0.01], "len": 10.0}, True),
    ({"t": [0.1], "rel_t": [0.0099], "len": 10.0}, False),
    ({"t": [9.9], "rel_t": [0.99], "len": 10.0}, True),
    ({"t": [9.95], "rel_t": [0.995], "len": 10.0}, False),
    # The failure time is the upper median of all times, absent (-1) ones included...
    ({"t": [-1.0, -1.0, 2.0], "rel_t": [-1.0, -1.0, 0.2], "len": 10.0}, False),
    ({"t": [-1.0, 2.0, 3.0], "rel_t": [-1.0, 0.2, 0.3], "len": 10.0}, True),
    # ... but the relative time is the plain median of all: (-1 + 0.2) / 2 < 0.01.
    ({"t": [2.0, -1.0], "rel_t": [0.2, -1.0], "len": 10.0}, False),
    ({"t": [2.0, 3.0], "rel_t": [0.005, 0.02], "len": 10.0}, True),  # Median 0.0125.
    ({"t": [2.0, 3.0], "rel_t": [0.001, 0.015], "len": 10.0}, False),  # Median 0.008.
])
def test_validity_filter_on_hand_made_annotations(annotation, kept):
    assert authors_keep(annotation) == kept
    assert oops_labels.annotation_is_valid(annotation) == kept


def test_validity_filter_drops_exactly_what_the_authors_drop():
    rng = np.random.default_rng(0)
    annotations = []
    for _ in range(2000):
        duration = float(rng.choice([rng.uniform(1, 40), 3.2, 30.0]))
        times = [float(t) if rng.uniform() < 0.8 else -1.0 for t in rng.uniform(-0.5, duration, rng.integers(1, 6))]
        rel_t = [t / duration if t >= 0 else -1.0 for t in times]
        annotations.append({"t": times, "rel_t": rel_t, "len": duration})

    ours = [oops_labels.annotation_is_valid(a) for a in annotations]
    theirs = [authors_keep(a) for a in annotations]

    assert ours == theirs
    assert 0.2 < np.mean(theirs) < 0.8  # The sample exercises both outcomes.


def test_validity_filter_on_tensors():
    kept = oops_labels.is_valid(
        tf.constant([1.0, -1.0, 1.0, 1.0]), tf.constant([0.5, 0.5, 0.995, 0.5]), tf.constant([10.0, 10.0, 10.0, 40.0])
    )

    assert kept.numpy().tolist() == [True, False, False, False]


# ---- Clips and labels ----------------------------------------------------------------------------


def test_clip_grid_at_16_fps_is_16_frames_every_4():
    grid = oops_labels.clip_grid(64, 16.0)

    assert grid["frames"].shape == (13, 16)  # (64 - 16) // 4 + 1
    np.testing.assert_array_equal(grid["frames"][0], np.arange(16))
    np.testing.assert_array_equal(grid["frames"][1], np.arange(4, 20))
    np.testing.assert_allclose(grid["start"][:3], [0.0, 0.25, 0.5])
    np.testing.assert_allclose(grid["end"][:3], np.array([15, 19, 23]) / 16)


def test_clip_grid_resamples_other_frame_rates_as_torchvision():
    grid = oops_labels.clip_grid(128, 25.0)  # floor(128 * 16 / 25) = 81 resampled frames.

    assert grid["frames"].shape == (17, 16)
    # Resampled frame r is source frame floor(r * 25 / 16).
    np.testing.assert_array_equal(grid["frames"][1], np.floor(np.arange(4, 20) * 25 / 16).astype(int))
    np.testing.assert_allclose(grid["start"][1], 6 / 25)
    np.testing.assert_allclose(grid["end"][1], 29 / 25)
    assert oops_labels.clip_grid(64, 32.0)["frames"][1, :3].numpy().tolist() == [8, 10, 12]
    assert oops_labels.clip_grid(15, 16.0)["frames"].shape == (0, 16)  # Shorter than a clip.


@pytest.mark.parametrize("t_fail, expected", [
    (1.0, [0, 1, 1, 1, 1, 2, 2, 2]),  # Clip 4 starts at 1.0: still transitional.
    (0.9375, [1, 1, 1, 1, 2, 2, 2, 2]),  # Clip 0 ends at 15/16: transitional.
    (0.94, [0, 1, 1, 1, 2, 2, 2, 2]),  # Just after clip 0's last frame.
    (0.0, [1, 2, 2, 2, 2, 2, 2, 2]),
    (3.0, [0, 0, 0, 0, 0, 0, 0, 0]),  # After the last clip ends (8 clips: 2.69 s).
])
def test_labels_from_the_failure_time_at_the_boundaries(t_fail, expected):
    grid = oops_labels.clip_grid(44, 16.0)  # 8 clips.

    labels = oops_labels.clip_labels(grid["start"], grid["end"], t_fail)

    assert labels.numpy().tolist() == expected
    assert expected == authors_labels(grid["start"].numpy(), grid["end"].numpy(), t_fail)


def test_labels_match_the_authors_index_ranges_on_random_videos():
    rng = np.random.default_rng(1)
    for _ in range(200):
        fps = float(rng.choice([16.0, 25.0, 29.97, 30.0, 12.0]))
        num_frames = int(rng.integers(20, 400))
        grid = oops_labels.clip_grid(num_frames, fps)
        t_fail = float(rng.uniform(0, num_frames / fps))

        ours = oops_labels.clip_labels(grid["start"], grid["end"], t_fail).numpy().tolist()

        assert ours == authors_labels(grid["start"].numpy(), grid["end"].numpy(), t_fail)


def test_step_frames_are_a_pretraining_block_from_the_clip_start():
    clip = tf.constant([[100 + (25 * r) // 16 for r in range(16)]])  # A 25 fps video's clip.

    # MemDPC's blocks, 5 frames 3 apart: 0.6 s of the 25 fps video, not 5 of the 16 spread
    # over the clip's second.
    assert oops_labels.step_frames(clip, 5, 3, 1000).numpy().tolist() == [[100, 103, 106, 109, 112]]
    assert oops_labels.step_frames(clip, 4, 6, 1000).numpy().tolist() == [[100, 106, 112, 118]]
    assert oops_labels.step_frames(clip, 16, 1, 1000).numpy().tolist() == [list(range(100, 116))]
    assert oops_labels.step_frames(clip, 4, 6, 110).numpy().tolist() == [[100, 106, 109, 109]]  # Video end.


# ---- Oversampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("counts, expected", [
    ((20, 4, 30), (30, 28, 30)),  # Mode 2: label 0 to 30 * 1, label 1 to round(30 * 0.93).
    ((30, 4, 20), (30, 28, 32)),  # Mode 0: label 2 to round(30 / 0.93) = 32.
    ((10, 0, 10), (10, 0, 11)),  # Tie: the first label is the mode; absent labels stay absent.
    ((0, 3, 0), (0, 3, 0)),
    ((5, 5, 0), (5, 5, 0)),  # round(5 * 0.93) = 5: nothing to add.
    ((4, 4, 3), (4, 4, 4)),  # round(4 * 0.93) = 4 = the count: label 1 unchanged.
])
def test_oversampled_counts_on_hand_made_videos(counts, expected):
    assert tuple(oops_labels.oversampled_counts(counts).numpy()) == expected
    assert tuple(np.add(counts, authors_added(counts))) == expected


def test_oversampled_counts_match_the_authors_expression():
    rng = np.random.default_rng(2)
    oversampled_counts = tf.function(oops_labels.oversampled_counts)
    for counts in rng.integers(0, 60, size=(2000, 3)):
        counts = [int(c) for c in counts]
        ours = oversampled_counts(tf.constant(counts)).numpy().tolist()
        assert ours == np.add(counts, authors_added(counts)).tolist()


def test_oversample_duplicates_each_label_cycling_through_its_clips():
    labels = tf.constant([0] * 6 + [1] * 2 + [2] * 10)

    pool = oops_labels.oversample(labels, tf.constant([3, 4])).numpy()

    np.testing.assert_array_equal(pool[:18], np.arange(18))  # The clips themselves first.
    assert np.bincount(labels.numpy()[pool], minlength=3).tolist() == [10, 9, 10]
    # 7 duplicates of label 1's two clips: 4 of one, 3 of the other.
    assert sorted(np.bincount(pool[18:][labels.numpy()[pool[18:]] == 1])[6:8].tolist()) == [3, 4]
    again = oops_labels.oversample(labels, tf.constant([3, 4])).numpy()
    np.testing.assert_array_equal(pool, again)


def test_training_clips_draw_from_one_pool_in_every_epoch():
    labels = tf.constant([0] * 6 + [1] * 2 + [2] * 10)  # A pool of 29: 7 duplicates of label 1's 2 clips.

    def pool(pool_seed, epoch):  # All of it: more clips per video than the pool holds.
        clips = oops_labels.training_clips(labels, tf.constant([pool_seed, 0]), tf.constant([epoch, 1]), 100)
        return sorted(clips.numpy())

    first = pool(pool_seed=0, epoch=0)
    assert len(first) == 29
    assert all(pool(pool_seed=0, epoch=epoch) == first for epoch in range(1, 10))  # The authors oversample once.
    assert any(pool(pool_seed=seed, epoch=0) != first for seed in range(1, 10))


def _sample_videos(num_videos, seed):
    """Labels of random videos: 4-20 s at 30 fps, failure in the middle 80%."""
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(num_videos):
        num_frames = int(rng.uniform(4, 20) * 30)
        grid = oops_labels.clip_grid(num_frames, 30.0)
        t_fail = rng.uniform(0.1, 0.9) * num_frames / 30
        videos.append(oops_labels.clip_labels(grid["start"], grid["end"], t_fail).numpy())
    return videos


def test_oversampling_ratios_hold_on_a_sample():
    videos = _sample_videos(60, seed=3)
    draw = tf.function(oops_labels.training_clips, reduce_retracing=True)
    expected, drawn = np.zeros(3), np.zeros(3)
    for index, labels in enumerate(videos):
        counts = np.bincount(labels, minlength=3)
        pool = oops_labels.oversampled_counts(counts).numpy()
        mode = int(np.argmax(counts))
        for label in range(3):  # Each label present reaches count_mode * ratio, up to rounding.
            if label != mode and counts[label]:
                target = counts[mode] * oops_labels.OVERSAMPLING_RATIOS[label]
                assert abs(pool[label] - max(target, counts[label])) <= 0.5
        # An epoch draws min(10, K') of the K' pool clips without replacement.
        expected += pool * min(oops_labels.CLIPS_PER_VIDEO, pool.sum()) / pool.sum()
        for epoch in range(50):
            clips = draw(labels, tf.constant([index, 0]), tf.constant([index, epoch])).numpy()
            assert len(clips) == min(oops_labels.CLIPS_PER_VIDEO, pool.sum())
            drawn += np.bincount(labels[clips], minlength=3)

    np.testing.assert_allclose(drawn / drawn.sum(), expected / expected.sum(), atol=0.01)
    natural = np.bincount(np.concatenate(videos), minlength=3) / sum(len(v) for v in videos)
    assert drawn[1] / drawn.sum() > 2 * natural[1]  # Transitional clips are oversampled.


# ---- Windows -----------------------------------------------------------------------------------------


def test_window_clips_are_one_second_apart_and_masked_past_the_end():
    windows = oops_labels.window_clips([0, 3, 10], num_clips=12, num_steps=3)

    assert windows.numpy().tolist() == [[0, 4, 8], [3, 7, 11], [10, -1, -1]]


def test_padded_windows_start_before_the_video_and_mask_those_steps():
    assert oops_labels.window_clips([-8, -1], num_clips=12, num_steps=3).numpy().tolist() == [[-1, -1, 0], [-1, 3, 7]]
    assert oops_labels.evaluation_window_starts(5, 3).numpy().tolist() == [0, 1, 2, 3, 4]
    assert oops_labels.evaluation_window_starts(5, 3, padded=True).numpy().tolist() == list(range(-8, 5))

    starts = np.array([
        oops_labels.window_starts([0, 16, 3], 4, tf.constant([0, s]), padded=True).numpy() for s in range(200)
    ])
    for anchor, column in zip([0, 16, 3], starts.T):  # Any of the 4 steps, whatever the clip's time.
        assert set(column) == {anchor, anchor - 4, anchor - 8, anchor - 12}
        assert np.bincount((anchor - column) // 4).min() > 30


def test_window_starts_on_hand_made_cases():
    starts = np.array([oops_labels.window_starts([0, 16, 8, 3], 4, tf.constant([0, s])).numpy() for s in range(200)])

    assert set(starts[:, 0]) == {0}  # Only step 0 starts in the video.
    assert set(starts[:, 1]) == {16, 12, 8, 4}  # Any of the 4 steps.
    assert set(starts[:, 2]) == {8, 4, 0}
    assert set(starts[:, 3]) == {3}
    assert np.bincount(starts[:, 1] // 4)[1:].min() > 30  # Uniform over the steps.


def test_training_windows_hold_their_drawn_clip_and_start_in_the_video():
    rng = np.random.default_rng(4)
    for trial in range(200):
        labels = np.sort(rng.integers(0, 3, size=rng.integers(1, 40)))
        num_steps = int(rng.integers(1, 6))

        pool_seed, seed = tf.constant([trial, 1]), tf.constant([trial, 0])
        clips, anchor_labels = oops_labels.training_windows(labels, num_steps, pool_seed, seed)
        same_clips, window_labels = oops_labels.training_windows(labels, num_steps, pool_seed, seed, every_step=True)

        clips, anchor_labels, window_labels = clips.numpy(), anchor_labels.numpy(), window_labels.numpy()
        np.testing.assert_array_equal(clips, same_clips)
        assert clips.shape == (min(oops_labels.CLIPS_PER_VIDEO, len(oops_labels.oversample(labels, [0, 0]))), num_steps)
        assert np.all(clips[:, 0] >= 0) and np.all(np.diff(clips, axis=1)[clips[:, 1:] >= 0] == oops_labels.STEP_CLIPS)
        np.testing.assert_array_equal(window_labels, np.where(clips >= 0, labels[np.maximum(clips, 0)], -1))
        assert np.all((clips < len(labels)) & ((clips >= 0) | (window_labels == -1)))
        # By default only the drawn clip's step has a label: the loss sees the oversampled
        # clips, in the oversampled balance, and nothing else.
        draw_seed = tf.random.experimental.stateless_split(seed, 2)[0]
        drawn = oops_labels.training_clips(labels, pool_seed, draw_seed).numpy()
        assert np.all(np.sum(anchor_labels >= 0, axis=1) == 1)
        np.testing.assert_array_equal(clips[anchor_labels >= 0], drawn)
        np.testing.assert_array_equal(anchor_labels[anchor_labels >= 0], labels[drawn])


# ---- Frames and tf.data ---------------------------------------------------------------------------


def test_trim_borders():
    frames = tf.reshape(tf.range(20), [1, 1, 20, 1])

    assert oops_labels.trim_borders(frames, 0.1, 0.9).shape == (1, 1, 16, 1)
    assert oops_labels.trim_borders(frames, 0.125, 0.875)[0, 0, :, 0].numpy().tolist() == list(range(2, 18))
    assert oops_labels.trim_borders(frames, 0.0, 0.9).shape == (1, 1, 20, 1)  # Given only when both are.
    # round() halves to even, as Python's: 10 * 0.25 = 2.5 -> 2, 10 * 0.75 = 7.5 -> 8.
    assert oops_labels.trim_borders(frames[:, :, :10], 0.25, 0.75).shape == (1, 1, 6, 1)


def test_labels_and_training_clips_are_the_same_inside_tf_data():
    cases = [(200, 30.0, 2.5), (81, 16.0, 1.0), (300, 25.0, 7.9)]

    def label_and_draw(num_frames, fps, t_fail):
        grid = oops_labels.clip_grid(num_frames, fps)
        labels = oops_labels.clip_labels(grid["start"], grid["end"], t_fail)
        return labels, oops_labels.training_clips(labels, tf.constant([1, 2]), tf.constant([3, 4]))

    dataset = tf.data.Dataset.from_tensor_slices(tuple(np.array(c) for c in zip(*cases))).map(label_and_draw)
    for (labels, clips), case in zip(dataset, cases):
        eager_labels, eager_clips = label_and_draw(*case)
        np.testing.assert_array_equal(labels, eager_labels)
        np.testing.assert_array_equal(clips, eager_clips)
