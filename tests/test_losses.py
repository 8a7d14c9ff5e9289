"""Tests of the contrastive losses, against NumPy and across replicas."""

import numpy as np
import pytest
import tensorflow as tf

from tfvssl import losses


def numpy_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def numpy_top_k(logits, labels, k):
    # Rank of the label's logit among its row (0 = highest); ties counted against.
    label_logits = logits[np.arange(len(labels)), labels][:, None]
    return float(np.mean((logits >= label_logits).sum(axis=1) - 1 < k))


def test_dense_predictive_nce_matches_numpy():
    rng = np.random.default_rng(0)
    batch, steps, h, w, depth = 3, 2, 2, 2, 8
    predictions = rng.normal(size=(batch, steps, h, w, depth)).astype(np.float32)
    targets = rng.normal(size=(batch, steps, h, w, depth)).astype(np.float32)

    out = losses.dense_predictive_nce(predictions, targets)

    # Rows and columns in (video, step, cell = h * w_size + w) order; positive on the diagonal.
    queries = predictions.reshape(-1, depth)
    keys = targets.reshape(-1, depth)
    logits = queries @ keys.T
    labels = np.arange(len(queries))
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["labels"], labels)
    np.testing.assert_allclose(out["loss"], numpy_cross_entropy(logits, labels).mean(), rtol=1e-5)
    for k in (1, 3, 5):
        assert float(losses.top_k_accuracy(out["logits"], out["labels"], k)) == pytest.approx(
            numpy_top_k(logits, labels, k)
        )


def test_top_k_accuracy_counts_ties_against_the_label():
    equal = tf.zeros([4, 6])
    assert float(losses.top_k_accuracy(equal, [0, 1, 2, 3], 1)) == 0.0  # in_top_k says 1.0.
    assert float(losses.top_k_accuracy(equal, [0, 1, 2, 3], 6)) == 1.0
    # Ties among the other logits do not matter; one tie with the label's costs a rank.
    logits = tf.constant([[3.0, 1.0, 1.0, 0.0], [2.0, 2.0, 1.0, 0.0], [0.0, 1.0, np.nan, 5.0]])
    assert float(losses.top_k_accuracy(logits, [0, 0, 2], 1)) == pytest.approx(1 / 3)
    assert float(losses.top_k_accuracy(logits, [0, 0, 2], 2)) == pytest.approx(2 / 3)  # NaN never hits.


def test_top_k_accuracy_equals_in_top_k_without_ties():
    logits = np.random.default_rng(0).normal(size=(50, 20)).astype(np.float32)
    labels = np.random.default_rng(1).integers(20, size=50)
    for k in (1, 3, 5):
        expected = np.mean(tf.math.in_top_k(labels, logits, k).numpy())
        assert float(losses.top_k_accuracy(logits, labels, k)) == pytest.approx(expected)


def test_info_nce_temperature_scales_logits():
    queries = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    keys = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    _, logits = losses.info_nce(queries, keys, tf.constant([0, 1]), temperature=0.5)
    np.testing.assert_allclose(logits, [[2.0, 0.0], [0.0, 4.0]])


def test_unknown_negatives_is_rejected():
    with pytest.raises(ValueError, match="--negatives=batch"):
        losses.replica_keys(tf.zeros([2, 3]), "batch")


def _per_replica_loss(strategy, predictions, targets, negatives):
    """Mean over replicas of each replica's loss, on consecutive halves of the batch."""
    dataset = tf.data.Dataset.from_tensor_slices((predictions, targets)).batch(len(predictions))
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def run(batch):
        def replica_fn(p, t):
            with tf.GradientTape() as tape:
                tape.watch([p, t])
                loss = losses.dense_predictive_nce(p, t, negatives)["loss"]
                # Gradients are summed over replicas: each carries its share of the mean.
                scaled = loss / strategy.num_replicas_in_sync
            return loss, tape.gradient(scaled, [p, t])

        loss, grads = strategy.run(replica_fn, args=batch)
        grads = [strategy.gather(g, axis=0) for g in grads]
        return strategy.reduce("MEAN", loss, axis=None), grads

    return run(batch)


def test_global_negatives_on_two_replicas_equal_one_device():
    rng = np.random.default_rng(1)
    predictions = rng.normal(size=(4, 2, 1, 2, 6)).astype(np.float32)
    targets = rng.normal(size=(4, 2, 1, 2, 6)).astype(np.float32)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    loss_global, grad_global = _per_replica_loss(mirrored, predictions, targets, "global")
    loss_replica, _ = _per_replica_loss(mirrored, predictions, targets, "replica")

    p, t = tf.constant(predictions), tf.constant(targets)
    with tf.GradientTape() as tape:
        tape.watch([p, t])
        single = losses.dense_predictive_nce(p, t)["loss"]
    np.testing.assert_allclose(loss_global, single, rtol=1e-5)
    # Gradients reach the targets of the other replica through all_gather.
    for got, expected in zip(grad_global, tape.gradient(single, [p, t])):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    halves = [losses.dense_predictive_nce(predictions[i : i + 2], targets[i : i + 2])["loss"] for i in (0, 2)]
    np.testing.assert_allclose(loss_replica, np.mean(halves), rtol=1e-5)
    assert abs(float(loss_replica) - float(single)) > 1e-3  # Fewer negatives, another loss.
