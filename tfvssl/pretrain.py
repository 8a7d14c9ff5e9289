"""Self-supervised pretraining: `python -m tfvssl.pretrain --flagfile=configs/<method>.flags`.

    python -m tfvssl.pretrain --flagfile=configs/dpc.flags --data=<shards> --workdir=<dir>

Without `--data` the embedded synthetic dataset is generated (once) and used. Every flag
is checked before any work starts, and so is the workdir: one whose `flags.txt` has another
method or another value of a flag that shapes the model or its clips is refused
(`--overwrite` replaces that run). Only then are the effective flags (recipe defaults filled
in) written to `<workdir>/flags.txt`, atomically; it is itself a valid flagfile.
"""

import os
import shutil
import signal

from absl import app, flags, logging

from tfvssl import cli, methods, workdir  # methods: every method's flags, for the command line.
from tfvssl.data import records
from tfvssl.train import train_flags

FLAGS = flags.FLAGS


def effective_config(flag_values=FLAGS):
    """Validates the flags and resolves the configuration; raises ValueError naming a flag.

    Runs no TensorFlow op (a multi-worker strategy must be created before any), so the
    embedded dataset is not generated here: `config.data` stays None until `resolve_data`.
    """
    method_cls = methods.get_method(flag_values.method)
    config = train_flags.resolve_config(flag_values, method_cls)
    if config.batch_size is None and config.per_replica_batch_size is None:
        raise ValueError(f"--batch_size: the {config.method} recipe sets none; give one")
    if config.lr_schedule == "steps" and not (config.lr_decay_steps or config.lr_decay_at_epochs):
        raise ValueError("--lr_decay_steps: the steps schedule needs at least one step (or --lr_decay_at_epochs)")
    if config.lr_schedule in ("steps", "plateau") and config.lr_decay_factor is None:
        raise ValueError(f"--lr_decay_factor: the {config.lr_schedule} schedule needs one")
    method = method_cls(config)
    method.validate()
    if config.data is not None:
        records.list_shards(config.data, config.split)  # Fails early, naming --data.
    else:
        synthetic_config(config)  # Fails early, naming the --synthetic_* setting.
    config.workdir = config.workdir or os.path.join("workdirs", config.method)
    return method, config


def synthetic_config(config):
    """The embedded dataset's `SyntheticConfig` from the `--synthetic_*` flags.

    Raises:
      ValueError: naming the setting when the flags make no valid dataset.
    """
    from tfvssl.data import synthetic

    try:
        return synthetic.SyntheticConfig(
            num_classes=config.synthetic_num_classes,
            resolution=config.synthetic_resolution,
            num_frames=config.synthetic_num_frames,
            train_videos_per_class=config.synthetic_videos_per_class,
            test_videos_per_class=max(1, config.synthetic_videos_per_class // 4),
            oops=config.synthetic_oops,
            clutter=config.synthetic_clutter,
            vary_speed=config.synthetic_vary_speed,
            motion_defined=config.synthetic_motion_defined,
        )
    except ValueError as error:
        # The config's messages open with the field's name: the flag's without its prefix.
        raise ValueError(f"--synthetic_{error}") from None


def resolve_data(config):
    """Sets `config.data` to the embedded synthetic dataset when `--data` was not given."""
    if config.data is not None:
        return
    from tfvssl.data import synthetic

    config.data = synthetic.default_dataset(synthetic_config(config))
    logging.info("no --data: using the embedded synthetic dataset at %s", config.data)


def check_workdir(method, config):
    """Refuses a workdir holding a run that this configuration cannot resume.

    Reads `<workdir>/flags.txt`, if any, and compares its method and `method.identity_flags`
    (the model's architecture and clip shape) with `config`; touches nothing.

    Raises:
      ValueError: naming the flags that differ, or `--overwrite` when it would delete what
        `--init_from` reads.
    """
    if config.overwrite:
        run_dir = os.path.realpath(config.workdir)
        if config.init_from and os.path.commonpath([run_dir, os.path.realpath(config.init_from)]) == run_dir:
            raise ValueError(
                f"--overwrite: it deletes the checkpoints of --workdir={config.workdir}, which "
                f"--init_from={config.init_from} reads; write the new run to another --workdir"
            )
        return
    if not workdir.is_workdir(config.workdir):
        return
    try:
        earlier = workdir.load_method(config.workdir).config
    except (ValueError, flags.Error) as error:
        raise ValueError(
            f"--workdir={config.workdir}: its flags.txt is not a valid run configuration ({error}); "
            "give another --workdir, or --overwrite to replace that run"
        ) from None
    names = ("method",) if earlier.method != config.method else method.identity_flags
    changed = [name for name in names if getattr(earlier, name, None) != getattr(config, name, None)]
    if changed:
        raise ValueError(
            f"--workdir={config.workdir} holds a run with {_flag_values(earlier, changed)}, not "
            f"{_flag_values(config, changed)}: its checkpoints cannot resume this run; give another "
            "--workdir (--init_from=<that workdir> starts from its weights), or --overwrite to "
            "replace that run"
        )


def clear_workdir(path):
    """Deletes the earlier run of `workdir` (`--overwrite`): the files of `workdir.RUN_FILES`."""
    for name in workdir.RUN_FILES:
        entry = os.path.join(path, name)
        if os.path.isdir(entry):
            shutil.rmtree(entry)
        elif os.path.exists(entry):
            os.remove(entry)


def _flag_values(config, names):
    return " ".join(f"--{name}={workdir.flag_text(getattr(config, name, None))}" for name in names)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        method, config = effective_config()
        check_workdir(method, config)
    except ValueError as error:
        return cli.failed(error)
    # Heavy imports and the first TensorFlow ops only once the flags are known good; the
    # strategy comes first (multi-worker collectives must be configured before any op).
    from tfvssl.train import strategy as strategies
    from tfvssl.train import trainer

    strategy = strategies.make_strategy(config.strategy)
    resolve_data(config)
    if strategies.is_chief(strategy):
        if config.overwrite:
            clear_workdir(config.workdir)
        workdir.write_flags(config, config.workdir)
    try:
        trainer.train(method, config, config.workdir, strategy=strategy)
    except trainer.NonFiniteLossError as error:
        return cli.failed(error, 3)
    except trainer.InputStoppedError as error:
        return cli.failed(error, 4)
    except trainer.Interrupted as stopped:
        logging.warning("%s", stopped)
        # The shell's convention for Ctrl-C (128 + SIGINT); a preemption's stop is a success.
        return 130 if stopped.signum == signal.SIGINT else 0
    except KeyboardInterrupt:  # Ctrl-C before the first step, or a second one.
        logging.warning("SIGINT: stopped; the newest checkpoint in %s/ckpt is where a rerun resumes", config.workdir)
        return 130
    return 0


if __name__ == "__main__":
    app.run(main)
