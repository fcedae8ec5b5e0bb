"""Regenerate the pictures in docs/ from the bundled demo models, offline, with the `inpaint` command.

    python docs/make_pictures.py

Runs, with an empty model cache and INPAINT_OFFLINE=1, the README's main command (`pconv-tiny` on
the shipped example, with `--panel`), then `--save-intermediates` with `gatedconv-tiny` and
`pconv-tiny`. The restored photo and the panel are copied as written; the gate pictures are
re-encoded with a 64-colour palette (their heat-map ramps survive it) to stay under 300 KB each.
Prints the per-layer gate statistics of `stats.json` as the Markdown table of docs/demo-models.md,
and the restored photo's scores against `examples/portrait_original.png` that the page quotes (hole
PSNR, in the torn corner, the largest hole region, and outside it; the corner's colour error), and
the same for one pass at full scale (`--strategy crop`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inpaint_cli.review.metrics import psnr

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
EXAMPLE = ["examples/portrait_damaged.png", "--mask", "examples/portrait_mask.png"]
MAIN_MODEL = "pconv-tiny"
GATE_LAYERS = ("stage1.conv1", "stage1.down_block1.conv2", "stage1.conv_bn3")
"""The first gated layer (it sees the mask), one at 1/2 and one dilated layer at 1/4 resolution."""
GATE_PALETTE_COLOURS = 64


def inpaint(*arguments: str, home: Path) -> None:
    environment = {**os.environ, "INPAINT_OFFLINE": "1", "INPAINT_HOME": str(home)}
    command = [sys.executable, "-m", "inpaint_cli", "run", *EXAMPLE, *arguments]
    subprocess.run(command, cwd=ROOT, env=environment, check=True)


def gate_table(stats_file: Path) -> str:
    """Markdown: mean gate inside and outside the hole for every gated layer, in network order."""
    layers = json.loads(stats_file.read_text())["layers"]
    lines = ["| layer | mean gate in the hole | outside | difference |", "|---|---|---|---|"]
    for name, values in layers.items():
        if name.startswith("gate."):
            inside, outside = values["mean_inside_hole"], values["mean_outside_hole"]
            lines.append(f"| `{name[5:]}` | {inside:.3f} | {outside:.3f} | {inside - outside:+.3f} |")
    return "\n".join(lines)


def corner_scores(restored: Path) -> str:
    """Hole PSNR of the restored example (whole hole, torn corner, the rest) and the corner's colour:
    the mean CIELAB chroma distance sqrt(Δa*² + Δb*²) to the original, the fill's largest chroma and
    the original's mean chroma there (OpenCV's 8-bit a*, b* are CIELAB units offset by 128)."""
    original = np.asarray(Image.open(ROOT / "examples/portrait_original.png").convert("RGB"))
    filled = np.asarray(Image.open(restored).convert("RGB"))
    hole = np.asarray(Image.open(ROOT / EXAMPLE[2]).convert("L")) > 127
    count, regions, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    corner = regions == 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
    filled_ab, original_ab = (
        cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)[corner][:, 1:].astype(np.float64) - 128
        for pixels in (filled, original)
    )
    distance = np.hypot(*(filled_ab - original_ab).T).mean()
    largest, mean = np.hypot(*filled_ab.T).max(), np.hypot(*original_ab.T).mean()
    scores = [psnr(filled, original, region) for region in (hole, corner, hole & ~corner)]
    assert all(map(math.isfinite, scores))
    return (
        f"hole PSNR {scores[0]:.2f} dB; torn corner ({int(corner.sum()):,} px) {scores[1]:.2f} dB, "
        f"the rest {scores[2]:.2f} dB; corner chroma distance {distance:.2f}, largest chroma "
        f"{largest:.1f} (the original's mean {mean:.1f})"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        inpaint("--model", MAIN_MODEL, "--panel", "-o", str(work / "restored.png"), home=work / "home")
        shutil.copyfile(work / "restored.png", DOCS / f"portrait_{MAIN_MODEL}.png")
        shutil.copyfile(work / "restored_panel.png", DOCS / f"portrait_{MAIN_MODEL}_panel.png")
        for model in ("gatedconv-tiny", "pconv-tiny"):
            inpaint(
                "--model",
                model,
                "--save-intermediates",
                str(work / model),
                "-o",
                str(work / f"{model}.png"),
                home=work / "home",
            )
        pictures = work / "pconv-tiny" / "portrait_damaged"
        shutil.copyfile(pictures / "mask_updates.png", DOCS / "mask_updates.png")
        gates = work / "gatedconv-tiny" / "portrait_damaged"
        for layer in GATE_LAYERS:
            picture = Image.open(gates / f"gates_{layer}.png").convert("RGB")
            palette = picture.quantize(
                GATE_PALETTE_COLOURS, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
            )
            palette.save(DOCS / f"gates_{layer}.png", optimize=True)
        print(gate_table(gates / "stats.json"))
        print(f"{MAIN_MODEL}, --strategy auto:", corner_scores(DOCS / f"portrait_{MAIN_MODEL}.png"))
        # The page compares it with one pass at full scale, the fill before `auto` filled deep cores first.
        inpaint("--model", MAIN_MODEL, "--strategy", "crop", "-o", str(work / "crop.png"), home=work / "home")
        print(f"{MAIN_MODEL}, --strategy crop:", corner_scores(work / "crop.png"))


if __name__ == "__main__":
    main()
