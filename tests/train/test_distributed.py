"""Replicas on 2 logical CPU devices against one device: the same loss, gradients, weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvssl.models import dpc_model, layers, tcp_model

SIZES = dict(resolution=32, num_blocks=4, block_length=2, pred_step=2, gru_dropout=0.0)


def blocks(batch=4, dtype=tf.float32):
    return tf.random.stateless_uniform([batch, 4, 2, 32, 32, 3], seed=[7, 1], dtype=dtype)


def build(strategy, dtype="float32", **options):
    """The test's DPC model, built in `dtype`.

    The comparisons of two replicas with one device run in float64: one device normalises by
    the fused op's float32 statistics and two replicas by Keras' all-reduced sums, whose
    roundings differ by about 1e-7, and among the ~1e5 ReLU inputs of the backbone a few lie
    that close to 0 (measured: one of `layer1_0`'s at 9.8e-7), so float32 would compare a
    function at its kinks, where one flipped element moves a channel's gradient by 5%.
    """
    keras.utils.set_random_seed(3)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        with strategy.scope():
            model = dpc_model.DensePredictiveCoding(**SIZES, **options)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model.optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def one_step(strategy, model, data):
    """One train step on the global batch `data`, split over the replicas in order."""
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors({"blocks": data})
    )

    @tf.function
    def step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        return strategy.reduce("MEAN", logs["loss"], axis=None)

    return float(step(next(iter(dataset))))


@pytest.fixture(scope="module")
def mirrored():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def test_global_negatives_and_sync_bn_on_two_replicas_equal_one_device(mirrored):
    data = blocks(dtype=tf.float64)
    single = build(tf.distribute.OneDeviceStrategy("/cpu:0"), "float64")
    replicated = build(mirrored, "float64", negatives="global", sync_bn=True)
    initial = [w.numpy() for w in single.weights]
    for a, b in zip(initial, replicated.weights):
        np.testing.assert_array_equal(a, b.numpy())  # Same initial weights.

    loss_single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"), single, data)
    loss_replicated = one_step(mirrored, replicated, data)

    assert loss_replicated == pytest.approx(loss_single, rel=1e-5)
    # Same gradients, hence the same SGD updates (BN statistics included), up to the float32
    # scores of the loss (measured: 7e-8): compare each update with its largest entry.
    for w0, a, b in zip(initial, single.weights, replicated.weights):
        update_single, update_replicated = a.numpy() - w0, b.numpy() - w0
        scale = max(np.abs(update_single).max(), 1e-12)
        assert np.abs(update_replicated - update_single).max() <= 1e-6 * scale, a.path


def test_replica_negatives_give_the_loss_of_two_half_batches(mirrored):
    data = blocks()
    replicated = build(mirrored, negatives="replica")
    halves = [float(build(tf.distribute.get_strategy()).test_step({"blocks": data[i : i + 2]})["loss"]) for i in (0, 2)]
    dataset = mirrored.experimental_distribute_dataset(tf.data.Dataset.from_tensors({"blocks": data}))

    @tf.function
    def evaluate(batch):
        logs = mirrored.run(replicated.test_step, args=(batch,))
        return mirrored.reduce("MEAN", logs["loss"], axis=None)

    assert float(evaluate(next(iter(dataset)))) == pytest.approx(np.mean(halves), rel=1e-5)


def test_gradient_clipping_bounds_the_global_batch_update_as_on_one_device(mirrored):
    data = blocks(dtype=tf.float64)
    clip = 1.0  # Below the gradient's norm: the step is clipped.
    single = build(tf.distribute.OneDeviceStrategy("/cpu:0"), "float64")
    replicated = build(mirrored, "float64", negatives="global", sync_bn=True)
    initial = [w.numpy() for w in single.trainable_weights]
    for model in (single, replicated):
        model.grad_clip_norm = clip
    one_step(tf.distribute.OneDeviceStrategy("/cpu:0"), single, data)
    one_step(mirrored, replicated, data)
    # Plain SGD at lr 0.1 (a float32 0.1): the update is 0.1 times the clipped gradient of
    # the whole batch.
    updates = [w.numpy() - w0 for w0, w in zip(initial, single.trainable_weights)]
    assert np.sqrt(sum(np.sum(u**2) for u in updates)) == pytest.approx(0.1 * clip, rel=1e-7)
    for w0, update, b in zip(initial, updates, replicated.trainable_weights):
        # Up to the loss's float32 scores and the rounding of the updated weights.
        tolerance = 1e-6 * np.abs(update).max() + 4 * np.spacing(np.abs(w0).max())
        assert np.abs(b.numpy() - w0 - update).max() <= tolerance, b.path


def test_temporal_cpc_sum_is_the_global_batch_sum_on_two_replicas(mirrored):
    # Eq. 2 sums over the whole batch: two replicas of half the batch give one device's sum.
    segments = tf.random.stateless_uniform([4, 4, 32, 32, 12], seed=[5, 2])

    def build_tcp(strategy):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            return tcp_model.TemporalContrastivePretraining(
                num_segments=4, segment_length=4, channels=3, resolution=32, ar_kernel_size=(3, 1, 1),
                negatives="global",
            )

    single = float(build_tcp(tf.distribute.get_strategy()).test_step({"segments": segments})["loss"])
    replicated = build_tcp(mirrored)
    dataset = mirrored.experimental_distribute_dataset(tf.data.Dataset.from_tensors({"segments": segments}))

    @tf.function
    def evaluate(batch):
        return mirrored.reduce("MEAN", mirrored.run(replicated.test_step, args=(batch,))["loss"], axis=None)

    assert float(evaluate(next(iter(dataset)))) == pytest.approx(single, rel=1e-5)


def test_sync_batch_norm_in_float32_keeps_a_small_spread_about_a_large_mean(mirrored):
    # Activations whose mean (1000) dwarfs their spread (0.01): one-pass sums of x and x^2 in
    # float32 lose that variance (x^2 ~ 1e6, where float32 steps by 0.06).
    data = 1000.0 + 0.01 * tf.random.stateless_normal([4, 3, 5, 5, 2], seed=[1, 2])
    with mirrored.scope():
        norm = layers.BatchNorm(synchronized=True, dtype="float32")
        norm.build(data.shape)
        norm.moving_mean.assign([1000.0, 1000.0])  # As after a few steps on such data.

    @tf.function
    def normalise(x):
        return mirrored.run(lambda x: norm(x, training=True), args=(x,))

    halves = mirrored.experimental_distribute_dataset(tf.data.Dataset.from_tensors(data))
    output = np.concatenate([
        y.numpy() for y in mirrored.experimental_local_results(normalise(next(iter(halves))))
    ])
    x = data.numpy().astype(np.float64)
    axes = (0, 1, 2, 3)
    expected = (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + 1e-5)
    np.testing.assert_allclose(output, expected, atol=1e-4)
