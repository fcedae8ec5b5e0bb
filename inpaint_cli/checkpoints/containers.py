"""Safe reading of official checkpoint containers and our own safetensors files.

Nothing here runs code from a weight file or allocates more than the file holds: PyTorch's own
containers (zip archives, TorchScript, legacy files) are read by `torch_archives` with a
restricted unpickler; safetensors files declare exact tensor extents, which the library checks
against the file. Every problem with a file becomes one `CheckpointError` line. This module
knows nothing of HTTP, caches or model families.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from inpaint_cli.checkpoints.torch_archives import (
    MAX_NESTING,
    ForeignObject,
    RestrictedUnpickler,
    is_torchscript,
    read_legacy_torch,
    read_torch_archive,
    read_torchscript,
)
from inpaint_cli.errors import CheckpointError, OutputError
from inpaint_cli.files.atomic import atomic_path

__all__ = [
    "Checkpoint",
    "ForeignObject",
    "RestrictedUnpickler",
    "detect_format",
    "read_checkpoint",
    "save_converted",
    "unwrap_state_dict",
]

INPAINT_FORMAT = "inpaint"
INPAINT_FORMAT_VERSION = "1"
SAFETENSORS_SUFFIX = ".safetensors"
SAFETENSORS_FORMAT = "safetensors"
"""The manifest's name for the format (a source's `format`)."""
ZIP_SIGNATURE = b"PK\x03\x04"
"""A zip archive's first local header; its directory is at the end, so a truncated one is unreadable."""

# Containers that wrap a state dict: Lightning (`state_dict`), PConv U-Net (`model`), DeepFill v2 port (`G`),
# BOPBtL's scratch detector (`model_state`, beside training state that is ignored).
STATE_DICT_ENTRIES = ("state_dict", "model", "G", "model_state")
READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    KeyError,
    EOFError,
    RuntimeError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    OverflowError,
    RecursionError,
    UnicodeDecodeError,
    struct.error,
    OSError,
)
"""What a malformed container can make the readers raise (a REDUCE on a dtype is a TypeError, an
unhashable set member too); each becomes one line, never a traceback."""


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


def unwrap_state_dict(obj: Any, path: Path | None = None, depth: int = 0) -> dict[str, torch.Tensor]:
    """Find the state dict inside a container (`state_dict`, `model`, `G`, or a bare mapping)."""
    if depth > MAX_NESTING:
        raise CheckpointError(
            f"containers nested more than {MAX_NESTING} deep (or containing themselves)", path=path
        )
    if isinstance(obj, Mapping):
        for entry in STATE_DICT_ENTRIES:
            if isinstance(obj.get(entry), Mapping):
                return unwrap_state_dict(obj[entry], path, depth + 1)
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(
        "no state dict found (expected tensors under 'state_dict', 'model' or 'G')", path=path
    )


def read_checkpoint(path: str | Path, source_format: str | None = None) -> Checkpoint:
    """Read tensors from safetensors, a torch zip archive or a legacy torch file, safely.

    A file is safetensors if its name ends in `.safetensors` or its manifest source says so
    (`source_format`: a download's name comes from its URL, which need not show the format).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such file", path=path)
    if path.stat().st_size == 0:
        raise CheckpointError("file is empty", path=path)
    if path.suffix == SAFETENSORS_SUFFIX or source_format == SAFETENSORS_FORMAT:
        return _read_safetensors(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                torchscript = is_torchscript(archive)
            obj = read_torchscript(path) if torchscript else read_torch_archive(path)
        elif _starts_like_zip(path):
            raise CheckpointError("corrupt or truncated checkpoint: a zip archive without its directory")
        else:
            obj = read_legacy_torch(path)
        state_dict = unwrap_state_dict(obj, path)
    except CheckpointError as exc:
        raise CheckpointError(exc.what, path=path, hint=exc.hint) from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refused to unpickle: {_first_line(exc)}", path=path) from None
    except READ_ERRORS as exc:
        raise CheckpointError(f"corrupt or truncated checkpoint: {_first_line(exc)}", path=path) from None
    return Checkpoint(state_dict, path=path)


def _starts_like_zip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(ZIP_SIGNATURE)) == ZIP_SIGNATURE


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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
