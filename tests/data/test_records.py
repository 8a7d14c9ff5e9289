"""Tests of the record format, shard listing and the shard writer."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfvssl.data import records


def _frames(num_frames, channels=3, size=8):
    """Frames whose pixels all equal 20 * frame index, so each is recognisable after JPEG."""
    return [np.full((size, size, channels), 20 * i, np.uint8) for i in range(num_frames)]


def _jpegs(num_frames, channels=3):
    return [records.encode_jpeg(frame) for frame in _frames(num_frames, channels)]


def _example(filename, **kwargs):
    return records.make_sequence_example({"rgb": _jpegs(2)}, filename=filename, **kwargs)


def _read_filenames(path):
    return [
        records.parse_sequence_example(serialized)["filename"].numpy().decode()
        for serialized in tf.data.TFRecordDataset(path)
    ]


# ---- make_sequence_example / parse_sequence_example ------------------------------------------


def test_round_trip_keeps_metadata_and_frames():
    example = records.make_sequence_example(
        {"rgb": _jpegs(3)}, filename="a/b.avi", label_index=4, label_string="jump", fps=12.5,
        t_fail=1.25, rel_t=0.5,
    )
    parsed = records.parse_sequence_example(example.SerializeToString())

    assert parsed["filename"].numpy() == b"a/b.avi"
    assert parsed["label"].numpy() == 4 and parsed["label"].dtype == tf.int64
    assert parsed["label_string"].numpy() == b"jump"
    assert parsed["fps"].numpy() == pytest.approx(12.5)
    assert parsed["t_fail"].numpy() == pytest.approx(1.25)
    assert parsed["rel_t"].numpy() == pytest.approx(0.5)
    assert parsed["num_frames"].numpy() == 3
    decoded = [tf.io.decode_jpeg(jpeg).numpy() for jpeg in parsed["rgb"]]
    np.testing.assert_allclose([frame.mean() for frame in decoded], [0, 20, 40], atol=2)
    assert example.context.feature[records.NUM_FRAMES].int64_list.value == [3]


def test_unlabeled_record_without_oops_times_gets_defaults():
    example = records.make_sequence_example({"rgb": _jpegs(1)}, filename="x.mp4")
    parsed = records.parse_sequence_example(example.SerializeToString())

    assert parsed["label"].numpy() == -1
    assert parsed["label_string"].numpy() == b""
    assert parsed["t_fail"].numpy() == -1.0
    assert parsed["rel_t"].numpy() == -1.0
    assert records.OOPS_T_FAIL not in example.context.feature


def test_flow_modality_round_trip_beside_rgb():
    example = records.make_sequence_example(
        {"rgb": _jpegs(2), "flow": _jpegs(2)}, filename="v"
    )
    parsed = records.parse_sequence_example(example.SerializeToString(), modalities=("flow", "rgb"))

    assert parsed["flow"].shape == (2,) and parsed["rgb"].shape == (2,)
    assert tf.io.decode_jpeg(parsed["flow"][1]).numpy().mean() == pytest.approx(20, abs=2)
    only_rgb = records.parse_sequence_example(example.SerializeToString())
    assert "flow" not in only_rgb


def test_num_frames_counts_stored_frames_not_the_context():
    example = records.make_sequence_example({"rgb": _jpegs(4)}, filename="v")
    # A record whose context promises more frames than it holds (e.g. written by hand).
    example.context.feature[records.NUM_FRAMES].int64_list.value[0] = 100

    parsed = records.parse_sequence_example(example.SerializeToString())

    assert parsed["num_frames"].numpy() == 4


def test_parse_inside_a_dataset_map():
    serialized = [_example(f"v{i}", label_index=i).SerializeToString() for i in range(3)]
    dataset = tf.data.Dataset.from_tensor_slices(serialized).map(records.parse_sequence_example)

    assert [int(item["label"]) for item in dataset] == [0, 1, 2]


def test_make_sequence_example_rejects_bad_modalities():
    with pytest.raises(ValueError, match="different frame counts"):
        records.make_sequence_example({"rgb": _jpegs(2), "flow": _jpegs(3)}, filename="v")
    with pytest.raises(ValueError, match="unknown modalities \\['depth'\\]"):
        records.make_sequence_example({"depth": _jpegs(2)}, filename="v")


# ---- list_shards / read_dataset_info ----------------------------------------------------------


@pytest.fixture
def dataset_root(tmp_path):
    """A dataset root with two train shards, one test shard and a dataset_info."""
    for split, count in (("train", 2), ("test", 1)):
        for index in range(count):
            path = records.shard_path(str(tmp_path), split, index)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tf.io.TFRecordWriter(path) as writer:
                writer.write(_example(f"{split}{index}").SerializeToString())
    records.write_dataset_info(str(tmp_path), {"class_names": ["a", "b"]})
    return str(tmp_path)


def test_shard_path_layout():
    assert records.shard_path("/d", "train", 7) == "/d/train/train-00007.tfrecord"


def test_list_shards_of_a_root_uses_the_split(dataset_root):
    train = records.list_shards(dataset_root)
    test = records.list_shards(dataset_root, split="test")

    assert [os.path.basename(f) for f in train] == ["train-00000.tfrecord", "train-00001.tfrecord"]
    assert [os.path.basename(f) for f in test] == ["test-00000.tfrecord"]


def test_list_shards_of_a_split_directory_glob_and_comma_list(dataset_root):
    train_dir = os.path.join(dataset_root, "train")
    train = records.shard_path(dataset_root, "train", 0)
    test = records.shard_path(dataset_root, "test", 0)

    assert len(records.list_shards(train_dir)) == 2
    assert records.list_shards(os.path.join(dataset_root, "*", "*-00000.tfrecord")) == sorted([train, test])
    assert records.list_shards(f"{test}, {train_dir}") == sorted(
        [test, train, records.shard_path(dataset_root, "train", 1)]
    )
    assert records.list_shards(train) == [train]


def test_list_shards_error_names_the_flag(tmp_path):
    with pytest.raises(ValueError, match=f"--data={tmp_path}: no TFRecord shards found") as error:
        records.list_shards(str(tmp_path))
    assert "'train' split" in str(error.value)


def test_read_dataset_info_from_root_split_dir_and_shard(dataset_root, tmp_path_factory):
    shard = records.shard_path(dataset_root, "train", 1)

    for path in (dataset_root, os.path.join(dataset_root, "train"), shard, f"{shard},other"):
        assert records.read_dataset_info(path) == {"class_names": ["a", "b"]}
    assert records.read_dataset_info(str(tmp_path_factory.mktemp("empty"))) == {}


# ---- ShardWriter ------------------------------------------------------------------------------


def test_shard_writer_splits_into_shards_in_order(tmp_path):
    with records.ShardWriter(str(tmp_path), "train", shard_size=2) as writer:
        for index in range(5):
            writer.write(_example(f"v{index}"))

    assert writer.shard_counts == [2, 2, 1]
    assert writer.num_videos == 5
    assert writer.shard_paths == [records.shard_path(str(tmp_path), "train", i) for i in range(3)]
    assert [_read_filenames(path) for path in writer.shard_paths] == [["v0", "v1"], ["v2", "v3"], ["v4"]]
    assert writer.split_info() == {
        "num_videos": 5,
        "shards": {"train-00000.tfrecord": 2, "train-00001.tfrecord": 2, "train-00002.tfrecord": 1},
    }
    assert sorted(os.listdir(tmp_path / "train")) == [os.path.basename(p) for p in writer.shard_paths]
    assert records.list_shards(str(tmp_path)) == writer.shard_paths


def test_shard_writer_accepts_serialized_records_and_close_returns_counts(tmp_path):
    writer = records.ShardWriter(str(tmp_path), "test", shard_size=10)
    writer.write(_example("a").SerializeToString())
    writer.write(_example("b"))

    assert writer.close() == [2]
    assert _read_filenames(writer.shard_paths[0]) == ["a", "b"]


def test_shard_writer_writes_nothing_for_no_videos(tmp_path):
    with records.ShardWriter(str(tmp_path), "train", shard_size=3) as writer:
        pass

    assert writer.shard_counts == [] and writer.split_info() == {"num_videos": 0, "shards": {}}
    assert not os.path.exists(tmp_path / "train")


def test_unfinished_shard_stays_invisible_until_complete(tmp_path):
    writer = records.ShardWriter(str(tmp_path), "train", shard_size=3)
    writer.write(_example("a"))

    assert os.listdir(tmp_path / "train") != []  # The temporary file exists...
    with pytest.raises(ValueError, match="no TFRecord shards"):  # ...but is no shard.
        records.list_shards(str(tmp_path))
    writer.close()
    assert records.list_shards(str(tmp_path)) == [records.shard_path(str(tmp_path), "train", 0)]


def test_crash_keeps_completed_shards_and_drops_the_partial_one(tmp_path):
    with pytest.raises(RuntimeError, match="converter failed"):
        with records.ShardWriter(str(tmp_path), "train", shard_size=2) as writer:
            for index in range(3):
                writer.write(_example(f"v{index}"))
            raise RuntimeError("converter failed")

    assert os.listdir(tmp_path / "train") == ["train-00000.tfrecord"]
    assert _read_filenames(writer.shard_paths[0]) == ["v0", "v1"]
    assert writer.shard_counts == [2]


def test_shard_writer_rejects_empty_shards(tmp_path):
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        records.ShardWriter(str(tmp_path), "train", shard_size=0)
