"""The spatio-temporal backbones the five papers use, one table of builders.

Every backbone is a functional Keras model from a clip batch to a dict of feature maps:

    build_backbone("r2d3d18", input_shape=(5, 128, 128, 3))(clips)
    -> {"stage4": [B, t4, h4, w4, C4], "stage5": [B, t, h, w, C]}

`stage5` is the last stage (the feature map the methods use), `stage4` the one before it;
both are before any pooling (the methods pool them into the "p5"/"p4" retrieval features
of the Pace paper). 2-D backbones (`resnet18_2d`) take
`[B, H, W, C]` and return `[B, h, w, C]` maps. Layer names follow the original PyTorch
module names with dots replaced by underscores, so the checkpoint importer's name tables
read like the state_dict they come from.

The ResNets also come narrower, for small-scale runs (the learning benchmark): `<name>_w<N>`
has N channels where the paper's has 64 (stem and first stage), every stage scaled alike;
`r2d3d18_w16` is the r2d3d18 at a quarter of its width (16/32/64/64 channels).
"""

import re

from tfvssl.models.backbones import c3d, r2d3d, r3d, resnet2d, s3dg
from tfvssl.models.layers import NormOptions

# The table of backbones: `--backbone` name -> builder `fn(input_shape, *, norm, name) -> keras.Model`.
BACKBONES = {
    "c3d": c3d.c3d,
    "r2d3d18": r2d3d.r2d3d18,
    "r2d3d34": r2d3d.r2d3d34,
    "r3d": r3d.r3d,
    "r3d18": r3d.r3d18,
    "r21d": r3d.r21d,
    "r21d18": r3d.r21d18,
    "resnet18_2d": resnet2d.resnet18_2d,
    "s3dg": s3dg.s3dg,
}


# The backbones that take a `width` (`<name>_w<N>`).
_SCALABLE = ("r2d3d18", "r2d3d34", "r3d", "r3d18", "r21d", "r21d18", "resnet18_2d")


def parse_backbone(backbone):
    """`"r2d3d18"` -> `("r2d3d18", {})`; `"r2d3d18_w16"` -> `("r2d3d18", {"width": 16})`.

    Raises:
      ValueError: for an unknown name or a width on a backbone without one, listing the known.
    """
    match = re.fullmatch(r"(.+)_w([1-9][0-9]*)", backbone)
    name, options = (match.group(1), {"width": int(match.group(2))}) if match else (backbone, {})
    if name not in BACKBONES or (options and name not in _SCALABLE):
        raise ValueError(
            f"--backbone={backbone}: unknown backbone; choose one of {sorted(BACKBONES)}, or "
            f"<name>_w<channels> of {', '.join(_SCALABLE)}"
        )
    return name, options


def available_backbones():
    """Sorted names of the backbones."""
    return sorted(BACKBONES)


def build_backbone(backbone, input_shape, norm=NormOptions(), **kwargs):
    """Builds backbone `backbone` (a `BACKBONES` name, or `<name>_w<N>`) for inputs of
    `input_shape` (no batch axis; None allowed).

    `kwargs` go to the builder (e.g. `name`, the Keras model's name).

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    name, options = parse_backbone(backbone)
    return BACKBONES[name](tuple(input_shape), norm=norm, **options, **kwargs)
