"""`python -m tfvssl.pretrain` with configs/pace.flags and configs/vcop.flags, at test size.

The papers' optimisers (SGD at lr 1e-3) need tens of thousands of steps, and Pace's task on
the embedded dataset (the speed of small objects under per-frame colour jitter, with the
videos' own speeds varying by 2x) was not learned by r3d within a few hundred steps on two
CPU cores. So the learning test trains VCOP with Adam on a one-video embedded dataset, where
the order is learnable in 20 steps only if every label agrees with the clips the
pipeline actually shuffled. Pace learns the same way on that video, with both loss terms;
`tests/models/test_pace.py` checks that its labels agree with the decoded frames.
"""

import os

import numpy as np
import pytest
from conftest import TINY_FLAGS
from test_pretrain import read_metrics, run_in_process

from tfvssl.data import synthetic


@pytest.fixture(scope="module")
def one_video_dataset(tmp_path_factory):
    """The embedded dataset reduced to one 16-frame video of 32 px (and no test split)."""
    root = str(tmp_path_factory.mktemp("one_video"))
    synthetic.generate(
        root,
        synthetic.SyntheticConfig(
            num_classes=1, train_videos_per_class=1, test_videos_per_class=0, num_frames=16,
            resolution=32, seed=0,
        ),
    )
    return root


@pytest.mark.slow
def test_vcop_flagfile_learns_the_clip_order(one_video_dataset, tmp_path):
    steps = 20
    # One backbone call for the 3 slots (--fold_clips) costs a third of the authors' three
    # and learns in fewer steps; per-slot BatchNorm is tested in tests/models/test_vcop.py.
    config, logs = run_in_process(
        ["--flagfile=configs/vcop.flags", f"--data={one_video_dataset}", f"--workdir={tmp_path}",
         *TINY_FLAGS["vcop"], "--optimizer=adam", "--lr=1e-3", "--fold_clips=true",
         f"--train_steps={steps}", "--val_split=none", f"--checkpoint_every={steps}"]
    )
    # The flagfile's recipe is kept where not overridden.
    assert (config.tuple_length, config.clip_interval, config.weight_decay) == (3, 2, 5e-4)
    accuracy = [m["train/accuracy"] for m in read_metrics(str(tmp_path)) if "train/accuracy" in m]
    assert len(accuracy) == steps
    # 6 orders: chance is 1/6. Measured: 0.3 over the first 10 steps, 0.97 over the next 10.
    assert np.mean(accuracy[-5:]) >= 0.5, accuracy


@pytest.mark.slow
def test_pace_flagfile_learns_the_pace_with_both_loss_terms(one_video_dataset, tmp_path):
    steps = 50
    # 16 px clips and no colour jitter make the pace learnable in tens of steps on one video
    # (with the jitter, a few hundred steps); Adam as the VCOP test.
    config, logs = run_in_process(
        ["--flagfile=configs/pace.flags", f"--data={one_video_dataset}", f"--workdir={tmp_path}",
         *TINY_FLAGS["pace"], "--resolution=16", "--frame_size=16,20", "--pace_jitter_prob=0",
         "--optimizer=adam", "--lr=1e-3", f"--train_steps={steps}", "--val_split=none",
         f"--checkpoint_every={steps}"]
    )
    assert (config.contrastive, config.projection, config.lambda_ctr) == ("same_context", "mlp", 0.1)
    assert config.weight_decay == 5e-3
    metrics = [m for m in read_metrics(str(tmp_path)) if "train/accuracy" in m]
    assert len(metrics) == steps and np.isfinite(logs["loss"])
    for m in metrics:
        np.testing.assert_allclose(m["train/loss"], m["train/cls_loss"] + 0.1 * m["train/ctr_loss"], rtol=1e-5)
    # 4 paces: chance is 1/4. Measured: 0.28 over the first 10 steps, 0.65 over steps 31-40.
    accuracy = [m["train/accuracy"] for m in metrics]
    assert np.mean(accuracy[-10:]) >= 0.45, accuracy
    flags_txt = open(os.path.join(str(tmp_path), "flags.txt")).read()
    assert "--paces=1,2,3,4" in flags_txt and "--contrastive=same_context" in flags_txt
