"""Tests of the pipeline's decoding helpers."""

import numpy as np
import tensorflow as tf

from tfvssl.data import pipeline


def test_decode_frames_decodes_only_the_given_frames_and_window():
    frames = np.stack([np.full([12, 16, 3], 20 * i, np.uint8) for i in range(5)])
    frames[:, 3:7, 4:10] += 7  # Something inside the window to tell it apart.
    jpegs = tf.stack([tf.io.encode_jpeg(f, quality=100) for f in frames])

    decoded = pipeline.decode_frames(jpegs, tf.constant([4, 1]))
    assert decoded.shape == (2, 12, 16, 3)
    np.testing.assert_allclose(decoded.numpy().astype(int), frames[[4, 1]], atol=2)
    assert pipeline.frame_size(jpegs) == (12, 16)

    window = pipeline.decode_frames(jpegs, tf.constant([2]), crop_window=(3, 4, 4, 6))
    whole = pipeline.decode_frames(jpegs, tf.constant([2]))
    np.testing.assert_array_equal(window, whole[:, 3:7, 4:10])
