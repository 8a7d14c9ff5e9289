"""Reading torch.save files without PyTorch, on checkpoints PyTorch wrote (see data/README.md)."""

import collections
import os
import pickle
import zipfile

import numpy as np
import pytest

from tfvssl.convert import CheckpointNamespace, load_checkpoint, load_state_dict

DATA = os.path.join(os.path.dirname(__file__), "data")

# The state dict of `Tiny` in make_checkpoints.py, in PyTorch layouts and dtypes.
TINY = {
    "conv.weight": np.arange(24, dtype=np.float32).reshape(3, 2, 1, 2, 2) / 8,
    "conv.bias": np.array([-1, 0, 1], np.float32),
    "bn.weight": np.array([1, 2, 3], np.float32),
    "bn.bias": np.array([0.5, 0.25, 0.125], np.float32),
    "bn.running_mean": np.array([0.1, 0.2, 0.3], np.float32),
    "bn.running_var": np.array([1, 4, 9], np.float32),
    "bn.num_batches_tracked": np.array(5, np.int64),
    "fc.weight": np.array([[0, 2, 4], [1, 3, 5]], np.float32),  # saved with strides (1, 2)
    "fc.bias": np.array([-0.5, 0.5], np.float32),
}
EXTRAS = {
    "half": np.array([0.5, -1.25, 3.0], np.float16),
    "bf16": np.array([1.5, -2.0, 0.0078125], np.float32),  # bfloat16 in the file
    "shared": np.arange(10, dtype=np.float32),
    "slice": np.array([4, 5, 6], np.float32),  # offset 4 into the storage of "shared"
}


def _assert_same(state_dict, expected):
    assert list(state_dict) == list(expected)
    for name, value in expected.items():
        assert state_dict[name].dtype == value.dtype, name
        assert state_dict[name].shape == value.shape, name
        np.testing.assert_array_equal(state_dict[name], value, err_msg=name)


def test_zip_format_plain_state_dict():
    _assert_same(load_state_dict(os.path.join(DATA, "plain_zip.pt")), TINY)


@pytest.mark.parametrize("name", ["wrapped_zip.pth", "wrapped_legacy.pth.tar"])
def test_wrapped_data_parallel_checkpoint(name):
    # {"epoch", "state_dict" with "module." names, "optimizer", ...}, zip and legacy format.
    _assert_same(load_state_dict(os.path.join(DATA, name)), TINY | EXTRAS)


@pytest.mark.parametrize("name", ["wrapped_zip.pth", "wrapped_legacy.pth.tar"])
def test_whole_checkpoint_object(name):
    checkpoint = load_checkpoint(os.path.join(DATA, name))
    assert checkpoint["epoch"] == 7
    assert isinstance(checkpoint["state_dict"], collections.OrderedDict)
    assert list(checkpoint["state_dict"])[0] == "module.conv.weight"
    assert checkpoint["best_acc"] == np.float64(0.625) and isinstance(checkpoint["best_acc"], np.float64)
    assert isinstance(checkpoint["args"], CheckpointNamespace)
    assert (checkpoint["args"].lr, checkpoint["args"].net) == (0.001, "r3d")
    optimizer = checkpoint["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == 0.5
    assert optimizer["param_groups"][0]["params"] == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(optimizer["state"][4]["momentum_buffer"], np.ones((2, 3), np.float32))


def test_arrays_are_contiguous_copies():
    state_dict = load_state_dict(os.path.join(DATA, "wrapped_legacy.pth.tar"))
    assert state_dict["fc.weight"].flags.c_contiguous
    state_dict["shared"][5] = -1  # must not show through the slice of the same storage
    assert state_dict["slice"][1] == 5


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pth: the file is empty"):
        load_state_dict(path)


@pytest.mark.parametrize(
    "content",
    [b"epoch,loss\n1,0.5\n", b"\x93NUMPY\x01\x00", pickle.dumps({"weight": [1.0, 2.0]}, protocol=2)],
    ids=["text", "npy", "plain-pickle"],
)
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"model\.pth: not a PyTorch checkpoint written by torch\.save"):
        load_state_dict(path)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/readme.txt", "hello")
    with pytest.raises(ValueError, match=r"archive\.pth: a zip file without <archive>/data\.pkl"):
        load_state_dict(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_to_run_code(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"state_dict": _RunsCode()}, protocol=2))
    with pytest.raises(ValueError, match=r"evil\.pth: refusing to unpickle (posix|nt)\.system"):
        load_state_dict(path)


def test_no_state_dict_inside(tmp_path):
    path = tmp_path / "meta.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("meta/data.pkl", pickle.dumps({"epoch": 3, "net": "resnet18"}, protocol=2))
    with pytest.raises(ValueError, match=r"meta\.pth: no state dict found .* holds \['epoch', 'net'\]"):
        load_state_dict(path)


def test_truncated_legacy_file(tmp_path):
    data = open(os.path.join(DATA, "wrapped_legacy.pth.tar"), "rb").read()
    path = tmp_path / "cut.pth.tar"
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"cut\.pth\.tar: damaged or truncated"):
        load_state_dict(path)
