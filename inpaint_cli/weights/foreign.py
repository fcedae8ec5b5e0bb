"""Official weight files other tools already downloaded (IOPaint, simple-lama: torch.hub's folder)."""

from __future__ import annotations

import os
from pathlib import Path

from inpaint_cli.weights.manifest import ModelEntry, load_manifest


def torch_hub_checkpoints_dir() -> Path:
    """torch.hub's download folder, where IOPaint and simple-lama keep `big-lama.pt`."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home).expanduser() / "hub" / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch" / "hub" / "checkpoints"


def model_for_file(path: Path, manifest: dict[str, ModelEntry] | None = None) -> str | None:
    """The named model whose official file has this file name, if any."""
    manifest = load_manifest() if manifest is None else manifest
    for entry in manifest.values():
        if any(not s.is_bundled and s.file_name == path.name for s in entry.sources):
            return entry.name
    return None


def find_foreign_checkpoints() -> list[Path]:
    """Official weight files other tools downloaded that `inpaint weights import` could use."""
    folder = torch_hub_checkpoints_dir()
    if not folder.is_dir():
        return []
    manifest = load_manifest()
    return sorted(p for p in folder.iterdir() if p.is_file() and model_for_file(p, manifest))
