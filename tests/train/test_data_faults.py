"""Faulty data during pretraining: unreadable shards are named and counted, and data that gives
no example stops the run with the reason instead of hanging."""

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver
from conftest import TINY_DPC_FLAGS

from tfvssl import pretrain
from tfvssl.data import records
from tfvssl.train import trainer

FLAGS = flags.FLAGS
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


def tiny_args(data, workdir, *extra):
    return ["--flagfile=configs/dpc.flags", f"--data={data}", f"--workdir={workdir}", *TINY_DPC_FLAGS,
            "--train_steps=2", "--val_split=none", *extra]


def test_data_position_counts_each_cause_once_across_batches_and_pipelines():
    position = trainer.DataPosition(2)
    # (pipeline, epoch, offset, corrupt, too short, undecodable, cut shard, cut byte); batches
    # come in any order within, and each pipeline's totals run since it started.
    first = [[1, 0, 4, 0, 2, 1, -1, -1], [0, 0, 2, 0, 1, 0, -1, -1], [0, 0, 0, 0, 0, 0, -1, -1]]
    second = [[0, 0, 6, 3, 1, 2, 1, 4096], [1, 1, 0, 0, 3, 1, -1, -1]]
    assert position.consume(np.array(first)) == ({"corrupt": 0, "too_short": 3, "undecodable": 1}, None)
    assert position.consume(np.array(second)) == ({"corrupt": 3, "too_short": 1, "undecodable": 2}, (1, 4096))
    assert position.metrics() == {
        "skipped_videos": 7.0, "too_short_videos": 4.0, "undecodable_videos": 3.0, "corrupt_records": 3.0
    }
    assert [position.start(index) for index in (0, 1, 2)] == [(0, 7), (1, 1), (0, 0)]


@pytest.mark.slow
def test_a_truncated_shard_is_named_in_the_logs_and_counted_in_the_metrics(tiny_dataset, tmp_path, caplog):
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    shard = records.list_shards(str(data))[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    readable = sum(1 for _ in tf.data.TFRecordDataset(shard).ignore_errors())
    lost = records.shard_record_counts([shard])[0] - readable
    workdir = str(tmp_path / "run")
    with flagsaver.flagsaver():
        # 16 clips: more than the readable videos, so past the first epoch's cut.
        FLAGS(["pretrain", *tiny_args(data, workdir, "--max_corrupt_fraction=0.9", "--train_steps=4")])
        method, config = pretrain.effective_config()
    with caplog.at_level(logging.WARNING):
        trainer.train(method, config, workdir)

    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert warnings and f"the last in {shard} from byte " in warnings[0]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        counted = [json.loads(line)["corrupt_records"] for line in f]
    assert lost > 0 and counted[-1] in (lost, 2 * lost)  # The second epoch's cut may come in too.


@pytest.mark.slow
def test_skipped_videos_are_logged_and_counted_by_cause(tmp_path, caplog):
    rng = np.random.default_rng(0)
    short = [records.encode_jpeg(np.full((40, 40, 3), 100, np.uint8))] * 5
    broken = [short[0][: len(short[0]) // 2]] * 12
    with records.ShardWriter(str(tmp_path / "data"), "train", 12) as writer:
        for index in range(12):
            good = [records.encode_jpeg(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(12)]
            writer.write(records.make_sequence_example(
                {"rgb": {1: short, 2: broken}.get(index % 3, good)}, filename=f"video{index}"
            ))
    records.write_dataset_info(str(tmp_path / "data"), {"splits": {"train": writer.split_info()}})
    workdir = str(tmp_path / "run")
    with flagsaver.flagsaver():
        # 3 steps: more than an epoch of the 8 usable videos, so at least its 4 short and 4 broken ones.
        FLAGS(["pretrain", *tiny_args(tmp_path / "data", workdir, "--train_steps=3", "--log_every=3")])
        method, config = pretrain.effective_config()
    with caplog.at_level(logging.WARNING):
        trainer.train(method, config, workdir)

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        [metrics] = [json.loads(line) for line in f]
    short, undecodable = metrics["too_short_videos"], metrics["undecodable_videos"]
    assert short >= 4 and undecodable >= 4 and metrics["skipped_videos"] == short + undecodable
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "too short for the recipe" in " ".join(warnings) and "that failed to decode" in " ".join(warnings)
    assert warnings[-1].endswith(f"({short:.0f} too short and {undecodable:.0f} undecodable so far)")


@pytest.mark.slow
def test_videos_too_short_for_the_recipe_stop_the_run_with_the_reason(tmp_path):
    jpeg = records.encode_jpeg(np.full((40, 40, 3), 100, np.uint8))
    with records.ShardWriter(str(tmp_path / "data"), "train", 9) as writer:
        for index in range(9):
            writer.write(records.make_sequence_example({"rgb": [jpeg] * 5}, filename=f"video{index}"))
    records.write_dataset_info(str(tmp_path / "data"), {"splits": {"train": writer.split_info()}})

    result = subprocess.run(
        [sys.executable, "-m", "tfvssl.pretrain", *tiny_args(tmp_path / "data", tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: stopping at step 0: no training example in 18 record(s) (at least a whole epoch): 18 video(s) "
        "shorter than the 8 frames the recipe needs (the longest has 5) (last checkpoint: none)"
    )
