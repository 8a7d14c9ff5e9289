"""Assembles the tf.data input pipelines: read → parse → sample → decode → augment → batch.

Frames stay JPEG-encoded until a method's sampler has chosen their indices; only those
are decoded. All randomness is stateless and derived from `(seed, epoch, offset)` of the
record in the shuffled stream, so an interrupted run resumes on the same data and, with
`deterministic=True`, the same batches.

Training elements carry `position = [pipeline, epoch, offset]`: the trainer checkpoints
the position it has consumed up to and counts records that were skipped (too short or
undecodable) from the gaps between offsets.
"""

import tensorflow as tf

from tfvssl.data import records

AUTOTUNE = tf.data.AUTOTUNE


def decode_frames(jpegs, indices, modality="rgb", crop_window=None):
    """Decodes only the frames at `indices`, and only their `crop_window` if given.

    Args:
      jpegs: `[T]` string tensor, one JPEG per frame.
      indices: `[K]` int frame indices.
      modality: `rgb` (3 channels), `flow` (x, y: the stored third channel is dropped) or
        `diff` (1 channel).
      crop_window: optional `(top, left, height, width)`: the same window of every frame
        (`augment.crop_window`), decoded without the rest of the frame.

    Returns:
      uint8 `[K, H, W, C]` (`[K, height, width, C]` with a window).
    """
    channels = records.MODALITY_JPEG_CHANNELS[modality]
    selected = tf.gather(jpegs, indices)
    if crop_window is None:
        decode = lambda jpeg: tf.io.decode_jpeg(jpeg, channels=channels)  # noqa: E731
    else:
        window = tf.stack([tf.cast(v, tf.int32) for v in crop_window])
        decode = lambda jpeg: tf.io.decode_and_crop_jpeg(jpeg, window, channels=channels)  # noqa: E731
    frames = tf.map_fn(
        decode, selected, fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8)
    )
    return frames[..., : records.MODALITY_CHANNELS[modality]]


def frame_size(jpegs):
    """`(height, width)` of the frames, read from the first JPEG's header (no decoding)."""
    shape = tf.io.extract_jpeg_shape(jpegs[0])
    return shape[0], shape[1]


def element_seed(seed, epoch, offset):
    """The `[2]` stateless seed of the record at `offset` in `epoch`'s stream."""
    base = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), epoch)
    return tf.random.experimental.stateless_fold_in(base, offset)


def _epoch_records(files, epoch, seed, pipeline_index, num_pipelines, shuffle_buffer, deterministic):
    """Serialized records of one epoch for one input pipeline, shuffled by `(seed, epoch)`.

    Files are permuted per epoch with a stateless shuffle; the record-level shuffle buffer
    has a fixed seed (tf.data takes no tensor seeds inside `flat_map`), so its randomness
    per epoch comes from the different file order it is fed.
    """
    if len(files) >= num_pipelines:
        files = files[pipeline_index::num_pipelines]
    order_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    shuffled = tf.random.experimental.stateless_shuffle(tf.constant(files), order_seed)
    dataset = tf.data.Dataset.from_tensor_slices(shuffled).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if len(files) < num_pipelines:
        # Fewer shards than pipelines: split records instead of files.
        dataset = dataset.shard(num_pipelines, pipeline_index)
    return dataset.shuffle(shuffle_buffer, seed=seed)


def training_dataset(
    files,
    method,
    batch_size,
    *,
    seed=0,
    start_epoch=0,
    start_offset=0,
    pipeline_index=0,
    num_pipelines=1,
    shuffle_buffer=256,
    deterministic=False,
):
    """An endless stream of augmented training batches for `method`.

    Args:
      files: shard paths (`records.list_shards`).
      method: a `tfvssl.methods.Method` (its modalities, `min_frames`, `train_example`).
      batch_size: batch size of this pipeline (per replica under tf.distribute).
      seed: run seed.
      start_epoch, start_offset: where to resume (records of `start_epoch` before
        `start_offset` are skipped unread but for their bytes).
      pipeline_index, num_pipelines: this input pipeline among all (multi-worker sharding).
      shuffle_buffer: records in the shuffle buffer.
      deterministic: a reproducible record order (the shard interleave waits for slow
        files instead of taking whichever is ready).

    Returns:
      A `tf.data.Dataset` of dicts: the method's example tensors batched, plus `position`
      int64 `[B, 3]` = (pipeline, epoch, offset) of each element.
    """
    min_frames = method.min_frames()

    def epoch_stream(epoch):
        stream = _epoch_records(
            files, epoch, seed, pipeline_index, num_pipelines, shuffle_buffer, deterministic
        ).enumerate()
        return stream.map(lambda offset, record: (epoch, offset, record))

    first = epoch_stream(tf.constant(start_epoch, tf.int64)).skip(start_offset)
    rest = tf.data.Dataset.range(start_epoch + 1, 2**62).flat_map(epoch_stream)

    def parse(epoch, offset, record):
        video = records.parse_sequence_example(record, method.modalities)
        return epoch, offset, video

    def make_example(epoch, offset, video):
        example = method.train_example(video, element_seed(seed, epoch, offset))
        example["position"] = tf.stack([tf.constant(pipeline_index, tf.int64), epoch, offset])
        return example

    # The maps keep their order even when `deterministic` is off: the trainer's position
    # bookkeeping relies on offsets arriving in increasing order.
    dataset = first.concatenate(rest)
    dataset = dataset.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.filter(lambda epoch, offset, video: video["num_frames"] >= min_frames)
    dataset = dataset.map(make_example, num_parallel_calls=AUTOTUNE, deterministic=True)
    # A corrupt JPEG fails its decode: drop that video (the trainer counts it) and go on.
    dataset = dataset.ignore_errors()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE)


def evaluation_dataset(files, example_fn, batch_size, *, modalities=("rgb",), min_frames=1):
    """A single ordered pass over `files`, each video mapped by `example_fn(video)`.

    Videos shorter than `min_frames` or failing to decode are dropped.
    """
    dataset = tf.data.TFRecordDataset(files)
    dataset = dataset.map(
        lambda record: records.parse_sequence_example(record, modalities), num_parallel_calls=AUTOTUNE
    )
    dataset = dataset.filter(lambda video: video["num_frames"] >= min_frames)
    dataset = dataset.map(example_fn, num_parallel_calls=AUTOTUNE).ignore_errors()
    return dataset.batch(batch_size).prefetch(AUTOTUNE)
