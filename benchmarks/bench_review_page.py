"""Review page for a large batch: build time, page size, rebuild time and opening time in Chromium.

Makes a synthetic finished batch of N small images (inputs, masks, outputs; 10 % failed, 10 %
skipped) and its JSON report, then measures `review.build_page`: the first build (every thumbnail
made), a rebuild (every thumbnail reused) and the page alone (no thumbnails), each the median of
`--repeat` runs; then how long headless Chromium takes to open the page and show the first rows.

    python benchmarks/bench_review_page.py [--images 10000] [--side 160] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from inpaint_cli.review import page as review


def make_batch(root: Path, count: int, side: int) -> Path:
    rng = np.random.default_rng(0)
    height = side * 3 // 4
    hole = np.zeros((height, side), dtype=np.uint8)
    hole[height // 3 : height // 2, side // 4 : side // 2] = 255
    records = []
    for index in range(count):
        folder = f"box{index // 1000:02d}"
        image = root / "scans" / folder / f"scan_{index:05d}.jpg"
        mask = root / "masks" / folder / f"scan_{index:05d}.png"
        output = root / "out" / folder / f"scan_{index:05d}.jpg"
        for path in (image, mask, output):
            path.parent.mkdir(parents=True, exist_ok=True)
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (height, side, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(image), pixels)
        cv2.imwrite(str(mask), hole)
        status = "failed" if index % 10 == 8 else "skipped" if index % 10 == 9 else "done"
        if status != "failed":
            cv2.imwrite(str(output), cv2.inpaint(pixels, hole, 3, cv2.INPAINT_TELEA))
        records.append(
            {
                "image": str(image),
                "masks": [str(mask)],
                "output": str(output),
                "status": status,
                "strategy": "auto: 1 crop box" if status == "done" else None,
                "seconds": 0.8 + (index % 7) / 10 if status == "done" else 0.0,
                "error": f"{mask}: mask is 10x10" if status == "failed" else None,
                "warnings": [],
            }
        )
    report = root / "report.json"
    report.write_text(json.dumps({"summary": {}, "inputs": records}))
    return report


def timed(action, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def open_in_chromium(page: Path, repeat: int) -> float | None:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        times = []
        for _ in range(repeat):
            tab = browser.new_page()
            started = time.perf_counter()
            tab.goto(page.resolve().as_uri(), wait_until="domcontentloaded")
            tab.wait_for_selector("article.row")
            times.append(time.perf_counter() - started)
            tab.close()
        browser.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        report = make_batch(root, args.images, args.side)
        print(f"synthetic batch of {args.images} images made in {time.perf_counter() - started:.0f} s")
        rows = review.rows_from_report(review.load_report(report))
        page = root / "review" / "page.html"
        first_started = time.perf_counter()
        first = review.build_page(rows, page)
        first_seconds = time.perf_counter() - first_started
        rebuild, again = timed(lambda: review.build_page(rows, page), args.repeat)
        bare_page = root / "bare.html"
        bare, alone = timed(lambda: review.build_page(rows, bare_page, thumbnails=False), args.repeat)
        thumbs = sum(path.stat().st_size for path in (root / "review" / "page_files").glob("*.jpg"))
        opening = open_in_chromium(page, args.repeat)
        print(f"first build (all thumbnails): {first_seconds:.1f} s, {first.thumbnails_written} thumbnails")
        print(f"rebuild (thumbnails reused):  {rebuild:.2f} s (median of {args.repeat})")
        print(f"page alone (no thumbnails):   {bare:.2f} s")
        size = first.page_bytes
        print(f"page size: {size / 1e6:.2f} MB ({size / args.images:.0f} B per image)")
        each = thumbs / max(first.thumbnails_written, 1) / 1e3
        print(f"thumbnails: {thumbs / 1e6:.1f} MB ({each:.1f} KB each)")
        if opening is not None:
            print(f"Chromium: first rows shown {opening:.2f} s after opening (median of {args.repeat})")
        assert again.thumbnails_written == 0 and alone.rows == args.images


if __name__ == "__main__":
    main()
