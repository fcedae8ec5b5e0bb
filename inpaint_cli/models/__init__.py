"""The model families: one class each, registered by name. Loading a file: `checkpoints.loading`."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import classical
from inpaint_cli.models.base import FamilyConfig, InpaintModel
from inpaint_cli.models.classical import ClassicalInpainter
from inpaint_cli.models.gatedconv import DeepFillV2
from inpaint_cli.models.lama import Lama
from inpaint_cli.models.pconv import PConvUNet

__all__ = ["FAMILIES", "FamilyConfig", "InpaintModel", "classical", "detect_family", "weighted_families"]

# Explicit name -> family class table; each class writes its own name once, as `family`.
FAMILIES: dict[str, type[InpaintModel]] = {
    family.family: family for family in (ClassicalInpainter, DeepFillV2, Lama, PConvUNet)
}


def weighted_families() -> list[str]:
    """Names of the families that load weights (every one but the classical methods)."""
    return [name for name, family in FAMILIES.items() if family.needs_weights]


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> type[InpaintModel]:
    """The family whose key layout matches a state dict (official layout or ours)."""
    for family in FAMILIES.values():
        if family.recognizes(state_dict):
            return family
    sample = ", ".join(list(state_dict)[:3])
    raise CheckpointError(
        f"unknown checkpoint layout (first keys: {sample})",
        hint=f"name the family with --model; known: {', '.join(weighted_families())}",
    )
