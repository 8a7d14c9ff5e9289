"""Temporal CPC as the trainer sees it: its flags, the segment sampler and augmentations,
and the `Method` (model in `tfvssl.models.tcp_model`)."""

import tensorflow as tf
from absl import flags

from tfvssl.data import augment, pipeline, records, sampling
from tfvssl.methods.base import Method, short_side_fraction
from tfvssl.models.tcp_model import TemporalContrastivePretraining, TemporallyMaskedConv3D, stack_frames
from tfvssl.train import optim


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


def normalize_frames(frames, modality):
    """Model input of `[..., H, W, C]` frames (uint8, or float in [0, 1]): values in [0, 1];
    optical flow additionally has each frame's spatial mean subtracted (paper §4.2.2, after
    the two-stream networks), which removes the camera's mean motion."""
    frames = tf.image.convert_image_dtype(frames, tf.float32)
    if modality == "flow":
        frames -= tf.reduce_mean(frames, axis=[-3, -2], keepdims=True)
    return frames


class TemporalCPC(Method):
    """Temporal contrastive pretraining; recipe of the paper (§4.2): T = F = 10 at 224 px,
    batch 25, SGD momentum 0.9, weight decay 1e-4, lr 0.01 decreased at 20k, 40k and 60k
    of 150k iterations (UCF101); and, not in the paper, the gradient clipped to a norm of
    10, without which Eq. 2's sum diverges at that lr."""

    name = "tcp"
    identity_flags = Method.identity_flags + ("num_segments", "segment_length", "ar_kernel_size")
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
        """T segments, each cropped at its own random position and resized to the
        resolution: `{"segments": [T, F, h, w, C]}`, the windows each segment's crop reads
        (in the modality's stored dtype), with `"rows"` `[T, R, h]` and `"cols"` `[T, R, w]`,
        their resize plans (`augment.resize_plan`), and `"color_seeds": [T, 2]`, one per
        segment; the resize, colour dropping, scaling and stacking come after batching
        (`batch_augment`)."""
        c = self.config
        sample_seed, crop_seed, color_seed = sampling.split_seed(seed, 3)
        num_segments, length, size = c.num_segments, c.segment_length, c.resolution
        indices = sampling.sample_segments(video["num_frames"], num_segments, length, sample_seed)
        height, width = pipeline.frame_size(video[c.modality])
        crop = short_side_fraction(height, width, c.segment_crop_fraction)
        # Each segment's own window, from its `augment.clip_seed`.
        corners = [
            augment.crop_window(height, width, crop, augment.clip_seed(crop_seed, k))[:2] for k in range(num_segments)
        ]
        regions = tf.stack([tf.stack([top, left, crop, crop]) for top, left in corners])
        windows, rows, cols = augment.resize_plan(
            (height, width), regions, size, tf.zeros([num_segments, 2], tf.int32), size
        )
        frames = pipeline.decode_frames(
            video[c.modality], tf.reshape(indices, [-1]), c.modality, crop_window=tf.repeat(windows, length, axis=0)
        )
        segments = tf.reshape(frames, tf.concat([[num_segments, length], tf.shape(frames)[1:]], 0))
        return {
            "segments": segments, "rows": rows, "cols": cols,
            "color_seeds": tf.random.experimental.stateless_split(color_seed, num_segments),
        }

    def batch_augment(self, batch):
        """The planned resize of every segment, colour dropping of every RGB segment (its
        own draw, so that consecutive, overlapping segments differ in colour), the
        modality's scaling, and the frames stacked on channels: `{"segments": float32
        [B, T, R, R, C*F]}`."""
        segments = augment.apply_resize_plan(batch["segments"], batch["rows"], batch["cols"])
        if self.config.modality == "rgb":
            shape = tf.shape(segments)
            dropped = augment.color_drop(
                tf.reshape(segments, tf.concat([[-1], shape[2:]], 0)),
                tf.reshape(batch["color_seeds"], [-1, 2]), self.config.color_drop_prob,
            )
            segments = tf.ensure_shape(tf.reshape(dropped, shape), segments.shape)
        return {"segments": stack_frames(normalize_frames(segments, self.config.modality))}

    def build_model(self, norm_options=None):
        c = self.config
        return TemporalContrastivePretraining(
            backbone=c.backbone, num_segments=c.num_segments, segment_length=c.segment_length,
            channels=self.channels(), resolution=c.resolution, ar_kernel_size=self.kernel_size(),
            loss_reduction=c.tcp_loss, negatives=c.negatives, sync_bn=c.sync_bn,
            weight_decay=optim.coupled_weight_decay(c),
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
        return short_side_fraction(tf.shape(frames)[1], tf.shape(frames)[2], self.config.segment_crop_fraction)

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
