"""Unintentional-action labels of the Oops! dataset (Epstein, Chen, Vondrick, CVPR 2020), as
the authors' code (`cvlab-columbia/oops`, `dataloader.py`) makes them.

Clips. Every video is resampled to 16 fps (torchvision's `VideoClips`: resampled frame r is
source frame `floor(r * fps / 16)`) and cut into clips of 16 frames (1 s), one starting
every 4 frames (0.25 s): `clip_grid`.

Labels from the failure time `t_fail` (the annotators' median), with `t_start` and `t_end`
the times of a clip's first and last frames (`clip_labels`):

    1 transitional    t_start <= t_fail <= t_end
    0 intentional     t_end < t_fail       (the clip ends before the failure)
    2 unintentional   t_start > t_fail     (the clip starts after it)

The authors assign these as index ranges (0 up to the first clip holding t_fail, 1 up to the
first clip starting after it, then 2); as consecutive clips overlap, that is the same.

Validity (`is_valid`, `annotation_is_valid`): a video is used only when its failure time is
known (the upper median of the annotators' times, element `len // 2` of the sorted list,
is >= 0), the median of the relative times `rel_t` lies in [0.01, 0.99] and the duration
in [3.2 s, 30 s].

Training oversampling (`oversampled_counts`, `oversample`), per video: with m the most
frequent label of the video's clips, every other label i present is duplicated (its clips
in random order, cycling) until it has `round(count_m * ratio_i)` clips, ratios
`(1, 0.93, 1 / 0.93)` for labels (0, 1, 2). The duplicates are drawn once for the whole
training; every epoch then trains on at most 10 clips per video drawn without replacement
from that enlarged list (`training_clips`). Test: every clip.

Sequence models (MemDPC appendix B) read windows of `num_steps` consecutive, non-overlapping
clips, 4 grid clips (1 s) apart (`window_clips`); in training each drawn clip sits at a random
step of its window (`window_starts`, `training_windows`), which by default is the only step
with a label, so the loss keeps the oversampling's balance; in test a window starts at every
clip (`evaluation_window_starts`). Windows start in the video, so a clip at step s lies at
least s seconds into it: the step tells the classifier about the clip's time. Padded windows
(`padded=True`, not the authors') may also start before the video, where their steps are
padding, so that every clip is seen at every step alike. An encoder sees of each clip the
frames its pretraining blocks sampled: its block length of source frames at its pretraining
stride, from the clip's first (`step_frames`).

`trim_borders` crops letterbox borders (`borders.json`, not distributed with the dataset).
Everything but the annotation helpers is pure TF, usable eagerly and inside `tf.data`.
"""

import statistics

import tensorflow as tf

from tfvssl.data import manifests

CLASS_NAMES = ("intentional", "transitional", "unintentional")
INTENTIONAL, TRANSITIONAL, UNINTENTIONAL = range(3)

SAMPLE_FPS = 16.0  # Videos are resampled to this rate before cutting clips.
CLIP_FRAMES = 16  # Frames per clip at SAMPLE_FPS: 1 s.
CLIP_STEP = 4  # Frames between clip starts at SAMPLE_FPS: 0.25 s.
STEP_CLIPS = CLIP_FRAMES // CLIP_STEP  # Grid clips between consecutive steps of a window.

# The authors' validity filter.
MIN_DURATION, MAX_DURATION = 3.2, 30.0
MIN_REL_T, MAX_REL_T = 0.01, 0.99

# Training balance: target count of label i = round(count of the video's commonest label * ratio_i).
OVERSAMPLING_RATIOS = (1.0, 0.93, 1 / 0.93)
CLIPS_PER_VIDEO = 10  # Clips drawn per video and epoch in training.


# ---- Annotations --------------------------------------------------------------------------


def annotation_summary(annotation):
    """The three values the authors' filter reads from a `transition_times.json` entry.

    Args:
      annotation: dict with `t` (annotators' failure times in seconds, negative when the
        annotator saw none), `rel_t` (the same relative to the duration) and `len`
        (duration in seconds).

    Returns:
      `(t_fail, rel_t, duration)`: the upper median of `t` (-1.0 when it is negative or
      `t` is empty), the median of all of `rel_t` (`statistics.median`, -1.0 when empty)
      and `len`.
    """
    t_fail = manifests.oops_failure_time(annotation.get("t", []), rule="upper")
    rel_t = annotation.get("rel_t", [])
    return (
        -1.0 if t_fail is None else t_fail,
        float(statistics.median(rel_t)) if rel_t else -1.0,
        float(annotation.get("len", 0.0)),
    )


def is_valid(t_fail, rel_t, duration):
    """The authors' validity filter on a video's failure time, relative failure time and
    duration in seconds (Python floats, NumPy arrays or tensors, element-wise):
    `t_fail >= 0`, `0.01 <= rel_t <= 0.99` and `3.2 <= duration <= 30`."""
    return (
        (t_fail >= 0)
        & (rel_t >= MIN_REL_T) & (rel_t <= MAX_REL_T)
        & (duration >= MIN_DURATION) & (duration <= MAX_DURATION)
    )


def annotation_is_valid(annotation):
    """Whether the authors keep the video of a `transition_times.json` entry."""
    return bool(is_valid(*annotation_summary(annotation)))


# ---- Clips and labels -----------------------------------------------------------------------


def clip_grid(num_frames, fps):
    """Every clip of a video: 16 frames at 16 fps, one starting every 4 frames.

    Args:
      num_frames: frames of the video, int or scalar int tensor.
      fps: its frame rate, float or scalar tensor.

    Returns:
      A dict: `frames` int32 `[K, 16]` source frame indices, `start` and `end` float64 `[K]`
      the times in seconds of each clip's first and last frame. K =
      `max(0, (R - 16) // 4 + 1)` with R = `floor(num_frames * 16 / fps)` resampled frames.
    """
    fps = tf.cast(fps, tf.float64)
    resampled = tf.cast(tf.floor(tf.cast(num_frames, tf.float64) * SAMPLE_FPS / fps), tf.int32)
    num_clips = tf.maximum((resampled - CLIP_FRAMES) // CLIP_STEP + 1, 0)
    resampled_index = CLIP_STEP * tf.range(num_clips)[:, None] + tf.range(CLIP_FRAMES)[None, :]
    source = tf.floor(tf.cast(resampled_index, tf.float64) * fps / SAMPLE_FPS)
    return {
        "frames": tf.cast(source, tf.int32),
        "start": source[:, 0] / fps,
        "end": source[:, -1] / fps,
    }


def clip_labels(start, end, t_fail):
    """int32 labels `[K]` of clips spanning `[start, end]` seconds (`[K]` each) for a failure
    at `t_fail` seconds: 1 if the clip holds it, 0 if it ends before, 2 if it starts after."""
    t_fail = tf.cast(t_fail, tf.float64)
    start, end = tf.cast(start, tf.float64), tf.cast(end, tf.float64)
    return tf.where(
        start > t_fail, UNINTENTIONAL, tf.where(end < t_fail, INTENTIONAL, TRANSITIONAL)
    )


def step_frames(clip_frames, frames_per_step, frame_stride, num_frames):
    """The source frames an encoder sees of each clip: `frames_per_step` of them,
    `frame_stride` apart, from the clip's first, as its pretraining blocks sampled frames (a
    step then spans the time a block did); past the video's end, its last frame.

    Args:
      clip_frames: int `[..., 16]` source frame indices of clips (`clip_grid`'s `frames`).
      frames_per_step: frames the encoder takes per clip (MemDPC: its block length).
      frame_stride: the pretraining stride between them, in source frames.
      num_frames: frames of the video.

    Returns:
      int32 `[..., frames_per_step]`.
    """
    first = tf.cast(clip_frames[..., :1], tf.int32)
    frames = first + frame_stride * tf.range(frames_per_step, dtype=tf.int32)
    return tf.minimum(frames, tf.cast(num_frames, tf.int32) - 1)


# ---- Training balance -------------------------------------------------------------------------


def oversampled_counts(counts):
    """Clips of each label after the authors' per-video oversampling.

    Args:
      counts: int `[3]` clips of each label in one video.

    Returns:
      int32 `[3]`: `counts` with every label i other than the commonest m (the first one on
      a tie) and present raised by `round(c_i * (c_m * ratio_i / c_i - 1))` (the authors'
      expression, in float64; round half to even as Python), never lowered.
    """
    counts = tf.cast(counts, tf.int32)
    mode = tf.reduce_min(tf.where(tf.equal(counts, tf.reduce_max(counts)))[:, 0])
    c = tf.cast(counts, tf.float64)
    c_mode = tf.gather(c, mode)
    safe = tf.maximum(c, 1.0)  # Absent labels gain nothing; no division by zero for them.
    added = tf.round(c * (c_mode * tf.constant(OVERSAMPLING_RATIOS, tf.float64) / safe - 1.0))
    grows = (tf.range(3, dtype=tf.int64) != mode) & (counts > 0)
    return counts + tf.where(grows, tf.maximum(tf.cast(added, tf.int32), 0), 0)


def oversample(labels, seed):
    """The authors' balanced clip list of one video.

    Args:
      labels: int `[K]` clip labels.
      seed: `[2]` int tensor (stateless).

    Returns:
      int32 `[K']` clip indices: `0..K-1`, then for each label its duplicates, the label's
      clips in a random order repeated as often as needed (`oversampled_counts`).
    """
    labels = tf.cast(labels, tf.int32)
    counts = tf.math.bincount(labels, minlength=3, maxlength=3)
    added = oversampled_counts(counts) - counts
    seeds = tf.random.experimental.stateless_split(seed, 3)
    pieces = [tf.range(tf.size(labels))]
    for label in range(3):
        members = tf.cast(tf.where(tf.equal(labels, label))[:, 0], tf.int32)
        shuffled = tf.random.experimental.stateless_shuffle(members, seeds[label])
        cycle = tf.range(added[label]) % tf.maximum(tf.size(members), 1)
        pieces.append(tf.gather(shuffled, cycle))
    return tf.concat(pieces, 0)


def training_clips(labels, pool_seed, seed, clips_per_video=CLIPS_PER_VIDEO):
    """The clips one epoch trains on for one video: at most `clips_per_video` drawn without
    replacement from its `oversample` list (which may hold a clip several times).

    Args:
      labels: int `[K]` clip labels.
      pool_seed: `[2]` int tensor choosing the duplicates: the same in every epoch, as the
        authors oversample once before training.
      seed: `[2]` int tensor choosing the epoch's clips.

    Returns:
      int32 `[min(clips_per_video, K')]` clip indices.
    """
    pool = oversample(labels, pool_seed)
    return tf.random.experimental.stateless_shuffle(pool, seed)[:clips_per_video]


# ---- Windows of clips (sequence models) --------------------------------------------------------


def window_clips(starts, num_clips, num_steps):
    """Clips of windows of `num_steps` consecutive, non-overlapping clips.

    Args:
      starts: int `[W]` clip index of each window's first step.
      num_clips: K, clips of the video.
      num_steps: S.

    Returns:
      int32 `[W, S]`: `start + 4 * step`, -1 for steps outside the video (past its last clip,
      or, in padded windows, before its first).
    """
    clips = tf.cast(starts, tf.int32)[:, None] + STEP_CLIPS * tf.range(num_steps)[None, :]
    return tf.where((clips >= 0) & (clips < tf.cast(num_clips, tf.int32)), clips, -1)


def window_starts(anchors, num_steps, seed, padded=False):
    """Training windows around drawn clips: each anchor at a random step of its window.

    A window starting at `anchor - 4 p` holds the anchor at step p; p is uniform over the
    steps whose window starts in the video (`p <= anchor // 4`), or, `padded`, over all S
    steps (the window may start before the video). A window may run past the video's end, as
    the test windows do: the steps outside the video carry no label, and a causal
    classifier's earlier steps do not see the later ones.

    Args:
      anchors: int `[n]` clip indices (`training_clips`).
      num_steps: S.
      seed: `[2]` int tensor.
      padded: whether windows may start before the video's first clip.

    Returns:
      int32 `[n]` window starts (`window_clips` gives their clips).
    """
    anchors = tf.cast(anchors, tf.int32)
    choices = tf.fill(tf.shape(anchors), num_steps) if padded else tf.minimum(anchors // STEP_CLIPS, num_steps - 1) + 1
    choices = tf.cast(choices, tf.float32)
    steps = tf.cast(tf.random.stateless_uniform(tf.shape(anchors), seed) * choices, tf.int32)
    return anchors - STEP_CLIPS * steps


def evaluation_window_starts(num_clips, num_steps, padded=False):
    """The test windows of a video of K clips: one starting at every clip, and, `padded`,
    at every clip from `4 (S - 1)` before the first, so that each clip is seen at every step.

    Returns:
      int32 `[K]`, or `[K + 4 (S - 1)]` padded, window starts (`window_clips`).
    """
    first = -STEP_CLIPS * (num_steps - 1) if padded else 0
    return tf.range(first, num_clips, dtype=tf.int32)


def training_windows(labels, num_steps, pool_seed, seed, clips_per_video=CLIPS_PER_VIDEO, every_step=False,
                     padded=False):
    """One epoch's training windows of one video (`training_clips` placed by `window_starts`).

    Args:
      labels: int `[K]` clip labels.
      num_steps: S, clips per window (1: the drawn clips themselves).
      pool_seed: `[2]` int tensor, the video's for the whole training (`training_clips`).
      seed: `[2]` int tensor, the epoch's.
      clips_per_video: clips drawn.
      every_step: label every step of a window, not only the drawn clip's: the other steps
        then follow the video's own mix of labels, not the oversampled one.
      padded: windows may start before the video (`window_starts`).

    Returns:
      `(clips, labels)`, int32 `[n, S]` each: the windows' clip indices and their labels,
      -1 for steps without one (outside the video; unless `every_step`, all but the drawn
      clip's).
    """
    draw_seed, place_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    labels = tf.cast(labels, tf.int32)
    num_clips = tf.size(labels)
    anchors = training_clips(labels, pool_seed, draw_seed, clips_per_video)
    clips = window_clips(window_starts(anchors, num_steps, place_seed, padded), num_clips, num_steps)
    labelled = clips >= 0 if every_step else tf.equal(clips, anchors[:, None])
    return clips, tf.where(labelled, tf.gather(labels, tf.maximum(clips, 0)), -1)


# ---- Frames ----------------------------------------------------------------------------------


def trim_borders(frames, left, right):
    """Crops letterbox borders as the authors: columns `[round(W * left), round(W * right))`
    when both fractions are positive, else the frames unchanged.

    Args:
      frames: `[T, H, W, C]`.
      left, right: scalar floats, the picture's edges as fractions of the width.

    Returns:
      `[T, H, W', C]`.
    """
    width = tf.cast(tf.shape(frames)[2], tf.float64)
    left, right = tf.cast(left, tf.float64), tf.cast(right, tf.float64)
    given = (left > 0) & (right > 0)
    first = tf.cast(tf.where(given, tf.round(width * left), 0.0), tf.int32)
    last = tf.cast(tf.where(given, tf.round(width * right), width), tf.int32)
    return frames[:, :, first:last]
