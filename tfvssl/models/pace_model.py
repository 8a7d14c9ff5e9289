"""Pace prediction with its contrastive regulariser (Wang, Jiao, Liu, ECCV 2020).

A clip is sampled from a video at a pace drawn from a set of candidates (default 1, 2, 3,
4: every p-th frame; a slow pace such as 1/2 repeats each frame 1/p times) and a 3-D CNN
classifies the pace from the globally pooled feature. Per-frame colour jitter keeps the
network from telling paces by low-level frame statistics.

The contrastive term (paper §3.2; never released by the authors) comes in two variants:

* same context: each video gives two clips at two *different* paces; the two clips of a
  video are positives, clips of other videos negatives (Eq. 2);
* same pace: one clip per video; clips with the same pace label are positives, the rest
  negatives (Eq. 3).

Scores are plain dot products of the (optionally projected) features, with no temperature
and no normalisation, as in the paper; both are options. The loss is
`lambda_cls * L_cls + lambda_ctr * L_ctr` (1 and 0.1).

Where the authors' code differs from the paper (options here): it feeds BGR frames
(`--pace_bgr`); it has no contrastive term (`--contrastive=none`) and no slow paces.
"""

import keras
import tensorflow as tf

from tfvssl import losses
from tfvssl.models import layers
from tfvssl.models.clip_encoder import build_clip_encoder, classification_logs
from tfvssl.models.pretext import PretextModel, check_choice

CONTRASTIVE = ("none", "same_context", "same_pace")


def multi_positive_info_nce(queries, keys, positives, excluded, temperature=None):
    """InfoNCE with any number of positives per query (supervised-contrastive form).

    For query i with positives P(i) among the keys that are not excluded (A(i)):
    `loss_i = -1/|P(i)| sum_{p in P(i)} log(exp(s_ip) / sum_{a in A(i)} exp(s_ia))`, with
    `s = q . k` (divided by `temperature` when given). With one positive per query it is
    the usual InfoNCE (SimCLR's NT-Xent when queries are keys and each excludes itself).

    Args:
      queries: `[M, D]`.
      keys: `[K, D]`.
      positives: `[M, K]` bool.
      excluded: `[M, K]` bool, keys that are no candidates (e.g. the query itself).
      temperature: optional positive float.

    Returns:
      `{"loss": mean loss_i, "accuracy": fraction of queries whose highest-scoring candidate
      is a positive}` (float32 scalars) over the queries that have a positive; 0 when none
      has.
    """
    logits = tf.matmul(tf.cast(queries, tf.float32), tf.cast(keys, tf.float32), transpose_b=True)
    if temperature:
        logits = logits / temperature
    logits = tf.where(excluded, tf.float32.min, logits)
    positives = tf.logical_and(positives, tf.logical_not(excluded))
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    num_positives = tf.reduce_sum(tf.cast(positives, tf.float32), axis=-1)
    row_losses = -tf.math.divide_no_nan(
        tf.reduce_sum(tf.where(positives, log_probs, 0.0), axis=-1), num_positives
    )
    has_positive = tf.cast(num_positives > 0, tf.float32)
    best = tf.argmax(logits, axis=-1, output_type=tf.int32)
    hits = tf.cast(tf.gather(positives, best, batch_dims=1), tf.float32)
    count = tf.reduce_sum(has_positive)
    return {
        "loss": tf.math.divide_no_nan(tf.reduce_sum(row_losses * has_positive), count),
        "accuracy": tf.math.divide_no_nan(tf.reduce_sum(hits * has_positive), count),
    }


@keras.saving.register_keras_serializable("tfvssl")
class PacePrediction(PretextModel):
    """The Pace pretext model: `data = {"clips": [B, K, T, H, W, 3], "pace": [B, K]}`.

    K is 2 for the same-context term (two clips of each video at different paces) and 1
    otherwise. All B*K clips are classified; the contrastive term compares them all.

    Args:
      backbone: `BACKBONES` name (`c3d`, `r3d`, `r3d18`, `r21d`, `s3dg`, ...).
      clip_length, resolution: one clip is `[clip_length, resolution, resolution, 3]`.
      num_paces: pace classes.
      contrastive: one of `CONTRASTIVE`.
      lambda_cls, lambda_ctr: loss weights.
      projection: `"none"` or `"mlp"` (fully connected + ReLU of `projection_dim` outputs),
        used only with a contrastive term.
      projection_dim: output size of the projection.
      temperature: divides the contrastive scores when given.
      cosine_similarity: L2-normalise the contrastive features.
      negatives: `"replica"` or `"global"` (`losses.replica_keys`).
      sync_bn: synchronised BatchNorm across replicas.
      weight_decay: coupled L2 (see `PretextModel`).
    """

    def __init__(
        self, backbone="r21d", clip_length=16, resolution=112, num_paces=4, contrastive="same_context",
        lambda_cls=1.0, lambda_ctr=0.1, projection="mlp", projection_dim=8, temperature=None,
        cosine_similarity=False, negatives="replica", sync_bn=False, weight_decay=0.0, **kwargs
    ):
        check_choice("contrastive", contrastive, CONTRASTIVE)
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.contrastive = contrastive
        self.lambda_cls, self.lambda_ctr = lambda_cls, lambda_ctr
        self.temperature = temperature
        self.cosine_similarity = cosine_similarity
        self.negatives = negatives
        self.encoder = build_clip_encoder(
            backbone, (clip_length, resolution, resolution, 3), layers.NormOptions(synchronized=sync_bn)
        )
        depth = self.encoder.output["embedding"].shape[-1]
        # The authors' `linear` (C3D, R3D, R(2+1)D) or `fc` (S3D-G): a plain Linear(D, paces).
        self.pace_head = layers.ClassificationHead(
            num_paces, dropout=0.0, batch_norm=False, orthogonal_init=False, name="pace_head"
        )
        self.pace_head.build((None, depth))
        self.projection = None
        if projection == "mlp" and contrastive != "none":
            self.projection = keras.layers.Dense(
                projection_dim, activation="relu", kernel_initializer=layers.torch_default_kernel(),
                bias_initializer=layers.TorchDefaultBias(depth), name="projection",
            )
            self.projection.build((None, depth))

    def build(self, input_shape):
        self.built = True  # Every variable was created in __init__.

    def call(self, clips, training=None):
        """`[N, T, H, W, 3]` clips -> `{"embedding": [N, D], "logits": [N, paces],
        "contrastive_features": [N, D']}` (float32 logits and features)."""
        embedding = self.encoder(clips, training=training)["embedding"]
        features = self.projection(embedding) if self.projection is not None else embedding
        features = tf.cast(features, tf.float32)
        if self.cosine_similarity:
            features = tf.math.l2_normalize(features, axis=-1)
        logits = tf.cast(self.pace_head(embedding, training=training), tf.float32)
        return {"embedding": embedding, "logits": logits, "contrastive_features": features}

    def contrastive_logs(self, features, labels, clips_per_video):
        """The contrastive loss and accuracy of `[N, D']` features, N = videos * K.

        Rows are video-major (row = video * K + clip). Positives are the other clips of the
        same video (same context) or of the same pace (same pace); every clip but the query
        itself is a candidate, across replicas with `negatives="global"`.
        """
        keys, offset = losses.replica_keys(features, self.negatives)
        rows = tf.range(tf.shape(features)[0])
        if self.contrastive == "same_context":
            # The replica's row offset makes video ids unique across replicas.
            groups = offset + rows // clips_per_video
        else:
            groups = tf.cast(labels, tf.int32)
        key_groups, _ = losses.replica_keys(groups, self.negatives)
        columns = tf.range(tf.shape(keys)[0])
        itself = tf.equal((offset + rows)[:, None], columns[None, :])
        same_group = tf.equal(groups[:, None], key_groups[None, :])
        return multi_positive_info_nce(features, keys, same_group, itself, self.temperature)

    def compute_pretext(self, data, training):
        clips, paces = data["clips"], data["pace"]
        clips_per_video = clips.shape[1]
        labels = tf.reshape(paces, [-1])
        outputs = self(tf.reshape(clips, [-1, *clips.shape[2:]]), training=training)
        logs = classification_logs(outputs["logits"], labels)
        logs["cls_loss"] = logs["loss"]
        logs["loss"] = self.lambda_cls * logs["cls_loss"]
        if self.contrastive != "none":
            contrastive = self.contrastive_logs(outputs["contrastive_features"], labels, clips_per_video)
            logs["ctr_loss"], logs["ctr_accuracy"] = contrastive["loss"], contrastive["accuracy"]
            logs["loss"] += self.lambda_ctr * logs["ctr_loss"]
        return logs
