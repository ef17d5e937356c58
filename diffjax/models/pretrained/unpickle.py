"""A restricted reader of PyTorch pickles (EDM's network files), without torch and without running their code.

A plain ``pickle.load`` executes whatever the file names: EDM's files store each network class through
``torch_utils.persistence``, whose reconstructor ``exec``-utes Python source saved in the file. This reader
resolves only the few globals such a file needs and refuses every other one with :class:`UnsafePickleError`
before it is called:

* ``torch_utils.persistence._reconstruct_persistent_obj`` → a :class:`Persistent` record (class name, the saved
  module state: ``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, …); the saved source is *not*
  executed (its length is kept for the record);
* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` → NumPy arrays;
* ``torch.storage._load_from_bytes`` → the storage decoded from torch's legacy serialization format (read here
  with a second restricted unpickler that accepts only ``torch.*Storage`` type names);
* ``collections.OrderedDict``, ``dnnlib.util.EasyDict`` (a dict), torch dtypes and ``torch.device`` (as strings),
  NumPy's array/scalar reconstruction.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from typing import Any

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}
_TORCH_DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "float",
    "double",
    "half",
    "long",
    "int",
)


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global outside the allowed set (it could run code on load)."""


class Persistent:
    """What a ``torch_utils.persistence`` object holds: its class name and saved state (nothing is executed)."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
            raise pickle.UnpicklingError(f"malformed persistent-object record: {type(meta).__name__}")
        self.class_name = str(meta["class_name"])
        self.state = dict(meta.get("state") or {})
        self.source_chars = len(meta.get("module_src") or "")

    def __setstate__(self, state):  # a torch container module (ModuleDict, …) restored by NEWOBJ + BUILD
        self.state = dict(state) if isinstance(state, dict) else {}

    @property
    def init_kwargs(self) -> dict:
        """The keyword arguments the module was constructed with (recorded by EDM's persistence)."""
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def modules(self) -> "collections.OrderedDict[str, Any]":
        """The child modules by name, in order."""
        return self.state.get("_modules") or collections.OrderedDict()

    def attribute(self, name: str, default=None):
        """A plain attribute of the saved module (e.g. ``num_heads``)."""
        return self.state.get(name, default)

    def arrays(self, prefix: str = "") -> "collections.OrderedDict[str, np.ndarray]":
        """Every parameter and buffer of this module and its children, by dotted name, in module order."""
        out = collections.OrderedDict()
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    out[prefix + name] = value
        for name, child in self.modules.items():
            if isinstance(child, Persistent):
                out.update(child.arrays(f"{prefix}{name}."))
        return out

    def __repr__(self):
        return f"Persistent({self.class_name}, modules={list(self.modules)})"


_CONTAINERS = ("ModuleDict", "ModuleList", "Sequential", "ParameterDict", "ParameterList")


def _container(name: str):
    """A stand-in class for a torch container module: instances are :class:`Persistent` records of that name."""

    class Container(Persistent):
        def __new__(cls, *args):
            obj = object.__new__(Persistent)
            obj.class_name, obj.state, obj.source_chars = name, {}, 0
            return obj

    return Container


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
    u16 = np.frombuffer(raw, np.uint16).astype(np.uint32)
    return (u16 << 16).view(np.float32)


class _StorageUnpickler(pickle.Unpickler):
    """The legacy ``torch.save`` payload of one storage: only ``torch.<X>Storage`` names are resolved."""

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return ("storage-type", name)
        raise UnsafePickleError(f"storage payload names {module}.{name}, which a tensor storage never needs")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id in a storage payload: {pid!r:.80}")
        _, kind, key, _location, numel = pid[:5]
        self.found.append((kind[1], str(key), int(numel)))
        return ("storage", str(key))


def _load_storage(payload: bytes) -> np.ndarray:
    """Decode ``torch.storage._load_from_bytes``' argument (torch's legacy format) to a 1-D array."""
    f = io.BytesIO(payload)
    for what in ("magic number", "protocol version", "system info"):
        _StorageUnpickler(f).load()
    reader = _StorageUnpickler(f)
    reader.found = []
    reader.load()
    keys = _StorageUnpickler(f).load()
    if len(reader.found) != 1 or list(keys) != [reader.found[0][1]]:
        raise pickle.UnpicklingError("a storage payload must hold exactly one storage")
    kind, _, numel = reader.found[0]
    dtype = _STORAGE_DTYPES[kind]
    size = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    (count,) = struct.unpack("<q", f.read(8))
    if count != numel:
        raise pickle.UnpicklingError(f"storage declares {numel} elements but holds {count}")
    raw = f.read(count * size)
    if len(raw) != count * size:
        raise pickle.UnpicklingError("storage payload is truncated")
    return _bfloat16_to_float32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype).copy()


def _rebuild_tensor(storage, offset, size, stride, *_):
    storage = np.asarray(storage)
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not size:
        return storage[offset].copy()
    end = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else offset
    if offset < 0 or end > storage.size:
        raise pickle.UnpicklingError(f"tensor view {size}/{stride}@{offset} exceeds its storage of {storage.size}")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(st * item for st in stride), writeable=False)
    return np.array(view)


def _rebuild_parameter(data, *_):
    return data


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


def _allowed(module: str, name: str):
    table = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): Persistent,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch", "device"): str,
    }
    if (module, name) in table:
        return table[(module, name)]
    if module == "torch.nn.modules.container" and name in _CONTAINERS:
        return _container(name)
    if module == "torch" and name in _TORCH_DTYPES:
        return f"torch.{name}"
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray
        return getattr(multiarray, name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals of :func:`_allowed` (module docstring)."""

    def find_class(self, module, name):
        obj = _allowed(module, name)
        if obj is None:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: a network file needs only tensors, dicts and EDM's persistence "
                "records, and this global could run code. The file is not an EDM network pickle, or it was tampered "
                "with."
            )
        return obj

    def persistent_load(self, pid):
        """Refused: EDM's pickles hold no external references (torch.save's zip format does)."""
        raise UnsafePickleError(
            f"unexpected persistent id {pid!r:.80}: torch.save's zip format is not an EDM pickle "
            "(load it with torch and save the state dict as .npz)"
        )


def load(path: str) -> Any:
    """Read ``path`` with :class:`RestrictedUnpickler` (no code from the file runs)."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head[:2] == b"PK":
            raise pickle.UnpicklingError(f"{path}: a zip archive (torch.save's format), not a pickle of an EDM network")
        try:
            return RestrictedUnpickler(f).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error, AttributeError) as e:
            raise pickle.UnpicklingError(f"{path}: not a readable network pickle ({type(e).__name__}: {e})") from None
