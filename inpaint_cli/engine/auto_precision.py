"""`--precision auto` on a CPU: bf16 or int8 only where a measurement shows it faster than fp32.

Whether bf16 pays depends on the CPU (AMX, AVX512_BF16 or neither) and on the network; int8 on VNNI.
Timing whole passes at a size that would be quick to measure misleads (at 128² big-lama's bottleneck
is 16×16 and int8 looks 1.05× where a 512² pass gains 1.55×), and at 512² one pass takes seconds.
So the first load of a network on a machine estimates a 512² pass instead, in a few hundred
milliseconds:

1. A probe pass at `PROBE_SIDE` with every convolution replaced by a stand-in that records its call
   and costs nothing: each call's input shape, and the time of everything else (FFTs, attention,
   normalisation, the runner's padding), which is scaled to 512² by pixel count (small passes carry
   relatively more fixed overhead, so this errs towards fp32).
2. Each distinct convolution (layer shape and input shape) timed in fp32, bf16 and int8 on a band of
   its 512²-pass input, the precisions interleaved, and scaled to its whole input.
3. The fills compared: a half precision's pass at `CHECK_SIDE` against fp32's. int8's accuracy is
   the guard's (`precision.quantize_int8`), consulted only when int8 would win: its plan keeps some
   layers in float, which then count at fp32's time.

The choice is kept in the cache folder per machine (CPU model, flags, threads, PyTorch version) and
model (weights fingerprint), so later loads cost nothing. A candidate must be `MIN_SPEEDUP` times
faster: the default is never a slower path. The int8 plan of a model is kept beside it, per model, so
that only the first int8 load of a model calibrates.
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.engine.device import HALF_DTYPES
from inpaint_cli.engine.precision import (
    CALIBRATION_SIDES,
    INT8_HOLE_ERROR,
    Int8Convolution,
    Int8Plan,
    attach,
    calibration_hole,
    convertible_convolutions,
    int8_available,
    pad,
    quantizable_convolutions,
    weight_levels,
)
from inpaint_cli.errors import InputError
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.files.jsonfile import json_text, read_json
from inpaint_cli.models.base import InpaintModel

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.1
"""A candidate must take at most 1/1.1 of fp32's time: the margin covers measurement noise."""
CLEAR_INT8_SPEEDUP = 1.3
"""`auto` asks the int8 guard (on a model's first load) only when int8 is estimated at least this much
faster than fp32 with every layer in int8: the layers the guard keeps in float give some of it back, so
a smaller margin rarely survives it (issue 30: big-lama on an AVX2 CPU, estimated 1.00-1.15x, spent
84 s in the guard to keep 179 of 180 convolutions in float)."""
GUARD_BUDGET_SECONDS = 15.0
"""...and only when the guard's calibration should take at most this long (`guard_seconds`); an int8
plan already made for these weights costs nothing. `--precision int8` runs the guard regardless."""
MAX_HOLE_ERROR = 1 / 255
"""Largest mean absolute difference from fp32 inside the hole (0..1 scale) a candidate may have."""
MEASURE_ABOVE_GFLOP = 50.0
"""Networks whose convolutions cost less per 512² pass are not measured (fp32): such a pass takes a
fraction of a second (the bundled demo models: 5-24 GFLOP; released PConv 76, DeepFill v2 202,
big-lama 439)."""
ESTIMATE_SIDE = 512
"""The choice is made for a pass of this side: what photos' holes are filled at."""
PROBE_SIDE = 128
"""Side of the probe pass (convolutions replaced by free stand-ins); a divisor of `ESTIMATE_SIDE`."""
CHECK_SIDE = 64
"""Side of the passes comparing a half precision's fill with fp32's."""
TIMED_MACS = 1e8
"""Each distinct convolution is timed on a band of its input of about this many multiply-adds (a few
milliseconds), its time then scaled to the whole input."""
TIMED_POSITIONS = (64, 16384)
"""...on at least 64 output positions (fewer would not fill the kernels' blocks) and at most 128×128
(layers with few channels: output layers, whose time is memory traffic)."""
ROUNDS = 2
"""Timed rounds after a warm-up; each round runs every precision once, in turn."""
CHOICES_NAME = "precision-choices.json"
PLANS_NAME = "int8-plans.json"
PLAN_VERSION = 1
"""Bumped when calibration changes (photo, holes, bound): older plans are then made again."""
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
"""The flags that decide which half or integer kernels a CPU has."""

Pass = Callable[[InpaintModel, torch.Tensor, torch.Tensor, torch.dtype], torch.Tensor]
"""`run(network, image, hole, dtype)`: one pass of the runner (padding, normalisation, autocast to
`dtype` when it is a half type) -> [0, 1] prediction."""


@dataclass(frozen=True)
class Measurement:
    """Estimated seconds of a pass at `ESTIMATE_SIDE` per precision (fp32 included), mean hole error
    against fp32 per candidate, and the seconds each layer saves in int8 (what a plan's float layers
    give back)."""

    seconds: dict[str, float]
    hole_error: dict[str, float] = field(default_factory=dict)
    int8_savings: dict[str, float] = field(default_factory=dict)

    def with_int8_plan(self, plan: Int8Plan) -> Measurement:
        """int8's time with only `plan.quantized` in int8, and the guard's hole error."""
        saved = sum(self.int8_savings.get(name, 0.0) for name in plan.quantized)
        error = plan.hole_error if math.isfinite(plan.hole_error) else math.inf
        return Measurement(
            {**self.seconds, "int8": self.seconds["fp32"] - saved},
            {**self.hole_error, "int8": error},
            self.int8_savings,
        )


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


@dataclass(frozen=True)
class ConvolutionCall:
    """One convolution call of the probe pass: the layer, its input's N×C×H×W shape, its padding."""

    layer: str
    shape: tuple[int, ...]
    padding: tuple[int, int]
    mode: str


class CallRecorder:
    """Probe-pass stand-in for a convolution: records the call and returns zeros of the output's
    shape, so that the pass costs everything but the convolutions."""

    def __init__(self, layer: str, conv: nn.Conv2d, calls: list[ConvolutionCall]) -> None:
        self.layer, self.conv, self.calls = layer, conv, calls

    def __call__(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool = True) -> torch.Tensor:
        return self.run(x, padding, bias, "zeros")

    def run(self, x: torch.Tensor, padding: int | tuple[int, int], bias: bool, mode: str) -> torch.Tensor:
        padding = (padding, padding) if isinstance(padding, int) else (int(padding[0]), int(padding[1]))
        self.calls.append(ConvolutionCall(self.layer, tuple(x.shape), padding, mode))
        rows, cols = output_size(self.conv, x.shape[-2], x.shape[-1], padding)
        return x.new_zeros(x.shape[0], self.conv.out_channels, rows, cols)


def output_size(conv: nn.Conv2d, height: int, width: int, padding: tuple[int, int]) -> tuple[int, int]:
    """The output's H and W of `conv` on an H×W input padded by `padding`."""
    sizes = []
    for size, pad_, kernel, stride, dilation in zip(
        (height, width), padding, conv.kernel_size, conv.stride, conv.dilation, strict=True
    ):
        sizes.append((size + 2 * pad_ - dilation * (kernel - 1) - 1) // stride + 1)
    return sizes[0], sizes[1]


def probe_calls(network: InpaintModel, run: Pass) -> tuple[list[ConvolutionCall], float]:
    """Every convolution call of a pass at `PROBE_SIDE`, and the seconds of everything else (the
    second of two passes: the first also warms up)."""
    layers = {name: module for name, module in network.named_modules() if isinstance(module, nn.Conv2d)}
    calls: list[ConvolutionCall] = []
    for name, conv in layers.items():
        attach(conv, CallRecorder(name, conv, calls))
    image, hole = _inputs(PROBE_SIDE)
    try:
        for _ in range(2):
            calls.clear()
            started = time.perf_counter()
            run(network, image, hole, torch.float32)
            rest = time.perf_counter() - started
    finally:
        for conv in layers.values():
            attach(conv, None)
    return calls, rest


def signature_of(conv: nn.Conv2d) -> tuple:
    """What a convolution's speed depends on besides its input: shapes, stride, dilation, groups."""
    return (tuple(conv.weight.shape), conv.stride, conv.dilation, conv.groups, conv.bias is not None)


def _inputs(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    return image, torch.from_numpy(calibration_hole(side, 0))[None]


def time_call(conv: nn.Conv2d, call: ConvolutionCall, precisions: list[str]) -> dict[str, float]:
    """Seconds of `call` at `ESTIMATE_SIDE` in each of `precisions`: timed on a band of the input
    (interleaved, median of `ROUNDS` after a warm-up) and scaled by output positions."""
    factor = ESTIMATE_SIDE // PROBE_SIDE
    batch, channels, height, width = (
        call.shape[0],
        call.shape[1],
        call.shape[2] * factor,
        call.shape[3] * factor,
    )
    extent = max(d * (k - 1) + 1 for d, k in zip(conv.dilation, conv.kernel_size, strict=True))
    per_position = conv.weight.numel()  # multiply-adds per output position
    positions = min(max(TIMED_POSITIONS[0], TIMED_MACS / per_position), TIMED_POSITIONS[1])
    rows = min(height, max(extent, math.ceil(positions / width)))
    cols = min(width, max(extent, math.ceil(positions / rows)))
    full, band = output_size(conv, height, width, call.padding), output_size(conv, rows, cols, call.padding)
    scale = batch * full[0] * full[1] / max(1, batch * band[0] * band[1])
    x = torch.randn(batch, channels, rows, cols, generator=torch.Generator().manual_seed(1))
    runs: dict[str, Callable[[], torch.Tensor]] = {}
    for precision in precisions:
        if precision == "fp32":
            runs[precision] = lambda: _float_call(conv, x, call, conv.weight, conv.bias)
        elif precision == "int8":
            kernel = Int8Convolution(conv)
            runs[precision] = lambda kernel=kernel: kernel.run(x, call.padding, True, call.mode)
        else:
            dtype = HALF_DTYPES[precision]
            weight, bias = conv.weight.to(dtype), None if conv.bias is None else conv.bias.to(dtype)
            # The input's cast is timed too: autocast makes it wherever a float op came before.
            runs[precision] = lambda d=dtype, w=weight, b=bias: _float_call(conv, x.to(d), call, w, b)
    samples: dict[str, list[float]] = {precision: [] for precision in runs}
    for round_ in range(ROUNDS + 1):
        for precision, run in runs.items():
            started = time.perf_counter()
            run()
            if round_:
                samples[precision].append(time.perf_counter() - started)
    return {precision: statistics.median(times) * scale for precision, times in samples.items()}


def _float_call(
    conv: nn.Conv2d, x: torch.Tensor, call: ConvolutionCall, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    if call.mode == "zeros":
        return F.conv2d(x, weight, bias, conv.stride, call.padding, conv.dilation, conv.groups)
    return F.conv2d(pad(x, call.padding, call.mode), weight, bias, conv.stride, 0, conv.dilation, conv.groups)


@torch.inference_mode()
def measure(network: InpaintModel, run: Pass, names: list[str]) -> Measurement:
    """Estimate a pass at `ESTIMATE_SIDE` in fp32 and in each candidate, and compare half precisions'
    fills with fp32's (the network is left as it was)."""
    calls, rest = probe_calls(network, run)
    layers = dict(network.named_modules())
    halves = [name for name in names if name in HALF_DTYPES]
    in_half = {
        precision: {id(c) for c in convertible_convolutions(network, precision)} for precision in halves
    }
    in_int8 = dict(quantizable_convolutions(network)) if "int8" in names else {}
    rest *= (ESTIMATE_SIDE / PROBE_SIDE) ** 2
    seconds = {name: rest for name in ["fp32", *names]}
    savings: Counter[str] = Counter()
    timings: dict[tuple, dict[str, float]] = {}
    for call in calls:
        conv = layers[call.layer]
        precisions = ["fp32", *(p for p in halves if id(conv) in in_half[p])]
        precisions += ["int8"] if call.layer in in_int8 else []
        # Layers of one shape on inputs of one shape take one time (big-lama: 222 calls, 20 shapes).
        signature = (*signature_of(conv), call.shape, call.padding, call.mode, *precisions)
        if signature not in timings:
            timings[signature] = time_call(conv, call, precisions)
        timed = timings[signature]
        for name in seconds:
            seconds[name] += timed.get(name, timed["fp32"])
        if "int8" in timed:
            savings[call.layer] += timed["fp32"] - timed["int8"]
    image, hole = _inputs(CHECK_SIDE)
    reference = run(network, image, hole, torch.float32)
    inside = hole.expand_as(reference) > 0
    errors = {}
    for name in halves:
        fill = run(network, image, hole, HALF_DTYPES[name])
        errors[name] = float((fill - reference).abs()[inside].mean())
    return Measurement(seconds, errors, dict(savings))


def guard_seconds(measurement: Measurement, layers: int) -> float:
    """About how long the int8 guard's calibration takes: its passes over the calibration photos (each
    round: every side, colour and grey) at fp32's estimated speed. Rounds: fp32's reference, every layer
    in int8, the per-layer probe (float and int8), and a bisection over the layers."""
    rounds = 4 + math.ceil(math.log2(max(layers, 2)))
    pixels = 2 * sum(side * side for side in CALIBRATION_SIDES)
    return rounds * pixels / ESTIMATE_SIDE**2 * measurement.seconds["fp32"]


def int8_worth_guarding(measurement: Measurement, layers: int) -> bool:
    """Whether int8's estimate leaves a clear margin and the guard would take seconds, not minutes."""
    clear = measurement.seconds["int8"] * CLEAR_INT8_SPEEDUP <= measurement.seconds["fp32"]
    return clear and guard_seconds(measurement, layers) <= GUARD_BUDGET_SECONDS


def choose(
    network: InpaintModel,
    name: str,
    run: Pass,
    cache: Path | None,
    int8_plan: Callable[[], Int8Plan] | None = None,
    int8_planned: bool = False,
) -> str:
    """fp32, bf16 or int8 for this network on this CPU: from the cache, or measured and cached.
    `int8_plan()` gives the guard's plan for these weights; it is asked only if int8 would win, and
    unless a plan is made already (`int8_planned`), only if it is worth the guard's time."""
    if not worth_measuring(network):
        return "fp32"
    machine, model = machine_key(), model_key(network, name)
    entry = read_cache(cache).get(machine)
    known = entry.get(model) if isinstance(entry, Mapping) else None  # a list there: a damaged cache
    if isinstance(known, Mapping) and known.get("choice") in ("fp32", *candidates()):
        return str(known["choice"])
    started = time.perf_counter()
    measurement = measure(network, run, candidates())
    measured = time.perf_counter() - started
    unguarded = Measurement(measurement.seconds, {**measurement.hole_error, "int8": 0.0})
    if int8_plan is not None and "int8" in measurement.seconds and decide(unguarded) == "int8":
        layers = len(dict(quantizable_convolutions(network)))
        if int8_planned or int8_worth_guarding(measurement, layers):
            measurement = measurement.with_int8_plan(int8_plan())
        else:
            log.info(
                "precision auto: int8 not tried for %s (%.2fx fp32's speed estimated, its accuracy check "
                "would take about %.0f s; --precision int8 makes it once)",
                name,
                measurement.seconds["fp32"] / max(measurement.seconds["int8"], 1e-9),
                guard_seconds(measurement, layers),
            )
    choice = decide(measurement)
    log.info("precision auto: %s for %s (measured in %.2f s: %s)", choice, name, measured, measurement)
    if cache is not None:
        write_choice(cache, machine, model, choice, measurement)
    return choice


def time_ratio(
    network: InpaintModel,
    name: str,
    run: Pass,
    precision: str,
    cache: Path | None,
    plan: Int8Plan | None = None,
) -> float:
    """A 512² pass's estimated time at `precision` over fp32's on this CPU (int8: with `plan`'s layers
    in int8), from the cache or measured once (a fraction of a second) and kept there beside `auto`'s
    choices, which a later `auto` load measures again for itself."""
    machine, model = machine_key(), model_key(network, name)
    data = read_cache(cache)
    entries = data.get(machine) if isinstance(data.get(machine), dict) else {}
    measurement = _kept_measurement(entries.get(model))
    if measurement is None or precision not in measurement.seconds:
        measurement = measure(network, run, [precision])
        if cache is not None and model not in entries:
            data[machine] = {**entries, model: asdict(measurement)}
            _write_cache(cache, data)
    if precision == "int8" and plan is not None:
        measurement = measurement.with_int8_plan(plan)
    return measurement.seconds[precision] / measurement.seconds["fp32"]


def _kept_measurement(entry: object) -> Measurement | None:
    """The measurement a cache entry keeps, or None if it keeps none (or a damaged one)."""
    if not isinstance(entry, Mapping):
        return None
    try:
        parts = {key: {str(k): float(v) for k, v in entry[key].items()} for key in ("seconds", "hole_error")}
        return Measurement(**parts, int8_savings={str(k): float(v) for k, v in entry["int8_savings"].items()})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def slower_note(precision: str, ratio: float, name: str) -> str | None:
    """One line when `precision` is not faster than fp32 here (`ratio`: its time over fp32's), with
    what this CPU lacks for it; None when it is faster."""
    if ratio * MIN_SPEEDUP <= 1:
        return None
    _, flags = cpu_description()
    lacks = {
        "int8": "VNNI" if not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags) else "",
        "bf16": "AVX512_BF16 or AMX" if not {"avx512_bf16", "amx_bf16"} & set(flags) else "",
    }.get(precision, "")
    why = f"; this CPU has no {lacks}" if lacks else ""
    speed = f"{ratio:.1f}x slower than" if ratio >= 1.05 else f"no faster than ({1 / ratio:.2f}x)"
    return (
        f"--precision {precision} runs {name} {speed} fp32 on this CPU (estimated for a 512² pass{why}); "
        "--precision fp32 or auto is faster"
    )


def read_cache(path: Path | None) -> dict:
    """A cache file's content; {} when there is none or it cannot be used (it only saves a measurement)."""
    if path is None:
        return {}
    try:
        data = read_json(path)
    except InputError:
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
            temporary.write_text(json_text(data, indent=1), encoding="utf-8")
    except OSError as error:
        log.warning("could not keep the precision choice in %s: %s", path, error)


def known_int8_plan(path: Path, model: str) -> Int8Plan | None:
    """The int8 plan kept for `model` by an earlier load, if it was made the way plans are made now."""
    entry = read_cache(path).get(model)
    if not isinstance(entry, dict) or entry.get("version") != PLAN_VERSION:
        return None
    # A plan made where the kernel saturates (7-bit weights) is no plan for 8-bit ones, and back.
    if entry.get("bound") != INT8_HOLE_ERROR or entry.get("weight_levels") != weight_levels():
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
    data[model] = {
        "version": PLAN_VERSION,
        "bound": INT8_HOLE_ERROR,
        "weight_levels": weight_levels(),
        **asdict(plan),
    }
    _write_cache(path, data)


def default_cache(name: str = CHOICES_NAME) -> Path:
    """The cache file `name` (the choices, or `PLANS_NAME`: the int8 plans) in the cache folder."""
    from inpaint_cli.weights import cache_dir

    return cache_dir() / name
