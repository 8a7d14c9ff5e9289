"""`tfvssl.workdir`: flags.txt written and read back without touching the process's flags."""

import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from tfvssl import methods, workdir
from tfvssl.eval import eval_flags  # noqa: F401 (this process also knows the evaluation flags)
from tfvssl.train import train_flags

FLAGS = flags.FLAGS


def test_a_workdirs_flags_are_read_into_fresh_flags(tmp_path):
    with flagsaver.flagsaver():
        FLAGS(["pretrain", "--method=memdpc", "--num_blocks=6", "--pred_step=2", "--color_jitter=0,0,0,0"])
        workdir.write_flags(train_flags.resolve_config(FLAGS, methods.get_method("memdpc")), str(tmp_path))
        FLAGS.unparse_flags()
        FLAGS(["pretrain", "--method=dpc", "--num_blocks=5"])  # This process's own command line.
        run_flags = workdir.read_flags(str(tmp_path))
        method = workdir.load_method(str(tmp_path))
        assert (FLAGS.method, FLAGS.num_blocks, FLAGS["pred_step"].present) == ("dpc", 5, 0)
    assert (run_flags.method, run_flags.num_blocks, run_flags.pred_step) == ("memdpc", 6, 2)
    assert run_flags.color_jitter == ["0", "0", "0", "0"] and run_flags.batch_size is None
    assert isinstance(method, methods.get_method("memdpc"))
    assert (method.config.num_blocks, method.config.lr) == (6, 1e-3)  # The recipe fills the rest.
    assert "--overwrite" not in (tmp_path / workdir.FLAGS_FILE).read_text()


def test_a_run_started_beside_other_tools_flags_resumes_from_the_command_line(tmp_path):
    with flagsaver.flagsaver():
        FLAGS(["pretrain", "--method=dpc"])
        workdir.write_flags(train_flags.resolve_config(FLAGS, methods.get_method("dpc")), str(tmp_path))
    # What `python -m tfvssl.pretrain` defines must read it (the evaluation flags it lacks once
    # made resuming fail with "Unknown command line flag").
    read = subprocess.run([
        sys.executable, "-c",
        f"from tfvssl import pretrain, workdir; print(workdir.read_flags({str(tmp_path)!r}).method)",
    ], capture_output=True, text=True, timeout=120)
    assert read.stdout.strip() == "dpc", read.stderr[-2000:]


def test_a_folder_without_flags_is_not_a_workdir(tmp_path):
    with pytest.raises(ValueError, match=f"--workdir={tmp_path}: no flags.txt"):
        workdir.load_method(str(tmp_path))
    with pytest.raises(ValueError, match="neither an export directory nor a pretraining workdir"):
        workdir.open_encoder(str(tmp_path), frozen=False)
