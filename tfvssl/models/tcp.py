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
from absl import flags

from tfvssl import losses, methods
from tfvssl.data import augment, pipeline, records, sampling
from tfvssl.models import layers
from tfvssl.models.backbones import build_backbone
from tfvssl.models.pretext import PretextModel

flags.DEFINE_integer("num_segments", 10, "Temporal CPC: segments per sample (T).", lower_bound=2)
flags.DEFINE_integer(
    "segment_length", 10, "Temporal CPC: frames per segment (F), stacked on channels.", lower_bound=1
)
flags.DEFINE_float(
    "segment_crop_fraction", 224 / 256,
    "Temporal CPC: side of each segment's random square crop / the stored frames' short side "
    "(the paper crops 224 from 256x342 frames), resized to --resolution.",
)
flags.DEFINE_float(
    "color_drop_prob", 1.0, "Temporal CPC: probability of colour dropping, per RGB segment."
)
flags.DEFINE_list(
    "ar_kernel_size", ["3", "3", "3"],
    "Temporal CPC: kernel (time, height, width) of the temporally masked 3-D convolutions.",
)
flags.DEFINE_enum(
    "tcp_loss", "sum", ["sum", "mean"],
    "Temporal CPC: reduce the per-prediction InfoNCE losses by their sum, as Eq. 2 (at the "
    "paper's lr 0.01 it trains with the recipe's --grad_clip_norm=10, and diverges without), "
    "or by their mean over the 25 x 45 predictions of a batch (1,125 times smaller steps).",
)


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


def normalize_frames(frames, modality):
    """Model input of `[..., H, W, C]` frames (uint8, or float in [0, 1]): values in [0, 1];
    optical flow additionally has each frame's spatial mean subtracted (paper §4.2.2, after
    the two-stream networks), which removes the camera's mean motion."""
    frames = tf.image.convert_image_dtype(frames, tf.float32)
    if modality == "flow":
        frames -= tf.reduce_mean(frames, axis=[-3, -2], keepdims=True)
    return frames


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

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, use_bias=self.use_bias)
        return config


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
      backbone: registry name of a 2-D backbone (`resnet18_2d`).
      num_segments, segment_length, channels, resolution: the input `[T, R, R, C*F]`.
      ar_kernel_size: `(kT, kH, kW)` of the masked convolutions.
      loss_reduction: `"sum"` (Eq. 2) or `"mean"` of the per-prediction losses.
      negatives: `"replica"` or `"global"`.
      sync_bn: synchronised BatchNorm across replicas.
      weight_decay: coupled L2 (see `PretextModel`).
    """

    def __init__(
        self,
        backbone="resnet18_2d",
        num_segments=10,
        segment_length=10,
        channels=3,
        resolution=224,
        ar_kernel_size=(3, 3, 3),
        loss_reduction="sum",
        negatives="replica",
        sync_bn=False,
        weight_decay=0.0,
        **kwargs,
    ):
        super().__init__(weight_decay=weight_decay, **kwargs)
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(f"--tcp_loss={loss_reduction}: choose mean or sum")
        self.config = dict(
            backbone=backbone, num_segments=num_segments, segment_length=segment_length, channels=channels,
            resolution=resolution, ar_kernel_size=tuple(ar_kernel_size), loss_reduction=loss_reduction,
            negatives=negatives, sync_bn=sync_bn,
        )
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

    def build_encoder(self):
        return self.encoder

    def get_config(self):
        return {**super().get_config(), **self.config}


@methods.register_method
class TemporalCPC(methods.Method):
    """Temporal contrastive pretraining; recipe of the paper (§4.2): T = F = 10 at 224 px,
    batch 25, SGD momentum 0.9, weight decay 1e-4, lr 0.01 decreased at 20k, 40k and 60k
    of 150k iterations (UCF101); and, not in the paper, the gradient clipped to a norm of
    10, without which Eq. 2's sum diverges at that lr."""

    name = "tcp"
    identity_flags = methods.Method.identity_flags + ("num_segments", "segment_length", "ar_kernel_size")
    recipe = dict(
        backbone="resnet18_2d", resolution=224, batch_size=25, optimizer="sgd", lr=0.01,
        weight_decay=1e-4, lr_schedule="steps", lr_decay_steps=[20_000, 40_000, 60_000],
        lr_decay_factor=0.1, train_steps=150_000, grad_clip_norm=10.0,
    )

    def validate(self):
        c = self.config
        if c.modality not in records.MODALITY_KEYS:
            raise ValueError(f"--modality={c.modality}: choose one of {sorted(records.MODALITY_KEYS)}")
        if not 0.0 < c.segment_crop_fraction <= 1.0:
            raise ValueError(f"--segment_crop_fraction={c.segment_crop_fraction}: must be in (0, 1]")
        if not 0.0 <= c.color_drop_prob <= 1.0:
            raise ValueError(f"--color_drop_prob={c.color_drop_prob}: must be in [0, 1]")
        try:
            TemporallyMaskedConv3D(1, self.kernel_size())
        except ValueError as error:
            raise ValueError(f"--ar_kernel_size={','.join(c.ar_kernel_size)}: {error}") from None

    def kernel_size(self):
        try:
            return tuple(int(k) for k in self.config.ar_kernel_size)
        except ValueError:
            raise ValueError(f"--ar_kernel_size={','.join(self.config.ar_kernel_size)}: needs integers") from None

    def channels(self):
        return records.MODALITY_CHANNELS[self.config.modality]

    def min_frames(self):
        return sampling.segments_span(self.config.num_segments, self.config.segment_length)

    def train_example(self, video, seed):
        """T segments, each cropped at its own random position: `{"segments": [T, F, R, R,
        C]}` in the modality's stored dtype, and `"colour_seeds": [T, 2]`, one per segment;
        colour dropping, scaling and stacking come after batching (`batch_augment`)."""
        c = self.config
        sample_seed, crop_seed, colour_seed = sampling.split_seed(seed, 3)
        num_segments, length, size = c.num_segments, c.segment_length, c.resolution
        indices = sampling.sample_segments(video["num_frames"], num_segments, length, sample_seed)
        frames = pipeline.decode_frames(video[c.modality], tf.reshape(indices, [-1]), c.modality)
        segments = tf.reshape(frames, tf.concat([[num_segments, length], tf.shape(frames)[1:]], 0))
        crop = self.crop_side(frames)

        def crop_segment(segment, segment_seed):
            return augment.resize(augment.random_crop(segment, crop, segment_seed), size)

        segments = augment.map_per_clip(crop_segment, segments, crop_seed)
        return {
            "segments": tf.ensure_shape(segments, [num_segments, length, size, size, self.channels()]),
            "colour_seeds": tf.random.experimental.stateless_split(colour_seed, num_segments),
        }

    def batch_augment(self, batch):
        """Colour dropping of every RGB segment (its own draw, so that consecutive,
        overlapping segments differ in colour), the modality's scaling, and the frames
        stacked on channels: `{"segments": float32 [B, T, R, R, C*F]}`."""
        segments = batch["segments"]
        if self.config.modality == "rgb":
            shape = tf.shape(segments)
            dropped = augment.color_drop(
                tf.reshape(segments, tf.concat([[-1], shape[2:]], 0)),
                tf.reshape(batch["colour_seeds"], [-1, 2]), self.config.color_drop_prob,
            )
            segments = tf.ensure_shape(tf.reshape(dropped, shape), segments.shape)
        return {"segments": stack_frames(normalize_frames(segments, self.config.modality))}

    def build_model(self, norm_options=None):
        c = self.config
        return TemporalContrastivePretraining(
            backbone=c.backbone, num_segments=c.num_segments, segment_length=c.segment_length,
            channels=self.channels(), resolution=c.resolution, ar_kernel_size=self.kernel_size(),
            loss_reduction=c.tcp_loss, negatives=c.negatives, sync_bn=c.sync_bn,
            weight_decay=c.weight_decay if c.optimizer != "adamw" else 0.0,
        )

    def clip_shape(self):
        c = self.config
        span = sampling.segments_span(c.num_segments, c.segment_length)
        return (span, c.resolution, c.resolution, self.channels())

    def normalize(self, frames):
        return normalize_frames(frames, self.config.modality)

    def crop_side(self, frames):
        """Side of the square crops of `[T, H, W, C]` frames: `segment_crop_fraction` of the
        short side (224 of 256)."""
        short_side = tf.minimum(tf.shape(frames)[1], tf.shape(frames)[2])
        return tf.cast(tf.round(tf.cast(short_side, tf.float32) * self.config.segment_crop_fraction), tf.int32)

    def eval_clip(self, frames):
        # The supervised stage's test view: the centre crop of the training crop's size.
        clip = augment.center_crop(frames, self.crop_side(frames))
        return self.normalize(augment.resize(clip, self.config.resolution))

    def downstream_clip(self, frames, seed):
        # §4.2.2: supervised stages crop the whole clip at one random position (every
        # segment alike) and flip it; no colour dropping.
        crop_seed, flip_seed = sampling.split_seed(seed, 2)
        clip = augment.resize(augment.random_crop(frames, self.crop_side(frames), crop_seed), self.config.resolution)
        return self.normalize(augment.random_flip(clip, flip_seed))

    def classifier_method(self, config, training):
        # §4.2.4: the classifier trains on 8 segments and is tested on 15.
        train, test = config.classifier_segments
        return type(self)({**vars(self.config), "num_segments": train if training else test})
