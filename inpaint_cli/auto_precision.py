"""`--precision auto` on a CPU: bf16 or int8 only where a measurement shows it faster than fp32.

Whether bf16 pays depends on the CPU (AMX, AVX512_BF16 or neither) and on the network; int8 on VNNI.
So the first load of a network on a machine times one pass of each candidate against fp32, the
passes interleaved so that a load change hits all of them alike, and checks that the candidate's
fill stays within `MAX_HOLE_ERROR` of fp32's. The choice is kept in the cache folder per machine
(CPU model, flags, threads, PyTorch version) and model (weights fingerprint), so later loads cost
nothing. A candidate must be `MIN_SPEEDUP` times faster: the default is never a slower path.

The int8 plan of a model (which layers stay float for accuracy, `precision.quantize_int8`) is kept
beside it, per model, so that only the first int8 load of a model calibrates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from inpaint_cli.atomic import atomic_path
from inpaint_cli.models.base import InpaintModel
from inpaint_cli.precision import (
    INT8_HOLE_ERROR,
    Int8Plan,
    calibration_hole,
    convert_half,
    copy_network,
    int8_available,
    quantize_int8,
)

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.1
"""A candidate must take at most 1/1.1 of fp32's time: the margin covers measurement noise."""
MAX_HOLE_ERROR = 1 / 255
"""Largest mean absolute difference from fp32 inside the hole (0..1 scale) a candidate may have."""
MEASURE_ABOVE_GFLOP = 50.0
"""Networks whose convolutions cost less per 512² pass are not measured (fp32): such a pass takes a
fraction of a second (the bundled demo models: 5-24 GFLOP; released PConv 76, DeepFill v2 202,
big-lama 439)."""
MEASURE_SIDE = 128
"""Side of the timed passes (and of the candidates' int8 calibration): big-lama's bottleneck is then
16×16, enough for every kernel to run its large-input path, at 1/16 of a 512² pass."""
ROUNDS = 2
"""Timed rounds after a warm-up; each round runs every candidate once, in turn."""
CACHE_NAME = "precision-choices.json"
PLANS_NAME = "int8-plans.json"
PLAN_VERSION = 1
"""Bumped when calibration changes (photo, holes, bound): older plans are then made again."""
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
"""The flags that decide which half or integer kernels a CPU has."""

Pass = Callable[[InpaintModel, torch.Tensor, torch.Tensor], torch.Tensor]
"""`run(network, image, hole)`: one pass of the runner (padding, normalisation) -> [0, 1] prediction."""


@dataclass(frozen=True)
class Measurement:
    """Median seconds of one pass per precision (fp32 included) and mean hole error against fp32."""

    seconds: dict[str, float]
    hole_error: dict[str, float] = field(default_factory=dict)


def decide(measurement: Measurement) -> str:
    """The fastest precision at least `MIN_SPEEDUP` faster than fp32 and within the error bound; fp32
    when there is none."""
    seconds = measurement.seconds
    best = "fp32"
    for name, taken in seconds.items():
        if name == "fp32" or not math.isfinite(taken):
            continue
        if measurement.hole_error.get(name, math.inf) > MAX_HOLE_ERROR:
            continue
        if taken * MIN_SPEEDUP <= seconds["fp32"] and taken < seconds[best]:
            best = name
    return best


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and which of `CPU_FLAGS` it has (from /proc/cpuinfo on Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return model, [flag for flag in CPU_FLAGS if flag in flags]


def machine_key() -> str:
    model, flags = cpu_description()
    return f"{model} [{' '.join(flags)}] threads={torch.get_num_threads()} torch={torch.__version__}"


def model_key(network: InpaintModel, name: str) -> str:
    """The model's name, family and a fingerprint of its weights (shapes and sums: cheap, content-based)."""
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(f"{key}{tuple(value.shape)}{float(value.double().sum()):.9e}".encode())
    return f"{name} ({network.family}) {digest.hexdigest()[:16]}"


def candidates() -> list[str]:
    return ["bf16", *(["int8"] if int8_available() else [])]


def worth_measuring(network: InpaintModel) -> bool:
    return network.needs_weights and 2 * network.macs_per_pixel() * 512 * 512 / 1e9 >= MEASURE_ABOVE_GFLOP


@torch.inference_mode()
def measure(network: InpaintModel, run: Pass, names: list[str], side: int = MEASURE_SIDE) -> Measurement:
    """Time fp32 and each candidate on copies of `network`, interleaved, and compare their fills."""
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    hole = torch.from_numpy(calibration_hole(side, 0))[None]
    networks = {"fp32": network}
    for name in names:
        candidate = copy_network(network)
        predict = functools.partial(run, candidate)
        if name == "int8":
            # Every layer in int8, without the guard's calibration passes: the fill is compared below
            # anyway, and loading with int8 afterwards makes the guarded plan (never slower).
            quantize_int8(candidate, predict, max_hole_error=math.inf)
        else:
            convert_half(candidate, name)
        networks[name] = candidate
    reference = run(network, image, hole)
    inside = hole.expand_as(reference) > 0
    errors = {}
    for name in names:  # also the warm-up: first calls pick kernels
        errors[name] = float((run(networks[name], image, hole) - reference).abs()[inside].mean())
    samples: dict[str, list[float]] = {name: [] for name in networks}
    for _ in range(ROUNDS):
        for name, candidate in networks.items():
            started = time.perf_counter()
            run(candidate, image, hole)
            samples[name].append(time.perf_counter() - started)
    return Measurement({name: statistics.median(times) for name, times in samples.items()}, errors)


def choose(network: InpaintModel, name: str, run: Pass, cache: Path | None) -> str:
    """fp32, bf16 or int8 for this network on this CPU: from the cache, or measured and cached."""
    if not worth_measuring(network):
        return "fp32"
    machine, model = machine_key(), model_key(network, name)
    known = read_cache(cache).get(machine, {}).get(model) if cache else None
    if isinstance(known, Mapping) and known.get("choice") in ("fp32", *candidates()):
        return str(known["choice"])
    started = time.perf_counter()
    measurement = measure(network, run, candidates())
    choice = decide(measurement)
    log.info(
        "precision auto: %s for %s (measured in %.1f s: %s)",
        choice,
        name,
        time.perf_counter() - started,
        measurement,
    )
    if cache is not None:
        write_choice(cache, machine, model, choice, measurement)
    return choice


def read_cache(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_choice(path: Path, machine: str, model: str, choice: str, measurement: Measurement) -> None:
    """Add one choice to the cache file (atomically; a failure to write only costs a later measurement)."""
    data = read_cache(path)
    entry = data.get(machine) if isinstance(data.get(machine), dict) else {}
    entry[model] = {"choice": choice, **asdict(measurement)}
    data[machine] = entry
    _write_cache(path, data)


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError as error:
        log.warning("could not keep the precision choice in %s: %s", path, error)


def known_int8_plan(path: Path, model: str) -> Int8Plan | None:
    """The int8 plan kept for `model` by an earlier load, if it was made the way plans are made now."""
    entry = read_cache(path).get(model)
    if not isinstance(entry, dict) or entry.get("version") != PLAN_VERSION:
        return None
    if entry.get("bound") != INT8_HOLE_ERROR:
        return None
    try:
        return Int8Plan(
            tuple(map(str, entry["quantized"])),
            tuple(map(str, entry["kept_float"])),
            float(entry["hole_error"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def remember_int8_plan(path: Path, model: str, plan: Int8Plan) -> None:
    """Keep `plan` for later loads of `model` (a failure to write only costs a later calibration)."""
    data = read_cache(path)
    data[model] = {"version": PLAN_VERSION, "bound": INT8_HOLE_ERROR, **asdict(plan)}
    _write_cache(path, data)


def default_cache(name: str = CACHE_NAME) -> Path:
    """The cache file `name` (the choices, or `PLANS_NAME`: the int8 plans) in the cache folder."""
    from inpaint_cli.weights import cache_dir

    return cache_dir() / name
