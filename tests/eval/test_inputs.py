"""Tests of the downstream training input (`tfvssl.eval.inputs.training_dataset`)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_FLAGS, configured_method
from tfvssl.data import records
from tfvssl.eval import inputs
from tfvssl.methods import vcop


def _write_shard(path, videos):
    """`videos`: `(label, frames uint8 [T, H, W, 3] or None for undecodable JPEGs)`."""
    with tf.io.TFRecordWriter(path) as writer:
        for index, (label, frames) in enumerate(videos):
            jpegs = [b"not a jpeg"] * 24 if frames is None else [records.encode_jpeg(f) for f in frames]
            example = records.make_sequence_example({"rgb": jpegs}, filename=f"v{index}", label_index=label)
            writer.write(example.SerializeToString())
    return path


@pytest.fixture(scope="module")
def method():
    return configured_method(vcop.VCOP, *TINY_FLAGS["vcop"])


def test_videos_that_fail_to_decode_are_skipped(tmp_path, method):
    frames = np.full((24, 32, 32, 3), 100, np.uint8)
    shard = _write_shard(str(tmp_path / "mixed.tfrecord"), [(0, None), (1, frames), (2, None), (1, frames)])

    clips, labels = next(iter(inputs.training_dataset([shard], method, batch_size=6, seed=0)))

    assert clips.shape == (6, *method.clip_shape())
    assert set(labels.numpy()) == {1}


def test_no_decodable_video_is_an_error_not_a_hang(tmp_path, method):
    shard = _write_shard(str(tmp_path / "corrupt.tfrecord"), [(0, None), (1, None)])

    with pytest.raises(ValueError, match=r"no training clip could be made from any of the vcop videos in .*corrupt"):
        inputs.training_dataset([shard], method, batch_size=2, seed=0)
