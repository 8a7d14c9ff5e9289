"""The export contract: three signatures that reload without tfvssl, enforced shapes, bad
inputs rejected, running-statistics BatchNorm, `saved_model_cli` listing, the `.keras` file,
the README's Keras recipes, the CLI."""

import base64
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from eval_fixtures import REPO, cli, trained_run  # noqa: F401  (fixture)
from google.protobuf import text_format

from tfvssl.data import records
from tfvssl import workdir
from tfvssl.eval import exporting
from tfvssl.models import layers

CLIP = [8, 32, 32, 3]

# Runs in a fresh interpreter that never imports tfvssl: what a serving client or another
# team's code sees.
SERVING_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    export_dir, inputs, examples, outputs = sys.argv[1:]
    arrays = np.load(inputs)
    model = tf.saved_model.load(export_dir)
    serialized = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(examples)])
    results = {
        "clips": model.signatures["serving_default"](clips=tf.constant(arrays["clips"]))["embedding"],
        "first_clip": model.signatures["serving_default"](clips=tf.constant(arrays["clips"][:1]))["embedding"],
        "frames": model.signatures["serving_frames"](frames=tf.constant(arrays["frames"]))["embedding"],
        "examples": model.signatures["serving_examples"](examples=serialized)["embedding"],
    }
    try:
        model.signatures["serving_default"](clips=tf.zeros([1, 4, 32, 32, 3]))
        error = "accepted"
    except tf.errors.InvalidArgumentError as e:
        error = e.message
    assert "tfvssl" not in sys.modules
    np.savez(outputs, error=error, **{name: value.numpy() for name, value in results.items()})
    """
)


def center_clip_by_hand(record, method):
    """The serving_examples clip, computed with NumPy indexing instead of tfvssl's samplers."""
    video = records.parse_sequence_example(record)
    frames = np.stack([tf.io.decode_jpeg(jpeg).numpy() for jpeg in video["rgb"]])
    stride = method.clip_frame_stride()
    span = stride * (CLIP[0] - 1) + 1
    start = max(len(frames) - span, 0) // 2
    indices = np.minimum(start + stride * np.arange(CLIP[0]), len(frames) - 1)
    return method.eval_clip(tf.constant(frames[indices]))


def test_the_three_signatures_reload_without_tfvssl_and_match_the_encoder(trained_run, tiny_dataset, tmp_path):
    run_dir, export_dir = trained_run
    test_files = records.list_shards(tiny_dataset, "test")
    rng = np.random.default_rng(0)
    clips = rng.normal(size=[3, *CLIP]).astype(np.float32)
    frames = rng.integers(0, 256, size=[2, *CLIP], dtype=np.uint8)
    np.savez(tmp_path / "inputs.npz", clips=clips, frames=frames)
    with tf.io.TFRecordWriter(str(tmp_path / "examples.tfrecord")) as writer:
        serialized = [r.numpy() for r in tf.data.TFRecordDataset(test_files).take(2)]
        for record in serialized:
            writer.write(record)
    (tmp_path / "serve.py").write_text(SERVING_SCRIPT)
    fresh = subprocess.Popen(
        [sys.executable, str(tmp_path / "serve.py"), export_dir, str(tmp_path / "inputs.npz"),
         str(tmp_path / "examples.tfrecord"), str(tmp_path / "outputs.npz")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    listing = subprocess.Popen(
        ["saved_model_cli", "show", "--dir", export_dir, "--all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )

    # The in-process model: the same checkpoint restored into a freshly built encoder.
    method = workdir.load_method(run_dir)
    encoder, _ = workdir.restore_encoder(method, run_dir)
    expected = {
        "clips": encoder(clips)["embedding"],
        "frames": encoder(method.normalize(tf.constant(frames)))["embedding"],
        "examples": encoder(tf.stack([center_clip_by_hand(r, method) for r in serialized]))["embedding"],
    }

    # The .keras file reloads to the same numbers, with running-statistics BatchNorm.
    reloaded = exporting.load_keras_encoder(export_dir)
    np.testing.assert_allclose(reloaded(clips)["embedding"], expected["clips"], rtol=1e-4, atol=1e-5)
    norms = [layer for layer in reloaded._flatten_layers() if isinstance(layer, layers.BatchNorm)]
    assert norms and not any(layer.always_batch_stats for layer in norms)

    _, stderr = fresh.communicate(timeout=240)
    assert fresh.returncode == 0, stderr[-3000:]
    served = np.load(tmp_path / "outputs.npz")
    for name, values in expected.items():
        np.testing.assert_allclose(served[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
    # Running statistics: a clip's embedding does not depend on the rest of its batch.
    np.testing.assert_allclose(served["first_clip"], served["clips"][:1], rtol=1e-5, atol=1e-6)
    assert "expected shape [?,8,32,32,3]" in str(served["error"])

    shown, stderr = listing.communicate(timeout=240)
    assert listing.returncode == 0, stderr[-3000:]
    for signature, (name, dtype, shape) in {
        "serving_default": ("clips", "DT_FLOAT", "(-1, 8, 32, 32, 3)"),
        "serving_frames": ("frames", "DT_UINT8", "(-1, 8, 32, 32, 3)"),
        "serving_examples": ("examples", "DT_STRING", "(-1)"),
    }.items():
        block = shown.split(f"signature_def['{signature}']:")[1].split("signature_def[")[0]
        assert f"inputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" in block
        assert "outputs['embedding'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 256)" in block
        assert "Method name is: tensorflow/serving/predict" in block


def test_empty_batches_non_finite_clips_and_too_short_records_are_rejected_naming_the_reason(
    trained_run, tmp_path
):
    run_dir, export_dir = trained_run
    model = tf.saved_model.load(export_dir)
    for signature, name, empty in (
        ("serving_default", "clips", tf.zeros([0, *CLIP])),
        ("serving_frames", "frames", tf.zeros([0, *CLIP], tf.uint8)),
        ("serving_examples", "examples", tf.constant([], tf.string)),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"{signature}: the batch is empty"):
            model.signatures[signature](**{name: empty})
    clips = np.zeros([2, *CLIP], np.float32)
    clips[1, 3, 5, 7, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_default: the clips hold NaN or Inf"):
        model.signatures["serving_default"](clips=tf.constant(clips))
    # Training skips a video shorter than its sample; serving does not pad one either.
    frames = [records.encode_jpeg(np.full([32, 32, 3], k, np.uint8)) for k in range(CLIP[0] - 1)]
    short = records.make_sequence_example({"rgb": frames}, filename="short").SerializeToString()
    too_short = r"fewer frames than one clip covers \(8 frames at stride 1: 8\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=too_short):
        model.signatures["serving_examples"](examples=tf.constant([short]))

    # Exported without the check, NaN clips give NaN embeddings (and finite ones are served).
    method = workdir.load_method(run_dir)
    encoder, _ = workdir.restore_encoder(method, run_dir)
    unchecked = str(tmp_path / "unchecked")
    assert exporting.export_encoder(method, encoder, unchecked, assert_finite=False)["assert_finite"] is False
    embedding = tf.saved_model.load(unchecked).signatures["serving_default"](clips=tf.constant(clips))["embedding"]
    assert np.isfinite(embedding[0]).all() and np.isnan(embedding[1]).all()


def readme_recipe(name):
    """The Python block of export/README.md between `<!-- name -->` and `<!-- /name -->`."""
    with open(os.path.join(REPO, "export", "README.md")) as f:
        text = f.read()
    block = text.split(f"<!-- {name} -->")[1].split(f"<!-- /{name} -->")[0]
    return block.strip().removeprefix("```python").removesuffix("```")


@pytest.mark.parametrize("recipe", ["keras-frozen", "keras-finetune"])
def test_the_readme_keras_recipes_fit(trained_run, recipe):
    _, export_dir = trained_run
    rng = np.random.default_rng(0)
    namespace = {
        "export_dir": export_dir, "T": CLIP[0], "H": CLIP[1], "W": CLIP[2], "num_classes": 3,
        "train_clips": rng.normal(size=[4, *CLIP]).astype(np.float32), "train_labels": rng.integers(0, 3, 4),
    }
    build, fit = readme_recipe(recipe).split("model.fit")
    exec(build, namespace)
    encoder, clips = namespace["encoder"], namespace["train_clips"]
    weights = [w.numpy() for w in encoder.trainable_weights]
    embedding = encoder(clips)["embedding"]
    exec("model.fit" + fit, namespace)  # One step: 4 clips, Keras's default batch of 32.
    assert np.isfinite(namespace["model"].history.history["loss"]).all()
    if recipe == "keras-frozen":
        assert not encoder.trainable_weights
        np.testing.assert_allclose(encoder(clips)["embedding"], embedding, rtol=1e-6)
    else:
        trained = [not np.array_equal(w.numpy(), before) for w, before in zip(encoder.trainable_weights, weights)]
        assert weights and sum(trained) > 0.9 * len(trained)


def test_export_info_describes_the_contract(trained_run):
    run_dir, export_dir = trained_run
    info = exporting.read_info(export_dir)
    assert info["method"] == "dpc" and info["clip_shape"] == CLIP and info["clip_frame_stride"] == 1
    assert info["outputs"] == {"embedding": [-1, 256]}
    assert info["signatures"]["serving_frames"] == {"input": "frames", "dtype": "uint8", "shape": [-1, *CLIP]}
    assert info["checkpoint"].endswith("ckpt-1")
    assert info["min_tensorflow_serving_version"] == ".".join(tf.__version__.split(".")[:2])
    # DPC pretrains with batch-statistics BatchNorm; the export does not.
    assert info["config"]["batch_stats_bn"] is True
    # ImageNet normalisation as uint8 * scale + offset.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(info["normalization"]["scale"], 1 / (255 * std), rtol=1e-5)
    np.testing.assert_allclose(info["normalization"]["offset"], -mean / std, rtol=1e-5)
    assert workdir.find_export(run_dir) == export_dir


def test_export_cli_numbers_versions_and_rejects_bad_requests(trained_run, tmp_path, capsys):
    run_dir, export_dir = trained_run
    assert exporting.next_version(os.path.dirname(export_dir)) == 2
    assert exporting.next_version(str(tmp_path / "none")) == 1
    assert cli("export", [f"--workdir={run_dir}", "--version=1"]) == 2
    assert "--version=1" in capsys.readouterr().err
    assert cli("export", [f"--workdir={tmp_path}"]) == 2
    assert "no flags.txt" in capsys.readouterr().err
    missing = os.path.join(run_dir, "ckpt", "ckpt-7")
    assert cli("export", [f"--workdir={run_dir}", f"--checkpoint={missing}"]) == 2
    assert f"--checkpoint={missing}: no such checkpoint" in capsys.readouterr().err
    assert cli("export", [f"--workdir={run_dir}", "--untrained", f"--checkpoint={missing}"]) == 2
    assert "--checkpoint: not with --untrained" in capsys.readouterr().err
    os.makedirs(tmp_path / "run")
    with open(os.path.join(run_dir, "flags.txt")) as f:
        (tmp_path / "run" / "flags.txt").write_text(f.read())
    assert cli("export", [f"--workdir={tmp_path / 'run'}"]) == 2
    assert "--untrained" in capsys.readouterr().err


def load_client():
    spec = importlib.util.spec_from_file_location("export_client", os.path.join(REPO, "export", "client.py"))
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    return client


def test_the_example_client_builds_requests_the_signatures_accept(trained_run, tiny_dataset):
    _, export_dir = trained_run
    client = load_client()
    model = tf.saved_model.load(export_dir)
    serialized = client.read_examples(records.list_shards(tiny_dataset, "test")[0], limit=2)
    frames = np.random.default_rng(2).integers(0, 256, size=[2, *CLIP], dtype=np.uint8)
    for signature, name, values, dtype in (
        ("serving_examples", "examples", serialized, tf.string),
        ("serving_frames", "frames", frames, tf.uint8),
    ):
        direct = model.signatures[signature](**{name: tf.constant(values, dtype)})["embedding"]
        # REST: decode the JSON body as TF Serving does for a one-input signature's rows.
        body = json.loads(json.dumps(client.rest_body(signature, values)))
        rows = [base64.b64decode(row["b64"]) if isinstance(row, dict) else row for row in body["instances"]]
        served = model.signatures[body["signature_name"]](**{name: tf.constant(rows, dtype)})["embedding"]
        np.testing.assert_allclose(served, direct, rtol=1e-6)
        if importlib.util.find_spec("tensorflow_serving"):  # The optional `serving` extra.
            request = client.grpc_request("dpc", signature, name, values)
            assert request.model_spec.signature_name == signature
            tensor = tf.make_ndarray(request.inputs[name])
            served = model.signatures[signature](**{name: tf.constant(tensor, dtype)})["embedding"]
            np.testing.assert_allclose(served, direct, rtol=1e-6)


def test_models_config_is_a_model_server_config():
    config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    with open(os.path.join(REPO, "export", "models.config")) as f:
        config = text_format.Parse(f.read(), config_pb2.ModelServerConfig())
    assert [c.name for c in config.model_config_list.config] == ["dpc", "dpc_random"]


def test_a_workdir_names_the_highest_version_of_its_only_model(tmp_path):
    def add(name, version):
        os.makedirs(tmp_path / "export" / name / version)
        (tmp_path / "export" / name / version / "saved_model.pb").write_bytes(b"")

    with pytest.raises(ValueError, match="no SavedModel"):
        workdir.find_export(str(tmp_path))
    for version in ("1", "10", "2"):
        add("dpc", version)
    os.makedirs(tmp_path / "export" / "dpc" / "11")  # Not an export: no saved_model.pb.
    assert workdir.find_export(str(tmp_path)) == str(tmp_path / "export" / "dpc" / "10")
    add("dpc_random", "1")
    with pytest.raises(ValueError, match=r"several models .* \(dpc, dpc_random\)"):
        workdir.find_export(str(tmp_path))
