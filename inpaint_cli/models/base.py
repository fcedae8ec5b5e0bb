"""The contract between the engine and a model family.

A family is a network plus the facts the engine needs to feed it: how to normalise the image,
which value marks a hole in the mask the network reads, the padding multiple and mode, and the
resolution it was trained at. The engine owns everything else (decoding, padding, compositing,
precision, devices), so a family file contains only the network and its checkpoint conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

PadMode = Literal["symmetric", "reflect", "replicate", "constant"]
"""`symmetric` repeats the edge sample (numpy's mode, LaMa's dataset); `reflect` does not (PyTorch's)."""

Intermediates = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine map from [0, 1] RGB to what the network reads: `(x - mean) / std`."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_network(self, rgb: torch.Tensor) -> torch.Tensor:
        mean, std = self._as_tensors(rgb)
        return (rgb - mean) / std

    def from_network(self, values: torch.Tensor) -> torch.Tensor:
        mean, std = self._as_tensors(values)
        return values * std + mean

    def _as_tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        return mean, std


UNIT_RANGE = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
SIGNED_UNIT_RANGE = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class InpaintModel(nn.Module):
    """Base class of every family's network.

    Subclasses set the class attributes and implement `forward`. The engine guarantees that
    `forward` receives an image whose sides are multiples of `pad_multiple` and at least
    `min_size`, already normalised, and a mask in the family's own convention.
    """

    family: ClassVar[str]
    normalization: ClassVar[Normalization] = UNIT_RANGE
    hole_value: ClassVar[float] = 1.0
    """Value of a hole pixel in the mask the network reads (PConv uses 0 = hole, 1 = valid)."""
    pad_mode: ClassVar[PadMode] = "symmetric"
    training_size: ClassVar[int] = 256
    """Side length (pixels) of the crops the weights were trained on; strategies use it."""
    activation_bytes_per_pixel: ClassVar[int] = 4096
    """Peak fp32 activation memory of one forward pass per input pixel (measured per family)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(config)

    @property
    def pad_multiple(self) -> int:
        """Both sides of the network input must be multiples of this."""
        return 8

    @property
    def min_size(self) -> int:
        """Smallest side (after padding) the network accepts."""
        return self.pad_multiple

    def memory_estimate(self, height: int, width: int) -> int:
        """Peak bytes of activations for one fp32 forward pass at this (padded) size, batch 1.

        Families whose cost is not linear in the pixel count (contextual attention) override it.
        """
        return self.activation_bytes_per_pixel * height * width

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, intermediates: Intermediates | None = None
    ) -> torch.Tensor:
        """Predict the whole image.

        image: N×3×H×W, normalised with `normalization`; hole pixels still hold the original values
            (the family masks its input the way its training did).
        mask: N×1×H×W float, `hole_value` where the pixel is a hole.
        intermediates: when a dict is given, the family stores named tensors in it for
            `--save-intermediates` (`mask.<layer>`, `gate.<layer>`, `feature.<layer>`, and `coarse` for
            a two-stage network's first output, normalised like the prediction). When it is None,
            capturing must cost nothing.
        Returns the prediction N×3×H×W in the same normalised space as `image`.
        """
        raise NotImplementedError

    def prepare_for_inference(self) -> None:
        """Called once after the weights are loaded and the model is in eval mode.

        Families fold batch norms, drop constant tensors and so on here. The result must be
        numerically equivalent (within 1e-4) to the unprepared network.
        """


@dataclass(frozen=True)
class Family:
    """How one family turns a checkpoint into a network. Pure functions, no I/O."""

    name: str
    recognizes: Callable[[Mapping[str, torch.Tensor]], bool]
    """True when a state dict (official layout or ours) belongs to this family."""
    convert_state_dict: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]
    """Official layout (already unwrapped from its container) -> our layout. Idempotent on ours."""
    config_from_state_dict: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]
    """Architecture hyper-parameters inferred from the tensors of a state dict in our layout."""
    build: Callable[[Mapping[str, Any]], InpaintModel]
    """An untrained network for a config."""
    needs_weights: bool = True
