"""The TFRecord layout: one DMVR-compatible `tf.train.SequenceExample` per video.

Context features hold the video's metadata, feature lists hold one JPEG per frame and
modality. Every key used anywhere in tfvssl is a constant of this module.

A dataset is a directory:

    <root>/dataset_info.json          class names, per-split shard names and video counts
    <root>/<split>/<split>-00000.tfrecord, ...

`--data` accepts such a root, a split directory, a single shard or a glob.
"""

import glob
import json
import os

import numpy as np
import tensorflow as tf

# Context keys.
FILENAME = "video/filename"
LABEL_INDEX = "clip/label/index"
LABEL_STRING = "clip/label/string"
FPS = "video/fps"
NUM_FRAMES = "video/num_frames"
OOPS_T_FAIL = "oops/t_fail"
OOPS_REL_T = "oops/rel_t"

# Feature-list keys, one JPEG per frame.
IMAGE = "image/encoded"
FLOW = "flow/encoded"  # x, y flow in channels 0 and 1, channel 2 constant.
DIFF = "diff/encoded"  # grey difference of consecutive frames, single channel.

MODALITY_KEYS = {"rgb": IMAGE, "flow": FLOW, "diff": DIFF}
MODALITY_CHANNELS = {"rgb": 3, "flow": 2, "diff": 1}
# Channels as stored in the JPEG (flow keeps a constant third channel).
MODALITY_JPEG_CHANNELS = {"rgb": 3, "flow": 3, "diff": 1}

DATASET_INFO = "dataset_info.json"
SHARD_SUFFIX = ".tfrecord"
# Bytes a TFRecord file adds to each record: its length (8) and two CRCs (4 each).
RECORD_FRAMING = 16


def encode_jpeg(frame, quality=90):
    """Encodes one frame as JPEG.

    Args:
      frame: uint8 array `[H, W, C]`, C in {1, 3}.
      quality: JPEG quality, 0-100.

    Returns:
      The JPEG bytes.
    """
    return tf.io.encode_jpeg(np.asarray(frame, np.uint8), quality=quality).numpy()


def make_sequence_example(
    frames,
    *,
    filename,
    label_index=-1,
    label_string="",
    fps=25.0,
    t_fail=None,
    rel_t=None,
):
    """Builds the record of one video.

    Args:
      frames: dict modality name (`rgb`, `flow`, `diff`) -> list of JPEG bytes, one per
        frame. All modalities present must have the same number of frames.
      filename: the source video's path or name.
      label_index: class index, -1 when unlabeled.
      label_string: class name, "" when unlabeled.
      fps: frame rate of the stored frames.
      t_fail: Oops failure time in seconds (median of the annotators), if known.
      rel_t: Oops failure time relative to the duration, if known.

    Returns:
      A `tf.train.SequenceExample`.
    """
    lengths = {name: len(jpegs) for name, jpegs in frames.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"modalities have different frame counts: {lengths}")
    unknown = set(frames) - set(MODALITY_KEYS)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; known: {sorted(MODALITY_KEYS)}")
    num_frames = next(iter(lengths.values()), 0)

    example = tf.train.SequenceExample()
    context = example.context.feature
    context[FILENAME].bytes_list.value.append(str(filename).encode())
    context[LABEL_INDEX].int64_list.value.append(int(label_index))
    context[LABEL_STRING].bytes_list.value.append(str(label_string).encode())
    context[FPS].float_list.value.append(float(fps))
    context[NUM_FRAMES].int64_list.value.append(int(num_frames))
    if t_fail is not None:
        context[OOPS_T_FAIL].float_list.value.append(float(t_fail))
    if rel_t is not None:
        context[OOPS_REL_T].float_list.value.append(float(rel_t))
    for name, jpegs in frames.items():
        feature_list = example.feature_lists.feature_list[MODALITY_KEYS[name]]
        for jpeg in jpegs:
            feature_list.feature.add().bytes_list.value.append(jpeg)
    return example


def parse_sequence_example(serialized, modalities=("rgb",)):
    """Parses one record; frames stay JPEG-encoded so only sampled ones get decoded.

    Args:
      serialized: scalar string tensor, a serialized `SequenceExample`.
      modalities: names of the frame modalities to read.

    Returns:
      A dict with `filename` (string), `label` (int64, -1 when unlabeled),
      `label_string` (string), `fps` (float32), `t_fail` and `rel_t` (float32, -1 when
      absent), `num_frames` (int32, counted from the frames actually stored) and, per
      modality, its name (`rgb`, ...) -> string tensor `[T]` of JPEGs.
    """
    context_spec = {
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        LABEL_STRING: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FPS: tf.io.FixedLenFeature([], tf.float32, default_value=25.0),
        OOPS_T_FAIL: tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
        OOPS_REL_T: tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
    }
    sequence_spec = {
        MODALITY_KEYS[name]: tf.io.FixedLenSequenceFeature([], tf.string) for name in modalities
    }
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    parsed = {
        "filename": context[FILENAME],
        "label": context[LABEL_INDEX],
        "label_string": context[LABEL_STRING],
        "fps": context[FPS],
        "t_fail": context[OOPS_T_FAIL],
        "rel_t": context[OOPS_REL_T],
    }
    for name in modalities:
        parsed[name] = sequences[MODALITY_KEYS[name]]
    # Count the frames really present: a truncated record must not promise more.
    parsed["num_frames"] = tf.shape(parsed[modalities[0]])[0]
    return parsed


def shard_path(directory, split, index):
    """The path of shard `index` of `split` inside a dataset `directory`."""
    return os.path.join(directory, split, f"{split}-{index:05d}{SHARD_SUFFIX}")


def list_shards(path, split="train"):
    """Resolves `--data` to a sorted list of shard files.

    Args:
      path: a dataset root (uses `<root>/<split>/`), a directory of shards, a single
        shard, a glob or a comma-separated list of any of these.
      split: the split sub-directory to use when `path` is a dataset root.

    Returns:
      A non-empty sorted list of file paths.

    Raises:
      ValueError: naming `--data` when nothing matches.
    """
    files = []
    for part in str(path).split(","):
        part = part.strip()
        if os.path.isdir(part):
            split_dir = os.path.join(part, split)
            directory = split_dir if split and os.path.isdir(split_dir) else part
            files += glob.glob(os.path.join(directory, f"*{SHARD_SUFFIX}*"))
        else:
            files += [f for f in glob.glob(part) if os.path.isfile(f)]
    files = sorted(set(files))
    if not files:
        raise ValueError(
            f"--data={path}: no TFRecord shards found (looked for *{SHARD_SUFFIX} files"
            f"{f' in the {split!r} split' if split else ''}). Make shards with "
            "`python -m tfvssl.prepare` or `python -m tfvssl.data.synthetic`."
        )
    return files


def write_dataset_info(directory, info):
    """Writes `dataset_info.json` (class names, splits, counts) into a dataset root."""
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, DATASET_INFO + ".tmp")
    with open(tmp, "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(directory, DATASET_INFO))


def read_dataset_info(path):
    """Reads `dataset_info.json` from a dataset root, a split directory or a shard's root.

    Returns:
      The dict, or `{}` when no info file is found.
    """
    path = str(path).split(",")[0]
    candidates = [path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))]
    for directory in candidates:
        info_file = os.path.join(directory, DATASET_INFO)
        if os.path.isfile(info_file):
            with open(info_file) as f:
                return json.load(f)
    return {}


def shard_record_counts(files):
    """The number of records each shard should hold, from the `dataset_info.json` of its
    dataset root (`-1` where no info lists the shard).

    Args:
      files: shard paths (`list_shards`).

    Returns:
      A list of ints, one per file.
    """
    infos = {}
    counts = []
    for path in files:
        split_dir = os.path.dirname(path)
        if split_dir not in infos:
            infos[split_dir] = read_dataset_info(split_dir)
        shards = infos[split_dir].get("splits", {}).get(os.path.basename(split_dir), {}).get("shards", {})
        counts.append(int(shards.get(os.path.basename(path), -1)))
    return counts


def count_videos(files):
    """The number of videos (records) in the shards `files`: each shard's count from its
    dataset's `dataset_info.json` where that lists it, else by reading the shard."""
    total = 0
    for path, count in zip(files, shard_record_counts(files)):
        if count < 0:
            count = int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1))
        total += count
    return total


class PartialShard:
    """One shard, written under a hidden temporary name and renamed into place by `finish`,
    so that `list_shards` never reads a shard a crash cut short.

    Args:
      root: dataset root directory.
      split: split name.
      index: the shard's number in the split.
    """

    def __init__(self, root, split, index):
        self.path = shard_path(root, split, index)
        directory, name = os.path.split(self.path)
        os.makedirs(directory, exist_ok=True)
        # Hidden and not ending in the shard suffix, so no glob of `list_shards` matches it.
        self._temp_path = os.path.join(directory, f".{name}.partial")
        self._writer = tf.io.TFRecordWriter(self._temp_path)
        self.count = 0

    def write(self, example):
        """Appends one video's record (a `tf.train.SequenceExample` or its bytes)."""
        if isinstance(example, tf.train.SequenceExample):
            example = example.SerializeToString()
        self._writer.write(example)
        self.count += 1

    def finish(self):
        """Completes the shard under its final name."""
        self._writer.close()
        os.replace(self._temp_path, self.path)

    def discard(self):
        """Deletes what was written."""
        self._writer.close()
        os.remove(self._temp_path)


class ShardWriter:
    """Writes the records of one split into shards of `shard_size` videos each.

    Shards are `<root>/<split>/<split>-00000.tfrecord`, `-00001`, ... Each is written under
    a hidden temporary name and renamed once complete, so a crash never leaves a partial
    shard that `list_shards` would pick up.

        with ShardWriter(root, "train", shard_size=100) as writer:
            for example in examples:
                writer.write(example)
        info["splits"]["train"] = writer.split_info()

    Leaving the `with` block on an exception discards the shard being written; the
    shards completed before it stay.

    Args:
      root: dataset root directory.
      split: split name, also the sub-directory and the shard name prefix.
      shard_size: videos per shard (the last shard may hold fewer).
    """

    def __init__(self, root, split, shard_size):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.root = root
        self.split = split
        self.shard_size = shard_size
        self.shard_paths = []  # Completed shards, in order.
        self.shard_counts = []  # Videos in each completed shard.
        self._shard = None  # The `PartialShard` being written.

    @property
    def num_videos(self):
        """Videos in the completed shards."""
        return sum(self.shard_counts)

    def write(self, example):
        """Appends one video's record.

        Args:
          example: a `tf.train.SequenceExample` or its serialized bytes.
        """
        if self._shard is None:
            self._shard = PartialShard(self.root, self.split, len(self.shard_paths))
        self._shard.write(example)
        if self._shard.count == self.shard_size:
            self._finish_shard()

    def close(self):
        """Completes the current shard; returns the video count of every shard."""
        if self._shard is not None:
            self._finish_shard()
        return self.shard_counts

    def split_info(self):
        """The split's entry for `dataset_info.json`: video count and shards.

        Returns:
          `{"num_videos": int, "shards": {shard file name: videos in it}}`.
        """
        return {
            "num_videos": self.num_videos,
            "shards": {
                os.path.basename(path): count
                for path, count in zip(self.shard_paths, self.shard_counts)
            },
        }

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None:
            self.close()
        else:
            self._discard_shard()

    def _finish_shard(self):
        self._shard.finish()
        self.shard_paths.append(self._shard.path)
        self.shard_counts.append(self._shard.count)
        self._shard = None

    def _discard_shard(self):
        if self._shard is not None:
            self._shard.discard()
            self._shard = None
