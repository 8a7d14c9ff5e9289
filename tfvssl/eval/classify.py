"""Action classification with a pretrained encoder: probes and fine-tuning, one `fit` loop.

- Probe (`tfvssl.probe`): the exported `.keras` encoder, frozen (run in inference:
  BatchNorm on moving statistics, no dropout), a linear or MLP head trained on its feature;
  the head trains on augmented clips through the encoder (the papers) or on cached
  features (fast).
- Fine-tune (`tfvssl.finetune`): the exported `.keras` encoder (or one rebuilt from a
  checkpoint) and the head, all trained end to end; BatchNorm uses and updates batch
  statistics in training.
Both train a `Classifier` with Keras `fit` (Adam or SGD, PyTorch's coupled L2 weight decay
or L2-SP, step decays of the learning rate at epochs) on one random clip per labelled
training video per epoch (`--label_fraction` for the low-label regime), augmented by the
method's `downstream_clip`, then score the test set with the shared test-time protocol
(`inputs.evaluation_dataset` and `protocol.evaluate`), writing `results.json`,
`metrics.jsonl` and `classifier.keras`. The clips of training and test may differ in
length (`Method.classifier_method`: DPC's 5 blocks, temporal CPC's 8 and 15 segments), so
the encoder is the method's own, which takes any number of blocks or segments.
"""

import dataclasses
import os
import types

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfvssl import workdir
from tfvssl.eval import exporting, inputs, protocol
from tfvssl.models import layers
from tfvssl.train import optim, reporting

RESULTS_FILE = "results.json"
CLASSIFIER_FILE = "classifier.keras"


class LinearProbe:
    """MemDPC's linear probe (its eval code, `--train_what last`): frozen encoder, BatchNorm
    -> dropout 0.5 -> linear, Adam 1e-3 with weight decay 1e-3, 100 epochs, x0.1 at epoch 60."""

    recipe = dict(
        optimizer="adam", lr=1e-3, weight_decay=1e-3, head_dropout=0.5, epochs=100,
        lr_decay_epochs=[60], lr_decay_factor=0.1, batch_size=16,
    )


class FineTune:
    """DPC's fine-tuning (paper §3.5 and eval code): Adam 1e-3, weight decay 1e-3, dropout
    0.5, the learning rate x0.1 at epochs 60 and 80 (the code's effective schedule for
    UCF101 at 128 px); other papers' recipes are flagfiles."""

    recipe = dict(
        optimizer="adam", lr=1e-3, weight_decay=1e-3, head_dropout=0.5, epochs=300,
        lr_decay_epochs=[60, 80], lr_decay_factor=0.1, batch_size=16,
    )


def build_head(kind, num_classes, dropout, hidden=512):
    """The classification head on a `[B, D]` feature.

    Args:
      kind: "linear" (DPC's and MemDPC's `ClassificationHead`: BatchNorm -> dropout ->
        linear), "fc" (VCOP's lone linear layer with PyTorch's default init, after dropout)
        or "mlp" (BatchNorm -> linear(hidden) -> ReLU, then the linear head).
      num_classes: K.
      dropout: dropout rate before the last linear layer.
      hidden: hidden units of the mlp.

    Returns:
      A Keras layer, `[B, D]` -> logits `[B, K]`.
    """
    if kind == "fc":
        return layers.ClassificationHead(
            num_classes, dropout=dropout, batch_norm=False, orthogonal_init=False, name="head"
        )
    head = layers.ClassificationHead(num_classes, dropout=dropout, name="head")
    if kind == "linear":
        return head
    if kind != "mlp":
        raise ValueError(f"--head={kind}: choose linear, fc or mlp")
    return keras.Sequential(
        [layers.BatchNorm(name="input_bn"), keras.layers.Dense(hidden, name="hidden"), keras.layers.ReLU(), head],
        name="mlp_head",
    )


class Classifier(keras.Model):
    """An encoder's feature -> a head's logits, with the papers' weight decay in training.

    Input: float32 clips `[B, *clip_shape]` (or `[B, D]` features when `encoder` is None).
    Output: logits `[B, K]`.

    The weight decay is PyTorch's coupled L2, `weight_decay / 2 * ||w||^2` added to the
    training loss for every trainable variable (BatchNorm and biases included, as the
    authors' optimisers do). With `decay_to_initial` the encoder's variables are pulled
    toward their values when the classifier is built instead of toward zero (L2-SP).

    Args:
      encoder: a layer returning a dict of features (a `.keras` encoder or a `TFSMLayer`),
        or None; a frozen one (`trainable=False`) always runs in inference.
      head: the head (`build_head`).
      feature: the encoder output the head reads.
      weight_decay: coupled L2 coefficient.
      decay_to_initial: L2-SP for the encoder.
    """

    def __init__(self, encoder, head, feature="embedding", weight_decay=0.0, decay_to_initial=False, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head
        self.feature = feature
        self.weight_decay = float(weight_decay)
        self.initial_values = None
        if decay_to_initial and encoder is not None:
            self.initial_values = [tf.constant(v.numpy()) for v in encoder.trainable_variables]

    def call(self, inputs, training=None):
        if self.encoder is None:
            return self.head(inputs, training=training)
        features = self.encoder(inputs, training=bool(training) and self.encoder.trainable)[self.feature]
        return self.head(features, training=training)

    def weight_penalty(self):
        """`weight_decay / 2 * sum ||w - w0||^2` (w0 = 0, or the initial encoder weights)."""
        encoder_variables = [] if self.encoder is None else self.encoder.trainable_variables
        targets = self.initial_values or [None] * len(encoder_variables)
        terms = [tf.reduce_sum(tf.square(v)) for v in self.head.trainable_variables]
        terms += [
            tf.reduce_sum(tf.square(v if target is None else v - target))
            for v, target in zip(encoder_variables, targets)
        ]
        return 0.5 * self.weight_decay * tf.add_n(terms)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        if training and self.weight_decay:
            loss += self.weight_penalty()
        return loss


def learning_rate_schedule(config, steps_per_epoch):
    """The learning rate times `lr_decay_factor` from each of `lr_decay_epochs` (0-based
    epoch numbers, as PyTorch's `MultiStepLR` milestones) on."""
    epochs = sorted(config.lr_decay_epochs)
    if not epochs:
        return config.lr
    # The schedule sees the number of steps taken and keeps a value up to its boundary
    # included: epoch e's first step is step e * steps_per_epoch.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [epoch * steps_per_epoch - 1 for epoch in epochs],
        [config.lr * config.lr_decay_factor**i for i in range(len(epochs) + 1)],
    )


class MetricsLogger(keras.callbacks.Callback):
    """Writes each epoch's training loss, accuracy and learning rate to `metrics.jsonl` and
    TensorBoard in `output_dir` (what `tfvssl.plots` draws)."""

    def __init__(self, output_dir):
        super().__init__()
        self.writer = reporting.MetricWriter(output_dir)

    def on_epoch_end(self, epoch, logs=None):
        scalars = {f"train/{name}": value for name, value in (logs or {}).items()}
        scalars["epoch"] = epoch + 1
        scalars["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.writer.write(int(self.model.optimizer.iterations.numpy()), scalars)

    def on_train_end(self, logs=None):
        self.writer.close()


def train(classifier, dataset, config, steps_per_epoch, output_dir):
    """Trains `classifier` with `fit` on `(inputs, labels)` or `(inputs, labels, weights)`
    batches; returns the History.

    Cross-entropy on the logits; `config.optimizer` (adam/sgd: coupled L2 by the
    classifier; adamw: decoupled), the step schedule of `learning_rate_schedule`.
    """
    settings = types.SimpleNamespace(
        optimizer=config.optimizer, lr=learning_rate_schedule(config, steps_per_epoch),
        momentum=config.momentum, weight_decay=config.weight_decay, precision="float32",
        grad_accum_steps=1,
    )
    classifier.compile(
        optimizer=optim.make_optimizer(settings),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Weighted: examples with weight 0 (the Oops windows' steps past a video's end) do not count.
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return classifier.fit(
        dataset, epochs=config.epochs, steps_per_epoch=steps_per_epoch, shuffle=False,  # Shuffled by tf.data.
        callbacks=[MetricsLogger(output_dir)], verbose=2,
    )


def run(config, frozen):
    """Trains and evaluates a classifier; returns the path of its `results.json`.

    Args:
      config: the resolved flags (`eval.flags.resolve`).
      frozen: True for a probe, False for fine-tuning.
    """
    if not frozen and config.train_features == "cached":
        raise ValueError("--train_features=cached: only a probe's frozen encoder has fixed features")
    os.makedirs(config.output_dir, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    method, encoder, source = workdir.open_encoder(config.encoder, frozen)
    train_method = method.classifier_method(config, training=True)
    test_method = method.classifier_method(config, training=False)
    outputs = encoder(tf.zeros([1, *train_method.clip_shape()]), training=False)
    available = sorted(exporting.pooled_outputs(outputs))
    if config.feature not in available:
        raise ValueError(f"--feature={config.feature}: the encoder outputs {', '.join(available)}")
    data_root = config.data or method.config.data
    train_split = inputs.labelled_split(data_root, config.split)
    test_split = inputs.labelled_split(data_root, config.test_split)
    class_names = inputs.class_names(data_root, np.concatenate([train_split.labels, test_split.labels]))
    selected = inputs.select_fraction(train_split.labels, config.label_fraction, config.seed)
    logging.info(
        "%s %s from %s: %d of %d training videos, %d test videos, %d classes",
        "probing" if frozen else "fine-tuning", method.name, source, len(selected), len(train_split.labels),
        len(test_split.labels), len(class_names),
    )

    head = build_head(config.head, len(class_names), config.head_dropout, config.head_hidden)
    weight_decay = optim.coupled_weight_decay(config)
    if config.train_features == "cached":
        # The head alone learns from the frozen features of fixed clips, computed once.
        features = inputs.run_views(
            lambda clips: encoder(clips)[config.feature],
            inputs.evaluation_dataset(train_split.files, train_method, config.views, config.batch_size, selected),
        )
        dataset = (
            tf.data.Dataset.from_tensor_slices((features["outputs"], features["label"]))
            .shuffle(len(features["label"]), seed=config.seed).repeat()
            .batch(config.batch_size, drop_remainder=True)
        )
        steps_per_epoch = max(1, len(features["label"]) // config.batch_size)
        train(Classifier(None, head, weight_decay=weight_decay), dataset, config, steps_per_epoch, config.output_dir)
        classifier = Classifier(encoder, head, config.feature)
    else:
        classifier = Classifier(
            encoder, head, config.feature, weight_decay, decay_to_initial=config.weight_decay_to == "pretrained"
        )
        dataset = inputs.training_dataset(
            train_split.files, train_method, config.batch_size, config.seed, selected, config.shuffle_buffer
        )
        steps_per_epoch = max(1, len(selected) // config.batch_size)
        train(classifier, dataset, config, steps_per_epoch, config.output_dir)

    views = inputs.run_views(
        lambda clips: classifier(clips, training=False),
        inputs.evaluation_dataset(test_split.files, test_method, config.views, config.batch_size),
    )
    results = protocol.evaluate(
        views["outputs"], views["video"], views["clip"], views["label"], class_names, test_split.names,
        config.aggregate,
    )
    if config.fuse_with:
        results = protocol.fuse(results, protocol.read_json(config.fuse_with))
    results.update(
        mode="probe" if frozen else "finetune", encoder=source, head=config.head, feature=config.feature,
        views=dataclasses.asdict(config.views), label_fraction=config.label_fraction,
        train_videos=len(selected), epochs=config.epochs, data=data_root, split=config.split,
        test_split=config.test_split, train_clip_shape=list(train_method.clip_shape()),
        test_clip_shape=list(test_method.clip_shape()),
    )
    path = os.path.join(config.output_dir, RESULTS_FILE)
    protocol.write_json(path, results)
    classifier_path = os.path.join(config.output_dir, CLASSIFIER_FILE)
    save_classifier(test_method.clip_shape(), encoder, head, config.feature, classifier_path)
    logging.info("%s", protocol.summary(results))
    return path


def save_classifier(clip_shape, encoder, head, feature, path):
    """Saves clips -> logits as a functional `.keras` model (with a `TFSMLayer` encoder it
    reloads with `keras.saving.load_model(path, safe_mode=False)`)."""
    clips = keras.Input(clip_shape, name="clips")
    keras.Model(clips, head(encoder(clips)[feature]), name="classifier").save(path)
