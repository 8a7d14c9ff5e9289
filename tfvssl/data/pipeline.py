"""Assembles the tf.data input pipelines: read → parse → sample → decode → augment → batch.

Frames stay JPEG-encoded until a method's sampler has chosen their indices; only those
are decoded. All randomness is stateless and derived from `(seed, epoch, offset)` of the
record in the shuffled stream, so an interrupted run resumes on the same data and, with
`deterministic=True`, the same batches.

Training elements carry `position = [pipeline, epoch, offset, corrupt, too short,
undecodable, cut shard, cut byte]`: the trainer checkpoints the position it has consumed up
to and counts, from the running totals, the records lost to read errors and those skipped
as too short for the recipe or undecodable. The training stream never hangs: data that
gives no example, or mostly unreadable data, stops it with the reason (`training_dataset`).
"""

import ctypes
import platform
import re

import tensorflow as tf
from absl import logging

from tfvssl.data import records

AUTOTUNE = tf.data.AUTOTUNE
# glibc's `mallopt` parameters (malloc.h), and the ceiling of its adaptive mmap threshold on
# 64-bit machines.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20
_allocator_set = False


def keep_buffers_off_mmap():
    """Undoes the glibc malloc setting TensorFlow makes once a process creates its first
    generator dataset (every tf.distribute iterator does): a trim threshold of 128 KiB,
    which also pins the mmap threshold at 128 KiB, so that every record (megabytes: a whole
    video), decoded frame and batch becomes a fresh mmap whose pages fault in zeroed. DPC's
    pipeline on real clips gives a fifth fewer clips/s so (150 against 187 on 2 cores). Makes
    TensorFlow's one-time setting now, then sets what glibc's adaptive thresholds settle to
    for such buffers: mmap from 32 MiB, trim from twice that. Once per process; eager only;
    nothing off glibc."""
    global _allocator_set
    if _allocator_set or not tf.executing_eagerly() or platform.libc_ver()[0] != "glibc":
        return
    for _ in tf.data.Dataset.from_generator(lambda: iter(()), output_signature=tf.TensorSpec([], tf.int32)):
        pass
    libc = ctypes.CDLL("libc.so.6")
    mmap_set = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    if mmap_set and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX):
        logging.info("malloc: large buffers from the heap again (mmap threshold %d MiB)", _MMAP_THRESHOLD_MAX >> 20)
    _allocator_set = True


def decode_frames(jpegs, indices, modality="rgb", crop_window=None):
    """Decodes only the frames at `indices`, and only their `crop_window` if given.

    Args:
      jpegs: `[T]` string tensor, one JPEG per frame.
      indices: `[K]` int frame indices.
      modality: `rgb` (3 channels), `flow` (x, y: the stored third channel is dropped) or
        `diff` (1 channel).
      crop_window: optional `(top, left, height, width)`: the same window of every frame
        (`augment.crop_window`), decoded without the rest of the frame; or int32 `[K, 4]`,
        one window per frame, all of one size (`augment.resize_plan`).

    Returns:
      uint8 `[K, H, W, C]` (`[K, height, width, C]` with a window).
    """
    channels = records.MODALITY_JPEG_CHANNELS[modality]
    selected = tf.gather(jpegs, indices)
    signature = tf.TensorSpec([None, None, channels], tf.uint8)
    if crop_window is None:
        frames = tf.map_fn(
            lambda jpeg: tf.io.decode_jpeg(jpeg, channels=channels), selected, fn_output_signature=signature
        )
    else:
        frames = tf.map_fn(
            lambda args: tf.io.decode_and_crop_jpeg(args[0], args[1], channels=channels),
            (selected, frame_windows(crop_window, tf.shape(selected)[0])), fn_output_signature=signature,
        )
    return frames[..., : records.MODALITY_CHANNELS[modality]]


def frame_windows(crop_window, num_frames):
    """`decode_frames`' `crop_window`, one `(top, left, height, width)` for all frames or
    `[K, 4]`, as int32 `[num_frames, 4]`, one row per frame."""
    if isinstance(crop_window, (tuple, list)):
        crop_window = tf.stack([tf.cast(v, tf.int32) for v in crop_window])
    return tf.broadcast_to(crop_window, [num_frames, 4])


def frame_size(jpegs):
    """`(height, width)` of the frames, read from the first JPEG's header (no decoding)."""
    shape = tf.io.extract_jpeg_shape(jpegs[0])
    return shape[0], shape[1]


def element_seed(seed, epoch, offset):
    """The `[2]` stateless seed of the record at `offset` in `epoch`'s stream."""
    base = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), epoch)
    return tf.random.experimental.stateless_fold_in(base, offset)


# What an element of the record stream is: a record, the place where a shard stopped being
# readable before its end (a "cut"), or the end of an epoch.
RECORD, CUT, EPOCH_END = 0, 1, 2
# The running totals of records that gave no example, by cause, in `position`.
_TOTALS = ("corrupt", "too_short", "undecodable")
# Opens the message of an error that stops the input pipeline (`stop_reason` finds it).
_STOP_TAG = "tfvssl input stopped: "


# The record a marker carries: a video without frames of any modality. Parsed like any
# record, so that parsing need not tell markers apart (which would copy every record).
_NO_VIDEO = records.make_sequence_example(
    {name: [] for name in records.MODALITY_KEYS}, filename=""
).SerializeToString()


def _marker(kind, shard=-1):
    """A stream element of `kind` from shard index `shard`, nothing lost, a frameless video
    as its record."""
    zero = tf.constant(0, tf.int64)
    return {
        "kind": tf.constant(kind, tf.int64), "record": tf.constant(_NO_VIDEO), "shard": tf.cast(shard, tf.int64),
        "lost": zero, "at": zero,
    }


def _shard_records(path, index, expected, size):
    """The records of one shard, followed by a CUT element if it could not be read to its end.

    A read error (a truncated or corrupt record, a missing file) ends the shard's stream,
    so what it cost is measured: the shard is cut when it gave fewer records than
    `dataset_info.json` lists (`expected`, -1 unknown) or, with no count known, when its
    records do not add up to the file's `size`.

    Returns:
      A dataset of stream elements: dicts `kind`, `record`, `shard` (= `index`), `lost`
      (at the cut: the records `expected` but not read, or 1 when no count is known) and
      `at` (at the cut: the byte where the unreadable part starts).
    """
    records_read = tf.data.TFRecordDataset(path).ignore_errors()
    tagged = records_read.map(
        lambda record: {**_marker(RECORD, index), "record": record}
    ).concatenate(tf.data.Dataset.from_tensors(_marker(CUT, index)))

    def measure(state, element):
        read, consumed = state
        is_record = element["kind"] == RECORD
        # Only the final CUT element is given a loss: the records missing from the count,
        # or one (at least) when the bytes read fall short of the file.
        missing = tf.where(expected >= 0, expected - read, tf.cast(consumed < size, tf.int64))
        element["lost"] = tf.where(is_record, tf.constant(0, tf.int64), tf.maximum(missing, 0))
        element["at"] = consumed
        record_bytes = tf.cast(tf.strings.length(element["record"]), tf.int64) + records.RECORD_FRAMING
        state = (read + tf.cast(is_record, tf.int64), consumed + tf.where(is_record, record_bytes, 0))
        return state, element

    zero = tf.constant(0, tf.int64)
    return tagged.scan((zero, zero), measure).filter(
        lambda element: (element["kind"] == RECORD) | (element["lost"] > 0)
    )


def _shard_table(files):
    """`(paths, expected record counts, sizes in bytes)` of the shards; a size is only
    needed (and read) where `dataset_info.json` gives no count."""
    expected = records.shard_record_counts(files)
    sizes = [tf.io.gfile.stat(path).length if count < 0 else -1 for path, count in zip(files, expected)]
    return list(files), expected, sizes


def _epoch_records(table, epoch, seed, pipeline_index, num_pipelines, shuffle_buffer, deterministic):
    """Stream elements of one epoch for one input pipeline, shuffled by `(seed, epoch)`.

    Shards are permuted per epoch with a stateless shuffle; the record-level shuffle
    buffer has a fixed seed (tf.data takes no tensor seeds inside `flat_map`), so its
    randomness per epoch comes from the different shard order it is fed.
    """
    paths, expected, sizes = table
    indices = list(range(len(paths)))
    if len(indices) >= num_pipelines:
        indices = indices[pipeline_index::num_pipelines]
    order_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    shuffled = tf.random.experimental.stateless_shuffle(tf.constant(indices, tf.int64), order_seed)
    paths, expected, sizes = tf.constant(paths), tf.constant(expected, tf.int64), tf.constant(sizes, tf.int64)
    dataset = tf.data.Dataset.from_tensor_slices(shuffled).interleave(
        lambda i: _shard_records(paths[i], i, expected[i], sizes[i]),
        cycle_length=min(len(indices), 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if len(indices) < num_pipelines:
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
    max_corrupt_fraction=0.01,
    max_records_without_example=1000,
):
    """An endless stream of augmented training batches for `method`.

    It never hangs and never loses data silently. A shard that cannot be read to its end
    (truncated, corrupt, missing) is measured and its lost records counted (`position`);
    when more than `max_corrupt_fraction` of an epoch's records are lost, or when a whole
    epoch or `max_records_without_example` records in a row give no example (videos too
    short for the recipe, undecodable or unreadable), iterating raises a
    `tf.errors.OpError` whose reason `stop_reason` extracts.

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
      max_corrupt_fraction: the largest fraction of an epoch's records that may be
        unreadable.
      max_records_without_example: records in a row that may give no example.

    Returns:
      A `tf.data.Dataset` of dicts: the method's example tensors batched, plus `position`
      int64 `[B, 8]` = (pipeline, epoch, offset, corrupt, too short, undecodable, cut
      shard, cut byte) of each element: since this stream started, `corrupt` records were
      lost to read errors, the last of them in `files[cut shard]` from `cut byte` on (-1, -1
      before any), `too short` were too short for the recipe and `undecodable` failed to
      decode.
    """
    keep_buffers_off_mmap()
    table = _shard_table(files)
    min_frames = method.min_frames()
    # An epoch's record count, when every shard's is known and each pipeline reads whole
    # shards: then a mostly unreadable epoch stops at its first cuts, not at its end.
    epoch_size = -1
    if min(table[1]) >= 0 and len(files) >= num_pipelines:
        epoch_size = sum(table[1][pipeline_index::num_pipelines])

    def number(state, element):
        """Gives records their offset in the epoch, and every element the epoch's loss so far."""
        read, lost = state
        element["offset"] = read
        element["epoch_lost"] = lost + element["lost"]
        return (read + tf.cast(element["kind"] == RECORD, tf.int64), element["epoch_lost"]), element

    def epoch_stream(epoch):
        stream = _epoch_records(
            table, epoch, seed, pipeline_index, num_pipelines, shuffle_buffer, deterministic
        ).concatenate(tf.data.Dataset.from_tensors(_marker(EPOCH_END)))
        zero = tf.constant(0, tf.int64)
        return stream.scan((zero, zero), number).map(lambda element: {**element, "epoch": epoch})

    first = epoch_stream(tf.constant(start_epoch, tf.int64)).filter(
        lambda element: element["offset"] >= start_offset
    )
    rest = tf.data.Dataset.range(start_epoch + 1, 2**62).flat_map(epoch_stream)

    def parse(element):
        return records.parse_sequence_example(element.pop("record"), method.modalities)

    def make_example(element, video):
        return method.train_example(video, element_seed(seed, element["epoch"], element["offset"]))

    dataset = first.concatenate(rest)
    # Records without a usable video and markers go on with a placeholder example, so the
    # watchdog sees them; only videos that fail to decode are dropped (as gaps in offsets).
    example_spec = dataset.map(lambda element: make_example(element, parse(element))).element_spec
    # Placeholders never reach a batch, so a dimension the spec leaves open can be 0.
    placeholder = {
        name: tf.zeros([size or 0 for size in spec.shape], spec.dtype) for name, spec in example_spec.items()
    }

    def example_or_placeholder(element):
        video = parse(element)
        element["num_frames"] = tf.cast(video["num_frames"], tf.int64)
        element["usable"] = (element["kind"] == RECORD) & (element["num_frames"] >= min_frames)
        element["example"] = tf.cond(element["usable"], lambda: make_example(element, video), lambda: placeholder)
        return element

    # The map keeps its order even when `deterministic` is off: the offsets and the
    # watchdog's counts rely on elements arriving in stream order.
    dataset = dataset.map(example_or_placeholder, num_parallel_calls=AUTOTUNE, deterministic=True)
    # A corrupt JPEG fails its decode: drop that video (the trainer counts it) and go on.
    dataset = dataset.ignore_errors()
    dataset = _watchdog(
        dataset, files, min_frames, start_epoch, start_offset, epoch_size, max_corrupt_fraction,
        max_records_without_example,
    ).filter(lambda element: element["usable"])

    def with_position(element):
        position = [element[name] for name in ("epoch", "offset", *_TOTALS, "cut_shard", "cut_at")]
        return {**element["example"], "position": tf.stack([tf.constant(pipeline_index, tf.int64), *position])}

    # Padded: a method that defers its resize to the training step (`augment.resize_plan`)
    # gives windows whose size follows each video's frame size.
    dataset = dataset.map(with_position).padded_batch(batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE)


def _watchdog(dataset, files, min_frames, start_epoch, start_offset, epoch_size, max_corrupt_fraction,
              max_records_without_example):
    """Follows the stream in order, and stops it naming the reason when no example has come
    for a whole epoch or `max_records_without_example` records, or when more than
    `max_corrupt_fraction` of an epoch is unreadable.

    Adds to each element the totals `_TOTALS` since the stream started (records lost to
    read errors, too short for the recipe, failed to decode) and `cut_shard`, `cut_at` (the
    last cut so far; -1 before any).
    """
    zero = tf.constant(0, tf.int64)
    paths = tf.constant(list(files))
    # Since the last example: records read, those too short and the longest of them,
    # records lost, epoch ends. Then where the stream is, its totals and its last cut.
    idle = ("read", "short", "longest", "lost", "epochs")
    start = {
        **{name: zero for name in idle + _TOTALS},
        "epoch": tf.constant(start_epoch, tf.int64), "next": tf.constant(start_offset, tf.int64),
        "cut_shard": tf.constant(-1, tf.int64), "cut_at": tf.constant(-1, tf.int64),
    }

    def follow(state, element):
        kind, offset = element["kind"], element["offset"]
        is_record, is_cut = kind == RECORD, kind == CUT
        short = is_record & ~element["usable"]
        next_offset = tf.where(element["epoch"] == state["epoch"], state["next"], 0)
        # Records between the previous element and this one failed to decode.
        undecodable = offset - next_offset
        state = {
            "read": state["read"] + undecodable + tf.cast(is_record, tf.int64),
            "short": state["short"] + tf.cast(short, tf.int64),
            "longest": tf.maximum(state["longest"], tf.where(short, element["num_frames"], 0)),
            "lost": state["lost"] + element["lost"],
            "epochs": state["epochs"] + tf.cast(kind == EPOCH_END, tf.int64),
            "epoch": element["epoch"],
            "next": offset + tf.cast(is_record, tf.int64),
            "corrupt": state["corrupt"] + element["lost"],
            "too_short": state["too_short"] + tf.cast(short, tf.int64),
            "undecodable": state["undecodable"] + undecodable,
            "cut_shard": tf.where(is_cut, element["shard"], state["cut_shard"]),
            "cut_at": tf.where(is_cut, element["at"], state["cut_at"]),
        }
        last_cut = (paths[tf.maximum(state["cut_shard"], 0)], state["cut_at"])
        checks = [
            _stop_if_stalled(element["usable"], state, last_cut, min_frames, max_records_without_example),
            _stop_if_corrupt(element, last_cut, epoch_size, max_corrupt_fraction),
        ]
        with tf.control_dependencies(checks):
            element = {**element, **{name: tf.identity(state[name]) for name in (*_TOTALS, "cut_shard", "cut_at")}}
        # An example starts the count afresh.
        state.update({name: tf.where(element["usable"], zero, state[name]) for name in idle})
        return state, element

    return dataset.scan(start, follow)


def _text(*parts):
    """One string tensor of Python strings and scalar tensors."""
    return tf.strings.join([
        part if isinstance(part, str) or part.dtype == tf.string else tf.strings.as_string(part)
        for part in parts
    ])


def _stop_if(condition, message):
    """Raises (as the stream's error) `message()` when `condition` holds; returns a tensor
    to depend on."""

    def stop():
        with tf.control_dependencies([tf.debugging.Assert(False, [_text(_STOP_TAG, message())])]):
            return tf.constant(False)

    return tf.cond(condition, stop, lambda: tf.constant(True))


def _stop_if_stalled(usable, state, last_cut, min_frames, max_records):
    """Stops at an element that is not an example when none came for two epoch ends (so a
    whole epoch) or `max_records` records."""
    records_without = state["read"] + state["lost"]

    def message():
        clauses = tf.stack([
            tf.where(
                state["short"] > 0,
                _text(state["short"], f" video(s) shorter than the {min_frames} frames the recipe needs "
                      "(the longest has ", state["longest"], ")"),
                "",
            ),
            tf.where(state["read"] > state["short"], _text(state["read"] - state["short"], " failed to decode"), ""),
            tf.where(
                state["lost"] > 0,
                _text(state["lost"], " record(s) unreadable (the last in ", last_cut[0], " from byte ",
                      last_cut[1], ")"),
                "",
            ),
        ])
        reasons = tf.strings.reduce_join(tf.boolean_mask(clauses, clauses != ""), separator="; ")
        return _text(
            "no training example in ", records_without, " record(s)",
            tf.where(
                state["epochs"] >= 2, " (at least a whole epoch)", f" (--max_records_without_example={max_records})"
            ),
            ": ", tf.where(records_without > 0, reasons, "the shards hold no records"),
        )

    return _stop_if(~usable & ((state["epochs"] >= 2) | (records_without >= max_records)), message)


def _stop_if_corrupt(element, last_cut, epoch_size, max_fraction):
    """Stops when more than `max_fraction` of the epoch is unreadable: judged at each cut when
    the epoch's size is known, else at the epoch's end."""
    lost = element["epoch_lost"]
    total = tf.maximum(tf.constant(epoch_size, tf.int64), element["offset"] + lost)
    judged = (element["kind"] == EPOCH_END) | ((element["kind"] == CUT) & (epoch_size >= 0))
    too_much = judged & (tf.cast(lost, tf.float64) > max_fraction * tf.cast(total, tf.float64))

    def message():
        return _text(
            "at least " if epoch_size < 0 else "", lost, " of the ", total, " records of epoch ", element["epoch"],
            f" are unreadable (more than --max_corrupt_fraction={max_fraction:g}); the last in ", last_cut[0],
            " from byte ", last_cut[1], ". `python -m tfvssl.prepare --verify --output_dir=<dataset root>` lists "
            "them all",
        )

    return _stop_if(too_much, message)


def stop_reason(error):
    """The reason `training_dataset` stopped, from the `tf.errors.OpError` it raised, or None
    for any other error."""
    match = re.search(re.escape(_STOP_TAG) + r"(.*?)\](?:\s*\n|$)", error.message)
    return match.group(1) if match else None


def evaluation_dataset(files, example_fn, batch_size, *, modalities=("rgb",), min_frames=1):
    """A single ordered pass over `files`, each video mapped by `example_fn(video)`.

    Videos shorter than `min_frames` or failing to decode are dropped.
    """
    keep_buffers_off_mmap()
    dataset = tf.data.TFRecordDataset(files)
    dataset = dataset.map(
        lambda record: records.parse_sequence_example(record, modalities), num_parallel_calls=AUTOTUNE
    )
    dataset = dataset.filter(lambda video: video["num_frames"] >= min_frames)
    dataset = dataset.map(example_fn, num_parallel_calls=AUTOTUNE).ignore_errors()
    return dataset.batch(batch_size).prefetch(AUTOTUNE)
