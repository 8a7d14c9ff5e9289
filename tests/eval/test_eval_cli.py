"""`python -m tfvssl.probe / finetune / retrieve / plots` on a tiny pretrained export, and
the evaluation flagfiles."""

import glob
import json
import os

import keras
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from eval_fixtures import REPO, cli, trained_run  # noqa: F401  (fixture)

from tfvssl import finetune, probe, retrieve  # noqa: F401  (define the flags)
from tfvssl.eval import classify, exporting
from tfvssl.eval import eval_flags
from tfvssl.eval import retrieval
from tfvssl.models import layers

FLAGS = flags.FLAGS


def read_json(path):
    with open(path) as f:
        return json.load(f)


def check_results(results, num_videos):
    """The results file is self-consistent: metrics recomputed from its own videos."""
    videos = results["videos"]
    assert len(videos) == results["num_videos"] == num_videos
    probabilities = np.array([v["probabilities"] for v in videos])
    labels = np.array([v["label"] for v in videos])
    predictions = np.array([v["prediction"] for v in videos])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    # Probabilities are written to 6 decimals: the prediction is a maximum up to rounding.
    chosen = probabilities[np.arange(len(videos)), predictions]
    np.testing.assert_allclose(chosen, probabilities.max(axis=1), atol=1e-6)
    assert results["video_level"]["top1"] == pytest.approx(np.mean(predictions == labels))
    assert np.sum(results["video_level"]["confusion_matrix"]) == num_videos


@pytest.mark.slow
def test_probe_finetune_retrieve_and_plots_from_the_command_line(trained_run, tmp_path):
    run_dir, export_dir = trained_run
    common = ["--batch_size=4", "--epochs=2"]

    # A cached-feature MLP probe of the workdir's newest export.
    assert cli("probe", [f"--encoder={run_dir}", f"--output_dir={tmp_path}/probe", "--head=mlp",
                         "--train_features=cached", *common]) == 0
    results = read_json(tmp_path / "probe" / "results.json")
    check_results(results, num_videos=6)
    # DPC's classifier takes 5 blocks (of 2 frames here, the export's 4): 24-frame videos,
    # 10-frame windows every 5 frames, 3 clips each.
    assert results["train_clip_shape"] == results["test_clip_shape"] == [10, 32, 32, 3]
    assert results["num_clips"] == 18 and results["encoder"] == os.path.join(export_dir, exporting.KERAS_FILE)
    epochs = [m["epoch"] for m in map(json.loads, open(tmp_path / "probe" / "metrics.jsonl"))]
    assert epochs == [1, 2]

    # Fine-tuning the .keras export on half the labels, with the VCOP-style test protocol.
    assert cli("finetune", [f"--encoder={export_dir}", f"--output_dir={tmp_path}/finetune",
                            "--label_fraction=0.5", "--weight_decay_to=pretrained", "--test_clips=uniform",
                            "--num_clips=2", "--num_crops=3", "--aggregate=logits", "--batch_size=3",
                            "--epochs=1"]) == 0
    results = read_json(tmp_path / "finetune" / "results.json")
    check_results(results, num_videos=6)
    assert results["train_videos"] == 6 and results["num_views"] == 6 * 2 * 3
    # The fine-tuned encoder moved away from the export, BatchNorm statistics included.
    exported = exporting.load_keras_encoder(export_dir)
    tuned = keras.saving.load_model(tmp_path / "finetune" / classify.CLASSIFIER_FILE)
    norms = [
        [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNorm)]
        for model in (exported, tuned.get_layer("encoder"))
    ]
    assert len(norms[0]) == len(norms[1]) > 0
    for before, after in zip(*norms):
        assert not np.allclose(after.moving_mean.numpy(), before.moving_mean.numpy()), before.name
        assert not np.allclose(after.gamma.numpy(), before.gamma.numpy()), before.name

    # Retrieval with uniform clips; R@k grows with k and reaches 1 once k covers the gallery.
    assert cli("retrieve", [f"--encoder={export_dir}", f"--output_dir={tmp_path}/retrieval",
                            "--test_clips=uniform", "--num_clips=3"]) == 0
    results = read_json(tmp_path / "retrieval" / retrieval.RESULTS_FILE)
    recalls = [results["recall"][f"R@{k}"] for k in retrieval.KS]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0
    assert (results["num_queries"], results["num_gallery"]) == (6, 12)
    arrays = np.load(tmp_path / "retrieval" / retrieval.FEATURES_FILE)
    recomputed, _, _ = retrieval.retrieve(
        arrays["query_features"], arrays["query_labels"], arrays["gallery_features"], arrays["gallery_labels"]
    )
    assert recomputed == results["recall"]

    assert cli("plots", [f"--workdir={tmp_path}"]) == 0
    written = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "plots" / "*.png")))
    assert written == sorted([
        "probe_training_curves.png", "probe_confusion_matrix.png", "finetune_training_curves.png",
        "finetune_confusion_matrix.png", "retrieval_tsne.png", "retrieval_similarity.png",
        "retrieval_retrieval_grid.png",
    ])

    # Clip level: each of the 3 clips of a test video queries the training videos' clips.
    assert cli("retrieve", [f"--encoder={export_dir}", f"--output_dir={tmp_path}/clip_retrieval",
                            "--test_clips=uniform", "--num_clips=3", "--retrieval_level=clip"]) == 0
    results = read_json(tmp_path / "clip_retrieval" / retrieval.RESULTS_FILE)
    assert (results["num_queries"], results["num_gallery"], results["level"]) == (18, 36, "clip")


def test_bad_requests_fail_naming_the_flag(trained_run, tmp_path, capsys):
    run_dir, export_dir = trained_run
    assert cli("probe", [f"--encoder={export_dir}", f"--output_dir={tmp_path}", "--feature=p5"]) == 2
    assert "--feature=p5: the encoder outputs embedding" in capsys.readouterr().err
    assert cli("retrieve", [f"--encoder={export_dir}"]) == 2
    assert "--output_dir" in capsys.readouterr().err
    assert cli("finetune", [f"--encoder={export_dir}", f"--output_dir={tmp_path}", "--train_features=cached"]) == 2
    assert "--train_features=cached" in capsys.readouterr().err
    assert cli("probe", [f"--encoder={tmp_path}", f"--output_dir={tmp_path}"]) == 2
    assert "no SavedModel" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flagfile", sorted(
        os.path.basename(p) for pattern in ("probe_*", "finetune_*", "retrieval*")
        for p in glob.glob(os.path.join(REPO, "configs", pattern + ".flags"))
    ),
)
def test_evaluation_flagfiles_resolve(flagfile, monkeypatch):
    monkeypatch.chdir(REPO)  # Nested flagfiles are relative to the repository.
    recipe = {"probe": classify.LinearProbe, "finetune": classify.FineTune, "retrieval": retrieval.Retrieval}
    with flagsaver.flagsaver():
        FLAGS(["eval", f"--flagfile=configs/{flagfile}", "--encoder=x", "--output_dir=y"])
        config = eval_flags.resolve(FLAGS, recipe[flagfile.split("_")[0].removesuffix(".flags")])
    assert config.batch_size >= 1
    if not flagfile.startswith("retrieval"):
        assert config.epochs and config.lr and 0.0 <= config.head_dropout < 1.0
        assert all(0 < epoch < config.epochs for epoch in config.lr_decay_epochs)
    header = open(os.path.join(REPO, "configs", flagfile)).read().split("\n--")[0]
    assert "Expected" in header and "python -m tfvssl." in header
