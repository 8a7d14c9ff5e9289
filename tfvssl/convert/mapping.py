"""Loading PyTorch state dicts into Keras models through readable name-mapping tables.

A table is a list of `Rule`s. Each rule maps one PyTorch module (or one raw parameter)
to one Keras layer (or variable) and says how its tensors translate:

* `conv`: weight `[out, in, *k]` -> kernel `[*k, in, out]`; bias -> bias.
* `linear`: weight `[out, in]` -> kernel `[in, out]`; bias -> bias.
* `conv1x1_as_dense`: a 1x1 Conv2d weight `[out, in, 1, 1]` -> Dense kernel `[in, out]`;
  bias -> bias.
* `bn`: weight, bias, running_mean, running_var -> gamma, beta, moving_mean,
  moving_variance.
* `bn_untracked`: a BatchNorm built with `track_running_stats=False` (DPC pre-training):
  weight, bias -> gamma, beta; the moving statistics keep their initial 0 and 1.
* `param`: the tensor the rule names -> the variable attribute the path ends in.

`num_batches_tracked` is accepted and dropped by the BN kinds. Keras paths are layer
names joined by "/", descending into nested models and layers (`"backbone/conv1"`,
`"backbone/mixed_3b_gating_b0/fc"`); a `param` path ends in a variable attribute
(`"memory_bank"` is the model's own `memory_bank`). Tables compose by concatenation:

    table = backbone_table(vcop.backbone, "base_network.", "backbone/") + [
        Rule("fc7", "fc7", "linear"),
        Rule("fc8", "fc8", "linear"),
    ]
    load_torch_state_dict(vcop, load_state_dict("vcop_r3d.pth"), table)
"""

import dataclasses
import fnmatch
import re

import keras
import numpy as np

from tfvssl.models import layers as tfvssl_layers


@dataclasses.dataclass(frozen=True)
class Rule:
    """One line of a name-mapping table.

    Attributes:
      torch: PyTorch module name (`"base_network.conv1"`), or for `param` the full tensor
        name (`"mb"`).
      keras: path of the Keras layer (`"backbone/conv1"`), or for `param` of the variable.
      kind: how the tensors translate, one of `KINDS`.
    """

    torch: str
    keras: str
    kind: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self}: unknown kind {self.kind!r}; choose one of {sorted(KINDS)}")


def _conv_to_keras(weight):
    return np.transpose(weight, (*range(2, weight.ndim), 1, 0))


def _conv_to_torch(kernel):
    rank = kernel.ndim
    return np.transpose(kernel, (rank - 1, rank - 2, *range(rank - 2)))


def _dense_from_conv1x1(weight):
    # A non-1x1 kernel flattens to [in*kH*kW, out], which the shape check then reports.
    return weight.reshape(weight.shape[0], -1).T


def _conv1x1_from_dense(kernel):
    return kernel.T[:, :, None, None]


def _same(array):
    return array


# Module kinds -> {PyTorch suffix: (Keras attribute or None to drop, to Keras, to PyTorch)}.
_SUFFIXES = {
    "conv": {"weight": ("kernel", _conv_to_keras, _conv_to_torch), "bias": ("bias", _same, _same)},
    "linear": {"weight": ("kernel", np.transpose, np.transpose), "bias": ("bias", _same, _same)},
    "conv1x1_as_dense": {
        "weight": ("kernel", _dense_from_conv1x1, _conv1x1_from_dense),
        "bias": ("bias", _same, _same),
    },
    "bn": {
        "weight": ("gamma", _same, _same),
        "bias": ("beta", _same, _same),
        "running_mean": ("moving_mean", _same, _same),
        "running_var": ("moving_variance", _same, _same),
        "num_batches_tracked": (None, None, None),
    },
    "bn_untracked": {
        "weight": ("gamma", _same, _same),
        "bias": ("beta", _same, _same),
        "num_batches_tracked": (None, None, None),
    },
}
KINDS = (*_SUFFIXES, "param")

# Keras weights a kind deliberately leaves at their initial values.
_KEPT_INITIAL = {"bn_untracked": ("moving_mean", "moving_variance")}

# PyTorch attribute names of the backbones that contain underscores themselves; every other
# underscore in a Keras layer name stands for a dot of the PyTorch module path.
_TORCH_WORDS = (
    "temporal_spatial_conv", "spatial_conv", "temporal_conv",  # R3D, R(2+1)D
    "conv_2b", "conv_2c", "conv_b0", "conv_b1_a", "conv_b1_b", "conv_b2_a", "conv_b2_b",  # S3D-G
    "conv_b3_b", "gating_b0", "gating_b1", "gating_b2", "gating_b3",
    "mixed_3b", "mixed_3c", "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f",
    "mixed_5b", "mixed_5c",
)
_TORCH_TOKEN = re.compile(
    "(" + "|".join(sorted(_TORCH_WORDS, key=len, reverse=True)) + r"|[^_]+)(?:_|$)"
)


def torch_module_name(keras_name):
    """PyTorch module path of a backbone layer name: `conv2_block1_conv1_temporal_spatial_conv`
    -> `conv2.block1.conv1.temporal_spatial_conv`."""
    return ".".join(match.group(1) for match in _TORCH_TOKEN.finditer(keras_name))


def backbone_table(backbone, torch_prefix="", keras_prefix="", *, running_stats=True):
    """The table of a `tfvssl.models.backbones` model, generated from its layer names.

    Every layer with weights (looking into nested layers such as `SelfGating`) gives one
    rule from `torch_prefix + <module path>` to `keras_prefix + <layer path>`, its kind
    read from the layer type.

    Args:
      backbone: a built backbone model.
      torch_prefix: prefix of the backbone's modules in the state dict, with its dot
        (`"backbone."` for DPC/MemDPC, `"base_network."` for VCOP, `""` for Pace).
      keras_prefix: path of the backbone inside the model being loaded, with its slash
        (`"backbone/"`), or `""` when loading the backbone itself.
      running_stats: False for BatchNorms built with `track_running_stats=False` (DPC
        pre-training), whose state dict has no running statistics.

    Returns:
      A list of `Rule`s, in layer order.
    """
    bn_kind = "bn" if running_stats else "bn_untracked"
    table = []
    for path, layer in _weighted_layers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            kind = bn_kind
        elif isinstance(layer, keras.layers.Dense):
            kind = "linear"
        else:
            kind = "conv"
        torch_name = ".".join(torch_module_name(name) for name in path)
        table.append(Rule(torch_prefix + torch_name, keras_prefix + "/".join(path), kind))
    return table


def _weighted_layers(layer, path=()):
    """Yields (path, layer) for the layers holding weights directly, depth first."""
    leaf_types = (
        tfvssl_layers.Conv, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense,
        keras.layers.BatchNormalization,
    )
    for child in layer._flatten_layers(include_self=False, recursive=False):
        if not child.weights:
            continue
        if isinstance(child, leaf_types):
            yield path + (child.name,), child
        else:
            yield from _weighted_layers(child, path + (child.name,))


def _find_layer(model, path):
    """The layer at `path` ("a/b/c") below `model`; "" is the model itself."""
    layer = model
    for name in filter(None, path.split("/")):
        children = layer._flatten_layers(include_self=False, recursive=False)
        children = {child.name: child for child in children}
        if name not in children:
            raise ValueError(
                f"no Keras layer {name!r} in {layer.name!r} (path {path!r}); it has {sorted(children)}"
            )
        layer = children[name]
    return layer


def _bindings(model, rule):
    """Yields (PyTorch tensor name, Keras variable or None, to Keras, to PyTorch) of a rule."""
    if rule.kind == "param":
        layer_path, _, attribute = rule.keras.rpartition("/")
        variable = getattr(_find_layer(model, layer_path), attribute, None)
        if variable is None:
            raise ValueError(f"{rule}: the Keras layer has no variable {attribute!r}")
        yield rule.torch, variable, _same, _same
        return
    layer = _find_layer(model, rule.keras)
    for suffix, (attribute, to_keras, to_torch) in _SUFFIXES[rule.kind].items():
        variable = getattr(layer, attribute, None) if attribute else None
        yield f"{rule.torch}.{suffix}", variable, to_keras, to_torch


def _listing(items, limit=10):
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def load_torch_state_dict(model, state_dict, table, *, ignore=()):
    """Assigns the tensors of a PyTorch state dict to the weights of `model`.

    Nothing is assigned unless everything checks out, so a failed load leaves the model as
    it was.

    Args:
      model: a built Keras model.
      state_dict: `{name: array}` as `torch_checkpoint.load_state_dict` returns it.
      table: list of `Rule`s.
      ignore: `fnmatch` patterns of PyTorch tensor names or Keras weight paths to leave
        out of the checks, e.g. the duplicated `"agg.cell_list.0.*"` of DPC.

    Raises:
      ValueError: naming the tensors or weights concerned, when a PyTorch tensor is not
        mapped by any rule, a Keras weight is left unassigned, shapes disagree, two
        tensors land on one weight, or a rule names a layer or variable that is not there.
    """

    def ignored(name):
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in ignore)

    assignments = {}  # id(variable) -> (variable, value in Keras layout, tensor name)
    used = set()  # PyTorch tensor names consumed by a rule
    kept = set()  # ids of variables a rule's kind leaves at their initial values
    expected = {}  # id(variable) -> the tensor name its rule looked for in vain
    for rule in table:
        if rule.kind in _KEPT_INITIAL:
            layer = _find_layer(model, rule.keras)
            kept.update(id(getattr(layer, name)) for name in _KEPT_INITIAL[rule.kind])
        for tensor_name, variable, to_keras, _ in _bindings(model, rule):
            if tensor_name not in state_dict:
                if variable is not None:
                    expected[id(variable)] = tensor_name
                continue
            if to_keras is None:  # a tensor the kind drops, e.g. num_batches_tracked
                used.add(tensor_name)
                continue
            if variable is None:
                continue  # reported below as a tensor without a counterpart
            tensor = np.asarray(state_dict[tensor_name])
            value = to_keras(tensor)
            if tuple(variable.shape) != value.shape:
                raise ValueError(
                    f"PyTorch tensor {tensor_name!r} of shape {tuple(tensor.shape)} does not fit "
                    f"Keras weight {variable.path!r} of shape {tuple(variable.shape)} "
                    f"(rule {rule.torch!r} -> {rule.keras!r}, kind {rule.kind!r}, "
                    f"which gives shape {value.shape})"
                )
            if id(variable) in assignments:
                raise ValueError(
                    f"Keras weight {variable.path!r} is assigned twice, from "
                    f"{assignments[id(variable)][2]!r} and {tensor_name!r}"
                )
            assignments[id(variable)] = (variable, value, tensor_name)
            used.add(tensor_name)

    unmapped = [repr(name) for name in state_dict if name not in used and not ignored(name)]
    if unmapped:
        raise ValueError(f"PyTorch tensors not mapped by any rule: {_listing(unmapped)}")
    unassigned = []
    for variable in model.weights:
        key = id(variable)
        if key in assignments or key in kept or ignored(variable.path):
            continue
        missing = f" (no PyTorch tensor {expected[key]!r})" if key in expected else ""
        unassigned.append(f"{variable.path!r}{missing}")
    if unassigned:
        raise ValueError(f"Keras weights left unassigned: {_listing(unassigned)}")
    for variable, value, _ in assignments.values():
        variable.assign(value.astype(variable.dtype))


def keras_to_torch_state_dict(model, table):
    """The inverse of `load_torch_state_dict`: `model`'s weights under their PyTorch names.

    `num_batches_tracked` is not produced and `bn_untracked` rules give no running
    statistics, as in PyTorch.

    Returns:
      `{PyTorch tensor name: np.ndarray}` in PyTorch layouts.
    """
    state_dict = {}
    for rule in table:
        for tensor_name, variable, _, to_torch in _bindings(model, rule):
            if variable is not None and to_torch is not None:
                state_dict[tensor_name] = to_torch(variable.numpy())
    return state_dict
