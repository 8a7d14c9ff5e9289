"""Optimisers with the papers' semantics, and the learning-rate schedules.

The learning rate lives in the optimizer's variable and the schedule's state (plateau
best value and patience, decays so far) in variables too, so both are checkpointed and a
resumed run continues with the same learning rate.
"""

import math

import keras
import tensorflow as tf
from absl import logging


def coupled_weight_decay(config):
    """The L2 coefficient a model applies itself (`PretextModel`, the classifiers): the
    configured `weight_decay` with `adam`/`sgd` (PyTorch's coupled decay), 0 with `adamw`,
    whose optimizer decays the weights decoupled instead."""
    return config.weight_decay if config.optimizer != "adamw" else 0.0


def make_optimizer(config):
    """Builds the optimizer of `config` (`optimizer`, `lr`, `momentum`, `weight_decay`, ...).

    With `adam`/`sgd` the weight decay is applied by the model as PyTorch's coupled L2 (see
    `PretextModel`); `adamw` decays decoupled inside the optimizer. Adam's epsilon is
    PyTorch's 1e-8. Under `mixed_float16` the optimizer is wrapped for loss scaling.
    """
    common = dict(learning_rate=config.lr, gradient_accumulation_steps=_accumulation(config))
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(epsilon=1e-8, **common)
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=config.weight_decay, epsilon=1e-8, **common)
    elif config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(momentum=config.momentum, **common)
    else:
        raise ValueError(f"--optimizer={config.optimizer}: choose adam, adamw or sgd")
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _accumulation(config):
    steps = getattr(config, "grad_accum_steps", 1)
    return steps if steps and steps > 1 else None


class LearningRateSchedule:
    """Sets the optimizer's learning rate from the step and, for `plateau`, validations.

    Schedules: `constant`; `steps` (multiply by `lr_decay_factor` at each of
    `lr_decay_steps`); `cosine` (linear warmup for `warmup_steps`, then cosine to 0 at
    `train_steps`); `plateau` (multiply by `lr_decay_factor`, not below `min_lr`, after
    `plateau_patience` validations without a lower loss; DPC's "decay to 1e-4 when the
    validation loss plateaus").
    """

    def __init__(self, config, optimizer):
        self.config = config
        self.optimizer = optimizer
        # Checkpointed state of the plateau schedule.
        self.best = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="plateau_best")
        self.bad_validations = tf.Variable(0, dtype=tf.int64, trainable=False, name="plateau_bad")
        self.decays = tf.Variable(0, dtype=tf.int64, trainable=False, name="plateau_decays")

    def state(self):
        """Variables to checkpoint."""
        return {"best": self.best, "bad_validations": self.bad_validations, "decays": self.decays}

    def value(self, step):
        """The learning rate at `step` (Python float)."""
        c = self.config
        base = c.lr
        if c.lr_schedule == "steps":
            passed = sum(1 for boundary in c.lr_decay_steps if step >= boundary)
            return base * c.lr_decay_factor**passed
        if c.lr_schedule == "cosine":
            if step < c.warmup_steps:
                return base * (step + 1) / c.warmup_steps
            progress = (step - c.warmup_steps) / max(1, c.train_steps - c.warmup_steps)
            return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if c.lr_schedule == "plateau":
            lr = base * c.lr_decay_factor ** int(self.decays.numpy())
            return max(lr, c.min_lr) if c.min_lr is not None else lr
        return base

    def update(self, step):
        """Writes the learning rate for `step` into the optimizer; returns it."""
        lr = self.value(step)
        self.optimizer.learning_rate.assign(lr)
        return lr

    def on_validation(self, loss, step):
        """Feeds a validation loss to the plateau schedule."""
        if self.config.lr_schedule != "plateau":
            return
        if loss < float(self.best.numpy()):
            self.best.assign(loss)
            self.bad_validations.assign(0)
            return
        self.bad_validations.assign_add(1)
        if self.bad_validations.numpy() >= self.config.plateau_patience:
            before = self.value(step)
            self.decays.assign_add(1)
            self.bad_validations.assign(0)
            after = self.value(step)
            if after < before:
                logging.info("step %d: validation loss plateaued, learning rate %.3g -> %.3g", step, before, after)
