"""Regenerate the pictures in docs/ from the bundled demo models, offline, with the `inpaint` command.

    python docs/make_pictures.py

Runs, with an empty model cache and INPAINT_OFFLINE=1, the README's main command (`pconv-tiny` on
the shipped example, with `--panel`), then `--save-intermediates` with `gatedconv-tiny` and
`pconv-tiny`. The restored photo and the panel are copied as written; the gate pictures are
re-encoded with a 64-colour palette (their heat-map ramps survive it) to stay under 300 KB each.
Prints the per-layer gate statistics of `stats.json` as the Markdown table of the README.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

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


if __name__ == "__main__":
    main()
