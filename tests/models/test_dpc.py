"""Tests of the DPC model: sizes, shapes, the curriculum and learning on a fixed batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvssl.methods.dpc import parse_curriculum
from tfvssl.models import dpc_model


def count_trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_paper_size_model_has_the_reference_parameter_count():
    model = dpc_model.DensePredictiveCoding(resolution=128, num_blocks=8, block_length=5, pred_step=3)
    assert count_trainable(model.encoder.backbone) == 14_057_536
    assert count_trainable(model) == 14_583_104


def tiny_model(**overrides):
    config = dict(resolution=32, num_blocks=4, block_length=2, pred_step=2)
    config.update(overrides)
    return dpc_model.DensePredictiveCoding(**config)


def test_shapes_of_predictions_targets_and_encoder():
    model = tiny_model(resolution=64)
    blocks = tf.random.stateless_normal([3, 4, 2, 64, 64, 3], seed=[0, 0])
    out = model(blocks, training=False)
    assert out["predictions"].shape == (3, 2, 2, 2, 256)
    assert out["targets"].shape == (3, 2, 2, 2, 256)
    encoder = model.build_encoder()
    encoded = encoder(tf.reshape(blocks, [3, 8, 64, 64, 3]))
    assert encoded["embedding"].shape == (3, 256)
    assert encoded["feature_map"].shape == (3, 4, 2, 2, 256)
    # The encoder is f and g of the model (shared weights), in the downstream classifier's
    # order: ReLU before the temporal mean.
    assert {id(v) for v in encoder.weights} == {id(v) for v in model.encoder.weights}
    maps = model.encoder.backbone(tf.reshape(blocks, [12, 2, 64, 64, 3]), training=False)["stage5"]
    np.testing.assert_allclose(
        encoded["feature_map"], tf.reshape(tf.reduce_mean(tf.nn.relu(maps), 1), [3, 4, 2, 2, 256]),
        rtol=1e-4, atol=1e-4,
    )


def test_targets_are_signed_and_predictions_come_from_the_context_only():
    model = tiny_model()
    blocks = tf.random.stateless_normal([2, 4, 2, 32, 32, 3], seed=[1, 0])
    out = model(blocks, training=False)
    assert out["targets"].numpy().min() < 0  # Pre-ReLU targets (no final ReLU in layer4).
    features = model.encoder.block_features(blocks, training=False)
    np.testing.assert_allclose(
        model.predict_future(features, 2), out["predictions"], rtol=1e-5, atol=1e-5
    )
    altered = tf.concat([features[:, :2], features[:, 2:] * 0.0], axis=1)
    np.testing.assert_allclose(model.predict_future(altered, 2), out["predictions"], rtol=1e-5, atol=1e-5)


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    keras.utils.set_random_seed(0)
    model = tiny_model(resolution=64, weight_decay=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    blocks = tf.random.stateless_uniform([4, 4, 2, 64, 64, 3], seed=[2, 0])
    batch = {"blocks": blocks}
    first = float(model.test_step(batch)["loss"])
    for _ in range(8):
        logs = model.train_step(batch)
        assert float(logs["finite"]) == 1.0
    assert float(model.test_step(batch)["loss"]) < 0.7 * first


def test_non_finite_loss_skips_the_update():
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = {"blocks": tf.fill([2, 4, 2, 32, 32, 3], np.nan)}
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_step(batch)
    assert float(logs["finite"]) == 0.0
    for old, variable in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(old, variable.numpy())


def test_config_round_trip():
    model = tiny_model(pred_step=1, gru_dropout=0.2)
    clone = dpc_model.DensePredictiveCoding.from_config(model.get_config())
    assert clone.pred_step == 1 and clone.encoder.aggregator.dropout_rate == 0.2
    assert count_trainable(clone) == count_trainable(model)


@pytest.mark.parametrize(
    "items, expected",
    [([], [(3, None)]), (["2:100", "3:200", "4"], [(2, 100), (3, 200), (4, None)])],
)
def test_parse_curriculum(items, expected):
    assert parse_curriculum(items, 3) == expected


@pytest.mark.parametrize("items", [["3", "4"], ["3:x", "4"], ["3:100"]])
def test_bad_curriculum_names_the_flag(items):
    with pytest.raises(ValueError, match="--curriculum"):
        parse_curriculum(items, 3)
