"""DPC as the trainer sees it: its flags (shared with MemDPC), the block sampler and
augmentations of a training example, and the `Method` (model in `tfvssl.models.dpc_model`)."""

import tensorflow as tf
from absl import flags

from tfvssl.data import augment, pipeline, sampling
from tfvssl.methods.base import Method, short_side_fraction
from tfvssl.models.dpc_model import DensePredictiveCoding
from tfvssl.train import optim


# The DPC family's flags; MemDPC shares them. A None default takes the method's recipe.
flags.DEFINE_integer("num_blocks", None, "DPC family: blocks per sample (N).", lower_bound=2)
flags.DEFINE_integer("block_length", None, "DPC family: frames per block (L).", lower_bound=1)
flags.DEFINE_integer("frame_stride", None, "DPC family: temporal stride between sampled frames.", lower_bound=1)
flags.DEFINE_integer("pred_step", None, "DPC family: future blocks predicted (P < N).", lower_bound=1)
flags.DEFINE_list(
    "curriculum", [],
    "DPC family: pred_step stages as 'pred_step:until_step' items, the last without a step, "
    "e.g. 3:100000,4. Empty = --pred_step throughout.",
)
flags.DEFINE_float("gru_dropout", None, "DPC family: dropout on the ConvGRU's carried state.")
flags.DEFINE_enum(
    "crop", None, ["random", "random_resized"],
    "DPC family: clip-consistent crop. random = a square of --crop_fraction of the short side "
    "(DPC UCF101: 224 of 240); random_resized = area U(0.5, 1), aspect U(3/4, 4/3) (DPC K400, MemDPC).",
)
flags.DEFINE_float("crop_fraction", 224 / 240, "DPC family: random-crop side / frame short side.")
flags.DEFINE_float("grey_prob", None, "DPC family: per-frame probability of channel-split grey.")
flags.DEFINE_list(
    "color_jitter", ["0.5", "0.5", "0.5", "0.25"],
    "DPC family: per-frame brightness, contrast, saturation, hue jitter (applied with p=1).",
)
flags.DEFINE_boolean(
    "batch_stats_bn", None,
    "DPC family: BatchNorm uses batch statistics also in inference during pre-training, as "
    "DPC's backbone (track_running_stats=False); MemDPC keeps running statistics. Exported "
    "encoders always use running statistics.",
)


def parse_curriculum(items, default_pred_step):
    """`["3:1000", "4"]` -> `[(3, 1000), (4, None)]`; empty -> `[(default, None)]`.

    Raises:
      ValueError naming `--curriculum` on malformed items.
    """
    if not items:
        return [(default_pred_step, None)]
    stages = []
    for position, item in enumerate(items):
        pred_step, _, until = item.partition(":")
        last = position == len(items) - 1
        try:
            stage = (int(pred_step), int(until) if until else None)
        except ValueError:
            raise ValueError(f"--curriculum={','.join(items)}: {item!r} is not 'pred_step:until_step'")
        if (stage[1] is None) != last:
            raise ValueError(
                f"--curriculum={','.join(items)}: every stage but the last needs ':until_step'"
            )
        stages.append(stage)
    return stages


def dpc_train_example(config, video, seed, *, modality="rgb"):
    """Samples one DPC/MemDPC training example, with the clip-level augmentations.

    Blocks of frames (`sampling.sample_blocks`), then a clip-consistent crop (a square of
    `crop_fraction` of the short side, or random-resized), resize to the resolution and a
    clip-consistent flip. Only the crop's window is decoded. The nearest-neighbour resize
    of the square crop is two gathers, done here; the random-resized crop's bilinear
    resize is planned here and run after batching (`augment.resize_plan`), with the
    per-frame colour augmentations, on the accelerator (`dpc_batch_augment`, `color_seed`).

    Returns:
      `{"blocks": uint8 [N, L, R, R, C], "color_seed": int64 [2]}`; for the random-resized
      crop, `"blocks"` are the windows `[N, L, h, w, C]`, with `"rows"` `[1, R, h]` and
      `"cols"` `[1, R, w]`, their resize plan.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    n, length, size = config.num_blocks, config.block_length, config.resolution
    indices = tf.reshape(
        sampling.sample_blocks(video["num_frames"], n, length, config.frame_stride, seeds[0]), [-1]
    )
    # The crop is known from the JPEG header: decode only that window.
    height, width = pipeline.frame_size(video[modality])
    if config.crop == "random_resized":
        (top, left, crop_height, crop_width), fits = augment.resized_crop_window(height, width, seeds[1])
        # The window resized to the resolution; when no attempt fits (the window is then
        # the whole frame), its short side resized to it and the centre cropped.
        short_side = augment.short_side_size(crop_height, crop_width, size)
        resized = [tf.where(fits, size, side) for side in short_side]
        offsets = [augment.center_offset(side, size) for side in resized]
        windows, rows, cols = augment.resize_plan(
            (height, width), [[top, left, crop_height, crop_width]], resized, [offsets], size,
            flips=augment.draw_flip(seeds[2])[None],
        )
        frames = pipeline.decode_frames(video[modality], indices, modality, crop_window=windows[0])
        blocks = tf.reshape(frames, tf.concat([[n, length], tf.shape(frames)[1:]], 0))
        return {"blocks": blocks, "rows": rows, "cols": cols, "color_seed": seeds[3]}
    crop = short_side_fraction(height, width, config.crop_fraction)
    window = augment.crop_window(height, width, crop, seeds[1])
    frames = pipeline.decode_frames(video[modality], indices, modality, crop_window=window)
    clip = augment.resize_nearest_and_flip(frames, size, seeds[2])
    blocks = tf.reshape(clip, [n, length, size, size, clip.shape[-1]])
    return {"blocks": blocks, "color_seed": seeds[3]}


def dpc_batch_augment(config, batch, *, modality="rgb"):
    """The per-frame half of the DPC/MemDPC augmentation, on a batch of examples.

    The random-resized crop's planned resize first (`"rows"`, `"cols"`); for RGB:
    channel-split grey with `grey_prob` and colour jitter (`color_jitter`, applied to every
    frame), each frame drawing its own, then ImageNet normalisation; other modalities are
    scaled to [0, 1].

    Args:
      batch: `{"blocks": uint8 [B, N, L, R, R, C], "color_seed": [B, 2]}`, or the windows
        `[B, N, L, h, w, C]` with `"rows"` `[B, 1, R, h]` and `"cols"` `[B, 1, R, w]`.

    Returns:
      `{"blocks": float32 [B, N, L, R, R, C]}`.
    """
    blocks = batch["blocks"]
    shape = tf.shape(blocks)
    frames = tf.reshape(blocks, tf.concat([shape[:1], [-1], shape[3:]], 0))
    if "rows" in batch:
        # One clip of N * L frames.
        frames = augment.apply_resize_plan(frames[:, None], batch["rows"], batch["cols"])[:, 0]
        shape = tf.concat([shape[:3], tf.shape(frames)[2:]], 0)
    if modality == "rgb":
        jitter = tuple(float(v) for v in config.color_jitter)
        frames = augment.frame_wise_color(frames, batch["color_seed"], config.grey_prob, jitter)
        frames = augment.normalize(frames, "imagenet")
    else:
        frames = augment.normalize(frames, "unit")
    return {"blocks": tf.reshape(frames, shape)}


class DPC(Method):
    """Dense Predictive Coding; recipe of the paper (§3.5): Adam 1e-3, weight decay 1e-5,
    decay to 1e-4 on a validation plateau, 128 px, batch 64 per GPU."""

    name = "dpc"
    identity_flags = Method.identity_flags + ("num_blocks", "block_length", "pred_step")
    # Blocks of the action classifier's clips: "we take T = 5" (§3.5 and appendix A); the
    # authors' eval/test.py takes the pretraining's 8 (`--classifier_blocks=8`).
    classifier_blocks = 5
    recipe = dict(
        backbone="r2d3d18", resolution=128, per_replica_batch_size=64, optimizer="adam", lr=1e-3,
        weight_decay=1e-5, lr_schedule="plateau", lr_decay_factor=0.1, min_lr=1e-4,
        train_steps=300_000, num_blocks=8, block_length=5, frame_stride=3, pred_step=3,
        gru_dropout=0.1, crop="random", grey_prob=0.5, batch_stats_bn=True,
    )

    def stages(self):
        return parse_curriculum(self.config.curriculum, self.config.pred_step)

    def validate(self):
        for pred_step, _ in self.stages():
            if pred_step >= self.config.num_blocks:
                raise ValueError(
                    f"--pred_step={pred_step}: must be smaller than --num_blocks={self.config.num_blocks} "
                    "(at least one context block)"
                )
        if self.config.modality != "rgb":
            raise ValueError(f"--modality={self.config.modality}: DPC trains on rgb (MemDPC adds flow)")
        if len(self.config.color_jitter) != 4:
            raise ValueError(f"--color_jitter={','.join(self.config.color_jitter)}: needs 4 values")

    def min_frames(self):
        c = self.config
        return sampling.blocks_span(c.num_blocks, c.block_length, c.frame_stride)

    def train_example(self, video, seed):
        return dpc_train_example(self.config, video, seed, modality=self.config.modality)

    def batch_augment(self, batch):
        return dpc_batch_augment(self.config, batch, modality=self.config.modality)

    def build_model(self, norm_options=None):
        c = self.config
        return DensePredictiveCoding(
            backbone=c.backbone, num_blocks=c.num_blocks, block_length=c.block_length,
            resolution=c.resolution, pred_step=self.stages()[0][0], gru_dropout=c.gru_dropout,
            negatives=c.negatives, batch_stats_bn=c.batch_stats_bn, sync_bn=c.sync_bn,
            weight_decay=optim.coupled_weight_decay(c),
        )

    def clip_shape(self):
        c = self.config
        return (c.num_blocks * c.block_length, c.resolution, c.resolution, 3)

    def clip_frame_stride(self):
        return self.config.frame_stride

    def normalize(self, frames):
        return augment.normalize(tf.image.convert_image_dtype(frames, tf.float32), "imagenet")

    def crop_side(self, frames):
        """Side of the evaluation crops of `[T, H, W, C]` frames: `crop_fraction` of the
        short side (224 of 240)."""
        return short_side_fraction(tf.shape(frames)[1], tf.shape(frames)[2], self.config.crop_fraction)

    def eval_clip(self, frames):
        # The authors' test transform: centre crop (224 of 240), nearest resize to the size.
        clip = augment.center_crop(frames, self.crop_side(frames))
        return self.normalize(augment.resize(clip, self.config.resolution, method="nearest"))

    def downstream_clip(self, frames, seed):
        # The authors' classifier training (eval/test.py; DPC's paper gives none, MemDPC's
        # names "clip-wise random crop, random horizontal flip, and random color jittering",
        # §5.3): a random sized crop (area 0.5-1, aspect 3/4-4/3) resized to 224 (of 240),
        # the nearest resize to the resolution as in pretraining, a flip and, for RGB, colour
        # jitter (0.5, 0.5, 0.5, 0.25) on 30% of the clips, one draw for the whole clip.
        crop_seed, flip_seed, color_seed = sampling.split_seed(seed, 3)
        clip = augment.random_resized_crop(frames, self.crop_side(frames), crop_seed)
        clip = augment.resize_nearest_and_flip(clip, self.config.resolution, flip_seed)
        if self.modalities[0] == "rgb":
            clip = augment.color_jitter(clip, color_seed, 0.5, 0.5, 0.5, 0.25, prob=0.3, per_frame=False)
        return self.normalize(clip)

    def classifier_method(self, config, training):
        del training  # The same clips in training and at test.
        blocks = config.classifier_blocks or self.classifier_blocks or self.config.num_blocks
        return type(self)({**vars(self.config), "num_blocks": blocks})

    def curriculum_stage(self, step):
        for index, (_, until) in enumerate(self.stages()):
            if until is None or step < until:
                return index
        return len(self.stages()) - 1

    def set_curriculum_stage(self, model, stage):
        model.pred_step = self.stages()[stage][0]
