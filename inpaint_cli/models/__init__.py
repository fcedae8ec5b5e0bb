"""Model families and the one place that turns a checkpoint into a ready network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from inpaint_cli.checkpoints import Checkpoint
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import classical, gatedconv, lama, pconv
from inpaint_cli.models.base import Family, InpaintModel

# Explicit name -> family table; a family is added here when its module exists.
FAMILIES: dict[str, Family] = {
    "classical": classical.FAMILY,
    "gatedconv": gatedconv.FAMILY,
    "lama": lama.FAMILY,
    "pconv": pconv.FAMILY,
}

MAX_LISTED_KEYS = 8


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> Family:
    """The family whose key layout matches a state dict."""
    for family in FAMILIES.values():
        if family.recognizes(state_dict):
            return family
    sample = ", ".join(list(state_dict)[:3])
    raise CheckpointError(
        f"unknown checkpoint layout (first keys: {sample})",
        hint=f"name the family with --model; known: {', '.join(f for f in FAMILIES if f != 'classical')}",
    )


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > MAX_LISTED_KEYS else "")


def load_strict(model: InpaintModel, state_dict: Mapping[str, torch.Tensor], source: object = None) -> None:
    """Load weights key for key; one error lists every missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape {_listed(misshaped)}")
    if problems:
        raise CheckpointError(
            f"weights do not fit the {model.family} network: " + "; ".join(problems), path=source
        )
    model.load_state_dict(state_dict, strict=True)


def resolve_checkpoint(
    checkpoint: Checkpoint, family_name: str | None = None
) -> tuple[Family, dict[str, torch.Tensor], dict[str, Any]]:
    """The family, the state dict in our layout and the architecture config of a checkpoint.

    Our safetensors files carry family and config in their metadata; official files are
    recognised by their keys (or taken to be of `family_name`), converted, and their
    architecture inferred from the tensors.
    """
    try:
        if checkpoint.is_converted:
            stored = checkpoint.metadata.get("family", "")
            if stored not in FAMILIES:
                raise CheckpointError(f"holds a model of the unknown family {stored!r}")
            if family_name and family_name != stored:
                raise CheckpointError(f"holds a {stored} model, not a {family_name} model")
            family = FAMILIES[stored]
            state_dict = checkpoint.state_dict
            config = checkpoint.config or family.config_from_state_dict(state_dict)
            return family, state_dict, config
        family = FAMILIES[family_name] if family_name else detect_family(checkpoint.state_dict)
        if not family.recognizes(checkpoint.state_dict):
            sample = ", ".join(list(checkpoint.state_dict)[:3])
            raise CheckpointError(f"not a {family.name} checkpoint (first keys: {sample})")
        state_dict = family.convert_state_dict(checkpoint.state_dict)
        return family, state_dict, family.config_from_state_dict(state_dict)
    except CheckpointError as exc:
        raise CheckpointError(exc.what, path=exc.path or checkpoint.path, hint=exc.hint) from None


def network_from_checkpoint(checkpoint: Checkpoint, family_name: str | None = None) -> InpaintModel:
    """Build the network a checkpoint describes, load it strictly, and prepare it for inference."""
    family, state_dict, config = resolve_checkpoint(checkpoint, family_name)
    model = family.build(config)
    load_strict(model, state_dict, checkpoint.path)
    model.eval()
    model.prepare_for_inference()
    return model
