"""The inference engine: one loaded network, and the way from pixels to filled pixels.

`Inpainter` loads a model (by name or from a weight file), picks the device, precision and memory
budget, asks the planner (`strategies.py`) how to cut an image into passes, and has the runner
(`runner.py`) execute the plan, retrying in smaller tiles after running out of device memory.
Thread counts are the caller's business (`torch.set_num_threads` in the command line).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inpaint_cli.checkpoints.loading import load_network
from inpaint_cli.engine import auto_precision, refine, strategies
from inpaint_cli.engine.device import (
    HALF_DTYPES,
    default_memory_budget,
    precision_name,
    select_device,
    select_precision,
)
from inpaint_cli.engine.estimates import Pass, Speed, box_passes, plan_passes
from inpaint_cli.engine.precision import Int8Plan, convert_half, copy_network, quantize_int8
from inpaint_cli.engine.refine_plan import Refinement
from inpaint_cli.engine.regions import deep_core
from inpaint_cli.engine.runner import Runner, to_integer, upscale_to_box
from inpaint_cli.engine.strategies import (
    Box,
    InpaintOptions,
    Limits,
    NetworkGeometry,
    Plan,
    Strategy,
)
from inpaint_cli.errors import UsageError
from inpaint_cli.models import FAMILIES, InpaintModel, classical

log = logging.getLogger(__name__)

MODEL_CACHE_SIZE = 4096
"""Sizes whose memory and cost estimates are remembered per network."""

Progress = Callable[[int, int], None]
"""`progress(done, total)`: network inputs (tiles or whole boxes) filled so far, of `total`."""
Estimate = Callable[[float], None]
"""`estimate(seconds)`: how long the rest of a plan should take, told once after its first call."""


@dataclass
class InpaintResult:
    """The filled image and what was learned on the way."""

    pixels: np.ndarray
    boxes: list[Box]
    """The boxes the image was filled in (the plan's, after any out-of-memory retries)."""
    intermediates: dict[str, torch.Tensor] = field(default_factory=dict)
    intermediates_hole: torch.Tensor | None = None
    """The N×1×H×W hole mask at the (padded) size the intermediates were computed at."""
    intermediates_box: Box | None = None
    """The box whose pass the intermediates are of (`capture_box`)."""
    coarse: np.ndarray | None = None
    """A two-stage family's first-stage result in the captured box, as pixels like `pixels`."""
    passes: int = 0
    """Network calls made (a call may take a batch of tiles)."""
    intermediates_missing: str | None = None
    """Why no intermediates were captured although they were asked for."""
    plan: Plan | None = None
    """What was done: strategy, boxes, scales, tiles (`plan.describe()` says it in one line)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Time per stage: `plan`, `preprocess` (cut, resize, pad, normalise), `network`, `composite`
    (blend, upscale, paste)."""


def family_of(name: str) -> str:
    """The family of a family name or a manifest entry name."""
    if name in FAMILIES and name != "classical":
        return name
    from inpaint_cli import weights

    # The one resolver of model names: unknown names are usage errors listing every known name.
    entry = weights.resolve_model(name)
    if entry is None:
        return "classical"
    if entry.is_detector:
        raise UsageError(
            f"'{name}' is a damage detector, not an inpainting model",
            hint="see `inpaint models`",
        )
    return entry.family


def geometry_of(network: InpaintModel, name: str, device: torch.device) -> NetworkGeometry:
    """What the planner needs of a network: its declared geometry and cost and memory models (cached:
    the planner asks for the same sizes many times, and a family's model may walk its layers)."""
    cached = functools.lru_cache(maxsize=MODEL_CACHE_SIZE)
    refinable = refine.supports(network.family)
    return NetworkGeometry(
        name=name,
        pad_multiple=network.pad_multiple,
        min_size=network.min_size,
        native_side=min(network.native_side, strategies.NO_NATIVE_LIMIT),
        memory=cached(network.memory_estimate),
        cost=cached(network.cost_estimate),
        batches=device.type != "cpu",
        fill_reach=network.fill_reach,
        refine_step=cached(network.refine_step_cost) if refinable else None,
        refine_memory=cached(network.refine_memory_estimate) if refinable else None,
    )


class Inpainter:
    """A loaded network on a device at a precision, with planning options. Load once, call many times."""

    def __init__(
        self,
        network: InpaintModel,
        *,
        name: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        options: InpaintOptions | None = None,
    ) -> None:
        self.device = select_device(device)
        self.dtype = select_precision(precision, self.device)
        self.network = network.to(self.device)
        self.name = name or network.family
        self.options = options or InpaintOptions()
        refine.check_supported(self.options.refinement, network.family, self.name)
        self.budget = self.options.memory_budget or default_memory_budget(self.device)
        self.geometry = geometry_of(self.network, self.name, self.device)
        self.runner = Runner(self.network, self.device, self.dtype, self.name)
        self.int8_plan: Int8Plan | None = None
        """With int8: which convolutions run in int8 and which stay float for accuracy."""
        self._planned: Int8Plan | None = None
        self.precision_note: str | None = None
        """Set when an explicitly asked precision is not faster than fp32 on this CPU (with how much)."""
        self.precision = self._apply_precision(getattr(precision, "value", precision))
        """fp32, fp16, bf16 or int8: what the network runs at (`auto` resolved)."""
        self.limits = Limits()
        """Learned from running out of device memory; later boxes and images start from them."""
        self.load_seconds = 0.0
        """Time it took to read the weights and build the network (not downloading)."""
        self.speed = Speed()
        """Measured speed of real passes, by size (`estimates.py`)."""

    def _apply_precision(self, requested: str) -> str:
        """Convert the network once for its precision; on CPU, `auto` measures (`auto_precision.py`)."""
        chosen = "int8" if requested == "int8" else precision_name(self.dtype)
        if not self.network.needs_weights:
            return chosen
        if requested == "int8" and self.options.refine:
            raise UsageError(
                "--refine needs gradients, which int8 convolutions do not have", hint="use --precision fp32"
            )
        # Refinement follows gradients whose signs decide each Adam step: full precision on a CPU.
        if requested == "auto" and self.device.type == "cpu" and not self.options.refine:
            chosen = auto_precision.choose(
                self.network,
                self.name,
                self._pass_of,
                auto_precision.default_cache(),
                int8_plan=self._int8_plan,
                int8_planned=self._kept_int8_plan() is not None,
            )
        if chosen == "int8":
            self.int8_plan = self._int8_plan()
        if requested == chosen != "fp32" and self.device.type == "cpu":
            ratio = auto_precision.time_ratio(
                self.network, self.name, self._pass_of, chosen, auto_precision.default_cache(), self.int8_plan
            )
            self.precision_note = auto_precision.slower_note(chosen, ratio, self.name)
        if chosen == "int8":
            quantize_int8(self.network, self.runner.predict, known=self.int8_plan)
        elif chosen != "fp32":
            convert_half(self.network, chosen)
        self.dtype = HALF_DTYPES.get(chosen, torch.float32)
        self.runner.dtype = self.dtype
        return chosen

    def _int8_plan(self) -> Int8Plan:
        """The int8 plan an earlier load of these weights made (kept in the cache), or a new one made
        by the guard on a copy of the network (the network itself stays float)."""
        if self._planned is not None:  # asked by `auto`, then again to quantize
            return self._planned
        known = self._kept_int8_plan()
        if known is not None:
            self._planned = known
            return known
        candidate = copy_network(self.network)
        plan = quantize_int8(candidate, functools.partial(self._pass_of, candidate, dtype=torch.float32))
        plans = auto_precision.default_cache(auto_precision.PLANS_NAME)
        auto_precision.remember_int8_plan(plans, auto_precision.model_key(self.network, self.name), plan)
        self._planned = plan
        return plan

    def _kept_int8_plan(self) -> Int8Plan | None:
        """The int8 plan an earlier load of these weights made and kept in the cache, if any."""
        plans = auto_precision.default_cache(auto_precision.PLANS_NAME)
        return auto_precision.known_int8_plan(plans, auto_precision.model_key(self.network, self.name))

    def _pass_of(
        self, network: InpaintModel, image: torch.Tensor, hole: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """One runner pass of `network` (this one or a copy), autocast to `dtype` if it is a half type."""
        return Runner(network, self.device, dtype, self.name).predict(image, hole)

    @property
    def precision_summary(self) -> str:
        """The precision for people: with int8, how many convolutions it covers."""
        plan = self.int8_plan
        if self.precision != "int8" or plan is None:
            return self.precision
        total = len(plan.quantized) + len(plan.kept_float)
        kept = f", {len(plan.kept_float)} kept in float for accuracy" if plan.kept_float else ""
        return f"int8 ({len(plan.quantized)} of {total} convolutions{kept})"

    @property
    def dtype_label(self) -> str:
        """The precision as provenance records it: `float32`, `bfloat16`, `float16` or `int8`."""
        return "int8" if self.precision == "int8" else str(self.dtype).removeprefix("torch.")

    # --- loading -----------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, family: str | None = None, *, name: str | None = None, **settings: Any
    ) -> Inpainter:
        """An inpainter for a weight file (official format or ours); the family is detected if not
        given. `settings`: device, precision, options."""
        if family is not None and family not in FAMILIES:
            raise UsageError(f"unknown family {family!r}", hint=f"known: {', '.join(sorted(FAMILIES))}")
        started = time.perf_counter()
        network = load_network(path, family)
        inpainter = cls(network, name=name or Path(path).name, **settings)
        inpainter.load_seconds = time.perf_counter() - started
        return inpainter

    @classmethod
    def from_name(
        cls, name: str, *, checkpoint: str | Path | None = None, progress: Any = None, **settings: Any
    ) -> Inpainter:
        """The model `name` (a manifest entry, a family or a classical method), from `checkpoint` if
        given; `progress` sees a download. `settings`: device, precision, options."""
        if name in classical.MODELS:
            if checkpoint is not None:
                raise UsageError(f"--model {name} is a classical method and takes no --checkpoint")
            return cls(classical.ClassicalInpainter.build(classical.MODELS[name]), name=name, **settings)
        family = family_of(name)  # unknown names are usage errors, before any download
        options = settings.get("options")
        refine.check_supported(options.refinement if options else None, family, name)
        if checkpoint is not None:
            return cls.from_checkpoint(checkpoint, family, **settings)
        from inpaint_cli import weights

        path = weights.ensure_model(name, progress=progress)
        return cls.from_checkpoint(path, name=name, **settings)

    @property
    def strategy(self) -> Strategy:
        return self.options.strategy

    # --- planning ----------------------------------------------------------------------------------

    def check_refinement(self, options: InpaintOptions) -> None:
        """A UsageError when `options` ask for refinement this loaded network cannot do."""
        refine.check_supported(options.refinement, self.network.family, self.name)
        if options.refine and self.precision == "int8":
            raise UsageError(
                f"{self.name} was loaded with int8 convolutions, which have no gradients for --refine",
                hint="load it with precision fp32 (or bf16)",
            )

    def plan(self, hole: np.ndarray, *, options: InpaintOptions | None = None) -> Plan:
        """How `hole` (H×W bool) would be filled: boxes, scales, tiles and cost. Pure planning."""
        options = options or self.options
        self.check_refinement(options)
        budget = options.memory_budget or self.budget
        return strategies.plan(hole, self.geometry, options, budget, limits=self.limits)

    def estimate_seconds(self, plan: Plan) -> float | None:
        """Seconds the plan should take here, from the speed of earlier passes of its sizes; None
        before such passes have run (`inpaint`'s `on_estimate` then tells it after the first call)."""
        return self.speed.estimate(plan_passes(plan, self.geometry))

    # --- inference ---------------------------------------------------------------------------------

    def inpaint(
        self,
        pixels: np.ndarray,
        hole: np.ndarray,
        *,
        capture: bool = False,
        options: InpaintOptions | None = None,
        plan: Plan | None = None,
        progress: Progress | None = None,
        on_estimate: Estimate | None = None,
    ) -> InpaintResult:
        """Fill the hole of an H×W×C uint8/uint16 image (C = 1 or 3); `hole` is H×W bool, True = hole.

        Pixels outside the hole are returned unchanged; with `capture`, the family's intermediates
        of one pass of the plan are returned too (`capture_box`: capturing changes neither the plan
        nor the pixels). `options` overrides the inpainter's for this call;
        `plan` is one made by `self.plan` for this hole; `progress(done, total)` is called after
        each network call; `on_estimate(seconds)`, once after the first call, with how long the rest
        should take, when the speed at the plan's sizes was not known before it started.
        """
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or pixels.dtype not in (np.uint8, np.uint16):
            raise ValueError(
                f"expected H×W×1 or H×W×3 uint8/uint16 pixels, not {pixels.shape} {pixels.dtype}"
            )
        if hole.shape != pixels.shape[:2]:
            raise ValueError(f"hole {hole.shape} does not match image {pixels.shape[:2]}")
        options = options or self.options
        started = time.perf_counter()
        plan = plan or self.plan(hole, options=options)
        self.runner.refine = self._refiner(plan.refinement)
        result = InpaintResult(
            pixels.copy(), list(plan.boxes), plan=plan, seconds={"plan": time.perf_counter() - started}
        )
        before = dict(self.runner.clock.seconds)
        if on_estimate is not None and self.estimate_seconds(plan) is not None:
            on_estimate = None  # known beforehand: the caller had it with the plan
        try:
            self._run(pixels, hole, result, options, capture, (progress, on_estimate))
        finally:
            self.runner.on_steps = None
            self.runner.refine = None
            for stage, total in self.runner.clock.seconds.items():
                result.seconds[stage] = total - before.get(stage, 0.0)
        assert result.plan is not None
        result.boxes = list(result.plan.boxes)
        if capture and plan.refinement is not None:
            result.intermediates_missing = "a refined fill keeps no intermediates (they come from one pass)"
        elif capture and result.intermediates_hole is None and result.intermediates_missing is None:
            result.intermediates_missing = (
                f"the {result.plan.strategy.value} plan ran every box in tiles ({result.passes} network "
                "passes); intermediates come from one whole pass of a box (--strategy resize makes one, "
                "and fills differently)"
            )
        return result

    def _refiner(
        self, settings: Refinement | None
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """What the runner calls instead of one pass when the plan refines: `refine.refine_each` with
        this network, its autocast, and each forward pass reported as a progress step."""
        if settings is None:
            return None
        assert isinstance(self.network, refine.Lama)

        def on_forward() -> None:
            if self.runner.on_steps is not None:
                self.runner.on_steps(1)

        return functools.partial(
            refine.refine_each, self.network, settings, autocast=self.runner.autocast, on_forward=on_forward
        )

    def _run(
        self,
        pixels: np.ndarray,
        hole: np.ndarray,
        result: InpaintResult,
        options: InpaintOptions,
        capture: bool,
        watchers: tuple[Progress | None, Estimate | None],
    ) -> None:
        """Fill the plan: the deep core first if it has one (`Plan.core`), which the rest of the plan
        then sees as known pixels, then its own boxes."""
        assert result.plan is not None
        plan = result.plan
        tracker = _Tracker(self, plan, *watchers)
        self.runner.on_steps = tracker.advance
        core_plan = None
        if plan.core is not None:
            first = InpaintResult(pixels.copy(), [])
            core_plan = self._fill(pixels, hole, first, plan.core, options, False, tracker)
            core = deep_core(hole, self.geometry.fill_reach)
            assert core is not None  # the planner's own rule on the same hole
            pixels = pixels.copy()
            pixels[core] = result.pixels[core] = first.pixels[core]
            hole = hole & ~core
            result.passes += first.passes
        rest = self._fill(pixels, hole, result, replace(plan, core=None), options, capture, tracker)
        result.plan = replace(rest, core=core_plan)

    def _fill(
        self,
        pixels: np.ndarray,
        hole: np.ndarray,
        result: InpaintResult,
        plan: Plan,
        options: InpaintOptions,
        capture: bool,
        tracker: _Tracker,
    ) -> Plan:
        """Fill a plan's boxes one by one into `result.pixels`; after running out of memory, the box
        again in tiles. Returns the plan as it ran (with such boxes replaced)."""
        budget = options.memory_budget or self.budget
        watched = capture_box(plan, hole) if capture and plan.refinement is None else None
        index = 0
        while index < len(plan.boxes):
            box, tiling = plan.boxes[index], plan.tilings[index]
            tracker.current = box_passes(box, tiling, self.geometry, plan.refinement)
            captured: dict[str, torch.Tensor] | None = {} if index == watched and tiling is None else None
            done_before = tracker.done
            try:
                result.passes += self.runner.fill_box(pixels, hole, box, tiling, result.pixels, captured)
            except torch.cuda.OutOfMemoryError:
                tracker.done = done_before
                box, self.limits = strategies.after_out_of_memory(
                    box, tiling, self.geometry, self.limits, str(self.device)
                )
                side = box.tile
                log.warning("out of %s memory: retrying in tiles of at most %sx%s", self.device, side, side)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                retried = strategies.replace_box(
                    plan, index, box, hole, self.geometry, options, budget, self.limits
                )
                tracker.total += retried.steps - plan.steps
                plan = retried
                continue
            if captured:
                self._keep_intermediates(result, captured, pixels, hole, box)
            elif captured is not None:
                result.intermediates_missing = f"{self.name} has no intermediates to save"
            index += 1
        return plan

    def _keep_intermediates(
        self,
        result: InpaintResult,
        captured: dict[str, torch.Tensor],
        pixels: np.ndarray,
        hole: np.ndarray,
        box: Box,
    ) -> None:
        _, box_hole = self.runner.cut(pixels, hole, box)
        result.intermediates_hole = self.runner.pad(torch.tensor(box_hole, dtype=torch.float32)[None, None])
        result.intermediates_box = box
        coarse = captured.get("coarse")
        if coarse is not None:
            values = self.network.normalization.from_network(coarse.float())
            values = values[..., : box.scaled_size()[0], : box.scaled_size()[1]]
            if box.scale < 1:
                values = upscale_to_box(values, box)
            # The first stage's picture of its box, in the image around it.
            result.coarse = pixels.copy()
            result.coarse[box.slices] = to_integer(values.clamp(0, 1), pixels.dtype, pixels.shape[2])
        result.intermediates = {name: value.detach().float().cpu() for name, value in captured.items()}


class _Tracker:
    """Counts a plan's network calls for `progress`, learns the speed of each, and after the first
    tells `on_estimate` how long the rest should take at that speed (scaled by cost)."""

    def __init__(
        self, inpainter: Inpainter, plan: Plan, progress: Progress | None, on_estimate: Estimate | None
    ) -> None:
        self.inpainter, self.plan, self.progress, self.on_estimate = inpainter, plan, progress, on_estimate
        self.done, self.total, self.mark = 0, plan.steps, time.perf_counter()
        """Calls so far, of `total` (which grows when a box is retried in tiles)."""
        self.current = Pass(0, 0.0, 0)
        """The box being filled, as passes (set by `Inpainter._fill`)."""

    def advance(self, tiles: int) -> None:
        self.done += tiles
        now = time.perf_counter()
        speed, geometry = self.inpainter.speed, self.inpainter.geometry
        speed.learn(self.current.pixels, self.current.cost * tiles, now - self.mark)
        self.mark = now
        if self.on_estimate is not None and self.done < self.total:
            left = plan_passes(self.plan, geometry)
            left[0] = replace(left[0], count=left[0].count - tiles)  # the first call is of the first box
            seconds = speed.estimate(left, reach=math.inf)
            if seconds is not None:
                self.on_estimate(seconds)
        self.on_estimate = None
        if self.progress is not None:
            self.progress(self.done, self.total)


def capture_box(plan: Plan, hole: np.ndarray) -> int | None:
    """The box whose pass `--save-intermediates` shows: of those filled in one pass (a tiled box has
    no one set of intermediates), the one holding the most hole pixels; None if every box is tiled."""
    whole = [index for index, tiling in enumerate(plan.tilings) if tiling is None]
    return max(whole, key=lambda index: int(hole[plan.boxes[index].slices].sum()), default=None)
