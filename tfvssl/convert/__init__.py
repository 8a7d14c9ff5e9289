"""Import of the original PyTorch checkpoints: read them without PyTorch, map names to Keras.

    state_dict = load_state_dict("dpc_ucf101.pth.tar")  # legacy or zip torch.save files
    table = backbone_table(model.backbone, "backbone.", "backbone/") + method_rules
    load_torch_state_dict(model, state_dict, table)
"""

from tfvssl.convert.mapping import (
    KINDS,
    Rule,
    backbone_table,
    keras_to_torch_state_dict,
    load_torch_state_dict,
    torch_module_name,
)
from tfvssl.convert.torch_checkpoint import CheckpointNamespace, load_checkpoint, load_state_dict

__all__ = [
    "KINDS",
    "CheckpointNamespace",
    "Rule",
    "backbone_table",
    "keras_to_torch_state_dict",
    "load_checkpoint",
    "load_state_dict",
    "load_torch_state_dict",
    "torch_module_name",
]
