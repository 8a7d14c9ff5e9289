"""The flags every pretraining run shares (method-specific flags live in the method's module).

Flags whose default is None take the value of the method's paper recipe (`Method.recipe`),
so `--method=pace` alone trains with the Pace paper's optimiser and sizes, and flags two
methods share (DPC and MemDPC's block sampling, say) get each method's own default; a
flagfile or the command line overrides any of them. `resolve_config` returns the effective
values, which the trainer writes to `<workdir>/flags.txt`.
"""

import types

from absl import flags

# ---- What to train, on what, where -------------------------------------------------------
flags.DEFINE_string("method", "dpc", "Pretext task: dpc, memdpc, tcp, pace or vcop.")
flags.DEFINE_string(
    "data", None,
    "TFRecord shards: a dataset root (uses its --split sub-directory), a directory, a glob or a "
    "comma-separated list. Default: the embedded synthetic dataset (generated on first use).",
)
flags.DEFINE_string("split", "train", "Split sub-directory of a dataset root to train on.")
flags.DEFINE_string("val_split", "test", "Split used for validation when the data root has it.")
flags.DEFINE_string("val_data", None, "Validation shards (default: --val_split of the --data root).")
flags.DEFINE_string("workdir", None, "Output directory (default: workdirs/<method>).")
flags.DEFINE_boolean(
    "overwrite", False,
    "Delete the earlier run in --workdir (checkpoints, metrics, TensorBoard logs, plots; not its "
    "exports) and start afresh. Without it a run resumes the workdir, and refuses one whose "
    "flags.txt has another method, model or clip shape.",
)
flags.DEFINE_string("backbone", None, "Backbone (see tfvssl.models.backbones). Default: recipe.")
flags.DEFINE_string("modality", "rgb", "Frames to read: rgb, flow or diff.")
flags.DEFINE_integer("resolution", None, "Training crop size in pixels. Default: recipe.", lower_bound=8)

# ---- Embedded dataset (used when --data is not given) -------------------------------------
flags.DEFINE_integer("synthetic_num_classes", 10, "Motion classes of the embedded dataset.", lower_bound=2)
flags.DEFINE_integer("synthetic_resolution", 64, "Frame size of the embedded dataset.", lower_bound=16)
flags.DEFINE_integer("synthetic_num_frames", 64, "Frames per embedded video.", lower_bound=4)
flags.DEFINE_integer("synthetic_videos_per_class", 40, "Training videos per embedded class.", lower_bound=1)
flags.DEFINE_boolean(
    "synthetic_oops", False,
    "Embedded dataset in oops mode: each video's motion breaks at a recorded failure time (the data "
    "of tfvssl.oops); needs 3.2-30 s videos, e.g. --synthetic_num_frames=128.",
)
flags.DEFINE_boolean(
    "synthetic_clutter", True,
    "Embedded videos with textured backgrounds, coloured objects, distractors and a shaking camera; "
    "--nosynthetic_clutter: white objects on a flat grey, the only thing that moves.",
)
flags.DEFINE_boolean(
    "synthetic_vary_speed", True,
    "Embedded videos whose motion's speed and extent vary per video within the class's range; "
    "--nosynthetic_vary_speed: one speed per class (a clip's pace then follows from its class "
    "and apparent speed, as Pace prediction assumes).",
)
flags.DEFINE_boolean(
    "synthetic_motion_defined", False,
    "Embedded videos drawn in one random-dot texture whose dots live a few frames: objects show "
    "only by their motion, and nothing but motion tells one video, or one moment, from another.",
)

# ---- Optimisation ---------------------------------------------------------------------------
flags.DEFINE_integer("train_steps", None, "Number of training steps. Default: recipe.", lower_bound=1)
flags.DEFINE_float(
    "train_epochs", None,
    "Training budget in epochs of the training videos: ceil(epochs * videos / global batch) "
    "steps, the same number of clips on any number of devices (--train_steps overrides it).",
    lower_bound=0.0,
)
flags.DEFINE_integer("batch_size", None, "Global batch size (all replicas). Default: recipe.", lower_bound=1)
flags.DEFINE_integer(
    "per_replica_batch_size", None,
    "Batch size per replica; the global batch is this times the number of replicas. Use instead "
    "of --batch_size to reproduce per-GPU recipes.", lower_bound=1,
)
flags.DEFINE_enum("optimizer", None, ["adam", "adamw", "sgd"], "Optimizer. Default: recipe.")
flags.DEFINE_float("lr", None, "Base learning rate. Default: recipe.", lower_bound=0.0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0)
flags.DEFINE_float(
    "weight_decay", None,
    "Weight decay. With adam/sgd it is PyTorch's coupled L2 on every parameter (as the papers' "
    "code); with adamw it is decoupled. Default: recipe.", lower_bound=0.0,
)
flags.DEFINE_enum(
    "lr_schedule", None, ["constant", "plateau", "steps", "cosine"],
    "constant; plateau (divide by --lr_decay_factor when the validation loss stops improving); "
    "steps (at --lr_decay_steps); cosine (with --warmup_steps). Default: recipe.",
)
flags.DEFINE_list("lr_decay_steps", None, "Steps at which the steps schedule decays. Default: recipe.")
flags.DEFINE_list(
    "lr_decay_at_epochs", None,
    "Epochs at which the steps schedule decays, each converted as --train_epochs "
    "(--lr_decay_steps overrides it).",
)
flags.DEFINE_float("lr_decay_factor", None, "Multiplier at each decay. Default: recipe.", lower_bound=0.0)
flags.DEFINE_float("min_lr", None, "The plateau schedule never decays below this. Default: recipe.")
flags.DEFINE_integer(
    "plateau_patience", 5, "Validations without improvement before a plateau decay.", lower_bound=1
)
flags.DEFINE_integer("warmup_steps", 0, "Linear warmup steps (cosine schedule).", lower_bound=0)
flags.DEFINE_float(
    "grad_clip_norm", None,
    "Clip the norm of each update's gradient (the global batch's, weight decay included) to "
    "this; with --grad_accum_steps, of each batch's. Default: recipe (none).", lower_bound=0.0,
)
flags.DEFINE_integer(
    "grad_accum_steps", 1, "Accumulate gradients over this many batches per update.", lower_bound=1
)
flags.DEFINE_string("init_from", None, "Initialise the model from this tfvssl checkpoint (weights only).")

# ---- Devices and numerics ----------------------------------------------------------------------
flags.DEFINE_enum(
    "strategy", "auto", ["auto", "one_device", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy; auto = mirrored over all GPUs when there are several, else one device.",
)
flags.DEFINE_enum(
    "negatives", "replica", ["replica", "global"],
    "replica: contrastive negatives from each replica's batch (the authors' per-GPU behaviour); "
    "global: gathered from all replicas.",
)
flags.DEFINE_boolean("sync_bn", False, "Synchronise BatchNorm statistics across replicas.")
flags.DEFINE_enum(
    "precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
    "Keras dtype policy; contrastive scores stay float32.",
)
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the forward and backward pass (GPU/TPU).")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order and augmentations.")
flags.DEFINE_boolean(
    "deterministic", False,
    "Deterministic ops and input order (slower); with a fixed seed a run is bit-reproducible.",
)
flags.DEFINE_integer("shuffle_buffer", 256, "Videos in the shuffle buffer.", lower_bound=1)
flags.DEFINE_float(
    "max_corrupt_fraction", 0.01,
    "Stop the run when more than this fraction of an epoch's records is unreadable (truncated or "
    "corrupt shards, each named in a warning).", lower_bound=0.0, upper_bound=1.0,
)
flags.DEFINE_integer(
    "max_records_without_example", 1000,
    "Stop the run, naming the reason, when this many records in a row (or a whole epoch) give no "
    "training example: videos too short for the recipe, undecodable or unreadable.", lower_bound=1,
)

# ---- Checkpoints and logs ------------------------------------------------------------------------
flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints.", lower_bound=1)
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept on disk.", lower_bound=1)
flags.DEFINE_integer("log_every", 50, "Steps between log lines and summaries.", lower_bound=1)
flags.DEFINE_integer("val_every", None, "Steps between validations (default: --checkpoint_every).")
flags.DEFINE_float(
    "val_every_epochs", None, "Epochs between validations (--val_every overrides it).", lower_bound=0.0
)
flags.DEFINE_integer("val_batches", None, "Batches per validation (default: 10).", lower_bound=1)
flags.DEFINE_integer(
    "val_videos", None,
    "Videos per validation: ceil(videos / global batch) batches, the same sample on any number "
    "of devices (--val_batches overrides it).", lower_bound=1,
)
flags.DEFINE_integer(
    "max_nonfinite_steps", 10,
    "Stop the run after this many steps with a non-finite loss (each is skipped).", lower_bound=1,
)


def resolve_config(flag_values, method_cls):
    """Effective configuration: flag values with the method's recipe filling unset ones.

    Args:
      flag_values: parsed `absl.flags.FLAGS`.
      method_cls: the `Method` class.

    Returns:
      A `types.SimpleNamespace` of every flag's effective value.
    """
    values = {name: flag_values[name].value for name in flag_values}
    if values["batch_size"] is not None and values["per_replica_batch_size"] is not None:
        raise ValueError("--batch_size and --per_replica_batch_size: give one of the two")
    # Each pair is one setting given two ways: a user's choice of either overrides the recipe's.
    given = set()
    for pair in (("batch_size", "per_replica_batch_size"), *IN_STEPS_OR_EPOCHS):
        if any(values[name] is not None for name in pair):
            given.update(pair)
    for steps, epochs in IN_STEPS_OR_EPOCHS:
        if values[steps] is not None:
            values[epochs] = None
    if values["val_batches"] is None and values["val_videos"] is None:
        values["val_batches"] = 10
    for name, value in method_cls.recipe.items():
        if name in given:
            continue
        if name not in values:
            raise ValueError(f"{method_cls.__name__}.recipe names {name!r}, which is not a flag")
        if values[name] is None:
            values[name] = value
    values["lr_decay_steps"] = [int(step) for step in values.get("lr_decay_steps") or []]
    try:
        values["lr_decay_at_epochs"] = [float(epoch) for epoch in values.get("lr_decay_at_epochs") or []]
    except ValueError:
        raise ValueError(f"--lr_decay_at_epochs={','.join(values['lr_decay_at_epochs'])}: needs numbers") from None
    return types.SimpleNamespace(**values)


# Lengths given in steps (batches) or in epochs (videos), which the trainer converts with the
# dataset size and the global batch (`trainer.resolve_epochs`). The steps, when given,
# override the epochs, so that `--train_steps=4` after a paper flagfile shortens its run.
IN_STEPS_OR_EPOCHS = (
    ("train_steps", "train_epochs"),
    ("lr_decay_steps", "lr_decay_at_epochs"),
    ("val_every", "val_every_epochs"),
    ("val_batches", "val_videos"),
)
