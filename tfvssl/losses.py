"""Contrastive losses shared by the methods, and the cross-replica gathering of negatives.

Scores are computed in float32 whatever the compute dtype: with mixed precision the
dot products of 256-d features reach magnitudes where float16 loses the ranking.
"""

import tensorflow as tf

NEGATIVES = ("replica", "global")


def replica_keys(keys, negatives="replica"):
    """The candidate keys a replica scores its queries against.

    With `negatives="replica"` (the authors' per-GPU behaviour under DataParallel) only this
    replica's keys are candidates. With `"global"` the keys of all replicas are gathered, so
    the task sees the whole global batch; `all_gather` is differentiable, and since the
    trainer sums gradients over replicas, the result equals one device with the global
    batch.

    Args:
      keys: `[K, ...]` this replica's keys.
      negatives: `"replica"` or `"global"`.

    Returns:
      `(candidates [K or R*K, ...], offset)` where `offset` is the row of this replica's
      first key among the candidates.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"--negatives={negatives}: choose one of {NEGATIVES}")
    context = tf.distribute.get_replica_context()
    if negatives == "global" and context is not None and context.num_replicas_in_sync > 1:
        candidates = context.all_gather(keys, axis=0)
        offset = tf.cast(context.replica_id_in_sync_group, tf.int32) * tf.shape(keys)[0]
        return candidates, offset
    return keys, tf.constant(0, tf.int32)


def info_nce(queries, keys, positives, temperature=None):
    """Cross-entropy of dot-product scores with one positive key per query.

    Args:
      queries: `[M, D]`.
      keys: `[K, D]`.
      positives: `[M]` int, the index of each query's positive among the keys.
      temperature: divides the scores when given (DPC, MemDPC and temporal CPC use none).

    Returns:
      `(losses [M] float32, logits [M, K] float32)`.
    """
    logits = tf.matmul(tf.cast(queries, tf.float32), tf.cast(keys, tf.float32), transpose_b=True)
    if temperature:
        logits = logits / temperature
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)
    return losses, logits


def top_k_accuracy(logits, labels, k):
    """Fraction of rows whose label's logit is finite and beaten or tied by fewer than `k`
    others. `logits` `[M, K]`, `labels` `[M]`.

    Ties count against the label (unlike `tf.math.in_top_k`), so that a model with equal
    logits everywhere, e.g. zero-initialised predictors, scores 0 rather than 1.
    """
    logits = tf.cast(logits, tf.float32)
    target = tf.gather(logits, tf.cast(labels, tf.int32), axis=1, batch_dims=1)  # [M]
    rivals = tf.reduce_sum(tf.cast(logits >= target[:, None], tf.int32), axis=1) - 1
    hits = tf.logical_and(rivals < k, tf.math.is_finite(target))
    return tf.reduce_mean(tf.cast(hits, tf.float32))


def dense_predictive_nce(predictions, targets, negatives="replica"):
    """DPC's dense NCE: every (video, step, position) prediction against every target.

    Rows and columns are ordered (video b, step p, cell h*w); the positive of a row is the
    target at the same (b, p, cell). All other entries, whether the same video at another
    step or cell or another video, are negatives; no normalisation, no temperature.

    Args:
      predictions: `[B, P, h, w, D]` predicted future features.
      targets: `[B, P, h, w, D]` the true (pre-ReLU) future features.
      negatives: `"replica"` or `"global"` (see `replica_keys`).

    Returns:
      A dict with `loss` (mean cross-entropy, float32 scalar), `logits` `[M, K]` and
      `labels` `[M]`, M = B*P*h*w.
    """
    depth = tf.shape(predictions)[-1]
    queries = tf.reshape(predictions, [-1, depth])
    keys, offset = replica_keys(tf.reshape(targets, [-1, depth]), negatives)
    labels = offset + tf.range(tf.shape(queries)[0])
    losses, logits = info_nce(queries, keys, labels)
    return {"loss": tf.reduce_mean(losses), "logits": logits, "labels": labels}
