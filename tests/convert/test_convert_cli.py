"""`python -m tfvssl.convert`: authors' checkpoints in, tfvssl workdirs out.

The checkpoints are written here, without PyTorch, in torch.save's zip format from the
state dict of a tiny tfvssl model under the authors' names (`keras_to_torch_state_dict`),
with random weights and BatchNorm statistics. Each is converted by the CLI in a
subprocess; the workdir is then read back the way `pretrain --init_from`, `export` and the
evaluations read it, and every tensor must come back unchanged.
"""

import collections
import io
import os
import pickle
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from conftest import TINY_DPC_FLAGS

from tfvssl.convert import dpc_family, importer, keras_to_torch_state_dict, load_state_dict, vcop_pace
from tfvssl import workdir as workdirs
from tfvssl.models import dpc_model, layers, memdpc_model, pace_model, vcop_model
from tfvssl.train import checkpoint

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
FLAGS = flags.FLAGS

# Sizes of the converted runs (the weights fit any): those of conftest's TINY_FLAGS.
DPC_SIZES = ["--resolution=32", "--num_blocks=4", "--block_length=2", "--pred_step=2"]
CLIP_SIZES = ["--clip_length=4", "--resolution=32", "--frame_size=32,40"]


# ---- A torch.save writer (zip format), so that no test needs PyTorch ------------------------


class _Global:
    """A `module.name` reference the pickle names without importing it (no torch here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle checks that a reduce function is callable
        raise TypeError(f"{self.module}.{self.name} is only a name here")


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _TorchPickler(pickle._Pickler):
    """Pickles numpy arrays as torch tensors: `_rebuild_tensor_v2` over a float storage."""

    dispatch = dict(pickle._Pickler.dispatch)  # noqa: RUF012 - pickle's own per-class table

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.storages = []

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            storage_type = _Global("torch", "FloatStorage")
            return ("storage", storage_type, obj.key, "cpu", obj.array.size)
        return None

    def reducer_override(self, obj):
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        array = np.ascontiguousarray(obj, dtype="<f4")
        storage = _Storage(str(len(self.storages)), array)
        self.storages.append(storage)
        strides = tuple(int(s) // 4 for s in array.strides)
        args = (storage, 0, tuple(int(n) for n in array.shape), strides, False, collections.OrderedDict())
        return _Global("torch._utils", "_rebuild_tensor_v2"), args

    def _save_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global


def save_pth(path, obj):
    """Writes `obj` (dicts of float32 numpy arrays and plain values) as torch.save would."""
    data = io.BytesIO()
    pickler = _TorchPickler(data)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data.getvalue())
        archive.writestr("archive/byteorder", "little")
        for storage in pickler.storages:
            archive.writestr(f"archive/data/{storage.key}", storage.array.tobytes())
        archive.writestr("archive/version", "3\n")


def test_the_writer_writes_what_pytorch_reads(tmp_path):
    torch = pytest.importorskip("torch")
    state_dict = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.ones(2, np.float32)}
    save_pth(tmp_path / "x.pth", {"epoch": 3, "state_dict": state_dict})
    loaded = torch.load(tmp_path / "x.pth", weights_only=True)
    assert loaded["epoch"] == 3
    for name, value in state_dict.items():
        np.testing.assert_array_equal(loaded["state_dict"][name].numpy(), value)
    assert list(load_state_dict(tmp_path / "x.pth")) == list(state_dict)


# ---- Tiny authors' models ------------------------------------------------------------------


def randomise(model, seed=0):
    """Random values in every weight, positive ones in the BatchNorm variances."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.normal(0, 0.1, size=variable.shape)
        if "variance" in variable.path:
            value = rng.uniform(0.5, 2, size=variable.shape)
        variable.assign(value.astype(variable.dtype))


def with_gru_aliases(state_dict):
    """The authors' ConvGRUs register their cell twice (`cell_list.0` and `ConvGRUCell_00`)."""
    aliases = {
        name.replace("ConvGRUCell_00", "cell_list.0"): value
        for name, value in state_dict.items() if "ConvGRUCell_00" in name
    }
    return {**state_dict, **aliases}


def tiny_dpc():
    model = dpc_model.DensePredictiveCoding(resolution=32, num_blocks=4, block_length=2, pred_step=2)
    randomise(model)
    return with_gru_aliases(keras_to_torch_state_dict(model, dpc_family.dpc_rnn_table(model)))


def tiny_memdpc():
    model = memdpc_model.MemoryAugmentedDPC(resolution=32, num_blocks=4, block_length=2, pred_step=2, mem_size=7)
    randomise(model)
    return with_gru_aliases(keras_to_torch_state_dict(model, dpc_family.memdpc_bd_table(model)))


def tiny_memdpc_lc():
    model = memdpc_model.MemoryAugmentedDPC(resolution=32, num_blocks=4, block_length=2, pred_step=2)
    head = layers.ClassificationHead(5, name="head")
    head.build((None, 512))
    classifier = importer.LinearClassifier(dpc_model.lc_encoder(model.encoder), head)
    randomise(classifier)
    return with_gru_aliases(keras_to_torch_state_dict(classifier, dpc_family.lc_table(classifier.encoder)))


def tiny_vcop():
    model = vcop_model.ClipOrderPrediction(backbone="r3d", clip_length=4, resolution=32)
    randomise(model)
    return keras_to_torch_state_dict(model, vcop_pace.vcop_table(model))


def tiny_pace():
    model = pace_model.PacePrediction(backbone="r3d", clip_length=4, resolution=32, num_paces=3)
    randomise(model)
    return keras_to_torch_state_dict(model, vcop_pace.pace_table(model))


def run_convert(args):
    return subprocess.run(
        [sys.executable, "-m", "tfvssl.convert", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
        check=False,
    )


def convert(tmp_path, kind, state_dict, sizes, wrap=True):
    """Saves `state_dict` as the authors' training scripts do (a DataParallel state dict in a
    dict with the epoch, when `wrap`) and converts it; returns the workdir."""
    path = str(tmp_path / f"{kind}.pth.tar")
    if wrap:
        save_pth(path, {"epoch": 10, "state_dict": {f"module.{k}": v for k, v in state_dict.items()}})
    else:
        save_pth(path, state_dict)
    workdir = str(tmp_path / kind)
    result = run_convert([f"--checkpoint={path}", f"--model={kind}", f"--workdir={workdir}", *sizes])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == workdir
    return workdir


def restore(workdir, method=None):
    """The method of a workdir (default: its flags.txt) and its model restored as
    `--init_from` does."""
    method = method or workdirs.load_method(workdir)
    model = method.build_model()
    checkpoint.load_weights(model, workdir)
    return method, model


def assert_same_tensors(ours, theirs):
    theirs = {name: value for name, value in theirs.items() if ".cell_list.0." not in name}
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


# ---- Conversions -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dpc_run(tmp_path_factory):
    """A converted DPC pre-training checkpoint: (workdir, its state dict)."""
    state_dict = tiny_dpc()
    return convert(tmp_path_factory.mktemp("dpc"), "dpc", state_dict, DPC_SIZES), state_dict


def test_dpc_round_trip(dpc_run):
    workdir, state_dict = dpc_run
    method, model = restore(workdir)
    assert (method.name, method.config.backbone, method.config.batch_stats_bn) == ("dpc", "r2d3d18", True)
    assert_same_tensors(keras_to_torch_state_dict(model, dpc_family.dpc_rnn_table(model)), state_dict)
    # The authors' pre-training BatchNorm keeps no statistics: ours keep their 0 and 1.
    bn = model.encoder.backbone.get_layer("bn1")
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), 1)


def test_dpc_workdir_is_what_export_reads(dpc_run):
    workdir, state_dict = dpc_run
    method = workdirs.load_method(workdir)
    encoder, path = workdirs.restore_encoder(method, workdir)
    assert path.endswith("ckpt-0")
    kernel = encoder.backbone.get_layer("conv1").kernel.numpy()
    np.testing.assert_array_equal(kernel, np.transpose(state_dict["backbone.conv1.weight"], (2, 3, 4, 1, 0)))


def test_dpc_workdir_initialises_pretraining(dpc_run, tiny_dataset, tmp_path):
    from tfvssl import pretrain
    from tfvssl.train import trainer

    converted, _ = dpc_run
    workdir = str(tmp_path / "run")
    with flagsaver.flagsaver():
        FLAGS([
            "pretrain", "--flagfile=configs/dpc.flags", f"--data={tiny_dataset}", f"--workdir={workdir}",
            *TINY_DPC_FLAGS, "--train_steps=1", "--val_split=none", f"--init_from={converted}",
            # Another optimizer than the recipe's: only the weights are read.
            "--optimizer=sgd", "--grad_accum_steps=2", "--lr_schedule=constant", "--lr=0",
        ])
        method, config = pretrain.effective_config()
        trainer.train(method, config, workdir)
    # With a learning rate of 0 the trained kernels are the converted ones.
    method, initial = restore(converted)
    _, trained = restore(workdir, method)
    for before, after in zip(initial.trainable_weights, trained.trainable_weights):
        np.testing.assert_array_equal(after.numpy(), before.numpy(), err_msg=after.path)


def test_memdpc_round_trip(tmp_path):
    state_dict = tiny_memdpc()
    workdir = convert(tmp_path, "memdpc", state_dict, DPC_SIZES, wrap=False)
    method, model = restore(workdir)
    assert (method.config.mem_size, method.config.batch_stats_bn) == (7, False)
    assert_same_tensors(keras_to_torch_state_dict(model, dpc_family.memdpc_bd_table(model)), state_dict)


def test_memdpc_classifier_round_trip_and_classifier_keras(tmp_path):
    state_dict = tiny_memdpc_lc()
    workdir = convert(tmp_path, "memdpc_lc", state_dict, DPC_SIZES)
    method, model = restore(workdir)
    saved = keras.saving.load_model(os.path.join(workdir, "classifier.keras"))
    classifier = importer.LinearClassifier(dpc_model.lc_encoder(model.encoder), saved.get_layer("head"))
    assert_same_tensors(keras_to_torch_state_dict(classifier, dpc_family.lc_table(classifier.encoder)), state_dict)
    # classifier.keras is the authors' LC: inference on the running statistics.
    clips = np.random.default_rng(1).normal(size=(2, *method.clip_shape())).astype("float32")
    np.testing.assert_allclose(saved(clips), classifier(clips, training=False), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["vcop", "pace"])
def test_clip_model_round_trip(tmp_path, kind):
    state_dict = tiny_vcop() if kind == "vcop" else tiny_pace()
    workdir = convert(tmp_path, kind, state_dict, CLIP_SIZES)
    method, model = restore(workdir)
    assert method.config.backbone == "r3d"
    if kind == "vcop":
        assert method.config.tuple_length == 3
        table = vcop_pace.vcop_table(model)
    else:
        assert (method.config.paces, method.config.pace_bgr) == (["1", "2", "3"], True)
        table = vcop_pace.pace_table(model)
    assert_same_tensors(keras_to_torch_state_dict(model, table), state_dict)


def test_converted_reference_classifier_reproduces_its_logits(fixture_dir, tmp_path):
    # The DPC classifier fixture (running-statistics BatchNorm, ConvGRU aliases), saved as the
    # authors' fine-tuning saves it, converted: classifier.keras gives the reference's logits.
    folder = fixture_dir("dpc_lc_resnet18")
    state_dict = dict(np.load(os.path.join(folder, "weights.npz")))
    io_arrays = dict(np.load(os.path.join(folder, "io.npz")))
    workdir = convert(tmp_path, "dpc_lc", state_dict, ["--resolution=64", "--num_blocks=5"])
    classifier = keras.saving.load_model(os.path.join(workdir, "classifier.keras"))
    blocks = io_arrays["input"]  # [B, N, C, L, H, W]
    clips = np.transpose(blocks, (0, 1, 3, 4, 5, 2)).reshape(2, 25, 64, 64, 3)
    reference = io_arrays["output"][:, 0]
    error = np.max(np.abs(classifier(clips, training=False).numpy() - reference))
    assert error <= 1e-4 * max(1.0, np.max(np.abs(reference)))


# ---- Refusals -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vcop_state_dict():
    return tiny_vcop()


def assert_refused(tmp_path, state_dict, message, args=("--model=vcop", *CLIP_SIZES)):
    path = str(tmp_path / "bad.pth")
    if state_dict is not None:
        save_pth(path, state_dict)
    workdir = str(tmp_path / "out")
    result = run_convert([f"--checkpoint={path}", f"--workdir={workdir}", *args])
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    for written in ("ckpt", "flags.txt"):
        assert not os.path.exists(os.path.join(workdir, written))


def test_refuses_a_missing_tensor(tmp_path, vcop_state_dict):
    name = "base_network.conv5.block1.bn2.weight"
    state_dict = {k: v for k, v in vcop_state_dict.items() if k != name}
    assert_refused(tmp_path, state_dict, f"(no PyTorch tensor '{name}')")


def test_refuses_an_extra_tensor(tmp_path, vcop_state_dict):
    state_dict = {**vcop_state_dict, "base_network.conv6.weight": np.zeros((4, 4), np.float32)}
    assert_refused(tmp_path, state_dict, "PyTorch tensors not mapped by any rule: 'base_network.conv6.weight'")


def test_refuses_a_mis_shaped_tensor(tmp_path, vcop_state_dict):
    state_dict = {**vcop_state_dict, "fc7.weight": np.zeros((512, 999), np.float32)}
    assert_refused(tmp_path, state_dict, "PyTorch tensor 'fc7.weight' of shape (512, 999) does not fit")


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"certainly not a pickle")
    assert_refused(tmp_path, None, "bad.pth: not a PyTorch checkpoint written by torch.save")


def test_refuses_flags_the_weights_contradict(tmp_path, vcop_state_dict):
    assert_refused(
        tmp_path, vcop_state_dict, "--backbone=c3d: the checkpoint holds --backbone=r3d",
        args=("--model=vcop", "--backbone=c3d", *CLIP_SIZES),
    )


# ---- What the state dict tells ---------------------------------------------------------------


def test_every_backbone_is_told_by_its_tensor_names():
    import gzip
    import json

    with gzip.open(os.path.join(os.path.dirname(__file__), "data", "state_dict_shapes.json.gz")) as f:
        shapes = json.load(f)  # The authors' state dict names of each backbone.
    for name, names in shapes.items():
        kind = "dpc" if name.startswith("r2d3d") else "pace"
        prefix = importer.MODELS[kind].backbone_prefix
        if name in importer.MODELS[kind].backbones:
            assert importer.detect_backbone(kind, {prefix + n: None for n in names}) == name


def test_authors_sizes_and_flow_input_of_memdpc():
    state_dict = {
        "backbone.conv1.weight": np.zeros((64, 2, 1, 7, 7)), "backbone.layer1.2.conv1.weight": np.zeros(1),
        "backbone.bn1.running_mean": np.zeros(64), "mb": np.zeros((1024, 256)),
    }
    inferred = importer.infer_flags("memdpc", state_dict)
    values = {name: found.value for name, found in inferred.items()}
    assert values == {
        "method": "memdpc", "backbone": "r2d3d34", "resolution": 224, "modality": "flow",
        "batch_stats_bn": False, "mem_size": 1024,
    }
    assert not inferred["resolution"].fixed and inferred["modality"].fixed
