"""How long a plan will take on this machine, learned from the passes it has run.

A pass's time is not proportional to its cost model across sizes: small passes carry relatively more
fixed work (many short operations, thread hand-offs), all the more on a busy machine. Timing one small
pass and scaling it by the cost model made estimates 1.4-10 times too long (issue 30: "about 3 min"
took 18 s). So speed is learned only from real passes, per pass size: an image's first network call
tells the speed for the rest of its passes of that size, and later images reuse it. A plan with a
pass size not seen yet gets no estimate before it starts. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from inpaint_cli.engine.refine_plan import Refinement
from inpaint_cli.engine.strategies import Box, NetworkGeometry, Plan, Tiling

SIZE_STEP = 2.0
"""Pass sizes are grouped by their pixel count in steps of this factor."""
NEAREST_SIZES = 1
"""A size not measured yet is estimated from one measured at most this many steps away (2x pixels)."""


@dataclass(frozen=True)
class Pass:
    """Network calls of one size in a plan: padded pixels of one input, its cost, how many."""

    pixels: int
    cost: float
    count: int


def box_passes(
    box: Box, tiling: Tiling | None, geometry: NetworkGeometry, refinement: Refinement | None = None
) -> Pass:
    """The network calls of one box: itself if untiled, else its tiles; refined, each forward pass of
    each input's refinement, at the average cost of one (the progress steps it reports)."""
    height, width = box.scaled_size() if tiling is None else (tiling.height, tiling.width)
    padded = geometry.padded(height, width)
    count = 1 if tiling is None else tiling.tiles
    if refinement is None:
        return Pass(padded[0] * padded[1], geometry.cost(*padded), count)
    forwards = refinement.forwards(height, width)
    cost = geometry.input_cost(height, width, refinement) / forwards
    return Pass(padded[0] * padded[1], cost, count * forwards)


def plan_passes(plan: Plan, geometry: NetworkGeometry) -> list[Pass]:
    """The plan's network inputs in the order they run: its core's first (`Plan.core`), then box by box."""
    first = plan_passes(plan.core, geometry) if plan.core is not None else []
    pairs = zip(plan.boxes, plan.tilings, strict=True)
    return first + [box_passes(box, tiling, geometry, plan.refinement) for box, tiling in pairs]


@dataclass
class Speed:
    """Seconds per cost unit measured on real network calls, by pass size (`SIZE_STEP` groups)."""

    per_cost: dict[int, float] = field(default_factory=dict)

    @staticmethod
    def group(pixels: int) -> int:
        return round(math.log(max(pixels, 1), SIZE_STEP))

    def learn(self, pixels: int, cost: float, seconds: float) -> None:
        """One call of `cost` units at this size took `seconds` (wall time, its preparation included)."""
        if cost <= 0 or seconds <= 0:
            return
        group, measured = self.group(pixels), seconds / cost
        previous = self.per_cost.get(group)
        # The latest call weighs most: the machine's load changes during a batch.
        self.per_cost[group] = measured if previous is None else (previous + measured) / 2

    def seconds_per_cost(self, pixels: int, reach: float = NEAREST_SIZES) -> float | None:
        """The measured speed at this size, or at the nearest measured size within `reach` steps."""
        group = self.group(pixels)
        near = [known for known in self.per_cost if abs(known - group) <= reach]
        if not near:
            return None
        return self.per_cost[min(near, key=lambda known: (abs(known - group), -known))]

    def estimate(self, passes: list[Pass], reach: float = NEAREST_SIZES) -> float | None:
        """Seconds for these passes, or None when a size among them has no measured speed within
        `reach` steps (`math.inf`: any measured speed will do)."""
        total = 0.0
        for item in passes:
            speed = self.seconds_per_cost(item.pixels, reach)
            if speed is None:
                return None
            total += item.cost * item.count * speed
        return total
