"""Registry of the spatio-temporal backbones the five papers use.

Every backbone is a functional Keras model from a clip batch to a dict of feature maps:

    build_backbone("r2d3d18", input_shape=(5, 128, 128, 3))(clips)
    -> {"stage4": [B, t4, h4, w4, C4], "stage5": [B, t, h, w, C]}

`stage5` is the last stage (the feature map the methods use), `stage4` the one before it;
both are before any pooling (the methods pool them into the "p5"/"p4" retrieval features
of the Pace paper). 2-D backbones (`resnet18_2d`) take
`[B, H, W, C]` and return `[B, h, w, C]` maps. Layer names follow the original PyTorch
module names with dots replaced by underscores, so the checkpoint importer's name tables
read like the state_dict they come from.
"""

from tfvssl.models.layers import NormOptions

_BUILDERS = {}


def register(name):
    """Decorator adding a builder `fn(input_shape, *, norm, name) -> keras.Model`."""

    def decorator(builder):
        if name in _BUILDERS:
            raise ValueError(f"backbone {name!r} registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorator


def available_backbones():
    """Sorted names of the registered backbones."""
    _import_all()
    return sorted(_BUILDERS)


def build_backbone(backbone, input_shape, norm=NormOptions(), **kwargs):
    """Builds backbone `backbone` for inputs of `input_shape` (no batch axis; None allowed).

    `kwargs` go to the builder (e.g. `name`, the Keras model's name).

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    _import_all()
    if backbone not in _BUILDERS:
        raise ValueError(f"--backbone={backbone}: unknown backbone; choose one of {sorted(_BUILDERS)}")
    return _BUILDERS[backbone](tuple(input_shape), norm=norm, **kwargs)


def _import_all():
    # Importing the modules registers their builders.
    from tfvssl.models.backbones import c3d, r2d3d, r3d, resnet2d, s3dg  # noqa: F401
