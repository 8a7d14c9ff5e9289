"""Draw a run's pictures: `python -m tfvssl.plots --workdir=<directory>`.

Writes into `<workdir>/plots/` every picture the files under `<workdir>` allow: training
curves of each `metrics.jsonl` (pretraining, probe, fine-tune), the confusion matrix of each
`results.json`, and for each `tfvssl.retrieve` output the t-SNE of the test videos'
features, the cosine-similarity histograms of same- and different-class pairs and a
retrieval grid (`tfvssl/eval/figures.py`).
"""

import sys

from absl import app, flags

from tfvssl.train import train_flags  # noqa: F401  (defines --workdir)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir:
        print("error: --workdir: give the directory to draw", file=sys.stderr)
        return 2
    from tfvssl.eval import figures  # Heavy imports once the flags are parsed.

    for path in figures.plot_directory(FLAGS.workdir):
        print(path)
    return 0


if __name__ == "__main__":
    app.run(main)
