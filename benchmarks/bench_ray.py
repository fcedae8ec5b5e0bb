"""Images per second of a batch run locally and on Ray (1 and 2 workers), and Ray's overhead per image.

    python benchmarks/bench_ray.py [--images 200] [--size 128] [--repeats 3] [--models telea,pconv-tiny]

A folder of small noise photos with one mask is restored by `engine.run_jobs` in this process (the
local batch, torch on one thread, as one worker has one CPU) and by `distributed.run_on_ray` on a
local cluster of 2 CPUs with 1 and 2 workers. For Ray, the start (workers starting and loading the
model) is timed apart from the steady state (first result to last), which gives images/s; the
overhead per image is 1/rate(Ray, 1 worker) - 1/rate(local). Median of `--repeats` runs, each
into a fresh output folder. Needs the extra: pip install -e ".[ray]".
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import psutil
from PIL import Image

from inpaint_cli.batch import distributed, engine
from inpaint_cli.batch.jobs import Existing
from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings, plan_folder
from inpaint_cli.batch.outcomes import Status
from inpaint_cli.engine.inpainter import Inpainter

SKIP = RunSettings(existing=Existing.SKIP)


def inpaint_kind(model: str) -> InpaintKind:
    """What each Ray worker builds once: the inpaint kind with `model` on the CPU, resuming."""
    return InpaintKind(Inpainter.from_name(model, device="cpu"), SKIP)


def make_folder(root: Path, count: int, size: int) -> tuple[Path, Path]:
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            photos / f"{index:05}.png"
        )
    hole = np.zeros((size, size), np.uint8)
    hole[size // 3 : size // 2, size // 4 : 3 * size // 4] = 255  # a torn band, 17 % of the picture
    Image.fromarray(hole).save(root / "mask.png")
    return photos, root / "mask.png"


def local_rate(model: str, photos: Path, mask: Path, out: Path) -> tuple[float, float]:
    """(start seconds, images/s): the model load, then the batch."""
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    inpainter = Inpainter.from_name(model, device="cpu")
    loaded = time.perf_counter()
    jobs = plan_folder(photos, mask, out).jobs
    outcomes = engine.run_jobs(InpaintKind(inpainter, SKIP), jobs, workers=1)
    failed = [o.error for o in outcomes if o.status is not Status.DONE]
    assert not failed, failed[:3]
    return loaded - started, len(jobs) / (time.perf_counter() - loaded)


def ray_rate(model: str, photos: Path, mask: Path, out: Path, workers: int) -> tuple[float, float]:
    """(start seconds, images/s): until the first result, then the steady state to the last."""
    jobs = plan_folder(photos, mask, out).jobs
    times: list[float] = []
    started = time.perf_counter()
    outcomes = distributed.run_on_ray(
        functools.partial(inpaint_kind, model),
        jobs,
        distributed.RayOptions(workers=workers),
        on_outcome=lambda outcome: times.append(time.perf_counter()),
    )
    failed = [o.error for o in outcomes if o.status is not Status.DONE]
    assert not failed, failed[:3]
    return times[0] - started, (len(times) - 1) / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="telea,pconv-tiny")
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import: cluster on 127.0.0.1
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        photos, mask = make_folder(root, args.images, args.size)
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"{args.images} images of {args.size}x{args.size} px; {psutil.cpu_count()} CPUs, load {load}")
        print(f"{'model':<12} {'run':<14} {'start s':>8} {'images/s':>9} {'vs local':>9}")
        for model in args.models.split(","):
            modes = {
                "local": lambda out, m=model: local_rate(m, photos, mask, out),
                "ray 1 worker": lambda out, m=model: ray_rate(m, photos, mask, out, 1),
                "ray 2 workers": lambda out, m=model: ray_rate(m, photos, mask, out, 2),
            }
            results: dict[str, tuple[float, float]] = {}
            for name, measure in modes.items():
                runs = []
                for repeat in range(args.repeats):
                    out = root / f"out-{model}-{name.replace(' ', '-')}-{repeat}"
                    runs.append(measure(out))
                    shutil.rmtree(out)
                results[name] = (
                    statistics.median(run[0] for run in runs),
                    statistics.median(run[1] for run in runs),
                )
            local = results["local"][1]
            for name, (start, rate) in results.items():
                print(f"{model:<12} {name:<14} {start:>8.2f} {rate:>9.1f} {rate / local:>8.2f}x")
            overhead = 1 / results["ray 1 worker"][1] - 1 / local
            print(f"{model:<12} overhead per image on Ray (1 worker vs local): {overhead * 1000:.1f} ms")
        print(f"driver peak RSS {psutil.Process().memory_info().rss / 2**20:.0f} MiB (resident now)")
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
