"""Optimisers and learning-rate schedules: PyTorch semantics, accumulation, plateau decay."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvssl.models import dpc_model
from tfvssl.train import optim


def config(**overrides):
    values = dict(
        optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, precision="float32",
        grad_accum_steps=1, lr_schedule="constant", lr_decay_steps=[], lr_decay_factor=0.1,
        min_lr=None, plateau_patience=2, warmup_steps=0, train_steps=100,
    )
    values.update(overrides)
    return types.SimpleNamespace(**values)


def tiny_model(weight_decay=0.0):
    keras.utils.set_random_seed(0)
    return dpc_model.DensePredictiveCoding(
        resolution=32, num_blocks=4, block_length=2, pred_step=2, gru_dropout=0.0,
        weight_decay=weight_decay,
    )


def gradients(model, data):
    with tf.GradientTape() as tape:
        loss = model.compute_pretext(data, training=True)["loss"]
    return tape.gradient(loss, model.trainable_variables)


def test_gradient_accumulation_applies_the_mean_gradient_every_k_steps():
    batches = [{"blocks": tf.random.stateless_uniform([2, 4, 2, 32, 32, 3], seed=[i, 0])} for i in (1, 2)]
    model = tiny_model()
    initial = [v.numpy() for v in model.trainable_variables]
    # Gradients of each batch at the initial weights (BN statistics change nothing trainable).
    expected_grads = [gradients(model, b) for b in batches]
    model.compile(optimizer=optim.make_optimizer(config(grad_accum_steps=2)))

    model.train_step(batches[0])
    for w0, v in zip(initial, model.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), w0)  # Nothing applied yet.
    model.train_step(batches[1])
    for w0, g1, g2, v in zip(initial, *expected_grads, model.trainable_variables):
        np.testing.assert_allclose(v.numpy(), w0 - 0.1 * (g1 + g2) / 2, rtol=1e-4, atol=1e-6)


def test_coupled_weight_decay_is_pytorch_l2_on_every_parameter():
    data = {"blocks": tf.random.stateless_uniform([2, 4, 2, 32, 32, 3], seed=[3, 0])}
    model = tiny_model(weight_decay=0.01)
    initial = [v.numpy() for v in model.trainable_variables]
    grads = gradients(model, data)
    model.compile(optimizer=optim.make_optimizer(config()))
    model.train_step(data)
    # PyTorch SGD(weight_decay=w): grad + w * param, biases and BatchNorm included.
    for w0, g, v in zip(initial, grads, model.trainable_variables):
        np.testing.assert_allclose(v.numpy(), w0 - 0.1 * (g + 0.01 * w0), rtol=1e-4, atol=1e-6)


def test_adam_uses_pytorch_epsilon_and_mixed_float16_scales_the_loss():
    adam = optim.make_optimizer(config(optimizer="adam"))
    assert adam.epsilon == pytest.approx(1e-8)
    scaled = optim.make_optimizer(config(optimizer="adam", precision="mixed_float16"))
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (dict(lr_schedule="steps", lr_decay_steps=[10, 20]), {0: 0.1, 9: 0.1, 10: 0.01, 25: 0.001}),
        (dict(lr_schedule="cosine", warmup_steps=10), {0: 0.01, 9: 0.1, 10: 0.1, 55: 0.05, 100: 0.0}),
        (dict(lr_schedule="constant"), {0: 0.1, 99: 0.1}),
    ],
)
def test_step_based_schedules(overrides, expected):
    schedule = optim.LearningRateSchedule(config(**overrides), optim.make_optimizer(config()))
    for step, lr in expected.items():
        assert schedule.value(step) == pytest.approx(lr, abs=1e-9), step


def test_plateau_decays_after_patience_and_stops_at_min_lr():
    optimizer = optim.make_optimizer(config())
    schedule = optim.LearningRateSchedule(config(lr_schedule="plateau", min_lr=0.01), optimizer)
    for loss in (5.0, 4.0, 4.5, 4.2):  # Two validations without improvement.
        schedule.on_validation(loss, step=0)
    assert schedule.update(0) == pytest.approx(0.01)
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    for loss in (4.1, 4.3):
        schedule.on_validation(loss, step=0)
    assert schedule.value(0) == pytest.approx(0.01)  # Never below min_lr.
