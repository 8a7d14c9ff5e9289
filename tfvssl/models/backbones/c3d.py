"""C3D with BatchNorm (`c3d`), as VCOP's and Pace's `models/c3d.py` build it.

Eight 3x3x3 convolutions with padding 1 **and bias**, each followed by BatchNorm and ReLU;
max-pools 1x2x2 after conv1 and 2x2x2 after conv2, conv3b and conv4b; no pool after conv5
(the methods average-pool globally). PyTorch's default initialisation (Kaiming-uniform
a=sqrt(5), biases U(+-1/sqrt(fan_in))), as the authors' code has no init of its own.

For 16 frames at 112 px: conv1/pool1 16x56x56, pool2 8x28x28, pool3 4x14x14, `stage4`
(relu4b) 4x14x14x512, pool4 2x7x7, `stage5` (relu5b) 2x7x7x512.
"""

import keras

from tfvssl.models import layers

# (conv suffix, channels, max-pool after it or None), in the order of the original.
_LAYOUT = (
    ("1", 64, (1, 2, 2)),
    ("2", 128, (2, 2, 2)),
    ("3a", 256, None),
    ("3b", 256, (2, 2, 2)),
    ("4a", 512, None),
    ("4b", 512, (2, 2, 2)),
    ("5a", 512, None),
    ("5b", 512, None),
)


def c3d(input_shape, *, norm=layers.NormOptions(), name=None):
    """C3D-BN: 27,661,440 trainable parameters.

    `stage4` is relu4b, the input of pool4, and `stage5` is relu5b. The Pace paper's
    retrieval features are taken from "the last pooling layer (p5)" and the second last
    (p4): p4 is pool4, i.e. a 2x2x2 max-pool of `stage4`, and p5 follows VCOP's retrieval
    code, a 1x2x2 max-pool of `stage5` (C3D has no pool5 before the global average).

    Args:
      input_shape: `(T, H, W, C)`, any of T, H, W may be None.
      norm, name: how the BatchNorm layers are built; the model's name (default "c3d").

    Returns:
      A functional model from `[B, T, H, W, C]` float clips to
      `{"stage4": [B, T/4, H/8, W/8, 512], "stage5": [B, T/8, H/16, W/16, 512]}`.
    """
    clips = keras.Input(shape=input_shape, name="clips")
    x = clips
    outputs = {}
    for suffix, filters, pool in _LAYOUT:
        x = layers.Conv(filters, (3, 3, 3), 1, (1, 1, 1), use_bias=True, name=f"conv{suffix}")(x)
        x = norm(f"bn{suffix}")(x)
        x = keras.layers.ReLU(name=f"relu{suffix}")(x)
        outputs[suffix] = x
        if pool:
            x = layers.MaxPool(pool, pool, name=f"pool{suffix[0]}")(x)
    return keras.Model(clips, {"stage4": outputs["4b"], "stage5": outputs["5b"]}, name=name or "c3d")
