"""Clips per second of each method's training input pipeline, on the machine it runs on.

    python benchmarks/input_pipeline.py --bench_json=/tmp/input_pipeline.json

Three ways to feed each method the same videos, all in the same tf.data setup
(parallel maps with AUTOTUNE, batches of `--bench_batch_size`):

- tfrecord: `pipeline.training_dataset` on TFRecord shards: what training runs.
- decode ceiling: the same pipeline, but each example only decodes the JPEGs the method's
  sampler picks, with `tf.io.decode_jpeg` and nothing else (the method's example is
  traced up to its `decode_frames` call only). The input pipeline cannot beat this by
  much: it is the cost of the frames alone.
- on the fly: the videos decoded whole with PyAV inside `tf.numpy_function`, then the
  method's own sampling and augmentation on the decoded frames (what loading videos
  without a preparation step costs).

Data: the embedded synthetic dataset rendered at `--bench_frame_size` (square frames; the default
240 is the short side DPC stores UCF101 and HMDB51 at), `--bench_video_frames` frames per video,
as shards and as H.264 .mp4 files, cached in `--bench_data_dir`. Methods run with their paper
recipe (resolution, clip lengths, augmentations) unless flags override them.

Prints a table and, with `--bench_json`, writes the numbers. Never asserted in tests:
numbers depend on the machine and on what else runs on it.
"""

import json
import os
import platform
import sys
import time
from unittest import mock

import tensorflow as tf
from absl import app, flags

from tfvssl import methods  # Defines every method's flags, for the command line.
from tfvssl.data import pipeline, records, sources, synthetic
from tfvssl.train import train_flags

flags.DEFINE_list("bench_methods", [], "Methods to measure (default: every one of tfvssl.methods.METHODS).")
flags.DEFINE_list(
    "bench_paths", ["tfrecord", "ceiling", "on_the_fly"], "What to measure: tfrecord, ceiling, on_the_fly."
)
flags.DEFINE_string("bench_data_dir", None, "Where the benchmark videos are cached (default: the tfvssl cache).")
flags.DEFINE_string(
    "bench_data", None,
    "A dataset root made by `tfvssl.prepare` to measure instead of the synthetic videos (its train split; "
    "no on_the_fly path, which needs the synthetic .mp4 files).",
)
flags.DEFINE_integer("bench_frame_size", 240, "Height and width of the rendered frames.", lower_bound=16)
flags.DEFINE_integer("bench_video_frames", 150, "Frames per video (150 = 6 s at 25 fps).", lower_bound=4)
flags.DEFINE_integer("bench_videos", 32, "Videos rendered (4 motion classes).", lower_bound=4)
flags.DEFINE_integer("bench_batch_size", 8, "Clips per batch.", lower_bound=1)
flags.DEFINE_integer("bench_warmup", 3, "Batches before the clock starts.", lower_bound=0)
flags.DEFINE_integer("bench_batches", 20, "Batches timed.", lower_bound=1)
flags.DEFINE_string("bench_json", None, "Write the results here as JSON.")

FLAGS = flags.FLAGS
_NUM_CLASSES = 4


def benchmark_data():
    """The synthetic dataset root (shards under train/, videos under videos/train/)."""
    config = synthetic.SyntheticConfig(
        num_classes=_NUM_CLASSES, train_videos_per_class=FLAGS.bench_videos // _NUM_CLASSES,
        test_videos_per_class=0, num_frames=FLAGS.bench_video_frames, resolution=FLAGS.bench_frame_size,
        write_videos=True,
    )
    root = FLAGS.bench_data_dir or synthetic.default_dataset_path(config)
    synthetic.generate(root, config)
    return root


class _Sampled(Exception):
    """Carries the arguments of a method's `decode_frames` call out of its trace."""

    def __init__(self, jpegs, indices, modality="rgb"):
        super().__init__("sampled")
        self.jpegs, self.indices, self.modality = jpegs, indices, modality


def _stop_at_decode(jpegs, indices, modality="rgb", crop_window=None):
    del crop_window  # The ceiling decodes the sampled frames whole.
    raise _Sampled(jpegs, indices, modality)


class _CeilingMethod:
    """A stand-in for `method` whose examples are only the decoded frames its sampler picks.

    The method's `train_example` is traced up to its `decode_frames` call (every method
    decodes once per example) and stopped there, so nothing after the sampling enters the
    graph; the examples are those JPEGs decoded.
    """

    def __init__(self, method):
        self.method = method
        self.modalities = method.modalities

    def min_frames(self):
        return self.method.min_frames()

    def train_example(self, video, seed):
        with mock.patch.object(pipeline, "decode_frames", _stop_at_decode):
            try:
                self.method.train_example(video, seed)
            except _Sampled as sampled:
                channels = records.MODALITY_JPEG_CHANNELS[sampled.modality]
                frames = tf.map_fn(
                    lambda jpeg: tf.io.decode_jpeg(jpeg, channels=channels),
                    tf.gather(sampled.jpegs, sampled.indices), fn_output_signature=tf.uint8,
                )
                return {"frames": frames}
        raise ValueError(f"{self.method.name}: train_example decoded no frames")


def _decode_video(path):
    return sources.read_video(path.decode()).frames


def on_the_fly_dataset(video_paths, method, batch_size, seed=0):
    """PyAV decoding of whole videos in `tf.numpy_function`, then the method's example."""

    def example(offset, path):
        frames = tf.numpy_function(_decode_video, [path], tf.uint8, stateful=False)
        frames.set_shape([None, None, None, 3])
        video = {"rgb": frames, "num_frames": tf.shape(frames)[0], "label": tf.constant(-1, tf.int64)}
        return method.train_example(video, pipeline.element_seed(seed, 0, offset))

    def gather_frames(frames, indices, modality="rgb", crop_window=None):
        del modality
        frames = tf.gather(frames, indices)
        if crop_window is None:
            return frames
        windows = pipeline.frame_windows(crop_window, tf.shape(frames)[0])
        return tf.map_fn(
            lambda args: tf.image.crop_to_bounding_box(args[0], *tf.unstack(args[1])), (frames, windows),
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )

    def frames_size(frames):
        shape = tf.shape(frames)
        return shape[1], shape[2]

    paths = tf.data.Dataset.from_tensor_slices(video_paths).repeat().enumerate()
    with mock.patch.object(pipeline, "decode_frames", gather_frames), mock.patch.object(
        pipeline, "frame_size", frames_size
    ):
        dataset = paths.map(example, num_parallel_calls=pipeline.AUTOTUNE, deterministic=True)
    return dataset.ignore_errors().padded_batch(batch_size, drop_remainder=True).prefetch(pipeline.AUTOTUNE)


def throughput(dataset, batch_size):
    """Clips per second over `--bench_batches` batches after `--bench_warmup`, and the
    process's CPU milliseconds per clip (all threads): on a machine shared with other
    work, the second tells the cost apart from the contention."""
    iterator = iter(dataset)
    for _ in range(FLAGS.bench_warmup):
        next(iterator)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.bench_batches):
        next(iterator)
    clips = FLAGS.bench_batches * batch_size
    return clips / (time.perf_counter() - start), 1000 * (time.process_time() - start_cpu) / clips


def measure(method, root):
    """`({path: clips/s}, {path: CPU ms per clip})` of one method."""
    files = records.list_shards(root, "train")
    video_paths = sorted(
        os.path.join(directory, name)
        for directory, _, names in os.walk(os.path.join(root, "videos", "train"))
        for name in names
    )
    batch = FLAGS.bench_batch_size
    builders = {
        "tfrecord": lambda: pipeline.training_dataset(files, method, batch, shuffle_buffer=16),
        "ceiling": lambda: pipeline.training_dataset(files, _CeilingMethod(method), batch, shuffle_buffer=16),
        "on_the_fly": lambda: on_the_fly_dataset(video_paths, method, batch),
    }
    measured = {path: throughput(builders[path](), batch) for path in FLAGS.bench_paths}
    return ({path: rate for path, (rate, _) in measured.items()},
            {path: cpu for path, (_, cpu) in measured.items()})


def _table(results):
    columns = [path for path in ("tfrecord", "ceiling", "on_the_fly") if path in FLAGS.bench_paths]
    header = ["method", *(f"{c} clips/s" for c in columns)]
    if {"tfrecord", "ceiling"} <= set(columns):
        header.append("% of ceiling")
    if {"tfrecord", "on_the_fly"} <= set(columns):
        header.append("x on the fly")
    rows = [header]
    for name, result in results.items():
        row = [name, *(f"{result[c]:.1f}" for c in columns)]
        if "% of ceiling" in header:
            row.append(f"{100 * result['tfrecord'] / result['ceiling']:.0f}%")
        if "x on the fly" in header:
            row.append(f"{result['tfrecord'] / result['on_the_fly']:.1f}x")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def main(argv):
    del argv
    unknown = set(FLAGS.bench_paths) - {"tfrecord", "ceiling", "on_the_fly"}
    if unknown:
        raise app.UsageError(f"--bench_paths: unknown {sorted(unknown)}")
    if FLAGS.bench_data and "on_the_fly" in FLAGS.bench_paths:
        if FLAGS["bench_paths"].present:
            raise app.UsageError("--bench_paths=on_the_fly needs the synthetic videos, not --bench_data")
        FLAGS.bench_paths = [path for path in FLAGS.bench_paths if path != "on_the_fly"]
    names = FLAGS.bench_methods or sorted(methods.METHODS)
    root = FLAGS.bench_data or benchmark_data()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    size = FLAGS.bench_frame_size
    data = FLAGS.bench_data or (
        f"{FLAGS.bench_videos} videos of {FLAGS.bench_video_frames} frames at {size}x{size}"
    )
    print(
        f"{data}, batches of {FLAGS.bench_batch_size}, {FLAGS.bench_batches} batches timed; {machine}",
        file=sys.stderr,
    )
    results, cpu_costs = {}, {}
    for name in names:
        method_cls = methods.get_method(name)
        method = method_cls(train_flags.resolve_config(FLAGS, method_cls))
        method.validate()
        results[name], cpu_costs[name] = measure(method, root)
        print(
            f"{name}: " + ", ".join(
                f"{path} {results[name][path]:.1f} clips/s ({cpu_costs[name][path]:.0f} CPU ms/clip)"
                for path in results[name]
            ), file=sys.stderr,
        )
    print(_table(results))
    if FLAGS.bench_json:
        report = {
            "machine": machine, "data": FLAGS.bench_data or "synthetic",
            "frame_size": FLAGS.bench_frame_size, "video_frames": FLAGS.bench_video_frames,
            "videos": FLAGS.bench_videos, "batch_size": FLAGS.bench_batch_size,
            "batches": FLAGS.bench_batches,
            "tensorflow": tf.__version__, "clips_per_second": results, "cpu_ms_per_clip": cpu_costs,
        }
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.bench_json)), exist_ok=True)
        with open(FLAGS.bench_json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    app.run(main)
