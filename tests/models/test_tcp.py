"""Tests of temporal CPC: causality, predictions and loss against NumPy, segments, recipe."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import conftest
from conftest import configured_method
from tfvssl import methods
from tfvssl.data import records
from tfvssl.models import tcp_model

T, F = 4, 2


def tiny_model(**overrides):
    config = dict(num_segments=T, segment_length=F, channels=3, resolution=32, ar_kernel_size=(3, 1, 1))
    config.update(overrides)
    keras.utils.set_random_seed(0)
    model = tcp_model.TemporalContrastivePretraining(**config)
    # The predictors start at zero; give them values so that the predictions say something.
    for index, predictor in enumerate(model.predictors):
        predictor.kernel.assign(tf.random.stateless_normal(predictor.kernel.shape, [index, 0]) * 0.05)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def segments():
    return tf.random.stateless_normal([3, T, 32, 32, 3 * F], seed=[4, 2])


def test_masked_convolution_equals_numpy():
    keras.utils.set_random_seed(1)
    layer = tcp_model.TemporallyMaskedConv3D(3, (3, 1, 1))
    x = tf.random.stateless_normal([2, 5, 2, 2, 4], seed=[0, 3])
    layer.build(x.shape)
    kernel, bias = layer.conv.kernel.numpy()[:, 0, 0], layer.conv.bias.numpy()
    padded = np.concatenate([np.zeros((2, 2, 2, 2, 4)), x.numpy()], axis=1)
    # Output t = sum over the taps of the inputs t-2, t-1, t (zeros before the start).
    expected = sum(padded[:, tap : tap + 5] @ kernel[tap] for tap in range(3)) + bias
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_aggregator_is_causal(model):
    maps = tf.random.stateless_normal([2, 6, 3, 3, 512], seed=[1, 1])
    contexts = model.autoregressive(maps, training=False).numpy()
    assert contexts.shape == (2, 6, 3, 3, 512)
    for t in range(6):
        later = tf.concat([maps[:, : t + 1], maps[:, t + 1 :] + 5.0], axis=1)
        np.testing.assert_allclose(
            model.autoregressive(later, training=False)[:, : t + 1], contexts[:, : t + 1], rtol=1e-5, atol=1e-5
        )
    earlier = tf.concat([maps[:, :1] + 5.0, maps[:, 1:]], axis=1)
    changed = np.abs(model.autoregressive(earlier, training=False).numpy() - contexts).max(axis=(0, 2, 3, 4))
    assert np.all(changed[:3] > 1e-3)  # Three masked 3-tap layers: c_t sees h_{t-6} .. h_t.


def test_prediction_pairs_cover_every_remaining_segment():
    steps, ahead = tcp_model.prediction_pairs(4)
    assert list(zip(steps, ahead)) == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 1)]
    assert len(tcp_model.prediction_pairs(10)[0]) == 45


def test_predictions_and_targets_equal_numpy(model, segments):
    out = model(segments, training=False)
    maps = model.encoder.segment_maps(segments, training=False).numpy()
    np.testing.assert_allclose(out["targets"], maps.mean(axis=(2, 3)), rtol=1e-5, atol=1e-5)
    pooled = out["contexts"].numpy().mean(axis=(2, 3))
    kernels = [predictor.kernel.numpy() for predictor in model.predictors]
    expected = np.stack(
        [pooled[:, t] @ kernels[k - 1] for t, k in zip(*tcp_model.prediction_pairs(T))], axis=1
    )
    np.testing.assert_allclose(out["predictions"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_equals_numpy_with_every_segment_of_the_batch_as_candidate(segments, reduction):
    model = tiny_model(loss_reduction=reduction)
    out = model(segments, training=False)
    logs = model.compute_pretext({"segments": segments}, training=False)
    predictions = out["predictions"].numpy().astype(np.float64)  # [B, 6, D]
    keys = out["targets"].numpy().reshape(-1, 512).astype(np.float64)  # [B*T, D]
    losses, hits = [], []
    for b in range(3):
        for pair, (t, k) in enumerate(zip(*tcp_model.prediction_pairs(T))):
            scores = keys @ predictions[b, pair]
            positive = b * T + t + k
            losses.append(np.logaddexp.reduce(scores) - scores[positive])
            hits.append(np.argmax(scores) == positive)
    expected = np.mean(losses) if reduction == "mean" else np.sum(losses)
    assert float(logs["loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(logs["top1"]) == pytest.approx(np.mean(hits))


def test_zero_predictors_start_the_loss_at_chance(segments):
    keras.utils.set_random_seed(0)
    model = tcp_model.TemporalContrastivePretraining(
        num_segments=T, segment_length=F, resolution=32, ar_kernel_size=(3, 1, 1)
    )
    loss = model.compute_pretext({"segments": segments}, training=True)["loss"]
    # Eq. 2: the sum over the 3 videos' predictions, each at chance among 3 * T candidates.
    predictions = 3 * len(tcp_model.prediction_pairs(T)[0])
    assert float(loss) == pytest.approx(predictions * np.log(3 * T), rel=1e-5)


def test_stack_frames_is_frame_major():
    segments = tf.reshape(tf.range(2 * 3 * 1 * 1 * 2), [2, 3, 1, 1, 2])  # [T, F, H, W, C]
    stacked = tcp_model.stack_frames(segments).numpy()
    assert stacked.shape == (2, 1, 1, 6)
    np.testing.assert_array_equal(stacked[0, 0, 0], [0, 1, 2, 3, 4, 5])  # f0c0 f0c1 f1c0 ...


def test_encoder_cuts_half_overlapping_segments_and_averages_their_targets(model):
    encoder = model.build_encoder()
    # Frame i is filled with i, so the segments' stacked channels tell their frames.
    frames = tf.broadcast_to(tf.range(5, dtype=tf.float32)[None, :, None, None, None], [1, 5, 32, 32, 3])
    segments = encoder.to_segments(frames).numpy()
    assert segments.shape == (1, 4, 32, 32, 6)
    np.testing.assert_array_equal(segments[0, :, 0, 0, ::3], [[0, 1], [1, 2], [2, 3], [3, 4]])
    clips = tf.random.stateless_normal([2, 5, 32, 32, 3], seed=[5, 5])
    out = encoder(clips, training=False)
    targets = model(encoder.to_segments(clips), training=False)["targets"]
    np.testing.assert_allclose(out["segment_embeddings"], targets, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["embedding"], targets.numpy().mean(axis=1), rtol=1e-5, atol=1e-5)
    assert out["feature_map"].shape == (2, 4, 1, 1, 512)
    with pytest.raises(ValueError, match="clip length 1"):
        encoder.to_segments(tf.zeros([1, 1, 32, 32, 3]))


def method(**overrides):
    config = dict(
        modality="rgb", num_segments=T, segment_length=F, resolution=32, segment_crop_fraction=1.0,
        color_drop_prob=1.0, ar_kernel_size=["3", "1", "1"], backbone="resnet18_2d", tcp_loss="mean",
        negatives="replica", sync_bn=False, weight_decay=0.0, optimizer="sgd",
    )
    config.update(overrides)
    return methods.get_method("tcp")(config)


@pytest.fixture(scope="module")
def video(request):
    root = request.getfixturevalue("tiny_dataset")
    record = next(iter(tf.data.TFRecordDataset(records.list_shards(root, "train"))))
    return records.parse_sequence_example(record)


def model_input(tcp_method, video, seed):
    """`train_example` then `batch_augment` on a batch of one: `[T, R, R, C*F]`."""
    return conftest.model_inputs(tcp_method, video, seed)["segments"].numpy()


def test_train_example_stacks_segments_with_a_crop_each(video):
    seed = tf.constant([3, 4], tf.int64)
    example = method().train_example(video, seed)
    # The input pipeline hands over uint8 frames; the colour work waits for the batch.
    assert example["segments"].dtype == tf.uint8 and example["segments"].shape == (T, F, 32, 32, 3)
    full = model_input(method(color_drop_prob=0.0), video, seed)
    assert full.shape == (T, 32, 32, 3 * F) and full.dtype == np.float32
    np.testing.assert_allclose(full, np.moveaxis(example["segments"].numpy(), 1, 3).reshape(full.shape) / 255)
    # Without cropping, consecutive segments share a frame: the second of t is the first of t+1.
    np.testing.assert_allclose(full[:-1, ..., 3:], full[1:, ..., :3], atol=1e-6)
    cropped = model_input(method(color_drop_prob=0.0, segment_crop_fraction=0.75), video, seed)
    differences = [np.abs(cropped[t, ..., 3:] - cropped[t + 1, ..., :3]).mean() for t in range(T - 1)]
    assert min(differences) > 0.01  # Each segment has its own window.


def test_rgb_segments_have_their_colors_dropped(video):
    segments = model_input(method(), video, tf.constant([3, 4], tf.int64))
    per_channel_std = segments.reshape(T, -1, F, 3).std(axis=1).mean(axis=1)  # [T, 3]
    # One channel keeps the frame, the two others are near-constant noise.
    assert np.all(np.sum(per_channel_std > 0.03, axis=1) == 1)
    assert np.all(np.sum(per_channel_std < 0.01, axis=1) == 2)
    # Each segment draws its own channel.
    assert len({int(np.argmax(std)) for std in per_channel_std}) > 1


@pytest.mark.parametrize(
    "overrides, flag",
    [
        ({"ar_kernel_size": ["3", "2", "2"]}, "--ar_kernel_size=3,2,2"),
        ({"ar_kernel_size": ["3", "x", "3"]}, "--ar_kernel_size=3,x,3"),
        ({"segment_crop_fraction": 1.5}, "--segment_crop_fraction=1.5"),
        ({"modality": "depth"}, "--modality=depth"),
    ],
)
def test_bad_flags_are_named(overrides, flag):
    with pytest.raises(ValueError, match=flag):
        method(**overrides).validate()


def test_recipe_and_modalities():
    recipe = methods.get_method("tcp").recipe
    optimisation = (recipe["optimizer"], recipe["lr"], recipe["weight_decay"], recipe["batch_size"])
    assert optimisation == ("sgd", 0.01, 1e-4, 25)
    assert recipe["lr_decay_steps"] == [20_000, 40_000, 60_000] and recipe["resolution"] == 224
    assert method(num_segments=10, segment_length=10, resolution=224).clip_shape() == (55, 224, 224, 3)
    assert method(modality="diff").clip_shape() == (5, 32, 32, 1)
    flow = tf.constant([[[[0, 0], [255, 255]]]], tf.uint8)  # [1, 1, 2, 2]: one frame, one row.
    np.testing.assert_allclose(method(modality="flow").normalize(flow), [[[[-0.5, -0.5], [0.5, 0.5]]]])


def test_default_is_the_sum_of_eq_2_with_its_gradient_clipped():
    # Eq. 2 sums the losses; at the paper's lr 0.01 that sum trains only with the gradient
    # clipped (README, "Temporal CPC's loss").
    tcp_method = configured_method(methods.get_method("tcp"))
    c = tcp_method.config
    assert (c.tcp_loss, c.grad_clip_norm, c.optimizer, c.lr, c.weight_decay) == ("sum", 10.0, "sgd", 0.01, 1e-4)
    assert tcp_method.build_model().loss_reduction == "sum"


def test_config_round_trips_rebuild_the_same_networks(model):
    clone = tcp_model.TemporalContrastivePretraining.from_config(model.get_config())
    assert clone.config == model.config and len(clone.predictors) == T - 1
    encoder = tcp_model.SegmentEncoder.from_config(model.build_encoder().get_config())
    encoder.set_weights(model.build_encoder().get_weights())
    clips = tf.random.stateless_normal([1, 5, 32, 32, 3], seed=[6, 6])
    np.testing.assert_allclose(
        encoder(clips, training=False)["embedding"], model.build_encoder()(clips, training=False)["embedding"],
        rtol=1e-5, atol=1e-5,
    )
