"""Tests of the clip augmentations: one window for every frame of a clip, exact values of the
deterministic ops (against NumPy references, PIL and torchvision's colour formulas), rates of
the random choices over many seeds, and each op eagerly and inside a `tf.data` map."""

import collections
import colorsys
import itertools

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfvssl.data import augment, sampling


def seed_of(i):
    return tf.constant([i, 11], tf.int64)


def position_clip(num_frames, height, width):
    """`[T, H, W, 3]` uint8 whose channels are the row, the column and the frame index.

    A crop of it tells its window (channels 0 and 1) and that every frame kept its place in
    time (channel 2): the frames are one image with a different constant per frame.
    """
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    frames = [np.stack([rows, cols, np.full_like(rows, t)], axis=-1) for t in range(num_frames)]
    return tf.constant(np.stack(frames), tf.uint8)


def window_of(crop):
    """(top, left, height, width) of a crop of a `position_clip`, checking it is one window
    shared by all frames."""
    crop = np.asarray(crop, np.int64)
    rows, cols = crop[0, :, :, 0], crop[0, :, :, 1]
    for t in range(crop.shape[0]):
        np.testing.assert_array_equal(crop[t, :, :, :2], crop[0, :, :, :2])
        np.testing.assert_array_equal(crop[t, :, :, 2], t)
    top, left = rows.min(), cols.min()
    return top, left, rows.max() - top + 1, cols.max() - left + 1


def run_many(op, clip, num_seeds):
    """`op(clip, seed)` for seeds `[i, 11]`, i < num_seeds, inside a tf.data map."""
    seeds = tf.data.Dataset.range(num_seeds).map(lambda i: tf.stack([i, tf.constant(11, tf.int64)]))
    return list(next(iter(seeds.map(lambda seed: op(clip, seed)).batch(num_seeds))).numpy())


# ----------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------


def test_random_crop_one_window_per_clip_and_all_positions_reachable():
    clip = position_clip(3, 12, 10)
    positions = collections.Counter()
    for crop in run_many(lambda c, s: augment.random_crop(c, (8, 6), s), clip, 200):
        assert crop.dtype == np.uint8 and crop.shape == (3, 8, 6, 3)
        top, left, height, width = window_of(crop)
        assert (height, width) == (8, 6)
        np.testing.assert_array_equal(crop[0, :, 0, 0], top + np.arange(8))
        positions[top, left] += 1
    assert set(positions) == set(itertools.product(range(5), range(5)))


def test_crops_accept_a_size_computed_in_the_graph():
    # DPC crops a fraction of the short side, unknown until the frames are decoded.
    clip = position_clip(2, 12, 16)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter([clip]), output_signature=tf.TensorSpec([None, None, None, 3], tf.uint8)
    )

    def crop_half(c):
        size = tf.shape(c)[1] // 2
        return augment.random_crop(c, size, seed_of(0)), augment.center_crop(c, size)

    random_window, center_window = next(iter(dataset.map(crop_half)))
    assert window_of(random_window)[2:] == (6, 6)
    assert window_of(center_window) == (3, 5, 6, 6)


def test_random_crop_larger_than_clip_fails_with_message():
    with pytest.raises(tf.errors.InvalidArgumentError, match="must fit the clip"):
        augment.random_crop(position_clip(2, 8, 8), 9, seed_of(0))


def test_center_crop_rounds_half_to_even_like_torchvision():
    crop = augment.center_crop(position_clip(2, 10, 9), (3, 4))
    assert window_of(crop) == (4, 2, 3, 4)  # round(3.5) = 4, round(2.5) = 2
    assert window_of(augment.center_crop(position_clip(2, 10, 12), 4)) == (3, 4, 4, 4)


def test_random_flip_rate_and_whole_clip():
    clip = position_clip(3, 4, 5)
    for prob, low, high in [(0.5, 0.42, 0.58), (0.2, 0.14, 0.26), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]:
        flips = 0
        for out in run_many(lambda c, s: augment.random_flip(c, s, prob=prob), clip, 400):
            flipped = out[..., 1][:, :, 0] == 4
            assert flipped.all() or not flipped.any()  # one decision for every frame
            expected = clip.numpy()[:, :, ::-1] if flipped.all() else clip.numpy()
            np.testing.assert_array_equal(out, expected)
            flips += int(flipped.all())
        assert low <= flips / 400 <= high


@pytest.mark.parametrize("in_size, out_size", [((56, 70), (32, 40)), ((10, 10), (24, 21))])
def test_nearest_resize_equals_pil(in_size, out_size):
    # Sizes chosen so that no sample falls exactly on a pixel boundary (where PIL differs).
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, *in_size, 3), dtype=np.uint8)
    out = augment.resize(tf.constant(frames), out_size, "nearest").numpy()
    assert out.dtype == np.uint8
    for frame, resized in zip(frames, out):
        pil = Image.fromarray(frame).resize(out_size[::-1], Image.NEAREST)
        np.testing.assert_array_equal(resized, np.asarray(pil))


def test_bilinear_resize_is_within_one_level_of_pil():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    out = augment.resize(tf.constant(frames), (20, 30)).numpy()
    assert out.dtype == np.uint8
    for frame, resized in zip(frames, out):
        pil = np.asarray(Image.fromarray(frame).resize((30, 20), Image.BILINEAR))
        assert np.abs(resized.astype(int) - pil).max() <= 1


@pytest.mark.parametrize("out_size, upscaling", [((40, 36), True), ((40, 20), False), ((24, 30), False)])
def test_bilinear_resize_antialiases_unless_it_upscales_both_sides(out_size, upscaling):
    clip = tf.random.stateless_uniform([2, 30, 30, 3], [4, 2])
    antialiased = tf.image.resize(clip, out_size, "bilinear", antialias=True)
    plain = tf.image.resize(clip, out_size, "bilinear", antialias=False)
    resized = augment.resize(clip, out_size)
    assert resized.shape == (2, *out_size, 3)
    # Upscaling, the two filters agree to rounding: the cheaper plain one is taken.
    np.testing.assert_allclose(resized, antialiased, atol=1e-4 if upscaling else 0)
    np.testing.assert_array_equal(resized, plain if upscaling else antialiased)


def test_resize_int_is_square_and_float_stays_float():
    out = augment.resize(tf.zeros([2, 30, 40, 3], tf.float32), 16)
    assert out.shape == (2, 16, 16, 3) and out.dtype == tf.float32


@pytest.mark.parametrize(
    "shape, size, expected",
    [
        ((30, 40), 15, (15, 20)),
        ((40, 30), 15, (20, 15)),
        ((31, 45), 16, (16, 23)),
        ((24, 24), 10, (10, 10)),
    ],
)
def test_resize_short_side_shapes(shape, size, expected):
    out = augment.resize_short_side(tf.zeros([2, *shape, 1], tf.uint8), size)
    assert tuple(out.shape[1:3]) == expected and out.dtype == tf.uint8


def test_resize_short_side_to_current_size_is_identity():
    clip = tf.constant(np.random.default_rng(2).integers(0, 256, (2, 12, 20, 3)), tf.uint8)
    for method in ("nearest", "bilinear"):
        np.testing.assert_array_equal(augment.resize_short_side(clip, 12, method), clip)


def test_random_resized_crop_fallback_is_short_side_resize_and_center_crop():
    # A 10x40 frame cannot hold a square crop of >= 90% of its area: every attempt fails.
    clip = position_clip(2, 10, 40)
    out = augment.random_resized_crop(
        clip, 5, seed_of(0), area_range=(0.9, 1.0), aspect_range=(1.0, 1.0), method="nearest"
    )
    # Short side 10 -> 5 gives 5x20 sampling rows/cols 2i+1; centre crop left = round(7.5) = 8.
    expected_rows = 2 * np.arange(5) + 1
    expected_cols = 2 * (np.arange(5) + 8) + 1
    np.testing.assert_array_equal(out[0, :, 0, 0], expected_rows)
    np.testing.assert_array_equal(out[0, 0, :, 1], expected_cols)
    window_of(out)


@pytest.mark.parametrize(
    "swap_prob, expected_portrait", [(0.0, (0.0, 0.0)), (1.0, (1.0, 1.0)), (0.5, (0.38, 0.62))]
)
def test_random_resized_crop_swaps_width_and_height(swap_prob, expected_portrait):
    # Area 200 and aspect 2 give a 10-row x 20-column window, or 20 x 10 when swapped.
    clip = position_clip(2, 20, 20)

    def op(c, s):
        return augment.random_resized_crop(
            c, 40, s, (0.5, 0.5), (2.0, 2.0), swap_prob=swap_prob, method="nearest"
        )

    portrait = 0
    for out in run_many(op, clip, 200):
        _, _, height, width = window_of(out)  # nearest upsampling samples every source pixel
        assert {height, width} == {10, 20}
        portrait += height == 20
    assert expected_portrait[0] <= portrait / 200 <= expected_portrait[1]


def test_random_resized_crop_dpc_defaults_windows():
    clip = position_clip(2, 24, 32)
    windows = set()
    def op(c, s):
        return augment.random_resized_crop(c, 64, s, method="nearest")

    for out in run_many(op, clip, 100):
        assert out.shape == (2, 64, 64, 3) and out.dtype == np.uint8
        top, left, height, width = window_of(out)
        assert top + height <= 24 and left + width <= 32
        assert 0.45 <= height * width / (24 * 32) <= 1.0
        assert 0.7 <= width / height <= 1.45
        windows.add((top, left, height, width))
    assert len(windows) > 50


def test_random_resized_crop_exact_window_when_sizes_match():
    # Area 1/4 of 20x20 at aspect 1 is a 10x10 window; resizing 10 -> 10 copies it.
    clip = position_clip(3, 20, 20)
    out = augment.random_resized_crop(clip, 10, seed_of(4), (0.25, 0.25), (1.0, 1.0))
    top, left, height, width = window_of(out)
    assert (height, width) == (10, 10)
    np.testing.assert_array_equal(out, clip[:, top : top + 10, left : left + 10])


def test_multi_crop_positions():
    landscape = position_clip(2, 10, 16)
    portrait = position_clip(2, 16, 10)

    def windows(crops):
        return [window_of(crop)[:2] for crop in crops]

    assert windows(augment.multi_crop(landscape, 6, 1)) == [(2, 5)]
    assert windows(augment.multi_crop(landscape, 6, 3)) == [(2, 0), (2, 5), (2, 10)]
    assert windows(augment.multi_crop(portrait, 6, 3)) == [(0, 2), (5, 2), (10, 2)]
    five = [(0, 0), (0, 10), (4, 0), (4, 10), (2, 5)]
    assert windows(augment.multi_crop(landscape, 6, 5)) == five
    ten = augment.multi_crop(landscape, 6, 10).numpy()
    assert ten.shape == (10, 2, 6, 6, 3) and ten.dtype == np.uint8
    np.testing.assert_array_equal(ten[5:], ten[:5, :, :, ::-1])
    with pytest.raises(ValueError, match="num_crops must be 1, 3, 5 or 10"):
        augment.multi_crop(landscape, 6, 4)


# ----------------------------------------------------------------------------------------
# Colour
# ----------------------------------------------------------------------------------------


def torchvision_grey(frame):
    return 0.2989 * frame[..., 0] + 0.587 * frame[..., 1] + 0.114 * frame[..., 2]


def torchvision_jitter_op(frame, operation, factor):
    """torchvision's float tensor ops on one `[H, W, 3]` frame, in float64."""
    if operation == 0:
        return np.clip(factor * frame, 0, 1)
    if operation == 1:
        return np.clip(factor * frame + (1 - factor) * torchvision_grey(frame).mean(), 0, 1)
    if operation == 2:
        return np.clip(factor * frame + (1 - factor) * torchvision_grey(frame)[..., None], 0, 1)
    hsv = [colorsys.rgb_to_hsv(*pixel) for pixel in frame.reshape(-1, 3)]
    rgb = [colorsys.hsv_to_rgb((h + factor) % 1.0, s, v) for h, s, v in hsv]
    return np.array(rgb).reshape(frame.shape)


def test_adjust_colors_matches_torchvision_formulas():
    rng = np.random.default_rng(3)
    frames = rng.uniform(0, 1, (6, 4, 5, 3))
    blend_factors, hue_shifts = rng.uniform(0.2, 1.8, (6, 3)), rng.uniform(-0.4, 0.4, (6, 1))
    factors = np.concatenate([blend_factors, hue_shifts], axis=1)
    # Hue (3) at every position, the blends in various orders.
    orders = np.array([[3, 0, 1, 2], [0, 3, 2, 1], [1, 2, 3, 0], [2, 1, 0, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
    out = augment.adjust_colors(
        tf.constant(frames, tf.float32),
        tf.constant(factors, tf.float32),
        tf.constant(orders, tf.int32),
    )
    assert out.dtype == tf.float32
    for t in range(6):
        expected = frames[t]
        for operation in orders[t]:
            expected = torchvision_jitter_op(expected, operation, factors[t, operation])
        np.testing.assert_allclose(out[t], expected, atol=2e-5)


def test_adjust_colors_one_draw_serves_every_frame_and_accepts_uint8():
    frames = np.random.default_rng(4).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    factors, order = tf.constant([[1.3, 0.6, 1.5, 0.1]]), tf.constant([[3, 1, 0, 2]])
    out = augment.adjust_colors(tf.constant(frames), factors, order).numpy()
    per_frame = augment.adjust_colors(
        tf.constant(frames / 255.0, tf.float32), tf.tile(factors, [3, 1]), tf.tile(order, [3, 1])
    )
    np.testing.assert_allclose(out, per_frame, atol=1e-6)


def test_sample_color_jitter_ranges_and_uniform_orders():
    factors, order = augment.sample_color_jitter(
        seed_of(0), 2400, brightness=0.5, contrast=2.0, saturation=0.0, hue=0.25
    )
    factors, order = factors.numpy(), order.numpy()
    assert factors.shape == (2400, 4) and order.dtype == np.int32
    for column, (low, high) in enumerate([(0.5, 1.5), (0.0, 3.0), (1.0, 1.0), (-0.25, 0.25)]):
        assert low <= factors[:, column].min() and factors[:, column].max() <= high
        if low < high:  # the draws fill the range
            assert factors[:, column].min() < low + 0.02 * (high - low)
            assert factors[:, column].max() > high - 0.02 * (high - low)
    np.testing.assert_array_equal(np.sort(order, axis=1), np.tile(np.arange(4), (2400, 1)))
    counts = collections.Counter(map(tuple, order))
    assert len(counts) == 24
    chi_square = sum((count - 100) ** 2 / 100 for count in counts.values())
    assert chi_square < 49.7  # 0.1% tail of chi-square with 23 dof


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"brightness": -0.1}, "brightness must be non-negative"),
        ({"hue": 0.6}, r"hue must be in \[0, 0.5\]"),
    ],
)
def test_sample_color_jitter_rejects_bad_strengths(kwargs, message):
    with pytest.raises(ValueError, match=message):
        augment.sample_color_jitter(seed_of(0), 4, **kwargs)


def constant_frames(num_frames, rgb=(0.6, 0.3, 0.2)):
    return tf.constant(np.broadcast_to(np.array(rgb, np.float32), (num_frames, 2, 2, 3)))


def test_color_jitter_per_frame_differs_between_frames_per_clip_does_not():
    clip = constant_frames(8)
    per_frame = augment.color_jitter(clip, seed_of(1), 0.5, 0.5, 0.5, 0.25).numpy()
    pixels = per_frame[:, 0, 0]
    assert len({tuple(np.round(p, 5)) for p in pixels}) == 8
    per_clip = augment.color_jitter(clip, seed_of(1), 0.5, 0.5, 0.5, 0.25, per_frame=False).numpy()
    np.testing.assert_allclose(per_clip, np.broadcast_to(per_clip[:1], per_clip.shape))
    assert np.abs(per_clip - clip.numpy()).max() > 1e-3


def test_color_jitter_brightness_factor_range():
    clip = constant_frames(300, rgb=(0.4, 0.4, 0.4))
    ratio = augment.color_jitter(clip, seed_of(2), brightness=0.5).numpy()[:, 0, 0, 0] / 0.4
    assert 0.5 - 1e-5 <= ratio.min() < 0.55 and 1.45 < ratio.max() <= 1.5 + 1e-5


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_color_jitter_probability_per_frame(prob):
    clip = constant_frames(500)
    out = augment.color_jitter(clip, seed_of(3), 0.5, 0.5, 0.5, 0.25, prob=prob).numpy()
    changed = np.abs(out - clip.numpy()).max(axis=(1, 2, 3)) > 1e-6
    assert abs(changed.mean() - prob) <= 0.06


def test_color_jitter_probability_per_clip():
    clip = constant_frames(3)
    def op(c, s):
        return augment.color_jitter(c, s, 0.5, 0.5, 0.5, 0.25, prob=0.3, per_frame=False)

    changed = [np.abs(out - clip.numpy()).max() > 1e-6 for out in run_many(op, clip, 300)]
    assert 0.22 <= np.mean(changed) <= 0.38


def test_random_channel_split_grey_copies_one_channel_per_frame():
    channels = np.array([50, 100, 150], np.uint8)
    clip = tf.constant(np.broadcast_to(channels, (600, 2, 3, 3)))
    out = augment.random_channel_split_grey(clip, seed_of(4), prob=0.5).numpy()
    assert out.dtype == np.uint8
    chosen = collections.Counter()
    for frame in out:
        if (frame == channels).all():
            continue
        assert (frame == frame[0, 0, 0]).all()  # all three channels hold one original channel
        chosen[int(frame[0, 0, 0])] += 1
    assert 260 <= sum(chosen.values()) <= 340
    assert set(chosen) == {50, 100, 150} and min(chosen.values()) >= 70
    unchanged = augment.random_channel_split_grey(clip, seed_of(4), prob=0.0)
    np.testing.assert_array_equal(unchanged, clip)


def test_color_drop_keeps_one_channel_per_clip_and_adds_faint_noise():
    frames = np.random.default_rng(5).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    seeds = tf.stack([seed_of(i) for i in range(90)])
    batch = augment.color_drop(tf.constant(np.stack([frames] * 90)), seeds).numpy()
    kept_channels = collections.Counter()
    for out in batch:
        kept = [c for c in range(3) if np.array_equal(out[..., c], frames[..., c])]
        assert len(kept) == 1  # the same channel for every frame of the clip
        kept_channels[kept[0]] += 1
        dropped = np.delete(out, kept[0], axis=-1)
        assert abs(dropped.mean() - 0.5) < 1e-3
        np.testing.assert_allclose(dropped.std(), frames[..., kept[0]].std() / 100, rtol=0.1)
    assert min(kept_channels[c] for c in range(3)) >= 18
    # Clips draw their channel from their own seed, whatever the batch around them.
    alone = augment.color_drop(tf.constant(frames[None]), seeds[5:6]).numpy()[0]
    kept = [c for c in range(3) if np.array_equal(batch[5][..., c], frames[..., c])]
    np.testing.assert_array_equal(alone[..., kept[0]], frames[..., kept[0]])
    assert not np.array_equal(batch[0], batch[1])  # Each clip has its own noise.
    unchanged = augment.color_drop(tf.constant(np.stack([frames] * 2)), seeds[:2], prob=0.0)
    np.testing.assert_array_equal(unchanged, np.stack([frames] * 2))


# ----------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------


def test_normalize_modes_exact_values():
    clip = tf.constant(np.full((1, 1, 2, 3), 255, np.uint8))
    imagenet = (1 - np.array(augment.IMAGENET_MEAN)) / augment.IMAGENET_STD
    kinetics = (1 - np.array(augment.KINETICS_MEAN)) / augment.KINETICS_STD
    np.testing.assert_allclose(augment.normalize(clip, "imagenet")[0, 0, 0], imagenet, rtol=1e-6)
    np.testing.assert_allclose(augment.normalize(clip, "kinetics")[0, 0, 0], kinetics, rtol=1e-6)
    half = tf.fill([1, 1, 1, 3], 0.5)
    np.testing.assert_allclose(augment.normalize(half, "unit"), 0.5)
    np.testing.assert_allclose(augment.normalize(half, "raw"), 127.5)
    frames = np.random.default_rng(6).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    for mode in ("imagenet", "unit", "raw"):
        from_uint8 = augment.normalize(tf.constant(frames), mode)
        assert from_uint8.dtype == tf.float32
        from_float = augment.normalize(tf.constant(frames / 255.0, tf.float32), mode)
        np.testing.assert_allclose(from_uint8, from_float, atol=1e-5)


def test_normalize_bgr_reverses_channels_after_normalising():
    frames = tf.constant(np.random.default_rng(7).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8))
    raw_bgr = augment.normalize(frames, "raw", bgr=True)
    np.testing.assert_allclose(raw_bgr, frames.numpy()[..., ::-1].astype(np.float32))
    imagenet_bgr = augment.normalize(frames, "imagenet", bgr=True)
    imagenet = augment.normalize(frames, "imagenet").numpy()
    np.testing.assert_allclose(imagenet_bgr, imagenet[..., ::-1])


def test_normalize_flow_and_single_channel_inputs():
    flow = np.random.default_rng(8).integers(0, 256, (3, 4, 5, 2), dtype=np.uint8)
    centered = augment.normalize(tf.constant(flow), "flow").numpy()
    np.testing.assert_allclose(centered.mean(axis=(1, 2)), 0, atol=1e-6)
    expected = flow / 255.0 - (flow / 255.0).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(centered, expected, atol=1e-6)
    difference = tf.constant(np.full((2, 3, 3, 1), 0.25, np.float32))
    np.testing.assert_allclose(augment.normalize(difference, "raw"), 63.75)
    np.testing.assert_allclose(augment.normalize(difference, "unit"), 0.25)


@pytest.mark.parametrize(
    "clip, kwargs, message",
    [
        (tf.zeros([1, 2, 2, 2]), {"mode": "imagenet"}, "mode 'imagenet' needs 3 channels, got 2"),
        (tf.zeros([1, 2, 2, 1]), {"mode": "raw", "bgr": True}, "with bgr needs 3 channels, got 1"),
        (tf.zeros([1, 2, 2, 3]), {"mode": "zscore"}, "mode must be one of"),
        (tf.zeros([1, 2, 2, 3], tf.int32), {"mode": "unit"}, "must be uint8 or float, got int32"),
    ],
)
def test_normalize_rejects_bad_inputs(clip, kwargs, message):
    with pytest.raises(ValueError, match=message):
        augment.normalize(clip, **kwargs)


# ----------------------------------------------------------------------------------------
# Eager and tf.data (unknown T, H, W) agree
# ----------------------------------------------------------------------------------------

OPS = {
    "random_crop": lambda c, s: augment.random_crop(c, (8, 6), s),
    "center_crop": lambda c, s: augment.center_crop(c, 7),
    "resize": lambda c, s: augment.resize(c, (9, 11)),
    "resize_nearest": lambda c, s: augment.resize(c, 8, "nearest"),
    "resize_short_side": lambda c, s: augment.resize_short_side(c, 10),
    "random_resized_crop": lambda c, s: augment.random_resized_crop(c, 8, s),
    "random_flip": lambda c, s: augment.random_flip(c, s),
    "multi_crop": lambda c, s: augment.multi_crop(c, 8, 10),
    "color_jitter": lambda c, s: augment.color_jitter(c, s, 0.5, 0.5, 0.5, 0.25, prob=0.7),
    "color_jitter_per_clip": lambda c, s: augment.color_jitter(
        c, s, 0.8, 0.8, 0.8, 0.2, per_frame=False
    ),
    "channel_split_grey": lambda c, s: augment.random_channel_split_grey(c, s, 0.5),
    "color_drop": lambda c, s: augment.color_drop(c[None], s[None])[0],
    "normalize": lambda c, s: augment.normalize(c, "imagenet", bgr=True),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_eager_and_tf_data_agree(name):
    op = OPS[name]
    rng = np.random.default_rng(9)
    clips = [rng.integers(0, 256, (3, 12 + i, 14, 3), dtype=np.uint8) for i in range(2)]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((clip, np.array([i, 5], np.int64)) for i, clip in enumerate(clips)),
        output_signature=(
            tf.TensorSpec([None, None, None, 3], tf.uint8),  # T, H, W unknown when traced
            tf.TensorSpec([2], tf.int64),
        ),
    )
    for (clip, seed), mapped in zip(dataset, dataset.map(op)):
        eager = op(clip, seed)
        assert eager.dtype == mapped.dtype
        np.testing.assert_array_equal(eager.numpy(), mapped.numpy())


def test_frame_wise_color_on_a_batch_equals_the_per_clip_ops():
    clips = tf.cast(tf.random.stateless_uniform([3, 5, 8, 8, 3], [0, 1], maxval=256, dtype=tf.int32), tf.uint8)
    seeds = tf.constant([[1, 2], [3, 4], [5, 6]], tf.int64)
    jitter = (0.5, 0.5, 0.5, 0.25)
    batched = augment.frame_wise_color(clips, seeds, grey_prob=0.5, jitter=jitter)
    assert batched.shape == (3, 5, 8, 8, 3) and batched.dtype == tf.float32
    for clip, seed, got in zip(clips, seeds, batched):
        grey_seed, jitter_seed = tf.unstack(sampling.split_seed(seed, 2))
        grey = augment.random_channel_split_grey(clip, grey_seed, prob=0.5)
        expected = augment.color_jitter(grey, jitter_seed, *jitter, prob=1.0, per_frame=True)
        np.testing.assert_allclose(got, expected, atol=1e-6)
    # Examples draw independently: two equal clips with other seeds come out different.
    twins = augment.frame_wise_color(tf.stack([clips[0], clips[0]]), seeds[:2], 0.5, jitter)
    assert not np.allclose(twins[0], twins[1])


@pytest.mark.parametrize("seed", [[0, 0], [0, 1], [5, 9], [7, 3]])
def test_resize_nearest_and_flip_equals_resize_then_flip(seed):
    clip = tf.cast(tf.random.stateless_uniform([2, 15, 11, 3], [1, 1], maxval=256, dtype=tf.int32), tf.uint8)
    seed = tf.constant(seed, tf.int64)
    expected = augment.random_flip(augment.resize(clip, (6, 7), "nearest"), seed)
    np.testing.assert_array_equal(augment.resize_nearest_and_flip(clip, (6, 7), seed), expected)


@pytest.mark.parametrize("area_range, fits", [((0.3, 0.9), True), ((1.5, 2.0), False)])
def test_resized_crop_window_then_resize_crop_is_random_resized_crop(area_range, fits):
    clip = tf.reshape(tf.range(2 * 18 * 20, dtype=tf.float32), [2, 18, 20, 1])
    for i in range(5):
        window, fitted = augment.resized_crop_window(18, 20, seed_of(i), area_range)
        assert bool(fitted) == fits
        top, left, height, width = (int(v) for v in window)
        if not fits:
            assert (top, left, height, width) == (0, 0, 18, 20)  # The fallback sees the frame.
        cut = clip[:, top : top + height, left : left + width]
        np.testing.assert_array_equal(
            augment.resize_crop(cut, fitted, 8), augment.random_resized_crop(clip, 8, seed_of(i), area_range)
        )


def test_crop_window_is_the_window_random_crop_takes():
    clip = tf.reshape(tf.range(2 * 9 * 10), [2, 9, 10, 1])
    seed = tf.constant([4, 2], tf.int64)
    top, left, height, width = augment.crop_window(9, 10, (5, 6), seed)
    np.testing.assert_array_equal(
        augment.random_crop(clip, (5, 6), seed), clip[:, top : top + height, left : left + width]
    )


@pytest.mark.parametrize(
    "frame, region, resized, offset, crop, antialias, flip",
    [
        ((24, 32), (0, 0, 24, 32), (13, 17), (1, 4), (11, 11), True, False),  # VCOP: downscale, crop.
        ((24, 32), (0, 0, 24, 32), (13, 17), (2, 3), (11, 11), False, True),  # Pace: no antialias, flip.
        ((24, 32), (3, 5, 20, 20), (23, 23), (0, 0), (23, 23), True, False),  # Temporal CPC: crop, upscale.
        ((24, 32), (0, 0, 24, 32), (9, 12), (0, 2), (9, 9), True, True),  # DPC's fallback: centre crop.
    ],
)
def test_resize_plan_is_resize_then_crop_then_flip(frame, region, resized, offset, crop, antialias, flip):
    clip = tf.cast(tf.random.stateless_uniform([2, *frame, 3], [4, 4], maxval=256, dtype=tf.int32), tf.uint8)
    top, left, height, width = region
    expected = augment.resize(clip[:, top : top + height, left : left + width], resized, antialias=antialias)
    expected = expected[:, offset[0] : offset[0] + crop[0], offset[1] : offset[1] + crop[1]]
    if flip:
        expected = tf.reverse(expected, axis=[2])
    windows, rows, cols = augment.resize_plan(frame, [region], resized, [offset], crop, antialias, tf.constant([flip]))
    top, left, height, width = (int(v) for v in windows[0])
    assert rows.shape == (1, crop[0], height) and cols.shape == (1, crop[1], width)
    # The window holds exactly the source pixels with a weight: its edges carry weight.
    assert np.all(np.abs(rows[0]).sum(axis=0)[[0, -1]] > 0) and np.all(np.abs(cols[0]).sum(axis=0)[[0, -1]] > 0)
    resized_clip = augment.apply_resize_plan(clip[None, :, top : top + height, left : left + width], rows, cols)[0]
    difference = np.abs(resized_clip.numpy().astype(int) - expected.numpy().astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # Float rounding at half levels.


def test_resize_plan_windows_share_one_size_and_padding_has_no_weight():
    frame = tf.cast(tf.random.stateless_uniform([1, 30, 40, 3], [5, 5], maxval=256, dtype=tf.int32), tf.uint8)
    offsets = [[0, 0], [3, 7], [5, 11]]  # Three clips, each its own crop of the 16 x 22 resize.
    windows, rows, cols = augment.resize_plan((30, 40), [[0, 0, 30, 40]] * 3, (16, 22), offsets, 11)
    assert len({tuple(size) for size in windows[:, 2:].numpy()}) == 1
    clips = tf.stack([frame[:, t : t + h, x : x + w] for t, x, h, w in windows.numpy()])  # [3, 1, h, w, 3]
    plain = augment.apply_resize_plan(clips, rows, cols)
    # Batched beside a larger window, a window is padded (whatever the values: the batch pads
    # with zeros) and its weights with zeros.
    padded = augment.apply_resize_plan(
        tf.pad(clips, [[0, 0], [0, 0], [0, 4], [0, 6], [0, 0]], constant_values=255),
        tf.pad(rows, [[0, 0], [0, 0], [0, 4]]), tf.pad(cols, [[0, 0], [0, 0], [0, 6]]),
    )
    np.testing.assert_array_equal(padded, plain)
    for clip, (top, left) in zip(plain, offsets):
        expected = augment.resize(frame, (16, 22))[:, top : top + 11, left : left + 11]
        assert np.abs(clip.numpy().astype(int) - expected.numpy().astype(int)).max() <= 1
