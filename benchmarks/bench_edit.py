"""`inpaint edit` on a 24-megapixel scan: how long the photo takes to open, and its mask to save.

A 6000×4000 scan (JPEG and PNG; smooth picture with grain) and its detected mask (8-bit PNG, thin
scratches and a torn corner) are served by the real command (`python -m inpaint_cli edit`, a new
server each run so that nothing is decoded yet) and opened in Debian's Chromium (headless, through
Playwright):

- open: from asking for the printed address until the photo and its mask are on screen (the token
  exchange, the page, the listing, the downscaled view and the mask);
- save in the page: a stroke at 1:1, then from the page starting to save until it shows "saved"
  (the 1-bit PNG made in the browser, the upload, the server's checks, the atomic 8-bit write, the
  record; the page's 0.7 s wait for more changes is not counted);
- save on the server: the same upload sent directly (what the server's part costs);
- next: pressing N on the JPEG until the PNG, decoded ahead meanwhile, is on screen (the usual way
  through a batch).

Medians of `--runs` runs; the CPU is named, and the machine may be shared (its load is printed).
On a busy machine wall times say little, so the CPU time the server and the browser spent on the
open (all their processes, user and system) is printed too: about what the open takes on an idle
core.
Run: `python benchmarks/bench_edit.py --runs 5`.
"""

from __future__ import annotations

import argparse
import http.client
import io
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from measure import cpu_model_and_flags, load_note
from PIL import Image

SIZE = (4000, 6000)  # height, width: 24 megapixels
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}
NAMES = ("scan.jpg", "scan_png.png")
"""In the page's order: the JPEG's `next` opens the PNG, decoded ahead while the JPEG was open."""
SAVE_WATCH = """() => {
    const state = document.getElementById("save-state");
    window.benchSave = {};
    new MutationObserver(() => {
        const now = performance.now();
        if (state.textContent === "saving…" && !window.benchSave.start) window.benchSave.start = now;
        if (state.textContent === "saved" && window.benchSave.start) window.benchSave.end = now;
    }).observe(state, {childList: true, characterData: true, subtree: true});
}"""


def make_scan(folder: Path) -> tuple[Path, Path]:
    """`photos/scan.jpg`, `photos/scan_png.png` (`NAMES`) and `masks/<stem>_mask.png` for each."""
    photos, masks = folder / "photos", folder / "masks"
    photos.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (SIZE[0] // 50, SIZE[1] // 50, 3), dtype=np.uint8)
    picture = cv2.resize(coarse, SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    picture = np.clip(picture.astype(np.int16) + rng.integers(-6, 7, picture.shape), 0, 255).astype(np.uint8)
    Image.fromarray(picture).save(photos / "scan.jpg", quality=92)
    Image.fromarray(picture).save(photos / "scan_png.png", compress_level=6)
    hole = np.zeros(SIZE, np.uint8)
    for _ in range(40):
        start = tuple(int(v) for v in rng.integers(0, SIZE[1], 2) % (SIZE[1], SIZE[0]))
        end = tuple(int(v) for v in rng.integers(0, SIZE[1], 2) % (SIZE[1], SIZE[0]))
        cv2.line(hole, start, end, 255, int(rng.integers(2, 6)))
    cv2.fillPoly(hole, [np.array([[5200, 0], [6000, 0], [6000, 900]])], 255)
    for stem in ("scan", "scan_png"):
        Image.fromarray(hole).save(masks / f"{stem}_mask.png")
    return photos, masks


def start_server(photos: Path, masks: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "inpaint_cli", "edit", str(photos), "--masks", str(masks), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return process, process.stdout.readline().split()[1]


def cpu_seconds() -> float:
    """User and system CPU time of every process this one started (the server, the browser's)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        total += times.user + times.system
    return total


def one_run(browser, photos: Path, masks: Path, name: str, run: int) -> tuple[float, ...]:
    """(open, open's CPU time, save in the page, save on the server, next) in seconds, with a new
    server; each run paints elsewhere (a stroke over pixels painted already changes nothing). `next`:
    from pressing N until the next photo (decoded ahead meanwhile) is shown; NaN for the last one."""
    process, url = start_server(photos, masks)
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.wait_for_timeout(500)  # the server's start-up is not the open
        cpu = cpu_seconds()
        started = time.perf_counter()
        page.goto(f"{url}#{name}")
        page.wait_for_selector(
            f'#canvas[data-ready="1"][data-photo="{name}"]', state="attached", timeout=60000
        )
        opened = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
        page.select_option("#zoom", "1")
        page.evaluate(SAVE_WATCH)
        page.mouse.move(600, 200 + 60 * run)
        page.mouse.down()
        page.mouse.move(700, 230 + 60 * run, steps=6)
        page.mouse.up()
        page.wait_for_function("() => window.benchSave.end", timeout=60000)
        in_page = page.evaluate("() => (window.benchSave.end - window.benchSave.start) / 1000")
        on_server = server_save(url, masks / f"{Path(name).stem}_mask.png", name)
        following = math.nan
        if name != NAMES[-1]:
            started = time.perf_counter()
            page.keyboard.press("n")
            page.wait_for_selector(
                f'#canvas[data-ready="1"][data-photo="{NAMES[NAMES.index(name) + 1]}"]',
                state="attached",
                timeout=60000,
            )
            following = time.perf_counter() - started
    finally:
        page.close()
        process.terminate()
        process.wait()
    return opened, cpu, in_page, on_server, following


def server_save(url: str, mask: Path, name: str) -> float:
    """Seconds for the server to take the current mask back as the page sends it (1-bit PNG)."""
    hole = np.asarray(Image.open(mask)) > 127
    buffer = io.BytesIO()
    Image.fromarray(hole).save(buffer, format="PNG")
    port, token = int(url.split(":")[2].split("/")[0]), url.split("token=")[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    connection.request("PUT", f"/api/mask?name={name}", buffer.getvalue(), {"X-Inpaint-Token": token})
    response = connection.getresponse()
    response.read()
    seconds = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"save refused: {response.status}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="at most 10 (each paints its own row)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    model, flags = cpu_model_and_flags()
    print(f"CPU: {model} [{' '.join(flags)}]; {load_note()}")
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        photos, masks = make_scan(Path(folder))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        print("photo              open (s)  open CPU (s)  save in page (s)  save on server (s)  next (s)")
        for name in NAMES:
            results = [one_run(browser, photos, masks, name, run) for run in range(args.runs)]
            medians = [statistics.median(column) for column in zip(*results, strict=True)]
            size = (photos / name).stat().st_size / 2**20
            columns = "".join(
                f"{value:{width}.2f}" for value, width in zip(medians, (8, 14, 18, 20, 10), strict=True)
            )
            print(f"{name:12} {size:4.1f} MB{columns}")
            print("   runs: " + "; ".join(" / ".join(f"{value:.2f}" for value in run) for run in results))
        browser.close()


if __name__ == "__main__":
    main()
