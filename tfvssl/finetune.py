"""Fine-tune an encoder end to end: `python -m tfvssl.finetune --encoder=... --output_dir=...`.

    python -m tfvssl.finetune --flagfile=configs/finetune_dpc.flags \
        --encoder=workdirs/dpc/export/dpc/1 --output_dir=workdirs/dpc/finetune [--label_fraction=0.1]

Starts from the export's `encoder.keras` (or, given a pretraining workdir, from its newest
checkpoint), puts the classification head on its feature and trains everything with Keras
`fit` (BatchNorm in training mode), with the paper's optimiser, weight decay (coupled L2, or
toward the pretrained weights with `--weight_decay_to=pretrained`) and schedule; then scores
the test split with the same test-time protocol as `tfvssl.probe`. `--label_fraction` keeps
a stratified, seeded fraction of the labelled training videos. Writes `results.json`,
`metrics.jsonl` and `classifier.keras` into `--output_dir`. Flags: `tfvssl/eval/eval_flags.py`;
defaults: `classify.FineTune`.
"""

import functools

from absl import app

from tfvssl.eval import eval_flags


def main(argv):
    from tfvssl.eval import classify  # Heavy imports once the flags are parsed.

    return eval_flags.run_entry_point(argv, classify.FineTune, functools.partial(classify.run, frozen=False))


if __name__ == "__main__":
    app.run(main)
