"""Export a pretrained encoder: `python -m tfvssl.export --workdir=<pretraining workdir>`.

    python -m tfvssl.export --workdir=workdirs/dpc [--version=N] [--export_name=NAME] [--noassert_finite] \
        [--checkpoint=workdirs/dpc/ckpt/ckpt-500]

Rebuilds the method from `<workdir>/flags.txt`, restores the newest checkpoint and writes
`<workdir>/export/<name>/<version>/`: a SavedModel with the signatures `serving_default`
(float clips), `serving_frames` (uint8 frames) and `serving_examples` (serialized
SequenceExamples), `encoder.keras` for fine-tuning and `export_info.json`
(`tfvssl/eval/exporting.py`; the serving contract is `export/README.md`). The version
defaults to one more than the newest one there, the version TF Serving picks up.
`--untrained` exports the freshly initialised encoder instead, the random baseline of the
evaluations; `--checkpoint` an older checkpoint of the run than the newest. `serving_default`
rejects clips holding NaN or Inf unless `--noassert_finite`.
"""

import os

from absl import app, flags, logging

from tfvssl import cli
from tfvssl.train import train_flags  # noqa: F401  (defines --workdir)

flags.DEFINE_integer("version", None, "Version directory to write (default: the next one).", lower_bound=1)
flags.DEFINE_string("export_name", None, "Model name, the TF Serving model directory (default: the method).")
flags.DEFINE_boolean("untrained", False, "Export the randomly initialised encoder (a baseline).")
flags.DEFINE_boolean(
    "assert_finite", True,
    "serving_default rejects clips holding NaN or Inf (one check per call); without it they give "
    "NaN embeddings.",
)
flags.DEFINE_string(
    "checkpoint", None,
    "Export this checkpoint of --workdir (a prefix, <workdir>/ckpt/ckpt-<step>) instead of the newest.",
)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from tfvssl import workdir  # Heavy imports after the flags parsed.
    from tfvssl.eval import exporting

    try:
        if not FLAGS.workdir:
            raise ValueError("--workdir: give the pretraining workdir to export from")
        method = workdir.load_method(FLAGS.workdir)
        model_dir = os.path.join(FLAGS.workdir, workdir.EXPORT_DIR, FLAGS.export_name or method.name)
        version = FLAGS.version or exporting.next_version(model_dir)
        export_dir = os.path.join(model_dir, str(version))
        if os.path.exists(export_dir):
            raise ValueError(f"--version={version}: {export_dir} exists")
        if FLAGS.untrained and FLAGS.checkpoint:
            raise ValueError("--checkpoint: not with --untrained, which exports no checkpoint")
        encoder, checkpoint = workdir.restore_encoder(
            method, None if FLAGS.untrained else FLAGS.workdir, FLAGS.checkpoint
        )
    except ValueError as error:
        return cli.failed(error)
    exporting.export_encoder(
        method, encoder, export_dir, extra_info={
            "checkpoint": checkpoint and os.path.abspath(checkpoint), "workdir": os.path.abspath(FLAGS.workdir)
        },
        assert_finite=FLAGS.assert_finite,
    )
    logging.info("exported %s encoder (%s) to %s", method.name, checkpoint or "untrained", export_dir)
    print(export_dir)
    return 0


if __name__ == "__main__":
    app.run(main)
