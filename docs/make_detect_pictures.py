"""Make `docs/finding_damage.png` offline with bundled models: detect, then fill, the README example.

    python docs/make_detect_pictures.py

`examples/portrait_damaged.png` carries damage drawn by `examples/make_example.py`, so its exact mask
(`portrait_mask.png`) measures the detection. The picture is: the damaged print | what `inpaint
detect` finds with each detector that needs no download (scratch-tiny, classical), tinted red |
`inpaint run --mask auto --model pconv-tiny` (scratch-tiny's mask, dilated, filled by the bundled
PConv). Prints each detection's precision, recall, F1 and IoU against the exact mask, and the fill's
PSNR.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from inpaint_cli.detect.detectors import overlay_picture
from inpaint_cli.review import visualize

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples"
OUTPUT = ROOT / "docs" / "finding_damage.png"


def psnr(first: np.ndarray, second: np.ndarray, where: np.ndarray) -> float:
    error = np.mean((first[where].astype(np.float64) - second[where].astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / error))


def main() -> None:
    damaged = np.asarray(Image.open(EXAMPLE / "portrait_damaged.png").convert("RGB"))
    original = np.asarray(Image.open(EXAMPLE / "portrait_original.png").convert("RGB"))
    truth = np.asarray(Image.open(EXAMPLE / "portrait_mask.png")) > 127
    detectors = ("scratch-tiny", "classical")
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "restored.png"
        inpaint = [sys.executable, "-m", "inpaint_cli"]
        for detector in detectors:
            out = Path(folder) / detector
            detect = [*inpaint, "detect", EXAMPLE / "portrait_damaged.png", "-o", out, "--detector", detector]
            subprocess.run(detect, check=True)
            found[detector] = np.asarray(Image.open(out / "portrait_damaged_mask.png")) > 127
        auto = [
            "--mask",
            "auto",
            "--detector",
            "scratch-tiny",
            "--model",
            "pconv-tiny",
            "--save-mask",
            "-o",
            result,
        ]
        subprocess.run([*inpaint, "run", EXAMPLE / "portrait_damaged.png", *auto], check=True)
        filled_hole = np.asarray(Image.open(Path(folder) / "restored_mask.png")) > 127
        restored = np.asarray(Image.open(result).convert("RGB"))
    for detector, mask in found.items():
        hits = np.count_nonzero(mask & truth)
        precision, recall = hits / max(mask.sum(), 1), hits / truth.sum()
        print(
            f"{detector} against the exact mask: precision {precision:.2f}, recall {recall:.2f}, "
            f"F1 {2 * precision * recall / max(precision + recall, 1e-9):.2f}, "
            f"IoU {hits / np.count_nonzero(mask | truth):.2f}"
        )
    covered = np.count_nonzero(filled_hole & truth) / truth.sum()
    print(f"the hole run --mask auto filled (scratch-tiny, dilated) covers {covered:.0%} of the damage")
    print(
        f"PSNR inside the exact mask: damaged {psnr(damaged, original, truth):.1f} dB, "
        f"restored {psnr(restored, original, truth):.1f} dB"
    )
    tiles = [
        visualize.label(Image.fromarray(damaged), "damaged print"),
        *(
            visualize.label(Image.fromarray(overlay_picture(damaged, mask)), f"inpaint detect ({detector})")
            for detector, mask in found.items()
        ),
        visualize.label(Image.fromarray(restored), "run --mask auto (scratch-tiny, pconv-tiny)"),
    ]
    visualize.save_png(OUTPUT, visualize.hstack(tiles))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
