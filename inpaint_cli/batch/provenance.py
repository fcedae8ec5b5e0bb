"""What made an output: model and weights checksum, strategy, precision, mask and output settings,
tool version. Recorded per output, so that a resumed batch never mixes models silently.

The record is a small JSON file beside the output, hidden (`.<output name>.inpaint.json`), written
atomically after the output and its other artefacts: a record therefore always describes a complete
output (an output without one was cut short, or made by something else). It also lists the files
written, so a resume recreates a missing panel or intermediates. Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from inpaint_cli.errors import InputError
from inpaint_cli.files.jsonfile import json_text, read_json
from inpaint_cli.files.storage import is_remote

RECORD_SUFFIX = ".inpaint.json"
RECORD_FORMAT = "inpaint-provenance"
RECORD_VERSION = 1
MAX_RECORD_BYTES = 16 << 20
"""A record lists an output's files (its intermediates: a few hundred): far under this."""
UNCOMPARED = frozenset({"version", "device"})
"""Recorded but not compared: a new tool version or another device does not make outputs stale."""


def record_path(output: Path) -> Path:
    """The provenance record of an output: `.<output name>.inpaint.json` beside it."""
    return output.with_name(f".{output.name}{RECORD_SUFFIX}")


def tool_version() -> str:
    from inpaint_cli import __version__

    return __version__


@dataclass(frozen=True)
class Provenance:
    """The settings an output was made with (`weights_sha256` None: a classical method)."""

    model: str
    weights_sha256: str | None
    strategy: dict[str, Any]
    """`name` (auto, full, crop, tile, resize) and the options that shape the plan."""
    precision: str | None
    mask: dict[str, Any]
    """`threshold`, `invert`, `dilate`."""
    output: dict[str, Any]
    """`format` (None: the input's) and `quality`."""
    version: str
    device: str | None = None
    unknown: tuple[str, ...] = ()
    """Fields not known yet and not compared (a dry run loads no model, so knows no precision)."""

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        del record["unknown"]
        return record

    def differences(self, recorded: dict[str, Any], *, unknown: Iterable[str] = ()) -> list[str]:
        """What differs from a recorded provenance, as `model gatedconv-tiny (now telea)` phrases.
        `UNCOMPARED` fields and those named `unknown` (not known yet, as in a dry run) are skipped."""
        skipped = UNCOMPARED | set(unknown) | set(self.unknown)
        found = []
        for key, value in self.as_dict().items():
            if key in skipped:
                continue
            before = recorded.get(key)
            if isinstance(value, dict) and isinstance(before, dict):
                names = list({**value, **before})  # a setting only one side has differs too
                found += [
                    f"{key} {name} {_show(before.get(name))} (now {_show(value.get(name))})"
                    for name in names
                    if before.get(name) != value.get(name)
                ]
            elif before != value:
                found.append(f"{key.replace('_', ' ')} {_show(before)} (now {_show(value)})")
        return found


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:  # a SHA-256: its first 12 digits identify it
        return value[:12]
    return "none" if value is None else str(value)


def for_run(
    *,
    model: str,
    weights_sha256: str | None,
    strategy: str,
    precision: str | None,
    settings: Any,
    plan_options: dict[str, Any] | None = None,
    device: str | None = None,
    detector: str | None = None,
) -> Provenance:
    """The provenance of outputs made with these settings (`settings` is a `jobs.RunSettings`);
    `detector` for `--mask auto` runs, whose holes come from a detector rather than mask files."""
    mask = {"threshold": settings.mask_threshold, "invert": settings.invert_mask, "dilate": settings.dilate}
    return Provenance(
        model=model,
        weights_sha256=weights_sha256,
        strategy={"name": strategy, **(plan_options or {})},
        precision=precision,
        mask=mask if detector is None else {**mask, "detector": detector},
        output={"format": settings.output_format, "quality": settings.quality},
        version=tool_version(),
        device=device,
    )


PLAN_OPTIONS = ("max_side", "tile_size", "tile_overlap", "crop_margin")
"""The options that shape a plan, recorded with the strategy's name."""
REFINE_SETTINGS = ("refine_iters", "refine_lr", "refine_min_side", "refine_max_scales", "refine_px_budget")


def plan_options(options: Any) -> dict[str, Any]:
    """What a `RunOptions` or an `InpaintOptions` (same field names) records beside the strategy: the
    options that shape the plan, and with refinement its settings (`refine`, absent without it, so
    that outputs made before refinement existed still match an unrefined run)."""
    recorded = {name: getattr(options, name) for name in PLAN_OPTIONS}
    if options.refine:
        recorded["refine"] = {
            name.removeprefix("refine_"): getattr(options, name) for name in REFINE_SETTINGS
        }
    return recorded


def expected(
    model: str,
    checkpoint: str | os.PathLike[str] | None,
    settings: Any,
    *,
    strategy: str,
    plan_options: dict[str, Any],
) -> Provenance:
    """The provenance a run with these options would record, as far as it is known without loading
    the model (for a dry run): the precision depends on the device, so it is left uncompared."""
    made_with = for_run(
        model=model,
        weights_sha256=weights_checksum(model, checkpoint),
        strategy=strategy,
        precision=None,
        settings=settings,
        plan_options=plan_options,
    )
    return replace(made_with, unknown=("precision",))


def weights_checksum(model: str, checkpoint: str | os.PathLike[str] | None = None) -> str | None:
    """SHA-256 of the weights a run uses: the `--checkpoint` file, else the cached or bundled file
    of a named model as the cache index or manifest records it; None for classical methods."""
    from inpaint_cli import weights
    from inpaint_cli.errors import InpaintError

    if checkpoint is not None:
        return weights.file_sha256(Path(checkpoint))
    record = weights.cache_record(model)
    if record is not None:
        return record["sha256"]
    try:
        entry = weights.get_entry(model)
    except InpaintError:  # not a manifest name: a classical method
        return None
    return next((source.sha256 for source in entry.sources if source.is_bundled), None)


# --- the record beside each output --------------------------------------------------------------------


def write_record(
    path: Path,
    made_with: Provenance,
    *,
    kind: str,
    image: Path,
    written: list[Path],
    intermediates: Path | None,
    complete: bool,
) -> Path:
    """Write an output's record to `path` (`record_path(output)`), atomically.

    Written twice per output: `complete: false` before the output (whatever follows is ours, even
    if the run is killed), `complete: true` after everything it lists in `written`. `kind` is the
    command's job kind (`inpaint`, `detect`): a resume never takes one kind's output for another's.
    """
    from inpaint_cli.files.atomic import atomic_path

    record = {
        "format": RECORD_FORMAT,
        "format_version": RECORD_VERSION,
        "kind": kind,
        "complete": complete,
        "provenance": made_with.as_dict(),
        "image": absolute(image),
        "written": [absolute(path) for path in written],
        "intermediates": None if intermediates is None else absolute(intermediates),
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(record, indent=1) + "\n", encoding="utf-8")
    return path


def read_record(output: Path) -> dict[str, Any] | None:
    """The record of an output, or None if it has none or one of another program.

    A record that cannot be read (a FIFO, a device, nesting 100,000 deep) raises `InputError` naming
    it, so that its job fails with that line and the rest of a resumed batch goes on.
    """
    path = record_path(output)
    try:
        record = read_json(path, max_bytes=MAX_RECORD_BYTES)
    except InputError:
        if not (path.exists() if is_remote(path) else os.path.lexists(path)):
            return None
        raise
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    if not isinstance(record.get("complete"), bool) or not isinstance(record.get("kind", ""), str):
        return None
    if not isinstance(record.get("provenance"), dict):
        return None
    written = record.get("written")
    if not isinstance(written, list) or not all(isinstance(item, str) for item in written):
        return None
    return record


def missing_artefacts(record: dict[str, Any], artefacts: Iterable[Any]) -> list[str]:
    """The artefacts (`jobs.Artefact`) asked for now that the recorded run did not leave, by name."""
    written = {str(path) for path in record["written"]}
    missing = []
    for artefact in artefacts:
        where = absolute(artefact.path)
        if artefact.folder:
            inside = [path for path in written if _is_under(path, where)]
            if record.get("intermediates") != where or not all(os.path.exists(path) for path in inside):
                missing.append(artefact.name)
        elif where not in written or not artefact.path.exists():
            missing.append(artefact.name)
    return missing


def absolute(path: object) -> str:
    """The path as the report and records show it: absolute, symlinks kept (URLs as they are)."""
    text = str(path)
    return text if "://" in text else os.path.abspath(text)


def _is_under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)
