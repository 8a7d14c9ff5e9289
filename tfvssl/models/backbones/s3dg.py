"""S3D-G (`s3dg`), as Pace's `models/s3d_g.py` builds it with `space_to_depth=False`.

Stem: a 3x7x7 conv with stride 2 in T, H and W (pad (1,3,3)), BN, ReLU; a 1x3x3
"TF-SAME" max-pool; conv_2b (1x1x1) and the separable conv_2c (1x3x3 then 3x1x1, each
with BN and ReLU); self-gating; a 1x3x3 pool; Inception blocks mixed_3b, 3c; a 3x3x3 pool;
mixed_4b..4f; a 2x2x2 pool; mixed_5b, 5c. The original's quirks are kept:

* the top-level gating after conv_2c is **always** applied: its `gating` flag is
  overwritten by the `SelfGating(192)` module, which is truthy;
* the stage pools (`MaxPool3dTFPadding`) pad with **zeros** and pool in ceil mode
  (`backbone_layers.max_pool_tf_same`), while each Inception block's branch-3 pool is a
  plain 3x3x3 stride-1 pool padded with -inf;
* every Inception branch ends in its own self-gating.

Convs are bias-free, followed by BN and ReLU (`STConv3D`); initialisation is PyTorch's
default (the code has none of its own), for the gating `Linear` layers too.

Layer names follow the PyTorch modules, and the last layer of each module carries the
module's own name: `conv_2c` is the ReLU ending `STConv3D` conv_2c, `mixed_3b` the
concatenation ending that block, `mixed_3b_gating_b0` a `SelfGating` whose `fc` holds
`mixed_3b.gating_b0.fc`.

For 64 frames at 224 px: conv1 32x112x112, `stage4` (mixed_4f) 16x14x14x832, `stage5`
(mixed_5c) 8x7x7x1024.
"""

import keras

from tfvssl.models import backbone_layers, layers

# Inception widths: branch 0 (1x1x1), branch 1 (1x1x1, 3x3x3), branch 2 (1x1x1, 3x3x3),
# branch 3 (pool, 1x1x1), as the original's constructor arguments.
_INCEPTION = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}

# The "TF-SAME" pools (pool size, strides, name) in front of an Inception block.
_POOL_BEFORE = {
    "mixed_3b": ((1, 3, 3), (1, 2, 2), "maxpool_3a"),
    "mixed_4b": ((3, 3, 3), (2, 2, 2), "maxpool_4a"),
    "mixed_5b": ((2, 2, 2), (2, 2, 2), "maxpool_5a"),
}


def _st_conv(x, filters, kernel_size, strides, padding, separable, norm, name):
    """`STConv3D`: conv-BN-ReLU, or for `separable` a 1xkxk then a kx1x1 conv-BN-ReLU."""
    if separable:
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = kernel_size, strides, padding
        steps = [((1, kh, kw), (1, sh, sw), (0, ph, pw)), ((kt, 1, 1), (st, 1, 1), (pt, 0, 0))]
    else:
        steps = [(kernel_size, strides, padding)]
    for index, (kernel, stride, pad) in enumerate(steps, start=1):
        last = index == len(steps)
        x = layers.Conv(filters, kernel, stride, pad, name=f"{name}_conv{index}")(x)
        x = norm(f"{name}_bn{index}")(x)
        x = keras.layers.ReLU(name=name if last else f"{name}_relu{index}")(x)
    return x


def _inception(x, widths, norm, name):
    """Four gated branches concatenated on channels (`InceptionBlock`, gating on)."""
    b0, b1a, b1b, b2a, b2b, b3b = widths
    unit, cube, pad1 = (1, 1, 1), (3, 3, 3), (1, 1, 1)
    branch0 = _st_conv(x, b0, unit, unit, 0, False, norm, f"{name}_conv_b0")
    branch1 = _st_conv(x, b1a, unit, unit, 0, False, norm, f"{name}_conv_b1_a")
    branch1 = _st_conv(branch1, b1b, cube, unit, pad1, True, norm, f"{name}_conv_b1_b")
    branch2 = _st_conv(x, b2a, unit, unit, 0, False, norm, f"{name}_conv_b2_a")
    branch2 = _st_conv(branch2, b2b, cube, unit, pad1, True, norm, f"{name}_conv_b2_b")
    branch3 = layers.MaxPool(cube, unit, pad1, name=f"{name}_maxpool_b3")(x)
    branch3 = _st_conv(branch3, b3b, unit, unit, 0, False, norm, f"{name}_conv_b3_b")
    gated = [
        backbone_layers.SelfGating(name=f"{name}_gating_b{index}")(branch)
        for index, branch in enumerate((branch0, branch1, branch2, branch3))
    ]
    return keras.layers.Concatenate(name=name)(gated)


def s3dg(input_shape, *, norm=layers.NormOptions(), name=None):
    """S3D-G without the final `fc`: 9,125,072 trainable parameters.

    Args:
      input_shape: `(T, H, W, C)`, any of T, H, W may be None.
      norm: how the BatchNorm layers are built.
      name: model name (default "s3dg").

    Returns:
      A functional model from `[B, T, H, W, C]` float clips to
      `{"stage4": [B, T/4, H/16, W/16, 832], "stage5": [B, T/8, H/32, W/32, 1024]}`
      (mixed_4f and mixed_5c, sizes rounded up).
    """
    clips = keras.Input(shape=input_shape, name="clips")
    x = _st_conv(clips, 64, (3, 7, 7), (2, 2, 2), (1, 3, 3), False, norm, "conv1")
    x = backbone_layers.max_pool_tf_same(x, (1, 3, 3), (1, 2, 2), "maxpool_2a")
    x = _st_conv(x, 64, (1, 1, 1), (1, 1, 1), 0, False, norm, "conv_2b")
    x = _st_conv(x, 192, (3, 3, 3), (1, 1, 1), (1, 1, 1), True, norm, "conv_2c")
    x = backbone_layers.SelfGating(name="gating")(x)
    outputs = {}
    for block, widths in _INCEPTION.items():
        if block in _POOL_BEFORE:
            x = backbone_layers.max_pool_tf_same(x, *_POOL_BEFORE[block])
        x = outputs[block] = _inception(x, widths, norm, block)
    return keras.Model(
        clips, {"stage4": outputs["mixed_4f"], "stage5": outputs["mixed_5c"]}, name=name or "s3dg"
    )
