"""Building blocks of the VCOP / Pace backbones that `layers.py` does not have.

* `SelfGating`: the feature gating of S3D-G.
* `conv2plus1d`: the factorised (2+1)-D convolution of R(2+1)D, added to a functional graph.
* `max_pool_tf_same`: S3D-G's imitation of TensorFlow "SAME" max-pooling.

Layer names follow the PyTorch modules they mirror (dots replaced by underscores), so the
checkpoint importer's generated name tables line up with the original state dicts.
"""

import math

import keras

from tfvssl.models import layers


@keras.saving.register_keras_serializable("tfvssl")
class SelfGating(keras.layers.Layer):
    """S3D-G self-gating: `x * sigmoid(fc(mean over T, H, W of x))`, one gate per channel.

    `fc` is a `Linear(C, C)` sub-layer with PyTorch's default initialisation; it is named
    `fc` like the PyTorch attribute, so a gating layer `mixed_3b_gating_b0` holds the
    weights of `mixed_3b.gating_b0.fc`.

    Input `[B, T, H, W, C]` (any float dtype); output the same shape and dtype.
    """

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.fc = keras.layers.Dense(
            channels,
            kernel_initializer=layers.torch_default_kernel(),
            bias_initializer=layers.TorchDefaultBias(channels),
            dtype=self.dtype_policy,
            name="fc",
        )
        self.fc.build((None, channels))

    def call(self, x):
        # Averaged in the variables' dtype (float32 under mixed precision): a bfloat16 sum
        # over T*H*W positions would lose the mean.
        average = keras.ops.mean(keras.ops.cast(x, self.variable_dtype), axis=tuple(range(1, len(x.shape) - 1)))
        gate = keras.ops.cast(keras.ops.sigmoid(self.fc(average)), x.dtype)
        # Broadcast the [B, C] gate over every spatio-temporal position.
        for _ in range(len(x.shape) - 2):
            gate = keras.ops.expand_dims(gate, 1)
        return x * gate

    def compute_output_shape(self, input_shape):
        return input_shape


def conv2plus1d_width(kernel_size, in_channels, out_channels):
    """Middle width M of a factorised t x d x d convolution (Tran et al. 2018, section 3.5).

    M = floor(t*d^2*C_in*C_out / (d^2*C_in + t*C_out)) keeps the parameter count of the full
    3-D convolution it replaces (e.g. 83 for the 3x7x7 3 -> 64 stem, 42 for a 1x1x1
    64 -> 128 shortcut).
    """
    t, h, w = kernel_size
    return math.floor(t * h * w * in_channels * out_channels / (h * w * in_channels + t * out_channels))


def conv2plus1d(x, filters, kernel_size, strides, padding, norm, name):
    """Factorised (2+1)-D convolution, as the `SpatioTemporalConv` of VCOP/Pace's R(2+1)D.

    A 1 x kH x kW spatial conv (stride and padding of H, W) to M channels, BatchNorm, ReLU,
    then a kT x 1 x 1 temporal conv (stride and padding of T) to `filters` channels. Both
    convs are bias-free with PyTorch's default init; the spatial one runs per frame.

    Args:
      x: `[B, T, H, W, C_in]` symbolic tensor of a functional model.
      filters: output channels C_out.
      kernel_size, strides, padding: (T, H, W) triples of the full convolution.
      norm: `layers.NormOptions` building the middle BatchNorm.
      name: PyTorch module name with underscores, e.g. `conv3_block1_conv1`; the layers
        are `{name}_spatial_conv`, `{name}_bn`, `{name}_relu`, `{name}_temporal_conv`.

    Returns:
      `[B, T', H', W', filters]`.
    """
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = kernel_size, strides, padding
    width = conv2plus1d_width(kernel_size, int(x.shape[-1]), filters)
    x = layers.Conv(width, (1, kh, kw), (1, sh, sw), (0, ph, pw), name=f"{name}_spatial_conv")(x)
    x = norm(f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return layers.Conv(filters, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), name=f"{name}_temporal_conv")(x)


def max_pool_tf_same(x, pool_size, strides, name):
    """S3D-G's `MaxPool3dTFPadding`: zero padding, then a ceil-mode max-pool.

    The original pads every axis with max(k - s, 0) **zeros** (the odd one at the end, as
    TF "SAME" does), whatever the input size, and then max-pools without padding in ceil
    mode, where a last partial window only sees what it covers. The output length is
    always ceil(n / s) as in TF "SAME"; where s divides n the windows are TF's too, and
    elsewhere they start where the original's do, not where TF's would.

    Args:
      x: `[B, T, H, W, C]` symbolic tensor.
      pool_size, strides: (T, H, W) triples.
      name: name of the pooling layer; the padding layer is `{name}_pad`.

    Returns:
      `[B, T', H', W', C]`.
    """
    pads = []
    for k, s in zip(pool_size, strides):
        total = max(k - s, 0)
        pads.append((total // 2, total - total // 2))
    if any(sum(pad) for pad in pads):
        x = keras.layers.ZeroPadding3D(pads, data_format="channels_last", name=f"{name}_pad")(x)
    return layers.MaxPool(pool_size, strides, 0, ceil_mode=True, name=name)(x)
