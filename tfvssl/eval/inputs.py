"""Evaluation inputs: labelled training clips and the test-time views of every video.

Everything goes through the `Method` interface, so every method is evaluated the same way:
a clip is `clip_shape()[0]` frames at `clip_frame_stride()`.

- Training clips (probe and fine-tune): a random window, then the method's own training
  transform of its paper's classifier, `downstream_clip` (e.g. VCOP: a random crop of the
  128x171 resize, never flipped; DPC: a random sized crop, flip and colour jitter).
- Test views: per video, its clips (`sliding_windows` with half overlap by default, as DPC
  and MemDPC; or `uniform_clips`, as VCOP and Pace) times its crops: one crop is the
  method's own test transform `eval_clip`; 3, 5 or 10 crops (MemDPC's ten-crop) are
  `augment.multi_crop` windows of `crop_fraction` of the short side, resized
  (nearest-neighbour, the authors' `Scale`) to the encoder's size and normalised.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfvssl.data import augment, pipeline, records, sampling

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Views:
    """Which test-time views a video gives.

    Attributes:
      test_clips: "windows" (every window of the clip's span, `window_stride` apart) or
        "uniform" (`num_clips` clips with evenly spaced centres).
      num_clips: clips per video for "uniform".
      window_stride: frames between window starts; 0 = half overlap, `T * stride // 2`
        (DPC's N // 2 blocks: 60 frames for 8 blocks of 5 at stride 3; MemDPC's code uses
        59).
      num_crops: 1, 3, 5 or 10 spatial crops per clip.
      crop_fraction: side of the multi-crop windows / the frame's short side (MemDPC: 224
        of 240); unused with one crop.
    """

    test_clips: str = "windows"
    num_clips: int = 10
    window_stride: int = 0
    num_crops: int = 1
    crop_fraction: float = 224 / 240

    def __post_init__(self):
        if self.test_clips not in ("windows", "uniform"):
            raise ValueError(f"--test_clips={self.test_clips}: choose windows or uniform")
        if self.num_crops not in (1, 3, 5, 10):
            raise ValueError(f"--num_crops={self.num_crops}: choose 1, 3, 5 or 10")
        if self.num_clips < 1:
            raise ValueError(f"--num_clips={self.num_clips}: must be positive")
        if self.window_stride < 0:
            raise ValueError(f"--window_stride={self.window_stride}: must be >= 0 (0 = half overlap)")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"--test_crop_fraction={self.crop_fraction}: must be in (0, 1]")


def clip_indices(num_frames, method, views):
    """Frame indices of a video's test clips.

    Args:
      num_frames: scalar int tensor, frames in the video.
      method: the `Method` (clip length and frame stride).
      views: a `Views`.

    Returns:
      `[K, T]` int32 indices: the windows of `T` frames at the method's stride, starting
      every `window_stride` frames (a video shorter than one window gives one window padded
      with its last frame), or `num_clips` such clips with uniformly spaced centres.
    """
    length, stride = method.clip_shape()[0], method.clip_frame_stride()
    span = sampling.clip_span(length, stride)
    if views.test_clips == "windows":
        window_stride = views.window_stride or max(1, length * stride // 2)
        return sampling.sliding_windows(num_frames, length, window_stride, stride)
    # Uniform clips of the whole span, thinned to the stride.
    return sampling.uniform_clips(num_frames, span, views.num_clips)[:, ::stride]


def center_clip_indices(num_frames, method):
    """`[T]` int32 indices of the centre clip: `T` frames at the method's stride, centred in
    the video (the window the serving signature of serialized examples takes)."""
    return clip_indices(num_frames, method, Views(test_clips="uniform", num_clips=1))[0]


def crop_views(method, frames, views):
    """The spatial views of one clip.

    Args:
      method: the `Method`.
      frames: uint8 `[T, H, W, C]` frames of any size.
      views: a `Views` (`num_crops`, `crop_fraction`).

    Returns:
      float32 `[num_crops, *method.clip_shape()]`.
    """
    if views.num_crops == 1:
        return method.eval_clip(frames)[tf.newaxis]
    length, height, width, channels = method.clip_shape()
    short_side = tf.minimum(tf.shape(frames)[1], tf.shape(frames)[2])
    side = tf.cast(tf.round(tf.cast(short_side, tf.float32) * views.crop_fraction), tf.int32)
    crops = augment.multi_crop(frames, side, views.num_crops)
    # Resize all crops' frames at once: [crops * T, side, side, C].
    folded = tf.reshape(crops, tf.concat([[-1], tf.shape(crops)[2:]], 0))
    resized = augment.resize(folded, (height, width), method="nearest")
    return tf.reshape(method.normalize(resized), [views.num_crops, length, height, width, channels])


def example_clip(method, serialized):
    """The centre clip of one serialized record, preprocessed by the method's `eval_clip`.

    As training skips a video too short for its sample, a record with fewer frames than
    one clip covers is an error: no frame is repeated to fill the clip.

    Args:
      method: the `Method`.
      serialized: scalar string tensor, a serialized `SequenceExample` (`records` layout).

    Returns:
      float32 `method.clip_shape()`.

    Raises:
      tf.errors.InvalidArgumentError: when the record is shorter than the clip's span.
    """
    video = records.parse_sequence_example(serialized, method.modalities)
    modality = method.modalities[0]
    length, stride = method.clip_shape()[0], method.clip_frame_stride()
    span = sampling.clip_span(length, stride)
    long_enough = tf.debugging.assert_greater_equal(
        video["num_frames"], tf.cast(span, video["num_frames"].dtype),
        message=f"a record has fewer frames than one clip covers ({length} frames at stride {stride}: {span})",
    )
    with tf.control_dependencies([long_enough]):
        indices = center_clip_indices(video["num_frames"], method)
    return method.eval_clip(pipeline.decode_frames(video[modality], indices, modality))


def train_clip(method, video, seed):
    """One augmented training clip of a parsed video.

    Args:
      method: the `Method`.
      video: a parsed record (`records.parse_sequence_example`).
      seed: `[2]` int tensor.

    Returns:
      float32 `method.clip_shape()`.
    """
    window_seed, clip_seed = sampling.split_seed(seed, 2)
    modality = method.modalities[0]
    length = method.clip_shape()[0]
    indices = sampling.sample_clip(video["num_frames"], length, window_seed, method.clip_frame_stride())
    frames = pipeline.decode_frames(video[modality], indices, modality)
    return method.downstream_clip(frames, clip_seed)


@dataclasses.dataclass(frozen=True)
class Split:
    """The videos of a labelled split, in record order.

    Attributes:
      files: its shard paths.
      names: the videos' filenames.
      labels: `[V]` int64 labels.
    """

    files: list
    names: list
    labels: np.ndarray


def labelled_split(data_root, split):
    """Reads the filenames and labels of `split` of `data_root` (`--data`).

    Raises:
      ValueError: naming `--data` when the split is missing or has unlabelled videos.
    """
    files = records.list_shards(data_root, split)
    dataset = tf.data.TFRecordDataset(files).map(
        lambda record: records.parse_sequence_example(record), num_parallel_calls=AUTOTUNE
    )
    names, labels = [], []
    for video in dataset:
        names.append(video["filename"].numpy().decode())
        labels.append(int(video["label"]))
    labels = np.array(labels, np.int64)
    if labels.min(initial=0) < 0:
        raise ValueError(f"--data={data_root}: {np.sum(labels < 0)} videos of the {split!r} split have no label")
    return Split(files, names, labels)


def class_names(data_root, labels):
    """The dataset's class names (its `dataset_info.json`), else the label numbers."""
    names = records.read_dataset_info(data_root).get("class_names")
    return list(names) if names else [str(i) for i in range(int(np.max(labels)) + 1)]


def select_fraction(labels, fraction, seed):
    """A stratified, seeded subset of the videos (the low-label regime).

    Every class keeps `round(fraction * count)` of its videos (at least one), drawn by a
    generator seeded with `seed`, so the same seed gives the same subset.

    Args:
      labels: `[V]` int array.
      fraction: in (0, 1].
      seed: int.

    Returns:
      Sorted `[V']` int64 indices into `labels`.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--label_fraction={fraction}: must be in (0, 1]")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep = max(1, int(round(fraction * len(members))))
        chosen.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def indexed_records(files, video_indices=None):
    """`(position, serialized record)` of the videos of `files` (all, or those at
    `video_indices`), in record order."""
    dataset = tf.data.TFRecordDataset(files).enumerate()
    if video_indices is None:
        return dataset
    wanted = tf.constant(np.asarray(video_indices, np.int64))
    return dataset.filter(lambda index, record: tf.reduce_any(tf.equal(wanted, index)))


def training_dataset(files, method, batch_size, seed, video_indices=None, shuffle_buffer=256):
    """Endless batches of augmented training clips and their labels.

    Args:
      files: shard paths.
      method: the `Method`.
      batch_size: clips per batch.
      seed: seed of the shuffle and of every clip's window, crop and flip.
      video_indices: indices (record order) of the videos to train on; None = all.
      shuffle_buffer: videos in the shuffle buffer.

    Returns:
      A `tf.data.Dataset` of `(clips float32 [B, *clip_shape], labels int64 [B])`; each epoch
      holds one clip per video (videos that fail to decode are skipped).

    Raises:
      ValueError: when no video of `files` makes a clip (the endless stream would otherwise
        skip failures for ever without yielding a batch).
    """
    videos = indexed_records(files, video_indices).map(lambda index, record: record)

    def make(offset, record):
        video = records.parse_sequence_example(record, method.modalities)
        clip = train_clip(method, video, pipeline.element_seed(seed, 0, offset))
        return clip, video["label"]

    def clips(stream):
        return stream.enumerate().map(make, num_parallel_calls=AUTOTUNE).ignore_errors()

    # One pass that stops at the first clip made: cheap when the data is sound, one bounded
    # epoch when it is not.
    if not list(clips(videos).take(1)):
        raise ValueError(
            f"no training clip could be made from any of the {method.name} videos in {', '.join(files)}: "
            "every record failed to decode (see `python -m tfvssl.prepare --verify`)"
        )
    dataset = clips(videos.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat())
    return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def evaluation_dataset(files, method, views, batch_size, video_indices=None):
    """Every test view of every video of `files`, in record order.

    Args:
      files: shard paths.
      method: the `Method`.
      views: a `Views`.
      batch_size: views per batch.
      video_indices: record positions of the videos to use; None = all.

    Returns:
      A `tf.data.Dataset` of dicts: `clips` float32 `[B, *clip_shape]`, `video` int64 `[B]`
      (the record's position in `files`), `clip` int32 `[B]` (its temporal clip) and `label`
      int64 `[B]`.
    """
    modality = method.modalities[0]

    def video_views(video_index, record):
        video = records.parse_sequence_example(record, method.modalities)
        indices = clip_indices(video["num_frames"], method, views)

        def clip_views(clip_index, clip_frames):
            frames = pipeline.decode_frames(video[modality], clip_frames, modality)
            clips = crop_views(method, frames, views)
            return {
                "clips": clips,
                "video": tf.fill([views.num_crops], video_index),
                "clip": tf.fill([views.num_crops], clip_index),
                "label": tf.fill([views.num_crops], video["label"]),
            }

        per_clip = tf.data.Dataset.from_tensor_slices((tf.range(tf.shape(indices)[0]), indices))
        return per_clip.map(clip_views).unbatch()

    dataset = indexed_records(files, video_indices).interleave(
        video_views, cycle_length=4, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return dataset.batch(batch_size).prefetch(AUTOTUNE)


def run_views(fn, dataset):
    """Applies `fn` to the clips of every batch of an `evaluation_dataset`.

    Args:
      fn: `clips [B, *clip_shape] -> [B, D]` (logits or features).
      dataset: an `evaluation_dataset`.

    Returns:
      A dict of NumPy arrays: `outputs` `[V, D]` float32 and the `video`, `clip` and
      `label` of each of the V views.
    """
    compiled = tf.function(fn, reduce_retracing=True)
    collected = {"outputs": [], "video": [], "clip": [], "label": []}
    for batch in dataset:
        collected["outputs"].append(np.asarray(compiled(batch["clips"]), np.float32))
        for name in ("video", "clip", "label"):
            collected[name].append(batch[name].numpy())
    return {name: np.concatenate(values) for name, values in collected.items()}


def read_frames(files, video_indices, num_frames=4):
    """Evenly spaced frames of some videos, for pictures.

    Args:
      files: shard paths.
      video_indices: record positions of the wanted videos.
      num_frames: frames per video.

    Returns:
      Dict video index -> uint8 `[num_frames, H, W, C]`.
    """
    frames = {}
    for index, record in indexed_records(files, sorted(set(int(i) for i in video_indices))):
        video = records.parse_sequence_example(record)
        picks = sampling.uniform_clips(video["num_frames"], 1, num_frames)[:, 0]
        frames[int(index)] = pipeline.decode_frames(video["rgb"], picks).numpy()
    return frames
