"""Fixtures several test modules share (none is autouse: a module asks for what it needs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import LocalServer

# Ray binds a local cluster to the machine's outward address unless this is "0" (as on macOS); it is
# read when Ray is first imported, so it is set here, before any test module, and drivers the tests
# start inherit it: Ray tests talk to 127.0.0.1 and nothing else.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A local HTTP server on 127.0.0.1 whose routes a test sets (nothing leaves the machine)."""
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A folder no file can be created in: read-only for a normal user; sysfs for root."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder
    if not Path("/sys").is_dir():
        pytest.skip("running as root without /sys: no folder is unwritable")
    return Path("/sys")


@pytest.fixture(scope="module")
def lama_bytes() -> bytes:
    """The compact LaMa fixture checkpoint as served by the test server."""
    from weights_helpers import LAMA_CKPT

    return LAMA_CKPT.read_bytes()


@pytest.fixture(scope="module")
def lama_state():
    """The fixture's generator tensors in our layout."""
    from weights_helpers import lama_generator_state

    return lama_generator_state()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty weights cache and the shipped manifest (modules of weight tests use it for all)."""
    from weights_helpers import clean_environment

    return clean_environment(tmp_path, monkeypatch)
