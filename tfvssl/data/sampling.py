"""Frame-index samplers of the five methods, and the deterministic evaluation samplers.

Every sampler maps a video length to int32 frame indices; frames are decoded only after
sampling. Randomness is stateless: each random sampler takes `seed`, an int32/int64 tensor
of shape `[2]` (as `tf.random.stateless_*`), so the same seed always gives the same indices
and a resumed run replays its data exactly.

Conventions shared by all samplers:
- Frame indices are 0-based. Structural arguments (numbers of blocks, lengths, strides,
  paces) are Python numbers; `num_frames` may be a Python int or a scalar integer tensor
  (unknown in a `tf.data` map).
- A random start is uniform over all starts whose frames fit in the video.
- A video shorter than needed is defined, not an error: the start is 0 and indices past
  the end are clamped to the last frame (the last frame is repeated). Each sampler has a
  `*_span` helper giving the frames it needs, so a pipeline can count or filter too-short
  videos before sampling. `num_frames` must be at least 1.

`split_seed` and `random_index` are the stateless draws the samplers and `augment` share.
"""

import fractions
import itertools
import math

import numpy as np
import tensorflow as tf

# Pace prediction's published default: normal pace and three faster ones (4 classes).
DEFAULT_PACES = (1, 2, 3, 4)

# Slow paces are given as floats such as 1/3; this bound recovers the exact fraction.
_MAX_PACE_DENOMINATOR = 1000


# ----------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------


def _check_positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _frame_count(num_frames):
    """Returns `num_frames` as a scalar int32 tensor, failing at run time when below 1."""
    num_frames = tf.cast(num_frames, tf.int32)
    with tf.control_dependencies(
        [tf.debugging.assert_positive(num_frames, message="num_frames must be at least 1")]
    ):
        return tf.identity(num_frames)


def split_seed(seed, num):
    """Splits a `[2]` seed into a list of `num` independent `[2]` seeds."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def random_index(seed, num_choices, shape=()):
    """int32 indices uniform in `[0, num_choices)`; 0 when `num_choices` <= 1.

    Args:
      seed: `[2]` int32/int64 tensor.
      num_choices: int or scalar int tensor; an empty range (a window that does not fit)
        gives 0 rather than an error.
      shape: shape of the result.

    Returns:
      int32 tensor of `shape`.
    """
    num_choices = tf.maximum(tf.cast(num_choices, tf.int32), 1)
    return tf.random.stateless_uniform(shape, seed, minval=0, maxval=num_choices, dtype=tf.int32)


def _place_window(num_frames, offsets, seed):
    """Shifts fixed frame offsets by a random start that keeps them inside the video.

    Args:
      num_frames: scalar int32 tensor, at least 1.
      offsets: int NumPy array of any shape, offsets from the start frame, min 0.
      seed: `[2]` int tensor.

    Returns:
      int32 tensor shaped like `offsets`: `start + offsets` with start uniform in
      `[0, num_frames - span]` (span = max offset + 1), or start 0 and indices clamped to
      the last frame when the video is shorter than the span.
    """
    span = int(np.max(offsets)) + 1
    start = random_index(seed, num_frames - span + 1)
    return tf.minimum(start + tf.constant(offsets, tf.int32), num_frames - 1)


# ----------------------------------------------------------------------------------------
# DPC / MemDPC: N blocks of L frames
# ----------------------------------------------------------------------------------------


def _block_offsets(num_blocks, block_length, stride):
    _check_positive(num_blocks=num_blocks, block_length=block_length, stride=stride)
    return stride * np.arange(num_blocks * block_length).reshape(num_blocks, block_length)


def blocks_span(num_blocks, block_length, stride):
    """Frames covered by `sample_blocks`: `stride * (num_blocks * block_length - 1) + 1`.

    The authors' loaders drop videos with at most `num_blocks * block_length * stride`
    frames (120 for DPC's 8x5 blocks at stride 3), a slightly stricter filter than this
    span (118); use that number instead to reproduce their video lists exactly.
    """
    return int(_block_offsets(num_blocks, block_length, stride).max()) + 1


def sample_blocks(num_frames, num_blocks, block_length, stride, seed):
    """DPC / MemDPC pre-training sample: N consecutive blocks of L frames at a stride.

    Indices are `start + stride * arange(N * L)` reshaped `[N, L]`, start uniform over all
    valid starts. DPC uses N=8, L=5, stride 3 (stride 5 on Kinetics-400); MemDPC stride 3.

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      num_blocks: N.
      block_length: L, frames per block.
      stride: temporal stride between sampled frames (the authors' `ds`).
      seed: `[2]` int32/int64 tensor.

    Returns:
      `[N, L]` int32 frame indices.
    """
    offsets = _block_offsets(num_blocks, block_length, stride)
    return _place_window(_frame_count(num_frames), offsets, seed)


# ----------------------------------------------------------------------------------------
# Temporal CPC (Lorre et al.): T overlapping segments of F frames
# ----------------------------------------------------------------------------------------


def segment_stride(segment_length):
    """Temporal CPC's default step between segments: half overlap, as in the paper (a
    1-frame segment still moves forward)."""
    return max(segment_length // 2, 1)


def segment_offsets(num_segments, segment_length, stride=None):
    """Frame offsets of temporal CPC's segments from the first frame: `[T, F]` int numpy,
    row t = `stride * t + [0, F)`; `stride` defaults to `segment_stride`."""
    if stride is None:
        stride = segment_stride(segment_length)
    _check_positive(num_segments=num_segments, segment_length=segment_length, stride=stride)
    return stride * np.arange(num_segments)[:, None] + np.arange(segment_length)[None, :]


def segments_span(num_segments, segment_length, stride=None):
    """Frames covered by `sample_segments`: `stride * (T - 1) + F` (55 for T = F = 10)."""
    return int(segment_offsets(num_segments, segment_length, stride).max()) + 1


def sample_segments(num_frames, num_segments, segment_length, seed, stride=None):
    """Temporal CPC sample: T segments of F consecutive frames, each `stride` after the last.

    Lorre et al. use T = F = 10 with half-overlapping segments (stride F // 2).

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      num_segments: T.
      segment_length: F, consecutive frames per segment.
      seed: `[2]` int32/int64 tensor.
      stride: frames between the starts of consecutive segments; default
        `max(F // 2, 1)`.

    Returns:
      `[T, F]` int32 frame indices.
    """
    offsets = segment_offsets(num_segments, segment_length, stride)
    return _place_window(_frame_count(num_frames), offsets, seed)


# ----------------------------------------------------------------------------------------
# Fine-tuning: one clip
# ----------------------------------------------------------------------------------------


def _clip_offsets(clip_length, stride):
    _check_positive(clip_length=clip_length, stride=stride)
    return stride * np.arange(clip_length)


def clip_span(clip_length, stride=1):
    """Frames covered by `sample_clip`: `stride * (clip_length - 1) + 1`."""
    return int(_clip_offsets(clip_length, stride).max()) + 1


def sample_clip(num_frames, clip_length, seed, stride=1):
    """A random clip of `clip_length` frames at a temporal stride (fine-tuning, probing).

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      clip_length: frames in the clip.
      seed: `[2]` int32/int64 tensor.
      stride: temporal stride between sampled frames.

    Returns:
      `[clip_length]` int32 frame indices.
    """
    return _place_window(_frame_count(num_frames), _clip_offsets(clip_length, stride), seed)


# ----------------------------------------------------------------------------------------
# Pace prediction
# ----------------------------------------------------------------------------------------


def _as_fraction(pace):
    if isinstance(pace, bool) or not isinstance(pace, (int, float, np.number, fractions.Fraction)):
        raise ValueError(f"a pace must be a positive number, got {pace!r}")
    fraction = fractions.Fraction(pace).limit_denominator(_MAX_PACE_DENOMINATOR)
    if fraction <= 0:
        raise ValueError(f"a pace must be a positive number, got {pace!r}")
    return fraction


def pace_span(clip_length, paces):
    """Frames a pace clip covers without wrapping: `floor((clip_length - 1) * pace) + 1`.

    Args:
      clip_length: frames in the clip.
      paces: one pace or a sequence of paces (the largest span is returned).

    Returns:
      Python int. With `wrap=True` any video of at least one frame is usable; shorter
      videos than this span then contain a jump back to the first frame.
    """
    _check_positive(clip_length=clip_length)
    paces = paces if isinstance(paces, (list, tuple)) else [paces]
    return max(math.floor((clip_length - 1) * _as_fraction(p)) + 1 for p in paces)


def _pace_indices(num_frames, clip_length, numerator, denominator, seed, wrap):
    """Indices of a clip at pace `numerator / denominator` (scalar int32 tensors)."""
    k = tf.range(clip_length, dtype=tf.int32)
    # floor(k * pace) in exact integer arithmetic, so slow paces repeat each frame exactly
    # 1/pace times: pace 1/2 gives offsets 0, 0, 1, 1, 2, ...
    offsets = (k * numerator) // denominator
    if not wrap:
        start = random_index(seed, num_frames - offsets[-1])
        return tf.minimum(start + offsets, num_frames - 1)
    start = random_index(seed, num_frames)
    # The authors' loop: when the next frame would pass the end, restart from frame 0
    # (not modulo) and keep the pace. `first_run` clip frames fit after the start; every
    # later run from frame 0 holds `period` frames.
    first_run = ((num_frames - start) * denominator + numerator - 1) // numerator
    period = (num_frames * denominator + numerator - 1) // numerator
    restarted = (((k - first_run) % period) * numerator) // denominator
    return tf.where(k < first_run, start + offsets, restarted)


def sample_pace_clip(num_frames, clip_length, pace, seed, wrap=True):
    """A clip of `clip_length` frames played at `pace`.

    Pace p >= 1 takes frames `start + k * p` (fast motion); a slow pace p < 1 (e.g. 1/2,
    1/3) repeats each source frame 1/p times, i.e. frame `start + floor(k * p)`: the paper
    fills the skipped slots with the preceding frame.

    Start and end of the video: the paper's default is `wrap=True`. Its text says the
    start frame "is randomly generated and will loop over the video sample if the desired
    training clip is longer than the original video sample", which is what the authors'
    code does: the start is uniform over all frames and, when the next frame would pass
    the end, sampling restarts from the first frame with the same pace (so clips that
    start late contain a jump cut). With `wrap=False` the start is uniform over the
    starts that fit the clip (`pace_span`), and a video too short for it is clamped to
    its last frame.

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      clip_length: frames in the clip (16 for C3D/R3D/R(2+1)D, 64 for S3D-G).
      pace: Python number > 0.
      seed: `[2]` int32/int64 tensor.
      wrap: loop over the video (paper and code) instead of fitting the clip.

    Returns:
      `[clip_length]` int32 frame indices.
    """
    _check_positive(clip_length=clip_length)
    fraction = _as_fraction(pace)
    return _pace_indices(
        _frame_count(num_frames),
        clip_length,
        tf.constant(fraction.numerator, tf.int32),
        tf.constant(fraction.denominator, tf.int32),
        seed,
        wrap,
    )


def sample_pace(num_frames, clip_length, paces, seed, wrap=True):
    """Pace prediction sample: a pace drawn uniformly from `paces`, and its clip.

    See `sample_pace_clip` for how a pace and `wrap` choose the frames.

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      clip_length: frames in the clip.
      paces: Python sequence of paces, e.g. `DEFAULT_PACES` = (1, 2, 3, 4) (the paper's
        default) or (1/3, 1/2, 1, 2, 3) (its "absolute" set with slow motion).
      seed: `[2]` int32/int64 tensor.
      wrap: loop over the video (paper and code) instead of fitting the clip.

    Returns:
      `(indices, label)`: `[clip_length]` int32 frame indices and the scalar int32 index
      of the drawn pace in `paces`.
    """
    _check_positive(clip_length=clip_length)
    pace_fractions = [_as_fraction(p) for p in paces]
    if not pace_fractions:
        raise ValueError("paces must not be empty")
    pace_seed, start_seed = split_seed(seed, 2)
    label = random_index(pace_seed, len(pace_fractions))
    numerator = tf.gather(tf.constant([f.numerator for f in pace_fractions], tf.int32), label)
    denominator = tf.gather(tf.constant([f.denominator for f in pace_fractions], tf.int32), label)
    indices = _pace_indices(
        _frame_count(num_frames), clip_length, numerator, denominator, start_seed, wrap
    )
    return indices, label


# ----------------------------------------------------------------------------------------
# VCOP: a shuffled tuple of clips
# ----------------------------------------------------------------------------------------


def vcop_permutations(tuple_length):
    """All orders of `tuple_length` clips, in lexicographic (`itertools.permutations`) order.

    Args:
      tuple_length: clips per tuple, 2 to 5.

    Returns:
      `[tuple_length!, tuple_length]` int32 NumPy array; row `label` is the order of that
      class (6 classes for 3 clips, 120 for 5).
    """
    if isinstance(tuple_length, bool) or tuple_length not in (2, 3, 4, 5):
        raise ValueError(f"tuple_length must be 2, 3, 4 or 5, got {tuple_length!r}")
    return np.array(list(itertools.permutations(range(tuple_length))), np.int32)


def _vcop_offsets(clip_length, interval, tuple_length):
    _check_positive(clip_length=clip_length)
    if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)) or interval < 0:
        raise ValueError(f"interval must be a non-negative integer, got {interval!r}")
    vcop_permutations(tuple_length)  # validates tuple_length
    clip_starts = (clip_length + interval) * np.arange(tuple_length)
    return clip_starts[:, None] + np.arange(clip_length)[None, :]


def vcop_span(clip_length, interval, tuple_length):
    """Frames a VCOP tuple covers: `clip_length * n + interval * (n - 1)` (64 for 16/8/3)."""
    return int(_vcop_offsets(clip_length, interval, tuple_length).max()) + 1


def sample_vcop_tuple(num_frames, clip_length, interval, tuple_length, seed):
    """VCOP sample: `tuple_length` clips `interval` frames apart, in a random order.

    Clip i (in time) covers frames `start + i * (clip_length + interval) + arange(L)`,
    start uniform over the starts that fit; the clips are then put in a uniformly random
    order. VCOP's default is 3 clips of 16 frames with 8-frame gaps.

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      clip_length: consecutive frames per clip.
      interval: frames skipped between consecutive clips.
      tuple_length: clips per tuple, 2 to 5.
      seed: `[2]` int32/int64 tensor.

    Returns:
      `(indices, label, order)`: `[tuple_length, clip_length]` int32 frame indices in the
      shuffled order; the scalar int32 class, the index of `order` in
      `vcop_permutations(tuple_length)`; `[tuple_length]` int32 `order`, where `order[i]`
      is the temporal position of the clip in slot i.
    """
    offsets = _vcop_offsets(clip_length, interval, tuple_length)
    permutations = vcop_permutations(tuple_length)
    start_seed, order_seed = split_seed(seed, 2)
    clips = _place_window(_frame_count(num_frames), offsets, start_seed)
    label = random_index(order_seed, len(permutations))
    order = tf.gather(tf.constant(permutations), label)
    return tf.gather(clips, order), label, order


# ----------------------------------------------------------------------------------------
# Evaluation (deterministic)
# ----------------------------------------------------------------------------------------


def sliding_windows(num_frames, window_length, window_stride, frame_stride=1):
    """Every window of `window_length` frames, a window starting every `window_stride` frames.

    Window w holds frames `w * window_stride + frame_stride * arange(window_length)`; all
    windows that fit are returned. This is the DPC/MemDPC test protocol with
    `window_length = N * L`, `frame_stride = ds`, and
    - DPC: `window_stride = (N // 2) * L * ds` (half-overlapping windows of blocks; 60
      for 8x5 blocks at ds 3; use `(3 * N // 4) * L * ds` for its HMDB51 setting). These
      windows are exactly DPC's.
    - MemDPC: `window_stride = N * L * ds // 2 - 1` (59). MemDPC's code requires one
      stride's worth (ds - 1) of extra frames after a window, so it can omit the last
      window that this function keeps.
    It also lists every clip of a video (Oops: 16-frame clips every 4 frames at 16 fps).

    A video shorter than one window gives a single window padded with its last frame, as
    the MemDPC author did for his reported numbers (the released loaders drop such videos).

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      window_length: sampled frames per window.
      window_stride: frames between the starts of consecutive windows.
      frame_stride: temporal stride between the sampled frames of a window.

    Returns:
      `[num_windows, window_length]` int32 frame indices, `num_windows` =
      `max(1, (num_frames - span) // window_stride + 1)` with span =
      `frame_stride * (window_length - 1) + 1`.
    """
    _check_positive(
        window_length=window_length, window_stride=window_stride, frame_stride=frame_stride
    )
    num_frames = _frame_count(num_frames)
    span = frame_stride * (window_length - 1) + 1
    num_windows = tf.maximum((num_frames - span) // window_stride + 1, 1)
    starts = window_stride * tf.range(num_windows)
    offsets = frame_stride * tf.range(window_length)
    return tf.minimum(starts[:, None] + offsets[None, :], num_frames - 1)


def uniform_clips(num_frames, clip_length, num_clips):
    """`num_clips` clips whose centres are evenly spaced over the video (VCOP/Pace test).

    Centres run from `clip_length / 2` to `num_frames - clip_length / 2`, so clip k starts
    at `floor(k * (num_frames - clip_length) / (num_clips - 1))`, computed in exact integer
    arithmetic (the VCOP code's float `linspace` gives the same starts). One clip is the
    centre clip. For a video shorter than a clip every clip starts at 0 and indices past
    the end are clamped to the last frame.

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      clip_length: consecutive frames per clip (16 in VCOP and Pace).
      num_clips: clips per video (10 in VCOP and Pace).

    Returns:
      `[num_clips, clip_length]` int32 frame indices.
    """
    _check_positive(clip_length=clip_length, num_clips=num_clips)
    num_frames = _frame_count(num_frames)
    room = tf.maximum(num_frames - clip_length, 0)
    if num_clips == 1:
        starts = tf.reshape(room // 2, [1])
    else:
        starts = (tf.range(num_clips) * room) // (num_clips - 1)
    return tf.minimum(starts[:, None] + tf.range(clip_length)[None, :], num_frames - 1)
