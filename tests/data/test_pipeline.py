"""Tests of the pipeline's decoding helpers and of its behaviour on faulty data."""

import os
import platform
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_DPC_FLAGS, configured_method

from tfvssl import methods  # Every method's flags, for configured_method.
from tfvssl.data import pipeline, records


def test_decode_frames_decodes_only_the_given_frames_and_window():
    frames = np.stack([np.full([12, 16, 3], 20 * i, np.uint8) for i in range(5)])
    frames[:, 3:7, 4:10] += 7  # Something inside the window to tell it apart.
    jpegs = tf.stack([tf.io.encode_jpeg(f, quality=100) for f in frames])

    decoded = pipeline.decode_frames(jpegs, tf.constant([4, 1]))
    assert decoded.shape == (2, 12, 16, 3)
    np.testing.assert_allclose(decoded.numpy().astype(int), frames[[4, 1]], atol=2)
    assert pipeline.frame_size(jpegs) == (12, 16)

    window = pipeline.decode_frames(jpegs, tf.constant([2]), crop_window=(3, 4, 4, 6))
    whole = pipeline.decode_frames(jpegs, tf.constant([2]))
    np.testing.assert_array_equal(window, whole[:, 3:7, 4:10])
    # One window per frame, all of one size.
    windows = pipeline.decode_frames(jpegs, tf.constant([2, 3]), crop_window=tf.constant([[3, 4, 4, 6], [0, 1, 4, 6]]))
    wholes = pipeline.decode_frames(jpegs, tf.constant([2, 3]))
    np.testing.assert_array_equal(windows, tf.stack([wholes[0, 3:7, 4:10], wholes[1, 0:4, 1:7]]))


@pytest.mark.parametrize("method_name, flags", [
    ("vcop", ["--clip_length=2", "--clip_interval=1", "--tuple_length=2", "--resolution=8", "--frame_size=10,12"]),
    ("pace", ["--clip_length=2", "--resolution=8", "--frame_size=10,12", "--paces=1,2", "--pace_jitter_prob=0"]),
])
def test_videos_of_different_frame_sizes_batch_together(tmp_path, method_name, flags):
    # Resizes planned in the pipeline carry each video's window, whose size follows its
    # frames: the batch pads them, and the training step's batch is the recipe's size.
    sizes = [(16, 20), (30, 24), (12, 40)]
    with records.ShardWriter(str(tmp_path), "train", 9) as writer:
        for index, (height, width) in enumerate(sizes):
            jpeg = records.encode_jpeg(np.full((height, width, 3), 60 * index + 30, np.uint8))
            writer.write(records.make_sequence_example({"rgb": [jpeg] * 6}, filename=f"video{index}"))
    method = configured_method(methods.get_method(method_name), *flags)
    dataset = pipeline.training_dataset(records.list_shards(str(tmp_path), "train"), method, 3, shuffle_buffer=1)
    batch = next(iter(dataset))
    batch.pop("position")
    inputs = method.batch_augment(batch)
    clips = inputs["tuple" if method_name == "vcop" else "clips"].numpy()
    assert clips.shape == (3, 2, 2, 8, 8, 3)
    # Each video keeps its own flat grey through padding and resizing (VCOP scales to [0, 1]).
    values = clips.reshape(3, -1) * (255.0 if method_name == "vcop" else 1.0)
    np.testing.assert_allclose(np.sort(values.mean(axis=1)), [30, 90, 150], atol=1e-3)
    assert np.ptp(values, axis=1).max() < 1e-3


_MMAPPED_MALLOC = """
import ctypes, tensorflow as tf
from tfvssl.data import pipeline

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype, libc.malloc.restype = MallInfo2, ctypes.c_void_p

def mmapped(size=4 << 20):
    before = libc.mallinfo2().hblkhd
    buffer = libc.malloc(size)
    grown = libc.mallinfo2().hblkhd - before
    libc.free(ctypes.c_void_p(buffer))
    return grown >= size

# A tf.distribute iterator makes TensorFlow set the trim threshold (its generator dataset).
next(iter(tf.distribute.OneDeviceStrategy("/cpu:0").experimental_distribute_dataset(tf.data.Dataset.range(2))))
print(mmapped())
pipeline.keep_buffers_off_mmap()
print(mmapped())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_large_buffers_come_from_the_heap_again_after_tensorflows_trim_threshold():
    result = subprocess.run([sys.executable, "-c", _MMAPPED_MALLOC], capture_output=True, text=True, timeout=120)
    # A 4 MiB buffer: a fresh mmap under TensorFlow's setting, heap memory once undone.
    assert result.stdout.split() == ["True", "False"], result.stderr[-2000:]


# ---- Faults: the stream never hangs and counts what it cannot read ---------------------------


def write_dataset(root, frame_counts, videos_per_shard=9):
    """A dataset root of grey videos of 40x40 frames, as many as `frame_counts` gives, in
    that order; returns its shard paths."""
    jpeg = records.encode_jpeg(np.full((40, 40, 3), 100, np.uint8))
    with records.ShardWriter(str(root), "train", videos_per_shard) as writer:
        for index, num_frames in enumerate(frame_counts):
            writer.write(records.make_sequence_example({"rgb": [jpeg] * num_frames}, filename=f"video{index}"))
    records.write_dataset_info(str(root), {"splits": {"train": writer.split_info()}})
    return records.list_shards(str(root))


def record_ends(path):
    """The byte where each record of a shard ends."""
    ends = np.cumsum([len(record.numpy()) + records.RECORD_FRAMING for record in tf.data.TFRecordDataset(path)])
    return [int(end) for end in ends]


def run_until(dataset, predicate=lambda batch: False, timeout=120):
    """Iterates `dataset` in a thread until a batch satisfies `predicate`; returns `(batch,
    error)`. Fails if neither that batch nor an error came within `timeout` seconds (the
    pipeline before the watchdog looped forever on such data)."""
    outcome = {}

    def iterate():
        try:
            for batch in dataset:
                if predicate(batch):
                    outcome["batch"] = batch
                    return
        except tf.errors.OpError as error:
            outcome["error"] = error

    thread = threading.Thread(target=iterate, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the input pipeline gave nothing for {timeout} s"
    return outcome.get("batch"), outcome.get("error")


@pytest.fixture(scope="module")
def dpc():
    return configured_method(methods.get_method("dpc"), *TINY_DPC_FLAGS)  # 8 frames per example


def test_videos_too_short_for_the_recipe_stop_the_stream_with_the_numbers(dpc, tmp_path):
    files = write_dataset(tmp_path, [5] * 9)
    _, error = run_until(pipeline.training_dataset(files, dpc, 4, shuffle_buffer=4))
    assert pipeline.stop_reason(error) == (
        "no training example in 18 record(s) (at least a whole epoch): 18 video(s) shorter than the 8 frames "
        "the recipe needs (the longest has 5)"
    )


def test_a_shard_unreadable_from_its_first_record_stops_the_stream_naming_it(dpc, tmp_path):
    [shard] = write_dataset(tmp_path, [12] * 9)
    with open(shard, "r+b") as f:
        f.seek(3)
        f.write(b"\xff")  # The first record's length: its checksum fails.
    dataset = pipeline.training_dataset([shard], dpc, 4, shuffle_buffer=4, max_corrupt_fraction=1.0)
    _, error = run_until(dataset)
    assert pipeline.stop_reason(error) == (
        f"no training example in 18 record(s) (at least a whole epoch): 18 record(s) unreadable (the last in "
        f"{shard} from byte 0)"
    )


def test_a_run_of_records_without_example_longer_than_allowed_stops_the_stream(dpc, tmp_path):
    files = write_dataset(tmp_path, [5, 5, 5, 5, 12] * 2, videos_per_shard=10)  # Read in this order.

    def stream(max_records):
        return pipeline.training_dataset(
            files, dpc, 1, shuffle_buffer=1, deterministic=True, max_records_without_example=max_records
        )

    # Every fifth record gives an example: a limit of 5 records without one is never reached.
    batch, _ = run_until(stream(5), lambda batch: batch["position"][0, 1] == 3)  # In epoch 3.
    assert batch is not None
    _, error = run_until(stream(4))
    assert pipeline.stop_reason(error) == (
        "no training example in 4 record(s) (--max_records_without_example=4): 4 video(s) shorter than the "
        "8 frames the recipe needs (the longest has 5)"
    )


def test_videos_without_example_are_counted_by_cause_also_at_an_epoch_end(dpc, tmp_path):
    jpeg = records.encode_jpeg(np.full((40, 40, 3), 100, np.uint8))
    videos = {"good": [jpeg] * 12, "short": [jpeg] * 5, "broken": [jpeg[: len(jpeg) // 2]] * 12}
    order = ["good", "short", "broken", "good", "short", "broken"]  # Read in this order.
    with records.ShardWriter(str(tmp_path), "train", len(order)) as writer:
        for index, name in enumerate(order):
            writer.write(records.make_sequence_example({"rgb": videos[name]}, filename=f"{name}{index}"))
    records.write_dataset_info(str(tmp_path), {"splits": {"train": writer.split_info()}})
    dataset = pipeline.training_dataset(records.list_shards(str(tmp_path)), dpc, 1, shuffle_buffer=1,
                                        deterministic=True)

    positions = [batch["position"][0].numpy() for batch in dataset.take(3)]
    # (epoch, offset, corrupt, too short, undecodable) of the good videos: the second epoch's
    # first one also counts the broken video that ended the first epoch.
    assert [tuple(position[1:6]) for position in positions] == [(0, 0, 0, 0, 0), (0, 3, 0, 1, 1), (1, 0, 0, 2, 2)]


def damage(path, how):
    """Truncates a shard to 70% of its bytes, or flips 4 KiB a third of the way in; returns the
    records still readable."""
    ends = record_ends(path)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if how == "truncated":
            start = int(len(data) * 0.7)
            f.truncate(start)
        else:
            start = len(data) // 3
            data[start : start + 4096] = bytes(b ^ 0xFF for b in data[start : start + 4096])
            f.seek(0)
            f.write(data)
    return sum(end <= start for end in ends)


@pytest.mark.parametrize("how", ["truncated", "bit-flipped"])
def test_a_damaged_shard_is_named_and_its_lost_records_counted(dpc, tmp_path, how):
    files = write_dataset(tmp_path, [12] * 18)
    ends = record_ends(files[1])
    readable = damage(files[1], how)
    assert 0 < readable < 9

    # Tolerated: the stream goes on, counting the lost records and naming where they start.
    dataset = pipeline.training_dataset(files, dpc, 4, shuffle_buffer=4, max_corrupt_fraction=0.9)
    batch, _ = run_until(dataset, lambda batch: batch["position"][-1, 3] > 0)
    position = batch["position"][-1].numpy()
    corrupt, (cut_shard, cut_at) = position[3], position[6:]
    # The shuffled stream may bring the next epoch's cut before that batch ends: a total of two.
    assert corrupt in (9 - readable, 2 * (9 - readable)) and (cut_shard, cut_at) == (1, ends[readable - 1])

    # By default the run stops: more than 1% of the data is lost.
    _, error = run_until(pipeline.training_dataset(files, dpc, 4, shuffle_buffer=4))
    assert pipeline.stop_reason(error).startswith(
        f"{9 - readable} of the 18 records of epoch 0 are unreadable (more than --max_corrupt_fraction=0.01); "
        f"the last in {files[1]} from byte {ends[readable - 1]}."
    )


def test_without_record_counts_a_cut_is_found_by_the_shard_size(dpc, tmp_path):
    files = write_dataset(tmp_path, [12] * 9)
    os.remove(tmp_path / records.DATASET_INFO)
    ends = record_ends(files[0])
    readable = damage(files[0], "truncated")
    _, error = run_until(pipeline.training_dataset(files, dpc, 4, shuffle_buffer=4))
    assert pipeline.stop_reason(error).startswith(
        f"at least 1 of the {readable + 1} records of epoch 0 are unreadable"
    )
    assert f"{files[0]} from byte {ends[readable - 1]}." in pipeline.stop_reason(error)
