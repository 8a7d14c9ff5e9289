"""What the benchmarks that pretrain share: runs of the project's command-line tools, their
flag and metrics files, and the mean and spread over seeds."""

import importlib
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
from absl import flags, logging
from absl.testing import flagsaver

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
RESULTS = os.path.join(REPO, "benchmarks", "results")
FLAGS = flags.FLAGS


def directories(name, workdir, output_dir, quick):
    """`(workdir, output_dir)` of benchmark `name`, absolute, the output directory created; the
    process then works in the repository root (the flagfiles name each other relative to it).

    By default workdirs/<name> and benchmarks/results; quick runs keep apart from real ones
    (workdirs/<name>_quick, their results inside it), since a complete run found in a workdir is
    reused, not retrained.
    """
    workdir = os.path.abspath(workdir or os.path.join(REPO, "workdirs", f"{name}_quick" if quick else name))
    output_dir = os.path.abspath(output_dir or (os.path.join(workdir, "results") if quick else RESULTS))
    os.chdir(REPO)
    os.makedirs(output_dir, exist_ok=True)
    return workdir, output_dir


def run_module(module, args):
    """Runs `python -m tfvssl.<module> <args>` in this process (TensorFlow starts once), on the
    flag values of a fresh command line; raises when it fails."""
    main = importlib.import_module(f"tfvssl.{module}").main
    logging.info("python -m tfvssl.%s %s", module, " ".join(args))
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS([module, *args])
        status = main([module])
    keras.backend.clear_session()  # The next run starts without this one's models, as a new process.
    if status:
        raise RuntimeError(f"python -m tfvssl.{module} {' '.join(args)} failed (exit {status})")


def read_flags(path):
    """`--name=value` lines of a flagfile (`flags.txt`) as a dict of strings."""
    with open(path) as f:
        return dict(line.strip()[2:].split("=", 1) for line in f if line.startswith("--") and "=" in line)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pretrain(flagfile, seed, workdir, extra):
    """Pretrains one run of `flagfile` (or finds it complete) with a checkpoint at every
    quarter of it.

    Returns:
      `(train_steps, minutes of pretraining, the pretext accuracy of the last logged steps)`.
    """
    flagfile = os.path.join(REPO, flagfile)
    steps = int(read_flags(flagfile)["train_steps"])
    for arg in extra:
        if arg.startswith("--train_steps="):
            steps = int(arg.split("=", 1)[1])
    timing_path = os.path.join(workdir, "bench_timing.json")
    if not os.path.isfile(timing_path):
        os.makedirs(workdir, exist_ok=True)
        start = time.time()
        # In a process of its own: its flags.txt then names only pretraining flags, so that the
        # workdir serves the command-line tools (this process also defines the evaluations' flags).
        subprocess.run([
            sys.executable, "-m", "tfvssl.pretrain", f"--flagfile={flagfile}", f"--workdir={workdir}",
            f"--seed={seed}", *extra, f"--checkpoint_every={max(1, steps // 4)}", "--keep_checkpoints=8",
        ], check=True)
        with open(timing_path, "w") as f:
            json.dump({"minutes": (time.time() - start) / 60}, f)
    with open(timing_path) as f:
        minutes = json.load(f)["minutes"]
    # The pretext task's top-1: `accuracy` or `top1` in the methods' logs.
    logged = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r]
    final = logged[-1] if logged else {}
    return steps, minutes, final.get("train/accuracy", final.get("train/top1"))


def mean_std(values):
    """`{"mean", "std"}` of the values that are not None (None if there are none)."""
    values = np.asarray([v for v in values if v is not None], np.float64)
    if not len(values):
        return None
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
