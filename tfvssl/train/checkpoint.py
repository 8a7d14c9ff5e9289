"""Checkpoints that survive crashes: atomic saves, and restores that skip a broken one.

TensorFlow writes a checkpoint's data and index before it rewrites the `checkpoint` state
file (atomically), so a save interrupted by a crash never becomes the latest. A file
corrupted later (disk error, truncated copy) is detected at restore time: the restore
then falls back to the previous complete checkpoint with a warning.
"""

import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging


class Checkpointer:
    """Saves and restores `tf.train.Checkpoint(**objects)` in `directory`.

    Args:
      directory: `<workdir>/ckpt`. In a multi-worker job every worker restores from it, so
        it must be on storage all workers see (a shared file system, GCS).
      keep: number of checkpoints kept.
      is_chief: only the chief keeps what it writes; other workers of a multi-worker job
        must still take part in the save (it is a collective), so they write to a
        temporary directory that is deleted right away.
      optional: names of `objects` that checkpoints written by older versions lack; such a
        checkpoint still restores, leaving those objects at their initial values.
      **objects: trackables to save (model, optimizer, step, ...).
    """

    def __init__(self, directory, keep=3, is_chief=True, optional=(), **objects):
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.objects = objects
        self.optional = set(optional)
        self.is_chief = is_chief
        self.directory = directory
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    def save(self, step):
        """Writes a checkpoint for `step`; returns its path (chief) or None."""
        if self.is_chief:
            return self.manager.save(checkpoint_number=int(step))
        scratch = tempfile.mkdtemp(prefix="tfvssl-worker-ckpt-")
        try:
            tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save(int(step))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return None

    def restore_latest(self):
        """Restores the newest readable checkpoint; returns its path, or None if none.

        A checkpoint that fails to read is reported and the previous one is tried.
        """
        candidates = list(reversed(self.manager.checkpoints))
        for path in candidates:
            try:
                self._restore(path)
            except Exception as error:  # noqa: BLE001 - corruption surfaces as many types.
                logging.warning(
                    "checkpoint %s is unreadable (%s: %s); falling back to the previous one",
                    path, type(error).__name__, str(error).splitlines()[0][:200],
                )
                continue
            if path != candidates[0]:
                logging.warning("resumed from %s, not the newest checkpoint %s", path, candidates[0])
            return path
        if candidates:
            raise RuntimeError(f"no readable checkpoint in {self.directory} (tried {candidates})")
        return None

    def _restore(self, path):
        saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
        missing = {name for name in self.optional if name not in saved}
        checkpoint = self.checkpoint
        if missing:
            logging.warning(
                "checkpoint %s predates %s; starting those from their initial values", path, sorted(missing)
            )
            checkpoint = tf.train.Checkpoint(**{k: v for k, v in self.objects.items() if k not in missing})
        checkpoint.restore(path).assert_existing_objects_matched()

    @property
    def latest(self):
        return self.manager.latest_checkpoint


class _WithoutOptimizer(tf.__internal__.tracking.AutoTrackable):
    """`model` as a checkpoint sees it, minus the optimizer a compiled Keras model tracks.

    Restoring through it reads every weight of the model and none of the optimizer's
    state, so a run may start from a checkpoint written with another optimizer (or
    another `--grad_accum_steps`), and a weight the checkpoint lacks is still an error.
    """

    def __init__(self, model):
        self._model = model

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = self._model._trackable_children(save_type, **kwargs)
        return {name: child for name, child in children.items() if child is not getattr(self._model, "optimizer", None)}


def load_weights(model, path):
    """Initialises `model` from the model part of a tfvssl checkpoint (`--init_from`).

    Only the model's weights are read: its optimizer (if compiled) keeps its fresh state.

    `path` is a checkpoint prefix or a directory holding checkpoints (its latest is used):
    a workdir's `ckpt/`, a workdir itself, or the output of `tfvssl.convert`.
    """
    resolved = path
    for directory in (path, os.path.join(path, "ckpt")):
        if os.path.isdir(directory):
            resolved = tf.train.latest_checkpoint(directory)
            if resolved:
                break
    if not resolved:
        raise ValueError(f"--init_from={path}: no checkpoint found")
    status = tf.train.Checkpoint(model=_WithoutOptimizer(model)).read(resolved)
    status.expect_partial().assert_existing_objects_matched()
    logging.info("initialised the model from %s", resolved)
    return resolved
