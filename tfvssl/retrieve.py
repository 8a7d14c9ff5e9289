"""Nearest-neighbour video retrieval: `python -m tfvssl.retrieve --encoder=... --output_dir=...`.

    python -m tfvssl.retrieve --flagfile=configs/retrieval_vcop.flags \
        --encoder=workdirs/vcop/export/vcop/1 --output_dir=workdirs/vcop/retrieval

Features of the frozen export (`--feature`: embedding, p4, p5, conv5_maxpool) for the
test-time views of every video (`--test_clips=uniform --num_clips=10`: VCOP/Pace;
`--test_clips=windows`: MemDPC), averaged per video; each test video queries the training
videos by cosine similarity (`--retrieval_level=clip`: each test clip queries the training
clips); R@1/5/10/20/50 go to `retrieval.json`, the features and neighbours to
`retrieval_features.npz` (for `python -m tfvssl.plots`).
"""

from absl import app

from tfvssl.eval import eval_flags


def main(argv):
    from tfvssl.eval import retrieval  # Heavy imports once the flags are parsed.

    return eval_flags.run_entry_point(argv, retrieval.Retrieval, retrieval.run)


if __name__ == "__main__":
    app.run(main)
