"""The one place that turns a weight file into a ready network: family, config, checks, weights.

Every network the tool runs comes through here: the inpainting families (`models.FAMILIES`) and the
damage detectors (`models.DETECTORS`). `checkpoints` reads containers and knows nothing of families;
`models` holds the families and knows nothing of files. This module joins them. Before a network is
built for real, the config (from our metadata, or inferred from the tensors) is validated, the
network it describes is built on the `meta` device to check the family's parameter ceiling and
every tensor's key and shape, and the weights are checked to be finite, so a small file cannot make
the tool allocate a large network or run with NaN weights. The network comes back in float32 on the
device asked for, whatever precision the file stores (the engine converts it for inference).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar, cast

import torch

from inpaint_cli.checkpoints.containers import Checkpoint, read_checkpoint, save_converted
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import (
    DETECTORS,
    FAMILIES,
    FamilyConfig,
    Network,
    Registry,
    detect_family,
    weighted_families,
)

MAX_LISTED_KEYS = 8
INFERENCE_ERRORS = (ValueError, IndexError, KeyError, TypeError, RuntimeError, RecursionError)
"""What reading shapes off tensors of an unexpected layout can raise; each becomes one line."""


NetworkT = TypeVar("NetworkT", bound=Network)


class Resolved(NamedTuple):
    """A checkpoint understood: its family, its state dict in our layout and its validated config."""

    family: type[Network]
    state_dict: dict[str, torch.Tensor]
    config: FamilyConfig


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > MAX_LISTED_KEYS else "")


def check_tensors(
    expected: Mapping[str, torch.Size],
    state_dict: Mapping[str, torch.Tensor],
    family: str,
    source: object = None,
) -> None:
    """One error listing every missing, unexpected or mis-shaped tensor; nothing when all fit."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(shape)}"
        for k, shape in expected.items()
        if k in state_dict and state_dict[k].shape != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape {_listed(misshaped)}")
    if problems:
        raise CheckpointError(f"weights do not fit the {family} network: " + "; ".join(problems), path=source)


def check_finite(state_dict: Mapping[str, torch.Tensor], source: object = None) -> None:
    """Refuse weights holding NaN or infinity: they fill holes with black and exit 0."""
    for key, tensor in state_dict.items():
        if (
            tensor.is_floating_point()
            and tensor.device.type != "meta"
            and not bool(torch.isfinite(tensor).all())
        ):
            raise CheckpointError(f"non-finite values in {key}", path=source, hint="the file is damaged")


def load_strict(model: Network, state_dict: Mapping[str, torch.Tensor], source: object = None) -> None:
    """Load weights key for key; one error lists every missing, unexpected or mis-shaped tensor."""
    expected = {key: value.shape for key, value in model.state_dict().items()}
    check_tensors(expected, state_dict, model.family, source)
    model.load_state_dict(state_dict, strict=True)


def _stored_family(
    checkpoint: Checkpoint, family_name: str | None, registry: Mapping[str, type[NetworkT]]
) -> type[NetworkT]:
    stored = checkpoint.metadata.get("family", "")
    if stored not in registry or not registry[stored].needs_weights:
        if stored in FAMILIES or stored in DETECTORS:  # a detector given to `run`, a filler to `detect`
            raise CheckpointError(
                f"holds a {stored} model, not a {' or '.join(weighted_families(registry))} model"
            )
        raise CheckpointError(f"holds a model of the unknown family {stored!r}")
    if family_name and family_name != stored:
        raise CheckpointError(f"holds a {stored} model, not a {family_name} model")
    return registry[stored]


def _understand(
    checkpoint: Checkpoint, family_name: str | None, registry: Mapping[str, type[NetworkT]]
) -> Resolved:
    if checkpoint.is_converted:
        family = _stored_family(checkpoint, family_name, registry)
        state_dict = dict(checkpoint.state_dict)
        stored = checkpoint.config
        try:
            config = family.Config.from_json(stored) if stored is not None else None  # type: ignore[union-attr]
        except CheckpointError as exc:
            raise CheckpointError(f"invalid config in the metadata: {exc.what}") from None
        return Resolved(family, state_dict, config or family.config_from_state_dict(state_dict))
    family = registry[family_name] if family_name else detect_family(checkpoint.state_dict, registry)
    if not family.needs_weights:
        raise CheckpointError(f"the {family.family} methods take no weights")
    if not family.recognizes(checkpoint.state_dict):
        sample = ", ".join(list(checkpoint.state_dict)[:3])
        raise CheckpointError(f"not a {family.family} checkpoint (first keys: {sample})")
    state_dict = family.convert_state_dict(checkpoint.state_dict)
    return Resolved(family, state_dict, family.config_from_state_dict(state_dict))


def resolve_checkpoint(
    checkpoint: Checkpoint, family_name: str | None = None, registry: Registry = FAMILIES
) -> Resolved:
    """The family, the state dict in our layout and the architecture config of a checkpoint, checked.

    Our safetensors files carry family and config in their metadata (validated, then checked
    against the tensors); official files are recognised by their keys (or taken to be of
    `family_name`), converted, and their architecture inferred from the tensors. Either way the
    described network must stay under its family's ceilings and every tensor must fit it and be
    finite; nothing of the network's size is allocated before.
    """
    if family_name is not None and family_name not in registry:
        raise CheckpointError(f"unknown family {family_name!r}", path=checkpoint.path)
    try:
        resolved = _understand(checkpoint, family_name, registry)
        family = resolved.family
        expected = family.expected_tensors(resolved.config)
        check_tensors(expected, resolved.state_dict, family.family)
        check_finite(resolved.state_dict)
    except CheckpointError as exc:
        raise CheckpointError(exc.what, path=exc.path or checkpoint.path, hint=exc.hint) from None
    except INFERENCE_ERRORS as exc:
        raise CheckpointError(
            f"malformed state dict: {type(exc).__name__}: {exc}".splitlines()[0], path=checkpoint.path
        ) from None
    return resolved


def network_from_checkpoint(
    checkpoint: Checkpoint,
    family_name: str | None = None,
    *,
    registry: Mapping[str, type[NetworkT]] = FAMILIES,  # type: ignore[assignment]
    device: torch.device | str = "cpu",
) -> NetworkT:
    """Build the network a checkpoint describes (a family of `registry`), load it strictly, prepare
    it for inference and place it on `device`, in float32."""
    family, state_dict, config = resolve_checkpoint(checkpoint, family_name, registry)
    model = family.build(config)
    load_strict(model, state_dict, checkpoint.path)  # copies into the float32 parameters
    model.eval()
    model.prepare_for_inference()
    return cast(NetworkT, model.to(device))


def load_network(
    path: str | Path,
    family_name: str | None = None,
    *,
    registry: Mapping[str, type[NetworkT]] = FAMILIES,  # type: ignore[assignment]
    device: torch.device | str = "cpu",
) -> NetworkT:
    """`network_from_checkpoint` of the weight file at `path`."""
    return network_from_checkpoint(read_checkpoint(path), family_name, registry=registry, device=device)


def convert_checkpoint(
    source: Path,
    destination: Path,
    *,
    family: str,
    variant: str,
    source_url: str,
    source_sha256: str,
    license: str,
    source_format: str | None = None,
) -> Path:
    """Turn an official checkpoint (or one of ours) into our safetensors file, once: an inpainting
    family's or a detector's, the network's tensors only (no training state). `source_format`: the
    manifest's format of the file, where its name does not show it.

    The tensors are mapped onto our layout, the architecture is inferred from them, and the
    result must load strictly into the network it describes before anything is written.
    """
    registry: Registry = DETECTORS if family in DETECTORS else FAMILIES
    if family not in registry or not registry[family].needs_weights:
        known = ", ".join(weighted_families() + weighted_families(DETECTORS))
        raise CheckpointError(
            f"the {family} family is not available in this version of inpaint",
            path=source,
            hint=f"known: {known}",
        )
    checkpoint = read_checkpoint(source, source_format)
    network_family, state_dict, config = resolve_checkpoint(checkpoint, family, registry)
    load_strict(network_family.build(config), state_dict, source)
    return save_converted(
        destination,
        state_dict,
        family=family,
        variant=variant,
        config=config.to_json(),
        source_url=source_url,
        source_sha256=source_sha256,
        license=license,
    )
