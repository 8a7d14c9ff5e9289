"""A pretraining workdir: its layout, its flags, and the method and encoder it holds.

    <workdir>/flags.txt       the run's effective flags (a valid flagfile)
             ckpt/            checkpoints (`tfvssl.train.checkpoint`)
             tensorboard/     TensorBoard events
             metrics.jsonl    one JSON line per logged step
             plots/           `tfvssl.plots`' figures
             export/<name>/<version>/   SavedModel exports (`tfvssl.export`)

`load_method` and `open_encoder` take either a workdir or an export directory. The
evaluation always runs the encoder with BatchNorm on its moving statistics, whatever
pretraining did: DPC pretrains with batch statistics in inference too (its
`--batch_stats_bn`), yet its layers keep moving averages, which the exported encoder uses.
"""

import copy
import os
import types

import keras
import tensorflow as tf
from absl import flags

from tfvssl import methods  # Defines every method's flags, which a flags.txt may name.
from tfvssl.models import layers
from tfvssl.train import checkpoint, train_flags
from tfvssl.train.reporting import METRICS_FILE, TENSORBOARD_DIR

FLAGS_FILE = "flags.txt"
CKPT_DIR = "ckpt"
PLOTS_DIR = "plots"
EXPORT_DIR = "export"
# What `--overwrite` deletes of an earlier run: its settings, training state and what derives
# from them. Its exports stay; each describes itself (`export_info.json`).
RUN_FILES = (FLAGS_FILE, CKPT_DIR, TENSORBOARD_DIR, METRICS_FILE, PLOTS_DIR)
SAVED_MODEL_FILE = "saved_model.pb"


def is_workdir(path):
    """True when `path` holds a pretraining run (its `flags.txt`)."""
    return os.path.isfile(os.path.join(path, FLAGS_FILE))


def is_export(path):
    """True when `path` is an export version directory (it holds a SavedModel)."""
    return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def flag_text(value):
    """A flag value as a flagfile spells it (lists comma-separated)."""
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _run_flags(flag_values):
    """The flags a `flags.txt` holds: the trainer's, the methods' (`tfvssl.methods` and the
    modules of `methods.METHODS`) and the pretraining entry point's, not `--overwrite` (an
    action on the workdir that a resume must not repeat). Not the flags of other tools a
    process may also define (evaluation, export): `tfvssl.pretrain` would not know them."""
    run_modules = {train_flags.__name__} | {cls.__module__ for cls in methods.METHODS.values()}
    return [
        flag
        for module, module_flags in flag_values.flags_by_module_dict().items()
        if module in run_modules or module.startswith(methods.__name__ + ".")
        or os.path.basename(module).startswith("pretrain")
        for flag in module_flags
        if flag.name != "overwrite"
    ]


def write_flags(config, workdir, flag_values=flags.FLAGS):
    """Writes the effective value of every run flag to `<workdir>/flags.txt`, atomically."""
    names = sorted({flag.name for flag in _run_flags(flag_values)})
    values = {name: getattr(config, name, None) for name in names}
    lines = [f"--{name}={flag_text(value)}" for name, value in values.items() if value is not None]
    path = os.path.join(workdir, FLAGS_FILE)
    os.makedirs(workdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def read_flags(workdir):
    """The run flags of `<workdir>/flags.txt`, parsed on top of their defaults.

    Returns:
      A new `absl.flags.FlagValues` holding fresh copies of the run flags; the process's own
      `FLAGS` (and its command line) is left as it is.

    Raises:
      ValueError: naming `--workdir` when it holds no `flags.txt`.
    """
    if not is_workdir(workdir):
        raise ValueError(f"--workdir={workdir}: no {FLAGS_FILE} (not a tfvssl.pretrain workdir)")
    run_flags = flags.FlagValues()
    # Before 2026-12-05 a run started in a process that also defined other tfvssl tools'
    # flags wrote them too: known, they parse (and nothing reads them).
    tool_flags = [
        flag for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
        if module.startswith("tfvssl.") for flag in module_flags
    ]
    for flag in {flag.name: flag for flag in tool_flags + _run_flags(flags.FLAGS)}.values():
        fresh = copy.deepcopy(flag)
        fresh.unparse()  # Back to its default: the file alone sets the values.
        run_flags[flag.name] = fresh
    run_flags([FLAGS_FILE, f"--flagfile={os.path.join(workdir, FLAGS_FILE)}"])
    return run_flags


def load_method(path):
    """The validated `Method` of a pretraining workdir or of an export.

    A workdir's `flags.txt` is resolved with the method's recipe exactly as
    `tfvssl.pretrain` did; an export holds its resolved configuration (`export_info.json`).

    Raises:
      ValueError: naming the path when it is neither.
    """
    if is_export(path):
        from tfvssl.eval import exporting

        info = exporting.read_info(path)
        return methods.get_method(info["method"])(types.SimpleNamespace(**info["config"]))
    run_flags = read_flags(path)
    method_cls = methods.get_method(run_flags.method)
    method = method_cls(train_flags.resolve_config(run_flags, method_cls))
    method.validate()
    return method


def find_export(path):
    """The export directory `path` names: itself, or the newest export of a workdir.

    Args:
      path: an export version directory (holding `saved_model.pb`), or a pretraining
        workdir with one model under `export/` (its highest version is used).

    Raises:
      ValueError: naming `--encoder` when there is no export, or several models to choose
        from.
    """
    if is_export(path):
        return path
    root = os.path.join(path, EXPORT_DIR)
    versions = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        model_dir = os.path.join(root, name)
        numbers = [int(v) for v in os.listdir(model_dir) if v.isdigit() and is_export(os.path.join(model_dir, v))]
        if numbers:
            versions[name] = max(numbers)
    if not versions:
        raise ValueError(
            f"--encoder={path}: no SavedModel here or under {root}; write one with "
            "`python -m tfvssl.export --workdir=<pretraining workdir>`"
        )
    if len(versions) > 1:
        raise ValueError(
            f"--encoder={path}: several models under {root} ({', '.join(versions)}); give "
            f"--encoder={root}/<name>/<version>"
        )
    (name, version), = versions.items()
    return os.path.join(root, name, str(version))


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
    ckpt_dir = os.path.join(workdir, CKPT_DIR) if workdir else None
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


def open_encoder(path, frozen=True):
    """The method and encoder of a workdir or an export (`--encoder`).

    Args:
      path: an export directory or a pretraining workdir.
      frozen: True: the `.keras` encoder of the export, frozen (a workdir: of its newest
        export); False: the same, trainable, or, for a workdir, the encoder rebuilt from its
        newest checkpoint.

    Returns:
      `(method, encoder, source)`; `source` names what was loaded. The encoder is the
      method's own model, without the export's fixed input shape: it takes clips of any
      number of blocks or segments.
    """
    from tfvssl.eval import exporting

    if frozen:
        path = find_export(path)
    if is_export(path):
        # The export wraps the encoder in a functional model with a fixed `clips` input.
        encoder = exporting.load_keras_encoder(path).layers[-1]
        encoder.trainable = not frozen
        return load_method(path), encoder, os.path.join(path, exporting.KERAS_FILE)
    if not is_workdir(path):
        raise ValueError(f"--encoder={path}: neither an export directory nor a pretraining workdir")
    method = load_method(path)
    encoder, restored = restore_encoder(method, path)
    return method, encoder, restored
