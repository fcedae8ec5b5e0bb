"""CPU precisions per family: speed of bf16 and int8 against fp32, and their difference in the hole.

Speed: the released architectures (big-lama; DeepFill v2 at cnum 48; the PConv U-Net at depth 7,
width 64) with random weights (weights do not change the time), one runner pass per precision
(padding, normalisation and the network, as `inpaint run` does it), timed interleaved round after
round. Ratios compare the process's CPU time (with one thread, the compute time, which other
processes on a shared machine hardly inflate), median of per-round ratios. `auto` is what
`--precision auto` chooses on this machine (measured at load, as on a first use; its ratio is that
of the chosen precision's column), and what its measurement estimated for a 512² pass, with the time
the measurement took.

Accuracy: mean and max absolute difference from fp32 inside the hole (0..255 pixel levels) with the
official fixtures' weights (tests/data/<family>, random weights run by the official code) on their
case images and on the example photo, and with the bundled demo models on the example photo.

    python benchmarks/bench_precision.py [--sizes 512 1024] [--rounds 3] [--threads 1] [--skip-speed]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from measure import interleaved, machine_summary, pin_threads, ratio
from PIL import Image
from released import released_architecture

from inpaint_cli.engine import auto_precision
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.models.base import InpaintModel

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PRECISIONS = ("fp32", "bf16", "int8")
FIXTURES = {
    "lama": ("lama/small.ckpt", "lama", ["lama/case_b"]),
    "gatedconv pt": ("deepfill/pt_random.pth", "gatedconv", ["deepfill/pt_case_b", "deepfill/pt_case_c"]),
    "gatedconv tf": ("deepfill/tf_random.pth", "gatedconv", ["deepfill/tf_case_b", "deepfill/tf_case_c"]),
    "pconv": ("pconv/small.pth", "pconv", ["pconv/case_b"]),
}
BUNDLED = ("lama-tiny", "gatedconv-tiny", "pconv-tiny")


def centred_hole(side: int) -> torch.Tensor:
    hole = torch.zeros(1, 1, side, side)
    hole[..., side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1
    return hole


def speed_table(sizes: list[int], rounds: int, families: list[str]) -> None:
    print(
        "\n## Speed: one pass, ratio of process CPU time to fp32's (interleaved, median of per-round "
        "ratios; > 1 = faster)"
    )
    print(
        f"{'family':<10} {'side':>5} {'fp32 CPU s':>10} {'wall s':>7} {'bf16':>6} {'int8':>6}  "
        "auto (chosen at load)"
    )
    for family in families:
        network = released_architecture(family)
        with tempfile.TemporaryDirectory() as home:
            os.environ["INPAINT_HOME"] = home  # a first use: no cached choice or int8 plan
            loading: dict[str, float] = {}
            inpainters = {}
            for name in PRECISIONS:
                started = time.perf_counter()
                inpainters[name] = Inpainter(_copy(network), device="cpu", precision=name)
                loading[name] = time.perf_counter() - started
            os.environ["INPAINT_HOME"] = tempfile.mkdtemp(dir=home)
            started = time.perf_counter()
            chosen = Inpainter(_copy(network), device="cpu", precision="auto").precision
            choosing = time.perf_counter() - started
            fp32 = inpainters["fp32"]
            started = time.perf_counter()
            estimate = auto_precision.measure(fp32.network, fp32._pass_of, auto_precision.candidates())
            measuring = time.perf_counter() - started
        print(
            f"{family}: {inpainters['int8'].precision_summary}; first int8 load {loading['int8']:.1f} s "
            f"(fp32 {loading['fp32']:.1f} s); auto's measurement {measuring:.2f} s, its estimate at "
            f"{auto_precision.ESTIMATE_SIDE}²: "
            + ", ".join(
                f"{name} {estimate.seconds['fp32'] / seconds:.2f}x"
                for name, seconds in estimate.seconds.items()
                if name != "fp32"
            )
            + " (int8 with every layer)",
            flush=True,
        )
        for side in sizes:
            image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
            hole = centred_hole(side)
            passes: dict[str, Callable[[], object]] = {
                name: (lambda i=inpainter, x=image, h=hole: i.runner.predict(x, h))
                for name, inpainter in inpainters.items()
            }
            cpu: dict[str, list[float]] = {}
            wall = interleaved(passes, rounds=rounds, warmup=1, cpu_seconds=cpu)
            speedups = {name: ratio(cpu, "fp32", name) for name in inpainters}
            print(
                f"{family:<10} {side:>5} {statistics.median(cpu['fp32']):>10.2f} "
                f"{statistics.median(wall['fp32']):>7.2f} "
                f"{speedups['bf16']:>5.2f}x {speedups['int8']:>5.2f}x  "
                f"{chosen} ({speedups[chosen]:.2f}x; load with measurement {choosing:.0f} s)",
                flush=True,
            )


def _copy(network: InpaintModel) -> InpaintModel:
    import copy

    return copy.deepcopy(network)


def _read(path: Path, grey: bool = False) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("L" if grey else "RGB"))


def differences(
    load: Callable[[str], Inpainter], images: list[tuple[str, np.ndarray, np.ndarray]]
) -> list[str]:
    """Rows: image, and per precision the mean/max absolute difference from fp32 inside the hole."""
    loaded = {precision: load(precision) for precision in PRECISIONS}
    rows = []
    for label, pixels, hole in images:
        reference = loaded["fp32"].inpaint(pixels, hole).pixels.astype(np.int32)
        cells = []
        for precision in PRECISIONS[1:]:
            filled = loaded[precision].inpaint(pixels, hole).pixels.astype(np.int32)
            difference = np.abs(filled - reference)[hole]
            cells.append(f"{precision} {difference.mean():5.2f} / {difference.max():3d}")
        plan = loaded["int8"].int8_plan
        if plan is not None:
            cells.append(f"({len(plan.quantized)}/{len(plan.quantized) + len(plan.kept_float)} layers int8)")
        rows.append(f"{label:<22} " + "   ".join(cells))
    return rows


def accuracy_tables() -> None:
    photo = ("example photo 384²", _read(ROOT / "examples/portrait_damaged.png"))
    photo_hole = _read(ROOT / "examples/portrait_mask.png", grey=True) > 127
    print("\n## Difference from fp32 inside the hole (0..255 levels): mean / max; target mean < 1")
    print("official fixtures' weights (tests/data):")
    for name, (checkpoint, family, cases) in FIXTURES.items():
        images = [
            (Path(case).name, _read(DATA / f"{case}_image.png"), _read(DATA / f"{case}_mask.png", True) > 127)
            for case in cases
        ]
        images.append((photo[0], photo[1], photo_hole))
        print(f"  {name}")
        for row in differences(
            lambda p, c=checkpoint, f=family: Inpainter.from_checkpoint(
                DATA / c, f, device="cpu", precision=p
            ),
            images,
        ):
            print(f"    {row}")
    print("bundled demo models:")
    for name in BUNDLED:
        rows = differences(
            lambda p, n=name: Inpainter.from_name(n, device="cpu", precision=p),
            [(photo[0], photo[1], photo_hole)],
        )
        print(f"  {name:<14} {rows[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="1: CPU time is compute time")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--families", nargs="+", default=["lama", "gatedconv", "pconv"])
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    pin_threads(args.threads)
    print(machine_summary())
    if not args.skip_accuracy:
        accuracy_tables()
    if not args.skip_speed:
        speed_table(args.sizes, args.rounds, args.families)


if __name__ == "__main__":
    main()
