"""What LaMa feature refinement will do with an input, in plain numbers: its settings and its pyramid.

Torch-free and numpy-free, so the command line checks the settings as it reads them and the planner
(`strategies.py`) costs refinements without loading anything; `refine.py` does the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from inpaint_cli.errors import UsageError
from inpaint_cli.options import (
    DEFAULT_REFINE_ITERS,
    DEFAULT_REFINE_LR,
    DEFAULT_REFINE_MAX_SCALES,
    DEFAULT_REFINE_MIN_SIDE,
    DEFAULT_REFINE_PX_BUDGET,
    MAX_REFINE_ITERS,
    MAX_REFINE_SCALES,
    MIN_REFINE_PX_BUDGET,
    MIN_REFINE_SIDE,
)


@dataclass(frozen=True)
class Refinement:
    """LaMa feature refinement of one network input (`engine/refine.py`): its settings and its pyramid.

    The input is shrunk to `px_budget` pixels if it has more; the number of scales grows with its
    short side (one scale per doubling beyond `min_side`, from sqrt(2) times it, at most `max_scales`);
    each scale but the coarsest is optimised `iters - 1` Adam steps at learning rate `lr`.
    """

    iters: int = DEFAULT_REFINE_ITERS
    lr: float = DEFAULT_REFINE_LR
    min_side: int = DEFAULT_REFINE_MIN_SIDE
    max_scales: int = DEFAULT_REFINE_MAX_SCALES
    px_budget: int = DEFAULT_REFINE_PX_BUDGET

    def __post_init__(self) -> None:
        bounds = {
            "iters": (1, MAX_REFINE_ITERS),
            "min_side": (MIN_REFINE_SIDE, None),
            "max_scales": (1, MAX_REFINE_SCALES),
            "px_budget": (MIN_REFINE_PX_BUDGET, None),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < low
                or (high and value > high)
            ):
                within = f"between {low} and {high}" if high else f"at least {low}"
                raise UsageError(
                    f"refine-{name.replace('_', '-')} must be a whole number {within}, not {value!r}"
                )
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise UsageError(f"refine-lr must be a number above 0 and at most 1, not {self.lr!r}")

    def shrunk(self, height: int, width: int) -> tuple[int, int]:
        """The size an input is refined at: its own, or shrunk to the pixel budget (sides truncated)."""
        if height * width <= self.px_budget:
            return height, width
        ratio = math.sqrt(self.px_budget / (height * width))
        return max(1, int(height * ratio)), max(1, int(width * ratio))

    def pyramid(self, height: int, width: int) -> tuple[tuple[int, int], ...]:
        """Sizes of the scales an input is refined at, coarsest first; the last is `shrunk`'s."""
        height, width = self.shrunk(height, width)
        doublings = round(max(0.0, math.log2(min(height, width) / self.min_side)))
        sizes = [(height, width)]
        for _ in range(min(1 + doublings, self.max_scales) - 1):
            sizes.insert(0, (sizes[0][0] // 2, sizes[0][1] // 2))
        return tuple(sizes)

    def forwards(self, height: int, width: int) -> int:
        """Forward passes of the rear of the network: one at the coarsest scale, `iters` at each other."""
        return 1 + (len(self.pyramid(height, width)) - 1) * self.iters

    @property
    def two_scale_side(self) -> int | None:
        """The smallest short side refined at two scales (725 px by default); None with one scale."""
        if self.max_scales < 2:
            return None
        side = math.floor(self.min_side * math.sqrt(2))
        while len(self.pyramid(side, side)) < 2:
            side += 1
        return side
