"""Classical, weight-free inpainting through OpenCV.

`telea`: fast marching (A. Telea, "An Image Inpainting Technique Based on the Fast Marching
Method", JGT 2004). `ns`: Navier-Stokes based (Bertalmio, Bertozzi, Sapiro, CVPR 2001).
Both are registered models of the engine like the neural families; they work on 8-bit RGB, so a
16-bit image's hole pixels are filled at 8-bit precision (pixels outside the hole stay exact).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch

from inpaint_cli.models.base import Family, InpaintModel, Intermediates

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
DEFAULT_RADIUS = 3
"""Neighbourhood radius in pixels (OpenCV's `inpaintRadius`)."""


class ClassicalInpainter(InpaintModel):
    family = "classical"
    training_size = 1 << 30  # no training resolution: always process at native size
    # The float input and output (12 B/px each) plus OpenCV's 8-bit copies and work buffers.
    activation_bytes_per_pixel = 64

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if config["method"] not in METHODS:
            raise ValueError(f"unknown classical method {config['method']!r}; choose from {sorted(METHODS)}")
        self.flags = METHODS[config["method"]]
        self.radius = int(config.get("radius", DEFAULT_RADIUS))

    @property
    def pad_multiple(self) -> int:
        return 1

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


def _no_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return False


def _no_conversion(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    raise ValueError("classical methods have no weights")


FAMILY = Family(
    name="classical",
    recognizes=_no_state_dict,
    convert_state_dict=_no_conversion,
    config_from_state_dict=_no_conversion,
    build=ClassicalInpainter,
    needs_weights=False,
)

MODELS: dict[str, dict[str, Any]] = {name: {"method": name, "radius": DEFAULT_RADIUS} for name in METHODS}
"""Named weight-free models: `--model telea`, `--model ns`."""
