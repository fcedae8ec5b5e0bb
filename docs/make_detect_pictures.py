"""Make `docs/finding_damage.png` offline: what the detectors find on real damaged prints.

    python docs/make_detect_pictures.py --prints CHECKOUT/test_images/old_w_scratch

CHECKOUT is a clone of microsoft/Bringing-Old-Photos-Back-to-Life: the prints are the four real
scans with scratches, cracks and tears it publishes in `test_images/old_w_scratch/` (not part of
this repository, never trained or tuned on). Each row: the print | what `inpaint detect` finds with each
detector that needs no download (scratch-tiny, classical), tinted red | `inpaint run --mask auto
--model pconv-tiny` (scratch-tiny's mask, dilated, filled by the bundled PConv). Prints the share of
each print every detector marks; there is no exact mask of real damage to score against.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from inpaint_cli.detect.detectors import overlay_picture
from inpaint_cli.review import visualize

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "finding_damage.png"
DETECTORS = ("scratch-tiny", "classical")
ROW_HEIGHT = 256


def rgb(path: Path) -> np.ndarray:
    """As `inpaint` reads a print: RGBA composited on white."""
    picture = Image.open(path)
    if picture.mode == "RGBA":
        background = Image.new("RGBA", picture.size, "white")
        picture = Image.alpha_composite(background, picture)
    return np.asarray(picture.convert("RGB"))


def shown(picture: np.ndarray, label: str) -> Image.Image:
    image = Image.fromarray(picture)
    width = round(image.width * ROW_HEIGHT / image.height)
    return visualize.label(image.resize((width, ROW_HEIGHT), Image.Resampling.LANCZOS), label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prints", type=Path, required=True, help="BOPBtL's test_images/old_w_scratch")
    args = parser.parse_args()
    prints = sorted(args.prints.glob("*.png"))
    if not prints:
        sys.exit(f"error: {args.prints}: no PNG prints (a checkout of BOPBtL's test_images/old_w_scratch)")
    inpaint = [sys.executable, "-m", "inpaint_cli"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for detector in DETECTORS:
            command = [*inpaint, "detect", args.prints, "-o", Path(folder) / detector, "--detector", detector]
            subprocess.run(command, check=True)
        restored = Path(folder) / "restored"
        auto = ["--mask", "auto", "--detector", "scratch-tiny", "--model", "pconv-tiny", "-o", restored]
        subprocess.run([*inpaint, "run", args.prints, *auto], check=True)
        for path in prints:
            picture = rgb(path)
            tiles = [shown(picture, f"{path.name}: real print")]
            for detector in DETECTORS:
                mask = np.asarray(Image.open(Path(folder) / detector / f"{path.stem}_mask.png")) > 127
                print(f"{path.name}: {detector} marks {mask.mean():.1%}")
                tiles.append(shown(overlay_picture(picture, mask), f"inpaint detect ({detector})"))
            result = np.asarray(Image.open(restored / path.name).convert("RGB"))
            tiles.append(shown(result, "run --mask auto (pconv-tiny)"))
            rows.append(visualize.hstack(tiles))
    width = max(row.width for row in rows)
    sheet = Image.new("RGB", (width, sum(row.height for row in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    visualize.save_png(OUTPUT, sheet)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
