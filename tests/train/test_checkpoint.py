"""Checkpointer: a checkpoint that predates an object listed as optional still restores."""

import pytest
import tensorflow as tf

from tfvssl.train import checkpoint


def test_a_checkpoint_without_an_optional_object_restores_the_rest(tmp_path):
    old = checkpoint.Checkpointer(str(tmp_path), step=tf.Variable(7, dtype=tf.int64))
    old.save(7)

    step, added = tf.Variable(0, dtype=tf.int64), tf.Variable(3, dtype=tf.int64)
    strict = checkpoint.Checkpointer(str(tmp_path), step=step, corrupt_records=added)
    with pytest.raises(RuntimeError, match="no readable checkpoint"):
        strict.restore_latest()

    lenient = checkpoint.Checkpointer(str(tmp_path), optional=("corrupt_records",), step=step, corrupt_records=added)
    assert lenient.restore_latest().endswith("ckpt-7")
    assert int(step.numpy()) == 7 and int(added.numpy()) == 3

    # Once saved with it, the object is restored like any other.
    added.assign(5)
    lenient.save(8)
    added.assign(0)
    lenient.restore_latest()
    assert int(added.numpy()) == 5
