"""Bounded downloads (issue 12 §5), zip members fetched alone (issue 14), and the weights parts of
a new user's first hour (issue 15: offline guidance, `inpaint models`, checked imports, private
manifests). Every server is the scripted one on 127.0.0.1 (tests/http_server.py).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from http_server import LocalServer, Route
from typer.testing import CliRunner
from weights_helpers import (
    CUT_AT,
    DATA,
    LAMA_CKPT,
    Notes,
    assert_lama_converted,
    leftovers,
    sha256_of,
    source,
    write_manifest,
)

from inpaint_cli import weights
from inpaint_cli.checkpoints.containers import read_checkpoint
from inpaint_cli.cli.app import app
from inpaint_cli.cli.weights import weights_app
from inpaint_cli.errors import CheckpointError, WeightsError
from inpaint_cli.options import CLASSICAL_METHODS

ROOT = Path(__file__).resolve().parents[2]
MEMBER = "checkpoints/detection/FT_Epoch_latest.pt"
"""The detector's path inside BOPBtL's release zip (SPEC §2)."""
OFFICIAL_DETECTOR_VALUES = 37_648_257
"""Numbers in BOPBtL's detector network: weights, BN statistics and blur filters (SPEC §2)."""
OTHER_MEMBER_BYTES = 3_000_000
"""Size of each restoration checkpoint standing in around the member (random, stored: incompressible)."""


pytestmark = pytest.mark.usefixtures("cache")  # every test: a fresh cache (conftest.py)


def release_zip(path: Path, member_data: bytes) -> tuple[bytes, int]:
    """A zip shaped like BOPBtL's release: big other members around the one we want.

    Returns the archive's bytes and the member's compressed size.
    """
    noise = random.Random(0)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "checkpoints/restoration/VAE_A_quality/latest_net_G.pth", noise.randbytes(OTHER_MEMBER_BYTES)
        )
        archive.writestr(MEMBER, member_data, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(
            "checkpoints/restoration/mapping_scratch/latest_net_mapping_net.pth",
            noise.randbytes(OTHER_MEMBER_BYTES),
        )
    with zipfile.ZipFile(path) as archive:
        compressed = archive.getinfo(MEMBER).compress_size
    return path.read_bytes(), compressed


# ------------------------------------------------------------------------------------- size caps


def test_endless_response_is_cut_at_the_manifest_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, lama_bytes: bytes
) -> None:
    # No Content-Length: the body just goes on, as an endless stream would.
    server.routes["/small.ckpt"] = Route(lama_bytes + bytes(2_000_000), send_length=False)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"), lama_bytes)])

    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    assert (
        f"the server sent more than {len(lama_bytes)} bytes (the manifest's size); the download was deleted"
        in caught.value.what
    )
    assert leftovers(cache) == []


@pytest.mark.parametrize(
    ("fields", "env", "cap", "reason"),
    [
        ({}, {"INPAINT_MAX_DOWNLOAD": "100kB"}, 100_000, "INPAINT_MAX_DOWNLOAD"),
        ({"approx_size": 200_000}, {}, 300_000, "the manifest's approximate size with slack"),
    ],
)
def test_download_of_unknown_size_is_bounded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: LocalServer,
    cache: Path,
    lama_bytes: bytes,
    fields: dict[str, int],
    env: dict[str, str],
    cap: int,
    reason: str,
) -> None:
    server.routes["/endless"] = Route(lama_bytes, send_length=False)
    server.routes["/announced"] = Route(lama_bytes)
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        endless=[source(server.url("/endless"), **fields)],
        announced=[source(server.url("/announced"), **fields)],
    )
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    notes = Notes()

    with pytest.raises(WeightsError) as caught:
        weights.pull("endless", progress=notes)
    assert f"the server sent more than {cap} bytes ({reason})" in caught.value.what
    assert notes.advanced <= cap  # never more than the cap reached the disk
    # A server that announces too much is refused before a byte is written.
    notes = Notes()
    with pytest.raises(WeightsError) as caught:
        weights.pull("announced", progress=notes)
    assert f"the server offers {len(lama_bytes)} bytes, more than {cap} ({reason})" in caught.value.what
    assert notes.advanced == 0
    assert leftovers(cache) == []


def test_pull_max_size_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes
) -> None:
    server.routes["/small.ckpt"] = Route(lama_bytes, send_length=False)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/small.ckpt"))])

    result = CliRunner().invoke(weights_app, ["pull", "toy", "--max-size", "0.2MB"])
    assert result.exit_code == 1
    assert "the server sent more than 200000 bytes (INPAINT_MAX_DOWNLOAD)" in " ".join(result.output.split())
    bad = CliRunner().invoke(weights_app, ["pull", "toy", "--max-size", "lots"])
    assert bad.exit_code == 2 and "--max-size must be a size like 4GB" in bad.output


@pytest.mark.parametrize("ranges", [True, False])
def test_zip_member_declaring_too_much_is_refused_before_extraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, ranges: bool
) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr(MEMBER, bytes(20_000_000))  # 20 MB of zeros in ~20 KB
    server.routes["/bomb.zip"] = Route(archive.read_bytes(), ranges=ranges)
    url = server.url("/bomb.zip")
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        bomb=[source(url, member=MEMBER)],
        capped=[source(url, member=MEMBER, member_size=1_000_000)],
    )
    notes = Notes()

    with pytest.raises(WeightsError) as caught:
        weights.pull("bomb", progress=notes)
    assert "declares 20000000 bytes from" in caught.value.what
    assert "compressed (over 100:1: a zip bomb?)" in caught.value.what
    with pytest.raises(WeightsError) as caught:
        weights.pull("capped")
    assert (
        f"{MEMBER} declares 20000000 bytes, more than 1000000 (the manifest's member size)"
        in caught.value.what
    )
    assert leftovers(cache) == []
    assert notes.advanced < 100_000  # nothing was inflated


# --------------------------------------------------------------------------------------- stalls


def test_a_trickling_server_counts_as_stalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes
) -> None:
    # 200 bytes per second: it never goes silent, so only a minimum rate can tell it from a download.
    server.routes["/trickle"] = Route(lama_bytes[:3000], trickle_s=0.005)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/trickle"))])
    monkeypatch.setenv("INPAINT_TIMEOUT", "0.3")

    started = time.monotonic()
    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    assert time.monotonic() - started < 5
    assert "below the minimum of 10000 bytes/s (download stalled)" in caught.value.what
    # Each slow connection counts as a failure even though it brought a few bytes.
    assert len(server.requests_for("/trickle")) == weights.transfer.DOWNLOAD_ATTEMPTS


# -------------------------------------------------------------------------- confirmation pages


@pytest.mark.parametrize(
    "page",
    [
        '<form action="{target}" method="get"><input type="hidden" name="confirm" value="t"></form>',
        '<a href="{target}?confirm=t">Download anyway</a>',
    ],
)
def test_a_web_page_cannot_lead_to_a_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, page: str
) -> None:
    local = tmp_path / "local.ckpt"
    local.write_bytes(LAMA_CKPT.read_bytes())  # a real checkpoint: following the link would install it
    html = f"<html><body>{page.format(target=local.as_uri())}</body></html>"
    server.routes["/uc"] = Route(html.encode(), content_type="text/html")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/uc?id=X"))])

    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    assert "the server's web page leads to file: (only http(s) is followed)" in caught.value.what
    assert weights.cached_path("toy") is None and leftovers(cache) == []


# ---------------------------------------------------------------------------------- resumption


def test_resume_answered_with_other_bytes_starts_again_from_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, lama_bytes: bytes, lama_state
) -> None:
    # The resume is answered 206 but from byte 0: appending it would corrupt the file, and with no
    # published checksum the corrupt file would be pinned.
    server.routes["/small.ckpt"] = Route(lama_bytes, cut_after=CUT_AT, wrong_range=True)
    url = server.url("/small.ckpt")
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url)])
    notes = Notes()

    path = weights.pull("toy", progress=notes)

    first, second, third = server.requests_for("/small.ckpt")
    assert "Range" not in first.headers and "Range" not in third.headers
    assert second.headers["Range"] == f"bytes={CUT_AT}-"
    assert any(
        f"asked for bytes from {CUT_AT}, the server sent Content-Range "
        f"'bytes 0-{len(lama_bytes) - 1}/{len(lama_bytes)}'; starting again from zero" in note
        for note in notes.notes
    )
    assert weights.cache.pinned(url) == sha256_of(lama_bytes)
    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))


# ----------------------------------------------------------------------- zip members, BOPBtL


def test_shipped_scratch_detector_entry() -> None:
    entry = weights.get_entry("scratch-bopbtl")
    assert (entry.family, entry.license, entry.is_detector) == ("scratch", "MIT", True)
    (release,) = entry.sources
    assert release.url == (
        "https://github.com/microsoft/Bringing-Old-Photos-Back-to-Life/releases/download/v1.0/global_checkpoints.zip"
    )
    assert release.member == MEMBER
    assert release.member_sha256 == "b2d7ab04e9b3885c6b1991bb7a0b823129dd6e3ac078a9fd059ebd2a7ba59a95"
    assert release.checksum_origin == "third-party"
    assert release.published_checksum() is None  # Microsoft publishes none
    assert release.fetches_member_only
    assert entry.download_size() == (452_000_000, True)
    assert entry.parameters == OFFICIAL_DETECTOR_VALUES


def test_only_the_member_of_a_release_zip_is_downloaded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: LocalServer,
    cache: Path,
    lama_bytes: bytes,
    lama_state,
) -> None:
    data, compressed = release_zip(tmp_path / "global_checkpoints.zip", lama_bytes)
    server.routes["/global_checkpoints.zip"] = Route(data)
    url = server.url("/global_checkpoints.zip")
    fields = {
        "member": MEMBER,
        "approx_size": len(data),
        "member_sha256": sha256_of(lama_bytes),
        "checksum_origin": "third-party",
    }
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(url, fmt="torch-pth", **fields)])
    notes = Notes()

    path = weights.pull("toy", progress=notes)

    assert_lama_converted(path, lama_state, url, sha256_of(lama_bytes))
    requests = server.requests_for("/global_checkpoints.zip")
    assert all("Range" in request.headers for request in requests)
    served = sum(request.sent for request in requests)
    assert len(data) > 2 * OTHER_MEMBER_BYTES
    assert served < compressed + 70_000  # the member plus the archive's tail, not the 6 MB around it
    assert notes.advanced == compressed  # only the member's bytes were written
    assert leftovers(cache) == []
    assert weights.cache.pinned(f"{url}#{MEMBER}") is None  # the third-party pin vouched for it


def test_member_that_contradicts_its_third_party_pin_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, lama_bytes: bytes
) -> None:
    data, _ = release_zip(tmp_path / "global_checkpoints.zip", lama_bytes)
    server.routes["/global_checkpoints.zip"] = Route(data)
    pin = "0" * 64
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[
            source(
                server.url("/global_checkpoints.zip"),
                member=MEMBER,
                member_sha256=pin,
                checksum_origin="third-party",
            )
        ],
    )

    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    assert f"checksum mismatch: sha256 {sha256_of(lama_bytes)}, third-party pin {pin}" in caught.value.what
    assert leftovers(cache) == []


class Unseekable:
    """A file that can only be appended to: zipfile then writes data descriptors after each member."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@pytest.mark.parametrize("descriptors", [False, True])
def test_a_server_without_ranges_gives_the_member_out_of_the_stream(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: LocalServer,
    cache: Path,
    lama_bytes: bytes,
    lama_state,
    descriptors: bool,
) -> None:
    archive = tmp_path / "global_checkpoints.zip"
    if descriptors:  # sizes only after each member, as zip writers on pipes leave them
        noise, sink = random.Random(0), Unseekable(archive)
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zipped:  # type: ignore[arg-type]
            zipped.writestr("checkpoints/restoration/a.pth", noise.randbytes(OTHER_MEMBER_BYTES))
            zipped.writestr(MEMBER, lama_bytes)
            zipped.writestr("checkpoints/restoration/b.pth", noise.randbytes(OTHER_MEMBER_BYTES))
        sink.close()
        data = archive.read_bytes()
    else:
        data, _ = release_zip(archive, lama_bytes)
    server.routes["/global_checkpoints.zip"] = Route(data, ranges=False)
    url = server.url("/global_checkpoints.zip")
    write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        toy=[source(url, member=MEMBER, member_sha256=sha256_of(lama_bytes), approx_size=len(data))],
    )

    def no_archive_on_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive was written to a file")

    monkeypatch.setattr(weights.transfer, "open", no_archive_on_disk, raising=False)

    notes = Notes()
    assert_lama_converted(weights.pull("toy", progress=notes), lama_state, url, sha256_of(lama_bytes))
    requests = server.requests_for("/global_checkpoints.zip")
    assert "Range" in requests[0].headers and "Range" not in requests[-1].headers
    # The member sits in the middle: reading stops once it is complete.
    assert OTHER_MEMBER_BYTES < notes.advanced < len(data) - OTHER_MEMBER_BYTES // 2
    assert leftovers(cache) == []


# ------------------------------------------------------------------------ names and manifests


def test_one_resolver_for_every_command(tmp_path: Path) -> None:
    runner = CliRunner()
    image, mask = DATA / "lama" / "case_b_image.png", DATA / "lama" / "case_b_mask.png"
    run = runner.invoke(
        app, ["run", str(image), "--mask", str(mask), "--model", "nosuch", "-o", str(tmp_path / "o.png")]
    )
    pull = runner.invoke(app, ["weights", "pull", "nosuch"])
    classical = runner.invoke(app, ["run", str(image), "--mask", str(mask), "--model", "classical"])

    expected = (
        "error: unknown model 'nosuch' (known models: "
        + ", ".join([*weights.load_manifest(), *CLASSICAL_METHODS])
        + "; see `inpaint models`)"
    )
    assert (run.exit_code, pull.exit_code, classical.exit_code) == (2, 2, 2)
    assert expected in " ".join(run.output.split())
    assert expected in " ".join(pull.output.split())
    assert "unknown model 'classical'" in classical.output
    assert {"telea", "ns"} <= set(weights.known_model_names())


def test_classical_methods_constant_matches_the_engine() -> None:
    from inpaint_cli.models import classical

    assert set(CLASSICAL_METHODS) == set(classical.MODELS)


def test_private_manifest_keeps_the_bundled_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source("https://example.org/x.ckpt")])
    names = list(weights.load_manifest())
    assert names == ["toy", "lama-tiny", "pconv-tiny", "gatedconv-tiny", "scratch-tiny"]
    assert weights.resolve_model("lama-tiny").bundled == weights.BUNDLED_DIR / "lama-tiny.safetensors"
    # The same file is parsed once per process, and again only when it changes.
    assert weights.load_manifest() is weights.load_manifest()
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source("https://example.org/y.ckpt")], other=[])
    os.utime(tmp_path / "m.json", ns=(1, 1))
    with pytest.raises(WeightsError, match="field 'sources' must be a non-empty list"):
        weights.load_manifest()


@pytest.mark.parametrize(("family", "accepted"), [("scratch", True), ("unet", False)])
def test_manifest_families(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str, accepted: bool
) -> None:
    path = write_manifest(tmp_path / "m.json", monkeypatch, toy=[source("https://example.org/x.pt")])
    raw = json.loads(path.read_text())
    raw["models"]["toy"]["family"] = family
    path.write_text(json.dumps(raw))
    if accepted:
        assert weights.load_manifest()["toy"].family == family
    else:
        with pytest.raises(
            WeightsError, match="field 'family' must be one of lama, gatedconv, pconv, scratch"
        ):
            weights.load_manifest()


# --------------------------------------------------------------------------- first-hour checks


def test_default_model_offline_says_what_works_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    image, mask = DATA / "lama" / "case_b_image.png", DATA / "lama" / "case_b_mask.png"

    result = CliRunner().invoke(app, ["run", str(image), "--mask", str(mask), "-o", str(tmp_path / "o.png")])

    text = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "model 'lama' is not in the cache" in text
    assert (
        "works without a download right now: `--model telea`, `--model ns` (thin scratches and dust)" in text
    )
    assert "a bundled demo model: `--model lama-tiny`, `--model pconv-tiny`, `--model gatedconv-tiny`" in text


def test_unreachable_source_also_says_what_works_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = LocalServer()
    url = closed.url("/small.ckpt")
    closed.close()  # nothing listens there any more: connection refused
    write_manifest(tmp_path / "m.json", monkeypatch, lama=[source(url)])

    with pytest.raises(WeightsError) as caught:
        weights.ensure_model("lama")

    assert "could not get model 'lama': source 1" in caught.value.what
    assert caught.value.hint.endswith(weights.works_offline_hint())


def test_models_table_is_built_without_torch() -> None:
    code = (
        "import sys; from rich.console import Console; import inpaint_cli.cli.app; "  # every command mounted
        "from inpaint_cli.cli.models import models_table; "
        "Console(width=200).print(models_table()); print('torch' in sys.modules, 'cv2' in sys.modules)"
    )
    env = {**os.environ, "INPAINT_HOME": "/nonexistent-inpaint-cache"}
    env.pop("INPAINT_MANIFEST", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False False"
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in result.stdout.splitlines()
        if line.count("│") == 7
    }
    assert rows["lama"][2] == "~400.0 MB" and rows["lama"][4] == "no"
    assert rows["lama-fourier"][2] == "by hand"
    assert rows["gatedconv"][2] == "~40.0 MB"
    assert rows["scratch-bopbtl"][2] == "~452.0 MB"
    assert rows["pconv-tiny"][2] == "-" and rows["pconv-tiny"][4].startswith("bundled (")


def test_import_refuses_a_demo_model_under_the_full_models_name(cache: Path) -> None:
    tiny = weights.get_entry("lama-tiny").bundled
    notes = Notes()

    with pytest.raises(CheckpointError) as caught:
        weights.import_file("lama", tiny, progress=notes)

    assert caught.value.what == (
        "holds a lama network of 704,771 tensor values, but lama (big-lama) has 51,057,179: "
        "not the lama weights (it looks like lama-tiny)"
    )
    assert caught.value.hint == "use it as `--model lama-tiny`"
    assert notes.notes == []  # no "not verified" line before the refusal
    assert weights.cached_path("lama") is None and not (cache / "lama.safetensors").exists()


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"101\n", "plain text"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "an HTML page"),
        (bytes(range(7, 200)) * 3, "unknown binary data"),
    ],
)
def test_import_of_a_file_that_is_no_checkpoint_says_what_it_is_not(
    tmp_path: Path, content: bytes, kind: str
) -> None:
    path = tmp_path / "weights.ckpt"
    path.write_bytes(content)
    notes = Notes()

    with pytest.raises(CheckpointError) as caught:
        weights.import_file("lama", path, progress=notes)

    assert caught.value.what == f"not a checkpoint: {kind}, no zip/pickle/safetensors header"
    assert notes.notes == []  # no "not verified" line before the refusal
    result = CliRunner().invoke(weights_app, ["import", "lama", str(path)])
    assert result.exit_code == 1
    assert f"not a checkpoint: {kind}" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("fixture", ["small_detection.pt", "small_detection_legacy.pt"])
def test_scratch_detector_member_is_pulled_converted_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path, fixture: str
) -> None:
    official = (DATA / "scratch" / fixture).read_bytes()
    data, compressed = release_zip(tmp_path / "global_checkpoints.zip", official)
    server.routes["/global_checkpoints.zip"] = Route(data)
    url = server.url("/global_checkpoints.zip")
    pin = {"member": MEMBER, "member_sha256": sha256_of(official), "checksum_origin": "third-party"}
    path = write_manifest(
        tmp_path / "m.json",
        monkeypatch,
        small=[source(url, fmt="torch-pth", **pin)],
        official=[source(url, fmt="torch-pth", **pin)],
    )
    raw = json.loads(path.read_text())
    for entry in raw["models"].values():
        entry.update(family="scratch", variant="bopbtl-detection", license="MIT")
    raw["models"]["official"]["parameters"] = OFFICIAL_DETECTOR_VALUES
    path.write_text(json.dumps(raw))
    notes = Notes()

    converted = weights.pull("small", progress=notes)

    checkpoint = read_checkpoint(converted)
    expected_keys = [
        line.split("\t")[1] for line in (DATA / "scratch" / "keys_small.tsv").read_text().splitlines()[1:]
    ]
    assert checkpoint.metadata["family"] == "scratch"
    assert checkpoint.metadata["source_sha256"] == sha256_of(official)
    assert sorted(checkpoint.state_dict) == sorted(expected_keys)  # model_state only, no training state
    assert notes.advanced == compressed
    # The small network is not the official detector: the manifest's size of network tells them apart.
    with pytest.raises(WeightsError, match=r"holds a scratch network of [\d,]+ tensor values, but official"):
        weights.pull("official")
    assert weights.cached_path("official") is None and leftovers(cache) == []


def test_a_streamed_member_without_declared_size_stops_at_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, cache: Path
) -> None:
    archive = tmp_path / "bomb.zip"
    sink = Unseekable(archive)
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zipped:  # type: ignore[arg-type]
        zipped.writestr(MEMBER, bytes(20_000_000))  # its size only follows it, in a data descriptor
    sink.close()
    server.routes["/bomb.zip"] = Route(archive.read_bytes(), ranges=False)
    write_manifest(tmp_path / "m.json", monkeypatch, toy=[source(server.url("/bomb.zip"), member=MEMBER)])
    monkeypatch.setenv("INPAINT_MAX_DOWNLOAD", "5MB")

    with pytest.raises(WeightsError) as caught:
        weights.pull("toy")

    assert f"{MEMBER} inflates beyond 5000000 bytes (INPAINT_MAX_DOWNLOAD)" in caught.value.what
    assert leftovers(cache) == []


def test_doctor_lists_bundled_models_as_bundled(cache: Path) -> None:
    result = CliRunner().invoke(app, ["doctor"], terminal_width=250)

    assert result.exit_code == 0, result.output
    rows: dict[str, str] = {}
    name = ""
    for line in result.output.splitlines():
        if line.count("│") == 3:  # a long value wraps onto lines whose first cell is empty
            cells = [cell.strip() for cell in line.split("│")[1:3]]
            name = cells[0] or name
            rows[name] = f"{rows.get(name, '')} {cells[1]}".strip()
    assert rows["bundled weights"] == "lama-tiny, pconv-tiny, gatedconv-tiny, scratch-tiny"
    assert rows["cached weights"] == "none"
    assert "lama-tiny" not in rows["not cached"] and "lama, lama-fourier" in rows["not cached"]


OFFICIAL_CONFIGS = {
    "lama": {"ngf": 64, "n_downsampling": 3, "n_blocks": 18, "max_features": 1024, "global_channels": 384},
    "lama-fourier": {
        "ngf": 64,
        "n_downsampling": 3,
        "n_blocks": 9,
        "max_features": 1024,
        "global_channels": 384,
    },
    "gatedconv": {"variant": "tf", "cnum": 48},
    "gatedconv-celebahq": {"variant": "tf", "cnum": 48},
    "pconv": {"layer_size": 7},
}
"""The published architectures (see each family's SPEC), built on the meta device to count their numbers."""


@pytest.mark.parametrize("name", [*OFFICIAL_CONFIGS, "scratch-bopbtl"])
def test_manifest_network_sizes_are_those_of_the_official_architectures(name: str) -> None:
    from inpaint_cli.models import FAMILIES
    from inpaint_cli.models.scratch import ScratchConfig, ScratchUNet

    with torch.device("meta"):
        if name == "scratch-bopbtl":
            network = ScratchUNet(ScratchConfig.from_json({"wf": 6}))
        else:
            family = FAMILIES[weights.get_entry(name).family]
            network = family.build(family.Config.from_json(OFFICIAL_CONFIGS[name]))
    values = sum(tensor.numel() for tensor in network.state_dict().values())
    expected = weights.get_entry(name).parameters
    assert abs(values - expected) <= weights.install.PARAMETER_TOLERANCE * expected / 100  # within 0.02 %


def test_weights_list_shows_bundled_models_as_bundled() -> None:
    result = CliRunner().invoke(weights_app, ["list"], terminal_width=250)

    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 5
    }
    assert rows["lama-tiny"] == "bundled" and rows["lama"] == "no" and rows["scratch-bopbtl"] == "no"
