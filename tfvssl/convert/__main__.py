"""Import an authors' PyTorch checkpoint as a tfvssl workdir: `python -m tfvssl.convert`.

    python -m tfvssl.convert --checkpoint=k400_224_r34_dpc.pth.tar --model=dpc \
        --workdir=workdirs/dpc_k400_r34

Reads the `.pth`/`.pth.tar` file without PyTorch, builds the `--model`'s method with the
flags the state dict determines (backbone, input channels, memory size, tuple length,
number of paces: logged as inferred) and the sizes the authors trained at, maps every
tensor onto it by name and writes `<workdir>/flags.txt` and `<workdir>/ckpt/`, plus
`classifier.keras` for the downstream classifiers (`tfvssl.convert.importer`). Every
pretraining flag is accepted (`--resolution`, `--num_blocks`, `--clip_length`, ...,
`--flagfile`); a flag the weights fix (`--backbone`, `--modality`, ...) must agree with them.

Then, as with any pretraining run:

    python -m tfvssl.export --workdir=workdirs/dpc_k400_r34
    python -m tfvssl.pretrain --flagfile=workdirs/dpc_k400_r34/flags.txt \
        --workdir=workdirs/dpc_continued --init_from=workdirs/dpc_k400_r34

A file that is not a checkpoint, or a tensor that is missing, has no counterpart or does
not fit, ends the command with a one-line `error: ...` naming it and exit status 2.
"""

from absl import app, flags, logging

from tfvssl import cli, pretrain, workdir  # pretrain: every pretraining flag (all methods').
from tfvssl.convert import importer
from tfvssl.convert.torch_checkpoint import load_state_dict

flags.DEFINE_string("checkpoint", None, "The authors' checkpoint: a .pth / .pth.tar file written by torch.save.")
flags.DEFINE_enum(
    "model", None, list(importer.MODELS),
    "The authors' model the checkpoint holds: "
    + "; ".join(f"{kind}: {spec.source}" for kind, spec in importer.MODELS.items()) + ".",
)

FLAGS = flags.FLAGS
# Flags of this command, not of the pretraining run the workdir describes.
_OWN_FLAGS = ("checkpoint", "model")


def _spelled(value):
    return ",".join(value) if isinstance(value, list) else str(value)


def apply_inferred(inferred, flag_values=FLAGS):
    """Sets the flags the user left unset to the inferred values.

    Raises:
      ValueError: naming the flag, when the user set one the weights fix to another value.
    """
    for name, found in inferred.items():
        flag = flag_values[name]
        if not flag.present:
            flag.value = found.value
            logging.info("--%s=%s (%s)", name, _spelled(found.value), found.reason)
        elif found.fixed and flag.value != found.value:
            raise ValueError(
                f"--{name}={_spelled(flag.value)}: the checkpoint holds --{name}={_spelled(found.value)} "
                f"({found.reason})"
            )


def convert():
    """Converts `--checkpoint` into `--workdir`; returns the workdir. Raises ValueError."""
    for name in ("checkpoint", "model", "workdir"):
        if not FLAGS[name].value:
            raise ValueError(f"--{name}: required (see --helpfull)")
    try:
        state_dict = load_state_dict(FLAGS.checkpoint)
    except OSError as error:
        raise ValueError(f"--checkpoint={FLAGS.checkpoint}: {error.strerror or error}") from None
    apply_inferred(importer.infer_flags(FLAGS.model, state_dict))
    method, config = pretrain.effective_config()
    path = importer.convert(FLAGS.model, state_dict, method, config.workdir)
    for name in _OWN_FLAGS:
        delattr(config, name)  # flags.txt describes the run, not this command.
    workdir.write_flags(config, config.workdir)
    logging.info("converted %d tensors of %s into %s", len(state_dict), FLAGS.checkpoint, path)
    return config.workdir


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        path = convert()
    except ValueError as error:
        return cli.failed(error)
    print(path)
    return 0


if __name__ == "__main__":
    app.run(main)
