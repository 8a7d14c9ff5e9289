"""Memory-augmented Dense Predictive Coding (Han, Xie, Zisserman, ECCV 2020).

DPC's encoder `f` (2D3D ResNet over blocks) and aggregator `g` (ConvGRU), but the future
is not regressed from the context directly: the prediction head `phi` maps the GRU state
to an address over a compressive memory `M` (k entries of the feature size, one trainable
weight shared by the whole dataset), `p = softmax(phi(c))` over the k entries at every
cell, and the predicted feature is the convex combination `p M` (paper Eqs. 3-4). As in
DPC each prediction, ReLU'd, is fed back into the GRU, and every predicted cell is
classified against every true (pre-ReLU) cell of the batch.

The bidirectional variant (paper §3.3, the authors' `MemDPC_BD`) adds a second GRU over
the time-reversed blocks, which predicts the first P blocks backwards from the last N-P;
the prediction head and the memory are shared by both directions. The paper averages
the two directions' losses; the authors' code sums them (`--bidirectional_loss=sum`).

The optical-flow stream is the same model on `--modality=flow` (2 channels: the
backbone's input follows the modality); the two streams are fused late, by averaging
their class probabilities (`fuse_streams`).
"""

import keras
import tensorflow as tf

from tfvssl import losses
from tfvssl.models import dpc_model, layers
from tfvssl.models.pretext import PretextModel, check_choice

DIRECTIONS = ("forward", "backward")


@keras.saving.register_keras_serializable("tfvssl")
class MemoryAugmentedDPC(PretextModel):
    """The MemDPC pretext model: `data = {"blocks": [B, N, L, H, W, C]}`.

    Initialisation as the authors': the GRUs and the prediction head orthogonal with gain
    0.1 and zero biases, the memory standard normal; BatchNorm keeps running statistics.

    Args:
      backbone: `BACKBONES` name of the 2D3D ResNet.
      num_blocks, block_length, resolution, channels: the input `[N, L, R, R, C]`.
      pred_step: P, the number of blocks predicted in each direction.
      mem_size: k, the entries of the memory.
      bidirectional: add the backward direction.
      bidirectional_loss: `"mean"` or `"sum"` of the two directions' losses.
      gru_dropout: dropout on the GRUs' carried state.
      negatives: `"replica"` or `"global"`.
      batch_stats_bn: BatchNorm on batch statistics in inference too (DPC's choice; not
        MemDPC's).
      sync_bn: synchronised BatchNorm across replicas.
      weight_decay: coupled L2 (see `PretextModel`).
    """

    def __init__(
        self, backbone="r2d3d18", num_blocks=8, block_length=5, resolution=128, channels=3, pred_step=3,
        mem_size=1024, bidirectional=True, bidirectional_loss="mean", gru_dropout=0.1, negatives="replica",
        batch_stats_bn=False, sync_bn=False, weight_decay=0.0, **kwargs
    ):
        check_choice("bidirectional_loss", bidirectional_loss, ("mean", "sum"))
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.num_blocks = num_blocks
        self.pred_step = pred_step
        self.negatives = negatives
        self.bidirectional_loss = bidirectional_loss
        self.directions = DIRECTIONS if bidirectional else DIRECTIONS[:1]
        norm = layers.NormOptions(always_batch_stats=batch_stats_bn, synchronized=sync_bn)
        self.encoder = dpc_model.build_block_encoder(
            backbone, block_length, resolution, channels=channels, norm=norm, gru_dropout=gru_dropout,
            gru_gain=0.1, aggregator_names=("agg_f", "agg_b") if bidirectional else ("agg_f",),
        )
        depth = self.encoder.aggregator.hidden_size
        self.predictor = layers.PredictionHead(depth, mem_size, gain=0.1, name="network_pred")
        self.predictor.build((None, None, None, depth))
        self.memory_bank = self.add_weight(
            shape=(mem_size, depth), initializer=keras.initializers.RandomNormal(0.0, 1.0), name="memory_bank"
        )

    def build(self, input_shape):
        # Every variable was created in __init__ (the shapes follow from the config).
        self.built = True

    def address(self, state):
        """Predictive addressing (Eq. 3): GRU state `[B, h, w, D]` -> float32 `[B, h, w, k]`
        probabilities over the memory entries (softmax of the head's output)."""
        return tf.nn.softmax(tf.cast(self.predictor(state), tf.float32), axis=-1)

    def read_memory(self, state):
        """The predicted feature (Eq. 4): `[B, h, w, D]` state -> `[B, h, w, D]` convex
        combination of the memory entries, in the state's dtype."""
        memory = tf.cast(self.memory_bank, tf.float32)
        prediction = tf.einsum("bhwk,kd->bhwd", self.address(state), memory)
        return tf.cast(prediction, state.dtype)

    def aggregator(self, direction):
        """The ConvGRU of `direction` ("forward" or "backward")."""
        if direction == "forward":
            return self.encoder.aggregator
        return self.encoder.backward_aggregator

    def call(self, blocks, training=None):
        """`[B, N, L, H, W, C]` blocks -> `features` `[B, N, h, w, D]` (pre-ReLU) and per
        direction `predictions_<direction>`, `targets_<direction>` (in the direction's
        order) and `states_<direction>` (the GRU state each prediction was read from), all
        `[B, P, h, w, D]`."""
        features = self.encoder.block_features(blocks, training=training)
        observed = self.num_blocks - self.pred_step
        outputs = {"features": features}
        for direction in self.directions:
            sequence = features if direction == "forward" else tf.reverse(features, axis=[1])
            predictions, states = dpc_model.roll_out(
                self.aggregator(direction), self.read_memory, sequence[:, :observed], self.pred_step, training
            )
            outputs[f"predictions_{direction}"] = predictions
            outputs[f"states_{direction}"] = states
            outputs[f"targets_{direction}"] = sequence[:, observed : self.num_blocks]
        return outputs

    def compute_pretext(self, data, training):
        return self.contrastive_logs(self(data["blocks"], training=training))

    def contrastive_logs(self, outputs):
        """The loss and accuracies of `call`'s outputs: dense NCE per direction, combined
        by `bidirectional_loss`; top-k accuracies averaged over the directions."""
        logs, direction_losses = {}, []
        accuracies = {k: [] for k in (1, 3, 5)}
        for direction in self.directions:
            nce = losses.dense_predictive_nce(
                outputs[f"predictions_{direction}"], outputs[f"targets_{direction}"], self.negatives
            )
            direction_losses.append(nce["loss"])
            logs[f"loss_{direction}"] = nce["loss"]
            for k in accuracies:
                accuracies[k].append(losses.top_k_accuracy(nce["logits"], nce["labels"], k))
            logs[f"top1_{direction}"] = accuracies[1][-1]
        total = tf.add_n(direction_losses)
        logs["loss"] = total / len(direction_losses) if self.bidirectional_loss == "mean" else total
        for k, values in accuracies.items():
            logs[f"top{k}"] = tf.add_n(values) / len(values)
        return logs

    def build_encoder(self):
        # The downstream classifiers' encoder (DPC's "LC" order: ReLU before the temporal
        # pooling), sharing these weights: the embedding is the forward context's spatial
        # mean, concatenated with the backward one's when bidirectional (512-d with R18).
        return dpc_model.lc_encoder(self.encoder)



def fuse_streams(rgb_probabilities, flow_probabilities):
    """Late fusion of the two streams (paper §3.3): the average of their softmax outputs.

    Args:
      rgb_probabilities: `[..., num_classes]` class probabilities of the RGB stream, per
        video or per clip (NumPy array or tensor).
      flow_probabilities: the flow stream's, same shape and order.

    Returns:
      `[..., num_classes]` fused probabilities (type of the inputs).

    Raises:
      ValueError: when the shapes differ.
    """
    if tuple(rgb_probabilities.shape) != tuple(flow_probabilities.shape):
        raise ValueError(
            f"the streams' probabilities differ in shape: {tuple(rgb_probabilities.shape)} (rgb) "
            f"vs {tuple(flow_probabilities.shape)} (flow)"
        )
    return (rgb_probabilities + flow_probabilities) / 2
