"""From an authors' PyTorch state dict to a tfvssl workdir (`python -m tfvssl.convert`).

A converted workdir is what `tfvssl.pretrain` writes, less the optimiser, so that
`pretrain --init_from`, `export --workdir`, the probes and fine-tuning read it as any
pretraining run:

* `flags.txt`: the method and its flags, a valid flagfile;
* `ckpt/ckpt-0`: `tf.train.Checkpoint(model=<the method's PretextModel>)`, its weights
  (no optimizer state);
* for the downstream classifiers ("LC", `dpc_lc`, `memdpc_lc`) also `classifier.keras`,
  clips `[B, T, H, W, C]` -> logits `[B, K]`, as `tfvssl.finetune` writes it.

What a state dict shows is inferred (`infer_flags`): the backbone, the input channels (RGB
or flow), MemDPC's memory size, VCOP's tuple length, the number of paces, whether
BatchNorm kept running statistics. What it cannot show (clip and frame sizes; the weights
of a fully convolutional net fit any) takes the sizes the authors trained that backbone
at, else the method's recipe. Weights the authors' model does not have keep their seeded
initialisation: the prediction head (and MemDPC's memory) of a converted classifier, the
projection of Pace's contrastive term, which the authors never released.
"""

import dataclasses
import math
import os

import keras

from tfvssl.convert import dpc_family, vcop_pace
from tfvssl.convert.mapping import load_torch_state_dict
from tfvssl.models import dpc_model, layers
from tfvssl.train import checkpoint
from tfvssl.workdir import CKPT_DIR, FLAGS_FILE


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One kind of the authors' models that `--model` names.

    Attributes:
      method: the tfvssl method the workdir is a run of.
      source: the authors' class.
      backbone_prefix: the backbone's prefix in the state dict.
      backbones: the backbones (`BACKBONES`) the authors' code can build for it.
      head_dropout: for a classifier ("LC"), the dropout of its head (the authors'
        fine-tuning default); None for pretext models.
    """

    method: str
    source: str
    backbone_prefix: str
    backbones: tuple
    head_dropout: float = None


_DPC_BACKBONES = ("r2d3d18", "r2d3d34")
_CLIP_BACKBONES = ("c3d", "r3d", "r3d18", "r21d", "r21d18", "s3dg")
MODELS = {
    "dpc": ModelKind("dpc", "DPC dpc/model_3d.py DPC_RNN", "backbone.", _DPC_BACKBONES),
    "dpc_lc": ModelKind("dpc", "DPC eval/model_3d_lc.py LC", "backbone.", _DPC_BACKBONES, head_dropout=0.5),
    "memdpc": ModelKind("memdpc", "MemDPC memdpc/model.py MemDPC_BD", "backbone.", _DPC_BACKBONES),
    "memdpc_lc": ModelKind("memdpc", "MemDPC eval/model_lc.py LC", "backbone.", _DPC_BACKBONES, head_dropout=0.9),
    "vcop": ModelKind("vcop", "VCOP models/vcopn.py VCOPN", "base_network.", _CLIP_BACKBONES),
    "pace": ModelKind("pace", "Pace models/{c3d,r3d,r21d,s3d_g}.py", "", _CLIP_BACKBONES),
}

# A tensor (below the backbone prefix) that tells each backbone from the others of its
# family; deeper variants first, since they also hold their shallow sibling's names.
_BACKBONE_SIGNATURES = (
    ("r2d3d34", "layer1.2.conv1.weight"),
    ("r2d3d18", "layer1.1.conv1.weight"),
    ("s3dg", "mixed_5c.conv_b0.conv1.weight"),
    ("c3d", "conv3a.weight"),
    ("r3d18", "conv2.blocks.0.conv1.temporal_spatial_conv.weight"),
    ("r3d", "conv1.temporal_spatial_conv.weight"),
    ("r21d18", "conv2.blocks.0.conv1.spatial_conv.weight"),
    ("r21d", "conv1.spatial_conv.weight"),
)

# Sizes the authors trained a backbone at where the method's recipe has others: every
# released R34 DPC/MemDPC checkpoint is 224 px (the R18 ones 128, the recipe's); Pace's
# S3D-G command takes 64 frames of 256x256 cropped to 224.
_AUTHORS_SIZES = {
    "r2d3d34": {"resolution": 224},
    "s3dg": {"clip_length": 64, "resolution": 224, "frame_size": ["256", "256"]},
}


def detect_backbone(kind, state_dict):
    """The `BACKBONES` name of the backbone in an authors' state dict of `kind`.

    Raises:
      ValueError: when no backbone of the kind's family matches.
    """
    spec = MODELS[kind]
    for backbone, tensor in _BACKBONE_SIGNATURES:
        if backbone in spec.backbones and spec.backbone_prefix + tensor in state_dict:
            return backbone
    raise ValueError(
        f"cannot tell the backbone: none of {', '.join(spec.backbones)} matches the state dict "
        f"(is it a {spec.source} checkpoint?)"
    )


def _has_running_stats(state_dict, prefix):
    return any(name.startswith(prefix) and name.endswith(".running_mean") for name in state_dict)


@dataclasses.dataclass(frozen=True)
class Inferred:
    """A flag value `infer_flags` found.

    Attributes:
      value: as the absl flag holds it (a list of strings for a list flag).
      reason: where it comes from, for the log and error messages.
      fixed: True when the weights determine it (another value cannot load them); False
        for a default the user may override.
    """

    value: object
    reason: str
    fixed: bool


_MODALITIES = {3: "rgb", 2: "flow"}  # Input channels of tfvssl's DPC-family backbones.


def infer_flags(kind, state_dict):
    """The pretraining flags an authors' state dict of `kind` determines or suggests.

    Args:
      kind: a key of `MODELS`.
      state_dict: `{name: array}` in PyTorch layouts (`torch_checkpoint.load_state_dict`).

    Returns:
      `{flag name: Inferred}`.

    Raises:
      ValueError: when the backbone cannot be told.
    """
    spec = MODELS[kind]
    backbone = detect_backbone(kind, state_dict)
    inferred = {
        "method": Inferred(spec.method, f"--model={kind}", True),
        "backbone": Inferred(backbone, "the backbone's tensor names", True),
    }
    for name, value in _AUTHORS_SIZES.get(backbone, {}).items():
        inferred[name] = Inferred(value, f"the authors' size for {backbone}; no weight shows it", False)

    if spec.method in ("dpc", "memdpc"):
        conv1 = state_dict.get(spec.backbone_prefix + "conv1.weight")  # [64, C, 1, 7, 7]
        channels = conv1.shape[1] if conv1 is not None else None
        if channels in _MODALITIES:
            inferred["modality"] = Inferred(
                _MODALITIES[channels], f"the first convolution reads {channels} channels", True
            )
        running_stats = _has_running_stats(state_dict, spec.backbone_prefix)
        inferred["batch_stats_bn"] = Inferred(
            not running_stats,
            "the backbone's BatchNorm " + ("keeps" if running_stats else "has no") + " running statistics",
            False,
        )
    if kind == "memdpc" and "mb" in state_dict:
        inferred["mem_size"] = Inferred(int(state_dict["mb"].shape[0]), "the rows of the memory mb", True)
    if kind == "vcop" and "fc8.weight" in state_dict:
        orders = int(state_dict["fc8.weight"].shape[0])  # n! order classes
        lengths = [n for n in range(2, 6) if math.factorial(n) == orders]
        if lengths:
            inferred["tuple_length"] = Inferred(lengths[0], f"fc8 classifies {orders} orders", True)
    if kind == "pace":
        classifier = state_dict.get("fc.weight", state_dict.get("linear.weight"))
        if classifier is not None:
            paces = [str(pace) for pace in range(1, classifier.shape[0] + 1)]
            # The authors' paces are the sampling rates 1..n; other sets of n paces also fit.
            inferred["paces"] = Inferred(paces, f"the classifier has {len(paces)} pace classes", False)
        inferred["pace_bgr"] = Inferred(True, "the authors' OpenCV loader feeds BGR frames", False)
    return inferred


class LinearClassifier(keras.Model):
    """The authors' "LC" model: `head(encoder(clips)["embedding"])`, clips `[B, T, H, W, C]`
    -> logits `[B, K]`, at the Keras paths `dpc_family.lc_table` names."""

    def __init__(self, encoder, head, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head

    def call(self, clips, training=None):
        return self.head(self.encoder(clips, training=training)["embedding"], training=training)


def _linear_classifier(kind, model, state_dict):
    """An LC model on `model`'s encoder (in its LC form, sharing the weights) with a new
    head of as many classes as the state dict's last layer."""
    if "final_fc.1.weight" not in state_dict:
        raise ValueError(
            f"no tensor 'final_fc.1.weight' (the classifier's last layer): not a {MODELS[kind].source} state dict"
        )
    encoder = dpc_model.lc_encoder(model.encoder)
    num_classes = int(state_dict["final_fc.1.weight"].shape[0])
    head = layers.ClassificationHead(num_classes, dropout=MODELS[kind].head_dropout, name="head")
    directions = 2 if encoder.backward_aggregator is not None else 1
    head.build((None, directions * encoder.aggregator.hidden_size))
    return LinearClassifier(encoder, head, name="classifier")


def load(kind, model, state_dict):
    """Assigns an authors' state dict of `kind` to `model`, the method's `PretextModel`.

    For the classifiers ("LC") the encoder is the LC form of `model`'s (`dpc_model.lc_encoder`,
    sharing its weights) and the head is new; `model`'s prediction head and memory keep
    their initial weights.

    Returns:
      The `LinearClassifier` for the LC kinds, else None.

    Raises:
      ValueError: naming every tensor that is missing, has no counterpart or does not fit;
        nothing is assigned then.
    """
    if kind == "vcop":
        vcop_pace.load_vcop(model, state_dict)
        return None
    if kind == "pace":
        vcop_pace.load_pace(model, state_dict)
        return None
    classifier = None
    if kind == "dpc":
        running_stats = _has_running_stats(state_dict, MODELS[kind].backbone_prefix)
        table = dpc_family.dpc_rnn_table(model, running_stats=running_stats)
    elif kind == "memdpc":
        table = dpc_family.memdpc_bd_table(model)
    else:
        model = classifier = _linear_classifier(kind, model, state_dict)
        table = dpc_family.lc_table(classifier.encoder)
    load_torch_state_dict(model, state_dict, table, ignore=dpc_family.GRU_ALIASES)
    return classifier


def _check_new(workdir):
    """Raises ValueError if `workdir` already holds a run's flags or checkpoints."""
    taken = [name for name in (FLAGS_FILE, CKPT_DIR) if os.path.exists(os.path.join(workdir, name))]
    if taken:
        raise ValueError(f"--workdir={workdir}: already holds {' and '.join(taken)}; give a new directory")


def convert(kind, state_dict, method, workdir):
    """Builds `method`'s model, loads `state_dict` into it and writes the checkpoint into
    `workdir` (`ckpt/ckpt-0`, and `classifier.keras` for the LC kinds).

    `flags.txt` is the caller's to write (`tfvssl.workdir.write_flags`), from the configuration
    `method` was built with. Nothing is written when the state dict does not fit.

    Returns:
      The path of the checkpoint written.

    Raises:
      ValueError: for a workdir that holds a run, or a state dict that does not fit (see
        `load`).
    """
    _check_new(workdir)
    keras.utils.set_random_seed(method.config.seed)  # Weights the authors' model lacks.
    model = method.build_model()
    classifier = load(kind, model, state_dict)
    # The weights alone (no optimizer state): `--init_from` and the evaluations read no more.
    path = checkpoint.Checkpointer(os.path.join(workdir, CKPT_DIR), keep=1, model=model).save(0)
    if classifier is not None:
        from tfvssl.eval import classify  # The fine-tuning's classifier.keras, clips -> logits.

        path_keras = os.path.join(workdir, classify.CLASSIFIER_FILE)
        classify.save_classifier(method.clip_shape(), classifier.encoder, classifier.head, "embedding", path_keras)
    return path

