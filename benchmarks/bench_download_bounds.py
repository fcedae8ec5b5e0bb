"""How the download bounds hold against hostile servers on 127.0.0.1 (issue 12 §5).

For each scenario: what the pull answered, the most bytes that were ever on disk in the cache
(polled every 5 ms), the time it took and the process's peak RSS. Run from the repository root:

    python benchmarks/bench_download_bounds.py

Takes about a minute (building the 2 GB zip bomb is most of it). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from http_server import LocalServer, Route
from measure import peak_rss

from inpaint_cli import weights
from inpaint_cli.errors import InpaintError

BOMB_BYTES = 2_170_000_000
"""What the issue's 2.1 MB zip bomb inflated to."""
MEMBER = "checkpoints/detection/FT_Epoch_latest.pt"


def disk_peak(folder: Path, action: Callable[[], str]) -> tuple[str, int, float]:
    """Run `action`, polling the bytes under `folder`; (outcome, peak bytes, seconds)."""
    peak, done = 0, threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
            peak = max(peak, size)
            time.sleep(0.005)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        outcome = f"ok: {action()}"
    except InpaintError as exc:
        outcome = f"refused: {exc.what[:150]}"
    seconds = time.monotonic() - started
    done.set()
    watcher.join()
    return outcome, peak, seconds


def manifest(path: Path, url: str, **fields: object) -> None:
    entry = {
        "family": "lama",
        "variant": "bench",
        "license": "Apache-2.0",
        "paper": "-",
        "homepage": "https://example.org",
        "sources": [{"url": url, "format": "torch-pth", **fields}],
    }
    path.write_text(json.dumps({"version": 1, "models": {"bench": entry}}))
    os.environ["INPAINT_MANIFEST"] = str(path)


def bomb_zip(path: Path) -> None:
    chunk = bytes(1 << 24)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(MEMBER, "w", force_zip64=True) as out,
    ):
        for _ in range(BOMB_BYTES // len(chunk)):
            out.write(chunk)


def release_zip(path: Path, member: bytes, other: int) -> None:
    noise = random.Random(0)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("checkpoints/restoration/a.pth", noise.randbytes(other))
        archive.writestr(MEMBER, member, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("checkpoints/restoration/b.pth", noise.randbytes(other))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="inpaint-bounds-"))
    cache = work / "cache"
    os.environ["INPAINT_HOME"] = str(cache)
    server = LocalServer()
    rows = []

    def scenario(name: str, action: Callable[[], str]) -> None:
        outcome, peak, seconds = disk_peak(cache / weights.DOWNLOADS_DIR, action)
        rows.append((name, outcome, peak, seconds))
        weights.remove("bench", unpin=True)

    pull = lambda: str(weights.pull("bench"))  # noqa: E731

    bomb = work / "bomb.zip"
    bomb_zip(bomb)
    server.routes["/bomb.zip"] = Route(bomb.read_bytes())
    manifest(work / "m1.json", server.url("/bomb.zip"), member=MEMBER)
    scenario(f"zip bomb {bomb.stat().st_size / 1e6:.1f} MB -> {BOMB_BYTES / 1e9:.2f} GB, by ranges", pull)
    server.routes["/bomb.zip"] = Route(bomb.read_bytes(), ranges=False)
    scenario("same zip bomb, server without ranges", pull)

    server.routes["/endless"] = Route(b"", send_length=False, endless=True)
    manifest(work / "m2.json", server.url("/endless"), size=10_000_000, sha256="0" * 64)
    scenario("endless stream, manifest size 10 MB", pull)
    manifest(work / "m3.json", server.url("/endless"), approx_size=10_000_000)
    scenario("endless stream, approximate size ~10 MB", pull)
    manifest(work / "m4.json", server.url("/endless"))
    os.environ["INPAINT_MAX_DOWNLOAD"] = "50MB"
    scenario("endless stream, no size, INPAINT_MAX_DOWNLOAD=50MB", pull)
    del os.environ["INPAINT_MAX_DOWNLOAD"]

    server.routes["/trickle"] = Route(bytes(100_000), trickle_s=0.01)
    manifest(work / "m5.json", server.url("/trickle"))
    os.environ["INPAINT_TIMEOUT"] = "2"
    scenario("100 B/s trickle, INPAINT_TIMEOUT=2 (3 attempts)", pull)
    del os.environ["INPAINT_TIMEOUT"]

    release = work / "release.zip"
    release_zip(release, Path("tests/data/lama/small.ckpt").read_bytes(), 50_000_000)
    server.routes["/release.zip"] = Route(release.read_bytes())
    manifest(work / "m6.json", server.url("/release.zip"), member=MEMBER)
    scenario(f"release zip {release.stat().st_size / 1e6:.0f} MB, 0.6 MB member, by ranges", pull)
    served = sum(r.sent for r in server.requests_for("/release.zip"))
    total = release.stat().st_size
    server.close()
    shutil.rmtree(work)

    print(f"{'scenario':58} {'disk (polled)':>14} {'seconds':>8}  outcome")
    for name, outcome, peak, seconds in rows:
        print(f"{name:58} {peak:>14,} {seconds:>8.2f}  {outcome}")
    print(f"release zip: {served:,} bytes served of {total:,} ({served / total:.3%})")
    print(f"peak RSS of this process (building the test archives included): {peak_rss() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
