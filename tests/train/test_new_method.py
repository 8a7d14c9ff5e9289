"""A sixth method is one module and one line in `tfvssl.methods.METHODS`: a toy method,
written to a temporary module, trains, validates and reloads through the table."""

import importlib
import os
import sys
import textwrap

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from tfvssl import methods, pretrain, workdir
from tfvssl.train import trainer

TOY_MODULE = '''
"""Toy: regresses a clip's label from its mean colour (one Dense layer)."""

import keras
import tensorflow as tf
from absl import flags

from tfvssl.data import augment, pipeline, sampling
from tfvssl.methods.base import Method
from tfvssl.models.pretext import PretextModel
from tfvssl.train import optim

flags.DEFINE_integer("toy_frames", None, "Toy: frames per clip.")


class ToyModel(PretextModel):
    def __init__(self, frames=2, resolution=8, weight_decay=0.0, **kwargs):
        super().__init__(weight_decay=weight_decay, **kwargs)
        clips = keras.Input((frames, resolution, resolution, 3))
        pooled = keras.layers.GlobalAveragePooling3D()(clips)
        self.encoder = keras.Model(clips, {"embedding": pooled, "feature_map": clips})
        self.head = keras.layers.Dense(1)

    def compute_pretext(self, data, training):
        guess = self.head(self.encoder(data["clip"], training=training)["embedding"])[:, 0]
        return {"loss": tf.reduce_mean(tf.square(guess - tf.cast(data["label"], tf.float32)))}


class Toy(Method):
    name = "toy"
    identity_flags = Method.identity_flags + ("toy_frames",)
    recipe = dict(
        backbone="none", resolution=8, toy_frames=2, batch_size=4, optimizer="sgd", lr=0.01,
        weight_decay=1e-4, lr_schedule="constant", train_steps=2,
    )

    def validate(self):
        if self.config.toy_frames < 1:
            raise ValueError(f"--toy_frames={self.config.toy_frames}: needs at least 1")

    def min_frames(self):
        return self.config.toy_frames

    def train_example(self, video, seed):
        c = self.config
        frames = pipeline.decode_frames(video["rgb"], sampling.sample_clip(video["num_frames"], c.toy_frames, seed))
        clip = self.normalize(augment.resize(frames, c.resolution))
        return {"clip": tf.ensure_shape(clip, self.clip_shape()), "label": video["label"]}

    def build_model(self, norm_options=None):
        c = self.config
        return ToyModel(c.toy_frames, c.resolution, weight_decay=optim.coupled_weight_decay(c))

    def clip_shape(self):
        return (self.config.toy_frames, self.config.resolution, self.config.resolution, 3)

    def normalize(self, frames):
        return augment.normalize(frames, "unit")
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """The toy module imported from a temporary folder and its line added to the table."""
    (tmp_path / "toy_method.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_method")
    monkeypatch.setitem(methods.METHODS, "toy", module.Toy)
    yield module.Toy
    del sys.modules["toy_method"]
    delattr(flags.FLAGS, "toy_frames")


def test_a_toy_method_in_its_own_module_trains_validates_and_reloads(toy_method, tiny_dataset, tmp_path):
    run = str(tmp_path / "run")
    with flagsaver.flagsaver():
        flags.FLAGS([
            "pretrain", "--method=toy", "--toy_frames=3", f"--data={tiny_dataset}", f"--workdir={run}",
            "--val_every=2", "--val_batches=1", "--log_every=1", "--shuffle_buffer=4",
        ])
        method, config = pretrain.effective_config()
        workdir.write_flags(config, run)
        logs = trainer.train(method, config, run)
    assert np.isfinite(logs["loss"])
    assert (config.lr, config.train_steps) == (0.01, 2)  # The toy's recipe.
    reloaded = workdir.load_method(run)
    assert isinstance(reloaded, toy_method) and reloaded.config.toy_frames == 3
    assert open(os.path.join(run, workdir.METRICS_FILE)).read().count("val/loss") == 1


def test_a_toy_method_validates_its_own_flags(toy_method, tmp_path):
    with flagsaver.flagsaver():
        flags.FLAGS(["pretrain", "--method=toy", "--toy_frames=0", f"--workdir={tmp_path}"])
        with pytest.raises(ValueError, match="--toy_frames=0"):
            pretrain.effective_config()
