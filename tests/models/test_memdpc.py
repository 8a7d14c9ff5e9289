"""Tests of MemDPC: memory addressing, directions, the loss against NumPy, the encoder, fusion."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvssl import methods
from tfvssl.models import memdpc_model


def tiny_model(**overrides):
    config = dict(resolution=32, num_blocks=4, block_length=2, pred_step=2, mem_size=16)
    config.update(overrides)
    keras.utils.set_random_seed(0)
    return memdpc_model.MemoryAugmentedDPC(**config)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def blocks():
    return tf.random.stateless_normal([3, 4, 2, 32, 32, 3], seed=[1, 2])


def numpy_dense_nce(predictions, targets):
    """Mean cross-entropy of every predicted cell against every target cell, and top-1."""
    queries = predictions.reshape(-1, predictions.shape[-1]).astype(np.float64)
    keys = targets.reshape(-1, targets.shape[-1]).astype(np.float64)
    logits = queries @ keys.T
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    rows = np.arange(len(queries))
    return -log_probs[rows, rows].mean(), np.mean(np.argmax(logits, axis=1) == rows)


def test_addressing_is_a_distribution_and_the_prediction_its_convex_combination(model):
    state = tf.random.stateless_normal([2, 3, 3, 256], seed=[0, 1])
    probabilities = model.address(state).numpy()
    assert probabilities.shape == (2, 3, 3, 16)
    assert probabilities.min() >= 0.0
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-6)
    expected = probabilities @ model.memory_bank.numpy()
    np.testing.assert_allclose(model.read_memory(state), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_equals_numpy_in_both_directions(blocks, reduction):
    model = tiny_model(bidirectional_loss=reduction)
    outputs = model(blocks, training=False)
    logs = model.compute_pretext({"blocks": blocks}, training=False)
    direction_losses = []
    for direction in ("forward", "backward"):
        loss, top1 = numpy_dense_nce(
            outputs[f"predictions_{direction}"].numpy(), outputs[f"targets_{direction}"].numpy()
        )
        assert float(logs[f"loss_{direction}"]) == pytest.approx(loss, rel=1e-5)
        assert float(logs[f"top1_{direction}"]) == pytest.approx(top1)
        direction_losses.append(loss)
    expected = np.mean(direction_losses) if reduction == "mean" else np.sum(direction_losses)
    assert float(logs["loss"]) == pytest.approx(expected, rel=1e-5)


def test_backward_direction_predicts_the_first_blocks_from_the_last(model, blocks):
    out = model(blocks, training=False)
    features = model.encoder.block_features(blocks, training=False).numpy()
    np.testing.assert_allclose(out["targets_forward"], features[:, 2:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["targets_backward"], features[:, [1, 0]], rtol=1e-5, atol=1e-5)
    # Changing the first two blocks changes the forward context but not the backward one.
    changed = tf.concat([blocks[:, :2] * -1.0, blocks[:, 2:]], axis=1)
    altered = model(changed, training=False)
    for name in ("states_backward", "predictions_backward"):
        np.testing.assert_allclose(altered[name], out[name], rtol=1e-5, atol=1e-5)
    assert np.abs(altered["states_forward"] - out["states_forward"]).max() > 1e-3


def test_the_loss_gradient_reaches_the_memory_and_both_aggregators(model, blocks):
    variables = {
        "memory": model.memory_bank,
        "agg_f": model.encoder.aggregator.out_gate.kernel,
        "agg_b": model.encoder.backward_aggregator.out_gate.kernel,
    }
    with tf.GradientTape() as tape:
        loss = model.compute_pretext({"blocks": blocks}, training=False)["loss"]
    grads = tape.gradient(loss, variables)
    for name, grad in grads.items():
        assert grad is not None and np.isfinite(grad.numpy()).all(), name
        assert np.abs(grad.numpy()).max() > 0.0, name


def test_initialisation_follows_the_authors(model):
    # Orthogonal with gain 0.1: the flattened kernels' singular values are all 0.1.
    for kernel in (model.encoder.aggregator.update_gate.kernel, model.predictor.conv2.kernel):
        matrix = kernel.numpy().reshape(-1, kernel.shape[-1])
        np.testing.assert_allclose(np.linalg.svd(matrix, compute_uv=False), 0.1, rtol=1e-4)
    assert np.all(model.encoder.aggregator.update_gate.bias.numpy() == 0.0)
    memory = model.memory_bank.numpy()
    assert memory.shape == (16, 256) and abs(memory.std() - 1.0) < 0.05
    assert not model.encoder.backbone.get_layer("bn1").always_batch_stats  # Running statistics.


def test_encoder_concatenates_the_pooled_forward_and_backward_contexts(model, blocks):
    encoder = model.build_encoder()
    clips = tf.reshape(blocks, [3, 8, 32, 32, 3])
    embedding = encoder(clips, training=False)["embedding"].numpy()
    assert embedding.shape == (3, 512)
    # The downstream classifiers' order: ReLU on the backbone map, then the temporal mean.
    folded = tf.reshape(blocks, [12, 2, 32, 32, 3])
    maps = tf.nn.relu(model.encoder.backbone(folded, training=False)["stage5"])
    features = tf.reshape(tf.reduce_mean(maps, axis=1), [3, 4, 1, 1, 256])
    _, forward = model.encoder.aggregator(features)
    _, backward = model.encoder.backward_aggregator(tf.reverse(features, axis=[1]))
    expected = np.concatenate([forward.numpy().mean(axis=(1, 2)), backward.numpy().mean(axis=(1, 2))], axis=1)
    np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-5)
    # It shares the pretext model's weights.
    assert encoder.backbone is model.encoder.backbone


def test_unidirectional_model_has_one_aggregator():
    model = tiny_model(bidirectional=False)
    assert model.encoder.backward_aggregator is None
    blocks = tf.zeros([2, 4, 2, 32, 32, 3])
    logs = model.compute_pretext({"blocks": blocks}, training=False)
    assert "loss_backward" not in logs and float(logs["loss"]) == float(logs["loss_forward"])
    assert model.build_encoder()(tf.zeros([2, 8, 32, 32, 3]))["embedding"].shape == (2, 256)


def test_flow_model_takes_two_channels_and_round_trips_its_config():
    model = tiny_model(channels=2, bidirectional_loss="sum")
    assert model.encoder.backbone.input_shape[-1] == 2
    clone = memdpc_model.MemoryAugmentedDPC.from_config(model.get_config())
    assert clone.bidirectional_loss == "sum" and clone.memory_bank.shape == (16, 256)
    assert clone.encoder.backbone.input_shape[-1] == 2


def test_fuse_streams_averages_the_probabilities():
    rgb = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    flow = np.array([[0.1, 0.8, 0.1], [0.1, 0.7, 0.2]])
    fused = memdpc_model.fuse_streams(rgb, flow)
    np.testing.assert_allclose(fused, [[0.35, 0.55, 0.1], [0.15, 0.6, 0.25]])
    assert np.argmax(fused[0]) == 1  # The flow stream's confidence wins the first video.
    np.testing.assert_allclose(memdpc_model.fuse_streams(tf.constant(rgb), tf.constant(flow)), fused)
    with pytest.raises(ValueError, match="shape"):
        memdpc_model.fuse_streams(rgb, flow[:1])


def method(**overrides):
    config = dict(
        modality="rgb", curriculum=[], pred_step=3, num_blocks=8, block_length=5, resolution=128,
        color_jitter=["0.5"] * 4,
    )
    config.update(overrides)
    return methods.get_method("memdpc")(config)


@pytest.mark.parametrize(
    "overrides, flag",
    [
        ({"modality": "diff"}, "--modality=diff"),
        ({"curriculum": ["2:10", "3"]}, "--curriculum"),
        ({"pred_step": 8}, "--pred_step=8"),
    ],
)
def test_bad_flags_are_named(overrides, flag):
    with pytest.raises(ValueError, match=flag):
        method(**overrides).validate()


def test_recipe_and_clip_shape_follow_the_paper_and_the_modality():
    recipe = methods.get_method("memdpc").recipe
    assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"]) == ("adam", 1e-3, 1e-5)
    assert (recipe["grey_prob"], recipe["crop"], recipe["batch_stats_bn"]) == (0.25, "random_resized", False)
    assert method().clip_shape() == (40, 128, 128, 3)
    assert method(modality="flow").clip_shape() == (40, 128, 128, 2)
    frames = tf.fill([2, 4, 4, 2], tf.constant(255, tf.uint8))
    np.testing.assert_allclose(method(modality="flow").normalize(frames), 1.0)


def test_random_resized_example_decodes_only_its_window(tiny_dataset):
    # MemDPC's crop decodes the window it will keep, and plans its resize for the batched
    # step: the result is the crop cut from the whole frames.
    from types import SimpleNamespace

    from tfvssl.data import augment, pipeline, records, sampling
    from tfvssl.methods import dpc

    record = next(iter(tf.data.TFRecordDataset(records.list_shards(tiny_dataset, "train"))))
    video = records.parse_sequence_example(record)
    config = SimpleNamespace(num_blocks=3, block_length=2, frame_stride=2, resolution=16, crop="random_resized")
    for seed in ([1, 2], [3, 4], [5, 6]):
        seed = tf.constant(seed, tf.int64)
        example = dpc.dpc_train_example(config, video, seed)
        seeds = tf.random.experimental.stateless_split(seed, 4)
        indices = tf.reshape(sampling.sample_blocks(video["num_frames"], 3, 2, 2, seeds[0]), [-1])
        frames = pipeline.decode_frames(video["rgb"], indices)
        (_, _, height, width), fits = augment.resized_crop_window(*pipeline.frame_size(video["rgb"]), seeds[1])
        assert fits and example["blocks"].shape == (3, 2, height, width, 3)
        expected = augment.random_flip(augment.random_resized_crop(frames, 16, seeds[1]), seeds[2])
        windows = tf.reshape(example["blocks"], [1, 6, height, width, 3])
        resized = augment.apply_resize_plan(windows, example["rows"], example["cols"])[0]
        difference = np.abs(resized.numpy().astype(int) - expected.numpy().astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # Float rounding at half levels.
