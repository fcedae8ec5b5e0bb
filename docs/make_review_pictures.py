"""The README's pictures of reviewing and comparing, made offline from the shipped example.

- docs/compare_grid.png: `inpaint compare` of the bundled models and OpenCV's methods on
  examples/portrait_damaged.png against portrait_original.png; the table is printed (Markdown).
- docs/review_page.png: the review page (`inpaint run ... --html`) of a small batch cut from the
  example (one mask of the wrong size, one hole covering half its crop), shot in headless Chromium.

    python docs/make_review_pictures.py
"""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from inpaint_cli.options import DEFAULT_COMPARE_MODELS
from inpaint_cli.review import comparison, metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"


def comparison_grid(repeat: int = 3) -> None:
    """The grid and table of the README; each time is the median of `repeat` fills (a shared CPU is noisy)."""
    from inpaint_cli.imaging import imageio, masks

    pixels = imageio.read_image(EXAMPLES / "portrait_damaged.png").pixels
    hole = masks.read_mask(EXAMPLES / "portrait_mask.png", size=pixels.shape[:2])
    original = imageio.read_image(EXAMPLES / "portrait_original.png").pixels
    fillers, load_seconds = comparison.load_models(DEFAULT_COMPARE_MODELS, device="cpu", precision="fp32")
    runs = [
        comparison.run_comparison("portrait_damaged.png", pixels, hole, fillers, original)
        for _ in range(repeat)
    ]
    result = runs[-1]
    result.load_seconds = load_seconds
    for index, model_result in enumerate(result.results):
        model_result.seconds = statistics.median(run.results[index].seconds for run in runs)
    comparison.make_grid(result).picture.save(DOCS / "compare_grid.png", optimize=True)
    print("| model | PSNR hole | SSIM hole | PSNR whole | SSIM whole | time |")
    print("|---|---|---|---|---|---|")
    for row in result.rows():
        cells = [f"{row['psnr_hole']:.2f} dB", f"{row['ssim_hole']:.3f}", f"{row['psnr_whole']:.2f} dB"]
        cells += [f"{row['ssim_whole']:.4f}", f"{row['seconds']:.2f} s"]
        print(f"| {row['model']} | {' | '.join(cells)} |")
    damaged = metrics.psnr(result.pixels, result.original, result.hole)
    print(f"(the damaged input: {damaged:.2f} dB in the hole)" if math.isfinite(damaged) else "")


def review_page() -> None:
    damaged = np.asarray(Image.open(EXAMPLES / "portrait_damaged.png").convert("RGB"))
    mask = np.asarray(Image.open(EXAMPLES / "portrait_mask.png").convert("L"))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "scans").mkdir()
        (root / "masks").mkdir()
        for row in range(2):
            for column in range(2):
                name = f"portrait_{row}{column}.png"
                box = (slice(row * 192, row * 192 + 192), slice(column * 192, column * 192 + 192))
                Image.fromarray(damaged[box]).save(root / "scans" / name)
                Image.fromarray(mask[box]).save(root / "masks" / name)
        half = mask[:192, :192].copy()
        half[:, :96] = 255  # half of this crop is hole: flagged as suspicious
        Image.fromarray(damaged[:192, :192]).save(root / "scans" / "torn_corner.png")
        Image.fromarray(half).save(root / "masks" / "torn_corner.png")
        Image.fromarray(damaged[192:, 192:]).save(root / "scans" / "wrong_mask.png")
        Image.fromarray(mask[:100, :100]).save(root / "masks" / "wrong_mask.png")
        page = root / "review.html"
        command = [sys.executable, "-m", "inpaint_cli", "run", "scans", "--mask", "masks", "-o", "out"]
        command += ["--model", "pconv-tiny", "--device", "cpu", "--html", str(page)]
        subprocess.run(command, check=False, cwd=root)
        shoot(page, DOCS / "review_page.png")


def shoot(page: Path, target: Path) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=args)
        tab = browser.new_page(viewport={"width": 1000, "height": 760})
        tab.goto(page.resolve().as_uri())
        tab.wait_for_function("Array.from(document.images).every((img) => !img.src || img.complete)")
        tab.locator("article.row").nth(1).locator(".slider").fill("35")
        tab.screenshot(path=str(target))
        browser.close()
    Image.open(target).convert("RGB").save(target, optimize=True)


if __name__ == "__main__":
    comparison_grid()
    review_page()
