"""Safe reading of official checkpoint containers and our own safetensors files.

Nothing here runs code from a weight file. PyTorch zip archives (`.pth`, Lightning `.ckpt`) are
read with a restricted unpickler that rebuilds tensors and plain containers only: any other global
becomes an inert stand-in that can be stored or used as a dictionary key (Lightning and omegaconf
objects in a `.ckpt`, the `__torch__` module classes of a TorchScript archive) but never called.
TorchScript archives (IOPaint's `big-lama.pt`) are read the same way: their module tree is
unpickled into stand-ins and only the tensors are kept; their code is never compiled or run.
Legacy (pre-zip) archives go through `torch.load(weights_only=True)`. This module knows nothing
of HTTP or caches.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from inpaint_cli.atomic import atomic_path
from inpaint_cli.errors import CheckpointError, OutputError

INPAINT_FORMAT = "inpaint"
INPAINT_FORMAT_VERSION = "1"
SAFETENSORS_SUFFIX = ".safetensors"

TORCHSCRIPT_WRAPPER = "model."
# Containers that wrap a state dict: Lightning (`state_dict`), PConv U-Net (`model`), DeepFill v2 port (`G`),
# BOPBtL's scratch detector (`model_state`, beside training state that is ignored).
STATE_DICT_ENTRIES = ("state_dict", "model", "G", "model_state")

_STORAGE_DTYPES = {
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


@dataclass
class Checkpoint:
    """Tensors read from a weight file, plus what the file says about itself."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    """Our safetensors `__metadata__` (family, variant, config as JSON, ...); empty for official files."""
    path: Path | None = None

    @property
    def is_converted(self) -> bool:
        return self.metadata.get("format") == INPAINT_FORMAT

    @property
    def config(self) -> dict[str, Any] | None:
        """The metadata's config as a JSON object (its fields are checked by the family's config)."""
        raw = self.metadata.get("config")
        if not raw:
            return None
        try:
            config = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(
                f"invalid config in the metadata: not JSON ({exc})", path=self.path
            ) from None
        if not isinstance(config, dict):
            raise CheckpointError(
                f"invalid config in the metadata: a JSON {type(config).__name__}, not an object",
                path=self.path,
            )
        return config


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


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
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
    """Unpickler of torch zip archives that resolves only tensor-building globals.

    `load_storage(key, dtype, numel)` returns the flat tensor of one storage record.
    """

    def __init__(self, file: Any, load_storage: Any) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _foreign_class(module, name)

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        dtype = storage_type if isinstance(storage_type, torch.dtype) else torch.uint8
        if key not in self._storages:
            self._storages[key] = self._load_storage(str(key), dtype, int(numel))
        return self._storages[key]


def _zip_prefix(archive: zipfile.ZipFile, pickle_name: str) -> str:
    for name in archive.namelist():
        if name.endswith("/" + pickle_name) and name.count("/") == 1:
            return name[: -len(pickle_name)]
    raise CheckpointError(f"not a PyTorch archive (no {pickle_name})")


def read_torch_archive(path: Path, pickle_name: str = "data.pkl") -> Any:
    """Unpickle one record of a torch zip archive with the restricted unpickler."""
    with zipfile.ZipFile(path) as archive:
        prefix = _zip_prefix(archive, pickle_name)
        byteorder = "little"
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        if byteorder != "little":
            raise CheckpointError("big-endian archives are not supported", path=path)

        def load_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            raw = bytearray(archive.read(f"{prefix}data/{key}"))
            flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            return flat.view(dtype)[:numel] if numel else flat.view(dtype)

        with archive.open(prefix + pickle_name) as record:
            return RestrictedUnpickler(record, load_storage).load()


def is_torchscript(archive: zipfile.ZipFile) -> bool:
    """TorchScript archives hold compiled code and a constants record next to `data.pkl`."""
    names = archive.namelist()
    return any(n.endswith("/constants.pkl") and n.count("/") == 1 for n in names) and any(
        "/code/" in n for n in names
    )


def _module_tensors(module: ForeignObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and buffers of an unpickled TorchScript module tree, by dotted state-dict name."""
    state = getattr(module, "_state", None)
    tensors: dict[str, torch.Tensor] = {}
    if not isinstance(state, Mapping):
        return tensors
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[prefix + name] = value
        elif isinstance(value, ForeignObject):
            tensors.update(_module_tensors(value, f"{prefix}{name}."))
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


def detect_format(path: Path) -> str:
    """What kind of container a file is: `safetensors`, `torchscript`, `torch` (a `torch.save` archive,
    zip or legacy) or `zip` (any other zip, e.g. an official release archive holding a checkpoint)."""
    if path.suffix == SAFETENSORS_SUFFIX:
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if is_torchscript(archive):
                return "torchscript"
            names = archive.namelist()
            if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names):
                return "torch"
        return "zip"
    return "torch"


def _read_legacy_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a page of advice to load the file unsafely; keep only the culprit.
        culprit = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        reason = f"refusing to call {culprit.group(1)}" if culprit else str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"refused to unpickle: {reason}: weight files may not run code", path=path
        ) from None


def unwrap_state_dict(obj: Any, path: Path | None = None) -> dict[str, torch.Tensor]:
    """Find the state dict inside a container (`state_dict`, `model`, `G`, or a bare mapping)."""
    if isinstance(obj, Mapping):
        for entry in STATE_DICT_ENTRIES:
            if isinstance(obj.get(entry), Mapping):
                return unwrap_state_dict(obj[entry], path)
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(
        "no state dict found (expected tensors under 'state_dict', 'model' or 'G')", path=path
    )


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read tensors from `.safetensors`, a torch zip archive or a legacy torch file, safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such file", path=path)
    if path.stat().st_size == 0:
        raise CheckpointError("file is empty", path=path)
    if path.suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                torchscript = is_torchscript(archive)
            obj = read_torchscript(path) if torchscript else read_torch_archive(path)
        else:
            obj = _read_legacy_torch(path)
    except CheckpointError as exc:
        exc.path = exc.path or path
        raise CheckpointError(exc.what, path=path, hint=exc.hint) from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refused to unpickle: {exc}", path=path) from None
    except (zipfile.BadZipFile, KeyError, EOFError, RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"corrupt or truncated checkpoint: {exc}", path=path) from None
    return Checkpoint(unwrap_state_dict(obj, path), path=path)


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupt or truncated safetensors file: {exc}", path=path) from None
    return Checkpoint(tensors, metadata, path)


def save_converted(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    *,
    family: str,
    variant: str,
    config: Mapping[str, Any] | Any,
    source_url: str = "",
    source_sha256: str = "",
    license: str = "",
) -> Path:
    """Write our safetensors file (architecture in the metadata) atomically.

    `config` is a mapping or a config dataclass (stored as the JSON of its fields).
    """
    path = Path(path)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    metadata = {
        "format": INPAINT_FORMAT,
        "inpaint_format_version": INPAINT_FORMAT_VERSION,
        "family": family,
        "variant": variant,
        "config": json.dumps(dict(config), sort_keys=True),
        "source_url": source_url,
        "source_sha256": source_sha256,
        "license": license,
    }
    # Cloned: tensors read from an archive may share one storage, which safetensors refuses.
    tensors = {
        key: value.detach().cpu().clone(memory_format=torch.contiguous_format)
        for key, value in state_dict.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except (OSError, SafetensorError) as exc:
        raise OutputError(
            f"cannot write the converted weights: {exc}",
            path=path,
            hint="free some disk space, or choose another folder (INPAINT_HOME moves the model cache)",
        ) from None
    return path
