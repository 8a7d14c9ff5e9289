"""End-to-end tests of `python -m tfvssl.pretrain`: flagfiles, outputs, bad input, resume."""

import json
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
from conftest import TINY_DPC_FLAGS

from tfvssl import pretrain
from tfvssl import workdir as workdirs
from tfvssl.train import trainer

FLAGS = flags.FLAGS
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


def run_in_process(args):
    """Parses `args` like the command line and trains; returns (config, final logs)."""
    with flagsaver.flagsaver():
        FLAGS(["pretrain", *args])
        method, config = pretrain.effective_config()
        pretrain.resolve_data(config)
        workdirs.write_flags(config, config.workdir)
        return config, trainer.train(method, config, config.workdir)


def run_cli(args, timeout=300, **popen):
    return subprocess.run(
        [sys.executable, "-m", "tfvssl.pretrain", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, **popen,
    )


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_dpc_flagfile_with_tiny_sizes_trains_and_writes_the_workdir(tiny_dataset, tmp_path):
    workdir = str(tmp_path / "run")
    config, logs = run_in_process(
        ["--flagfile=configs/dpc.flags", f"--data={tiny_dataset}", f"--workdir={workdir}",
         # 1.25 epochs of the 12 training videos at a global batch of 4: ceil(15 / 4) = 4 steps.
         *TINY_DPC_FLAGS, "--train_epochs=1.25", "--checkpoint_every=2", "--val_every=2"]
    )
    # The flagfile's recipe is kept where not overridden.
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 1e-3, 1e-5)
    assert np.isfinite(logs["loss"])
    assert tf.train.latest_checkpoint(os.path.join(workdir, "ckpt")).endswith("ckpt-4")
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    metrics = read_metrics(workdir)
    train = [m for m in metrics if "train/loss" in m]
    assert [m["step"] for m in train] == [1, 2, 3, 4]
    assert all(0.0 <= m["train/top1"] <= 1.0 and m["lr"] == 1e-3 for m in train)
    assert any("val/loss" in m for m in metrics)
    flags_txt = open(os.path.join(workdir, "flags.txt")).read()
    assert "--pred_step=2" in flags_txt and "--optimizer=adam" in flags_txt


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--method=nope"], "--method=nope"),
        (["--pred_step=4", "--num_blocks=4"], "--pred_step=4"),
        (["--data={empty}"], "--data="),
    ],
)
def test_bad_flags_fail_before_any_model_is_built(args, flag, tmp_path, tiny_dataset):
    empty = tmp_path / "empty"
    empty.mkdir()
    workdir = tmp_path / "run"
    args = [a.format(empty=empty) for a in args]
    if not any(a.startswith("--data") for a in args):
        args.append(f"--data={tiny_dataset}")
    result = run_cli([*args, f"--workdir={workdir}", "--train_steps=1"], timeout=120)
    assert result.returncode != 0
    assert flag in result.stderr
    assert "trainable parameters" not in result.stderr  # No model was built.
    assert not workdir.exists()


def final_weights(workdir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "ckpt")))
    names = [name for name in reader.get_variable_to_shape_map() if name.startswith("model/")]
    return {name: reader.get_tensor(name) for name in names}


@pytest.mark.slow
def test_kill_at_a_random_step_then_rerun_continues_and_matches_an_uninterrupted_run(tiny_dataset, tmp_path):
    common = ["--flagfile=configs/dpc.flags", f"--data={tiny_dataset}", *TINY_DPC_FLAGS,
              "--train_steps=8", "--checkpoint_every=2", "--val_split=none", "--deterministic"]
    reference = tmp_path / "uninterrupted"
    assert run_cli([*common, f"--workdir={reference}"]).returncode == 0

    workdir = tmp_path / "run"
    args = [*common, f"--workdir={workdir}"]
    kill_after = int(np.random.default_rng().integers(3, 7))  # A step past the first checkpoint.
    process = subprocess.Popen(
        [sys.executable, "-m", "tfvssl.pretrain", *args], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    metrics = workdir / "metrics.jsonl"
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and max([0] + [m["step"] for m in read_metrics(workdir)]) >= kill_after:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    ckpt = workdir / "ckpt"
    checkpointed = int(tf.train.latest_checkpoint(str(ckpt)).rsplit("-", 1)[1])
    first_run = [m["step"] for m in read_metrics(workdir) if "train/loss" in m]
    assert 2 <= checkpointed < 8 and first_run[-1] < 8, "the run was not interrupted in the middle"

    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {ckpt}/ckpt-{checkpointed}" in result.stderr
    steps = [m["step"] for m in read_metrics(workdir) if "train/loss" in m]
    # The second run carries on after the checkpoint: nothing before it is redone or lost, and
    # the records of the steps it repeats replace the first run's.
    assert steps == list(range(1, 9))
    expected = final_weights(reference)
    got = final_weights(workdir)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
