"""Tests of the motion modalities: flow quantisation, image differences, TV-L1 in NumPy (and
against OpenCV's where installed), DIS, and the encoder that aligns the modalities."""

import numpy as np
import pytest
import tensorflow as tf

from tfvssl.data import modalities

try:
    import cv2
except ImportError:
    cv2 = None

NO_OPENCV = "OpenCV is not installed (pip install 'tfvssl[flow]'); the NumPy TV-L1 path is tested instead"


def textured(height, width, shift_x=0.0, shift_y=0.0):
    """A smooth float image in [0, 255] whose content is moved by (shift_x, shift_y)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = cols - shift_x, rows - shift_y
    return 127 + 60 * np.sin(x / 3.1) * np.cos(y / 4.3) + 40 * np.sin((x + 2 * y) / 5.7)


def as_rgb(grey):
    return np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=-1)


def interior(field, margin=4):
    return field[margin:-margin, margin:-margin]


# ---- storage formats -------------------------------------------------------------------------


def test_quantize_flow_maps_the_bound_to_the_byte_range_and_clips():
    flow = np.array([[[-20.0, 20.0], [0.0, 10.0], [-35.0, 99.0]]], np.float32)  # [1, 3, 2]

    image = modalities.quantize_flow(flow, bound=20)

    assert image.dtype == np.uint8 and image.shape == (1, 3, 3)
    np.testing.assert_array_equal(image[0, :, :2], [[0, 255], [128, 191], [0, 255]])
    np.testing.assert_array_equal(image[..., 2], 128)


@pytest.mark.parametrize("bound", [modalities.MEMDPC_FLOW_BOUND, modalities.TCP_FLOW_BOUND])
def test_dequantize_inverts_quantize_within_half_a_step(bound):
    flow = np.random.default_rng(0).uniform(-bound, bound, (5, 7, 2)).astype(np.float32)

    restored = modalities.dequantize_flow(modalities.quantize_flow(flow, bound), bound)

    np.testing.assert_allclose(restored, flow, atol=bound / 255 + 1e-5)


def test_image_difference_is_half_the_grey_change_around_mid_grey():
    frame = np.zeros((2, 2, 3), np.uint8)
    next_frame = np.array([[[255, 255, 255], [0, 0, 0]], [[100, 0, 0], [0, 0, 100]]], np.uint8)

    difference = modalities.image_difference(frame, next_frame)

    grey = next_frame.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert difference.shape == (2, 2, 1) and difference.dtype == np.uint8
    np.testing.assert_array_equal(difference[..., 0], np.round((grey + 255) / 2))
    assert modalities.image_difference(next_frame, frame)[0, 0, 0] == 0  # White to black.


# ---- optical flow ------------------------------------------------------------------------------


def test_numpy_tvl1_recovers_a_subpixel_translation():
    image0, image1 = textured(40, 48), textured(40, 48, 1.5, -0.75)

    flow = modalities.tvl1_flow(image0, image1)

    assert flow.shape == (40, 48, 2) and flow.dtype == np.float32
    np.testing.assert_allclose(interior(flow).mean(axis=(0, 1)), [1.5, -0.75], atol=0.05)
    assert np.abs(interior(flow) - [1.5, -0.75]).max() < 0.3


def test_numpy_tvl1_sees_no_motion_in_a_still_pair():
    image = textured(32, 32)
    np.testing.assert_allclose(modalities.tvl1_flow(image, image), 0.0, atol=1e-3)


def test_numpy_tvl1_rejects_images_of_different_sizes():
    with pytest.raises(ValueError, match="two grey images of one size"):
        modalities.tvl1_flow(np.zeros((16, 16)), np.zeros((16, 20)))


@pytest.mark.skipif(cv2 is None or not hasattr(cv2, "optflow"), reason=NO_OPENCV)
def test_numpy_tvl1_agrees_with_opencv_tvl1():
    image0 = np.round(textured(48, 64)).astype(np.uint8)
    image1 = np.round(textured(48, 64, 1.5, -0.75)).astype(np.uint8)

    ours = modalities.tvl1_flow(image0, image1)
    theirs = cv2.optflow.DualTVL1OpticalFlow_create().calc(image0, image1, None)

    assert np.abs(interior(ours) - interior(theirs)).mean() < 0.1
    assert modalities.FlowEstimator("tvl1").backend == "opencv"


@pytest.mark.skipif(cv2 is not None and hasattr(cv2, "optflow"), reason="OpenCV's TV-L1 is installed")
def test_tvl1_estimator_falls_back_to_numpy_without_opencv_contrib():
    estimator = modalities.FlowEstimator("tvl1")
    frame, next_frame = as_rgb(textured(32, 40)), as_rgb(textured(32, 40, 1.0, 0.5))

    flow = estimator(frame, next_frame)

    assert estimator.backend == "numpy" and estimator.describe() == "tvl1 (numpy)"
    np.testing.assert_allclose(interior(flow).mean(axis=(0, 1)), [1.0, 0.5], atol=0.1)


@pytest.mark.skipif(cv2 is None, reason=NO_OPENCV)
def test_dis_estimator_recovers_a_translation():
    frame, next_frame = as_rgb(textured(64, 64)), as_rgb(textured(64, 64, 2.0, 1.0))
    flow = modalities.FlowEstimator("dis")(frame, next_frame)
    np.testing.assert_allclose(interior(flow, 8).mean(axis=(0, 1)), [2.0, 1.0], atol=0.3)


@pytest.mark.skipif(cv2 is not None, reason="OpenCV is installed")
def test_dis_without_opencv_names_the_extra_to_install():
    with pytest.raises(ValueError, match=r"tfvssl\[flow\]"):
        modalities.FlowEstimator("dis")


def test_unknown_flow_algorithm_is_rejected():
    with pytest.raises(ValueError, match="flow algorithm must be one of"):
        modalities.FlowEstimator("farneback")


# ---- encoding a video --------------------------------------------------------------------------


def decode(jpegs, channels):
    return np.stack([tf.io.decode_jpeg(jpeg, channels=channels).numpy() for jpeg in jpegs])


def test_encoder_aligns_motion_with_rgb_by_dropping_the_last_frame():
    frames = [as_rgb(textured(32, 40, 1.0 * t, 0.0)) for t in range(4)]
    encoder = modalities.ModalityEncoder(("rgb", "flow", "diff"), jpeg_quality=95,
                                         flow=modalities.FlowEstimator("tvl1"), flow_bound=10)
    for frame in frames:
        encoder.add(frame)

    jpegs = encoder.result()

    assert {name: len(values) for name, values in jpegs.items()} == {"rgb": 3, "flow": 3, "diff": 3}
    rgb = decode(jpegs["rgb"], 3)
    assert np.abs(rgb - np.stack(frames[:3]).astype(float)).mean() < 2  # Frames 0-2, not 1-3.
    flow = modalities.dequantize_flow(decode(jpegs["flow"], 3), bound=10)
    np.testing.assert_allclose(interior(flow[1]).mean(axis=(0, 1)), [1.0, 0.0], atol=0.15)
    diff = decode(jpegs["diff"], 1)[..., 0].astype(float)
    expected = [modalities.image_difference(a, b)[..., 0] for a, b in zip(frames, frames[1:])]
    assert np.abs(diff - np.stack(expected)).mean() < 1


def test_encoder_stores_given_rgb_jpegs_as_they_are():
    encoder = modalities.ModalityEncoder(("rgb",))
    encoder.add(None, rgb_jpeg=b"first")
    encoder.add(None, rgb_jpeg=b"second")
    assert not encoder.needs_pixels
    assert encoder.result() == {"rgb": [b"first", b"second"]}


def test_encoder_rejects_flow_without_an_estimator_and_unknown_modalities():
    with pytest.raises(ValueError, match="needs a FlowEstimator"):
        modalities.ModalityEncoder(("flow",))
    with pytest.raises(ValueError, match="among rgb, flow, diff"):
        modalities.ModalityEncoder(("depth",))
