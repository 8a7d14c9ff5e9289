"""MemDPC as the trainer sees it: its flags and `Method` (model in `tfvssl.models.memdpc_model`);
it samples and augments as DPC."""

import tensorflow as tf
from absl import flags

from tfvssl.data import augment, records
from tfvssl.methods import dpc
from tfvssl.models.memdpc_model import MemoryAugmentedDPC
from tfvssl.train import optim


flags.DEFINE_integer("mem_size", 1024, "MemDPC: entries of the compressive memory (k).", lower_bound=1)
flags.DEFINE_boolean(
    "bidirectional", True, "MemDPC: also predict backwards with a second GRU (the paper's best model)."
)
flags.DEFINE_enum(
    "bidirectional_loss", "mean", ["mean", "sum"],
    "MemDPC: combine the forward and backward losses by their mean (paper §3.3) or their sum "
    "(the authors' code).",
)


class MemDPC(dpc.DPC):
    """MemDPC; recipe of the paper (§5.2) and the authors' UCF101 run: R18 at 128 px, 8 blocks
    of 5 frames at stride 3, 5pred3 both ways, memory of 1024, Adam 1e-3 decayed once to
    1e-4 on a validation plateau, weight decay 1e-5, batch 16 per GPU, 500 epochs."""

    name = "memdpc"
    identity_flags = dpc.DPC.identity_flags + ("mem_size", "bidirectional")
    # The classifier's input "follows the same frame sampling procedure" as pretraining
    # (§5.3): its number of blocks (8).
    classifier_blocks = None
    # DPC's recipe but for the batch, the length, the crop, the grey probability and BatchNorm.
    recipe = dict(
        dpc.DPC.recipe, per_replica_batch_size=16, train_steps=149_000, crop="random_resized",
        grey_prob=0.25, batch_stats_bn=False,
    )

    def validate(self):
        c = self.config
        if c.modality not in ("rgb", "flow"):
            raise ValueError(f"--modality={c.modality}: MemDPC trains on rgb or flow")
        if c.curriculum:
            raise ValueError(f"--curriculum={','.join(c.curriculum)}: MemDPC has no curriculum (DPC only)")
        if c.pred_step >= c.num_blocks:
            raise ValueError(
                f"--pred_step={c.pred_step}: must be smaller than --num_blocks={c.num_blocks} "
                "(at least one observed block)"
            )
        if len(c.color_jitter) != 4:
            raise ValueError(f"--color_jitter={','.join(c.color_jitter)}: needs 4 values")

    def channels(self):
        return records.MODALITY_CHANNELS[self.config.modality]

    def build_model(self, norm_options=None):
        c = self.config
        return MemoryAugmentedDPC(
            backbone=c.backbone, num_blocks=c.num_blocks, block_length=c.block_length,
            resolution=c.resolution, channels=self.channels(), pred_step=c.pred_step,
            mem_size=c.mem_size, bidirectional=c.bidirectional, bidirectional_loss=c.bidirectional_loss,
            gru_dropout=c.gru_dropout, negatives=c.negatives, batch_stats_bn=c.batch_stats_bn,
            sync_bn=c.sync_bn, weight_decay=optim.coupled_weight_decay(c),
        )

    def clip_shape(self):
        c = self.config
        return (c.num_blocks * c.block_length, c.resolution, c.resolution, self.channels())

    def normalize(self, frames):
        frames = tf.image.convert_image_dtype(frames, tf.float32)
        # As `dpc_batch_augment`: ImageNet statistics for RGB, [0, 1] for flow.
        return augment.normalize(frames, "imagenet") if self.config.modality == "rgb" else frames
