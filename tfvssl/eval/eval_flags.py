"""Flags of `tfvssl.probe`, `tfvssl.finetune` and `tfvssl.retrieve`.

The entry points also use the pretraining flags of the same meaning (`tfvssl.train.train_flags`):
`--data` (default: the data the encoder was pretrained on, e.g. the embedded dataset),
`--split`, `--batch_size`, `--optimizer`, `--lr`, `--momentum`, `--weight_decay`
(PyTorch's coupled L2, as in the papers' code), `--lr_decay_factor`, `--seed` and
`--shuffle_buffer`. Flags whose default is None take the entry point's recipe (the paper's
value), as in pretraining.
"""

from absl import app, flags

from tfvssl import cli
from tfvssl.eval import inputs
from tfvssl.train import train_flags

# ---- Encoder and outputs ---------------------------------------------------------------------
flags.DEFINE_string(
    "encoder", None,
    "The encoder: an export directory (<workdir>/export/<name>/<version>, from tfvssl.export) or a "
    "pretraining workdir (the highest version of its one exported model; tfvssl.finetune: its newest "
    "checkpoint).",
)
flags.DEFINE_string("output_dir", None, "Where results, metrics.jsonl and the classifier are written.")
flags.DEFINE_string(
    "feature", "embedding",
    "Encoder output to use: embedding, or p4/p5/conv5_maxpool (VCOP's retrieval feature) where the "
    "method has them.",
)
flags.DEFINE_string("test_split", "test", "Split of --data evaluated (retrieval: the queries).")

# ---- Test-time protocol --------------------------------------------------------------------------
flags.DEFINE_enum(
    "test_clips", "windows", ["windows", "uniform"],
    "Test clips per video: windows = every window of the clip's span (DPC/MemDPC; --window_stride "
    "apart); uniform = --num_clips clips with evenly spaced centres (VCOP/Pace).",
)
flags.DEFINE_integer("num_clips", 10, "Clips per video with --test_clips=uniform.", lower_bound=1)
flags.DEFINE_integer(
    "window_stride", 0,
    "Frames between test windows; 0 = half overlap, clip length x frame stride / 2 (DPC: 60; MemDPC's "
    "code: 59).", lower_bound=0,
)
flags.DEFINE_integer("num_crops", 1, "Crops per test clip: 1 (centre), 3, 5 or 10 (five crops and their flips).")
flags.DEFINE_float(
    "test_crop_fraction", 224 / 240,
    "Side of the 3/5/10 test crops / the frame's short side (MemDPC: 224 of 240). One crop is the "
    "method's own test transform.",
)
flags.DEFINE_enum(
    "aggregate", "softmax", ["softmax", "logits"],
    "How a video's views are combined: mean of softmax probabilities (DPC, MemDPC, Pace) or mean "
    "logits (VCOP's test code).",
)

flags.DEFINE_enum(
    "retrieval_level", "video", ["video", "clip"],
    "tfvssl.retrieve: video = each test video's mean clip feature queries the training videos' "
    "(VCOP's retrieve_clips.py, MemDPC); clip = every test clip queries the training clips (the "
    "VCOP and Pace papers, §4.1 and §4.4).",
)

# ---- Classifier training (probe and fine-tune) ---------------------------------------------
flags.DEFINE_integer(
    "classifier_blocks", None,
    "DPC/MemDPC: blocks per classifier clip, in training and at test. Default: the paper's, DPC 5 "
    "(§3.5; the authors' eval/test.py: 8), MemDPC the pretraining's (8, §5.3).", lower_bound=1,
)
flags.DEFINE_list(
    "classifier_segments", ["8", "15"],
    "Temporal CPC: segments per classifier clip in training and at test, train,test (§4.2.4: 8,15).",
)
flags.DEFINE_enum(
    "head", "linear", ["linear", "fc", "mlp"],
    "linear: BatchNorm -> dropout -> linear (DPC, MemDPC, temporal CPC); fc: dropout -> linear "
    "(VCOP, Pace); mlp: BatchNorm -> linear -> ReLU before the linear head (a non-linear probe, "
    "MemDPC's 'n.l.').",
)
flags.DEFINE_float("head_dropout", None, "Dropout before the last linear layer. Default: recipe.")
flags.DEFINE_integer("head_hidden", 512, "Hidden units of the mlp head.", lower_bound=1)
flags.DEFINE_integer("epochs", None, "Passes over the labelled training videos. Default: recipe.", lower_bound=1)
flags.DEFINE_list("lr_decay_epochs", None, "Epochs at which the LR is multiplied by --lr_decay_factor.")
flags.DEFINE_float(
    "label_fraction", 1.0,
    "Fraction of the labelled training videos used, stratified by class and seeded by --seed "
    "(the low-label regime: 0.1, 0.2, 0.5).",
)
flags.DEFINE_enum(
    "train_features", "augmented", ["augmented", "cached"],
    "tfvssl.probe: augmented = random clips with random crop and flip every epoch, through the "
    "frozen encoder (the papers); cached = the features of the training videos' test views, "
    "computed once (much faster).",
)
flags.DEFINE_enum(
    "weight_decay_to", "zero", ["zero", "pretrained"],
    "tfvssl.finetune: --weight_decay pulls the encoder's weights toward zero (coupled L2, DPC/MemDPC/"
    "VCOP/Pace) or toward their pretrained values (L2-SP, temporal CPC); the head's go to zero.",
)
flags.DEFINE_string(
    "fuse_with", None,
    "results.json of another stream (e.g. flow) on the same test videos: the reported video-level "
    "results are then the mean of both streams' probabilities (late fusion).",
)

FLAGS = flags.FLAGS


def resolve(flag_values, recipe_holder):
    """The effective configuration: flag values, the recipe filling the unset ones.

    Args:
      flag_values: parsed flags.
      recipe_holder: a class with a `recipe` dict (`classify.LinearProbe`, ...).

    Returns:
      A namespace of every flag's value, plus `views` (a `inputs.Views`) and
      `lr_decay_epochs` as ints.

    Raises:
      ValueError: naming the offending flag.
    """
    config = train_flags.resolve_config(flag_values, recipe_holder)
    if not config.encoder:
        raise ValueError("--encoder: give an export directory or a pretraining workdir")
    if not config.output_dir:
        raise ValueError("--output_dir: give a directory for the results")
    if config.batch_size is None:
        raise ValueError("--batch_size: the recipe sets none; give one")
    config.lr_decay_epochs = [int(epoch) for epoch in config.lr_decay_epochs or []]
    segments = ",".join(config.classifier_segments)
    try:
        config.classifier_segments = [int(number) for number in config.classifier_segments]
    except ValueError:
        config.classifier_segments = []
    if len(config.classifier_segments) != 2 or min(config.classifier_segments) < 1:
        raise ValueError(f"--classifier_segments={segments}: needs two positive integers, train,test")
    config.views = inputs.Views(
        test_clips=config.test_clips, num_clips=config.num_clips, window_stride=config.window_stride,
        num_crops=config.num_crops, crop_fraction=config.test_crop_fraction,
    )
    if not 0.0 < config.label_fraction <= 1.0:
        raise ValueError(f"--label_fraction={config.label_fraction}: must be in (0, 1]")
    return config


def run_entry_point(argv, recipe_holder, run):
    """The body of an evaluation entry point: resolve the flags, run, report.

    Args:
      argv: the command line left after flag parsing.
      recipe_holder: the recipe of the unset flags (see `resolve`).
      run: function of the configuration, returning the path of its results.

    Returns:
      The exit status: 0, or 2 after a ValueError (a bad flag, missing data), printed as
      `error: ...` on stderr.
    """
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = resolve(FLAGS, recipe_holder)
        path = run(config)
    except ValueError as error:
        return cli.failed(error)
    print(path)
    return 0
