"""Choosing the tf.distribute strategy from `--strategy`."""

import json
import os

import tensorflow as tf
from absl import logging


def make_strategy(name="auto"):
    """Returns the strategy for `--strategy=name`.

    `auto`: MirroredStrategy over all GPUs when there are several, otherwise one device.
    `mirrored`: all GPUs, or all logical CPU devices when there is no GPU (tests split the
    CPU in two). `multi_worker`: MultiWorkerMirroredStrategy configured from `TF_CONFIG`.
    `tpu`: the TPU found by the default cluster resolver.
    """
    # Multi-worker and TPU strategies must be created before anything initialises the
    # runtime, listing the devices included.
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker: set TF_CONFIG (see the README) on every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0])
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(f"--strategy={name}: unknown strategy")


def is_chief(strategy):
    """Whether this process writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    # Without an explicit chief, worker 0 is the chief.
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


def describe(strategy):
    """One line naming the strategy and its replicas, for the log."""
    logging.info(
        "strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync
    )


def num_workers(strategy):
    """Number of worker processes (= input pipelines) of `strategy`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs) or 1
