"""`python -m tfvssl.oops` end to end on a tiny MemDPC pretrained on the embedded oops data, and
the pieces of `tfvssl/eval/unintentional.py`: the predictive classifier, the window averaging, the
video filter."""

import json
import logging as std_logging
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver
from eval_fixtures import REPO, build_run, cli

from tfvssl import pretrain
from tfvssl.data import oops_labels
from tfvssl.data import synthetic
from tfvssl import workdir
from tfvssl.eval import exporting, unintentional

FLAGS = flags.FLAGS

# 3.2 s at 25 fps: 9 clips per video; windows of 2 clips.
TINY_OOPS = synthetic.SyntheticConfig(
    num_classes=2, train_videos_per_class=3, test_videos_per_class=2, num_frames=80, resolution=32,
    oops=True, shard_size=4,
)
COMMON = [f"--flagfile={REPO}/configs/oops.flags", "--num_steps=2", "--batch_size=4", "--lr_decay_epochs=1"]


@pytest.fixture(scope="module")
def oops_run(tmp_path_factory):
    """`(workdir, export_dir, data)`: MemDPC pretrained for two steps on tiny oops data
    (32 px, 4 blocks of 2 frames) and exported."""
    root = tmp_path_factory.mktemp("oops")
    data, run = str(root / "data"), str(root / "memdpc")
    synthetic.generate(data, TINY_OOPS)
    build_run(data, run, method="memdpc", train_steps=2)
    return run, os.path.join(run, "export", "memdpc", "1"), data


def read_results(output_dir):
    with open(os.path.join(output_dir, unintentional.RESULTS_FILE)) as f:
        return json.load(f)


def test_cli_writes_clip_accuracies_confusion_matrix_and_timeline(oops_run, tmp_path):
    run, _, _ = oops_run

    status = cli("oops", [*COMMON, f"--encoder={run}", f"--output_dir={tmp_path}", "--train_features=cached",
                          "--epochs=2"])

    assert status == 0
    results = read_results(tmp_path)
    assert (results["classifier"], results["mode"], results["num_steps"]) == ("predictive", "frozen", 2)
    assert results["loaded"].endswith("ckpt-2")
    assert results["num_videos"] == 4 and results["num_clips"] == 4 * 9
    level = results["clip_level"]
    assert 0 <= level["accuracy"] <= 1 and set(level["per_class_accuracy"]) == set(oops_labels.CLASS_NAMES)
    matrix = np.array(level["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 36
    assert level["accuracy"] == pytest.approx(np.trace(matrix) / 36)
    assert 0 < level["time_prior_accuracy"] <= 1 and 0 <= level["time_prior_mean_class_accuracy"] <= 1
    for index, video in enumerate(results["videos"]):  # Every test video, in record order.
        assert video["t_fail"] == pytest.approx(synthetic.video_failure(TINY_OOPS, "test", index).time, abs=1e-5)
        assert len(video["labels"]) == len(video["probabilities"]) == 9
        np.testing.assert_allclose(np.sum(video["probabilities"], axis=1), 1.0, atol=1e-4)
    for picture in ("confusion_matrix.png", "timeline.png"):
        assert os.path.getsize(tmp_path / "plots" / picture) > 10_000
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2]


def test_fine_tuning_a_random_initialisation_on_augmented_padded_windows(oops_run, tmp_path):
    run, _, _ = oops_run

    status = cli("oops", [*COMMON, f"--encoder={run}", f"--output_dir={tmp_path}", "--finetune", "--random_init",
                          "--epochs=1", "--clips_per_video=2", "--pad_windows"])

    assert status == 0
    results = read_results(tmp_path)
    assert (results["mode"], results["loaded"], results["train_features"], results["pad_windows"]) == (
        "finetune", "random initialisation", "augmented", True
    )
    assert results["num_clips"] == 36


def test_embedding_classifier_on_an_export(oops_run, tmp_path):
    _, export_dir, _ = oops_run

    status = cli("oops", [*COMMON, "--classifier=embedding", f"--encoder={export_dir}", f"--output_dir={tmp_path}",
                          "--epochs=1", "--clips_per_video=2"])

    assert status == 0
    results = read_results(tmp_path)
    assert (results["classifier"], results["num_steps"], results["num_clips"]) == ("embedding", 1, 36)


@pytest.mark.parametrize("args, message", [
    (["--encoder={dpc}"], "--classifier=predictive: {dpc} pretrained dpc, not memdpc"),
    (["--encoder={run}", "--finetune", "--train_features=cached"], "--train_features=cached"),
    (["--encoder={run}", "--oops_annotations=/no/such.json"], "--oops_annotations=/no/such.json: no such file"),
    (["--encoder={run}", "--data={plain}"], "--data={plain}: no video of the 'train' split has a failure time"),
])
def test_bad_flags_fail_with_a_message_naming_them(oops_run, tiny_dataset, tmp_path, capsys, args, message):
    dpc = tmp_path / "dpc"
    dpc.mkdir()
    (dpc / "flags.txt").write_text("--method=dpc\n--per_replica_batch_size=4\n")
    names = dict(run=oops_run[0], dpc=dpc, plain=tiny_dataset)

    flags = [a.format(**names) for a in args]
    status = cli("oops", [*COMMON, f"--output_dir={tmp_path / 'out'}", "--epochs=1", *flags])

    assert status == 2
    assert message.format(**names) in capsys.readouterr().err
    assert not (tmp_path / "out" / unintentional.RESULTS_FILE).exists()


def oops_config(encoder):
    return types.SimpleNamespace(
        encoder=encoder, classifier="predictive", finetune=False, train_features="augmented",
        oops_annotations=None, oops_borders=None,
    )


def test_the_predictive_classifier_reads_the_checkpoint_an_export_was_made_from(oops_run, tmp_path):
    run, export_dir, _ = oops_run
    older, untrained = tmp_path / "older", tmp_path / "untrained"
    for directory, checkpoint in ((older, os.path.join(run, "ckpt", "ckpt-1")), (untrained, None)):
        directory.mkdir()
        (directory / exporting.INFO_FILE).write_text(json.dumps({"workdir": run, "checkpoint": checkpoint}))

    assert unintentional.method_and_source(oops_config(run))[1] == os.path.join(run, "ckpt")
    method, source = unintentional.method_and_source(oops_config(export_dir))
    assert (method.name, source) == ("memdpc", os.path.join(run, "ckpt", "ckpt-2"))
    assert unintentional.method_and_source(oops_config(str(older)))[1] == os.path.join(run, "ckpt", "ckpt-1")
    with pytest.raises(ValueError, match="an untrained export; .* --random_init"):
        unintentional.method_and_source(oops_config(str(untrained)))


# ---- Pieces ------------------------------------------------------------------------------------------


def predictive_classifier(run, frozen):
    config = types.SimpleNamespace(
        classifier="predictive", finetune=not frozen, random_init=True, head="linear", head_dropout=0.5,
        head_hidden=8, optimizer="adam", weight_decay=0.0, encoder=run,
    )
    method = workdir.load_method(run)
    return unintentional.build_classifier(config, method, run)[0]


def test_the_prediction_of_a_step_depends_only_on_the_steps_before(oops_run):
    classifier = predictive_classifier(oops_run[0], frozen=True)
    features = tf.random.normal([2, 3, 1, 1, 256], seed=0)
    changed = tf.concat([features[:, :2], features[:, 2:] + 1.0], axis=1)  # Step 3 differs.

    steps, steps_changed = classifier.step_features(features), classifier.step_features(changed)

    true, predicted = steps[..., :256], steps[..., 256:]
    np.testing.assert_allclose(steps[:, :2], steps_changed[:, :2])  # Earlier steps: the same.
    np.testing.assert_allclose(predicted[:, 2], steps_changed[:, 2, 256:])  # z^_3 sees steps 1-2 only,
    assert np.abs(true[:, 2] - steps_changed[:, 2, :256]).min() > 0.99  # z_3 is step 3's feature.
    np.testing.assert_allclose(true, tf.reduce_mean(features, axis=[2, 3]), atol=1e-6)
    model = classifier.encoder
    from_zero = model.read_memory(tf.zeros([1, 1, 1, 256]))[:, 0, 0]  # z^_1: from the zero state.
    np.testing.assert_allclose(predicted[:, 0], tf.repeat(from_zero, 2, axis=0), atol=1e-6)


def test_frozen_trains_the_head_only_and_fine_tuning_the_forward_model(oops_run):
    frozen = predictive_classifier(oops_run[0], frozen=True)
    tuned = predictive_classifier(oops_run[0], frozen=False)
    for classifier in (frozen, tuned):
        classifier(tf.zeros([1, 2, 2, 32, 32, 3]), training=True)

    assert [id(v) for v in frozen.trainable_variables] == [id(v) for v in frozen.head.trainable_variables]
    tuned_names = " ".join(v.path for v in tuned.trainable_variables)
    assert "agg_f" in tuned_names and "memory_bank" in tuned_names and "network_pred" in tuned_names
    assert "agg_b" not in tuned_names  # Single-directional: the backward GRU is unused.


@pytest.mark.parametrize("padded", [False, True])
def test_each_clip_averages_the_window_steps_that_hold_it(padded):
    # A classifier sure of class `step % 3` at every step: a clip's probabilities then count the
    # steps it is seen at.
    def classifier(windows, training=False):
        steps = tf.range(tf.shape(windows)[1]) % 3
        return 50.0 * tf.one_hot(tf.broadcast_to(steps, tf.shape(windows)[:2]), 3)

    (probabilities,) = unintentional.clip_probabilities(
        classifier, [np.zeros([9, 1], np.float32)], num_steps=3, padded=padded
    )

    expected = np.zeros([9, 3])
    for clip in range(9):
        # Window `clip - 4 step` holds it at `step`; padded windows may start before clip 0, so
        # every clip is seen at every step alike.
        seen = [step for step in range(3) if padded or 0 <= clip - 4 * step]
        expected[clip, seen] = 1 / len(seen)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert np.allclose(probabilities, 1 / 3) == padded


def test_videos_are_filtered_by_the_records_or_exactly_by_the_annotations(oops_run):
    _, _, data = oops_run

    by_records = unintentional.read_videos(data, "train")
    names = [unintentional.annotation_key(name) for name in by_records.names]
    annotations = {name: {"t": [1.0, 2.0, 1.5], "rel_t": [0.3, 0.6, 0.45], "len": 3.3} for name in names}
    annotations[names[0]]["len"] = 3.1  # Too short for the authors.
    del annotations[names[1]]  # Not annotated.
    by_annotations = unintentional.read_videos(data, "train", annotations)

    assert len(by_records.names) == 6 and by_records.positions.tolist() == list(range(6))
    assert by_annotations.names == by_records.names[2:]
    assert [len(labels) for labels in by_records.labels] == [9] * 6
    assert by_records.t_fail[0] == pytest.approx(synthetic.video_failure(TINY_OOPS, "train", 0).time, abs=1e-5)


def test_reading_a_workdir_keeps_the_logging_level(oops_run):
    root = std_logging.getLogger()
    level = root.level
    root.setLevel(std_logging.INFO)
    try:
        workdir.load_method(oops_run[0])  # Parses flags.txt into fresh copies of the flags.

        assert root.level == std_logging.INFO  # The summary lines still show.
    finally:
        root.setLevel(level)


def test_borders_lookup(tmp_path):
    path = tmp_path / "borders.json"
    path.write_text(json.dumps({"clip_a": [0.1, 0.9]}))

    lookup = unintentional.borders_lookup(str(path))

    assert [float(v) for v in lookup(tf.constant("val/clip_a.mp4"))] == pytest.approx([0.1, 0.9])
    assert [float(v) for v in lookup(tf.constant("val/clip_b.mp4"))] == [0.0, 0.0]
    assert unintentional.borders_lookup(None)("anything") == (0.0, 0.0)


def test_pretraining_on_too_short_oops_videos_fails_naming_the_flag():
    with flagsaver.flagsaver():
        FLAGS(["pretrain", "--method=memdpc", "--synthetic_oops", "--synthetic_num_frames=64"])
        with pytest.raises(ValueError, match=r"--synthetic_num_frames=64: the oops mode needs videos of 3.2-30.0 s"):
            pretrain.effective_config()



def _videos(starts, ends, labels):
    return unintentional.Videos(
        files=[], positions=np.arange(len(starts)), names=[str(i) for i in range(len(starts))],
        t_fail=np.zeros(len(starts)), labels=[np.array(x) for x in labels],
        starts=[np.array(x, float) for x in starts], ends=[np.array(x, float) for x in ends],
    )


def test_time_prior_predicts_the_commonest_training_label_of_the_clips_time():
    # Training clips start at relative times 0 and 0.5 (bins 0 and 2 of 4); bin 0 holds one
    # intentional and one unintentional clip (a tie: the first class), bin 2 two unintentional.
    train = _videos([[0, 1], [0, 1]], [[1, 2], [1, 2]], [[0, 2], [2, 2]])
    # Test clips at 0, 0.2, 0.4 and 0.6 of the video: bins 0, 0, 1 (no training clip: the
    # commonest label overall, unintentional) and 2.
    test = _videos([[0, 0.5, 1, 1.5]], [[1, 1.5, 2, 2.5]], [[0, 1, 2, 2]])
    assert unintentional.time_prior_predictions(train, test, num_bins=4).tolist() == [0, 0, 2, 2]

    level = unintentional.evaluate(test, [np.eye(3)[[0, 1, 2, 2]]], np.array([0, 0, 2, 2]))["clip_level"]
    assert level["accuracy"] == 1.0 and level["time_prior_accuracy"] == 0.75
    assert level["time_prior_mean_class_accuracy"] == pytest.approx(2 / 3)
    assert level["time_prior_per_class_accuracy"] == {"intentional": 1.0, "transitional": 0.0, "unintentional": 1.0}
