"""Probe a frozen encoder: `python -m tfvssl.probe --encoder=<export dir> --output_dir=<dir>`.

    python -m tfvssl.probe --flagfile=configs/probe_linear.flags \
        --encoder=workdirs/dpc/export/dpc/1 --output_dir=workdirs/dpc/probe_linear

Loads the export's `encoder.keras`, frozen (run in inference: BatchNorm on moving
statistics, no dropout), trains a linear (`--head=linear`) or MLP (`--head=mlp`) head with
Keras `fit` on the labelled training split (`--train_features=augmented`: random clips
through the encoder, each method's classifier transform, as the papers; `cached`: the
features of fixed clips, computed once), and scores
the test split with the test-time protocol (`--test_clips`, `--num_crops`, `--aggregate`).
Writes `results.json` (clip- and video-level top-1/top-5, per-class accuracy, confusion
matrix, per-video probabilities), `metrics.jsonl` and `classifier.keras` into
`--output_dir`. Flags: `tfvssl/eval/eval_flags.py`; defaults: `classify.LinearProbe`.
"""

import functools

from absl import app

from tfvssl.eval import eval_flags


def main(argv):
    from tfvssl.eval import classify  # Heavy imports once the flags are parsed.

    return eval_flags.run_entry_point(argv, classify.LinearProbe, functools.partial(classify.run, frozen=True))


if __name__ == "__main__":
    app.run(main)
