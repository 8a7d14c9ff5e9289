"""2-D ResNet-18 on frames stacked along channels (`resnet18_2d`), for temporal CPC.

Lorre et al. (WACV 2020) encode each segment of F frames with a 2-D ResNet-18 whose input
stacks the frames on the channel axis: `[B, H, W, C*F]` with C = 3 for RGB, 2 for optical
flow and 1 for grey image differences. They released no code, so the network is
torchvision's `resnet18` without `avgpool`/`fc`, its first conv widened to C*F input
channels: a 7x7 stride-2 stem (pad 3), BN, ReLU, a 3x3 stride-2 max-pool (pad 1), four
stages of two basic blocks with 64/128/256/512 channels, and 1x1 conv + BN shortcuts where
the shape changes. Initialisation as torchvision: Kaiming-normal (fan-out) convs, BN 1/0.

Layer names follow torchvision's modules (`layer2_0_downsample_0`, ...). At 224 px the
output (`stage5`) is 7x7x512, `stage4` 14x14x256.
"""

import keras

from tfvssl.models import layers

_CHANNELS = (64, 128, 256, 512)
_BLOCKS = (2, 2, 2, 2)


def _conv(filters, kernel_size, strides, padding, name):
    return layers.Conv(
        filters, kernel_size, strides, padding, use_bias=False,
        kernel_initializer=layers.kaiming_normal_fan_out(), name=name,
    )


def _basic_block(x, filters, stride, norm, name):
    """Two 3x3 convs with BN and a residual connection, ReLU after the sum."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, (1, 1), stride, 0, f"{name}_downsample_0")(x)
        shortcut = norm(f"{name}_downsample_1")(shortcut)
    y = _conv(filters, (3, 3), stride, 1, f"{name}_conv1")(x)
    y = norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, (3, 3), 1, 1, f"{name}_conv2")(y)
    y = norm(f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu2")(y)


def resnet18_2d(input_shape, *, norm=layers.NormOptions(), name=None, width=64):
    """ResNet-18 (2-D): 11,176,512 trainable parameters for 3 input channels, 11,261,184 for 30.

    Args:
      input_shape: `(H, W, C*F)`; H and W may be None, the channel count must be known.
      norm: how the BatchNorm layers are built.
      name: model name (default "resnet18_2d").
      width: channels of the stem and layer1 (64); every stage scales with it.

    Returns:
      A functional model from `[B, H, W, C*F]` float frame stacks to
      `{"stage4": [B, H/16, W/16, 256], "stage5": [B, H/32, W/32, 512]}` (sizes rounded up).

    Raises:
      ValueError: if `input_shape` is not `(H, W, channels)` with a known channel count.
    """
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"resnet18_2d takes input_shape (H, W, C*F) with a known channel count, got {input_shape}"
        )
    frames = keras.Input(shape=input_shape, name="frames")
    x = _conv(width, (7, 7), 2, 3, "conv1")(frames)
    x = norm("bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = layers.MaxPool((3, 3), 2, 1, name="maxpool")(x)
    outputs = {}
    for stage, (num_blocks, filters) in enumerate(zip(_BLOCKS, _CHANNELS), start=1):
        filters = filters * width // 64
        for index in range(num_blocks):
            stride = 2 if stage > 1 and index == 0 else 1
            x = _basic_block(x, filters, stride, norm, f"layer{stage}_{index}")
        outputs[stage] = x
    return keras.Model(frames, {"stage4": outputs[3], "stage5": outputs[4]}, name=name or "resnet18_2d")
