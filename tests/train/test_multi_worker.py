"""Two worker processes on loopback with TF_CONFIG: MultiWorkerMirroredStrategy end to end,
including a preempted worker and the restart of the job."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from conftest import TINY_DPC_FLAGS

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(args):
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(task))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tfvssl.pretrain", *args], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        ))
    return processes


@pytest.mark.slow
def test_two_workers_agree_only_the_chief_writes_and_a_preempted_job_resumes(tiny_dataset, tmp_path):
    workdir = tmp_path / "run"
    args = ["--flagfile=configs/dpc.flags", f"--data={tiny_dataset}", f"--workdir={workdir}",
            *TINY_DPC_FLAGS, "--strategy=multi_worker", "--train_steps=6", "--checkpoint_every=2",
            "--val_split=none"]

    # Preempt worker 1 once the chief has a checkpoint; the job stops (worker 0 fails or is
    # stopped by the cluster manager, as here after a short grace period).
    chief, other = start_workers(args)
    deadline = time.time() + 300
    while time.time() < deadline and not tf.train.latest_checkpoint(str(workdir / "ckpt")):
        time.sleep(0.2)
    other.kill()
    other.communicate()
    try:
        chief.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        chief.kill()
        chief.communicate()
    checkpointed = int(tf.train.latest_checkpoint(str(workdir / "ckpt")).rsplit("-", 1)[1])
    assert checkpointed < 6, "the job finished before the preemption"

    # The restarted job resumes from the chief's last checkpoint and finishes in step.
    processes = start_workers(args)
    logs = [process.communicate(timeout=400)[1] for process in processes]
    for index, (process, log) in enumerate(zip(processes, logs)):
        assert process.returncode == 0, "\n".join(f"worker {i}:\n{text[-3000:]}" for i, text in enumerate(logs))
        assert re.search(r"strategy \w+ with 2 replica\(s\)", log)
        assert f"ckpt-{checkpointed} at step {checkpointed}" in log
    fingerprints = [re.findall(r"step 6 weights fingerprint (\S+)", log) for log in logs]
    assert fingerprints[0] and fingerprints[0] == fingerprints[1]  # Same weights on both.

    # One writer: one flags.txt, checkpoints and summaries only from the chief.
    assert sorted(os.listdir(workdir)) == ["ckpt", "flags.txt", "metrics.jsonl", "tensorboard"]
    steps = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")]
    assert steps[-(6 - checkpointed):] == list(range(checkpointed + 1, 7))
    assert "saved" in logs[0] and "saved" not in logs[1]
