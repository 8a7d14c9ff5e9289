"""Dense Predictive Coding (Han, Xie, Zisserman, ICCV Workshops 2019).

A video is cut into N blocks of L frames. A 2D3D ResNet `f` encodes each block into a
feature map z (pre-ReLU, averaged over the block's remaining time steps); a ConvGRU `g`
aggregates ReLU(z) of the first N-P blocks into a context; a two-layer head `phi`
predicts the next P feature maps one after another, each prediction fed back (ReLU'd)
into the GRU. Every predicted cell is classified against every true cell of the batch
(dense NCE, no normalisation, no temperature).

Defaults are the paper's 5pred3 recipe (N=8, L=5, frame stride 3, 128 px); the 4pred4
stage of the curriculum is `--pred_step=4` initialised from a 5pred3 run, or one run with
`--curriculum=3:<steps>,4`.
"""

import keras
import tensorflow as tf
from absl import flags

from tfvssl import losses, methods
from tfvssl.data import augment, pipeline, sampling
from tfvssl.models import layers
from tfvssl.models.backbones import build_backbone
from tfvssl.models.pretext import PretextModel

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


@keras.saving.register_keras_serializable("tfvssl")
class BlockEncoder(keras.Model):
    """`f` then `g`: blocks -> feature maps -> aggregated context (the exported encoder).

    Input `[B, T, H, W, C]` clips with T = N * block_length (reshaped into N blocks) or
    `[B, N, L, H, W, C]` blocks. Output `{"embedding": [B, D'], "feature_map": [B, N, h, w, D],
    "context": [B, h, w, D']}`: the context is the ConvGRU state after all N blocks, the
    embedding its spatial mean. With a `backward_aggregator` (bidirectional MemDPC) a second
    GRU reads the blocks in reverse order and the context is the channel concatenation
    `[forward, backward]`, so D' = 2D; otherwise D' = D.

    Args:
      backbone: the block encoder f (`build_backbone`).
      aggregator: the ConvGRU g.
      block_length: frames per block.
      backward_aggregator: optional ConvGRU over the reversed block sequence.
      relu_before_pool: apply the ReLU to the backbone map before the temporal mean (the
        order of DPC's and MemDPC's downstream "LC" classifiers) instead of after it (the
        pre-training order, whose pre-ReLU mean is the prediction target).
    """

    def __init__(
        self, backbone, aggregator, block_length, backward_aggregator=None, relu_before_pool=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.aggregator = aggregator
        self.backward_aggregator = backward_aggregator
        self.block_length = block_length
        self.relu_before_pool = relu_before_pool

    def build(self, input_shape):
        self.built = True  # The backbone and aggregators come built.

    def get_config(self):
        # The sub-models are serialized whole, so an exported `.keras` encoder reloads.
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            aggregator=keras.saving.serialize_keras_object(self.aggregator),
            backward_aggregator=keras.saving.serialize_keras_object(self.backward_aggregator),
            block_length=self.block_length,
            relu_before_pool=self.relu_before_pool,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("backbone", "aggregator", "backward_aggregator"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)

    def block_features(self, blocks, training=None):
        """`[B, N, L, H, W, C]` -> features `[B, N, h, w, D]` (mean over time; pre-ReLU
        unless `relu_before_pool`)."""
        shape = tf.shape(blocks)
        folded = tf.reshape(blocks, tf.concat([[-1], shape[2:]], 0))
        maps = self.backbone(folded, training=training)["stage5"]
        if self.relu_before_pool:
            maps = tf.nn.relu(maps)
        pooled = tf.reduce_mean(maps, axis=1)
        num_blocks = blocks.shape[1] if blocks.shape[1] is not None else shape[1]
        return tf.reshape(pooled, tf.concat([[-1, num_blocks], tf.shape(pooled)[1:]], 0))

    def to_blocks(self, clips):
        """`[B, N*L, H, W, C]` -> `[B, N, L, H, W, C]`."""
        if clips.shape.rank == 6:
            return clips
        length = clips.shape[1]
        if length is not None and length % self.block_length:
            raise ValueError(f"clip length {length} is not a multiple of the block length {self.block_length}")
        num_blocks = length // self.block_length if length is not None else -1
        return tf.reshape(clips, [-1, num_blocks, self.block_length, *clips.shape[2:]])

    def call(self, clips, training=None):
        features = self.block_features(self.to_blocks(clips), training=training)
        activated = tf.nn.relu(features)
        _, context = self.aggregator(activated, training=training)
        if self.backward_aggregator is not None:
            _, backward = self.backward_aggregator(tf.reverse(activated, axis=[1]), training=training)
            context = tf.concat([context, backward], axis=-1)
        return {
            "embedding": tf.reduce_mean(context, axis=[1, 2]),
            "feature_map": features,
            "context": context,
        }


def lc_encoder(encoder):
    """The encoder of DPC's and MemDPC's downstream classifiers ("LC"), sharing `encoder`'s
    weights: ReLU before the temporal pooling, GRU(s) over all N blocks, last state,
    spatial mean. Put `layers.ClassificationHead` on its `embedding` to get the LC model
    (256-d for DPC, forward and backward concatenated, 512-d, for bidirectional MemDPC).
    Build `encoder` with running-statistics BatchNorm, as the LC models have."""
    return BlockEncoder(
        encoder.backbone, encoder.aggregator, encoder.block_length,
        backward_aggregator=encoder.backward_aggregator, relu_before_pool=True, name="encoder",
    )


def build_block_encoder(
    backbone, block_length, resolution, *, channels=3, norm=layers.NormOptions(), gru_dropout=0.1,
    gru_gain=1.0, aggregator_names=("agg",),
):
    """A `BlockEncoder` with a new backbone and one (or, with two names, a forward and a
    backward) 1x1 ConvGRU of the backbone's width, orthogonally initialised with `gru_gain`.

    Args:
      backbone: registry name of the 2D3D ResNet.
      block_length, resolution, channels: one block is `[L, R, R, C]`.
      norm: the backbone's BatchNorm options.
      gru_dropout: dropout on the GRUs' carried state.
      gru_gain: gain of the GRUs' orthogonal init (DPC 1, MemDPC 0.1).
      aggregator_names: `("agg",)` (DPC) or `("agg_f", "agg_b")` (bidirectional MemDPC).
    """
    net = build_backbone(backbone, (block_length, resolution, resolution, channels), norm=norm, name="backbone")
    step_shape = (None, *net.output["stage5"].shape[2:])  # One block's map [B, h, w, D].
    grus = []
    for name in aggregator_names:
        gru = layers.ConvGRU(step_shape[-1], dropout=gru_dropout, gain=gru_gain, name=name)
        gru.build(step_shape)
        grus.append(gru)
    backward = grus[1] if len(grus) > 1 else None
    return BlockEncoder(net, grus[0], block_length, backward_aggregator=backward, name="encoder")


def roll_out(aggregator, head, context, pred_step, training=None):
    """DPC's prediction roll-out: aggregate the observed blocks, then predict P steps.

    Each prediction is made from the GRU state alone; it is fed back (ReLU'd) into the GRU
    for the next step, never the ground truth. No GRU step follows the last prediction.

    Args:
      aggregator: the ConvGRU.
      head: callable, state `[B, h, w, D]` -> prediction `[B, h, w, D]`.
      context: `[B, n, h, w, D]` pre-ReLU features of the observed blocks, in reading order.
      pred_step: P.

    Returns:
      `(predictions [B, P, h, w, D], states [B, P, h, w, D])`, `states[:, p]` being the GRU
      state prediction p was made from.
    """
    _, state = aggregator(tf.nn.relu(context), training=training)
    predictions, states = [], []
    for step in range(pred_step):
        states.append(state)
        predictions.append(head(state))
        if step < pred_step - 1:
            state = aggregator.step(tf.nn.relu(predictions[-1]), state, training=training)
    return tf.stack(predictions, axis=1), tf.stack(states, axis=1)


@keras.saving.register_keras_serializable("tfvssl")
class DensePredictiveCoding(PretextModel):
    """The DPC pretext model: `data = {"blocks": [B, N, L, H, W, 3]}`.

    Args:
      backbone: registry name of the 2D3D ResNet.
      num_blocks, block_length, resolution: the input `[N, L, H=W=resolution]`.
      pred_step: P, the number of future blocks predicted.
      gru_dropout: dropout on the GRU's carried state.
      negatives: `"replica"` or `"global"`.
      batch_stats_bn: BatchNorm on batch statistics in inference too.
      sync_bn: synchronised BatchNorm across replicas.
      weight_decay: coupled L2 (see `PretextModel`).
    """

    def __init__(
        self,
        backbone="r2d3d18",
        num_blocks=8,
        block_length=5,
        resolution=128,
        pred_step=3,
        gru_dropout=0.1,
        negatives="replica",
        batch_stats_bn=True,
        sync_bn=False,
        weight_decay=0.0,
        **kwargs,
    ):
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.config = dict(
            backbone=backbone, num_blocks=num_blocks, block_length=block_length,
            resolution=resolution, pred_step=pred_step, gru_dropout=gru_dropout,
            negatives=negatives, batch_stats_bn=batch_stats_bn, sync_bn=sync_bn,
        )
        self.pred_step = pred_step
        self.negatives = negatives
        norm = layers.NormOptions(always_batch_stats=batch_stats_bn, synchronized=sync_bn)
        self.encoder = build_block_encoder(
            backbone, block_length, resolution, norm=norm, gru_dropout=gru_dropout, gru_gain=1.0
        )
        depth = self.encoder.aggregator.hidden_size
        self.predictor = layers.PredictionHead(depth, depth, gain=1.0, name="network_pred")
        self.predictor.build((None, None, None, depth))
        self.num_blocks = num_blocks

    def build(self, input_shape):
        # Every variable was created in __init__ (the shapes follow from the config).
        self.built = True

    def predict_future(self, features, pred_step, training=None):
        """Aggregates the first N-P blocks and predicts the P next feature maps.

        Args:
          features: `[B, N, h, w, D]` pre-ReLU block features.

        Returns:
          `[B, P, h, w, D]` predictions, made one after another from the context only:
          each prediction (ReLU'd) is fed back into the GRU, never the ground truth.
        """
        context = features[:, : self.num_blocks - pred_step]
        return roll_out(self.encoder.aggregator, self.predictor, context, pred_step, training)[0]

    def call(self, blocks, training=None):
        features = self.encoder.block_features(blocks, training=training)
        predictions = self.predict_future(features, self.pred_step, training=training)
        return {"predictions": predictions, "targets": features[:, self.num_blocks - self.pred_step :]}

    def compute_pretext(self, data, training):
        outputs = self(data["blocks"], training=training)
        nce = losses.dense_predictive_nce(outputs["predictions"], outputs["targets"], self.negatives)
        logs = {"loss": nce["loss"]}
        for k in (1, 3, 5):
            logs[f"top{k}"] = losses.top_k_accuracy(nce["logits"], nce["labels"], k)
        return logs

    def build_encoder(self):
        # What downstream tasks use, as the authors' classifier ("LC") does: ReLU before the
        # temporal pooling, the GRU over all blocks, the spatial mean of its last state.
        return lc_encoder(self.encoder)

    def get_config(self):
        return {**super().get_config(), **self.config, "pred_step": self.pred_step}


def dpc_train_example(config, video, seed, *, modality="rgb"):
    """Samples one DPC/MemDPC training example, with the clip-level augmentations.

    Blocks of frames (`sampling.sample_blocks`), then a clip-consistent crop (a square of
    `crop_fraction` of the short side, or random-resized), nearest-neighbour resize to the
    resolution and a clip-consistent flip. The per-frame colour augmentations come after
    batching, on the accelerator (`dpc_batch_augment`), with `colour_seed`.

    Returns:
      `{"blocks": uint8 [N, L, R, R, C], "colour_seed": int64 [2]}`.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    n, length, size = config.num_blocks, config.block_length, config.resolution
    indices = tf.reshape(
        sampling.sample_blocks(video["num_frames"], n, length, config.frame_stride, seeds[0]), [-1]
    )
    # The crop is known from the JPEG header: decode only that window.
    height, width = pipeline.frame_size(video[modality])
    if config.crop == "random_resized":
        window, fits = augment.resized_crop_window(height, width, seeds[1])
        frames = pipeline.decode_frames(video[modality], indices, modality, crop_window=window)
        clip = augment.random_flip(augment.resize_crop(frames, fits, size), seeds[2])
    else:
        crop = tf.cast(tf.round(tf.cast(tf.minimum(height, width), tf.float32) * config.crop_fraction), tf.int32)
        window = augment.crop_window(height, width, crop, seeds[1])
        frames = pipeline.decode_frames(video[modality], indices, modality, crop_window=window)
        clip = augment.resize_nearest_and_flip(frames, size, seeds[2])
    blocks = tf.reshape(clip, [n, length, size, size, clip.shape[-1]])
    return {"blocks": blocks, "colour_seed": seeds[3]}


def dpc_batch_augment(config, batch, *, modality="rgb"):
    """The per-frame half of the DPC/MemDPC augmentation, on a batch of examples.

    For RGB: channel-split grey with `grey_prob` and colour jitter (`color_jitter`,
    applied to every frame), each frame drawing its own, then ImageNet normalisation;
    other modalities are scaled to [0, 1].

    Args:
      batch: `{"blocks": uint8 [B, N, L, R, R, C], "colour_seed": [B, 2]}`.

    Returns:
      `{"blocks": float32 [B, N, L, R, R, C]}`.
    """
    blocks = batch["blocks"]
    shape = tf.shape(blocks)
    frames = tf.reshape(blocks, tf.concat([shape[:1], [-1], shape[3:]], 0))
    if modality == "rgb":
        jitter = tuple(float(v) for v in config.color_jitter)
        frames = augment.frame_wise_colour(frames, batch["colour_seed"], config.grey_prob, jitter)
        frames = augment.normalize(frames, "imagenet")
    else:
        frames = augment.normalize(frames, "unit")
    return {"blocks": tf.reshape(frames, shape)}


@methods.register_method
class DPC(methods.Method):
    """Dense Predictive Coding; recipe of the paper (§3.5): Adam 1e-3, weight decay 1e-5,
    decay to 1e-4 on a validation plateau, 128 px, batch 64 per GPU."""

    name = "dpc"
    identity_flags = methods.Method.identity_flags + ("num_blocks", "block_length", "pred_step")
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
            weight_decay=c.weight_decay if c.optimizer != "adamw" else 0.0,
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
        short_side = tf.minimum(tf.shape(frames)[1], tf.shape(frames)[2])
        return tf.cast(tf.round(tf.cast(short_side, tf.float32) * self.config.crop_fraction), tf.int32)

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
        crop_seed, flip_seed, colour_seed = sampling.split_seed(seed, 3)
        clip = augment.random_resized_crop(frames, self.crop_side(frames), crop_seed)
        clip = augment.resize_nearest_and_flip(clip, self.config.resolution, flip_seed)
        if self.modalities[0] == "rgb":
            clip = augment.color_jitter(clip, colour_seed, 0.5, 0.5, 0.5, 0.25, prob=0.3, per_frame=False)
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
