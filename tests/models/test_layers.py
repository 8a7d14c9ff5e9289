"""Tests of the shared layers against NumPy definitions."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfvssl.models import layers


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_conv_gru_step_matches_numpy_definition():
    rng = np.random.default_rng(0)
    gru = layers.ConvGRU(hidden_size=3, dropout=0.0)
    gru.build((None, 2, 2, 4))
    x = rng.normal(size=(1, 2, 2, 4)).astype(np.float32)
    h = rng.normal(size=(1, 2, 2, 3)).astype(np.float32)

    got = gru.step(x, h, training=False).numpy()

    def gate(conv, inputs):  # 1x1 conv = matmul over channels.
        return inputs @ conv.kernel.numpy()[0, 0] + conv.bias.numpy()

    xh = np.concatenate([x, h], -1)
    update, reset = sigmoid(gate(gru.update_gate, xh)), sigmoid(gate(gru.reset_gate, xh))
    candidate = np.tanh(gate(gru.out_gate, np.concatenate([x, h * reset], -1)))
    np.testing.assert_allclose(got, h * (1 - update) + candidate * update, rtol=1e-5, atol=1e-6)


def test_conv_gru_runs_a_sequence_from_zeros_and_drops_the_carried_state():
    gru = layers.ConvGRU(hidden_size=4, dropout=0.5)
    sequence = tf.random.stateless_normal([2, 3, 1, 1, 5], seed=[1, 2])
    gru.build((None, 1, 1, 5))

    outputs, last = gru(sequence, training=False)
    assert outputs.shape == (2, 3, 1, 1, 4)
    np.testing.assert_allclose(outputs[:, -1], last)
    np.testing.assert_allclose(outputs[:, 0], gru.step(sequence[:, 0], tf.zeros([2, 1, 1, 4])))
    # In training the carried state is dropped out: some entries are exactly zero.
    outputs, _ = gru(tf.tile(sequence, [1, 1, 8, 8, 1]), training=True)
    assert np.mean(outputs.numpy() == 0.0) > 0.3


def test_gru_and_head_kernels_are_orthogonal():
    gru = layers.ConvGRU(hidden_size=8)
    gru.build((None, 1, 1, 8))
    kernel = gru.update_gate.kernel.numpy()[0, 0]  # [16, 8]
    np.testing.assert_allclose(kernel.T @ kernel, np.eye(8), atol=1e-5)
    np.testing.assert_array_equal(gru.update_gate.bias.numpy(), 0.0)


def test_max_pool_padding_never_wins():
    x = -tf.ones([1, 1, 4, 4, 1])  # All negative: zero padding would win every border window.
    pooled = layers.MaxPool((1, 3, 3), (1, 2, 2), (0, 1, 1))(x)
    assert pooled.shape == (1, 1, 2, 2, 1)
    np.testing.assert_array_equal(pooled.numpy(), -1.0)


def test_conv_pads_symmetrically_like_pytorch():
    # 7x7 stride 2 with padding 3 on 8 px: PyTorch reads pixels -3..3 for output 0
    # (TF "same" would read -2..4).
    x = np.zeros([1, 1, 8, 8, 1], np.float32)
    x[0, 0, 3, 3, 0] = 1.0  # Reached by output 0 only with symmetric padding 3.
    x[0, 0, 4, 4, 0] = 100.0
    conv = layers.Conv(1, (1, 7, 7), (1, 2, 2), (0, 3, 3), kernel_initializer="zeros")
    conv.build(x.shape)
    kernel = np.zeros([1, 7, 7, 1, 1], np.float32)
    kernel[0, 6, 6] = 1.0  # Picks input (2*i - 3 + 6, 2*j - 3 + 6) for output (i, j).
    conv.kernel.assign(kernel)
    y = conv(x).numpy()
    assert y.shape == (1, 1, 4, 4, 1)
    assert y[0, 0, 0, 0, 0] == 1.0


@pytest.mark.parametrize(
    "kernel, strides, padding, shape",
    [
        ((3, 3, 3), 1, 1, (1, 5, 6, 6, 2)),  # TF "SAME" is symmetric here.
        ((3, 3, 3), 2, 1, (1, 5, 8, 8, 2)),  # Not on the even axes: zeros concatenated.
        ((3, 3, 3), 2, 1, (1, 5, 7, 7, 2)),  # Odd sizes: "SAME" again.
        ((3, 7, 7), (1, 2, 2), (1, 3, 3), (1, 4, 8, 8, 2)),
        ((3, 1, 1), (2, 1, 1), (1, 0, 0), (1, 4, 3, 3, 2)),
        ((3, 3, 3), 1, (0, 1, 1), (1, 4, 5, 5, 2)),  # No time padding: not "SAME".
        ((1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 2, 8, 8, 2)),  # Per frame, zeros concatenated.
        ((1, 3, 3), 1, (0, 1, 1), (1, 2, 6, 6, 2)),
        ((1, 1, 1), (1, 2, 2), 0, (1, 2, 8, 8, 2)),
        ((7, 7), 2, 3, (1, 8, 8, 2)),
        ((3, 3), 2, 1, (1, 9, 9, 2)),
    ],
)
def test_conv_equals_a_valid_convolution_of_the_zero_padded_input(kernel, strides, padding, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    conv = layers.Conv(3, kernel, strides, padding)
    y = conv(x).numpy()
    pads = [(0, 0), *((p, p) for p in conv.padding), (0, 0)]
    expected = tf.nn.convolution(np.pad(x, pads), conv.kernel, conv.strides, "VALID").numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel, strides, padding", [((3, 3, 3), 2, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))])
def test_conv_pads_alike_when_the_sizes_are_unknown_until_run(kernel, strides, padding):
    x = np.random.default_rng(0).normal(size=(1, 4, 8, 8, 2)).astype(np.float32)
    conv = layers.Conv(3, kernel, strides, padding)
    unknown_sizes = tf.function(conv, input_signature=[tf.TensorSpec([None, None, None, None, 2])])
    np.testing.assert_allclose(unknown_sizes(x), conv(x), rtol=1e-5, atol=1e-5)


def test_a_training_step_through_convs_leaves_grappler_without_errors():
    # A tf.pad in front of a Conv3D made Grappler's remapper fail on the gradient graph
    # ("remapper failed: ... fanout '.../ShapeN' exist for missing node '.../Pad'").
    script = textwrap.dedent(
        """
        import tensorflow as tf
        from tfvssl.models import layers

        convs = [
            layers.Conv(4, (3, 3, 3), 2, 1), layers.Conv(4, (3, 3, 3), 1, 1), layers.Conv(4, (1, 3, 3), 2, (0, 1, 1)),
        ]
        x = tf.random.normal([2, 4, 8, 8, 3])

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                y = x
                for conv in convs:
                    y = tf.nn.relu(conv(y))
                loss = tf.reduce_sum(y * y)
            variables = [conv.kernel for conv in convs]
            for variable, grad in zip(variables, tape.gradient(loss, variables)):
                variable.assign_sub(1e-3 * grad)
            return loss

        print("loss", float(step()))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loss" in result.stdout
    errors = [line for line in result.stderr.splitlines() if "meta_optimizer" in line or "remapper" in line]
    assert not errors, errors


def test_batch_stats_norm_in_inference_uses_the_batch_and_keeps_moving_stats():
    norm = layers.NormOptions(always_batch_stats=True)("bn")
    x = tf.random.stateless_normal([8, 3], seed=[0, 1]) * 5.0 + 2.0
    norm.build(x.shape)
    y = norm(x, training=False).numpy()
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-3)
    np.testing.assert_array_equal(norm.moving_mean.numpy(), 0.0)
    norm(x, training=True)
    np.testing.assert_allclose(norm.moving_mean.numpy(), 0.1 * x.numpy().mean(0), rtol=1e-5)
    # PyTorch updates the running variance with the unbiased batch variance.
    np.testing.assert_allclose(
        norm.moving_variance.numpy(), 0.9 + 0.1 * x.numpy().var(0, ddof=1), rtol=1e-5
    )
    plain = layers.NormOptions()("plain")
    plain.build(x.shape)
    np.testing.assert_allclose(plain(x, training=False), x / np.sqrt(1 + 1e-5), rtol=1e-5)


@pytest.mark.parametrize("shape", [(3, 2, 5, 5, 4), (6, 4)])
def test_batch_norm_gradients_equal_those_of_the_textbook_formula(shape):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(1.0, 2.0, size=shape), tf.float32)
    weights = tf.constant(rng.normal(size=shape), tf.float32)
    norm = layers.BatchNorm()
    norm.build(shape)
    norm.gamma.assign(rng.normal(size=shape[-1:]))
    norm.beta.assign(rng.normal(size=shape[-1:]))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.sin(norm(x, training=True)) * weights)
    grads = tape.gradient(loss, [x, norm.gamma, norm.beta])

    # The same loss differentiated op by op in float64.
    x64, gamma, beta = (tf.cast(v, tf.float64) for v in (x, norm.gamma, norm.beta))
    with tf.GradientTape() as tape:
        tape.watch([x64, gamma, beta])
        mean, variance = tf.nn.moments(x64, list(range(len(shape) - 1)))
        y = (x64 - mean) / tf.sqrt(variance + 1e-5) * gamma + beta
        loss = tf.reduce_sum(tf.sin(y) * tf.cast(weights, tf.float64))
    expected = tape.gradient(loss, [x64, gamma, beta])
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 2, 5, 5, 4), (6, 4)])
def test_half_precision_batch_norm_is_the_float32_one_rounded(shape):
    # bfloat16 inputs take one fused op and its fused gradient; the numbers are the float32
    # path's to bfloat16 precision, and the moving statistics the same.
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(1.0, 2.0, size=shape), tf.float32)
    weights = tf.constant(rng.normal(size=shape), tf.float32)
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        norm = layers.BatchNorm(dtype=policy)
        norm.build(shape)
        norm.gamma.assign(rng.normal(size=shape[-1:]) if not results else results["float32"][-1])
        with tf.GradientTape() as tape:
            inputs = tf.cast(x, norm.compute_dtype)
            tape.watch(inputs)
            y = norm(inputs, training=True)
            loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)) * weights)
        grads = tape.gradient(loss, [inputs, norm.gamma, norm.beta])
        results[policy] = (y, *grads, norm.moving_mean, norm.moving_variance, norm.gamma.numpy())
        assert y.dtype == norm.compute_dtype
    for full, half in zip(results["float32"][:-1], results["mixed_bfloat16"][:-1]):
        full, half = (tf.cast(v, tf.float32).numpy() for v in (full, half))
        np.testing.assert_allclose(half, full, atol=0.03 * np.abs(full).max())
