"""Classical, weight-free inpainting through OpenCV.

`telea`: fast marching (A. Telea, "An Image Inpainting Technique Based on the Fast Marching
Method", JGT 2004). `ns`: Navier-Stokes based (Bertalmio, Bertozzi, Sapiro, CVPR 2001).
Both are registered models of the engine like the neural families; they work on 8-bit RGB, so a
16-bit image's hole pixels are filled at 8-bit precision (pixels outside the hole stay exact).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch

from inpaint_cli.models.base import FamilyConfig, InpaintModel, Intermediates, bounded

Method = Literal["telea", "ns"]
METHODS: dict[str, int] = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
DEFAULT_RADIUS = 3
"""Neighbourhood radius in pixels (OpenCV's `inpaintRadius`)."""
UNLIMITED_SIDE = 2**31 - 1
"""`native_side` of a method without a training resolution: larger than any side an image file can
store (PNG and TIFF keep sides as 32-bit integers), so a box is never downscaled for quality."""
OPERATIONS_PER_NEIGHBOUR = 10
"""Rough floating-point work per neighbour a method weighs (gradient, distance and direction terms)."""


@dataclass(frozen=True)
class ClassicalConfig(FamilyConfig):
    method: Method
    radius: int = bounded(1, 64, default=DEFAULT_RADIUS)


class ClassicalInpainter(InpaintModel):
    """A weight-free OpenCV method behind the same contract as the networks."""

    family = "classical"
    Config = ClassicalConfig
    config: ClassicalConfig
    needs_weights = False
    training_size = None
    # The float input and output (12 B/px each) plus OpenCV's 8-bit copies and work buffers.
    activation_bytes_per_pixel = 64

    def __init__(self, config: ClassicalConfig | Mapping[str, Any]) -> None:
        super().__init__(config)
        self.flags = METHODS[self.config.method]
        self.radius = self.config.radius

    @property
    def pad_multiple(self) -> int:
        return 1

    @property
    def native_side(self) -> int:
        return UNLIMITED_SIDE

    def macs_per_pixel(self) -> float:
        """An upper bound: every pixel a hole pixel weighing its whole (2r+1)² neighbourhood."""
        return OPERATIONS_PER_NEIGHBOUR / 2 * (2 * self.radius + 1) ** 2

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, intermediates: Intermediates | None = None
    ) -> torch.Tensor:
        filled = []
        for picture, hole in zip(image, mask, strict=True):
            rgb = (picture.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            hole_u8 = (hole[0] > 0.5).to(torch.uint8).cpu().numpy() * 255
            result = cv2.inpaint(np.ascontiguousarray(rgb), hole_u8, self.radius, self.flags)
            filled.append(torch.from_numpy(result).permute(2, 0, 1).to(image.dtype) / 255)
        return torch.stack(filled).to(image.device)


MODELS: dict[str, ClassicalConfig] = {name: ClassicalConfig(method=name) for name in METHODS}
"""Named weight-free models: `--model telea`, `--model ns`."""
