"""The conversion engine of `python -m tfvssl.prepare`: a `Manifest` of videos -> TFRecord shards.

Output, the dataset root of `records.py`:

    <output_dir>/<split>/<split>-NNNNN.tfrecord   one SequenceExample per converted video
    <output_dir>/dataset_info.json                class names, options, per-split counts
    <output_dir>/summary.json                     every video: converted (frames) or
                                                  rejected (reason)
    <output_dir>/.prepare/                        resume state: the run's fingerprint and
                                                  one result file per finished shard
    <output_dir>/.prepare.lock                    the PID of the conversion writing it

Each split's videos are put in a fixed pseudo-random order (`Options.seed`), so every shard
mixes the classes, and cut into shards of `shard_size` videos. A shard is the unit of work
and of resuming: a worker converts a whole shard into a hidden temporary file, renames it
into place, then writes the shard's result file. A re-run with the same videos and options
skips the shards that have a result file and redoes the others (an interrupted shard
included). Videos that give no usable frames are rejected with a named reason and the run
goes on: the reasons of `sources.VideoError` ("not found", "empty file", "unreadable", "no
video stream", "decode error", "no frames decoded"), and "too short" (fewer stored frames
than `min_frames`), "no frames" (a frame folder without frame files), "inconsistent frame
sizes" (frame folders), "unknown frame rate", or "error" for anything unexpected.

One conversion at a time writes an output directory: it holds an advisory lock on
`.prepare.lock` (released by the system when its process ends, however it ends, so a
stale file of a dead process is simply taken over), and its worker processes end when it
does, even when it is killed with -9, so a rerun never races an orphan on the same shards.

Frame counts: `fps` resamples by timestamps, `frame_stride` keeps every n-th frame
(frame folders, which have no timestamps, are taken to be at `frames_fps`). Motion
modalities have one frame fewer than the frames they are computed from (see
`modalities.py`).
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import itertools
import json
import multiprocessing
import os
import queue as queue_lib
import re
import shutil
import sys
import threading
import time
import zlib
from typing import Optional

import av
import numpy as np
import tensorflow as tf

from tfvssl.data import augment, manifests, modalities, records, sources
from tfvssl.train import reporting

STATE_DIR = ".prepare"
LOCK_FILE = ".prepare.lock"
SUMMARY = "summary.json"
_STATE_FILE = "state.json"


@dataclasses.dataclass(frozen=True)
class Options:
    """How videos become records; each field is the `tfvssl.prepare` flag of the same name.

    Attributes:
      modality: stored modalities among `rgb`, `flow`, `diff`.
      fps: resample to this frame rate (None: keep the source's frames).
      frame_stride: keep every n-th frame instead (1: all).
      short_side: resize so the shorter side has this many pixels (None: keep the size).
      jpeg_quality: JPEG quality of stored frames.
      min_frames: videos with fewer stored frames are rejected as "too short".
      flow_algorithm: `tvl1` or `dis` (see `modalities.FlowEstimator`).
      flow_bound: flow clipping bound in pixels (MemDPC 20, temporal CPC 10).
      frames_fps: frame rate of extracted-frame folders.
      shard_size: videos per shard.
      seed: seed of the order of the videos in the shards.
    """

    modality: tuple = ("rgb",)
    fps: Optional[float] = None
    frame_stride: int = 1
    short_side: Optional[int] = None
    jpeg_quality: int = 90
    min_frames: int = 1
    flow_algorithm: str = "tvl1"
    flow_bound: float = modalities.MEMDPC_FLOW_BOUND
    frames_fps: float = 25.0
    shard_size: int = 100
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "modality", tuple(self.modality))
        known = set(records.MODALITY_KEYS)
        if not self.modality or set(self.modality) - known or len(set(self.modality)) < len(self.modality):
            raise ValueError(f"--modality={','.join(self.modality)}: give distinct names among {sorted(known)}")
        if self.fps is not None and self.frame_stride != 1:
            raise ValueError(f"--fps={self.fps} and --frame_stride={self.frame_stride}: give one of the two")
        checks = {
            "fps": self.fps is None or self.fps > 0,
            "frame_stride": self.frame_stride >= 1,
            "short_side": self.short_side is None or self.short_side >= 1,
            "jpeg_quality": 1 <= self.jpeg_quality <= 100,
            "min_frames": self.min_frames >= 1,
            "flow_algorithm": self.flow_algorithm in modalities.FLOW_ALGORITHMS,
            "flow_bound": self.flow_bound > 0,
            "frames_fps": self.frames_fps > 0,
            "shard_size": self.shard_size >= 1,
        }
        for name, valid in checks.items():
            if not valid:
                raise ValueError(f"--{name}={getattr(self, name)}: out of range")


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """The videos of one shard: `<split>-<index>`."""

    split: str
    index: int
    entries: tuple


class Rejected(Exception):
    """A video that cannot be stored; `reason` is its named cause."""

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ---- Reading one video's frames ------------------------------------------------------------------


def _source_fps(path):
    """The average frame rate of a video file, or None when the header has none."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
    except (av.error.FFmpegError, IndexError, OSError):
        return None  # Decoding reports the failure with its reason.
    return float(rate) if rate else None


def _feed_video(entry, options, encoder):
    """Decodes a video file into `encoder`; returns the stored frame rate."""
    fps = options.fps
    if fps is None:
        source_fps = _source_fps(entry.path)
        if source_fps is None:
            # A file that cannot be decoded raises its VideoError here.
            next(sources.iter_frames(entry.path, max_frames=1))
            raise Rejected("unknown frame rate")
        fps = source_fps / options.frame_stride
    first, stop = 0, None
    if entry.start is not None:
        # A full-length video listed with a time window (Kinetics): keep the window, by
        # frame index at the stored rate (exact times with variable frame rates need --fps).
        first, stop = round(entry.start * fps), max(round(entry.end * fps), 1)
    frames = sources.iter_frames(
        entry.path, fps=options.fps, frame_stride=options.frame_stride,
        short_side=options.short_side, max_frames=stop,
    )
    for frame in itertools.islice(frames, first, None):
        encoder.add(frame)
    return fps


def _frame_indices(num_frames, options):
    """The frames of a frame folder kept by `frame_stride` or `fps` (nearest earlier frame)."""
    if options.fps is None:
        return range(0, num_frames, options.frame_stride)
    count = int(np.floor((num_frames - 1) * options.fps / options.frames_fps)) + 1
    return [int(k * options.frames_fps / options.fps) for k in range(count)]


def _feed_frame_folder(folder, options, encoder):
    """Reads a folder of JPEG frames into `encoder`; returns the stored frame rate.

    JPEGs are stored as they are unless they must be resized (or decoded for a motion
    modality); their headers are checked so a corrupt frame rejects the video here
    rather than failing at training time.
    """
    files = manifests.frame_files(folder)
    if not files:
        raise Rejected("no frames", folder)
    size = None
    for index in _frame_indices(len(files), options):
        with open(files[index], "rb") as f:
            data = f.read()
        try:
            shape = tuple(tf.io.extract_jpeg_shape(data).numpy()[:2])
            if size is None:
                size = shape
            if shape != size:
                raise Rejected("inconsistent frame sizes", f"{files[index]} is {shape}, frame 1 {size}")
            resize = options.short_side is not None and options.short_side != min(shape)
            if not resize and not encoder.needs_pixels:
                encoder.add(None, rgb_jpeg=data)
                continue
            frame = tf.io.decode_jpeg(data, channels=3)
        except tf.errors.InvalidArgumentError as error:
            raise Rejected("decode error", f"{files[index]}: {error.message}") from error
        if resize:
            encoder.add(augment.resize_short_side(frame[None], options.short_side)[0].numpy())
        else:
            encoder.add(frame.numpy(), rgb_jpeg=data)
    return options.fps or options.frames_fps / options.frame_stride


def _source_kind(path):
    """("frames", folder) for a frame folder (or a missing video whose folder exists),
    else ("video", path)."""
    if os.path.isdir(path):
        return "frames", path
    stem = os.path.splitext(path)[0]
    if not os.path.exists(path) and os.path.isdir(stem):
        return "frames", stem
    return "video", path


def convert_video(entry, options, flow=None):
    """Converts one video.

    Args:
      entry: a `manifests.VideoEntry`.
      options: `Options`.
      flow: a `modalities.FlowEstimator` when `flow` is stored.

    Returns:
      `(example, result)`: the `tf.train.SequenceExample` (None when rejected) and the
      video's summary: `video`, `path`, `split`, `status` ("converted" or "rejected"),
      then `frames` and `fps`, or `reason` and `detail`.
    """
    result = {"video": entry.name, "path": entry.path, "split": entry.split}
    encoder = modalities.ModalityEncoder(
        options.modality, options.jpeg_quality, flow=flow, flow_bound=options.flow_bound
    )
    kind, path = _source_kind(entry.path)
    try:
        if kind == "frames":
            fps = _feed_frame_folder(path, options, encoder)
        else:
            fps = _feed_video(entry, options, encoder)
        jpegs = encoder.result()
        num_frames = len(jpegs[options.modality[0]])
        if num_frames < options.min_frames:
            raise Rejected("too short", f"{num_frames} frames < --min_frames={options.min_frames}")
    except sources.VideoError as error:
        return None, {**result, "status": "rejected", "reason": error.reason, "detail": str(error)}
    except Rejected as error:
        return None, {**result, "status": "rejected", "reason": error.reason, "detail": str(error)}
    except Exception as error:  # pylint: disable=broad-except
        # One odd file must not end a conversion of thousands: record it and go on.
        detail = f"{type(error).__name__}: {error}"
        return None, {**result, "status": "rejected", "reason": "error", "detail": detail}
    example = records.make_sequence_example(
        jpegs, filename=entry.name, label_index=entry.label_index, label_string=entry.label,
        fps=fps, t_fail=entry.t_fail, rel_t=entry.rel_t,
    )
    return example, {**result, "status": "converted", "frames": num_frames, "fps": fps}


# ---- Shards ----------------------------------------------------------------------------------------


def plan_shards(manifest, options):
    """Cuts each split's videos, in a seeded order, into `ShardTask`s of `shard_size`."""
    tasks = []
    for split in manifest.splits():
        entries = [entry for entry in manifest.entries if entry.split == split]
        rng = np.random.default_rng([options.seed, zlib.crc32(split.encode())])
        entries = [entries[i] for i in rng.permutation(len(entries))]
        for index, start in enumerate(range(0, len(entries), options.shard_size)):
            tasks.append(ShardTask(split, index, tuple(entries[start : start + options.shard_size])))
    return tasks


def _result_path(output_dir, task):
    return os.path.join(output_dir, STATE_DIR, f"{task.split}-{task.index:05d}.json")


def _write_json(path, value):
    """Writes JSON atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)


def convert_shard(task, output_dir, options, report=None):
    """Converts the videos of one shard and writes the shard and its result file.

    Args:
      task: a `ShardTask`.
      output_dir: the dataset root.
      options: `Options`.
      report: called with each video's result as soon as it is known.

    Returns:
      The videos' results (see `convert_video`), with `shard` for converted ones.
    """
    flow = modalities.FlowEstimator(options.flow_algorithm) if "flow" in options.modality else None
    shard = records.PartialShard(output_dir, task.split, task.index)
    name = os.path.basename(shard.path)
    results = []
    try:
        for entry in task.entries:
            example, result = convert_video(entry, options, flow)
            if example is not None:
                shard.write(example)
                result["shard"] = name
            results.append(result)
            if report:
                report(result)
    except BaseException:
        shard.discard()
        raise
    if shard.count:
        shard.finish()
    else:
        shard.discard()
    _write_json(_result_path(output_dir, task), {"shard": name, "videos": results})
    return results


_worker_queue = None


def _init_worker(progress_queue, parent_pid):
    global _worker_queue
    _worker_queue = progress_queue
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(parent_pid):
    """Ends this worker as soon as its parent is gone (an orphan is re-parented): one left
    running after a `kill -9` of the conversion would race its rerun on the same shards."""
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(1)


def _convert_shard_in_worker(task, output_dir, options):
    return convert_shard(task, output_dir, options, report=_worker_queue.put)


def _run_in_workers(tasks, output_dir, options, workers, on_video):
    """Converts `tasks` in `workers` spawned processes, reporting videos as they finish."""
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(progress_queue, os.getpid())
    ) as pool:
        futures = [pool.submit(_convert_shard_in_worker, task, output_dir, options) for task in tasks]
        while not all(future.done() for future in futures):
            try:
                on_video(progress_queue.get(timeout=0.2))
            except queue_lib.Empty:
                pass
        while True:  # Results reported just before the last shard finished.
            try:
                on_video(progress_queue.get(timeout=0.1))
            except queue_lib.Empty:
                break
        for future in futures:
            future.result()  # Re-raises a shard's failure (a full disk, a killed worker).


class _Progress:
    """A progress line with videos per second and the ETA, on stderr."""

    def __init__(self, total, done, stream=None):
        self.total, self.done, self.rejected = total, done, 0
        self.stream = stream or sys.stderr
        self.clock = reporting.Clock(total, done)
        self.clock.tick(done)
        self.interactive = self.stream.isatty()
        self.last_print = time.time()

    def update(self, result):
        self.done += 1
        self.rejected += result["status"] == "rejected"
        if time.time() - self.last_print >= (0.5 if self.interactive else 10.0):
            self.print()

    def print(self, final=False):
        self.last_print = time.time()
        elapsed = self.last_print - self.clock.warm_time
        converted_now = self.done - self.clock.warm_step
        rate = f"{converted_now / elapsed:.2f}" if elapsed > 0 and converted_now else "?"
        line = (
            f"prepare: {self.done}/{self.total} videos ({self.rejected} rejected this run), "
            f"{rate} videos/s, ETA {self.clock.eta(self.done) if not final else '0:00:00'}"
        )
        end = "\r" if self.interactive and not final else "\n"
        self.stream.write(line + end)
        self.stream.flush()


# ---- The whole conversion ---------------------------------------------------------------------------


def _fingerprint(manifest, options):
    content = {
        "name": manifest.name,
        "class_names": manifest.class_names,
        "entries": [dataclasses.asdict(entry) for entry in manifest.entries],
        "options": dataclasses.asdict(options),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _remove_outputs(output_dir, splits):
    """Deletes what a previous conversion wrote into `output_dir` (nothing else)."""
    shutil.rmtree(os.path.join(output_dir, STATE_DIR), ignore_errors=True)
    for name in (SUMMARY, records.DATASET_INFO):
        if os.path.exists(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))
    for split in splits:
        split_dir = os.path.join(output_dir, split)
        if os.path.isdir(split_dir):
            for name in os.listdir(split_dir):
                if name.startswith((f"{split}-", f".{split}-")):
                    os.remove(os.path.join(split_dir, name))


@contextlib.contextmanager
def hold_output(output_dir):
    """Holds `<output_dir>/.prepare.lock` for a conversion: an advisory lock on a file that
    names the holder's PID.

    The system releases the lock when the process ends, however it ends, so the file a dead
    conversion left is taken over.

    Raises:
      ValueError: naming the PID of another conversion that holds it.
    """
    os.makedirs(output_dir, exist_ok=True)
    descriptor = os.open(os.path.join(output_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode().strip() or "?"
            raise ValueError(
                f"--output_dir={output_dir}: another conversion (PID {holder}) is writing it; "
                "wait for it to end or stop it"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)


def _claim_output(output_dir, fingerprint, splits, overwrite):
    """Prepares `output_dir`, keeping the finished shards of the same conversion.

    Raises:
      ValueError: it holds a conversion of other videos or options and not `overwrite`.
    """
    state_path = os.path.join(output_dir, STATE_DIR, _STATE_FILE)
    if overwrite:
        _remove_outputs(output_dir, splits)
    elif os.path.isfile(state_path):
        with open(state_path) as f:
            if json.load(f).get("fingerprint") != fingerprint:
                raise ValueError(
                    f"--output_dir={output_dir}: holds a conversion of other videos or options; "
                    "pass --overwrite to replace it, or choose another directory"
                )
    _write_json(state_path, {"fingerprint": fingerprint})


def _dataset_info(manifest, options, tasks, shard_results, flow_backend):
    splits = {}
    for task, result in zip(tasks, shard_results):
        split = splits.setdefault(task.split, {"num_videos": 0, "num_rejected": 0, "shards": {}})
        converted = sum(video["status"] == "converted" for video in result["videos"])
        split["num_videos"] += converted
        split["num_rejected"] += len(result["videos"]) - converted
        if converted:
            split["shards"][result["shard"]] = converted
    info = {
        "name": manifest.name,
        "class_names": manifest.class_names,
        "num_classes": len(manifest.class_names),
        # 0-based indices into class_names (UCF101's 1-based classInd.txt is shifted).
        "label_base": 0,
        "modalities": list(options.modality),
        "fps": options.fps,
        "frame_stride": options.frame_stride,
        "short_side": options.short_side,
        "jpeg_quality": options.jpeg_quality,
        "min_frames": options.min_frames,
        "splits": splits,
    }
    if "flow" in options.modality:
        info["flow"] = {"algorithm": options.flow_algorithm, "backend": flow_backend, "bound": options.flow_bound}
    return info


def prepare(manifest, output_dir, options, *, workers=1, overwrite=False, progress_stream=None):
    """Converts every video of `manifest` into the dataset root `output_dir`.

    Resumes a previous run of the same manifest and options (finished shards are kept).

    Args:
      manifest: a `manifests.Manifest`.
      output_dir: the dataset root to write.
      options: `Options`.
      workers: processes converting shards in parallel (1: this process).
      overwrite: start afresh, deleting what an earlier conversion wrote to `output_dir`.
      progress_stream: where the progress line goes (default stderr).

    Returns:
      The summary (also written to `summary.json`): `dataset`, `num_videos`,
      `num_converted`, `num_rejected`, `rejected_by_reason` and `videos`, the result of
      every video in shard order.

    Raises:
      ValueError: bad options, or `output_dir` holds another conversion, finished or
        running.
    """
    if workers < 1:
        raise ValueError(f"--workers={workers}: must be >= 1")
    # Fails now, not in a worker, when the flow algorithm cannot run here.
    flow_backend = (
        modalities.FlowEstimator(options.flow_algorithm).backend if "flow" in options.modality else None
    )
    tasks = plan_shards(manifest, options)
    with hold_output(output_dir):
        _claim_output(output_dir, _fingerprint(manifest, options), manifest.splits(), overwrite)
        pending = [task for task in tasks if not os.path.isfile(_result_path(output_dir, task))]
        done = sum(len(task.entries) for task in tasks) - sum(len(task.entries) for task in pending)
        progress = _Progress(len(manifest.entries), done, progress_stream)
        if workers == 1 or len(pending) <= 1:
            for task in pending:
                convert_shard(task, output_dir, options, report=progress.update)
        else:
            _run_in_workers(pending, output_dir, options, min(workers, len(pending)), progress.update)
        progress.print(final=True)

        shard_results = []
        for task in tasks:
            with open(_result_path(output_dir, task)) as f:
                shard_results.append(json.load(f))
        videos = [video for result in shard_results for video in result["videos"]]
        rejected = collections.Counter(video["reason"] for video in videos if video["status"] == "rejected")
        summary = {
            "dataset": manifest.name,
            "num_videos": len(videos),
            "num_converted": len(videos) - sum(rejected.values()),
            "num_rejected": sum(rejected.values()),
            "rejected_by_reason": dict(sorted(rejected.items())),
            "videos": videos,
        }
        _write_json(os.path.join(output_dir, SUMMARY), summary)
        records.write_dataset_info(
            output_dir, _dataset_info(manifest, options, tasks, shard_results, flow_backend)
        )
    return summary


# ---- Checking a dataset root --------------------------------------------------------------------


def verify(root):
    """Checks a dataset root as training will read it.

    Every shard on disk or listed in `dataset_info.json` is read to its end; every record
    must parse, with as many frames of each stored modality as its `video/num_frames` (and
    `summary.json`, where it lists the video) states, each frame a JPEG of the video's frame
    size; and each shard must hold the records `dataset_info.json` lists.

    Returns:
      `(records_read, problems)`: `{split: records read}`, and one line per problem, naming
      the shard and the byte (or record) where it is.

    Raises:
      ValueError: `root` has no `dataset_info.json`.
    """
    if not os.path.isfile(os.path.join(root, records.DATASET_INFO)):
        raise ValueError(f"--output_dir={root}: no {records.DATASET_INFO}, not a dataset root")
    info = records.read_dataset_info(root)
    frames_of = {}
    if os.path.isfile(os.path.join(root, SUMMARY)):
        with open(os.path.join(root, SUMMARY)) as f:
            frames_of = {video["video"]: video["frames"] for video in json.load(f)["videos"] if "frames" in video}
    modalities_stored = tuple(info.get("modalities", ["rgb"]))
    records_read, problems = {}, []
    for split, split_info in sorted(info.get("splits", {}).items()):
        listed = split_info.get("shards", {})
        on_disk = {os.path.basename(path) for path in glob.glob(os.path.join(root, split, f"*{records.SHARD_SUFFIX}"))}
        records_read[split] = 0
        for name in sorted(set(listed) | on_disk):
            path = os.path.join(root, split, name)
            if name not in on_disk:
                problems.append(f"{path}: listed in {records.DATASET_INFO} but missing")
                continue
            count = _verify_shard(path, modalities_stored, frames_of, problems)
            records_read[split] += count
            if name not in listed:
                problems.append(f"{path}: not listed in {records.DATASET_INFO}")
            elif count != listed[name]:
                problems.append(f"{path}: {count} records readable, {records.DATASET_INFO} lists {listed[name]}")
    return records_read, problems


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _jpeg_sizes(jpegs):
    """`[T, 3]` (height, width, channels) from each JPEG's header; fails on a non-JPEG."""
    return tf.map_fn(tf.io.extract_jpeg_shape, jpegs, fn_output_signature=tf.TensorSpec([3], tf.int32))


def _error_line(error):
    """The gist of a TensorFlow error: its first line without the op names TensorFlow adds."""
    line = error.message.strip().splitlines()[0]
    return re.sub(r"\{\{[^}]*\}\}|\[Op:.*$", "", line).strip()


def _verify_shard(path, modalities_stored, frames_of, problems):
    """Reads one shard for `verify`, adding its problems; returns the records read."""
    count, offset = 0, 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            record = next(iterator).numpy()
        except StopIteration:
            return count
        except tf.errors.OpError as error:
            problems.append(f"{path}: unreadable from byte {offset} on (record {count}): {_error_line(error)}")
            return count
        where = f"{path}: record {count} (byte {offset})"
        try:
            video = records.parse_sequence_example(tf.constant(record), modalities_stored)
            stated = tf.io.parse_single_sequence_example(
                record, context_features={records.NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64, -1)}
            )[0][records.NUM_FRAMES]
        except tf.errors.InvalidArgumentError as error:
            problems.append(f"{where} does not parse: {_error_line(error)}")
        else:
            name = video["filename"].numpy().decode()
            stored = {modality: int(tf.size(video[modality])) for modality in modalities_stored}
            expected = {int(stated), frames_of.get(name, int(stated))}
            if len(set(stored.values()) | expected) > 1:
                problems.append(
                    f"{where}, {name}: frames stored {stored}, video/num_frames {int(stated)}"
                    + (f", {SUMMARY} {frames_of[name]}" if name in frames_of else "")
                )
            for modality in modalities_stored:
                try:
                    sizes = _jpeg_sizes(video[modality]).numpy()
                except tf.errors.InvalidArgumentError:
                    problems.append(f"{where}, {name}: a {modality} frame is not a readable JPEG")
                    continue
                if len({tuple(size) for size in sizes}) > 1:
                    problems.append(f"{where}, {name}: {modality} frames of different sizes")
        count += 1
        offset += len(record) + records.RECORD_FRAMING
