"""Detection speed per megapixel in each mode, and peak memory on a 48 MP scan.

Each measurement runs in a fresh process (`--child`), so its peak RSS (VmHWM) is its own: decoding
the file, detecting, writing the mask, as `inpaint detect` does. Speed: median of --repeats runs
on a 2 MP picture, in seconds per megapixel (BOPBtL's full network in high-res: once, on 0.25 MP).
Memory: one run on an 8000×6000 (48 MP) JPEG.

    python benchmarks/bench_detect.py [--threads 1] [--repeats 3] [--skip-48mp]

Networks: `scratch-tiny` (bundled), BOPBtL's architecture at its published width (wf = 6, 37.6 M
parameters, random weights: the speed and memory of the real detector, not its output), and the
small fixture network; `classical` has no network.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import machine_summary, peak_rss, pin_threads
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "inpaint_cli" / "bundled" / "scratch-tiny.safetensors"
FIXTURE = ROOT / "tests" / "data" / "scratch" / "small_detection.pt"
GIB = 1024**3
RSS_LIMIT = 2 * GIB


def synthetic_scan(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A smooth sepia picture with grain and a few thin scratches, written as JPEG (quality 92)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = cv2.resize(rng.uniform(60, 200, (12, 16)).astype(np.float32), (width, height), cv2.INTER_CUBIC)
    grey = np.clip(small + rng.normal(0, 4, (height, width)).astype(np.float32), 0, 255)
    for _ in range(12):
        start = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        end = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        cv2.line(grey, start, end, 245.0, int(rng.integers(2, 6)))
    rgb = np.stack([grey, grey * 0.87, grey * 0.68], axis=-1).round().astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=92)


def child(detector_name: str, mode: str, image: Path, mask: Path, threads: int) -> None:
    """One detection in this process; prints seconds and peak RSS as JSON."""
    from inpaint_cli.detect.classical import ClassicalDetector
    from inpaint_cli.detect.network import Mode, NetworkDetector
    from inpaint_cli.imaging import imageio
    from inpaint_cli.imaging.masks import write_mask
    from inpaint_cli.models.scratch import ScratchUNet

    pin_threads(threads)
    if detector_name == "classical":
        detector = ClassicalDetector()
    elif detector_name == "bopbtl-wf6":
        detector = NetworkDetector(ScratchUNet({"wf": 6}).eval(), detector_name)
    else:
        detector = NetworkDetector.from_file(
            TINY if detector_name == "scratch-tiny" else FIXTURE, detector_name
        )
    started = time.perf_counter()
    picture = imageio.read_image(image)
    detection = detector.detect(picture.pixels, Mode(mode))
    write_mask(mask, detection.mask)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss(), "pixels": int(np.prod(picture.size))}))


def measure(detector: str, mode: str, image: Path, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, __file__, "--child", detector, mode, str(image), f"{folder}/m.png"]
        result = subprocess.run(
            [*command, "--threads", str(threads)], capture_output=True, text=True, check=True
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


RUNS = [
    ("classical", "high_res"),
    ("scratch-tiny", "high_res"),
    ("scratch-tiny", "full_size"),
    ("fixture", "full_size"),
    ("fixture", "scale_256"),
    ("fixture", "high_res"),
    ("bopbtl-wf6", "full_size"),
    ("bopbtl-wf6", "scale_256"),
]
SLOW_RUN = ("bopbtl-wf6", "high_res")
"""BOPBtL's full network on every pixel: measured once, on a 0.25 MP picture."""
LARGE_RUNS = [
    ("classical", "high_res"),
    ("scratch-tiny", "high_res"),
    ("bopbtl-wf6", "full_size"),
    ("bopbtl-wf6", "scale_256"),
]
"""On 48 MP; BOPBtL's full network in high-res would take hours on one CPU core."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("DETECTOR", "MODE", "IMAGE", "MASK"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-48mp", action="store_true")
    parser.add_argument(
        "--only", nargs="*", help="measure only these detectors (e.g. scratch-tiny classical)"
    )
    parser.add_argument("--skip-small", action="store_true", help="only the 48 MP scan")
    args = parser.parse_args()
    if args.child:
        detector, mode, image, mask = args.child
        child(detector, mode, Path(image), Path(mask), args.threads)
        return

    def wanted(run: tuple[str, str]) -> bool:
        return (run[0] != "scratch-tiny" or TINY.is_file()) and (not args.only or run[0] in args.only)

    runs = [run for run in RUNS if wanted(run)] if not args.skip_small else []
    print(machine_summary())
    with tempfile.TemporaryDirectory() as folder:
        medium = Path(folder) / "scan_2mp.jpg"
        synthetic_scan(medium, 1732, 1155)
        print(
            f"## Seconds per megapixel (2 MP picture, median of {args.repeats}, {args.threads} thread(s))\n"
        )
        print("| detector | mode | s/MP | peak RSS |\n|---|---|---|---|")
        for detector, mode in runs:
            results = [measure(detector, mode, medium, args.threads) for _ in range(args.repeats)]
            per_mp = statistics.median(r["seconds"] / (r["pixels"] / 1e6) for r in results)
            rss = max(r["peak_rss"] for r in results) / GIB
            print(f"| {detector} | {mode} | {per_mp:.2f} | {rss:.2f} GiB |", flush=True)
        if wanted(SLOW_RUN) and not args.skip_small:
            small = Path(folder) / "scan_025mp.jpg"
            synthetic_scan(small, 612, 408)
            result = measure(*SLOW_RUN, small, args.threads)
            per_mp = result["seconds"] / (result["pixels"] / 1e6)
            print(
                f"| {SLOW_RUN[0]} | {SLOW_RUN[1]} (0.25 MP, once) | {per_mp:.2f} "
                f"| {result['peak_rss'] / GIB:.2f} GiB |"
            )
        if args.skip_48mp:
            return
        large = Path(folder) / "scan_48mp.jpg"
        synthetic_scan(large, 8000, 6000)
        print("\n## 48 MP scan (8000×6000): one run each\n")
        print("| detector | mode | seconds | peak RSS | under 2 GiB |\n|---|---|---|---|---|")
        for detector, mode in [run for run in LARGE_RUNS if wanted(run)]:
            result = measure(detector, mode, large, args.threads)
            rss = result["peak_rss"]
            print(
                f"| {detector} | {mode} | {result['seconds']:.1f} | {rss / GIB:.2f} GiB | "
                f"{'yes' if rss < RSS_LIMIT else 'NO'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
