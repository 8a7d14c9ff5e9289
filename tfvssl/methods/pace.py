"""Pace prediction as the trainer sees it: its flags, the pace sampler and augmentations,
and the `Method` (model in `tfvssl.models.pace_model`)."""

import fractions

import tensorflow as tf
from absl import flags

from tfvssl.data import augment, sampling
from tfvssl.methods.clip import ClipMethod
from tfvssl.models.pace_model import CONTRASTIVE, PacePrediction
from tfvssl.train import optim


flags.DEFINE_list(
    "paces", ["1", "2", "3", "4"],
    "Pace: candidate paces, one class each in this order; a fraction such as 1/2 is slow motion "
    "(each frame repeated 1/p times). Paper default 1,2,3,4; its 'absolute' set 1/3,1/2,1,2,3.",
)
flags.DEFINE_boolean(
    "pace_wrap", True,
    "Pace: a clip running past the last frame continues from the first (paper and code); "
    "false: the start is drawn so that the clip fits the video.",
)
flags.DEFINE_enum(
    "contrastive", "same_context", CONTRASTIVE,
    "Pace: contrastive term. same_context: two clips of a video at different paces are "
    "positives (the paper's best, Table 2); same_pace: clips of equal pace are; none: pace "
    "classification only (the authors' released code).",
)
flags.DEFINE_float("lambda_cls", 1.0, "Pace: weight of the pace classification loss.", lower_bound=0.0)
flags.DEFINE_float("lambda_ctr", 0.1, "Pace: weight of the contrastive loss.", lower_bound=0.0)
flags.DEFINE_enum(
    "projection", "mlp", ["none", "mlp"],
    "Pace: contrastive features are the pooled embedding (none) or a fully connected layer and "
    "ReLU on it (mlp: the paper's 'non-linear layer', last row of Table 2).",
)
flags.DEFINE_integer(
    "projection_dim", 8,
    "Pace: output size of the mlp projection. The paper only says the layer adds ~4k "
    "parameters (Table 2); 512x8+8 = 4,104.", lower_bound=1,
)
flags.DEFINE_float(
    "temperature", None, "Pace: divides the contrastive scores; the paper uses none.", lower_bound=0.0
)
flags.DEFINE_boolean(
    "cosine_similarity", False,
    "Pace: L2-normalise the contrastive features (as SimCLR) instead of the paper's dot product.",
)
flags.DEFINE_list(
    "pace_color_jitter", ["0.8", "0.8", "0.8", "0.2"],
    "Pace: brightness, contrast, saturation and hue strengths of the per-frame colour jitter.",
)
flags.DEFINE_float(
    "pace_jitter_prob", 0.8,
    "Pace: probability that a frame is colour-jittered (0 = no jitter, Table 1's first rows).",
    lower_bound=0.0, upper_bound=1.0,
)
flags.DEFINE_boolean(
    "pace_bgr", False,
    "Pace: feed BGR frames, as the authors' OpenCV loader does; the paper does not say (RGB).",
)


def parse_paces(items):
    """`["1", "1/2", "0.5"]` -> exact `fractions.Fraction` paces, in the given order.

    Raises:
      ValueError naming `--paces` for an empty list, a non-positive, malformed or repeated pace.
    """
    listing = ",".join(items)
    try:
        paces = [fractions.Fraction(item.strip()) for item in items]
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--paces={listing}: every pace must be a number or a fraction like 1/2")
    if not paces or min(paces) <= 0 or len(set(paces)) != len(paces):
        raise ValueError(f"--paces={listing}: needs distinct positive paces")
    return paces


def sample_pace_clips(num_frames, clip_length, paces, num_clips, seed, wrap=True):
    """`num_clips` clips of one video, each at a different pace drawn uniformly from `paces`.

    Each clip's pace is uniform over `paces` and no two clips share one (the first
    `num_clips` entries of a uniformly random permutation); each clip has its own random
    start. See `sampling.sample_pace_clip` for the frames of a pace.

    Args:
      num_frames: frames in the video, int or scalar int tensor.
      clip_length: frames per clip.
      paces: Python sequence of paces (numbers or fractions), at least `num_clips`.
      num_clips: clips to sample.
      seed: `[2]` int32/int64 tensor.
      wrap: loop over the video when a clip runs past its end.

    Returns:
      `(indices, labels)`: `[num_clips, clip_length]` int32 frame indices and `[num_clips]`
      int32 pace classes (indices into `paces`).
    """
    if not 1 <= num_clips <= len(paces):
        raise ValueError(f"num_clips={num_clips}: needs 1 to {len(paces)} (one pace each)")
    pace_seed, *clip_seeds = sampling.split_seed(seed, num_clips + 1)
    labels = tf.argsort(tf.random.stateless_uniform([len(paces)], pace_seed))[:num_clips]
    clips = []
    for label, clip_seed in zip(tf.unstack(labels), clip_seeds):
        # Every candidate pace is a handful of integer ops: compute all, keep the drawn one.
        candidates = [sampling.sample_pace_clip(num_frames, clip_length, p, clip_seed, wrap) for p in paces]
        clips.append(tf.gather(tf.stack(candidates), label))
    return tf.stack(clips), tf.cast(labels, tf.int32)


class Pace(ClipMethod):
    """Pace prediction; the paper's recipe (§4.1): R(2+1)D, 16-frame clips cropped to 112 from
    128x171 frames, flip, per-frame colour jitter, batch 30, SGD lr 1e-3 divided by 10 every
    6 epochs, 18 epochs of ~90k clips (UCF101 split 1 repeated 10 times)."""

    name = "pace"
    identity_flags = ClipMethod.identity_flags + ("paces", "projection", "projection_dim")
    # OpenCV's bilinear resize, as the authors' loader (no antialiasing).
    antialias = False
    # Epochs of UCF101 split 1 x 10 (95,370 clips) at batch 30 are 3,179 steps. Momentum
    # 0.9 and weight decay 5e-3 are the authors' code; the paper gives neither.
    recipe = dict(
        backbone="r21d", resolution=112, frame_size=["128", "171"], clip_length=16, batch_size=30,
        optimizer="sgd", lr=1e-3, weight_decay=5e-3, lr_schedule="steps", lr_decay_factor=0.1,
        lr_decay_steps=[19_074, 38_148], train_steps=57_222,
    )

    def paces(self):
        return parse_paces(self.config.paces)

    def clips_per_video(self):
        return 2 if self.config.contrastive == "same_context" else 1

    def validate(self):
        super().validate()
        c = self.config
        if self.clips_per_video() > len(self.paces()):
            raise ValueError(f"--paces={','.join(c.paces)}: --contrastive=same_context needs two paces")
        try:
            jitter = [float(v) for v in c.pace_color_jitter]
        except ValueError:
            jitter = []
        if len(jitter) != 4 or min(jitter[:3]) < 0 or not 0 <= jitter[3] <= 0.5:
            raise ValueError(
                f"--pace_color_jitter={','.join(c.pace_color_jitter)}: needs 4 numbers, brightness, "
                "contrast and saturation >= 0 and hue in [0, 0.5]"
            )
        if c.temperature is not None and c.temperature <= 0:
            raise ValueError(f"--temperature={c.temperature}: must be positive")

    def min_frames(self):
        c = self.config
        # Wrapping clips fit any video; otherwise the slowest-moving clip must fit.
        return 1 if c.pace_wrap else sampling.pace_span(c.clip_length, self.paces())

    def crop_and_flip(self, clip, seed):
        """One resized uint8 clip `[T, h, w, 3]` -> uint8 `[T, R, R, 3]`: random crop and flip
        of the whole clip."""
        crop_seed, flip_seed = sampling.split_seed(seed, 2)
        return augment.random_flip(augment.random_crop(clip, self.config.resolution, crop_seed), flip_seed)

    def train_example(self, video, seed):
        """`{"clips": uint8 [K, T, h, w, 3], "rows": [K, R, h], "cols": [K, R, w], "pace": [K]
        int32, "color_seed": [2]}`, K = `clips_per_video()`: the windows the clips' random
        crops read and their resize plans (`planned_clips`); the resize, crop, flip and
        per-frame colour jitter come after batching (`batch_augment`)."""
        c = self.config
        num_clips = self.clips_per_video()
        sample_seed, crop_seed, color_seed = sampling.split_seed(seed, 3)
        indices, labels = sample_pace_clips(
            video["num_frames"], c.clip_length, self.paces(), num_clips, sample_seed, c.pace_wrap
        )
        planned = self.planned_clips(video, tf.reshape(indices, [num_clips, c.clip_length]), crop_seed, flip=True)
        return {
            "clips": planned["frames"], "rows": planned["rows"], "cols": planned["cols"], "pace": labels,
            "color_seed": color_seed,
        }

    def batch_augment(self, batch):
        """The resize, crop and flip of every clip, colour jitter drawn for every frame
        (`pace_jitter_prob` of them), then the model's scaling: `{"clips": float32
        [B, K, T, R, R, 3], "pace": [B, K]}`."""
        c = self.config
        clips = augment.apply_resize_plan(batch["clips"], batch["rows"], batch["cols"])
        shape = tf.shape(clips)
        frames = tf.reshape(clips, tf.concat([shape[:1], [-1], shape[3:]], 0))  # [B, K*T, R, R, 3]
        jitter = tuple(float(v) for v in c.pace_color_jitter)
        frames = augment.frame_wise_color(frames, batch["color_seed"], jitter=jitter, jitter_prob=c.pace_jitter_prob)
        return {"clips": tf.reshape(self.normalize(frames), shape), "pace": batch["pace"]}

    def build_model(self, norm_options=None):
        c = self.config
        return PacePrediction(
            backbone=c.backbone, clip_length=c.clip_length, resolution=c.resolution,
            num_paces=len(self.paces()), contrastive=c.contrastive, lambda_cls=c.lambda_cls,
            lambda_ctr=c.lambda_ctr, projection=c.projection, projection_dim=c.projection_dim,
            temperature=c.temperature, cosine_similarity=c.cosine_similarity, negatives=c.negatives,
            sync_bn=c.sync_bn, weight_decay=optim.coupled_weight_decay(c),
        )

    def downstream_clip(self, frames, seed):
        # Fine-tuning preprocesses "the same as the self-supervised pre-training stage" (§4.1),
        # whose augmentation is the clip's random crop and flip; the per-frame colour jitter
        # is part of the pretext task (§3.1), against telling paces from frame statistics.
        return self.normalize(self.crop_and_flip(self.resize(frames), seed))

    def normalize(self, frames):
        # Raw 0-255 values, no mean or scale, as the authors' loader; BGR on request. The
        # authors jitter their BGR frames as if RGB; here jitter sees RGB either way, which
        # only changes the channel weights of the grey used by contrast and saturation.
        return augment.normalize(frames, "raw", bgr=self.config.pace_bgr)
