"""Temporal contrastive pretraining (Lorre, Rabarisoa, Orcesi, Ainouz, Canu, WACV 2020).

Contrastive predictive coding over time. A video sample is T segments of F consecutive
frames, each segment starting F // 2 frames after the previous one (half overlap); the F
frames of a segment are stacked on the channel axis (3F channels for RGB, 2F for optical
flow, F for grey image differences) and a 2-D ResNet-18 `f` encodes each into a map h_t.
An autoregressive model `a` of three temporally masked 3-D convolutions, with BatchNorm
and ReLU between them, turns the maps into contexts c_t that see only h_1..h_t. Targets
are the spatial means z_t of the maps; from the spatial mean of c_t, T-1 linear maps W_k
predict every remaining segment, z_hat_{t,t+k} = W_k p(c_t) for k = 1..T-t. Each
prediction is classified by dot product against the targets of all segments of the
batch: the other videos' and the other segments of its own video ("difficult
negatives"), B*T - 1 negatives (paper Eq. 1). The loss is Eq. 2's sum of these losses
over videos, contexts and steps (1,125 terms per batch of 25). With the paper's SGD at
lr 0.01 the sum alone diverges: its first gradient has a norm of ~2,000, nearly all in
the zero-initialised predictors, and the loss goes 6,212 -> 3.8e5 -> 1.5e15 -> NaN in
three steps (README, "Temporal CPC's loss"). The recipe therefore clips each update's
gradient to a norm of 10 (`--grad_clip_norm`), which keeps the paper's loss, lr and
weight decay, and trains. `--tcp_loss=mean` divides the loss by the number of
predictions (each step then ~1,000 times smaller, and the weight decay ~1,000 times
stronger relative to the loss, than the paper's).

The authors released no code. Figure 2's kernel sizes do not survive in the text, so the
masked convolutions are 3x3x3 (`--ar_kernel_size`); a masked convolution pads only the
past, so c_t depends on h_{t-2..t} at the first layer and h_{t-6..t} after three.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvssl import losses
from tfvssl.data import sampling
from tfvssl.models import layers
from tfvssl.models.backbones import build_backbone
from tfvssl.models.pretext import PretextModel, check_choice


def stack_frames(segments):
    """Stacks each segment's frames on the channel axis, frame-major (frame 0's channels first).

    Args:
      segments: `[..., F, H, W, C]` with static F and C.

    Returns:
      `[..., H, W, F*C]`.
    """
    rank = segments.shape.rank
    moved = tf.transpose(segments, [*range(rank - 4), rank - 3, rank - 2, rank - 4, rank - 1])
    channels = segments.shape[-4] * segments.shape[-1]
    return tf.reshape(moved, tf.concat([tf.shape(moved)[:-2], [channels]], 0))


@keras.saving.register_keras_serializable("tfvssl")
class TemporallyMaskedConv3D(keras.layers.Layer):
    """A 3-D convolution causal in time: output step t sees input steps t-kT+1 .. t only.

    The sequence is padded with kT-1 zero steps before its start and none after its end;
    height and width are zero-padded symmetrically ("same" for odd kernels).
    Input `[B, T, h, w, C]`, output `[B, T, h, w, filters]`.
    """

    def __init__(self, filters, kernel_size=(3, 3, 3), use_bias=True, **kwargs):
        super().__init__(**kwargs)
        kernel_size = tuple(int(k) for k in kernel_size)
        if len(kernel_size) != 3 or min(kernel_size) < 1 or not all(k % 2 for k in kernel_size[1:]):
            raise ValueError(f"kernel_size must be 3 positive sizes, odd in space; got {kernel_size}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.use_bias = use_bias
        self.conv = layers.Conv(
            filters, kernel_size, padding=(0, kernel_size[1] // 2, kernel_size[2] // 2), use_bias=use_bias,
            kernel_initializer=layers.kaiming_normal_fan_out(), name="conv",
        )

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x):
        past = self.kernel_size[0] - 1
        return self.conv(tf.pad(x, [[0, 0], [past, 0], [0, 0], [0, 0], [0, 0]]))


@keras.saving.register_keras_serializable("tfvssl")
class MaskedConvAggregator(keras.layers.Layer):
    """The autoregressive model `a` (paper Fig. 2): three temporally masked 3-D convolutions
    separated by BatchNorm and ReLU. `[B, T, h, w, D]` maps -> `[B, T, h, w, D]` contexts.

    In training, BatchNorm's batch statistics pool all steps; in inference c_t depends on
    h_1..h_t only.
    """

    def __init__(self, depth, kernel_size=(3, 3, 3), sync_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth
        self.kernel_size = tuple(kernel_size)
        self.sync_bn = sync_bn
        # A bias before BatchNorm is redundant: only the last convolution has one.
        self.convs = [
            TemporallyMaskedConv3D(depth, kernel_size, use_bias=index == 2, name=f"conv{index}")
            for index in range(3)
        ]
        norm = layers.NormOptions(synchronized=sync_bn)
        self.norms = [norm(f"bn{index}") for index in range(2)]

    def build(self, input_shape):
        for conv in self.convs:
            conv.build(input_shape)
        for bn in self.norms:
            bn.build(input_shape)

    def call(self, maps, training=None):
        x = maps
        for conv, bn in zip(self.convs, self.norms):
            x = tf.nn.relu(bn(conv(x), training=training))
        return self.convs[-1](x)

    def get_config(self):
        config = super().get_config()
        config.update(depth=self.depth, kernel_size=self.kernel_size, sync_bn=self.sync_bn)
        return config


@keras.saving.register_keras_serializable("tfvssl")
class SegmentEncoder(keras.Model):
    """`f` applied to the segments of a clip (the exported encoder).

    Input `[B, L, H, W, C]` clips of consecutive frames, L = (T' - 1) * (F // 2) + F for
    some T' (static); they are cut into T' half-overlapping segments of F frames. Output
    `{"embedding": [B, D], "feature_map": [B, T', h, w, D], "segment_embeddings":
    [B, T', D]}`: the segment embeddings are the targets z_t (spatial means), the
    embedding their mean over the segments, which the paper found better than the
    contexts for classification (§3.2).
    """

    def __init__(self, backbone, segment_length, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.segment_length = segment_length

    def build(self, input_shape):
        self.built = True  # The backbone comes built.

    def get_config(self):
        # The backbone is serialized whole, so an exported `.keras` encoder reloads.
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone), segment_length=self.segment_length
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def segment_maps(self, segments, training=None):
        """`[B, T, H, W, C*F]` stacked segments -> maps h `[B, T, h, w, D]`."""
        shape = tf.shape(segments)
        folded = tf.reshape(segments, tf.concat([[-1], shape[2:]], 0))
        maps = self.backbone(folded, training=training)["stage5"]
        num_segments = segments.shape[1] if segments.shape[1] is not None else shape[1]
        return tf.reshape(maps, tf.concat([[-1, num_segments], tf.shape(maps)[1:]], 0))

    def to_segments(self, clips):
        """`[B, L, H, W, C]` -> `[B, T', H, W, C*F]` half-overlapping stacked segments."""
        length, stride = clips.shape[1], sampling.segment_stride(self.segment_length)
        if length is None or length < self.segment_length or (length - self.segment_length) % stride:
            raise ValueError(
                f"clip length {length} does not cut into segments of {self.segment_length} frames "
                f"every {stride} frames"
            )
        num_segments = (length - self.segment_length) // stride + 1
        offsets = sampling.segment_offsets(num_segments, self.segment_length, stride)
        return stack_frames(tf.gather(clips, offsets, axis=1))

    def call(self, clips, training=None):
        maps = self.segment_maps(self.to_segments(clips), training=training)
        segment_embeddings = tf.reduce_mean(maps, axis=[2, 3])
        return {
            "embedding": tf.reduce_mean(segment_embeddings, axis=1),
            "feature_map": maps,
            "segment_embeddings": segment_embeddings,
        }


def prediction_pairs(num_segments):
    """The (context step t, steps ahead k) of every prediction, t + k < T, ordered by t then k.

    Returns:
      Two int32 arrays of T(T-1)/2 entries (45 for T = 10).
    """
    steps, ahead = zip(*[(t, k) for t in range(num_segments) for k in range(1, num_segments - t)])
    return np.array(steps, np.int32), np.array(ahead, np.int32)


@keras.saving.register_keras_serializable("tfvssl")
class TemporalContrastivePretraining(PretextModel):
    """The temporal CPC pretext model: `data = {"segments": [B, T, H, W, C*F]}`.

    Args:
      backbone: `BACKBONES` name of a 2-D backbone (`resnet18_2d`).
      num_segments, segment_length, channels, resolution: the input `[T, R, R, C*F]`.
      ar_kernel_size: `(kT, kH, kW)` of the masked convolutions.
      loss_reduction: `"sum"` (Eq. 2) or `"mean"` of the per-prediction losses.
      negatives: `"replica"` or `"global"`.
      sync_bn: synchronised BatchNorm across replicas.
      weight_decay: coupled L2 (see `PretextModel`).
    """

    def __init__(
        self, backbone="resnet18_2d", num_segments=10, segment_length=10, channels=3, resolution=224,
        ar_kernel_size=(3, 3, 3), loss_reduction="sum", negatives="replica", sync_bn=False,
        weight_decay=0.0, **kwargs
    ):
        check_choice("tcp_loss", loss_reduction, ("sum", "mean"))
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.num_segments = num_segments
        self.loss_reduction = loss_reduction
        self.negatives = negatives
        norm = layers.NormOptions(synchronized=sync_bn)
        net = build_backbone(
            backbone, (resolution, resolution, channels * segment_length), norm=norm, name="backbone"
        )
        self.encoder = SegmentEncoder(net, segment_length, name="encoder")
        map_shape = (None, num_segments, *net.output["stage5"].shape[1:])
        depth = map_shape[-1]
        self.autoregressive = MaskedConvAggregator(depth, ar_kernel_size, sync_bn, name="autoregressive")
        self.autoregressive.build(map_shape)
        # W_k predicts k segments ahead, k = 1 .. T-1. The paper gives no initialisation;
        # zeros make every score 0 and the loss log(B*T), chance, at the start, whatever the
        # resolution (with 1x1 maps the scores of random W_k are ~15x those at 224 px).
        self.predictors = [
            keras.layers.Dense(depth, use_bias=False, kernel_initializer="zeros", name=f"predictor_{k}")
            for k in range(1, num_segments)
        ]
        for predictor in self.predictors:
            predictor.build((None, depth))
        steps, ahead = prediction_pairs(num_segments)
        # Row of each prediction among the [T, T-1] (step, k - 1) grid, and its target step.
        self._pair_rows = steps * (num_segments - 1) + ahead - 1
        self._pair_targets = steps + ahead

    def build(self, input_shape):
        # Every variable was created in __init__ (the shapes follow from the config).
        self.built = True

    def call(self, segments, training=None):
        """`[B, T, H, W, C*F]` -> `predictions` `[B, T(T-1)/2, D]` (the pairs of
        `prediction_pairs`), `targets` z `[B, T, D]` and `contexts` `[B, T, h, w, D]`."""
        maps = self.encoder.segment_maps(segments, training=training)
        contexts = self.autoregressive(maps, training=training)
        pooled = tf.reduce_mean(contexts, axis=[2, 3])
        every = tf.stack([predictor(pooled) for predictor in self.predictors], axis=2)  # [B, T, T-1, D]
        every = tf.reshape(every, [-1, self.num_segments * (self.num_segments - 1), every.shape[-1]])
        return {
            "predictions": tf.gather(every, self._pair_rows, axis=1),
            "targets": tf.reduce_mean(maps, axis=[2, 3]),
            "contexts": contexts,
        }

    def compute_pretext(self, data, training):
        outputs = self(data["segments"], training=training)
        depth = outputs["targets"].shape[-1]
        keys, offset = losses.replica_keys(tf.reshape(outputs["targets"], [-1, depth]), self.negatives)
        videos = tf.range(tf.shape(outputs["predictions"])[0])[:, None] * self.num_segments
        positives = offset + tf.reshape(videos + self._pair_targets[None, :], [-1])
        per_prediction, logits = losses.info_nce(tf.reshape(outputs["predictions"], [-1, depth]), keys, positives)
        if self.loss_reduction == "sum":
            # Eq. 2 sums over the global batch, and the trainer averages the replicas' losses.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = tf.reduce_sum(per_prediction) * replicas
        else:
            loss = tf.reduce_mean(per_prediction)
        logs = {"loss": loss}
        for k in (1, 5):
            logs[f"top{k}"] = losses.top_k_accuracy(logits, positives, k)
        return logs
