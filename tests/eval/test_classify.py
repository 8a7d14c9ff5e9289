"""Classifiers on exported encoders: a user's TFSMLayer probe, the weight decay (coupled L2
and L2-SP) and the learning-rate schedule. Fine-tuning the `.keras` export: test_eval_cli."""

import types

import keras
import numpy as np
import pytest
from eval_fixtures import trained_run  # noqa: F401  (fixture)

from tfvssl.eval import classify


def test_a_users_functional_model_around_tfsmlayer_trains_a_linear_head(trained_run):
    _, export_dir = trained_run
    # What a user writes, knowing only the serving contract (export/README.md).
    encoder = keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default", trainable=False)
    clips = keras.Input((8, 32, 32, 3), name="clips")
    logits = keras.layers.Dense(3, name="linear")(encoder(clips)["embedding"])
    model = keras.Model(clips, logits)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    before = model.get_layer("linear").kernel.numpy().copy()
    embeddings = encoder(x)["embedding"].numpy()
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    assert not np.allclose(model.get_layer("linear").kernel.numpy(), before)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert not encoder.trainable_weights
    np.testing.assert_allclose(encoder(x)["embedding"], embeddings, rtol=1e-6)


def toy_classifier(decay_to_initial):
    clips = keras.Input((4,))
    encoder = keras.Model(clips, {"embedding": keras.layers.Dense(3)(clips)})
    classifier = classify.Classifier(
        encoder, classify.build_head("mlp", 2, 0.0, hidden=5), weight_decay=0.1, decay_to_initial=decay_to_initial
    )
    classifier(np.zeros((2, 4), np.float32))
    return classifier, encoder


@pytest.mark.parametrize("decay_to_initial", [False, True])
def test_weight_decay_is_coupled_l2_toward_zero_or_the_pretrained_weights(decay_to_initial):
    classifier, encoder = toy_classifier(decay_to_initial)
    pretrained = [v.numpy().copy() for v in encoder.trainable_variables]
    for v in encoder.trainable_variables:
        v.assign(v + 0.5)
    head = [v.numpy() for v in classifier.head.trainable_variables]
    targets = pretrained if decay_to_initial else [0.0] * len(pretrained)
    expected = 0.05 * (
        sum(np.sum((v.numpy() - t) ** 2) for v, t in zip(encoder.trainable_variables, targets))
        + sum(np.sum(h**2) for h in head)
    )
    assert float(classifier.weight_penalty()) == pytest.approx(expected, rel=1e-5)
    # The penalty is part of the training loss only.
    classifier.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.ones((2, 4), np.float32), np.array([0, 1])
    logits = classifier(x)
    train = classifier.compute_loss(x, y, logits, training=True)
    test = classifier.compute_loss(x, y, logits, training=False)
    assert float(train - test) == pytest.approx(expected, rel=1e-5)


def test_learning_rate_decays_at_the_given_epochs():
    config = types.SimpleNamespace(lr=1e-3, lr_decay_factor=0.1, lr_decay_epochs=[80, 60])
    schedule = classify.learning_rate_schedule(config, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 599, 600, 799, 800, 5000)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-6)
    assert classify.learning_rate_schedule(types.SimpleNamespace(lr=0.1, lr_decay_epochs=[]), 10) == 0.1
