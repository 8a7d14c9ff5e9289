"""The embedded labeled dataset: procedurally generated videos whose class is their motion.

It is the default dataset when `--data` is not given and the project's standard small
benchmark. Each video shows one or two foreground objects that all move by the class's
motion pattern (translate in one of four directions, rotate, orbit, oscillate, ...), over a
random smooth texture, among distractor objects doing class-independent random walks, seen
by a shaking camera. Shapes, colours, sizes, textures, positions and orientations are
drawn from the same distribution for every class, and every pattern keeps that
distribution the same at every frame (uniform position on the torus the objects move on,
uniform orientation, the same size law), so no single frame tells the class: only motion
does. A frozen random encoder therefore does poorly and a good video representation well.
Without clutter (`clutter=False`, `--noclutter`) the same foreground objects move, white, on a
flat grey, with no distractors and no camera shake. Motion-defined (`motion_defined=True`,
`--motion_defined`) the same scene is drawn in one grey random-dot
texture, objects and background alike, whose dots live `_DOT_LIFETIME` frames (`DotTexture`):
no frame shows an object, and frames far apart share no dot, so that nothing but motion
tells one video, or one moment of it, from another (a limited-lifetime random-dot
kinematogram).

Everything is deterministic by seed (see `iter_split`).

Generate it explicitly with

    python -m tfvssl.data.synthetic --output_dir=/tmp/synthetic --num_classes=10 \\
        --resolution=64 --num_frames=64 --train_videos_per_class=40 --seed=0 [--write_videos]

or let `default_dataset()` cache it. The dataset is the record format of `records.py`;
with `write_videos` the same videos are also written as `<root>/videos/<split>/<class>/
<video>.mp4`, for the decode path.

In the oops mode (`oops=True`, `--oops`; the data of `tfvssl.oops`) every video's foreground
motion breaks once, at a random failure time between 10% and 90% of the video (`Failure`):
the objects fall, crash (stop dead) or bounce back, and from then on tumble (spin, shake and
wobble in size far faster than any smooth motion; `break_motion`) and are broken in pieces
that fly apart (`shatter`), so that every one-second clip after the failure shows it. The
time is recorded as `oops/t_fail` (seconds) and `oops/rel_t` (fraction of the duration), as
`tfvssl.prepare` records real Oops videos, and every video lasts 3.2-30 s, so the whole Oops
protocol applies (`tfvssl/data/oops_labels.py`).
Up to the failure, an oops video is the default mode's video of the same seed.
"""

import dataclasses
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from typing import NamedTuple

import numpy as np
from absl import app
from absl import flags

from tfvssl.data import oops_labels
from tfvssl.data import records
from tfvssl.data import sources

# Bump when rendering changes: cached datasets of an older version are regenerated.
GENERATOR_VERSION = 1
# Bump when the oops mode's failures change: only oops datasets are regenerated, the default
# mode's records and cache paths stay.
OOPS_VERSION = 3

SPLITS = ("train", "test")

# Geometry, in units of the frame size (positions live on the unit torus).
_FOREGROUND_RADIUS = (0.11, 0.16)
_DISTRACTOR_RADIUS = (0.05, 0.08)
# Every object's scale follows this log-uniform law at every frame, in every class, so that
# the size of an object says nothing about grow/shrink.
_SCALE_RANGE = (0.7, 1.4)
_CAMERA_SHAKE = 0.02  # Largest camera offset.
_MIN_CONTRAST = 80.0  # Least RGB distance between an object's colour and the background's.
# Without clutter: white objects on a uniform grey, so that no colour or texture tells one
# video (or one place in it) from another and instance-contrastive tasks must use motion.
_PLAIN_BACKGROUND, _PLAIN_OBJECT = 96.0, 240.0


@dataclasses.dataclass
class SyntheticConfig:
    """What to generate. Each field is also a flag of `python -m tfvssl.data.synthetic`."""

    num_classes: int = dataclasses.field(
        default=10, metadata={"help": "Motion classes, the first ones of MOTION_PATTERNS."}
    )
    train_videos_per_class: int = dataclasses.field(
        default=40, metadata={"help": "Videos per class in the train split."}
    )
    test_videos_per_class: int = dataclasses.field(
        default=10, metadata={"help": "Videos per class in the test split."}
    )
    num_frames: int = dataclasses.field(default=64, metadata={"help": "Frames per video."})
    resolution: int = dataclasses.field(default=64, metadata={"help": "Frame height and width."})
    fps: float = dataclasses.field(default=25.0, metadata={"help": "Frame rate recorded."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of every random draw."})
    jpeg_quality: int = dataclasses.field(default=90, metadata={"help": "JPEG quality of frames."})
    shard_size: int = dataclasses.field(default=100, metadata={"help": "Videos per shard."})
    write_videos: bool = dataclasses.field(
        default=False, metadata={"help": "Also write each video as an .mp4 under videos/."}
    )
    oops: bool = dataclasses.field(
        default=False,
        metadata={"help": "Oops mode: each video's motion breaks at a recorded failure time."},
    )
    clutter: bool = dataclasses.field(
        default=True,
        metadata={"help": "Textured backgrounds, coloured objects, distractors and a shaking camera; "
                          "without: white objects on a flat grey, the only thing that moves."},
    )
    vary_speed: bool = dataclasses.field(
        default=True,
        metadata={"help": "Each video draws its motion's speed and extent from its class's range "
                          "(a factor of 1.5-2); without: every video of a class moves at the "
                          "range's middle, the same videos otherwise."},
    )
    motion_defined: bool = dataclasses.field(
        default=False,
        metadata={"help": "Objects and background drawn in the same grey random-dot texture whose "
                          "dots live a few frames (`DotTexture`): no frame shows an object or tells "
                          "one video from another, only motion does; the same shapes and motion."},
    )

    def __post_init__(self):
        if not 1 <= self.num_classes <= len(MOTION_PATTERNS):
            raise ValueError(
                f"num_classes={self.num_classes}: must be between 1 and the "
                f"{len(MOTION_PATTERNS)} motion patterns implemented ({', '.join(MOTION_PATTERNS)})"
            )
        minimums = {"train_videos_per_class": 1, "test_videos_per_class": 0, "num_frames": 2,
                    "resolution": 16, "seed": 0, "jpeg_quality": 1, "shard_size": 1}
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= {minimum}")
        if self.jpeg_quality > 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality}: must be <= 100")
        if self.fps <= 0:
            raise ValueError(f"fps={self.fps}: must be positive")
        low, high = oops_labels.MIN_DURATION, oops_labels.MAX_DURATION
        if self.oops and not low <= self.num_frames / self.fps <= high:
            raise ValueError(
                f"num_frames={self.num_frames}: the oops mode needs videos of {low}-{high} s (the Oops "
                f"validity filter), {math.ceil(low * self.fps)}-{math.floor(high * self.fps)} frames "
                f"at fps={self.fps}"
            )

    @property
    def class_names(self):
        return list(MOTION_PATTERNS)[: self.num_classes]

    def videos_per_class(self, split):
        return {"train": self.train_videos_per_class, "test": self.test_videos_per_class}[split]


def config_dict(config):
    """The config as `dataset_info.json` records it and the cache path hashes it.

    `oops` appears only when set, with `oops_version` (`OOPS_VERSION`), and `clutter` and
    `vary_speed` only when unset, `motion_defined` only when set: datasets made before these
    options existed keep their info and their cache path, and oops datasets of older failures
    are regenerated.
    """
    values = dataclasses.asdict(config)
    if values["oops"]:
        values["oops_version"] = OOPS_VERSION
    else:
        del values["oops"]
    for name, default in (("clutter", True), ("vary_speed", True), ("motion_defined", False)):
        if values[name] == default:
            del values[name]
    return values


class Trajectory(NamedTuple):
    """An object's pose at each frame, float64 `[T]` each.

    Attributes:
      x, y: centre on the unit torus (wrapped when drawn), y pointing down.
      angle: orientation in radians; increasing turns the object clockwise on screen.
      scale: size multiplier of the object's radius.
    """

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    scale: np.ndarray


# ---- Motion patterns ------------------------------------------------------------------------
# Each maps (rng, t, rate) -> Trajectory for frames t = 0, 1, ... Start position, orientation
# and phase are uniform, which keeps every frame's pose distribution the same in every class.
# Speeds are per frame, in frame widths (translation: 1.3-2.6 px per frame at 64 px), so
# the motion shows at any resolution over 8-40 frames. A pattern draws its speed and extent
# (amplitude, radius, period) with `rate(low, high)` (`drawn_rate` or `middle_rate`).


def drawn_rate(rng):
    """`rate(low, high)`: a speed or extent uniform over the class's range, per video."""
    return lambda low, high: rng.uniform(low, high)


def middle_rate(rng):
    """`rate(low, high)`: the range's middle, one speed for the whole class (Pace's pace is then
    a property of the clip). The draw is still made, so every other draw of the video is the
    same as with `drawn_rate`."""

    def rate(low, high):
        rng.uniform(low, high)
        return (low + high) / 2

    return rate


def _static_pose(rng, t, rate=None):
    """Uniform position and orientation, held still, with the common scale law (the "still"
    class: no motion, so no `rate` to draw)."""
    ones = np.ones_like(t)
    return Trajectory(
        x=rng.uniform() * ones,
        y=rng.uniform() * ones,
        angle=rng.uniform(0, 2 * np.pi) * ones,
        scale=np.exp(rng.uniform(*np.log(_SCALE_RANGE))) * ones,
    )


def _translate(direction_x, direction_y):
    def pattern(rng, t, rate):
        pose = _static_pose(rng, t)
        speed = rate(0.02, 0.04)
        return pose._replace(x=pose.x + direction_x * speed * t, y=pose.y + direction_y * speed * t)

    return pattern


def _rotate(sign):
    def pattern(rng, t, rate):
        pose = _static_pose(rng, t)
        return pose._replace(angle=pose.angle + sign * rate(0.08, 0.16) * t)

    return pattern


def _orbit(sign):
    def pattern(rng, t, rate):
        pose = _static_pose(rng, t)
        radius = rate(0.15, 0.25)
        phase = rng.uniform(0, 2 * np.pi) + sign * rate(0.1, 0.2) * t
        return pose._replace(x=pose.x + radius * np.cos(phase), y=pose.y + radius * np.sin(phase))

    return pattern


def _oscillate(axis_x, axis_y):
    def pattern(rng, t, rate):
        pose = _static_pose(rng, t)
        offset = rate(0.15, 0.25) * np.sin(rng.uniform(0, 2 * np.pi) + 2 * np.pi * t / rate(16, 32))
        return pose._replace(x=pose.x + axis_x * offset, y=pose.y + axis_y * offset)

    return pattern


def _scale_sawtooth(sign):
    # Growing (or shrinking) without end would change the size law over time; instead the
    # log-scale runs up (or down) the whole range and wraps, from a random phase, so each
    # frame sees the common log-uniform law. A period above the usual clip length makes the
    # wrap rare within a clip.
    def pattern(rng, t, rate):
        pose = _static_pose(rng, t)
        phase = (rng.uniform() + sign * t / rate(24, 40)) % 1.0
        low, high = np.log(_SCALE_RANGE)
        return pose._replace(scale=np.exp(low + (high - low) * phase))

    return pattern


def _accelerate(rng, t, rate):
    pose = _static_pose(rng, t)
    direction = rng.uniform(0, 2 * np.pi)
    # From rest to about 0.05 frame widths per frame by the last frame, whatever the length.
    distance = 0.5 * rate(0.04, 0.06) / max(t[-1], 1) * t**2
    return pose._replace(
        x=pose.x + distance * np.cos(direction), y=pose.y + distance * np.sin(direction)
    )


# The first `num_classes` are used, so the most distinct come first.
MOTION_PATTERNS = {
    "translate_right": _translate(1, 0),
    "translate_left": _translate(-1, 0),
    "translate_up": _translate(0, -1),
    "translate_down": _translate(0, 1),
    "rotate_clockwise": _rotate(1),
    "rotate_counterclockwise": _rotate(-1),
    "orbit_clockwise": _orbit(1),
    "orbit_counterclockwise": _orbit(-1),
    "oscillate_horizontal": _oscillate(1, 0),
    "oscillate_vertical": _oscillate(0, 1),
    "grow": _scale_sawtooth(1),
    "shrink": _scale_sawtooth(-1),
    "accelerate": _accelerate,
    "still": _static_pose,
}


def _random_walk(rng, t):
    """A distractor's smooth, class-independent wander in position and orientation."""
    pose = _static_pose(rng, t)
    # Velocities follow a damped random walk: smooth, but with no preferred direction.
    damping = 0.9
    steps = rng.normal(size=(3, len(t))) * np.array([[0.003], [0.003], [0.02]])
    velocity = np.zeros_like(steps)
    velocity[:, 0] = rng.normal(size=3) * np.array([0.007, 0.007, 0.05])
    for i in range(1, len(t)):
        velocity[:, i] = damping * velocity[:, i - 1] + steps[:, i]
    offset = np.cumsum(velocity, axis=1) - velocity[:, :1]
    return pose._replace(
        x=pose.x + offset[0], y=pose.y + offset[1], angle=pose.angle + offset[2],
        scale=np.ones_like(t),
    )


# ---- Failures (oops mode) ---------------------------------------------------------------------

FAILURE_KINDS = ("fall", "crash", "bounce")
# Failure times are uniform over this part of the video: wide, so that a clip's time says
# little about its label (the time prior), inside the Oops filter's [0.01, 0.99].
FAILURE_SPAN = (0.1, 0.9)
# After a failure every foreground object tumbles: it spins, shakes and squashes, each far
# faster than any class's smooth motion, so that any 1-s clip after the failure (and, at any
# sampling stride, any few frames of it) shows it. Per frame since the failure:
_GRAVITY, _TERMINAL_SPEED = 0.004, 0.05  # Fall: frame widths per frame squared, per frame.
_SPIN = 0.45  # Radians (the rotating classes: 0.08-0.16).
_SHAKE = 0.08  # Frame widths of the shake's amplitude on each axis.
_SQUASH = 0.3  # Relative amplitude of the size's wobble.
# Angular frequencies (radians per frame) of the shake (x, y) and of the squash: periods of
# 3-5 frames, chosen so that frames 1 to 8 apart are at least 0.46 rad out of phase (no
# sampling stride an encoder uses freezes them).
_SHAKE_FREQUENCIES, _SQUASH_FREQUENCY = (1.4, 2.25), 1.9
_BOUNCE_SPEED, _BOUNCE_DAMPING = 1.5, 0.8  # Reversed speed / speed before, decay per frame.
# And it breaks: from the failure on it is drawn as `_FRAGMENTS` pieces of this radius
# (relative to its own) that fly apart, up to `_FRAGMENT_SPREAD` frame widths from its path
# within about `_FRAGMENT_FRAMES` frames, so that any single frame after the failure shows it
# broken. Many small pieces: `benchmarks/oops_visibility.py` (uncluttered) tells the three
# clip classes apart far better with 8 pieces of 0.3 (67% mean class accuracy) than with 3
# of 0.55 spreading 0.2 (53%).
_FRAGMENTS, _FRAGMENT_SIZE = 8, 0.3
_FRAGMENT_SPREAD, _FRAGMENT_FRAMES = 0.3, 8.0


@dataclasses.dataclass(frozen=True)
class Failure:
    """Where and how a video's foreground motion breaks (oops mode).

    Attributes:
      time: the failure time in seconds; the frames from `frame` on, the first at or after
        it, leave the smooth motion.
      kind: one of `FAILURE_KINDS`.
      frame: `ceil(time * fps)`.
    """

    time: float
    kind: str
    frame: int


def video_failure(config, split, index):
    """The failure of video `index` of `split`, or None outside the oops mode.

    Drawn from a generator of its own, seeded `(seed, split number, index, 1)`, so the video's
    other draws are the default mode's: the time uniform over `FAILURE_SPAN` of the video,
    the kind uniform over `FAILURE_KINDS`.
    """
    if not config.oops:
        return None
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index, 1])
    time = rng.uniform(*FAILURE_SPAN) * config.num_frames / config.fps
    kind = FAILURE_KINDS[rng.integers(len(FAILURE_KINDS))]
    return Failure(time=time, kind=kind, frame=math.ceil(time * config.fps))


def break_motion(trajectory, frame, kind):
    """The trajectory whose smooth motion breaks at `frame` (at least 2).

    Up to `frame - 1` it is `trajectory`; from there, with p the pose at `frame - 1`, v its
    velocity (the last step) and n = 1, 2, ... the frames since, the path is
    - fall: p + v n plus a downward fall at `_GRAVITY`, up to `_TERMINAL_SPEED`;
    - crash: p, held;
    - bounce: back at `_BOUNCE_SPEED` times v, slowing by `_BOUNCE_DAMPING` per frame;
    and on it the object tumbles: it spins `_SPIN` per frame (the way it moved, clockwise when
    still), shakes by `_SHAKE` and its size wobbles by `_SQUASH`, at the phases its pose at p
    gives (deterministic, no draw).

    Args:
      trajectory: a `Trajectory` of T frames.
      frame: first frame of the new motion.
      kind: one of `FAILURE_KINDS`.

    Returns:
      A `Trajectory` of T frames.
    """
    if kind not in FAILURE_KINDS:
        raise ValueError(f"failure kind {kind!r}: choose one of {FAILURE_KINDS}")
    pose = np.stack(trajectory)  # [4, T]: x, y, angle, scale.
    start, velocity = pose[:, frame - 1 : frame], pose[:, frame - 1 : frame] - pose[:, frame - 2 : frame - 1]
    n = np.arange(1, pose.shape[1] - frame + 1, dtype=np.float64)
    if kind == "crash":
        after = np.repeat(start, len(n), axis=1)
    elif kind == "bounce":
        after = start - _BOUNCE_SPEED * velocity * (1 - _BOUNCE_DAMPING**n) / (1 - _BOUNCE_DAMPING)
    else:
        after = start + velocity * n
        # Free fall until the terminal speed (reached at frame n_t), then steady.
        n_t = _TERMINAL_SPEED / _GRAVITY
        after[1] += np.where(n < n_t, 0.5 * _GRAVITY * n**2, _TERMINAL_SPEED * (n - 0.5 * n_t))
    phase = 2 * np.pi * start[:2, 0]  # From the position: objects shake out of step.
    after[0] += _SHAKE * np.sin(_SHAKE_FREQUENCIES[0] * n + phase[0])
    after[1] += _SHAKE * np.sin(_SHAKE_FREQUENCIES[1] * n + phase[1])
    after[2] = start[2] + (1.0 if velocity[0, 0] >= 0 else -1.0) * _SPIN * n
    after[3] = start[3] * (1 + _SQUASH * np.sin(_SQUASH_FREQUENCY * n + phase[0]))
    return Trajectory(*np.concatenate([pose[:, :frame], after], axis=1))


def shatter(trajectory, frame):
    """The pieces an object breaks into at `frame`, to draw from `frame` on.

    Piece k sits on `trajectory` (the broken path), pushed out along the direction
    `angle at frame - 1 + 2 pi k / _FRAGMENTS` by `_FRAGMENT_SPREAD (1 - exp(-n /
    _FRAGMENT_FRAMES))` (n = frames since `frame - 1`, 0 before), turned by that same
    direction, at `_FRAGMENT_SIZE` times the object's scale.

    Args:
      trajectory: a `Trajectory` of T frames (`break_motion`'s).
      frame: the failure frame (at least 1).

    Returns:
      A list of `_FRAGMENTS` `Trajectory`s of T frames.
    """
    n = np.maximum(np.arange(len(trajectory.x), dtype=np.float64) - frame + 1, 0)
    spread = _FRAGMENT_SPREAD * (1 - np.exp(-n / _FRAGMENT_FRAMES))
    pieces = []
    for k in range(_FRAGMENTS):
        direction = trajectory.angle[frame - 1] + 2 * np.pi * k / _FRAGMENTS
        pieces.append(Trajectory(
            x=trajectory.x + spread * np.cos(direction), y=trajectory.y + spread * np.sin(direction),
            angle=trajectory.angle + direction, scale=_FRAGMENT_SIZE * trajectory.scale,
        ))
    return pieces


# ---- Shapes -----------------------------------------------------------------------------------
# Signed distances (negative inside) in the object's frame, in units of its radius. All fit
# in the unit disc and are asymmetric, so that rotation is visible.


def _box(u, v, center_u, center_v, half_u, half_v):
    qu, qv = np.abs(u - center_u) - half_u, np.abs(v - center_v) - half_v
    return np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)


def _without_wedge(distance, u, v, half_angle):
    """Cuts a wedge opening towards +u out of a shape (the distance along the arc)."""
    return np.maximum(distance, (half_angle - np.abs(np.arctan2(v, u))) * np.hypot(u, v))


def _pacman(u, v):
    return _without_wedge(np.hypot(u, v) - 1, u, v, 0.6)


def _broken_ring(u, v):
    return _without_wedge(np.abs(np.hypot(u, v) - 0.7) - 0.3, u, v, 0.5)


def _arrowhead(u, v):
    # Isosceles triangle pointing to +u: apex (1, 0), base corners (-0.6, +-0.7).
    slope_normal = np.array([0.7, 1.6]) / np.hypot(0.7, 1.6)
    return np.maximum.reduce([
        -0.6 - u,
        slope_normal[0] * (u - 1) + slope_normal[1] * v,
        slope_normal[0] * (u - 1) - slope_normal[1] * v,
    ])


def _ell(u, v):
    return np.minimum(_box(u, v, -0.35, 0, 0.2, 0.65), _box(u, v, 0.1, 0.45, 0.65, 0.2))


def _half_disc(u, v):
    return np.maximum(np.hypot(u, v) - 1, -u - 0.1)


SHAPES = {"pacman": _pacman, "broken_ring": _broken_ring, "arrowhead": _arrowhead,
          "ell": _ell, "half_disc": _half_disc}


# ---- Rendering ------------------------------------------------------------------------------

# Motion-defined mode: dots of `_DOT_CELL` frame widths (2 px at 64 px), dark or light, each
# living `_DOT_LIFETIME` frames: longer than the sampling strides of the methods (1-4 frames),
# so that the dots of a surface move together between sampled frames, and short against a
# video and a DPC block sequence, so that the pattern seen later is a new one.
_DOT_CELL = 1 / 32
_DOT_LIFETIME = 8
_DOT_LEVELS = (64.0, 192.0)


class DotTexture:
    """A random-dot texture whose dots live `_DOT_LIFETIME` frames (limited-lifetime dots).

    A wrapping grid of `cells x cells` square cells, each dark or light (`_DOT_LEVELS`) at
    random, sampled bilinearly. Cell (i, j) is redrawn whenever `(t + phase[i, j])` crosses a
    multiple of `_DOT_LIFETIME`, with a random phase per cell, so that at every frame one
    dot in `_DOT_LIFETIME` is replaced: no moment of the video is marked, and frames more
    than `_DOT_LIFETIME` apart share no dot.
    """

    def __init__(self, rng, cells, num_frames):
        self.phase = rng.integers(_DOT_LIFETIME, size=(cells, cells))
        # Generations 0 .. (num_frames - 1 + _DOT_LIFETIME - 1) // _DOT_LIFETIME.
        self.bits = rng.integers(2, size=(num_frames // _DOT_LIFETIME + 2, cells, cells))

    def sample(self, frame_numbers, u, v):
        """Grey levels at texture coordinates `(u, v)` (in cells, any real values: the grid
        wraps), float32 `[T, h, w]`, for int `frame_numbers` `[T, 1, 1]` and float `u`, `v`
        broadcasting to `[T, h, w]`."""
        cells = self.phase.shape[0]
        u0, v0 = np.floor(u), np.floor(v)
        fu, fv = u - u0, v - v0
        u0, v0 = u0.astype(np.int64), v0.astype(np.int64)

        def corner(du, dv):
            i, j = (v0 + dv) % cells, (u0 + du) % cells
            return self.bits[(frame_numbers + self.phase[i, j]) // _DOT_LIFETIME, i, j]

        mix = ((1 - fu) * (1 - fv) * corner(0, 0) + fu * (1 - fv) * corner(1, 0)
               + (1 - fu) * fv * corner(0, 1) + fu * fv * corner(1, 1))
        low, high = _DOT_LEVELS
        return (low + (high - low) * mix).astype(np.float32)


def _camera_shake(rng, t):
    """A hand-held camera's offset at each frame, in frame units: `(x, y)`, float `[T]` each.

    Two random sinusoids per axis: smooth, bounded by `_CAMERA_SHAKE` and slower than the
    objects, so it disturbs without drowning their motion.
    """
    amplitudes = rng.uniform(0, _CAMERA_SHAKE / 2, size=(2, 2, 1))
    frequencies = rng.uniform(0.1, 0.6, size=(2, 2, 1))
    phases = rng.uniform(0, 2 * np.pi, size=(2, 2, 1))
    offset_x, offset_y = (amplitudes * np.sin(frequencies * t + phases)).sum(axis=1)
    return offset_x, offset_y


def _background(rng, size, camera_x, camera_y):
    """A random smooth two-colour texture as the shaking camera sees it.

    Args:
      rng: the video's generator.
      size: frame size in pixels.
      camera_x, camera_y: float `[T]`, the camera offset in frame units.

    Returns:
      float32 `[T, size, size, 3]` in [0, 255], and the two colours, float `[2, 3]`.
    """
    # Texture coordinates of the pixel centres in each frame, in frame units.
    pixels = (np.arange(size) + 0.5) / size
    x = (pixels[None, :] + camera_x[:, None]).astype(np.float32)  # [T, size]
    y = (pixels[None, :] + camera_y[:, None]).astype(np.float32)

    # Low-frequency noise: a random grid over the camera's whole range, interpolated
    # bilinearly as a product of tent weights along each axis.
    cells = int(rng.integers(2, 6))
    grid = rng.uniform(size=(cells + 1, cells + 1)).astype(np.float32)

    def tent_weights(coordinates):  # [T, size] -> [T, size, cells + 1]
        nodes = (coordinates + _CAMERA_SHAKE) / (1 + 2 * _CAMERA_SHAKE) * cells
        return np.maximum(0, 1 - np.abs(nodes[..., None] - np.arange(cells + 1, dtype=np.float32)))

    mix = tent_weights(y) @ grid @ tent_weights(x).transpose(0, 2, 1)  # [T, size, size]
    if rng.uniform() < 0.5:
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(2, 6) * 2 * np.pi
        phase = frequency * (math.cos(angle) * x[:, None, :] + math.sin(angle) * y[:, :, None])
        mix = 0.5 * mix + 0.25 * (np.sin(phase + rng.uniform(0, 2 * np.pi)) + 1)
    colors = rng.uniform(0, 255, size=(2, 3))
    low, difference = colors[0].astype(np.float32), (colors[1] - colors[0]).astype(np.float32)
    return low + mix[..., None] * difference, colors


def _object_color(rng, background_colors):
    """A random colour at least `_MIN_CONTRAST` away (RGB distance) from both background
    colours, so that no object hides in the texture."""
    while True:
        color = rng.uniform(0, 255, size=3)
        if np.linalg.norm(background_colors - color, axis=1).min() >= _MIN_CONTRAST:
            return color


def _draw_object(frames, trajectory, camera_x, camera_y, radius, shape, color, first_frame=0):
    """Blends one anti-aliased object into every frame, in place.

    Only a square window around the object is computed (every shape fits in its unit
    disc); its pixel indices wrap around the frame, which draws the torus.

    Args:
      frames: float32 `[T, S, S, 3]`, modified.
      trajectory: the object's `Trajectory`.
      camera_x, camera_y: float `[T]`, the camera offset in frame units.
      radius: radius in units of the frame size, before `trajectory.scale`.
      shape: one of `SHAPES`.
      color: float `[3]`, or a `DotTexture` that turns and moves with the object (its
        dots the background's size at any scale).
      first_frame: the video's frame number of `frames[0]` (a texture's dots live by it).
    """
    num_frames, size = frames.shape[:2]
    center_x = (trajectory.x - camera_x) * size
    center_y = (trajectory.y - camera_y) * size
    radius_pixels = radius * size * trajectory.scale
    half_window = min(int(np.ceil(radius_pixels.max())) + 1, size // 2)
    window = np.arange(-half_window, half_window)
    columns = np.floor(center_x).astype(np.int64)[:, None] + window  # [T, w]
    rows = np.floor(center_y).astype(np.int64)[:, None] + window
    dx = (columns + 0.5 - center_x[:, None])[:, None, :]  # [T, 1, w]
    dy = (rows + 0.5 - center_y[:, None])[:, :, None]  # [T, w, 1]
    scale = radius_pixels[:, None, None]
    cos, sin = np.cos(trajectory.angle)[:, None, None], np.sin(trajectory.angle)[:, None, None]
    u = (dx * cos + dy * sin) / scale
    v = (dy * cos - dx * sin) / scale
    alpha = np.clip(0.5 - shape(u, v) * scale, 0, 1).astype(np.float32)[..., None]
    if isinstance(color, DotTexture):
        cells_per_unit = scale / (size * _DOT_CELL)  # Texture cells per unit of u and v.
        middle = color.phase.shape[0] / 2
        frame_numbers = first_frame + np.arange(num_frames)[:, None, None]
        color = color.sample(frame_numbers, u * cells_per_unit + middle, v * cells_per_unit + middle)
        color = color[..., None]

    index = (
        np.arange(num_frames)[:, None, None], rows[:, :, None] % size, columns[:, None, :] % size
    )
    region = frames[index]
    frames[index] = region + alpha * (np.asarray(color, np.float32) - region)


def render_video(config, class_index, rng, failure=None):
    """Renders one video of a class.

    Args:
      config: a `SyntheticConfig` (uses `num_frames` and `resolution`).
      class_index: index into `MOTION_PATTERNS`.
      rng: a `np.random.Generator`; the video is a pure function of its state.
      failure: optional `Failure`: the foreground's motion breaks there (`break_motion`)
        and each foreground object is drawn as its pieces from then on (`shatter`).

    Returns:
      uint8 `[T, H, W, 3]` RGB frames, T = `num_frames`, H = W = `resolution`.
    """
    size, num_frames = config.resolution, config.num_frames
    t = np.arange(num_frames, dtype=np.float64)
    motion = list(MOTION_PATTERNS.values())[class_index]

    rate = (drawn_rate if config.vary_speed else middle_rate)(rng)

    def foreground():
        trajectory = motion(rng, t, rate)
        return trajectory if failure is None else break_motion(trajectory, failure.frame, failure.kind)

    # Objects: (trajectory, radius), foreground ones following the class's motion.
    objects = [
        (foreground(), rng.uniform(*_FOREGROUND_RADIUS)) for _ in range(rng.integers(1, 3))
    ]
    num_foreground = len(objects)
    if config.clutter:
        objects += [
            (_random_walk(rng, t), rng.uniform(*_DISTRACTOR_RADIUS)) for _ in range(rng.integers(2, 5))
        ]
    draw_order = rng.permutation(len(objects))

    if config.clutter:
        camera_x, camera_y = _camera_shake(rng, t)
        frames, background_colors = _background(rng, size, camera_x, camera_y)
    else:
        camera_x = camera_y = np.zeros_like(t)
        frames = np.full((num_frames, size, size, 3), _PLAIN_BACKGROUND, np.float32)
    if config.motion_defined:
        # The dots come from a generator of their own: every other draw stays the other modes'.
        dots_rng = rng.spawn(1)[0]
        background_cells = round(1 / _DOT_CELL)
        pixels = (np.arange(size) + 0.5) / size
        frames[:] = DotTexture(dots_rng, background_cells, num_frames).sample(
            np.arange(num_frames)[:, None, None],
            (pixels[None, None, :] + camera_x[:, None, None]) * background_cells,
            (pixels[None, :, None] + camera_y[:, None, None]) * background_cells,
        )[..., None]
    shape_names = list(SHAPES)
    for index in draw_order:
        trajectory, radius = objects[index]
        shape = SHAPES[shape_names[rng.integers(len(shape_names))]]
        color = _object_color(rng, background_colors) if config.clutter else np.full(3, _PLAIN_OBJECT)
        if config.motion_defined:
            color = DotTexture(dots_rng, math.ceil(2 * radius * _SCALE_RANGE[1] / _DOT_CELL) + 2, num_frames)
        if failure is None or index >= num_foreground:
            _draw_object(frames, trajectory, camera_x, camera_y, radius, shape, color)
            continue
        whole, broken = slice(None, failure.frame), slice(failure.frame, None)
        # Slices of `frames` are views: drawing into them draws into the video.
        _draw_object(frames[whole], Trajectory(*(v[whole] for v in trajectory)),
                     camera_x[whole], camera_y[whole], radius, shape, color)
        for piece in shatter(trajectory, failure.frame):
            _draw_object(frames[broken], Trajectory(*(v[broken] for v in piece)),
                         camera_x[broken], camera_y[broken], radius, shape, color,
                         first_frame=failure.frame)
    return np.round(frames).astype(np.uint8)


# ---- Writing ----------------------------------------------------------------------------------


def iter_split(config, split):
    """Renders the videos of a split, in the order they are written.

    Classes alternate (video `i` is of class `i % num_classes`), so any prefix, and any
    shard, is balanced. Video `i` is drawn from its own generator seeded with
    `(seed, split number, i)`: it does not depend on how many videos come before it. In the
    oops mode its motion breaks at `video_failure(config, split, i)`.

    Args:
      config: a `SyntheticConfig`.
      split: one of `SPLITS`.

    Yields:
      `(name, class_index, frames)`: the id `<split>/<class>/<class>_<k>`, the label and
      uint8 `[T, H, W, 3]` frames.
    """
    split_number = SPLITS.index(split)
    for index in range(config.videos_per_class(split) * config.num_classes):
        class_index = index % config.num_classes
        class_name = config.class_names[class_index]
        name = f"{split}/{class_name}/{class_name}_{index // config.num_classes:04d}"
        rng = np.random.default_rng([config.seed, split_number, index])
        yield name, class_index, render_video(config, class_index, rng, video_failure(config, split, index))


def _existing_dataset_info(output_dir, config):
    """The dataset_info of `output_dir` when it holds the complete dataset of `config`."""
    info_path = os.path.join(output_dir, records.DATASET_INFO)
    if not os.path.isfile(info_path):
        return None
    with open(info_path) as f:
        info = json.load(f)
    expected = {"config": config_dict(config), "generator_version": GENERATOR_VERSION}
    if info.get("synthetic") != expected:
        return None
    for split, split_info in info["splits"].items():
        for shard in split_info["shards"]:
            if not os.path.isfile(os.path.join(output_dir, split, shard)):
                return None
    return info


def _write_split(output_dir, config, split):
    """Renders and writes every video of one split; returns its dataset_info entry."""
    with records.ShardWriter(output_dir, split, config.shard_size) as writer:
        for index, (name, class_index, video) in enumerate(iter_split(config, split)):
            jpegs = [records.encode_jpeg(frame, config.jpeg_quality) for frame in video]
            failure = video_failure(config, split, index)
            t_fail = None if failure is None else failure.time
            writer.write(records.make_sequence_example(
                {"rgb": jpegs}, filename=name, label_index=class_index,
                label_string=config.class_names[class_index], fps=config.fps, t_fail=t_fail,
                rel_t=None if failure is None else t_fail * config.fps / config.num_frames,
            ))
            if config.write_videos:
                path = os.path.join(output_dir, "videos", name + ".mp4")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                sources.write_video(path, video, config.fps)
    # Shards of an earlier, larger generation would be read as part of this one.
    shards = glob.glob(os.path.join(output_dir, split, f"{split}-*{records.SHARD_SUFFIX}"))
    for stale in set(shards) - set(writer.shard_paths):
        os.remove(stale)
    return writer.split_info()


def generate(output_dir, config):
    """Writes the dataset of `config` into `output_dir` (train and test splits).

    Idempotent: returns at once when `output_dir` already holds the complete dataset of the
    same config and generator version. `dataset_info.json` is written last, so a crashed run
    is redone rather than trusted.

    Args:
      output_dir: the dataset root (`records.py` layout).
      config: a `SyntheticConfig`.

    Returns:
      The dataset_info dict: `name`, `class_names`, `num_classes`, `fps`, `num_frames`,
      `resolution`, `splits` (per split `num_videos` and `shards`: name -> videos) and
      `synthetic` (the config and the generator version that made it).
    """
    info = _existing_dataset_info(output_dir, config)
    if info is not None:
        return info
    info_path = os.path.join(output_dir, records.DATASET_INFO)
    if os.path.exists(info_path):
        os.remove(info_path)
    splits = {split: _write_split(output_dir, config, split) for split in SPLITS}
    info = {
        "name": "synthetic",
        "class_names": config.class_names,
        "num_classes": config.num_classes,
        "fps": config.fps,
        "num_frames": config.num_frames,
        "resolution": config.resolution,
        "splits": splits,
        "synthetic": {"config": config_dict(config), "generator_version": GENERATOR_VERSION},
    }
    records.write_dataset_info(output_dir, info)
    return info


def cache_dir():
    """Where generated datasets are kept: `$TFVSSL_CACHE`, else `~/.cache/tfvssl`."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "tfvssl")
    return os.environ.get("TFVSSL_CACHE") or default


def default_dataset_path(config=None):
    """Where `default_dataset` keeps the dataset of `config`: a cache directory named by a
    hash of the config and the generator version."""
    config = config or SyntheticConfig()
    key = json.dumps(
        {"config": config_dict(config), "version": GENERATOR_VERSION}, sort_keys=True
    )
    return os.path.join(cache_dir(), f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:12]}")


def default_dataset(config=None):
    """The root of the embedded dataset, generated into the cache on first use.

    The dataset is generated in a temporary directory and renamed into place, so processes
    racing to create it each get a complete dataset.

    Args:
      config: a `SyntheticConfig`; default `SyntheticConfig()`.

    Returns:
      The dataset root (`default_dataset_path(config)`), usable as `--data`.
    """
    config = config or SyntheticConfig()
    path = default_dataset_path(config)
    if _existing_dataset_info(path, config):
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=cache_dir())
    try:
        generate(temporary, config)
        try:
            os.rename(temporary, path)
        except OSError:
            # Another process renamed its copy first.
            if not _existing_dataset_info(path, config):
                raise RuntimeError(f"{path} exists but is not a complete dataset; delete it")
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return path


def define_flags(flag_values=flags.FLAGS):
    """Defines `--output_dir` and one flag per `SyntheticConfig` field.

    Only the command line calls this: other tools import the module and have flags of
    their own with the same names (`--resolution`, `--seed`).
    """
    flags.DEFINE_string(
        "output_dir", None,
        "Dataset root to write. Default: the cache that runs without --data use.",
        flag_values=flag_values,
    )
    definers = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool}
    for field in dataclasses.fields(SyntheticConfig):
        definers[field.type](
            field.name, field.default, field.metadata["help"], flag_values=flag_values
        )


def config_from_flags(flag_values=flags.FLAGS):
    """The `SyntheticConfig` of parsed flags defined by `define_flags`."""
    fields = dataclasses.fields(SyntheticConfig)
    return SyntheticConfig(**{field.name: flag_values[field.name].value for field in fields})


def main(argv):
    del argv
    config = config_from_flags()
    if flags.FLAGS.output_dir:
        generate(flags.FLAGS.output_dir, config)
        print(flags.FLAGS.output_dir)
    else:
        print(default_dataset(config))


if __name__ == "__main__":
    define_flags()
    app.run(main)
