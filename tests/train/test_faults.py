"""Faults during training: a corrupt checkpoint, a loss that turns non-finite, a workdir of
another run, a stop signal."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver
from conftest import TINY_DPC_FLAGS, TINY_FLAGS

from tfvssl import pretrain
from tfvssl.methods import dpc
from tfvssl.train import reporting, trainer

FLAGS = flags.FLAGS
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


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


def pretrain_cli(args):
    """Runs `python -m tfvssl.pretrain <args>` in this process; returns its exit status."""
    with flagsaver.flagsaver():
        FLAGS(["pretrain", *args])
        return pretrain.main(["pretrain"])


def logged_steps(workdir):
    """The steps of the training records of `metrics.jsonl` (a line still being written
    ends the list)."""
    steps = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                break
            if "train/loss" in record:
                steps.append(record["step"])
    return steps


def snapshot(workdir):
    """`flags.txt` and every file of `ckpt/` -> its bytes."""
    names = ["flags.txt", *(f"ckpt/{name}" for name in os.listdir(os.path.join(workdir, "ckpt")))]
    contents = {}
    for name in names:
        with open(os.path.join(workdir, name), "rb") as f:
            contents[name] = f.read()
    return contents


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
    # Steps 3 and 4 ran twice; metrics.jsonl keeps the resumed run's records of them.
    assert logged_steps(workdir) == [1, 2, 3, 4, 5, 6]


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


def test_metrics_of_steps_after_the_resumed_one_are_dropped(tmp_path):
    lines = [json.dumps({"step": step, "train/loss": 1.0}) for step in (1, 2, 2, 3, 4)]
    # The last line was cut short by a crash.
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 5, "tra')
    writer = reporting.MetricWriter(str(tmp_path), start_step=2)
    writer.write(3, {"train/loss": 0.5})
    writer.close()
    assert logged_steps(str(tmp_path)) == [1, 2, 2, 3]


@pytest.mark.slow
def test_a_workdir_of_another_run_is_refused_before_anything_is_touched(tiny_dataset, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert pretrain_cli(tiny_args(tiny_dataset, workdir, 1)) == 0
    before = snapshot(workdir)
    capsys.readouterr()

    other_method = ["--flagfile=configs/vcop.flags", f"--data={tiny_dataset}", f"--workdir={workdir}",
                    *TINY_FLAGS["vcop"]]
    assert pretrain_cli(other_method) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error
    assert error.startswith(f"error: --workdir={workdir} holds a run with --method=dpc, not --method=vcop")
    assert "--overwrite" in error
    assert snapshot(workdir) == before

    assert pretrain_cli(tiny_args(tiny_dataset, workdir, 2) + ["--resolution=48"]) == 2
    assert "with --resolution=32, not --resolution=48" in capsys.readouterr().err
    assert snapshot(workdir) == before

    # --overwrite cannot delete the checkpoints its own --init_from reads.
    assert pretrain_cli(other_method + ["--overwrite", f"--init_from={workdir}/ckpt"]) == 2
    assert "--overwrite: it deletes the checkpoints" in capsys.readouterr().err
    assert snapshot(workdir) == before


def test_overwrite_deletes_the_earlier_run_but_not_its_exports(tmp_path):
    for name in ("ckpt/ckpt-1.index", "tensorboard/events", "plots/loss.png", "export/dpc/1/saved_model.pb"):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_text("")
    for name in ("flags.txt", "metrics.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    pretrain.clear_workdir(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["export", "notes.txt"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_at_the_step_it_stopped_and_exits_cleanly(tiny_dataset, tmp_path):
    workdir = str(tmp_path / "run")
    args = tiny_args(tiny_dataset, workdir, 1000)
    args[args.index("--checkpoint_every=2")] = "--checkpoint_every=500"
    process = subprocess.Popen(
        [sys.executable, "-m", "tfvssl.pretrain", *args], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(os.path.join(workdir, "metrics.jsonl")) and logged_steps(workdir):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    stopped = max(logged_steps(workdir))
    assert 1 <= stopped < 500
    assert checkpoint_steps(workdir) == [stopped]
    assert f"SIGTERM: stopped at step {stopped} with {workdir}/ckpt/ckpt-{stopped}" in stderr


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_at_the_next_step_boundary_and_exits_130(tiny_dataset, tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    stage = dpc.DPC.curriculum_stage

    def press_ctrl_c_during_step_2(self, step):
        if step == 1:  # Called as step 2 begins.
            os.kill(os.getpid(), signal.SIGINT)
        return stage(self, step)

    monkeypatch.setattr(dpc.DPC, "curriculum_stage", press_ctrl_c_during_step_2)
    handler = signal.getsignal(signal.SIGINT)
    assert pretrain_cli(tiny_args(tiny_dataset, workdir, 10)) == 130
    assert checkpoint_steps(workdir) == [2]
    assert logged_steps(workdir) == [1, 2]
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C acts as before once the run is over.
