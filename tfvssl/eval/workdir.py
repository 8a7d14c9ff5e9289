"""A pretraining run rebuilt from its workdir: the method from `flags.txt`, the encoder from
the newest checkpoint.

The evaluation always runs the encoder with BatchNorm on its moving statistics, whatever
pretraining did: DPC pretrains with batch statistics in inference too (its
`--batch_stats_bn`), yet its layers keep moving averages, which the exported encoder uses.
"""

import copy
import logging as std_logging
import os

import keras
import tensorflow as tf
from absl import flags

from tfvssl import methods
from tfvssl.models import layers
from tfvssl.train import checkpoint
from tfvssl.train import flags as train_flags

FLAGS_FILE = "flags.txt"


def load_method(workdir):
    """The `Method` of the run in `workdir`, configured by its `flags.txt`.

    The flagfile is parsed on top of the flags' defaults, apart from the process's own
    command line, and resolved with the method's recipe exactly as `tfvssl.pretrain` did.

    Raises:
      ValueError: naming `--workdir` when it holds no `flags.txt`.
    """
    path = os.path.join(workdir, FLAGS_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"--workdir={workdir}: no {FLAGS_FILE} (not a tfvssl.pretrain workdir)")
    methods.import_all()  # Every method flag the file may name must exist.
    root_level = std_logging.getLogger().level
    run_flags = copy.deepcopy(flags.FLAGS)
    run_flags.unparse_flags()
    run_flags(["flags.txt", f"--flagfile={path}"])
    # Parsing the copy applies its default --verbosity (WARNING) to the process's root
    # logger, which would silence every later logging.info: restore it.
    std_logging.getLogger().setLevel(root_level)
    method_cls = methods.get_method(run_flags.method)
    method = method_cls(train_flags.resolve_config(run_flags, method_cls))
    method.validate()
    return method


def use_running_statistics(model):
    """Makes every tfvssl `BatchNorm` in `model` normalise with its moving statistics in
    inference (training mode still uses batch statistics). Returns how many were switched."""
    switched = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, layers.BatchNorm) and layer.always_batch_stats:
            layer.always_batch_stats = False
            switched += 1
    return switched


def restore_encoder(method, workdir=None, checkpoint_path=None):
    """Builds `method`'s encoder and loads the newest checkpoint of `workdir` into it.

    Args:
      method: a `Method` (`load_method`).
      workdir: the pretraining workdir; None keeps the fresh initialisation (seeded by the
        run's `--seed`), the randomly initialised baseline.
      checkpoint_path: a checkpoint prefix of `workdir` (`<workdir>/ckpt/ckpt-<step>`) to
        load instead of the newest one, e.g. to follow a run's progress.

    Returns:
      `(encoder, checkpoint_path)`: the encoder with running-statistics BatchNorm, built for
      `method.clip_shape()` clips; the checkpoint read (None without `workdir`).
    """
    ckpt_dir = os.path.join(workdir, "ckpt") if workdir else None
    if checkpoint_path and not tf.io.gfile.exists(checkpoint_path + ".index"):
        raise ValueError(f"--checkpoint={checkpoint_path}: no such checkpoint (no .index file)")
    if workdir and not tf.train.latest_checkpoint(ckpt_dir):
        raise ValueError(
            f"--workdir={workdir}: no checkpoint in {ckpt_dir} (pass --untrained to export the "
            "randomly initialised encoder)"
        )
    keras.utils.set_random_seed(method.config.seed)
    model = method.build_model()
    encoder = model.build_encoder()
    use_running_statistics(encoder)
    # Creates the encoder's variables so the restore can check every one of them is read.
    encoder(tf.zeros([1, *method.clip_shape()]), training=False)
    if not workdir:
        return encoder, None
    return encoder, checkpoint.load_weights(model, checkpoint_path or ckpt_dir)
