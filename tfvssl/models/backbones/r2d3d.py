"""The "2D3D" ResNets of DPC and MemDPC (`r2d3d18`, `r2d3d34`).

As the authors' `backbone/resnet_2d3d.py` builds them: bias-free convolutions; a 2-D stem
(1x7x7, stride (1,2,2)) and 1x3x3 max-pool; 2-D basic blocks (1x3x3) in layer1 and
layer2; 3-D basic blocks (3x3x3, temporal stride 2) in layer3 and layer4; **256**
channels in layer4 and no ReLU after its last block, so the output is signed. Shortcuts
are 1x1x1 conv + BN where the shape changes. Convs use Kaiming-normal (fan-out) init.

For 5 frames at 128 px the output (`stage5`) is `[B, 2, 4, 4, 256]`.
"""

import keras

from tfvssl.models import layers

# (blocks per stage) of the two depths the papers use.
_DEPTHS = {"r2d3d18": (2, 2, 2, 2), "r2d3d34": (3, 4, 6, 3)}
_CHANNELS = (64, 128, 256, 256)


def _conv(filters, kernel, strides, padding, name):
    return layers.Conv(
        filters, kernel, strides, padding, use_bias=False,
        kernel_initializer=layers.kaiming_normal_fan_out(), name=name,
    )


def _basic_block(x, filters, stride, three_d, final_relu, norm, name):
    """Two convs (1x3x3 or 3x3x3) with a residual connection."""
    kernel, pad = ((3, 3, 3), (1, 1, 1)) if three_d else ((1, 3, 3), (0, 1, 1))
    strides = (stride, stride, stride) if three_d else (1, stride, stride)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, (1, 1, 1), strides, 0, f"{name}_downsample_0")(x)
        shortcut = norm(f"{name}_downsample_1")(shortcut)
    y = _conv(filters, kernel, strides, pad, f"{name}_conv1")(x)
    y = norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, kernel, 1, pad, f"{name}_conv2")(y)
    y = norm(f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    if final_relu:
        y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    return y


def _build(depth_name, input_shape, norm, name=None, width=64):
    clips = keras.Input(shape=input_shape, name="clips")
    x = _conv(width, (1, 7, 7), (1, 2, 2), (0, 3, 3), "conv1")(clips)
    x = norm("bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = layers.MaxPool((1, 3, 3), (1, 2, 2), (0, 1, 1), name="maxpool")(x)
    outputs = {}
    blocks = _DEPTHS[depth_name]
    for stage, (num_blocks, filters) in enumerate(zip(blocks, _CHANNELS), start=1):
        filters = filters * width // 64
        for index in range(num_blocks):
            last = stage == 4 and index == num_blocks - 1
            x = _basic_block(
                x,
                filters,
                stride=2 if stage > 1 and index == 0 else 1,
                three_d=stage >= 3,
                final_relu=not last,
                norm=norm,
                name=f"layer{stage}_{index}",
            )
        outputs[f"layer{stage}"] = x
    return keras.Model(
        clips, {"stage4": outputs["layer3"], "stage5": outputs["layer4"]}, name=name or depth_name
    )


def r2d3d18(input_shape, *, norm=layers.NormOptions(), name=None, width=64):
    """ResNet-18-2D3D: 14,057,536 trainable parameters (`width` 64)."""
    return _build("r2d3d18", input_shape, norm, name, width)


def r2d3d34(input_shape, *, norm=layers.NormOptions(), name=None, width=64):
    """ResNet-34-2D3D: 32,422,208 trainable parameters (`width` 64)."""
    return _build("r2d3d34", input_shape, norm, name, width)
