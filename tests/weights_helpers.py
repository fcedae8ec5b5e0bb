"""Shared pieces of the weights tests: the compact LaMa fixture, a recording progress, temporary
manifests pointing at the 127.0.0.1 test server, and a fresh cache per test."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from inpaint_cli import weights
from inpaint_cli.checkpoints.containers import read_checkpoint

DATA = Path(__file__).resolve().parent / "data"
LAMA_CKPT = DATA / "lama" / "small.ckpt"
LAMA_CONFIG = json.loads((DATA / "lama" / "small_config.json").read_text())
LAMA_PREFIX = "generator."
CUT_AT = 300_000
"""Byte at which scripted connections drop: inside the 606 KB compact LaMa fixture."""


def lama_generator_state() -> dict[str, torch.Tensor]:
    """The fixture's 157 generator tensors in our layout (prefix stripped)."""
    state = read_checkpoint(LAMA_CKPT).state_dict
    return {k[len(LAMA_PREFIX) :]: v for k, v in state.items() if k.startswith(LAMA_PREFIX)}


class Notes:
    """A DownloadProgress that records everything it is told."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.starts: list[tuple[str, int | None, int]] = []
        self.advanced = 0

    def start(self, description: str, total: int | None, completed: int) -> None:
        self.starts.append((description, total, completed))

    def advance(self, nbytes: int) -> None:
        self.advanced += nbytes

    def stop(self) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source(url: str, data: bytes | None = None, fmt: str = "lightning-ckpt", **fields: Any) -> dict[str, Any]:
    """A manifest source; with `data`, its size and SHA-256 are published."""
    published = {"size": len(data), "sha256": sha256_of(data)} if data is not None else {}
    return {"url": url, "format": fmt, **published, **fields}


def write_manifest(path: Path, monkeypatch: pytest.MonkeyPatch, **models: list[dict[str, Any]]) -> Path:
    """A manifest whose models (lama family unless a source list says otherwise) point at the test server."""
    entries = {
        name: {
            "family": "lama",
            "variant": "small-fixture",
            "license": "Apache-2.0",
            "paper": "Suvorov et al., WACV 2022",
            "homepage": "https://github.com/advimman/lama",
            "sources": sources,
        }
        for name, sources in models.items()
    }
    path.write_text(json.dumps({"version": 1, "models": entries}))
    monkeypatch.setenv("INPAINT_MANIFEST", str(path))
    return path


def leftovers(cache: Path) -> list[str]:
    downloads = cache / weights.DOWNLOADS_DIR
    return sorted(p.name for p in downloads.iterdir()) if downloads.is_dir() else []


def assert_lama_converted(
    path: Path, expected: dict[str, torch.Tensor], source_url: str, source_sha: str
) -> None:
    checkpoint = read_checkpoint(path)
    assert checkpoint.metadata["family"] == "lama"
    assert checkpoint.metadata["variant"] == "small-fixture"
    assert checkpoint.metadata["source_url"] == source_url
    assert checkpoint.metadata["source_sha256"] == source_sha
    assert checkpoint.metadata["license"] == "Apache-2.0"
    assert checkpoint.config["n_blocks"] == LAMA_CONFIG["n_blocks"]
    assert checkpoint.config["ngf"] == LAMA_CONFIG["ngf"]
    assert checkpoint.state_dict.keys() == expected.keys()
    assert all(torch.equal(checkpoint.state_dict[k], v) for k, v in expected.items())


def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache and no environment leaking in from the developer's shell; returns the cache."""
    for variable in (
        "INPAINT_OFFLINE",
        "INPAINT_TIMEOUT",
        "INPAINT_MIN_RATE",
        "INPAINT_MAX_DOWNLOAD",
        "INPAINT_MANIFEST",
        "XDG_CACHE_HOME",
        "TORCH_HOME",
    ):
        monkeypatch.delenv(variable, raising=False)
    home = tmp_path / "cache"
    monkeypatch.setenv("INPAINT_HOME", str(home))
    return home
