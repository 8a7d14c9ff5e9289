"""Every method of the table trains under mixed precision and with XLA, with finite losses.

Each method runs once with float16 compute and loss scaling inside an XLA-compiled forward
and backward pass (the harder of the two precisions, and one XLA compile per method: on
CPU both are slow); bfloat16, which needs no loss scaling, runs once on the cheapest method.
"""

import keras
import numpy as np
import pytest
from conftest import TINY_FLAGS
from test_pretrain import read_metrics, run_in_process

from tfvssl import methods

STEPS = 2


@pytest.fixture(autouse=True)
def float32_afterwards():
    """The trainer sets the global dtype policy; later tests in this process expect float32."""
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_every_method_of_the_table_has_tiny_flags():
    assert set(methods.METHODS) == set(TINY_FLAGS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method_name, precision, jit_compile",
    [(name, "mixed_float16", True) for name in sorted(TINY_FLAGS)] + [("tcp", "mixed_bfloat16", False)],
)
def test_trains_with_finite_losses(tiny_dataset, tmp_path, method_name, precision, jit_compile):
    config, logs = run_in_process(
        [f"--method={method_name}", f"--data={tiny_dataset}", f"--workdir={tmp_path}",
         *TINY_FLAGS[method_name], f"--precision={precision}", f"--jit_compile={jit_compile}",
         f"--train_steps={STEPS}", "--val_split=none", f"--checkpoint_every={STEPS}"]
    )
    assert (config.precision, config.jit_compile) == (precision, jit_compile)
    # A step with a non-finite loss is skipped and not logged: every step is here, finite.
    losses = [m["train/loss"] for m in read_metrics(str(tmp_path)) if "train/loss" in m]
    assert len(losses) == STEPS and np.all(np.isfinite(losses)), losses
    assert np.isfinite(logs["loss"])
