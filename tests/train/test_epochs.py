"""Budgets in epochs: `--train_epochs`, `--lr_decay_at_epochs`, `--val_every_epochs` and
`--val_videos` become steps and batches of the global batch, on any number of replicas."""

import math
import os
import shutil

import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from tfvssl import methods  # Every method's flags, for the flagfiles.
from tfvssl.data import records
from tfvssl.train import train_flags
from tfvssl.train import optim, trainer


TRAIN_VIDEOS = 12  # tiny_dataset: 3 classes x 4 training videos


def resolved(*args):
    with flagsaver.flagsaver():
        flags.FLAGS(["test", "--method=dpc", *args])
        return train_flags.resolve_config(flags.FLAGS, methods.dpc.DPC)


def test_count_videos_reads_dataset_info_or_the_shards(tiny_dataset, tmp_path):
    files = records.list_shards(tiny_dataset, "train")
    assert len(files) > 1 and records.count_videos(files) == TRAIN_VIDEOS
    # The same shards without their dataset_info.json are counted record by record.
    copies = [shutil.copy(path, tmp_path) for path in files]
    assert records.count_videos(copies) == TRAIN_VIDEOS


@pytest.mark.parametrize("replicas", [1, 2])
def test_epochs_become_steps_of_the_global_batch(tiny_dataset, replicas):
    config = resolved(
        "--per_replica_batch_size=4", "--train_epochs=2.5", "--lr_schedule=steps",
        "--lr_decay_at_epochs=1,2", "--val_every_epochs=0.5", "--val_videos=6",
    )
    assert config.train_steps is None and config.lr_decay_steps == []  # Not the recipe's steps.
    devices = ["/cpu:0", "/cpu:1"][:replicas]
    strategy = tf.distribute.MirroredStrategy(devices) if replicas > 1 else tf.distribute.OneDeviceStrategy(devices[0])
    global_batch = trainer._global_batch_size(config, strategy)
    assert global_batch == 4 * replicas
    trainer.resolve_epochs(config, records.list_shards(tiny_dataset, "train"), global_batch)
    assert config.train_steps == math.ceil(2.5 * TRAIN_VIDEOS / global_batch)  # 8 on one replica, 4 on two
    assert config.lr_decay_steps == [math.ceil(e * TRAIN_VIDEOS / global_batch) for e in (1, 2)]
    assert config.val_every == math.ceil(0.5 * TRAIN_VIDEOS / global_batch)
    assert config.val_batches == math.ceil(6 / global_batch)


def test_a_length_in_steps_overrides_one_in_epochs():
    config = resolved("--train_epochs=1", "--train_steps=10", "--val_videos=6", "--val_batches=2")
    assert (config.train_steps, config.train_epochs, config.val_batches, config.val_videos) == (10, None, 2, None)
    with pytest.raises(ValueError, match="--lr_decay_at_epochs=1,x: needs numbers"):
        resolved("--lr_decay_at_epochs=1,x")


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER_CONFIGS = (
    "dpc", "dpc_4pred4", "memdpc", "memdpc_flow", "tcp_flow", "tcp_rgb", "tcp_diff", "pace", "pace_c3d",
    "pace_r3d", "pace_s3dg", "vcop", "vcop_c3d", "vcop_r3d",
)
# The authors' validation during DPC and MemDPC pretraining: 30% of UCF101 split 1's 3,783
# test videos.
AUTHORS_VALIDATION_VIDEOS = 1135


def from_flagfile(name, *args):
    with flagsaver.flagsaver():
        flags.FLAGS(["test", f"--flagfile=configs/{name}.flags", *args])
        return train_flags.resolve_config(flags.FLAGS, methods.get_method(flags.FLAGS.method))


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_give_their_budget_in_epochs(name, monkeypatch):
    monkeypatch.chdir(REPO)  # Nested flagfiles are relative to the repository.
    config = from_flagfile(name)
    assert config.train_epochs and config.train_steps is None
    if config.lr_schedule == "steps":
        assert config.lr_decay_at_epochs and not config.lr_decay_steps
    if config.lr_schedule == "plateau":
        # Validated on the authors' sample every few epochs, whatever the number of devices.
        assert config.val_videos >= AUTHORS_VALIDATION_VIDEOS and config.val_every_epochs


def test_memdpc_code_schedule_drops_the_lr_once_at_epoch_300_of_500(monkeypatch):
    monkeypatch.chdir(REPO)
    config = from_flagfile("memdpc", "--lr_schedule=steps", "--lr_decay_at_epochs=300")
    monkeypatch.setattr(records, "count_videos", lambda files: 9537)  # UCF101 split 1
    trainer.resolve_epochs(config, ["train-00000.tfrecord"], global_batch=2 * 16)
    assert config.train_steps == math.ceil(500 * 9537 / 32)
    drop = math.ceil(300 * 9537 / 32)
    schedule = optim.LearningRateSchedule(config, optimizer=None)
    assert [schedule.value(step) for step in (0, drop - 1, drop, config.train_steps - 1)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4]
    )
