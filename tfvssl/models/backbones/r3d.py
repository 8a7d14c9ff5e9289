"""The 3-D ResNets of VCOP and Pace: R3D (`r3d`, `r3d18`) and R(2+1)D (`r21d`, `r21d18`).

One skeleton, as `R3DNet` / `R2Plus1DNet` in the authors' `models/r3d.py` and
`models/r21d.py`: a 3x7x7 stem (stride (1,2,2), pad (1,3,3), 64 channels) with BN and
ReLU and **no max-pool**, then stages conv2..conv5 of basic blocks with 64/128/256/512
channels. The first block of conv3..conv5 has stride 2 in T, H and W and a 1x1x1 stride-2
conv + BN shortcut; every other shortcut is the identity. All convs are bias-free with
PyTorch's default init (the authors' code has no init of its own).

`r3d` and `r21d` have one block per stage, as the papers' code trains them (a 10-layer
network, not ResNet-18); `r3d18` and `r21d18` have two. In R(2+1)D every t x d x d conv,
the 1x1x1 shortcut included, is factorised into a spatial 1 x d x d conv, BN, ReLU and a
temporal t x 1 x 1 conv (`backbone_layers.conv2plus1d`).

Layer names follow the PyTorch modules: `conv3_block1_conv1_temporal_spatial_conv`,
`conv3_block1_downsamplebn`, `conv3_blocks_0_bn2` (second block), ...

For 16 frames at 112 px: stem 16x56x56x64, conv2 16x56x56x64, conv3 8x28x28x128, conv4
(`stage4`) 4x14x14x256, conv5 (`stage5`) 2x7x7x512.
"""

import keras

from tfvssl.models import backbone_layers, layers

_CHANNELS = (64, 128, 256, 512)


def _conv3d(x, filters, kernel_size, strides, padding, norm, name):
    """R3D's `SpatioTemporalConv`: a plain 3-D conv (`norm` is unused; same signature as R(2+1)D's)."""
    del norm
    return layers.Conv(filters, kernel_size, strides, padding, name=f"{name}_temporal_spatial_conv")(x)


def _res_block(x, filters, downsample, conv, norm, name):
    """conv-BN-ReLU-conv-BN plus the shortcut, then ReLU (`SpatioTemporalResBlock`)."""
    stride = (2, 2, 2) if downsample else (1, 1, 1)
    residual = conv(x, filters, (3, 3, 3), stride, (1, 1, 1), norm, f"{name}_conv1")
    residual = norm(f"{name}_bn1")(residual)
    residual = keras.layers.ReLU(name=f"{name}_relu1")(residual)
    residual = conv(residual, filters, (3, 3, 3), (1, 1, 1), (1, 1, 1), norm, f"{name}_conv2")
    residual = norm(f"{name}_bn2")(residual)
    if downsample:
        x = conv(x, filters, (1, 1, 1), (2, 2, 2), (0, 0, 0), norm, f"{name}_downsampleconv")
        x = norm(f"{name}_downsamplebn")(x)
    y = keras.layers.Add(name=f"{name}_add")([x, residual])
    return keras.layers.ReLU(name=f"{name}_outrelu")(y)


def _build(input_shape, layer_sizes, conv, norm, name, width=64):
    """The ResNet skeleton with `layer_sizes` blocks per stage and `conv` as its convolution.

    Args:
      input_shape: `(T, H, W, C)`, any of T, H, W may be None.
      layer_sizes: blocks in conv2..conv5.
      conv: `_conv3d` (R3D) or `backbone_layers.conv2plus1d` (R(2+1)D).
      norm: how the BatchNorm layers are built.
      name: model name.
      width: channels of the stem and conv2 (64); every stage scales with it.

    Returns:
      A functional model from `[B, T, H, W, C]` float clips to the conv4 and conv5 maps
      `{"stage4": [B, T/4, H/8, W/8, 256], "stage5": [B, T/8, H/16, W/16, 512]}` (sizes
      rounded up).
    """
    clips = keras.Input(shape=input_shape, name="clips")
    x = conv(clips, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), norm, "conv1")
    x = norm("bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    outputs = {}
    for stage, (num_blocks, filters) in enumerate(zip(layer_sizes, _CHANNELS), start=2):
        filters = filters * width // 64
        for index in range(num_blocks):
            # The original keeps the first block as `block1` and the rest in a ModuleList.
            block = f"conv{stage}_block1" if index == 0 else f"conv{stage}_blocks_{index - 1}"
            x = _res_block(x, filters, stage > 2 and index == 0, conv, norm, block)
        outputs[stage] = x
    return keras.Model(clips, {"stage4": outputs[4], "stage5": outputs[5]}, name=name)


def r3d(input_shape, *, norm=layers.NormOptions(), name=None, width=64):
    """R3D, one block per stage (VCOP/Pace): 14,361,792 trainable parameters (`width` 64)."""
    return _build(input_shape, (1, 1, 1, 1), _conv3d, norm, name or "r3d", width)


def r3d18(input_shape, *, norm=layers.NormOptions(), name=None, width=64):
    """R3D-18, two blocks per stage: 33,166,272 trainable parameters (`width` 64)."""
    return _build(input_shape, (2, 2, 2, 2), _conv3d, norm, name or "r3d18", width)


def r21d(input_shape, *, norm=layers.NormOptions(), name=None, width=64):
    """R(2+1)D, one block per stage (VCOP/Pace): 14,365,303 trainable parameters (`width` 64)."""
    return _build(input_shape, (1, 1, 1, 1), backbone_layers.conv2plus1d, norm, name or "r21d", width)


def r21d18(input_shape, *, norm=layers.NormOptions(), name=None, width=64):
    """R(2+1)D-18, two blocks per stage: 33,178,423 trainable parameters (`width` 64)."""
    return _build(input_shape, (2, 2, 2, 2), backbone_layers.conv2plus1d, norm, name or "r21d18", width)

