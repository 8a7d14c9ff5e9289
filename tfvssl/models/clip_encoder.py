"""What Pace prediction and VCOP share: a 3-D CNN clip encoder and the clip preprocessing.

Both papers train a classifier over a globally pooled 3-D CNN feature (C3D, R3D, R(2+1)D,
S3D-G) on clips of consecutive frames that are resized to a fixed frame size (128x171,
aspect not kept) and cropped (112 px), and evaluate with a centre crop. The encoder here is
that pooled feature; each method adds its own head and recipe.
"""

import keras
import tensorflow as tf

from tfvssl.models.backbones import build_backbone


def build_clip_encoder(backbone, input_shape, norm, name="encoder"):
    """A backbone with its stage features globally average-pooled.

    Args:
      backbone: `BACKBONES` name (`c3d`, `r3d`, `r21d`, `s3dg`, ...).
      input_shape: `(T, H, W, C)` of one clip.
      norm: `layers.NormOptions` of the backbone's BatchNorm layers.
      name: model name.

    Returns:
      A functional model from float clips `[B, T, H, W, C]` to
      `{"embedding": [B, D], "feature_map": [B, t, h, w, D], "p5": [B, D], "p4": [B, D4],
      "conv5_maxpool": [B, t * (h // 2) * (w // 2) * D]}`: the feature map is the last
      stage; `p5` (= `embedding`, the authors' classifier input) and `p4` are the last two
      stages averaged over time and space, the retrieval features of the Pace paper;
      `conv5_maxpool` is VCOP's retrieval feature (§4.1 and its `retrieve_clips.py`), the
      last stage max-pooled over (1, 2, 2) windows and flattened (512x2x3x3 = 9,216 values
      for 16x112x112 clips; absent when the last stage is smaller than 2x2). Pooled
      features are float32 under mixed precision.
    """
    net = build_backbone(backbone, input_shape, norm=norm, name="backbone")
    clips = keras.Input(input_shape, name="clips")
    maps = net(clips)
    # Pooling in the variables' dtype (float32 under mixed precision): a bfloat16 mean over
    # all positions would lose the low bits.
    pool_dtype = keras.config.dtype_policy().variable_dtype
    p5 = keras.layers.GlobalAveragePooling3D(dtype=pool_dtype, name="p5")(maps["stage5"])
    p4 = keras.layers.GlobalAveragePooling3D(dtype=pool_dtype, name="p4")(maps["stage4"])
    outputs = {"embedding": p5, "feature_map": maps["stage5"], "p5": p5, "p4": p4}
    if min(maps["stage5"].shape[2:4]) >= 2:  # Tiny clips' 1x1 maps have no 2x2 window.
        # Flattened channels-last (t, h, w, D), not the authors' (D, t, h, w): one fixed
        # permutation of every feature, which leaves their cosine similarities as they were.
        conv5 = keras.layers.MaxPooling3D((1, 2, 2), dtype="float32", name="conv5_pool")(maps["stage5"])
        outputs["conv5_maxpool"] = keras.layers.Flatten(dtype="float32", name="conv5_maxpool")(conv5)
    return keras.Model(clips, outputs, name=name)


def classification_logs(logits, labels):
    """Mean cross-entropy and top-1 accuracy of `[M, K]` logits against `[M]` int labels.

    Returns:
      `{"loss": float32 scalar, "accuracy": float32 scalar}`.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
    return {"loss": tf.reduce_mean(losses), "accuracy": tf.reduce_mean(tf.cast(hits, tf.float32))}
