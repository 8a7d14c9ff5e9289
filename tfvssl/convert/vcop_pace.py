"""Name-mapping tables of the VCOP and Pace PyTorch models (see `mapping.py`).

* VCOP (`models/vcopn.py` `VCOPN` over `C3D`, `R3DNet` or `R2Plus1DNet` built with
  `with_classifier=False`): the backbone under `base_network.`, the pair layer `fc7` and the
  order classifier `fc8` -> `vcop.ClipOrderPrediction`.
* Pace (`models/c3d.py`, `r3d.py`, `r21d.py` with their `linear` pace classifier, and
  `models/s3d_g.py` `S3D` with `fc`): the backbone at the top level and the classifier ->
  `pace.PacePrediction`. The authors released no contrastive model, so a projection layer
  keeps its initial weights.

    model = vcop.ClipOrderPrediction(backbone="r21d")
    load_vcop(model, torch_checkpoint.load_state_dict("vcop_r21d.pt"))
"""

from tfvssl.convert.mapping import Rule, backbone_table, load_torch_state_dict

# Keras weights with no counterpart in the authors' Pace models.
PACE_UNMAPPED = ("projection/*",)


def _backbone(model):
    return model.encoder.get_layer("backbone")


def vcop_table(model):
    """The table of a `vcop.ClipOrderPrediction` for the authors' `VCOPN` state dict."""
    return backbone_table(_backbone(model), "base_network.", "encoder/backbone/") + [
        Rule("fc7", "fc7", "linear"),
        Rule("fc8", "fc8", "linear"),
    ]


def pace_table(model):
    """The table of a `pace.PacePrediction` for the authors' pace classifier state dict."""
    # S3D-G's classifier is `fc`; the C3D/R3D/R(2+1)D files name theirs `linear`.
    classifier = "fc" if model.config["backbone"] == "s3dg" else "linear"
    return backbone_table(_backbone(model), "", "encoder/backbone/") + [
        Rule(classifier, "pace_head/final_fc", "linear"),
    ]


def load_vcop(model, state_dict):
    """Loads a VCOP state dict (`{name: array}`) into a `vcop.ClipOrderPrediction`."""
    load_torch_state_dict(model, state_dict, vcop_table(model))


def load_pace(model, state_dict):
    """Loads a Pace state dict into a `pace.PacePrediction`; a projection stays as it is."""
    load_torch_state_dict(model, state_dict, pace_table(model), ignore=PACE_UNMAPPED)
