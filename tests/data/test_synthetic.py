"""Tests of the embedded synthetic dataset: rendering, motion semantics, files and cache."""

import collections
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tfvssl.data import records
from tfvssl.data import sources
from tfvssl.data import synthetic

TINY = synthetic.SyntheticConfig(
    num_classes=3, train_videos_per_class=2, test_videos_per_class=1, num_frames=4,
    resolution=32, shard_size=4,
)


def _parse_split(root, split):
    parsed = []
    for shard in records.list_shards(root, split):
        parsed += [records.parse_sequence_example(s) for s in tf.data.TFRecordDataset(shard)]
    return parsed


# ---- rendering ---------------------------------------------------------------------------------


def test_render_video_shape_dtype_and_determinism():
    config = synthetic.SyntheticConfig(num_frames=6, resolution=24)

    video = synthetic.render_video(config, 2, np.random.default_rng(7))

    assert video.shape == (6, 24, 24, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video, synthetic.render_video(config, 2, np.random.default_rng(7)))
    assert not np.array_equal(video, synthetic.render_video(config, 2, np.random.default_rng(8)))
    assert video.std() > 10  # A textured scene, not a flat colour.


def test_without_clutter_only_the_white_foreground_moves_on_a_flat_grey():
    config = synthetic.SyntheticConfig(num_frames=8, resolution=32, clutter=False)

    for class_index in range(config.num_classes):
        video = synthetic.render_video(config, class_index, np.random.default_rng(class_index)).astype(int)

        # Grey everywhere (R = G = B, up to JPEG-free rounding): no colour, no texture.
        assert np.abs(video - video[..., :1]).max() == 0
        background = video == round(synthetic._PLAIN_BACKGROUND)
        assert 0.6 < background.mean() < 0.99  # Mostly background, some object.
        # Blended pixels lie between the two greys; full-object pixels are white.
        assert video.min() >= synthetic._PLAIN_BACKGROUND and video.max() == synthetic._PLAIN_OBJECT
        # The object moves (every pattern but "still"): the frames differ.
        assert np.abs(video[-1] - video[0]).max() > 50


def test_clutter_is_in_the_cache_key_only_when_off():
    assert "clutter" not in synthetic.config_dict(TINY)  # Caches made before the option stay valid.
    plain = dataclasses.replace(TINY, clutter=False)
    assert synthetic.config_dict(plain)["clutter"] is False
    assert synthetic.default_dataset_path(plain) != synthetic.default_dataset_path(TINY)


def test_iter_split_is_balanced_alternating_and_independent_of_the_split_size():
    videos = list(synthetic.iter_split(TINY, "train"))
    bigger = dataclasses.replace(TINY, train_videos_per_class=5)

    assert [name for name, _, _ in videos] == [
        "train/translate_right/translate_right_0000", "train/translate_left/translate_left_0000",
        "train/translate_up/translate_up_0000", "train/translate_right/translate_right_0001",
        "train/translate_left/translate_left_0001", "train/translate_up/translate_up_0001",
    ]
    assert [label for _, label, _ in videos] == [0, 1, 2, 0, 1, 2]
    for (_, _, frames), (_, _, same) in zip(videos, synthetic.iter_split(bigger, "train")):
        np.testing.assert_array_equal(frames, same)
    test_frames = next(synthetic.iter_split(TINY, "test"))[2]
    assert not np.array_equal(test_frames, videos[0][2])


def test_objects_wrap_around_the_frame_edges():
    frames = np.zeros((1, 16, 16, 3), np.float32)
    at_left_edge = synthetic.Trajectory(
        x=np.array([0.0]), y=np.array([0.5]), angle=np.zeros(1), scale=np.ones(1)
    )

    synthetic._draw_object(
        frames, at_left_edge, camera_x=np.zeros(1), camera_y=np.zeros(1), radius=0.2,
        shape=lambda u, v: np.hypot(u, v) - 1, color=np.array([255.0, 0, 0]),
    )

    red = frames[0, :, :, 0]
    assert red[8, 0] > 200 and red[8, 15] > 200  # Both halves of the disc.
    assert red[8, 5:11].max() == 0 and red[0].max() == 0


def _trajectories(pattern, num_draws=300, num_frames=20, vary_speed=True):
    rng = np.random.default_rng(0)
    t = np.arange(num_frames, dtype=np.float64)
    rate = (synthetic.drawn_rate if vary_speed else synthetic.middle_rate)(rng)
    draws = [synthetic.MOTION_PATTERNS[pattern](rng, t, rate) for _ in range(num_draws)]
    return synthetic.Trajectory(*(np.stack(values) for values in zip(*draws)))  # [draws, T]


@pytest.mark.parametrize("pattern, moving, sign", [
    ("translate_right", "x", 1), ("translate_left", "x", -1),
    ("translate_up", "y", -1), ("translate_down", "y", 1),
    ("rotate_clockwise", "angle", 1), ("rotate_counterclockwise", "angle", -1),
    ("grow", "scale", 1), ("shrink", "scale", -1),
])
def test_patterns_move_in_their_direction_only(pattern, moving, sign):
    trajectory = _trajectories(pattern)

    steps = np.diff(getattr(trajectory, moving), axis=1)
    if moving == "scale":  # A sawtooth: mostly the named way, wrapping rarely.
        assert np.mean(np.sign(steps) == sign) > 0.9
    else:
        assert np.all(np.sign(steps) == sign)
    for still in set(synthetic.Trajectory._fields) - {moving}:
        assert np.ptp(getattr(trajectory, still), axis=1).max() == 0


@pytest.mark.parametrize("pattern, moving, low, high", [
    ("translate_left", "x", 0.02, 0.04), ("rotate_clockwise", "angle", 0.08, 0.16),
])
def test_one_speed_per_class_without_vary_speed(pattern, moving, low, high):
    varied = np.abs(np.diff(getattr(_trajectories(pattern), moving), axis=1))
    fixed = np.abs(np.diff(getattr(_trajectories(pattern, vary_speed=False), moving), axis=1))

    assert varied.min() < low + 0.1 * (high - low) and varied.max() > high - 0.1 * (high - low)
    np.testing.assert_allclose(fixed, (low + high) / 2, rtol=1e-9)


def test_without_vary_speed_only_the_speed_changes():
    config = synthetic.SyntheticConfig(num_frames=6, resolution=32, clutter=False)
    fixed = dataclasses.replace(config, vary_speed=False)
    videos = [synthetic.render_video(c, 0, np.random.default_rng(5)) for c in (config, fixed)]

    np.testing.assert_array_equal(videos[0][0], videos[1][0])  # Same objects, same start.
    assert np.abs(videos[0][-1].astype(int) - videos[1][-1]).max() > 50  # Moved apart.
    assert "vary_speed" not in synthetic.config_dict(config)  # Cache paths of before.
    assert synthetic.config_dict(fixed)["vary_speed"] is False


def test_dot_texture_dots_live_their_lifetime_and_move_with_their_coordinates():
    texture = synthetic.DotTexture(np.random.default_rng(0), cells=64, num_frames=40)
    # At cell corners the bilinear sample is the cell's own level.
    u, v = np.meshgrid(np.arange(64.0), np.arange(64.0))

    def levels(frame, shift=0.0):
        return texture.sample(np.array(frame)[None, None, None], u[None] + shift, v[None])[0]

    assert set(np.unique(levels(0))) == set(synthetic._DOT_LEVELS)
    lifetime = synthetic._DOT_LIFETIME
    for lag in (1, 2, 4):  # lag / lifetime of the cells are redrawn, half of them alike.
        assert abs(np.mean(levels(10) == levels(10 + lag)) - (1 - lag / lifetime / 2)) < 0.03
    assert abs(np.mean(levels(10) == levels(10 + lifetime)) - 0.5) < 0.03  # All new: chance.
    # The pattern is a function of texture coordinates: shifted by 3 cells, wrapping.
    np.testing.assert_array_equal(levels(5, shift=3.0), np.roll(levels(5), -3, axis=1))


def test_motion_defined_frames_hide_the_objects_that_motion_shows():
    plain = synthetic.SyntheticConfig(num_frames=24, resolution=64, clutter=False)
    dots = dataclasses.replace(plain, motion_defined=True)
    rngs = [np.random.default_rng(3), np.random.default_rng(3)]
    outline, video = (synthetic.render_video(c, 0, r).astype(float) for c, r in zip((plain, dots), rngs))

    assert rngs[0].uniform() == rngs[1].uniform()  # The same draws: same objects, same motion.
    assert np.abs(video - video[..., :1]).max() == 0  # Grey.
    inside = outline[..., 0] == synthetic._PLAIN_OBJECT
    outside = outline[..., 0] == synthetic._PLAIN_BACKGROUND
    assert inside.sum() > 1000
    # In any frame, object and background look alike: the same grey levels, the same dots.
    grey = video[..., 0]
    assert abs(grey[inside].mean() - grey[outside].mean()) < 4
    assert abs(grey[inside].std() - grey[outside].std()) < 4
    # Over a frame the dots on the background stay; on the object (translating right at 0.02-0.04
    # frame widths a frame) they leave: the object is where consecutive frames differ.
    still = np.abs(np.diff(grey, axis=0))
    assert still[inside[1:] & inside[:-1]].mean() > 2 * still[outside[1:] & outside[:-1]].mean()
    assert "motion_defined" not in synthetic.config_dict(plain)  # Cache paths of before.
    assert synthetic.config_dict(dots)["motion_defined"] is True


@pytest.mark.parametrize("pattern, sign", [("orbit_clockwise", 1), ("orbit_counterclockwise", -1)])
def test_orbits_turn_clockwise_on_screen_for_a_positive_cross_product(pattern, sign):
    trajectory = _trajectories(pattern)

    velocity_x, velocity_y = np.diff(trajectory.x, axis=1), np.diff(trajectory.y, axis=1)
    # With y pointing down, a positive cross product of successive velocities turns clockwise.
    cross = velocity_x[:, :-1] * velocity_y[:, 1:] - velocity_y[:, :-1] * velocity_x[:, 1:]
    assert np.all(np.sign(cross) == sign)


@pytest.mark.parametrize("pattern", list(synthetic.MOTION_PATTERNS))
def test_every_frame_has_the_same_pose_distribution_in_every_class(pattern):
    trajectory = _trajectories(pattern, num_draws=600)
    low, high = np.log(synthetic._SCALE_RANGE)

    for frame in (0, -1):
        for position in (trajectory.x[:, frame] % 1, trajectory.y[:, frame] % 1):
            assert np.mean(position) == pytest.approx(0.5, abs=0.04)
            assert np.histogram(position, bins=4, range=(0, 1))[0].min() > 110
        angle = trajectory.angle[:, frame] % (2 * np.pi)
        assert np.mean(angle) == pytest.approx(np.pi, abs=0.25)
        log_scale = np.log(trajectory.scale[:, frame])
        assert log_scale.min() >= low - 1e-9 and log_scale.max() <= high + 1e-9
        assert np.mean(log_scale) == pytest.approx((low + high) / 2, abs=0.04)


def _global_translation(video):
    """Least-squares translation between consecutive frames (Lucas-Kanade over the whole frame).

    Args:
      video: float `[T, H, W, 3]`.

    Returns:
      float `[T - 1, 2]`, pixels per frame (x, y).
    """
    grey = video.mean(axis=-1)
    grad_y, grad_x = np.gradient(grey, axis=(1, 2))
    grad_x, grad_y = (grad_x[1:] + grad_x[:-1]) / 2, (grad_y[1:] + grad_y[:-1]) / 2
    grad_t = np.diff(grey, axis=0)
    xx, xy, yy = [(a * b).sum(axis=(1, 2)) for a, b in ((grad_x, grad_x), (grad_x, grad_y), (grad_y, grad_y))]
    bx, by = -(grad_x * grad_t).sum(axis=(1, 2)), -(grad_y * grad_t).sum(axis=(1, 2))
    determinant = xx * yy - xy**2
    return np.stack([(yy * bx - xy * by) / determinant, (xx * by - xy * bx) / determinant], axis=-1)


def _appearance_features(video):
    """Colour histogram, mean and spread of the middle frame."""
    frame = video[len(video) // 2]
    histograms = [np.histogram(frame[..., c], bins=8, range=(0, 256))[0] for c in range(3)]
    return np.concatenate(histograms + [frame.mean(axis=(0, 1)), frame.std(axis=(0, 1))])


def _motion_features(video):
    """Mean and mean absolute global translation: direction and axis of motion."""
    translation = _global_translation(video)
    return np.concatenate([translation.mean(axis=0), np.abs(translation).mean(axis=0)])


@pytest.mark.parametrize("clutter", [True, False])
def test_classes_are_told_by_motion_not_by_appearance(clutter):
    config = synthetic.SyntheticConfig(train_videos_per_class=24, num_frames=16, resolution=32, clutter=clutter)
    videos, labels = [], []
    for _, label, frames in synthetic.iter_split(config, "train"):
        videos.append(frames.astype(np.float64))
        labels.append(label)

    def accuracy(features):
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return cross_val_score(classifier, np.stack([features(v) for v in videos]), labels, cv=4).mean()

    appearance, motion = accuracy(_appearance_features), accuracy(_motion_features)

    chance = 1 / config.num_classes
    assert appearance < chance + 0.08
    assert motion > appearance + 0.2


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match=r"num_classes=15: must be between 1 and the 14 motion patterns"):
        synthetic.SyntheticConfig(num_classes=15)
    with pytest.raises(ValueError, match="resolution=8: must be >= 16"):
        synthetic.SyntheticConfig(resolution=8)
    with pytest.raises(ValueError, match="jpeg_quality=101"):
        synthetic.SyntheticConfig(jpeg_quality=101)


# ---- writing ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    config = dataclasses.replace(TINY, write_videos=True)
    return root, config, synthetic.generate(root, config)


def test_dataset_info(tiny_dataset):
    root, config, info = tiny_dataset

    assert info == records.read_dataset_info(root)
    assert info["class_names"] == ["translate_right", "translate_left", "translate_up"]
    assert info["num_classes"] == 3 and info["fps"] == 25.0
    assert info["num_frames"] == 4 and info["resolution"] == 32
    assert info["splits"] == {
        "train": {"num_videos": 6, "shards": {"train-00000.tfrecord": 4, "train-00001.tfrecord": 2}},
        "test": {"num_videos": 3, "shards": {"test-00000.tfrecord": 3}},
    }
    assert info["synthetic"] == {
        "config": synthetic.config_dict(config), "generator_version": synthetic.GENERATOR_VERSION
    }
    assert "oops" not in info["synthetic"]["config"]  # Info (and cache key) as before the oops mode.


def test_records_hold_balanced_labels_and_the_rendered_frames(tiny_dataset):
    root, config, _ = tiny_dataset

    parsed = _parse_split(root, "train")

    labels = [int(p["label"]) for p in parsed]
    assert collections.Counter(labels) == {0: 2, 1: 2, 2: 2}
    rendered = list(synthetic.iter_split(config, "train"))
    for index, (p, (name, label, frames)) in enumerate(zip(parsed, rendered)):
        assert p["filename"].numpy().decode() == name
        assert int(p["label"]) == label
        assert p["label_string"].numpy().decode() == config.class_names[label]
        assert float(p["fps"]) == 25.0 and int(p["num_frames"]) == 4
        decoded = tf.io.decode_jpeg(p["rgb"][3]).numpy().astype(int)
        # JPEG halves the chroma resolution, which costs much on small frames: compare the error
        # with that against another video.
        error = np.abs(decoded - frames[3]).mean()
        assert error < 15 and error < np.abs(decoded - rendered[index - 1][2][3]).mean() / 3
    assert len(_parse_split(root, "test")) == 3


def test_videos_are_written_and_decode_to_the_rendered_frames(tiny_dataset):
    root, config, _ = tiny_dataset
    name, _, frames = next(synthetic.iter_split(config, "test"))

    video = sources.read_video(os.path.join(root, "videos", name + ".mp4"))

    assert video.frames.shape == (4, 32, 32, 3) and video.fps == 25
    assert np.abs(video.frames.astype(int) - frames).mean() < 12
    assert len(os.listdir(os.path.join(root, "videos", "train"))) == 3  # One folder per class.


def test_generate_is_idempotent(tiny_dataset, monkeypatch):
    root, config, info = tiny_dataset

    def fail(*args):
        raise AssertionError("rendered again")

    monkeypatch.setattr(synthetic, "render_video", fail)

    assert synthetic.generate(root, config) == info


def test_generate_replaces_a_dataset_of_another_config(tmp_path):
    root = str(tmp_path)
    synthetic.generate(root, dataclasses.replace(TINY, shard_size=1))

    info = synthetic.generate(root, TINY)

    assert sorted(os.listdir(tmp_path / "train")) == ["train-00000.tfrecord", "train-00001.tfrecord"]
    assert records.read_dataset_info(root) == info
    assert info["synthetic"]["config"]["shard_size"] == 4


# ---- default dataset and command line -------------------------------------------------------------


def test_default_dataset_is_cached_by_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TFVSSL_CACHE", str(tmp_path))

    path = synthetic.default_dataset(TINY)
    monkeypatch.setattr(synthetic, "generate", None)  # A cached dataset is not generated again.
    again = synthetic.default_dataset(TINY)

    assert again == path == synthetic.default_dataset_path(TINY)
    assert os.path.dirname(path) == str(tmp_path)
    assert records.read_dataset_info(path)["synthetic"]["config"] == synthetic.config_dict(TINY)
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # No temporary directory left.
    assert synthetic.default_dataset_path(dataclasses.replace(TINY, seed=1)) != path


def test_default_dataset_survives_a_race(tmp_path, monkeypatch):
    monkeypatch.setenv("TFVSSL_CACHE", str(tmp_path))
    real_generate = synthetic.generate
    final_path = synthetic.default_dataset_path(TINY)

    def generate_while_another_process_finishes_first(output_dir, config):
        info = real_generate(output_dir, config)
        real_generate(final_path, config)  # The other process's copy lands first.
        return info

    monkeypatch.setattr(synthetic, "generate", generate_while_another_process_finishes_first)

    path = synthetic.default_dataset(TINY)

    assert path == final_path
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    assert len(_parse_split(path, "test")) == 3


def test_flags_map_onto_the_config():
    flag_values = flags.FlagValues()
    synthetic.define_flags(flag_values)

    flag_values(["synthetic", "--num_classes=4", "--resolution=32", "--write_videos", "--fps=12.5"])

    assert synthetic.config_from_flags(flag_values) == synthetic.SyntheticConfig(
        num_classes=4, resolution=32, write_videos=True, fps=12.5
    )


def test_command_line_writes_the_dataset(tmp_path):
    command = [
        sys.executable, "-m", "tfvssl.data.synthetic", f"--output_dir={tmp_path}", "--num_classes=2",
        "--train_videos_per_class=1", "--test_videos_per_class=1", "--num_frames=3", "--resolution=16",
    ]
    root = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)

    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    with open(tmp_path / records.DATASET_INFO) as f:
        assert json.load(f)["splits"]["train"]["num_videos"] == 2


# ---- oops mode ------------------------------------------------------------------------------------

OOPS = synthetic.SyntheticConfig(
    num_classes=2, train_videos_per_class=2, test_videos_per_class=1, num_frames=80, resolution=16,
    oops=True,
)


def test_oops_mode_needs_videos_the_oops_filter_keeps():
    with pytest.raises(ValueError, match=r"num_frames=64: the oops mode needs videos of 3.2-30.0 s .* 80-750 frames"):
        synthetic.SyntheticConfig(num_frames=64, oops=True)
    assert synthetic.video_failure(dataclasses.replace(OOPS, oops=False), "train", 0) is None


def test_failures_are_seeded_and_spread_over_the_video():
    failures = [synthetic.video_failure(OOPS, "train", index) for index in range(60)]

    assert failures[3] == synthetic.video_failure(OOPS, "train", 3)
    assert failures[3] != synthetic.video_failure(dataclasses.replace(OOPS, seed=1), "train", 3)
    duration = OOPS.num_frames / OOPS.fps
    relative = np.array([f.time for f in failures]) / duration
    assert np.all((relative >= 0.1) & (relative <= 0.9))
    assert relative.min() < 0.25 and relative.max() > 0.75  # Wider than the middle half.
    assert all(f.frame == np.ceil(f.time * OOPS.fps) for f in failures)
    assert {f.kind for f in failures} == set(synthetic.FAILURE_KINDS)


def _broken(kind, frame, num_frames=40, num_draws=20):
    smooth = _trajectories("translate_right", num_draws=num_draws, num_frames=num_frames)
    broken = synthetic.Trajectory(*(
        np.stack(values) for values in zip(*(
            synthetic.break_motion(synthetic.Trajectory(*(v[i] for v in smooth)), frame, kind)
            for i in range(num_draws)
        ))
    ))
    return smooth, broken


@pytest.mark.parametrize("kind", synthetic.FAILURE_KINDS)
def test_the_motion_breaks_at_the_failure_frame(kind, monkeypatch):
    monkeypatch.setattr(synthetic, "_SHAKE", 0.0)  # The path alone; the shake is tested below.
    frame = 25
    smooth, broken = _broken(kind, frame)

    for name in synthetic.Trajectory._fields:
        np.testing.assert_array_equal(getattr(broken, name)[:, :frame], getattr(smooth, name)[:, :frame])
    velocity_x, velocity_y = np.diff(broken.x, axis=1), np.diff(broken.y, axis=1)
    before = velocity_x[:, frame - 2]  # Steady rightwards motion up to the failure.
    assert np.all(before > 0) and np.all(velocity_y[:, : frame - 1] == 0)
    after_x, after_y = velocity_x[:, frame - 1 :], velocity_y[:, frame - 1 :]  # From frame - 1 to frame on.
    if kind == "crash":
        assert np.all(after_x == 0) and np.all(after_y == 0)
    elif kind == "bounce":
        np.testing.assert_allclose(after_x[:, 0], -1.5 * before)  # Back, faster, ...
        assert np.all(np.diff(after_x, axis=1) > 0) and np.all(after_x < 0)  # ... slowing down.
    else:
        np.testing.assert_allclose(after_x, np.repeat(before[:, None], after_x.shape[1], axis=1))
        falling = int(synthetic._TERMINAL_SPEED / synthetic._GRAVITY)
        np.testing.assert_allclose(np.diff(after_y[:, :falling], axis=1), synthetic._GRAVITY)  # Faster, ...
        np.testing.assert_allclose(after_y[:, falling + 1 :], synthetic._TERMINAL_SPEED)  # ... up to a limit.
    # Tumbling: spinning clockwise (it moved right) far faster than the rotating classes, ...
    np.testing.assert_allclose(np.diff(broken.angle[:, frame - 1 :], axis=1), synthetic._SPIN)
    # ... and wobbling in size.
    wobble = broken.scale[:, frame:] / broken.scale[:, frame - 1 : frame] - 1
    assert np.all(np.abs(wobble) <= synthetic._SQUASH) and np.all(wobble.max(axis=1) - wobble.min(axis=1) > 0.4)


def test_a_broken_object_shakes_at_every_sampling_stride(monkeypatch):
    frame, amplitude = 25, synthetic._SHAKE
    shaking = _broken("crash", frame, num_frames=80, num_draws=2)[1]
    monkeypatch.setattr(synthetic, "_SHAKE", 0.0)
    steady = _broken("crash", frame, num_frames=80, num_draws=2)[1]  # Crashed: held still.

    # The shake moves it up to _SHAKE, at every stride an encoder may sample frames at.
    offset = shaking.x[:, frame:] - steady.x[:, frame:]
    assert np.all(np.abs(offset) <= amplitude + 1e-12) and np.abs(offset).max() > 0.9 * amplitude
    for stride in range(1, 9):
        assert np.all(np.abs(np.diff(offset[:, ::stride], axis=1)).mean(axis=1) > 0.2 * amplitude), stride


def test_a_broken_object_flies_apart_in_smaller_pieces():
    frame = 10
    _, broken = _broken("crash", frame, num_frames=60, num_draws=1)
    trajectory = synthetic.Trajectory(*(v[0] for v in broken))

    pieces = synthetic.shatter(trajectory, frame)

    assert len(pieces) == synthetic._FRAGMENTS
    for piece in pieces:
        np.testing.assert_allclose(piece.scale, synthetic._FRAGMENT_SIZE * trajectory.scale)
        distance = np.hypot(piece.x - trajectory.x, piece.y - trajectory.y)
        assert np.all(distance[:frame] == 0)  # Together up to the failure, ...
        assert np.all(np.diff(distance[frame - 1 :]) > 0)  # ... then apart, ...
        assert synthetic._FRAGMENT_SPREAD * 0.95 < distance[-1] <= synthetic._FRAGMENT_SPREAD  # ... so far.
    ends = np.array([[piece.x[-1], piece.y[-1]] for piece in pieces])
    nearest = 2 * synthetic._FRAGMENT_SPREAD * np.sin(np.pi / synthetic._FRAGMENTS)  # Neighbours on a circle.
    assert np.all(np.linalg.norm(ends[:, None] - ends[None], axis=-1)[np.triu_indices(len(pieces), 1)] > 0.95 * nearest)


def test_an_oops_video_is_the_default_video_up_to_its_failure():
    failure = synthetic.video_failure(OOPS, "train", 1)
    default = dataclasses.replace(OOPS, oops=False)

    broken = synthetic.render_video(OOPS, 1, np.random.default_rng(5), failure)
    smooth = synthetic.render_video(default, 1, np.random.default_rng(5))

    np.testing.assert_array_equal(broken[: failure.frame], smooth[: failure.frame])
    assert np.abs(broken[failure.frame + 5 :].astype(int) - smooth[failure.frame + 5 :]).mean() > 1


def test_oops_records_carry_the_failure_time(tmp_path):
    info = synthetic.generate(str(tmp_path), OOPS)

    parsed = _parse_split(str(tmp_path), "train")

    assert info["synthetic"]["config"]["oops"] is True
    assert info["synthetic"]["config"]["oops_version"] == synthetic.OOPS_VERSION  # New failures: new cache.
    assert synthetic.default_dataset_path(OOPS) != synthetic.default_dataset_path(dataclasses.replace(OOPS, oops=False))
    for index, video in enumerate(parsed):
        failure = synthetic.video_failure(OOPS, "train", index)
        assert float(video["t_fail"]) == pytest.approx(failure.time)
        assert float(video["rel_t"]) == pytest.approx(failure.time / (OOPS.num_frames / OOPS.fps))

    synthetic.generate(str(tmp_path / "default"), dataclasses.replace(OOPS, oops=False))
    assert float(_parse_split(str(tmp_path / "default"), "train")[0]["t_fail"]) == -1.0  # Absent.
