"""The network families: one class each, registered by name. Loading a file: `checkpoints.loading`.

Two registries, so that a detector is never taken for an inpainting model or the other way round:
`FAMILIES` (what `run --model` fills holes with) and `DETECTORS` (what `detect` finds damage with).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import classical
from inpaint_cli.models.base import FamilyConfig, InpaintModel, Network
from inpaint_cli.models.classical import ClassicalInpainter
from inpaint_cli.models.gatedconv import DeepFillV2
from inpaint_cli.models.lama import Lama
from inpaint_cli.models.pconv import PConvUNet
from inpaint_cli.models.scratch import ScratchUNet

__all__ = [
    "DETECTORS",
    "FAMILIES",
    "FamilyConfig",
    "InpaintModel",
    "Network",
    "Registry",
    "classical",
    "detect_family",
    "weighted_families",
]

Registry = Mapping[str, type[Network]]

# Explicit name -> family class tables; each class writes its own name once, as `family`.
FAMILIES: dict[str, type[InpaintModel]] = {
    family.family: family for family in (ClassicalInpainter, DeepFillV2, Lama, PConvUNet)
}
DETECTORS: dict[str, type[ScratchUNet]] = {ScratchUNet.family: ScratchUNet}


def weighted_families(registry: Registry = FAMILIES) -> list[str]:
    """Names of the families of `registry` that load weights (all but the classical methods)."""
    return [name for name, family in registry.items() if family.needs_weights]


def detect_family(state_dict: Mapping[str, torch.Tensor], registry: Registry = FAMILIES) -> type[Network]:
    """The family of `registry` whose key layout matches a state dict (official layout or ours)."""
    for family in registry.values():
        if family.recognizes(state_dict):
            return family
    sample = ", ".join(list(state_dict)[:3])
    known = ", ".join(weighted_families(registry))
    hint = f"name the family with --model; known: {known}" if registry is FAMILIES else f"known: {known}"
    raise CheckpointError(f"unknown checkpoint layout (first keys: {sample})", hint=hint)
