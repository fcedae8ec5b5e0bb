"""PyTorch's own containers, read without running code and without trusting declared sizes.

PyTorch zip archives (`.pth`, Lightning `.ckpt`), TorchScript archives and legacy (pre-zip)
`torch.save` files are unpickled with a restricted unpickler that rebuilds tensors and plain
containers only: any other global becomes an inert stand-in that can be stored or used as a
dictionary key (Lightning and omegaconf objects in a `.ckpt`, the `__torch__` module classes of a
TorchScript archive) but never called. TorchScript code is never compiled or run.

Nothing is allocated on a file's word: a zip member may not inflate beyond a ratio of its
compressed size (deflate bombs), a storage may not declare more bytes than its record holds, the
storages of a legacy file together not more than the file's size, and a tensor may not have more
elements than its storage (stride-0 views that would make a few bytes look like a large tensor).
"""

from __future__ import annotations

import _compat_pickle
import collections
import math
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from inpaint_cli.errors import CheckpointError

TORCHSCRIPT_WRAPPER = "model."
MAX_COMPRESSION_RATIO = 16
"""A zip member may inflate to at most this many times its compressed size (weights compress by
about 1.1; torch itself stores them uncompressed), beyond a small allowance."""
COMPRESSION_ALLOWANCE = 1 << 20
"""Members up to this size may have any ratio (a pickle record of repeated names compresses well)."""
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
LEGACY_COUNT_BYTES = 8
"""Each storage of a legacy file is preceded by its element count as a little-endian int64."""
MAX_NESTING = 16
"""Containers nested deeper than this (or containing themselves) are not state dicts."""

STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

LoadStorage = Callable[[str, torch.dtype, int], torch.Tensor]
"""(storage key, dtype, element count) -> the storage as a flat tensor."""


class ForeignObject:
    """Inert stand-in for an object of a class the unpickler does not trust.

    It can be created without arguments (pickle's NEWOBJ) and given state (BUILD), which is all
    an omegaconf container or a Lightning callback in a checkpoint needs. Calling the class with
    arguments (pickle's REDUCE, the route every code-execution exploit takes) is refused.
    """

    qualified_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> ForeignObject:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to call {self.qualified_name}: weight files may not run code")

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_state", state)

    def __repr__(self) -> str:
        return f"<{self.qualified_name} (not loaded)>"


def _foreign_class(module: str, name: str) -> type[ForeignObject]:
    qualified = f"{module}.{name}"
    return type(name, (ForeignObject,), {"qualified_name": qualified, "__module__": "inpaint_cli.foreign"})


def _whole_numbers(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple | list | torch.Size) or not all(
        type(v) is int and v >= 0 for v in values
    ):
        raise pickle.UnpicklingError(f"a tensor {what} is not a list of whole numbers")
    return tuple(values)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    """A view of a storage, if it lies inside the storage and repeats none of its elements."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor without a storage")
    shape, steps = _whole_numbers(size, "shape"), _whole_numbers(stride, "stride")
    if type(offset) is not int or offset < 0 or len(shape) != len(steps):
        raise pickle.UnpicklingError("a tensor with a malformed offset or stride")
    elements = math.prod(shape)
    if elements == 0:
        return torch.empty(shape, dtype=storage.dtype)
    available = storage.numel() - offset
    end = offset + sum((n - 1) * s for n, s in zip(shape, steps, strict=True)) + 1
    if end > storage.numel():
        raise pickle.UnpicklingError(
            f"a tensor of shape {list(shape)} reaches beyond its storage of {storage.numel()} elements"
        )
    if elements > available:
        # Only overlapping strides (stride 0, say) can do that: refused, never materialised.
        raise pickle.UnpicklingError(
            f"a tensor of shape {list(shape)} repeats the {available} elements of its storage"
        )
    return torch.as_strided(storage, shape, steps, offset)


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter without a tensor")
    return data


def _set_of(items: Any = ()) -> set:
    return set(items)


def _as_list(items: Any) -> list:
    return list(items)


def _drop_type_tag(value: Any, _type_name: str) -> Any:
    return value


# Everything a checkpoint may call while unpickling: tensor reconstruction and inert containers.
_ALLOWED_CALLABLES: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): _set_of,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
    # TorchScript tags typed lists and dicts with these; plain containers are what they hold.
    ("torch.jit._pickle", "build_intlist"): _as_list,
    ("torch.jit._pickle", "build_floatlist"): _as_list,
    ("torch.jit._pickle", "build_boollist"): _as_list,
    ("torch.jit._pickle", "build_doublelist"): _as_list,
    ("torch.jit._pickle", "build_tensorlist"): _as_list,
    ("torch.jit._pickle", "build_complexlist"): _as_list,
    ("torch.jit._pickle", "restore_type_tag"): _drop_type_tag,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of torch records that resolves only tensor-building globals.

    `load_storage(key, dtype, numel)` returns the flat tensor of one storage record; None refuses
    storages (the header records of a legacy file hold none).
    """

    def __init__(self, file: Any, load_storage: LoadStorage | None) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 (torch.save's default) writes Python 2 names: `__builtin__.set` is `builtins.set`.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _foreign_class(module, name)

    def persistent_load(self, pid: Any) -> torch.Tensor:
        """A storage: ('storage', type, key, location, numel) in zip archives; legacy files add a
        view (key, offset, numel) of the root storage, or None."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError("unsupported persistent id")
        if self._load_storage is None:
            raise pickle.UnpicklingError("a storage outside the tensor record")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        dtype = storage_type if isinstance(storage_type, torch.dtype) else torch.uint8
        if type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError(f"storage {key} has no valid size")
        if key not in self._storages:
            self._storages[key] = self._load_storage(key, dtype, numel)
        storage = self._storages[key]
        if storage.dtype != dtype or storage.numel() != numel:
            raise pickle.UnpicklingError(f"storage {key} is declared twice, differently")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        _view_key, offset, size = view
        if type(offset) is not int or type(size) is not int or not 0 <= offset <= offset + size <= numel:
            raise pickle.UnpicklingError(f"a view reaches beyond storage {key}")
        return storage[offset : offset + size]


# --- zip archives -----------------------------------------------------------------------------------


def _zip_prefix(archive: zipfile.ZipFile, pickle_name: str) -> str:
    for name in archive.namelist():
        if name.endswith("/" + pickle_name) and name.count("/") == 1:
            return name[: -len(pickle_name)]
    raise CheckpointError(f"not a PyTorch archive (no {pickle_name})")


def checked_member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """The entry of a member whose declared size is plausible for its compressed size."""
    info = archive.getinfo(name)
    limit = max(COMPRESSION_ALLOWANCE, MAX_COMPRESSION_RATIO * info.compress_size)
    if info.file_size > limit:
        raise CheckpointError(
            f"zip member {name} declares {info.file_size:,} bytes from {info.compress_size:,} compressed "
            f"(a zip bomb: more than {MAX_COMPRESSION_RATIO}x)"
        )
    return info


def _storage_bytes(dtype: torch.dtype, numel: int) -> int:
    return numel * torch.empty(0, dtype=dtype).element_size()


def read_torch_archive(path: Path, pickle_name: str = "data.pkl") -> Any:
    """Unpickle one record of a torch zip archive with the restricted unpickler."""
    with zipfile.ZipFile(path) as archive:
        prefix = _zip_prefix(archive, pickle_name)
        byteorder = "little"
        if prefix + "byteorder" in archive.namelist():
            checked_member(archive, prefix + "byteorder")
            byteorder = archive.read(prefix + "byteorder").decode(errors="replace").strip()
        if byteorder != "little":
            raise CheckpointError("big-endian archives are not supported", path=path)

        def load_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            member = f"{prefix}data/{key}"
            info = checked_member(archive, member)
            declared = _storage_bytes(dtype, numel)
            if declared > info.file_size:
                raise CheckpointError(
                    f"corrupt or truncated checkpoint: storage {key} declares {declared:,} bytes "
                    f"but holds {info.file_size:,}"
                )
            raw = bytearray(archive.read(member))
            flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            return flat[:declared].view(dtype)

        checked_member(archive, prefix + pickle_name)
        with archive.open(prefix + pickle_name) as record:
            return RestrictedUnpickler(record, load_storage).load()


def is_torchscript(archive: zipfile.ZipFile) -> bool:
    """TorchScript archives hold compiled code and a constants record next to `data.pkl`."""
    names = archive.namelist()
    return any(n.endswith("/constants.pkl") and n.count("/") == 1 for n in names) and any(
        "/code/" in n for n in names
    )


def _module_tensors(module: ForeignObject, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """Parameters and buffers of an unpickled TorchScript module tree, by dotted state-dict name."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"TorchScript modules nested more than {MAX_NESTING} deep")
    state = getattr(module, "_state", None)
    tensors: dict[str, torch.Tensor] = {}
    if not isinstance(state, Mapping):
        return tensors
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[f"{prefix}{name}"] = value
        elif isinstance(value, ForeignObject):
            tensors.update(_module_tensors(value, f"{prefix}{name}.", depth + 1))
    return tensors


def read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive's module tree, without running its code.

    A wrapper whose tensors all live under its `model` attribute is a container, like the `model`
    entry of a `.pth` dict: IOPaint's `big-lama.pt` traces such a wrapper around LaMa's training
    module, so its `model.generator.model.<i>...` tensors come out as `generator.model.<i>...`.
    """
    top = read_torch_archive(path)
    if not isinstance(top, ForeignObject):
        raise CheckpointError("TorchScript archive without a module record", path=path)
    tensors = _module_tensors(top)
    wrapped = {
        key[len(TORCHSCRIPT_WRAPPER) :]: v
        for key, v in tensors.items()
        if key.startswith(TORCHSCRIPT_WRAPPER)
    }
    return wrapped if wrapped and len(wrapped) == len(tensors) else tensors


# --- legacy (pre-zip) files -------------------------------------------------------------------------


def _header_record(handle: BinaryIO, first: bool = False) -> Any:
    """One of the small pickles before the tensor record; the first one tells what the file is."""
    try:
        return RestrictedUnpickler(handle, None).load()
    except pickle.UnpicklingError as exc:
        if "refusing to call" in str(exc) or not first:
            raise
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError):
        if not first:
            raise
    raise CheckpointError(
        "not a checkpoint: neither safetensors, a PyTorch zip archive nor a PyTorch file",
        hint="give the .pth/.ckpt/.pt/.safetensors file of the model",
    )


def read_legacy_torch(path: Path) -> Any:
    """A pre-zip `torch.save` file: magic number, protocol, system info, the tensor record, the
    storage keys, then each storage as an int64 element count and its bytes."""
    file_size = path.stat().st_size
    with path.open("rb") as handle:
        if _header_record(handle, first=True) != LEGACY_MAGIC:
            raise CheckpointError("a plain pickle, not a PyTorch checkpoint", hint="weights hold tensors")
        if _header_record(handle) != LEGACY_PROTOCOL:
            raise CheckpointError("an unsupported legacy PyTorch format")
        info = _header_record(handle)
        if isinstance(info, Mapping) and info.get("little_endian") is False:
            raise CheckpointError("big-endian checkpoints are not supported")
        declared = 0
        storages: dict[str, torch.Tensor] = {}

        def load_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            nonlocal declared
            declared += _storage_bytes(dtype, numel)
            if declared > file_size:
                raise CheckpointError(
                    f"corrupt or truncated checkpoint: its storages declare more than {declared:,} bytes "
                    f"in a file of {file_size:,}"
                )
            storages[key] = torch.empty(numel, dtype=dtype)
            return storages[key]

        result = RestrictedUnpickler(handle, load_storage).load()
        keys = _header_record(handle)
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
            raise CheckpointError("corrupt checkpoint: its storage list does not match its tensors")
        for key in map(str, keys):
            _fill_storage(handle, key, storages[key])
    return result


def _fill_storage(handle: BinaryIO, key: str, storage: torch.Tensor) -> None:
    count = int.from_bytes(handle.read(LEGACY_COUNT_BYTES), "little")
    if count != storage.numel():
        raise CheckpointError(
            f"corrupt or truncated checkpoint: storage {key} holds {count:,} elements, "
            f"not {storage.numel():,}"
        )
    raw = storage.view(torch.uint8).numpy() if storage.numel() else None
    if raw is not None and handle.readinto(memoryview(raw)) != raw.nbytes:
        raise CheckpointError(f"corrupt or truncated checkpoint: storage {key} ends early")
