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

from tfvssl import losses
from tfvssl.models import layers
from tfvssl.models.backbones import build_backbone
from tfvssl.models.pretext import PretextModel


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
      backbone: `BACKBONES` name of the 2D3D ResNet.
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
      backbone: `BACKBONES` name of the 2D3D ResNet.
      num_blocks, block_length, resolution: the input `[N, L, H=W=resolution]`.
      pred_step: P, the number of future blocks predicted.
      gru_dropout: dropout on the GRU's carried state.
      negatives: `"replica"` or `"global"`.
      batch_stats_bn: BatchNorm on batch statistics in inference too.
      sync_bn: synchronised BatchNorm across replicas.
      weight_decay: coupled L2 (see `PretextModel`).
    """

    def __init__(
        self, backbone="r2d3d18", num_blocks=8, block_length=5, resolution=128, pred_step=3, gru_dropout=0.1,
        negatives="replica", batch_stats_bn=True, sync_bn=False, weight_decay=0.0, **kwargs
    ):
        super().__init__(weight_decay=weight_decay, **kwargs)
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
        # The curriculum changes `pred_step` after construction.
        return {**super().get_config(), "pred_step": self.pred_step}
