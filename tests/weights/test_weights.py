"""Named models: manifest validation, the verified download path, the cache index, import, CLI.

Every download goes to a scripted server on 127.0.0.1 (tests/http_server.py) serving the compact
fixture checkpoints of tests/data, listed in a temporary manifest (INPAINT_MANIFEST).
"""

from __future__ import annotations

import errno
import json
import os
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from http_server import LocalServer, Route
from PIL import Image
from rich.console import Console
from torch import nn
from typer.testing import CliRunner
from weights_helpers import (
    CUT_AT,
    DATA,
    LAMA_CKPT,
    Notes,
    assert_lama_converted,
    lama_generator_state,
    leftovers,
    sha256_of,
    source,
    write_manifest,
)

from inpaint_cli import weights
from inpaint_cli.checkpoints.containers import read_checkpoint
from inpaint_cli.cli.app import app
from inpaint_cli.cli.models import models_table
from inpaint_cli.cli.weights import weights_app
from inpaint_cli.errors import CheckpointError, UsageError, WeightsError
from inpaint_cli.models import FAMILIES

pytestmark = pytest.mark.usefixtures("cache")  # every test: a fresh cache (conftest.py)


# --------------------------------------------------------------------------------------- manifest


def test_shipped_manifest_lists_real_sources_for_every_family() -> None:
    manifest = weights.load_manifest()
    official_names = {"lama", "lama-fourier", "gatedconv", "gatedconv-celebahq", "pconv", "scratch-bopbtl"}
    assert official_names <= set(manifest)
    assert all(s.is_bundled for name in set(manifest) - official_names for s in manifest[name].sources)
    assert {entry.family for entry in manifest.values()} <= {*FAMILIES, "scratch"}
    official, torchscript = manifest["lama"].sources
    assert official.url == "https://huggingface.co/smartywu/big-lama/resolve/main/big-lama.zip"
    assert (official.format, official.member, official.published_checksum()) == (
        "lightning-ckpt",
        "big-lama/models/best.ckpt",
        None,
    )
    assert torchscript.url == "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt"
    assert torchscript.published_checksum() == ("md5", "e3aa4aaa15225a33ec84f9f4bc47e500")
    (fourier,) = manifest["lama-fourier"].sources
    assert "1B2x7eQDgecTL0oh3LSIBDGj0fTxs6Ips" in fourier.url
    assert "inpaint weights import lama-fourier" in (fourier.manual or "")
    assert "1tvdQRmkphJK7FYveNAKSMWC6K09hJoyt" in manifest["gatedconv"].sources[0].url
    assert manifest["gatedconv"].sources[0].file_name == "states_tf_places2.pth"
    assert "1fTQVSKWwWcKYnmeemxKWImhVtFQpESmm" in manifest["gatedconv-celebahq"].sources[0].url
    assert manifest["pconv"].sources[0].url.endswith("/releases/download/v0.0.0/1000000.pth")


def test_top_level_manifest_is_the_packaged_file() -> None:
    top_level = Path(__file__).resolve().parents[2] / "weights_manifest.json"
    assert top_level.is_symlink()
    assert top_level.resolve() == weights.MANIFEST_PATH.resolve()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda e: e["sources"][0].update(sha256="abc"),
            "field 'sources[0].sha256' must be 64 lower-case hex",
        ),
        (lambda e: e["sources"][0].update(md5="A" * 32), "field 'sources[0].md5' must be 32 lower-case hex"),
        (lambda e: e["sources"][0].update(format="keras-h5"), "field 'sources[0].format' must be one of"),
        (lambda e: e["sources"][0].update(url="ftp://x/y"), "field 'sources[0].url' must be an http(s)"),
        (lambda e: e["sources"][0].update(size=-5), "field 'sources[0].size' must be a positive number"),
        (lambda e: e["sources"][0].update(checksum="x"), "field 'sources[0].checksum' is not a known field"),
        (lambda e: e.pop("license"), "field 'license' must be a non-empty string"),
        (lambda e: e.update(sources=[]), "field 'sources' must be a non-empty list"),
        (
            lambda e: e["sources"].append({"url": "bundled:x.safetensors", "format": "safetensors"}),
            "sources[1].sha256",
        ),
    ],
)
def test_malformed_manifest_names_entry_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any, message: str
) -> None:
    path = write_manifest(tmp_path / "m.json", monkeypatch, toy=[source("https://example.org/x.ckpt")])
    raw = json.loads(path.read_text())
    change(raw["models"]["toy"])
    path.write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="manifest entry 'toy'") as caught:
        weights.load_manifest()
    assert message in caught.value.what
    assert caught.value.path == path


def test_manifest_that_is_not_json_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"version": 1,\n "models": {')
    monkeypatch.setenv("INPAINT_MANIFEST", str(path))
    with pytest.raises(WeightsError, match=r"not valid JSON \(line 2, column 13"):
        weights.load_manifest()


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("fifo", "not a regular file but a pipe"), ("deep", "JSON nested deeper than 64 levels")],
)
def test_a_manifest_that_is_a_fifo_or_nested_deep_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, problem: str
) -> None:
    path = tmp_path / "m.json"
    if kind == "fifo":
        os.mkfifo(path)  # read without O_NONBLOCK, this hung the tool
    else:
        path.write_text("[" * 100_000 + "]" * 100_000)
    monkeypatch.setenv("INPAINT_MANIFEST", str(path))
    with pytest.raises(WeightsError) as caught:
        weights.load_manifest()
    assert caught.value.one_line() == f"{path}: cannot read the model manifest: {problem}"


def test_unknown_model_lists_the_known_ones_and_the_classical_methods() -> None:
    with pytest.raises(UsageError, match="unknown model 'big-llama'") as caught:
        weights.ensure_model("big-llama")
    assert caught.value.hint == (
        "known models: lama, lama-fourier, gatedconv, gatedconv-celebahq, pconv, scratch-bopbtl, "
        "lama-tiny, pconv-tiny, gatedconv-tiny, scratch-tiny, telea, ns; see `inpaint models`"
    )
    with pytest.raises(UsageError, match="'telea' is a weight-free classical method"):
        weights.pull("telea")


def test_a_model_to_download_by_hand_names_the_address_to_open() -> None:
    """Issue 30: lama-fourier's error said "open the folder in a browser" without the folder's address."""
    with pytest.raises(WeightsError) as caught:
        weights.pull("lama-fourier")
    assert caught.value.one_line() == (
        "could not get model 'lama-fourier': source 1 (drive.google.com) cannot be downloaded "
        "automatically (https://drive.google.com/drive/folders/1B2x7eQDgecTL0oh3LSIBDGj0fTxs6Ips: open the "
        "folder in a browser, download lama-models.zip, unzip it, then run `inpaint weights import "
        "lama-fourier lama-models/lama-fourier/models/best.ckpt`)"
    )


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("INPAINT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "inpaint"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "inpaint"


# ----------------------------------------------------------------------------------- download path


def test_pull_verifies_converts_once_and_records(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: LocalServer,
    cache: Path,
    lama_bytes: bytes,
    lama_state,
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    url = server.url("/small.ckpt")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, lama_bytes)])
    notes = Notes()

    path = weights.ensure_model("toy", progress=notes)

    assert path == cache / "toy.safetensors"
    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))
    assert notes.starts == [("toy (" + url.split("/")[2] + ")", len(lama_bytes), 0)]
    assert notes.advanced == len(lama_bytes)
    record = weights.cache_record("toy")
    assert record is not None and record["sha256"] == weights.file_sha256(path)
    assert leftovers(cache) == []
    # Cached: no second request, and the same file (verified by size + mtime).
    assert weights.ensure_model("toy") == path
    assert len(server.requests_for("/small.ckpt")) == 1


def test_cut_connection_resumes_with_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes, lama_state
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes, cut_after=CUT_AT)
    url = server.url("/small.ckpt")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, lama_bytes)])
    notes = Notes()

    path = weights.pull("toy", progress=notes)

    first, second = server.requests_for("/small.ckpt")
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={CUT_AT}-"
    assert notes.starts[1][2] == CUT_AT  # the bar resumes where the cut left it
    assert notes.advanced == len(lama_bytes)
    assert any(f"reconnecting at byte {CUT_AT}" in note for note in notes.notes)
    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))


def test_server_without_ranges_restarts_from_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes, lama_state
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes, cut_after=CUT_AT, ranges=False)
    url = server.url("/small.ckpt")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, lama_bytes)])

    path = weights.pull("toy")

    assert len(server.requests_for("/small.ckpt")) == 2
    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))


def test_stall_times_out_clearly_and_a_later_pull_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: LocalServer,
    cache: Path,
    lama_bytes: bytes,
    lama_state,
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes, stall_after=CUT_AT)
    url = server.url("/small.ckpt")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, lama_bytes)])
    monkeypatch.setenv("INPAINT_TIMEOUT", "0.3")
    monkeypatch.setattr(weights.transfer, "DOWNLOAD_ATTEMPTS", 1)

    started = time.monotonic()
    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")
    assert time.monotonic() - started < 5
    assert "the server sent nothing for 0.3 s (download stalled)" in caught.value.what
    assert "inpaint weights import toy FILE" in (caught.value.hint or "")
    assert weights.cached_path("toy") is None
    (part,) = leftovers(cache)
    assert part.endswith(".part") and (cache / weights.DOWNLOADS_DIR / part).stat().st_size == CUT_AT

    server.routes["/small.ckpt"] = Route(lama_bytes)
    path = weights.pull("toy")
    assert server.requests_for("/small.ckpt")[-1].headers["Range"] == f"bytes={CUT_AT}-"
    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))
    assert leftovers(cache) == []


def test_stall_before_any_header_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    server.routes["/slow"] = Route(b"never sent", stall_before_headers=True)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/slow"))])

    started = time.monotonic()
    with pytest.raises(WeightsError, match=r"sent nothing for 0\.2 s \(download stalled\)"):
        weights.pull("toy", timeout=0.2)
    assert len(server.requests_for("/slow")) == weights.transfer.DOWNLOAD_ATTEMPTS
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("wrong", ["sha256", "size"])
def test_checksum_or_size_mismatch_deletes_the_download(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: LocalServer,
    cache: Path,
    lama_bytes: bytes,
    wrong: str,
) -> None:
    served = lama_bytes[:-1] + bytes([lama_bytes[-1] ^ 0xFF]) if wrong == "sha256" else lama_bytes + b"\0"
    server.routes["/small.ckpt"] = Route(served)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"), lama_bytes)])

    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    expected = (
        f"checksum mismatch: sha256 {sha256_of(served)}, published {sha256_of(lama_bytes)}; "
        "the download was deleted"
        if wrong == "sha256"
        else f"the server offers {len(served)} bytes, the manifest expects {len(lama_bytes)}"
    )
    assert expected in caught.value.what
    assert leftovers(cache) == []
    assert not (cache / "toy.safetensors").exists()
    assert weights.cached_path("toy") is None


def test_404_falls_through_to_the_next_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes, lama_state
) -> None:
    server.routes["/mirror/small.ckpt"] = Route(lama_bytes)
    missing, mirror = server.url("/gone/small.ckpt"), server.url("/mirror/small.ckpt")
    write_manifest(
        tmp_path / "m.json", monkeypatch, toy=[source(missing, lama_bytes), source(mirror, lama_bytes)]
    )
    notes = Notes()

    path = weights.pull("toy", progress=notes)

    assert [r.path for r in server.requests] == ["/gone/small.ckpt", "/mirror/small.ckpt"]
    assert notes.notes == [f"toy: source 1 ({missing.split('/')[2]}): HTTP 404 Not Found"]
    assert_lama_converted(path, lama_state, mirror, sha256_of(lama_bytes))


def test_every_source_failing_lists_each_and_says_how_to_get_it_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    host = server.url("/").split("/")[2]
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/a")), source(server.url("/b"))])

    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    assert caught.value.what == (
        f"could not get model 'toy': source 1 ({host}): HTTP 404 Not Found; "
        f"source 2 ({host}): HTTP 404 Not Found"
    )
    assert (
        caught.value.hint
        == f"download {server.url('/a')} in a browser, then run `inpaint weights import toy FILE`"
    )


def test_disk_full_aborts_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    server.routes["/mirror.ckpt"] = Route(lama_bytes)
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[source(server.url("/small.ckpt"), lama_bytes), source(server.url("/mirror.ckpt"), lama_bytes)],
    )

    class FullDisk:
        """A file whose disk fills up after the first megabyte."""

        def __init__(self, path: Path, mode: str) -> None:
            self._file = open(path, mode)  # noqa: SIM115 - closed by __exit__
            self._written = 0

        def write(self, data: bytes) -> int:
            if self._written + len(data) > CUT_AT:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._written += len(data)
            return self._file.write(data)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._file.close()

    monkeypatch.setattr(weights.transfer, "open", FullDisk, raising=False)

    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    assert caught.value.what == f"cannot write the download: {os.strerror(errno.ENOSPC)}"
    assert caught.value.hint == "free some disk space, or move the cache with INPAINT_HOME"
    assert server.requests_for("/mirror.ckpt") == []  # no mirror can fix a full disk
    assert leftovers(cache) == []
    assert not (cache / "toy.safetensors").exists()


def test_unpublished_checksum_is_pinned_at_first_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    url = server.url("/small.ckpt")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url)])
    notes = Notes()

    weights.pull("toy", progress=notes)

    digest = sha256_of(lama_bytes)
    assert notes.notes == [
        f"{url.split('/')[2]} publishes no checksum for toy; recorded sha256 {digest} "
        "(later downloads must match it)"
    ]
    # The publisher's file changes: a later download is refused against the recorded checksum.
    weights.remove("toy")
    changed = lama_bytes + b"tampered"
    server.routes["/small.ckpt"] = Route(changed)
    with pytest.raises(
        WeightsError, match=f"sha256 {sha256_of(changed)}, recorded at the first download {digest}"
    ):
        weights.pull("toy")
    weights.remove("toy", unpin=True)
    server.routes["/small.ckpt"] = Route(lama_bytes)
    weights.pull("toy")


def test_zip_member_is_extracted_and_a_missing_member_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, lama_state
) -> None:
    archive = tmp_path / "big-lama.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("big-lama/config.yaml", "generator:\n  kind: ffc_resnet\n")
        zipped.write(LAMA_CKPT, "big-lama/models/best.ckpt")
    data = archive.read_bytes()
    member_sha = sha256_of(LAMA_CKPT.read_bytes())
    server.routes["/big-lama.zip"] = Route(data)
    url = server.url("/big-lama.zip")
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[source(url, member="big-lama/models/best.ckpt")],  # no checksum: pinned at first download
        other=[source(url, data, member="lama/best.ckpt")],
    )

    # Only the member is fetched (byte ranges), and its own SHA-256 is what gets pinned.
    assert_lama_converted(weights.pull("toy"), lama_state, url, member_sha)
    assert weights.cache.pinned(f"{url}#big-lama/models/best.ckpt") == member_sha
    # The same archive downloaded by hand imports under the checksum pinned by the first download.
    weights.remove("toy")
    notes = Notes()
    assert_lama_converted(weights.import_file("toy", archive, progress=notes), lama_state, url, member_sha)
    assert notes.notes == [
        "big-lama.zip: sha256 of big-lama/models/best.ckpt matches the one recorded at the first download "
        f"of {url}"
    ]
    with pytest.raises(
        WeightsError, match=r"the archive has no lama/best\.ckpt; it has big-lama/models/best\.ckpt"
    ):
        weights.pull("other")
    assert leftovers(cache) == []


DRIVE_WARNING = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="FILEID"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="1234-abcd">
</form></body></html>"""


def test_drive_virus_scan_page_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes, lama_state
) -> None:
    server.routes["/uc"] = Route(
        DRIVE_WARNING.format(action=server.url("/download")).encode(), content_type="text/html; charset=utf-8"
    )
    server.routes["/download"] = Route(
        lama_bytes, require_query={"id": "FILEID", "confirm": "t", "uuid": "1234-abcd"}
    )
    url = server.url("/uc?id=FILEID&export=download")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, lama_bytes, filename="small.ckpt")])

    path = weights.pull("toy")

    assert [r.path for r in server.requests] == ["/uc", "/download"]
    assert server.requests[1].query == {
        "id": "FILEID",
        "export": "download",
        "confirm": "t",
        "uuid": "1234-abcd",
    }
    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))


def test_a_web_page_without_a_way_through_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    server.routes["/uc"] = Route(b"<html><body>Quota exceeded</body></html>", content_type="text/html")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/uc?id=X"))])

    with pytest.raises(WeightsError, match="the server sent a web page instead of the file"):
        weights.pull("toy")


# ------------------------------------------------------------------------------- offline, integrity


def test_offline_refuses_to_download_and_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"), lama_bytes)])
    monkeypatch.setenv("INPAINT_OFFLINE", "1")

    with pytest.raises(WeightsError, match="INPAINT_OFFLINE forbids downloading it") as caught:
        weights.ensure_model("toy")
    assert caught.value.hint == (
        "run `inpaint weights pull toy` while online, or `inpaint weights import toy FILE`; "
        + weights.works_offline_hint()
    )
    with pytest.raises(WeightsError, match="needs the network and INPAINT_OFFLINE is set"):
        weights.pull("toy")
    assert server.requests == []

    path = weights.pull("toy", offline=False)
    assert weights.ensure_model("toy") == path  # cached models work offline


def test_damaged_cache_file_is_detected_and_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes, lama_state
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    url = server.url("/small.ckpt")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, lama_bytes)])
    path = weights.pull("toy")
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))

    assert weights.cached_path("toy") is None
    result = weights.verify("toy")
    assert not result.ok and result.detail.startswith(f"sha256 {sha256_of(bytes(damaged))} differs from")
    notes = Notes()
    assert weights.ensure_model("toy", progress=notes) == path
    assert notes.notes[0] == "toy: the cached file failed verification; fetching it again"
    assert len(server.requests_for("/small.ckpt")) == 2
    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))
    assert weights.verify("toy").ok


def test_touched_cache_file_is_rehashed_not_refetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"), lama_bytes)])
    path = weights.pull("toy")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))

    assert weights.cached_path("toy") == path
    assert weights.cache_record("toy")["mtime_ns"] == 1_000_000_000
    assert len(server.requests_for("/small.ckpt")) == 1


def test_bundled_source_needs_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path, lama_state
) -> None:
    bundled_dir = tmp_path / "bundled"
    bundled_dir.mkdir()
    shipped = bundled_dir / "lama-demo.ckpt"
    shipped.write_bytes(LAMA_CKPT.read_bytes())
    monkeypatch.setattr(weights.manifest, "BUNDLED_DIR", bundled_dir)
    digest = weights.file_sha256(shipped)
    write_manifest(
        tmp_path / "m.json", monkeypatch, toy=[source("bundled:lama-demo.ckpt", shipped.read_bytes())]
    )
    monkeypatch.setenv("INPAINT_OFFLINE", "1")

    assert weights.load_manifest()["toy"].bundled == shipped
    path = weights.ensure_model("toy")

    assert_lama_converted(path, lama_state, "bundled:lama-demo.ckpt", digest)
    assert shipped.exists()  # the package's file is read, never moved


def test_cached_copy_of_an_older_bundled_file_is_converted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path, lama_state
) -> None:
    """An upgraded package ships another bundled file (new weights or post-processing settings): the
    copy converted from the old one must not be used any longer."""
    bundled_dir = tmp_path / "bundled"
    bundled_dir.mkdir()
    shipped = bundled_dir / "lama-demo.ckpt"
    shipped.write_bytes(LAMA_CKPT.read_bytes())
    monkeypatch.setattr(weights.manifest, "BUNDLED_DIR", bundled_dir)
    write_manifest(
        tmp_path / "m.json", monkeypatch, toy=[source("bundled:lama-demo.ckpt", shipped.read_bytes())]
    )
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    path = weights.ensure_model("toy")
    assert weights.cache_record("toy")["source_sha256"] == weights.file_sha256(shipped)
    assert weights.ensure_model("toy") == path  # the current file's copy is used as it is
    path.write_bytes(b"stale")  # what converting the file an older version shipped made
    weights.cache.record_converted("toy", path, "bundled:lama-demo.ckpt", "0" * 64)
    assert weights.cached_path("toy") == path  # intact as a file: only its source is outdated

    again = weights.ensure_model("toy")

    assert_lama_converted(again, lama_state, "bundled:lama-demo.ckpt", weights.file_sha256(shipped))


@pytest.mark.parametrize(
    ("family", "fixture"),
    [
        ("gatedconv", "deepfill/pt_random.pth"),
        ("gatedconv", "deepfill/tf_random.pth"),
        ("pconv", "pconv/small.pth"),
    ],
)
def test_other_families_convert_from_their_official_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, family: str, fixture: str
) -> None:
    data = (DATA / fixture).read_bytes()
    server.routes["/official.pth"] = Route(data)
    manifest = write_manifest(
        tmp_path / "m.json", monkeypatch, toy=[source(server.url("/official.pth"), data, fmt="torch-pth")]
    )
    raw = json.loads(manifest.read_text())
    raw["models"]["toy"]["family"] = family
    manifest.write_text(json.dumps(raw))

    converted = read_checkpoint(weights.pull("toy"))

    expected = FAMILIES[family].convert_state_dict(read_checkpoint(DATA / fixture).state_dict)
    assert converted.metadata["family"] == family
    assert converted.state_dict.keys() == expected.keys()
    assert all(torch.equal(converted.state_dict[k], v) for k, v in expected.items())


# ------------------------------------------------------------------------------------------ import


class TrainingModule(nn.Module):
    """Stands for LaMa's Lightning module: the generator under the attribute `generator`."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator


class JitWrapper(nn.Module):
    """The shape of IOPaint's traced `big-lama.pt`: a wrapper whose `model` is the training module."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.model = TrainingModule(generator)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.generator(image, mask)


@pytest.fixture(scope="module")
def traced_big_lama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = lama_generator_state()
    lama = FAMILIES["lama"]
    network = lama.build(lama.config_from_state_dict(state))
    network.load_state_dict(state)
    torch.manual_seed(0)
    example = (torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) > 0.5).float())
    path = tmp_path_factory.mktemp("torch-hub") / "big-lama.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is how the real file was made
        torch.jit.save(torch.jit.trace(JitWrapper(network.eval()), example, check_trace=False), str(path))
    return path


def test_import_torchscript_verified_by_published_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, traced_big_lama: Path, lama_state
) -> None:
    sha256, md5 = weights.file_digests(traced_big_lama)
    url = "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt"
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[
            source("https://example.org/big-lama.zip", member="big-lama/models/best.ckpt"),
            {"url": url, "format": "torchscript", "md5": md5},
        ],
    )
    notes = Notes()

    path = weights.import_file("toy", traced_big_lama, progress=notes)

    assert notes.notes == [f"big-lama.pt: md5 matches the published checksum of {url}"]
    assert_lama_converted(path, lama_state, url, sha256)
    assert weights.verify("toy").ok


def test_import_refuses_a_file_that_contradicts_the_published_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, traced_big_lama: Path, cache: Path
) -> None:
    md5 = weights.file_digests(traced_big_lama)[1]
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[{"url": "https://example.org/big-lama.pt", "format": "torchscript", "md5": "0" * 32}],
    )

    with pytest.raises(WeightsError) as caught:
        weights.import_file("toy", traced_big_lama)

    assert caught.value.what == f"not the published toy file: md5 {md5}, expected {'0' * 32}"
    assert not (cache / "toy.safetensors").exists()


def test_import_of_an_unzipped_checkpoint_without_published_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lama_state
) -> None:
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[
            {"url": "https://example.org/folder", "format": "lightning-ckpt", "manual": "download it by hand"}
        ],
    )
    notes = Notes()

    path = weights.import_file("toy", LAMA_CKPT, progress=notes)

    digest = sha256_of(LAMA_CKPT.read_bytes())
    assert notes.notes == [
        f"small.ckpt: not verified (no published checksum for this kind of file); sha256 {digest}"
    ]
    assert_lama_converted(path, lama_state, LAMA_CKPT.resolve().as_uri(), digest)


def test_import_of_a_file_of_another_family_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source("https://example.org/x.ckpt")])
    with pytest.raises(CheckpointError, match="not a lama checkpoint") as caught:
        weights.import_file("toy", DATA / "pconv" / "small.pth")
    assert caught.value.path == DATA / "pconv" / "small.pth"


def test_find_foreign_checkpoints_in_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for name in ("big-lama.pt", "states_tf_places2.pth", "resnet50.pth"):
        (hub / name).write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    found = weights.find_foreign_checkpoints()

    assert found == [hub / "big-lama.pt", hub / "states_tf_places2.pth"]
    assert [weights.model_for_file(path) for path in found] == ["lama", "gatedconv"]


# --------------------------------------------------------------------------------------------- CLI


def test_cli_pull_path_list_verify_rm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"), lama_bytes)])
    runner = CliRunner()
    converted = cache / "toy.safetensors"

    missing = runner.invoke(weights_app, ["path", "toy"])
    assert missing.exit_code == 1
    assert "model 'toy' is not cached" in missing.output

    pulled = runner.invoke(weights_app, ["pull", "toy"])
    assert pulled.exit_code == 0, pulled.output
    assert pulled.stdout.strip().endswith(str(converted))
    assert runner.invoke(weights_app, ["path", "toy"]).stdout.strip() == str(converted)
    again = runner.invoke(weights_app, ["pull", "toy"])
    assert "already cached" in again.output and len(server.requests) == 1

    listing = runner.invoke(weights_app, ["list"], terminal_width=200)
    digest = weights.cache_record("toy")["sha256"]
    assert listing.exit_code == 0 and digest[:12] in listing.stdout

    assert runner.invoke(weights_app, ["verify"]).exit_code == 0
    converted.write_bytes(converted.read_bytes()[:-1] + b"\0")
    failed = runner.invoke(weights_app, ["verify", "toy"])
    assert failed.exit_code == 1 and "failed toy: sha256" in failed.output

    removed = runner.invoke(weights_app, ["rm", "toy"])
    assert removed.exit_code == 0 and f"removed {converted}" in removed.output
    assert not converted.exists() and weights.cache_record("toy") is None


def test_models_table_lists_manifest_and_classical_methods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[source(server.url("/small.ckpt"), lama_bytes)],
        other=[source(server.url("/other.ckpt"))],
    )
    size = weights.pull("toy").stat().st_size
    console = Console(record=True, width=200)

    console.print(models_table())

    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in console.export_text().splitlines()
        if line.count("│") == 7
    }
    assert rows["toy"] == [
        "lama",
        "small-fixture",
        f"{len(lama_bytes) / 1e3:.1f} kB",
        "Apache-2.0",
        f"yes ({size / 1e3:.1f} kB)",
    ]
    assert rows["other"] == ["lama", "small-fixture", "?", "Apache-2.0", "no"]
    # Bundled models stay listed under a private manifest, as bundled, not as "not cached".
    tiny = weights.get_entry("lama-tiny").bundled
    assert rows["lama-tiny"] == [
        "lama",
        "demo",
        "-",
        "Apache-2.0",
        f"bundled ({tiny.stat().st_size / 1e6:.1f} MB)",
    ]
    assert rows["telea"] == ["classical", "opencv telea", "-", "Apache-2.0 (OpenCV)", "weight-free"]
    assert rows["ns"][-1] == "weight-free"


def test_run_with_a_named_model_pulls_it_first_then_works_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"), lama_bytes)])
    image, mask = DATA / "lama" / "case_b_image.png", DATA / "lama" / "case_b_mask.png"
    expected = np.asarray(Image.open(DATA / "lama" / "case_b_result.png"), dtype=np.int16)
    runner = CliRunner()

    for run, offline in enumerate(("0", "1")):
        monkeypatch.setenv("INPAINT_OFFLINE", offline)
        output = tmp_path / f"result{run}.png"
        result = runner.invoke(
            app,
            [
                "run",
                str(image),
                "--mask",
                str(mask),
                "--model",
                "toy",
                "--mask-threshold",
                "0",
                "-o",
                str(output),
            ],
        )
        assert result.exit_code == 0, result.output
        assert ("downloading toy" in result.output) == (run == 0)
        difference = np.abs(np.asarray(Image.open(output), dtype=np.int16) - expected)
        assert difference.max() <= 1  # the SPEC's tolerance for uint8 results
    assert len(server.requests_for("/small.ckpt")) == 1


def test_file_url_mirror_for_air_gapped_sites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lama_state
) -> None:
    url = LAMA_CKPT.resolve().as_uri()
    data = LAMA_CKPT.read_bytes()
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, data)])

    assert_lama_converted(weights.pull("toy"), lama_state, url, sha256_of(data))


def test_a_safetensors_source_is_read_as_its_format_says_whatever_its_url(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: LocalServer,
    cache: Path,
    lama_bytes: bytes,
    lama_state,
) -> None:
    """Issue 27: a source with "format": "safetensors" and no `.safetensors` in its URL was read as a
    pickle (the download's name decided), and failed."""
    server.routes["/small.ckpt"] = Route(lama_bytes)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"), lama_bytes)])
    converted = weights.ensure_model("toy").read_bytes()
    server.routes["/file"] = Route(converted)
    url = server.url("/file") + "?id=42"
    write_manifest(tmp_path / "m2.json", monkeypatch, toy2=[source(url, converted, fmt="safetensors")])

    path = weights.ensure_model("toy2")

    assert path == cache / "toy2.safetensors"
    assert_lama_converted(path, lama_state, url, sha256_of(converted))
