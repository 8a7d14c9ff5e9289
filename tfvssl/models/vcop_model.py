"""Video Clip Order Prediction, VCOP (Xu, Xiao, Zhao, Shao, Xie, Zhuang, CVPR 2019).

A tuple of n clips (16 consecutive frames each, 8 frames apart) is cut from a video and
shuffled; a 3-D CNN encodes each clip into a pooled feature, every pair (i < j) of features
is concatenated and mapped by a shared fully connected layer `fc7` (ReLU), the pair vectors
are concatenated, dropped out (0.5) and classified by `fc8` into the n! orders (the
lexicographic index of the shuffled order, `sampling.vcop_permutations`).

As the authors' code, the n slots go through the backbone in n separate calls, so in
training each BatchNorm normalises one slot's B clips; `--fold_clips` encodes all B*n clips
in one call instead. Preprocessing is the authors': frames resized to 128x171 (aspect not
kept, PIL bilinear), a random 112 crop per clip (different clips of a tuple, different
crops), values in [0, 1]; no flip, no colour jitter.
"""

import itertools
import math

import keras
import tensorflow as tf

from tfvssl.models import layers
from tfvssl.models.clip_encoder import build_clip_encoder, classification_logs
from tfvssl.models.pretext import PretextModel


# Width of the pairwise layer fc7, as the authors' VCOPN.
PAIR_FEATURES = 512


def _torch_dense(units, fan_in, name):
    """A `Linear` with PyTorch's default initialisation (the authors' code has none of its own)."""
    return keras.layers.Dense(
        units, kernel_initializer=layers.torch_default_kernel(),
        bias_initializer=layers.TorchDefaultBias(fan_in), name=name,
    )


@keras.saving.register_keras_serializable("tfvssl")
class ClipOrderPrediction(PretextModel):
    """The VCOP pretext model: `data = {"tuple": [B, n, T, H, W, 3], "label": [B]}`.

    Args:
      backbone: `BACKBONES` name of the 3-D CNN (`c3d`, `r3d`, `r21d`).
      clip_length, resolution: one clip is `[clip_length, resolution, resolution, 3]`.
      tuple_length: n, clips per tuple (2 to 5).
      fold_clips: one backbone call for all B*n clips instead of one per slot.
      dropout: dropout before `fc8` (0.5 in the paper).
      sync_bn: synchronised BatchNorm across replicas.
      weight_decay: coupled L2 (see `PretextModel`).
    """

    def __init__(
        self, backbone="r21d", clip_length=16, resolution=112, tuple_length=3, fold_clips=False, dropout=0.5,
        sync_bn=False, weight_decay=0.0, **kwargs
    ):
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.tuple_length = tuple_length
        self.fold_clips = fold_clips
        self.pairs = list(itertools.combinations(range(tuple_length), 2))
        self.encoder = build_clip_encoder(
            backbone, (clip_length, resolution, resolution, 3), layers.NormOptions(synchronized=sync_bn)
        )
        depth = self.encoder.output["embedding"].shape[-1]
        self.fc7 = _torch_dense(PAIR_FEATURES, 2 * depth, "fc7")
        self.fc7.build((None, 2 * depth))
        self.dropout = keras.layers.Dropout(dropout)
        hidden = PAIR_FEATURES * len(self.pairs)
        self.fc8 = _torch_dense(math.factorial(tuple_length), hidden, "fc8")
        self.fc8.build((None, hidden))

    def build(self, input_shape):
        self.built = True  # Every variable was created in __init__.

    def clip_features(self, tuples, training=None):
        """Pooled backbone features of every clip: `[B, n, T, H, W, 3]` -> `[B, n, D]`."""
        if self.fold_clips:
            folded = tf.reshape(tuples, [-1, *tuples.shape[2:]])
            features = self.encoder(folded, training=training)["embedding"]
            return tf.reshape(features, [-1, self.tuple_length, features.shape[-1]])
        slots = [self.encoder(tuples[:, i], training=training)["embedding"] for i in range(self.tuple_length)]
        return tf.stack(slots, axis=1)

    def order_logits(self, features, training=None):
        """The pairwise head: `[B, n, D]` clip features -> order logits.

        Returns:
          `{"fc7_out": [B, P, 512], "logits": [B, n!]}`: `fc7` of each pair's concatenated
          features `[f_i, f_j]` (pairs (0, 1), (0, 2), ..., (n-2, n-1)) before its ReLU, and
          the `fc8` logits of the dropped-out concatenation of the ReLU'd pair vectors.
        """
        first = tf.gather(features, [i for i, _ in self.pairs], axis=1)
        second = tf.gather(features, [j for _, j in self.pairs], axis=1)
        fc7_out = self.fc7(tf.concat([first, second], axis=-1))
        hidden = tf.reshape(tf.nn.relu(fc7_out), [-1, PAIR_FEATURES * len(self.pairs)])
        return {"fc7_out": fc7_out, "logits": self.fc8(self.dropout(hidden, training=training))}

    def call(self, tuples, training=None):
        features = self.clip_features(tuples, training=training)
        return {"clip_feature": features, **self.order_logits(features, training=training)}

    def compute_pretext(self, data, training):
        outputs = self(data["tuple"], training=training)
        return classification_logs(outputs["logits"], data["label"])
