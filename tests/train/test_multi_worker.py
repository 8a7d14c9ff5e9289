"""Two worker processes on loopback with TF_CONFIG: MultiWorkerMirroredStrategy end to end."""

import json
import os
import re
import socket
import subprocess
import sys

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


def test_two_workers_train_in_step_and_only_the_chief_writes(tiny_dataset, tmp_path):
    workdir = tmp_path / "run"
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    args = [sys.executable, "-m", "tfvssl.pretrain", "--flagfile=configs/dpc.flags",
            f"--data={tiny_dataset}", f"--workdir={workdir}", *TINY_DPC_FLAGS,
            "--strategy=multi_worker", "--train_steps=3", "--checkpoint_every=3", "--val_split=none"]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True))
    logs = [process.communicate(timeout=400)[1] for process in processes]
    for index, (process, log) in enumerate(zip(processes, logs)):
        assert process.returncode == 0, f"worker {index}:\n{log[-3000:]}"
        assert re.search(r"strategy \w+ with 2 replica\(s\)", log), log[-2000:]

    fingerprints = [re.findall(r"step 3 weights fingerprint (\S+)", log) for log in logs]
    assert fingerprints[0] and fingerprints[0] == fingerprints[1]  # Same weights on both.

    # One writer: one flags.txt, each step logged once, checkpoints only from the chief.
    assert sorted(os.listdir(workdir)) == ["ckpt", "flags.txt", "metrics.jsonl", "tensorboard"]
    steps = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")]
    assert steps == [1, 2, 3]
    assert len(os.listdir(workdir / "tensorboard")) == 1
    assert "saved" in logs[0] and "saved" not in logs[1]
