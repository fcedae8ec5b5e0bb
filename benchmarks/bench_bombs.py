"""Peak memory of the small files that asked for much (issue 27): each case in a fresh process.

- `detector`: the bundled detector's 2.4 MB of tensors whose metadata asks for wf 8 / depth 6 (a
  9.7 G-parameter network, 23 GB before the meta-device ceiling): refused.
- `report` / `compare` / `run`: an all-zero grey PNG of --megapixels (240 MP is 233 KB) with a small
  hole: `inpaint report` (thumbnails and findings), `inpaint compare --models telea` (the grid) and
  `inpaint run --model telea`, for comparison, each at the default --max-pixels (250 MP).

    python benchmarks/bench_bombs.py [--megapixels 240]

Prints the peak RSS (VmHWM) of each command, and of `python -c "import torch"` as the floor.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from measure import machine_summary

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DETECTOR = ROOT / "inpaint_cli" / "bundled" / "scratch-tiny.safetensors"
PEAK = (
    "import atexit\n"
    "atexit.register(lambda: print('VmHWM', next(l for l in open('/proc/self/status')"
    " if l.startswith('VmHWM')).split()[1]))\n"
)
"""Prepended to each child: prints its own peak resident size (KiB) when it exits."""


def zero_png(path: Path, width: int, height: int) -> None:
    """An all-zero 8-bit grey PNG, compressed row by row (never held whole)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def hole_png(path: Path, width: int, height: int) -> None:
    """A mask of the same size: zero but a 40 px square, written without a full-size array."""
    packer = zlib.compressobj(9)
    rows = []
    for y in range(height):
        line = bytearray(width + 1)
        if 100 <= y < 140:
            line[101:141] = b"\xff" * 40
        rows.append(packer.compress(bytes(line)))
    data = b"".join(rows) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def peak_of(code: str, *args: str) -> tuple[int, str]:
    """(peak RSS in MiB, last line of output) of `python -c code args` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK + code, *args], capture_output=True, text=True, timeout=3600
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    peak = next(int(line.split()[1]) for line in reversed(lines) if line.startswith("VmHWM"))
    said = [line for line in lines if not line.startswith("VmHWM")]
    return peak // 1024, said[-1] if said else ""


def cli(*args: str) -> str:
    return (
        f"import sys\nfrom inpaint_cli.cli.app import main\nsys.argv = ['inpaint', *{list(args)!r}]\nmain()\n"
    )


def detector_bomb(folder: Path) -> Path:
    from inpaint_cli.checkpoints.containers import read_checkpoint, save_converted

    bundled = read_checkpoint(BUNDLED_DETECTOR)
    config = {**bundled.config, "wf": 8, "depth": 6}
    return save_converted(
        folder / "bomb.safetensors", bundled.state_dict, family="scratch", variant="x", config=config
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megapixels", type=float, default=240.0)
    args = parser.parse_args()
    print(machine_summary())
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        side = round((args.megapixels * 1e6) ** 0.5)
        image, mask = folder / "zero.png", folder / "mask.png"
        zero_png(image, side, side)
        hole_png(mask, side, side)
        record = {"image": str(image), "masks": [str(mask)], "output": str(image), "status": "done"}
        (folder / "r.json").write_text(json.dumps({"inputs": [record]}))
        bomb = detector_bomb(folder)
        sizes = f"{image.stat().st_size / 1e3:.0f} KB; detector file {bomb.stat().st_size / 1e6:.1f} MB"
        print(f"{side}x{side} ({side * side / 1e6:.0f} MP) zero PNG: {sizes}")
        cases = {
            "import torch (floor)": "import torch",
            "detect --checkpoint (wf 8, depth 6)": cli("detect", str(image), "--checkpoint", str(bomb)),
            "report (thumbnails)": cli("report", str(folder / "r.json"), "--html", str(folder / "p.html")),
            "compare --models telea": cli(
                "compare", str(image), "--mask", str(mask), "--models", "telea", "-o", str(folder / "g.png")
            ),
            "run --model telea": cli(
                "run", str(image), "--mask", str(mask), "--model", "telea", "-o", str(folder / "o.png")
            ),
        }
        for name, code in cases.items():
            peak, said = peak_of(code)
            print(f"{name:40s} peak RSS {peak:6d} MiB   {said[:110]}")


if __name__ == "__main__":
    main()
