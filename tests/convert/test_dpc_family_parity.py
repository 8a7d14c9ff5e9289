"""The DPC family against the authors' PyTorch models (`../shared/fixtures/reference/`).

Each fixture's weights are imported through `tfvssl.convert.dpc_family` and every saved
activation is compared within max|ours - theirs| <= 1e-4 * max(1, max|theirs|), float32.
Layouts: the fixtures are channels-first (`[B, N, C, L, H, W]` inputs, `[.., C, h, w]`
maps), ours channels-last.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import FIXTURES

from tfvssl import losses
from tfvssl.convert import dpc_family, load_torch_state_dict
from tfvssl.models import dpc_model, layers, memdpc_model


def assert_matches(ours, theirs, name):
    ours, theirs = np.asarray(ours, np.float32), np.asarray(theirs, np.float32)
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} != {theirs.shape}"
    error = float(np.max(np.abs(ours - theirs)))
    bound = 1e-4 * max(1.0, float(np.max(np.abs(theirs))))
    assert error <= bound, f"{name}: max abs difference {error:.3g} > {bound:.3g}"


def load_fixture(fixture_dir, name):
    folder = fixture_dir(name)
    weights = dict(np.load(os.path.join(folder, "weights.npz")))
    io = dict(np.load(os.path.join(folder, "io.npz")))
    return weights, io


def with_pass(io, prefix):
    """The arrays of one pass: `trainbn_x` as `x` for the training pass; inputs and targets
    are shared."""
    if not prefix:
        return io
    return {**io, **{name[len(prefix):]: value for name, value in io.items() if name.startswith(prefix)}}


def blocks_of(inputs):
    """`[B, N, C, L, H, W]` -> `[B, N, L, H, W, C]`."""
    return tf.constant(np.transpose(inputs, (0, 1, 3, 4, 5, 2)))


def maps(array):
    """Channels-first `[..., C, h, w]` -> `[..., h, w, C]`."""
    rank = array.ndim
    return np.transpose(array, (*range(rank - 3), rank - 2, rank - 1, rank - 3))


def cross_entropy_rows(logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def test_dpc_rnn(fixture_dir):
    weights, io = load_fixture(fixture_dir, "dpc_rnn_resnet18")
    keras.utils.set_random_seed(0)
    model = dpc_model.DensePredictiveCoding(resolution=64, num_blocks=8, block_length=5, pred_step=3)
    load_torch_state_dict(model, weights, dpc_family.dpc_rnn_table(model), ignore=dpc_family.GRU_ALIASES)

    features = model.encoder.block_features(blocks_of(io["input"]), training=False)
    assert_matches(features, maps(io["feature_prerelu"]), "feature_prerelu")
    predictions, states = dpc_model.roll_out(model.encoder.aggregator, model.predictor, features[:, :5], 3)
    assert_matches(predictions, maps(io["pred"]), "pred")
    # The authors run the GRU once more on the last prediction; that state is never used.
    assert_matches(np.moveaxis(states, 1, 0), maps(io["agg_hidden"][:3]), "agg_hidden")
    assert_matches(features[:, 5:], maps(io["gt_feature"]), "gt_feature")
    nce = losses.dense_predictive_nce(predictions, features[:, 5:])
    assert_matches(nce["logits"], io["score"].reshape(24, 24), "score")
    np.testing.assert_array_equal(nce["labels"], io["target"])
    assert_matches(nce["loss"], io["loss"], "loss")
    for k in (1, 3, 5):
        assert float(losses.top_k_accuracy(nce["logits"], nce["labels"], k)) == pytest.approx(float(io[f"top{k}"]))


@pytest.fixture(scope="module")
def memdpc_bd():
    folder = os.path.join(FIXTURES, "memdpc_bd_resnet18")
    if not os.path.isdir(folder):
        pytest.skip(f"reference fixtures not found at {folder}")
    weights, io = load_fixture(lambda name: os.path.join(FIXTURES, name), "memdpc_bd_resnet18")
    keras.utils.set_random_seed(0)
    # No GRU dropout, so that training mode differs from inference only in BatchNorm, as
    # the fixture's trainbn_ pass.
    model = memdpc_model.MemoryAugmentedDPC(
        resolution=64, num_blocks=8, block_length=5, pred_step=3, mem_size=1024, gru_dropout=0.0,
        bidirectional_loss="sum",
    )
    load_torch_state_dict(model, weights, dpc_family.memdpc_bd_table(model), ignore=dpc_family.GRU_ALIASES)
    return model, io


@pytest.mark.parametrize("prefix", ["", "trainbn_"])
def test_memdpc_bd(memdpc_bd, prefix):
    model, io = memdpc_bd
    expected = with_pass(io, prefix)
    statistics = [variable.numpy() for variable in model.non_trainable_weights]
    try:
        out = model(blocks_of(io["input"]), training=bool(prefix))
    finally:  # A training pass moves the BatchNorm statistics the inference test needs.
        for variable, value in zip(model.non_trainable_weights, statistics):
            variable.assign(value)

    assert_matches(out["features"], maps(expected["feature_prerelu"]), "feature_prerelu")
    assert_matches(out["states_forward"][:, 0], maps(expected["context_feature"][:, 0]), "context_feature")
    for direction, short in [("forward", "fwd"), ("backward", "bwd")]:
        states = out[f"states_{direction}"]
        hidden = f"agg_{short[0]}_hidden"
        assert_matches(np.moveaxis(states, 1, 0), maps(expected[hidden]), hidden)
        logits = tf.stack([model.predictor(states[:, p]) for p in range(3)], axis=1)
        assert_matches(logits, maps(expected[f"mem_logits_{short}"]), f"mem_logits_{short}")
        predictions = out[f"predictions_{direction}"]
        assert_matches(predictions, maps(np.moveaxis(expected[f"pred_{short}"], 2, 1)), f"pred_{short}")
        nce = losses.dense_predictive_nce(predictions, out[f"targets_{direction}"])
        assert_matches(nce["logits"], expected[f"score_{short}"], f"score_{short}")
        np.testing.assert_array_equal(nce["labels"], expected["target"])
        rows = cross_entropy_rows(nce["logits"], nce["labels"])
        assert_matches(rows, expected[f"ce_rows_{short}"], f"ce_rows_{short}")
    logs = model.contrastive_logs(out)
    for index, direction in enumerate(("forward", "backward")):
        assert_matches(logs[f"loss_{direction}"], expected["losses"][index], f"losses[{index}]")
        assert float(logs[f"top1_{direction}"]) == pytest.approx(float(expected["acc"][index, 0]))
    # The authors' code sums the two directions (`--bidirectional_loss=sum`).
    assert_matches(logs["loss"], expected["loss"], "loss")
    assert float(logs["top5"]) == pytest.approx(float(np.mean(expected["acc"][:, 1])))


class Classifier(keras.Model):
    """An LC model's encoder and head, at the paths `lc_table` names (the fine-tuning code
    composes them: head(encoder(clips)["embedding"]))."""

    def __init__(self, encoder, head, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head


@pytest.mark.parametrize("name, bidirectional", [("dpc_lc_resnet18", False), ("memdpc_lc_resnet18", True)])
def test_lc_classifiers(fixture_dir, name, bidirectional):
    weights, io = load_fixture(fixture_dir, name)
    keras.utils.set_random_seed(0)
    aggregators = ("agg_f", "agg_b") if bidirectional else ("agg",)
    # Dropout off everywhere: the fixture's eval and trainbn_ passes have none.
    pretrained = dpc_model.build_block_encoder("r2d3d18", 5, 64, gru_dropout=0.0, aggregator_names=aggregators)
    encoder = dpc_model.lc_encoder(pretrained)
    head = layers.ClassificationHead(10, dropout=0.0, name="head")
    head.build((None, 512 if bidirectional else 256))
    table = dpc_family.lc_table(encoder)
    load_torch_state_dict(Classifier(encoder, head), weights, table, ignore=dpc_family.GRU_ALIASES)
    blocks = blocks_of(io["input"])
    labels = io["target"]

    for prefix in ("", "trainbn_"):  # Inference first: the training pass moves the statistics.
        expected = with_pass(io, prefix)
        training = bool(prefix)
        encoded = encoder(blocks, training=training)
        # The encoder's feature map is ReLU'd before the temporal mean: the GRUs' input.
        features = encoded["feature_map"]
        sequences = {"agg": encoder.aggregator(features)[0]}
        if bidirectional:
            sequences = {
                "agg_f": sequences["agg"],
                "agg_b": encoder.backward_aggregator(tf.reverse(features, axis=[1]))[0],
            }
        for gru, sequence in sequences.items():
            assert_matches(sequence, maps(expected[f"{gru}_output"]), f"{prefix}{gru}_output")
        embedding = encoded["embedding"]
        assert_matches(embedding, expected["context_pre_bn"][:, 0], f"{prefix}context_pre_bn")
        if training:
            # final_bn normalises each channel over the B=2 clips: (a - b) / |a - b| up to
            # eps, which turns float32 noise in a - b into errors of 1e-3. The head is
            # checked on the fixture's own embedding instead.
            embedding = tf.constant(expected["context_pre_bn"][:, 0])
        assert_matches(head.norm(embedding, training=training), expected["context"][:, 0], f"{prefix}context")
        logits = head(embedding, training=training)
        assert_matches(logits, expected["output"][:, 0], f"{prefix}output")
        loss = tf.reduce_mean(cross_entropy_rows(logits, labels))
        assert_matches(loss, expected["loss"], f"{prefix}loss")
        assert float(np.mean(np.argmax(logits, axis=1) == labels)) == pytest.approx(float(expected["acc"]))
