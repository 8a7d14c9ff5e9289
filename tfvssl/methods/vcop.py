"""VCOP as the trainer sees it: its flags, the tuple sampler and the `Method` (model in
`tfvssl.models.vcop_model`)."""

import tensorflow as tf
from absl import flags

from tfvssl.data import augment, sampling
from tfvssl.methods.clip import ClipMethod
from tfvssl.models.vcop_model import ClipOrderPrediction
from tfvssl.train import optim


flags.DEFINE_integer(
    "clip_interval", None, "VCOP: frames skipped between consecutive clips (8).", lower_bound=0
)
flags.DEFINE_integer(
    "tuple_length", None, "VCOP: clips per tuple, 2 to 5 (3); there are tuple_length! order classes.",
    lower_bound=2, upper_bound=5,
)
flags.DEFINE_boolean(
    "fold_clips", False,
    "VCOP: encode all clips of the batch in one backbone call (BatchNorm statistics over every "
    "clip) instead of one call per tuple slot as the authors (statistics per slot).",
)


class VCOP(ClipMethod):
    """Clip order prediction; the paper's recipe (§4): tuples of 3 clips of 16 frames 8 frames
    apart, 112 crops of 128x171 frames, SGD lr 1e-3 (constant), momentum 0.9, weight decay
    5e-4, 8 tuples a batch, 300 epochs."""

    name = "vcop"
    identity_flags = ClipMethod.identity_flags + ("tuple_length",)
    recipe = dict(
        backbone="r21d", resolution=112, frame_size=["128", "171"], clip_length=16, clip_interval=8,
        tuple_length=3, batch_size=8, optimizer="sgd", lr=1e-3, weight_decay=5e-4,
        lr_schedule="constant", train_steps=327_600,
    )

    def min_frames(self):
        c = self.config
        return sampling.vcop_span(c.clip_length, c.clip_interval, c.tuple_length)

    def train_example(self, video, seed):
        """A shuffled tuple and its order class (int32): the windows of its n clips of T
        frames and their resize plans (`planned_clips`), resized after batching
        (`batch_augment`)."""
        c = self.config
        sample_seed, crop_seed = sampling.split_seed(seed, 2)
        indices, label, _ = sampling.sample_vcop_tuple(
            video["num_frames"], c.clip_length, c.clip_interval, c.tuple_length, sample_seed
        )
        planned = self.planned_clips(video, tf.reshape(indices, [c.tuple_length, c.clip_length]), crop_seed)
        return {"tuple": planned["frames"], "rows": planned["rows"], "cols": planned["cols"], "label": label}

    def batch_augment(self, batch):
        """The resize and crop of every clip, then the model's scaling: `{"tuple": float32
        [B, n, T, R, R, 3] in [0, 1], "label": [B]}`."""
        clips = augment.apply_resize_plan(batch["tuple"], batch["rows"], batch["cols"])
        return {"tuple": self.normalize(clips), "label": batch["label"]}

    def build_model(self, norm_options=None):
        c = self.config
        return ClipOrderPrediction(
            backbone=c.backbone, clip_length=c.clip_length, resolution=c.resolution,
            tuple_length=c.tuple_length, fold_clips=c.fold_clips, sync_bn=c.sync_bn,
            weight_decay=optim.coupled_weight_decay(c),
        )

    def normalize(self, frames):
        return augment.normalize(frames, "unit")

    def downstream_clip(self, frames, seed):
        # The authors' fine-tuning (`ft_classify.py`; the paper gives none): the pretraining
        # resize and random crop, never a flip.
        return self.normalize(augment.random_crop(self.resize(frames), self.config.resolution, seed))
