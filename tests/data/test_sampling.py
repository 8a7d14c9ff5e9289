"""Tests of the frame-index samplers: exact indices, ranges of random starts, short videos,
the authors' conventions (DPC/MemDPC windows, VCOP centres and labels, Pace's wrap-around),
and each sampler eagerly and inside a `tf.data` map."""

import collections
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from tfvssl.data import sampling


def seed_of(i):
    return tf.constant([i, 7], tf.int64)


def sample_many(sampler, num_seeds):
    """Runs `sampler(seed)` for seeds `[i, 7]`, i < num_seeds, inside a tf.data map."""
    seeds = tf.data.Dataset.range(num_seeds).map(lambda i: tf.stack([i, tf.constant(7, tf.int64)]))
    batch = next(iter(seeds.map(sampler).batch(num_seeds)))
    batch = tf.nest.map_structure(lambda t: t.numpy(), batch)
    return [tf.nest.map_structure(lambda t: t[i], batch) for i in range(num_seeds)]


# ----------------------------------------------------------------------------------------
# Blocks, segments, clips
# ----------------------------------------------------------------------------------------


def test_blocks_span_matches_dpc_defaults():
    assert sampling.blocks_span(8, 5, 3) == 118
    assert sampling.blocks_span(8, 5, 5) == 196
    assert sampling.blocks_span(2, 3, 1) == 6


def test_sample_blocks_exact_grid_and_every_start_reachable():
    num_frames, span = 20, sampling.blocks_span(2, 3, 2)  # 11 frames
    starts = collections.Counter()
    for indices in sample_many(lambda s: sampling.sample_blocks(num_frames, 2, 3, 2, s), 300):
        assert indices.dtype == np.int32 and indices.shape == (2, 3)
        start = indices[0, 0]
        np.testing.assert_array_equal(indices, start + 2 * np.arange(6).reshape(2, 3))
        starts[start] += 1
    assert sorted(starts) == list(range(num_frames - span + 1))
    # 300 draws over 10 starts: each start within a wide band around 30.
    assert min(starts.values()) >= 12 and max(starts.values()) <= 50


def test_sample_blocks_short_video_is_clamped_to_last_frame():
    indices = sampling.sample_blocks(7, 2, 3, 2, seed_of(0)).numpy()
    np.testing.assert_array_equal(indices, [[0, 2, 4], [6, 6, 6]])


def test_sample_blocks_exact_fit_has_one_start():
    span = sampling.blocks_span(8, 5, 3)
    for i in range(5):
        indices = sampling.sample_blocks(span, 8, 5, 3, seed_of(i)).numpy()
        np.testing.assert_array_equal(indices.ravel(), 3 * np.arange(40))


def test_same_seed_same_indices_and_seeds_differ():
    first = sampling.sample_blocks(500, 8, 5, 3, seed_of(3)).numpy()
    again = sampling.sample_blocks(tf.constant(500, tf.int64), 8, 5, 3, seed_of(3)).numpy()
    np.testing.assert_array_equal(first, again)
    others = {int(sampling.sample_blocks(500, 8, 5, 3, seed_of(i))[0, 0]) for i in range(10)}
    assert len(others) > 5


def test_sample_segments_half_overlap_by_default():
    assert sampling.segments_span(10, 10) == 55
    assert sampling.segments_span(3, 4) == 8
    assert sampling.segments_span(3, 4, stride=4) == 12
    assert sampling.segments_span(3, 1) == 3  # a 1-frame segment still advances
    for indices in sample_many(lambda s: sampling.sample_segments(30, 3, 4, s), 50):
        start = indices[0, 0]
        expected = start + np.array([[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]])
        np.testing.assert_array_equal(indices, expected)
        assert 0 <= start <= 30 - 8


def test_sample_segments_custom_stride_and_short_video():
    indices = sampling.sample_segments(10, 3, 4, seed_of(1), stride=4).numpy()
    np.testing.assert_array_equal(indices, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9]])


def test_sample_clip_stride_and_range():
    assert sampling.clip_span(16) == 16
    assert sampling.clip_span(16, stride=2) == 31
    starts = set()
    for indices in sample_many(lambda s: sampling.sample_clip(20, 4, s, stride=2), 200):
        np.testing.assert_array_equal(indices, indices[0] + 2 * np.arange(4))
        starts.add(int(indices[0]))
    assert starts == set(range(20 - 7 + 1))
    np.testing.assert_array_equal(sampling.sample_clip(3, 5, seed_of(0)), [0, 1, 2, 2, 2])


def test_num_frames_below_one_fails_with_message():
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_frames must be at least 1"):
        sampling.sample_clip(0, 4, seed_of(0))


@pytest.mark.parametrize(
    "sampler, args, message",
    [
        (sampling.sample_blocks, (50, 0, 5, 3, seed_of(0)), "num_blocks must be a positive"),
        (sampling.sample_segments, (50, 3, 4, seed_of(0), 0), "stride must be a positive integer"),
        (sampling.sample_clip, (50, 2.5, seed_of(0)), "clip_length must be a positive integer"),
        (sampling.sample_pace, (50, 16, [1, 0], seed_of(0)), "a pace must be a positive number"),
        (sampling.sample_pace, (50, 16, [], seed_of(0)), "paces must not be empty"),
        (sampling.sample_vcop_tuple, (80, 16, -1, 3, seed_of(0)), "interval must be a non-neg"),
        (sampling.vcop_permutations, (6,), "tuple_length must be 2, 3, 4 or 5"),
        (sampling.sliding_windows, (50, 10, 0), "window_stride must be a positive integer"),
        (sampling.uniform_clips, (50, 16, 0), "num_clips must be a positive integer"),
    ],
)
def test_bad_arguments_raise(sampler, args, message):
    with pytest.raises(ValueError, match=message):
        sampler(*args)


def test_random_index_range_and_empty_range():
    draws = sampling.random_index(seed_of(0), 5, shape=[1000]).numpy()
    assert draws.dtype == np.int32
    np.testing.assert_array_equal(np.unique(draws), np.arange(5))
    assert np.bincount(draws).min() >= 160
    np.testing.assert_array_equal(sampling.random_index(seed_of(0), -3, shape=[4]), 0)


def test_split_seed_gives_distinct_reproducible_seeds():
    seeds = [s.numpy() for s in sampling.split_seed(seed_of(0), 3)]
    assert len({tuple(s) for s in seeds}) == 3 and all(s.shape == (2,) for s in seeds)
    np.testing.assert_array_equal(seeds, sampling.split_seed(seed_of(0), 3))


# ----------------------------------------------------------------------------------------
# Pace
# ----------------------------------------------------------------------------------------


def authors_pace_clip(num_frames, clip_length, pace, start, wrap):
    """The authors' loop (0-based), generalised to slow paces by floor(k * pace)."""
    if not wrap:
        offsets = [math.floor(k * pace + 1e-9) for k in range(clip_length)]
        return [min(start + offset, num_frames - 1) for offset in offsets]
    indices, run_start, j = [], start, 0
    for _ in range(clip_length):
        indices.append(run_start + math.floor(j * pace + 1e-9))
        if run_start + math.floor((j + 1) * pace + 1e-9) > num_frames - 1:
            run_start, j = 0, 0
        else:
            j += 1
    return indices


@pytest.mark.parametrize("pace", [1, 2, 3, 4, 1 / 2, 1 / 3])
@pytest.mark.parametrize("num_frames", [9, 30, 70])
def test_pace_clip_wraps_like_the_authors_code(pace, num_frames):
    starts = set()
    for indices in sample_many(lambda s: sampling.sample_pace_clip(num_frames, 16, pace, s), 120):
        start = int(indices[0])
        starts.add(start)
        expected = authors_pace_clip(num_frames, 16, pace, start, wrap=True)
        np.testing.assert_array_equal(indices, expected)
    # The start is uniform over all frames.
    assert min(starts) == 0 and max(starts) == num_frames - 1


def test_pace_clip_paper_examples():
    # Slow pace 1/2 fills the skipped slots with the preceding frame; 1/3 repeats 3 times.
    clip = sampling.sample_pace_clip(1000, 6, 1 / 2, seed_of(0), wrap=False).numpy()
    np.testing.assert_array_equal(clip - clip[0], [0, 0, 1, 1, 2, 2])
    clip = sampling.sample_pace_clip(1000, 7, 1 / 3, seed_of(0), wrap=False).numpy()
    np.testing.assert_array_equal(clip - clip[0], [0, 0, 0, 1, 1, 1, 2])
    # Fast pace 3 over 5 frames: e.g. 11, 14, 17, 20, 23.
    clip = sampling.sample_pace_clip(1000, 5, 3, seed_of(0), wrap=False).numpy()
    np.testing.assert_array_equal(clip - clip[0], [0, 3, 6, 9, 12])


@pytest.mark.parametrize("pace", [1, 3, 1 / 2])
def test_pace_clip_without_wrap_fits_the_video(pace):
    num_frames, span = 30, sampling.pace_span(8, pace)
    starts = set()
    def sampler(seed):
        return sampling.sample_pace_clip(num_frames, 8, pace, seed, wrap=False)

    for indices in sample_many(sampler, 300):
        start = int(indices[0])
        starts.add(start)
        expected = authors_pace_clip(num_frames, 8, pace, start, wrap=False)
        np.testing.assert_array_equal(indices, expected)
    assert starts == set(range(num_frames - span + 1))


def test_pace_clip_without_wrap_short_video_is_clamped():
    clip = sampling.sample_pace_clip(10, 6, 3, seed_of(0), wrap=False).numpy()
    np.testing.assert_array_equal(clip, [0, 3, 6, 9, 9, 9])


def test_pace_span():
    assert sampling.pace_span(16, 1) == 16
    assert sampling.pace_span(16, 4) == 61
    assert sampling.pace_span(16, 1 / 2) == 8
    assert sampling.pace_span(16, 1 / 3) == 6
    assert sampling.pace_span(16, sampling.DEFAULT_PACES) == 61


def test_sample_pace_label_is_uniform_and_matches_the_indices():
    paces = (1 / 3, 1 / 2, 1, 2, 3)
    labels = collections.Counter()
    for indices, label in sample_many(lambda s: sampling.sample_pace(50, 16, paces, s), 500):
        assert label.dtype == np.int32
        labels[int(label)] += 1
        expected = authors_pace_clip(50, 16, paces[label], int(indices[0]), wrap=True)
        np.testing.assert_array_equal(indices, expected)
    assert sorted(labels) == list(range(5))
    assert min(labels.values()) >= 70 and max(labels.values()) <= 130


# ----------------------------------------------------------------------------------------
# VCOP
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tuple_length", [2, 3, 4, 5])
def test_vcop_permutations_are_lexicographic(tuple_length):
    permutations = sampling.vcop_permutations(tuple_length)
    assert permutations.dtype == np.int32
    assert permutations.shape == (math.factorial(tuple_length), tuple_length)
    np.testing.assert_array_equal(permutations, list(itertools.permutations(range(tuple_length))))


def test_vcop_span():
    assert sampling.vcop_span(16, 8, 3) == 64
    assert sampling.vcop_span(16, 8, 5) == 112
    assert sampling.vcop_span(4, 0, 2) == 8


def test_vcop_tuple_indices_label_and_order_agree():
    permutations = [tuple(p) for p in sampling.vcop_permutations(3)]
    samples = sample_many(lambda s: sampling.sample_vcop_tuple(100, 16, 8, 3, s), 60)
    for indices, label, order in samples:
        assert indices.shape == (3, 16) and label.dtype == np.int32 and order.dtype == np.int32
        assert permutations.index(tuple(order)) == label
        start = indices[list(order).index(0), 0]
        assert 0 <= start <= 100 - 64
        for slot in range(3):
            np.testing.assert_array_equal(indices[slot], start + 24 * order[slot] + np.arange(16))


@pytest.mark.parametrize("tuple_length, draws_per_class", [(3, 200), (4, 50), (5, 12)])
def test_vcop_every_order_is_equally_likely(tuple_length, draws_per_class):
    num_classes = math.factorial(tuple_length)
    num_draws = num_classes * draws_per_class
    def sampler(seed):
        return sampling.sample_vcop_tuple(200, 4, 2, tuple_length, seed)

    samples = sample_many(sampler, num_draws)
    labels = np.array([label for _, label, _ in samples])
    counts = np.bincount(labels, minlength=num_classes)
    assert counts.size == num_classes and counts.min() > 0
    # Pearson chi-square against the uniform distribution, far from the 0.1% tail
    # (critical values: 20.5 for 5 dof, 49.7 for 23, 173.6 for 119).
    chi_square = float(np.sum((counts - draws_per_class) ** 2) / draws_per_class)
    assert chi_square < {3: 20.5, 4: 49.7, 5: 173.6}[tuple_length]


def test_vcop_short_video_is_clamped():
    indices, _, order = sampling.sample_vcop_tuple(10, 4, 2, 2, seed_of(0))
    in_time = tf.gather(indices, tf.argsort(order)).numpy()
    np.testing.assert_array_equal(in_time, [[0, 1, 2, 3], [6, 7, 8, 9]])
    indices, _, order = sampling.sample_vcop_tuple(7, 4, 2, 2, seed_of(0))
    in_time = tf.gather(indices, tf.argsort(order)).numpy()
    np.testing.assert_array_equal(in_time, [[0, 1, 2, 3], [6, 6, 6, 6]])


# ----------------------------------------------------------------------------------------
# Evaluation samplers
# ----------------------------------------------------------------------------------------


def dpc_test_windows(num_frames, num_blocks=8, block_length=5, ds=3):
    """DPC's eval loader: frames at stride ds, cut into blocks, windows every N // 2 blocks."""
    frames = np.arange(0, num_frames, ds)
    block_starts = range(0, len(frames) - block_length + 1, block_length)
    blocks = [frames[i : i + block_length] for i in block_starts]
    window_starts = range(0, len(blocks) + 1 - num_blocks, num_blocks // 2)
    return np.array([np.concatenate(blocks[i : i + num_blocks]) for i in window_starts])


def memdpc_test_windows(num_frames, num_blocks=8, block_length=5, ds=3):
    """MemDPC's eval loader: window starts every N * L * ds // 2 - 1 frames."""
    available = num_frames - num_blocks * block_length * ds
    starts = np.arange(0, available + 1, num_blocks * block_length * ds // 2 - 1)
    return starts[:, None] + ds * np.arange(num_blocks * block_length)[None, :]


def test_sliding_windows_equal_dpc_test_windows():
    for num_frames in range(118, 420):
        windows = sampling.sliding_windows(num_frames, 40, 60, frame_stride=3).numpy()
        reference = dpc_test_windows(num_frames)
        np.testing.assert_array_equal(windows, reference, err_msg=f"{num_frames} frames")


def test_sliding_windows_match_memdpc_up_to_its_stricter_end():
    for num_frames in range(120, 420):
        windows = sampling.sliding_windows(num_frames, 40, 59, frame_stride=3).numpy()
        reference = memdpc_test_windows(num_frames)
        np.testing.assert_array_equal(windows[: len(reference)], reference)
        # MemDPC needs ds - 1 extra frames after a window, so it may omit the last one.
        assert len(windows) - len(reference) in (0, 1)
        assert windows.max() <= num_frames - 1


def test_sliding_windows_oops_clips_and_short_video():
    windows = sampling.sliding_windows(40, 16, 4).numpy()
    np.testing.assert_array_equal(windows[:, 0], [0, 4, 8, 12, 16, 20, 24])
    np.testing.assert_array_equal(windows[-1], np.arange(24, 40))
    # Shorter than one window: one window padded with the last frame.
    windows = sampling.sliding_windows(50, 40, 59, 3).numpy()
    np.testing.assert_array_equal(windows, [np.minimum(3 * np.arange(40), 49)])


def test_uniform_clips_equal_vcop_test_centers():
    for num_frames in range(16, 400):
        clips = sampling.uniform_clips(num_frames, 16, 10).numpy()
        starts = [int(c - 8) for c in np.linspace(8, num_frames - 8, 10)]
        expected = np.array(starts)[:, None] + np.arange(16)
        np.testing.assert_array_equal(clips, expected, err_msg=f"{num_frames} frames")


def test_uniform_clips_single_clip_is_central_and_short_video_clamped():
    np.testing.assert_array_equal(sampling.uniform_clips(20, 4, 1), [[8, 9, 10, 11]])
    np.testing.assert_array_equal(sampling.uniform_clips(3, 5, 2), [[0, 1, 2, 2, 2]] * 2)


# ----------------------------------------------------------------------------------------
# Eager and tf.data agree
# ----------------------------------------------------------------------------------------

RANDOM_SAMPLERS = {
    "blocks": lambda n, s: sampling.sample_blocks(n, 4, 3, 2, s),
    "segments": lambda n, s: sampling.sample_segments(n, 4, 6, s),
    "clip": lambda n, s: sampling.sample_clip(n, 8, s, stride=2),
    "pace_clip": lambda n, s: sampling.sample_pace_clip(n, 8, 1 / 2, s),
    "pace": lambda n, s: sampling.sample_pace(n, 8, sampling.DEFAULT_PACES, s, wrap=False),
    "vcop": lambda n, s: sampling.sample_vcop_tuple(n, 4, 2, 3, s),
    "sliding_windows": lambda n, s: sampling.sliding_windows(n, 8, 5, 2),
    "uniform_clips": lambda n, s: sampling.uniform_clips(n, 8, 5),
}


@pytest.mark.parametrize("name", sorted(RANDOM_SAMPLERS))
def test_eager_and_tf_data_agree(name):
    sampler = RANDOM_SAMPLERS[name]
    lengths = tf.constant([5, 37, 90], tf.int64)
    seeds = tf.constant([[1, 2], [3, 4], [5, 6]], tf.int64)
    videos = tf.data.Dataset.from_tensor_slices((lengths, seeds))
    for (num_frames, seed), mapped in zip(videos, videos.map(sampler)):
        tf.nest.map_structure(
            lambda eager, graph: np.testing.assert_array_equal(eager.numpy(), graph.numpy()),
            sampler(int(num_frames), seed),
            mapped,
        )
