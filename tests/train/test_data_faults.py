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
