"""Unintentional action classification on Oops: intentional, transitional or unintentional?

    python -m tfvssl.oops --flagfile=configs/oops.flags --encoder=workdirs/oops_memdpc \
        --output_dir=workdirs/oops_memdpc/oops [--finetune] [--random_init]

`--classifier=predictive` (MemDPC appendix B; `--encoder` a MemDPC pretraining workdir, or an
export of one whose workdir is still there) classifies every step of windows of
`--num_steps` one-second clips from the clip's feature and the feature predicted from the
steps before; `--classifier=embedding` classifies each clip from any method's exported
embedding (`--encoder` an export directory). The encoder is frozen (a linear probe) unless
`--finetune`; `--random_init` replaces the pretrained weights by a random initialisation of
the same model, the baseline. Without `--data`, the data the encoder was pretrained on
(the embedded dataset pretrained with `--synthetic_oops`). Writes into `--output_dir`:
`oops_results.json` (clip-level accuracy overall and per class, the confusion matrix, every
test clip's probabilities), `metrics.jsonl`, `plots/confusion_matrix.png` and
`plots/timeline.png` (the class probabilities of the first test videos over time, with
their failure time). Protocol: `tfvssl/eval/unintentional.py`, labels: `tfvssl/data/oops_labels.py`; shared
flags: `tfvssl/eval/eval_flags.py`; defaults: `eval.oops.Recipe`.
"""

from absl import app, flags

from tfvssl.data import oops_labels
from tfvssl.eval import eval_flags

flags.DEFINE_enum(
    "classifier", "predictive", ["predictive", "embedding"],
    "predictive: MemDPC's classifier on [z_t, predicted z_t] over windows of clips (a MemDPC workdir); "
    "embedding: a classifier on each clip's exported embedding (any method).",
)
flags.DEFINE_boolean("finetune", False, "Train the encoder too (default: frozen, a linear probe).")
flags.DEFINE_boolean(
    "random_init", False,
    "Use a random initialisation of the encoder's model instead of its trained weights (the baseline).",
)
flags.DEFINE_integer(
    "num_steps", 4, "Predictive classifier: consecutive one-second clips per window, in training and test.",
    lower_bound=1,
)
flags.DEFINE_enum(
    "window_loss", "anchor", ["anchor", "every_step"],
    "Predictive classifier, training: the loss on the step of each window that holds the clip drawn from "
    "the video's oversampled clips (the class balance MemDPC appendix B intends), or on every step (the "
    "other steps follow the video's own, transitional-poor mix).",
)
flags.DEFINE_boolean(
    "pad_windows", False,
    "Predictive classifier: windows may start up to num_steps - 1 steps before the video, the steps "
    "before it showing its first clip, and each clip is seen at every step alike, so that its step in "
    "a window says nothing about its time (default: the authors' protocol, windows start in the video).",
)
flags.DEFINE_integer(
    "clips_per_video", oops_labels.CLIPS_PER_VIDEO,
    "Training clips drawn per video and epoch from its oversampled clips (the Oops code: 10).", lower_bound=1,
)
flags.DEFINE_string(
    "oops_annotations", None,
    "transition_times.json: filter the videos exactly as the Oops code (else with the same thresholds on "
    "the records' t_fail, rel_t and duration).",
)
flags.DEFINE_string(
    "oops_borders", None, "borders.json of the Oops code: crop the letterbox borders it gives."
)
flags.DEFINE_integer("num_timelines", 4, "Test videos drawn in plots/timeline.png.", lower_bound=1)


def main(argv):
    from tfvssl.eval import unintentional  # Heavy imports once the flags are parsed.

    return eval_flags.run_entry_point(argv, unintentional.Recipe, unintentional.run)


if __name__ == "__main__":
    app.run(main)
