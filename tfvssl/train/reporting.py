"""What a run reports: TensorBoard scalars, `metrics.jsonl` and a progress line with ETA."""

import datetime
import json
import os
import time

import tensorflow as tf
from absl import logging

# What a `MetricWriter` writes into its directory (a workdir, an evaluation's output).
TENSORBOARD_DIR = "tensorboard"
METRICS_FILE = "metrics.jsonl"


class MetricWriter:
    """Writes each record to TensorBoard and as one JSON line; only the chief writes.

    A run resumed at `start_step` continues `metrics.jsonl` from there: the records of
    later steps, written before the interruption by the steps it repeats, are dropped, so
    each step is in the file once.
    """

    def __init__(self, workdir, enabled=True, start_step=0):
        self.enabled = enabled
        if enabled:
            self.summary = tf.summary.create_file_writer(os.path.join(workdir, TENSORBOARD_DIR))
            path = os.path.join(workdir, METRICS_FILE)
            truncate_metrics(path, start_step)
            self.jsonl = open(path, "a")

    def write(self, step, scalars):
        if not self.enabled:
            return
        with self.summary.as_default(step=int(step)):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        self.summary.flush()
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({name: float(value) for name, value in scalars.items()})
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def close(self):
        if self.enabled:
            self.summary.close()
            self.jsonl.close()


def truncate_metrics(path, step):
    """Keeps the records of `metrics.jsonl` up to `step` (atomically); a line cut short by
    a crash, which does not parse, is dropped too."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line.rstrip("\n") + "\n")
            except (ValueError, KeyError, TypeError):
                continue
    with open(path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)


class Clock:
    """Measures throughput and the ETA, ignoring the first (tracing and compiling) step."""

    def __init__(self, total_steps, start_step):
        self.total_steps = total_steps
        self.start_step = start_step
        self.warm_step = None
        self.warm_time = None
        self.interval_step = start_step
        self.interval_time = time.time()

    def tick(self, step):
        """Call after each step; the first call marks the end of compilation."""
        if self.warm_step is None:
            self.warm_step, self.warm_time = step, time.time()
            self.interval_step, self.interval_time = step, self.warm_time

    def interval_rate(self, step):
        """Steps per second since the previous call, then restarts the interval."""
        now = time.time()
        steps = step - self.interval_step
        rate = steps / (now - self.interval_time) if steps > 0 and now > self.interval_time else None
        self.interval_step, self.interval_time = step, now
        return rate

    def eta(self, step):
        """Remaining time as `H:MM:SS`, or `?` before a step after compilation finished."""
        if self.warm_step is None or step <= self.warm_step:
            return "?"
        rate = (step - self.warm_step) / (time.time() - self.warm_time)
        remaining = (self.total_steps - step) / rate
        return str(datetime.timedelta(seconds=int(remaining)))


def progress_line(step, total_steps, scalars, clips_per_second, eta):
    """`step 120/1000 (12%) | loss 3.214 | top1 0.250 | 12.3 clips/s | ETA 0:12:34`."""
    parts = [f"step {step}/{total_steps} ({100 * step / total_steps:.0f}%)"]
    for name, value in scalars.items():
        if name.startswith("train/"):
            parts.append(f"{name[6:]} {value:.4g}")
    if "lr" in scalars:
        parts.append(f"lr {scalars['lr']:.3g}")
    if clips_per_second:
        parts.append(f"{clips_per_second:.1f} clips/s")
    parts.append(f"ETA {eta}")
    line = " | ".join(parts)
    logging.info(line)
    return line
