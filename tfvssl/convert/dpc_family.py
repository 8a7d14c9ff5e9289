"""Name-mapping tables of the DPC family's PyTorch models, on top of the backbone tables.

| PyTorch class | Keras model | table |
|---|---|---|
| DPC `dpc/model_3d.py` `DPC_RNN` | `dpc.DensePredictiveCoding` | `dpc_rnn_table` |
| MemDPC `memdpc/model.py` `MemDPC_BD` | `memdpc.MemoryAugmentedDPC` (bidirectional) | `memdpc_bd_table` |
| DPC `eval/model_3d_lc.py` `LC` | `dpc.lc_encoder` + `layers.ClassificationHead` | `lc_table` |
| MemDPC `eval/model_lc.py` `LC` | the same, bidirectional encoder | `lc_table` |

The authors' ConvGRU registers its cell twice (`agg.ConvGRUCell_00.*` and
`agg.cell_list.0.*` are the same tensors), so loads pass `ignore=GRU_ALIASES`:

    state_dict = load_state_dict("memdpc_k400_r34.pth.tar")
    load_torch_state_dict(model, state_dict, memdpc_bd_table(model), ignore=GRU_ALIASES)

The LC tables take the Keras paths of the encoder and the head inside the classifier
being loaded, since the classifier model is the caller's.
"""

from tfvssl.convert.mapping import Rule, backbone_table

# The second registration of every ConvGRU cell in the authors' state dicts.
GRU_ALIASES = ("*.cell_list.0.*",)

_GRU_GATES = ("reset_gate", "update_gate", "out_gate")


def gru_table(torch_name, keras_path):
    """Rules of one authors' ConvGRU (`agg`, `agg_f`, ...) onto a `layers.ConvGRU`."""
    return [Rule(f"{torch_name}.ConvGRUCell_00.{gate}", f"{keras_path}/{gate}", "conv") for gate in _GRU_GATES]


def _encoder_table(encoder, keras_prefix, *, running_stats):
    """Backbone and GRU(s) of a `dpc.BlockEncoder` at `keras_prefix` (with its slash)."""
    table = backbone_table(encoder.backbone, "backbone.", f"{keras_prefix}backbone/", running_stats=running_stats)
    if encoder.backward_aggregator is None:
        return table + gru_table("agg", f"{keras_prefix}{encoder.aggregator.name}")
    return (
        table
        + gru_table("agg_f", f"{keras_prefix}{encoder.aggregator.name}")
        + gru_table("agg_b", f"{keras_prefix}{encoder.backward_aggregator.name}")
    )


def _prediction_head_table(keras_path):
    return [
        Rule("network_pred.0", f"{keras_path}/conv0", "conv"),
        Rule("network_pred.2", f"{keras_path}/conv2", "conv"),
    ]


def dpc_rnn_table(model, running_stats=False):
    """`DPC_RNN` -> `dpc.DensePredictiveCoding`. The authors' pre-training backbone keeps
    no BatchNorm running statistics; their re-uploaded R34 "runningStats" copy does
    (`running_stats=True`)."""
    return _encoder_table(model.encoder, "encoder/", running_stats=running_stats) + _prediction_head_table(
        model.predictor.name
    )


def memdpc_bd_table(model):
    """`MemDPC_BD` -> a bidirectional `memdpc.MemoryAugmentedDPC`; `mb` is the memory."""
    return (
        _encoder_table(model.encoder, "encoder/", running_stats=True)
        + _prediction_head_table(model.predictor.name)
        + [Rule("mb", "memory_bank", "param")]
    )


def lc_table(encoder, encoder_path="encoder/", head_path="head/"):
    """DPC's or MemDPC's `LC` -> an encoder (`dpc.lc_encoder`, bidirectional for MemDPC)
    and a `layers.ClassificationHead`.

    Args:
      encoder: the classifier's `dpc.BlockEncoder`.
      encoder_path, head_path: their Keras paths inside the classifier, with the slash.
    """
    return _encoder_table(encoder, encoder_path, running_stats=True) + [
        Rule("final_bn", f"{head_path}final_bn", "bn"),
        Rule("final_fc.1", f"{head_path}final_fc", "linear"),
    ]
