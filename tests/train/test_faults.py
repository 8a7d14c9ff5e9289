"""Faults during training: a corrupt checkpoint, a loss that turns non-finite."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver
from conftest import TINY_DPC_FLAGS

from tfvssl import pretrain
from tfvssl.train import trainer

FLAGS = flags.FLAGS


def configure(args):
    with flagsaver.flagsaver():
        FLAGS(["pretrain", *args])
        method, config = pretrain.effective_config()
    return method, config


def tiny_args(dataset, workdir, steps):
    return ["--flagfile=configs/dpc.flags", f"--data={dataset}", f"--workdir={workdir}", *TINY_DPC_FLAGS,
            f"--train_steps={steps}", "--checkpoint_every=2", "--val_split=none"]


def checkpoint_steps(workdir):
    state = tf.train.get_checkpoint_state(os.path.join(workdir, "ckpt"))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


@pytest.mark.slow
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tiny_dataset, tmp_path, caplog):
    workdir = str(tmp_path / "run")
    trainer.train(*configure(tiny_args(tiny_dataset, workdir, 4)), workdir)
    assert checkpoint_steps(workdir) == [2, 4]
    newest = tf.train.latest_checkpoint(os.path.join(workdir, "ckpt"))
    data_file = newest + ".data-00000-of-00001"
    size = os.path.getsize(data_file)
    with open(data_file, "r+b") as f:
        f.truncate(size // 2)  # A copy cut short, a disk that lost the tail.

    with caplog.at_level(logging.WARNING):
        trainer.train(*configure(tiny_args(tiny_dataset, workdir, 6)), workdir)
    assert any("ckpt-4 is unreadable" in r.getMessage() for r in caplog.records)
    assert any("resumed from" in r.getMessage() and "ckpt-2" in r.getMessage() for r in caplog.records)
    assert checkpoint_steps(workdir)[-1] == 6


@pytest.mark.slow
def test_non_finite_losses_are_skipped_then_stop_the_run_keeping_the_last_good_checkpoint(
    tiny_dataset, tmp_path, caplog
):
    workdir = str(tmp_path / "run")
    trainer.train(*configure(tiny_args(tiny_dataset, workdir, 2)), workdir)
    good = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "ckpt")))

    method, config = configure(tiny_args(tiny_dataset, workdir, 10) + ["--max_nonfinite_steps=3"])
    clean_augment = method.batch_augment
    method.batch_augment = lambda batch: {
        name: value * np.nan for name, value in clean_augment(batch).items()
    }
    with caplog.at_level(logging.WARNING), pytest.raises(trainer.NonFiniteLossError) as error:
        trainer.train(method, config, workdir)

    assert "stopping at step 5: 3 steps had a non-finite loss" in str(error.value)
    assert "ckpt-2" in str(error.value)
    warned = [r.getMessage() for r in caplog.records if "non-finite loss" in r.getMessage()]
    assert [message.split(":")[0] for message in warned] == ["step 3", "step 4", "step 5"]
    # Nothing was saved after the bad steps, and the good checkpoint is intact.
    assert checkpoint_steps(workdir) == [2]
    again = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "ckpt")))
    for name in good.get_variable_to_shape_map():
        np.testing.assert_array_equal(again.get_tensor(name), good.get_tensor(name))
