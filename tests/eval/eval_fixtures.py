"""A tiny pretrained and exported DPC run, shared by the evaluation tests.

Import the fixture into a test module (`from eval_fixtures import trained_run`). The run is
kept in the session's temporary directory (shared by pytest-xdist workers, under a lock),
so it is trained and exported once per session even when several modules use it.
"""

import fcntl
import importlib
import os

import pytest
from absl import flags
from absl.testing import flagsaver
from conftest import TINY_FLAGS

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
FLAGS = flags.FLAGS


def cli(module, args):
    """Runs `python -m tfvssl.<module> <args>` in this process; returns its exit status."""
    main = importlib.import_module(f"tfvssl.{module}").main  # Defines the module's flags.
    with flagsaver.flagsaver():
        FLAGS([module, *args])
        return main([module])


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory):
    """`(workdir, export_dir)` of a DPC run pretrained for one step (32 px, 4 blocks of 2
    frames, so clips are [8, 32, 32, 3]) and exported with `python -m tfvssl.export`."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # Shared by the pytest-xdist workers: the first one builds it.
    workdir = str(root / "eval_dpc_run")
    export_dir = os.path.join(workdir, "export", "dpc", "1")
    with open(root / "eval_dpc_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isdir(export_dir):
            build_run(tiny_dataset, workdir)
    return workdir, export_dir


def build_run(data, workdir, method="dpc", train_steps=1):
    """Pretrains `method` with its flagfile at the tiny sizes of `TINY_FLAGS`
    (`tfvssl.pretrain`'s code path) and exports it (its CLI) into `workdir`."""
    from tfvssl import pretrain
    from tfvssl import workdir as workdirs
    from tfvssl.train import trainer

    with flagsaver.flagsaver():
        FLAGS([
            "pretrain", f"--flagfile={REPO}/configs/{method}.flags", f"--data={data}", f"--workdir={workdir}",
            *TINY_FLAGS[method], f"--train_steps={train_steps}", "--checkpoint_every=1", "--val_split=none",
        ])
        method, config = pretrain.effective_config()
        workdirs.write_flags(config, workdir)
        trainer.train(method, config, workdir)
    assert cli("export", [f"--workdir={workdir}"]) == 0
