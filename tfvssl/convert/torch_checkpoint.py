"""Reading `torch.save` checkpoints without PyTorch.

Both formats `torch.save` writes are read:

* the zip format (torch >= 1.6): `<archive>/data.pkl` holds the pickled object, whose
  tensors refer to storages `<archive>/data/<key>`; `<archive>/byteorder` gives their
  byte order (little-endian when absent);
* the legacy format (torch < 1.6, the one DPC, MemDPC and VCOP released): a pickled magic
  number, protocol version and system info, the pickled object, the pickled list of
  storage keys, then each storage as an int64 element count and its raw bytes.

Unpickling is restricted: only the classes and functions a checkpoint of tensors needs
(torch's tensor rebuild functions and storage types, `collections.OrderedDict`, numpy
scalars, an `argparse.Namespace` stand-in, ...) can be loaded, so a checkpoint cannot run
code. Tensors become numpy arrays of the storage's dtype (bfloat16 becomes float32,
exactly), contiguous, in PyTorch's layout.
"""

import argparse
import codecs
import collections
import pickle
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_BFLOAT16 = "bfloat16"

# `torch.<Name>Storage` -> numpy dtype of its elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}

# Where a state dict sits inside the usual checkpoint dicts, e.g.
# {"epoch": 10, "state_dict": ..., "optimizer": ...}.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


class CheckpointNamespace(argparse.Namespace):
    """Stands in for the `argparse.Namespace` of training arguments some checkpoints hold."""


class _StorageRef:
    """A storage (or, in legacy files, a slice of one) that tensors in the pickle refer to."""

    def __init__(self, key, offset=0, size=None):
        self.key, self.offset, self.size = key, offset, size


class _TensorRef:
    """A tensor view (offset, shape and strides in elements) of a storage."""

    def __init__(self, storage, offset, shape, strides):
        self.storage, self.offset = storage, offset
        self.shape, self.strides = tuple(shape), tuple(strides)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # Serves torch._utils._rebuild_tensor and _rebuild_tensor_v2 (which adds
    # requires_grad, backward_hooks and metadata, none of which matter here).
    del unused
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    del unused
    return data


def _rebuild_from_type_v2(function, new_type, args, state):
    # Tensor subclasses (e.g. a Parameter) are rebuilt as the plain tensor.
    del new_type, state
    return function(*args)


def _numpy_scalar(dtype, data=None):
    # What numpy pickles a scalar (e.g. a best accuracy) as: its dtype and raw bytes.
    return data if dtype.hasobject else np.frombuffer(data, dtype=dtype)[0]


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    # Only ever the type argument of _rebuild_from_type_v2, which ignores it.
    ("torch.nn.parameter", "Parameter"): None,
    ("argparse", "Namespace"): CheckpointNamespace,
    # Protocol 2 spells bytes objects as _codecs.encode(text, "latin1").
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _Unpickler(pickle.Unpickler):
    """Loads only what `_ALLOWED` lists; notes the storages the tensors refer to."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path
        self.storage_dtypes = {}  # storage key -> numpy dtype (or _BFLOAT16)

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise ValueError(
            f"{self.path}: refusing to unpickle {module}.{name}; a checkpoint of tensors never "
            "needs it (only state dicts and the usual dicts around them can be read)"
        )

    def persistent_load(self, pid):
        # Zip: ("storage", type, key, location, numel); legacy adds view metadata
        # (view key, offset, size) for storages that are slices of another.
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise ValueError(f"{self.path}: unknown persistent id {pid!r}")
        key = str(pid[2])
        self.storage_dtypes[key] = pid[1]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            _, offset, size = view
            return _StorageRef(key, offset, size)
        return _StorageRef(key)


def _storage_array(data, dtype, byteorder):
    """A flat numpy array from raw storage bytes."""
    if dtype == _BFLOAT16:
        # bfloat16 is the top half of a float32; widening it is exact.
        raw = np.frombuffer(data, np.dtype("<u2" if byteorder == "little" else ">u2"))
        return (raw.astype(np.uint32) << 16).view(np.float32)
    dtype = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))


def _tensor(ref, storages, path):
    """The numpy array of a `_TensorRef`: a contiguous copy, never sharing its storage."""
    flat = storages[ref.storage.key][ref.storage.offset:]
    if ref.storage.size is not None:
        flat = flat[: ref.storage.size]
    if 0 in ref.shape:
        return np.zeros(ref.shape, flat.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.strides))
    if ref.offset < 0 or min(ref.strides, default=0) < 0 or last >= flat.size:
        raise ValueError(f"{path}: a tensor reaches outside its storage {ref.storage.key!r}")
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], ref.shape, [s * flat.itemsize for s in ref.strides], writeable=False
    )
    return np.array(view, order="C")


def _materialise(obj, storages, path):
    """Replaces every `_TensorRef` inside dicts, lists, tuples and namespaces by its array."""
    if isinstance(obj, _TensorRef):
        return _tensor(obj, storages, path)
    if isinstance(obj, dict):
        return type(obj)((key, _materialise(value, storages, path)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(value, storages, path) for value in obj)
    if isinstance(obj, CheckpointNamespace):
        return CheckpointNamespace(**{k: _materialise(v, storages, path) for k, v in vars(obj).items()})
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
        if not pickles:
            raise ValueError(
                f"{path}: a zip file without <archive>/data.pkl is not a torch.save checkpoint"
            )
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{root}byteorder" in names:
            byteorder = archive.read(f"{root}byteorder").decode().strip()
        with archive.open(pickles[0]) as file:
            unpickler = _Unpickler(file, path)
            obj = unpickler.load()
        storages = {
            key: _storage_array(archive.read(f"{root}data/{key}"), dtype, byteorder)
            for key, dtype in unpickler.storage_dtypes.items()
        }
    return _materialise(obj, storages, path)


def _load_legacy(path):
    with open(path, "rb") as file:
        try:
            magic = _Unpickler(file, path).load()
        except Exception:  # Arbitrary bytes fail to unpickle in arbitrary ways.
            magic = None
        if magic != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch checkpoint written by torch.save")
        protocol = _Unpickler(file, path).load()
        if protocol != _LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy torch.save protocol {protocol!r}")
        sys_info = _Unpickler(file, path).load()
        byteorder = "little" if sys_info.get("little_endian", True) else "big"
        unpickler = _Unpickler(file, path)
        obj = unpickler.load()
        storages = {}
        for key in _Unpickler(file, path).load():
            # Each storage: its element count (int64), then its raw elements.
            dtype = unpickler.storage_dtypes[key]
            count = int(np.frombuffer(file.read(8), "<i8" if byteorder == "little" else ">i8")[0])
            size = count * (2 if dtype == _BFLOAT16 else np.dtype(dtype).itemsize)
            data = file.read(size)
            if len(data) != size:
                raise EOFError(f"storage {key!r} is incomplete")
            storages[key] = _storage_array(data, dtype, byteorder)
    return _materialise(obj, storages, path)


def load_checkpoint(path):
    """Reads a `torch.save` file: the saved object with every tensor as a numpy array.

    Args:
      path: a `.pth`, `.pth.tar` or `.pt` file, zip or legacy format.

    Returns:
      The unpickled object (usually a dict), tensors as contiguous numpy arrays in
      PyTorch's layout and dtype (bfloat16 as float32), `argparse.Namespace` as
      `CheckpointNamespace`.

    Raises:
      ValueError: naming the file, if it is empty, not a torch checkpoint, truncated, or
        holds objects other than tensors and plain containers.
    """
    path = str(path)
    with open(path, "rb") as file:
        if not file.read(1):
            raise ValueError(f"{path}: the file is empty, not a PyTorch checkpoint")
    try:
        return _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, IndexError) as error:
        raise ValueError(f"{path}: damaged or truncated torch.save checkpoint ({error!r})") from None


def load_state_dict(path):
    """Reads the state dict of a `torch.save` checkpoint, without PyTorch.

    The state dict is the saved object itself, or its `state_dict`, `model_state_dict`
    or `model` entry (as in `{"epoch": ..., "state_dict": ..., "optimizer": ...}`). A
    `module.` prefix that `nn.DataParallel` puts on every name is removed.

    Args:
      path: a `.pth`, `.pth.tar` or `.pt` file, zip or legacy format.

    Returns:
      `{name: np.ndarray}` in the saved order, PyTorch layouts (a Conv3d weight is
      `[out, in, kT, kH, kW]`), the saved dtypes (bfloat16 as float32).

    Raises:
      ValueError: naming the file, if it is not a torch checkpoint or holds no state dict.
    """
    obj = load_checkpoint(path)
    candidates = [obj] + [obj[key] for key in _STATE_DICT_KEYS if isinstance(obj, dict) and key in obj]
    for candidate in candidates:
        if _is_state_dict(candidate):
            state_dict = dict(candidate)
            if all(name.startswith("module.") for name in state_dict):
                state_dict = {name[len("module."):]: value for name, value in state_dict.items()}
            return state_dict
    found = list(obj) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
        f"{path}: no state dict found (looked at the object itself and its entries "
        f"{list(_STATE_DICT_KEYS)}; it holds {found})"
    )


def _is_state_dict(obj):
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(key, str) and isinstance(value, np.ndarray) for key, value in obj.items())
    )
