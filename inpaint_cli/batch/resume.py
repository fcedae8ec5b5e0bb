"""What to do with a job before its pixels are read: a known problem, an existing output (skip it,
redo it, or refuse it, from its provenance record), the temporary files killed runs left, and a dry
run's look at the file headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import Existing, Job, RunSettings, intermediates_folder, panel_path
from inpaint_cli.batch.outcomes import JobOutcome, Status
from inpaint_cli.batch.provenance import Provenance
from inpaint_cli.errors import InpaintError, InputError, OutputError
from inpaint_cli.files import storage
from inpaint_cli.files.atomic import TEMPORARY_NAME, remove_if_abandoned
from inpaint_cli.imaging import headers
from inpaint_cli.imaging.masks import size_mismatch

logger = logging.getLogger("inpaint_cli.batch.engine")


def output_complete(path: Path) -> bool:
    """Whether an existing output file is whole: outputs are renamed into place only once fully
    written, so any non-empty file under the final name is complete."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def remove_stale_parts(outputs: Iterable[Path], folders: Iterable[Path] = ()) -> list[Path]:
    """Delete the temporary files that killed runs left beside these outputs, listing each folder once,
    and any left in `folders` (a job's own intermediates folder, whose file names vary by model).

    `atomic.atomic_path` names them `.<stem>.<random>.part<suffix>`; the random part has no dot,
    so the temporary file of `x.y.png` is never taken for one of `x.png`. A temporary file that a
    live process holds (a second batch on the same folder) is left alone.
    """
    names_by_folder: dict[Path, set[str] | None] = {folder: None for folder in folders}  # None: all
    for output in outputs:
        names = names_by_folder.setdefault(output.parent, set())
        if names is not None:
            names.add(output.name)
    removed = []
    for folder, names in names_by_folder.items():
        if storage.is_remote(folder):  # object stores get whole objects in one put: no temporary files
            continue
        try:
            entries = os.listdir(folder)
        except OSError:  # not created yet, or not ours to list: nothing of ours to clean
            continue
        for entry in entries:
            match = TEMPORARY_NAME.fullmatch(entry)
            ours = match and (names is None or match["stem"] + match["suffix"] in names)
            if ours and remove_if_abandoned(folder / entry):
                removed.append(folder / entry)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return sorted(removed)


def precheck(job: Job, settings: RunSettings, made_with: Provenance | None = None) -> JobOutcome | None:
    """The outcome of a job decided without reading its image: a known problem or an existing output.

    With `Existing.SKIP` (a resume) an existing output is skipped only if its provenance record says
    it was made with the same settings as `made_with` and has every artefact asked for now; it is
    redone if its record shows it was cut short or lacks an artefact (a panel), and refused if it
    was made otherwise or by something else: `--overwrite` redoes it.
    """
    problem = job.problem
    if problem is None and job.output.resolve() == job.image.resolve():
        problem = OutputError("output would overwrite the input", path=job.output, hint="choose another -o")
    if problem is None and job.output.exists():
        if settings.existing is Existing.ERROR:
            problem = OutputError("output exists", path=job.output, hint="use --overwrite to replace it")
        elif settings.existing is Existing.SKIP:
            return _resume(job, settings, made_with)
    if problem is not None:
        return JobOutcome(job, Status.FAILED, error=problem.one_line())
    return None


def _resume(job: Job, settings: RunSettings, made_with: Provenance | None) -> JobOutcome | None:
    """The outcome of a job whose output exists, in a resumed batch; None: (re)do it."""
    if not output_complete(job.output):
        return None
    record = provenance.read_record(job.output)
    redo = "use --overwrite to redo it, or choose another -o"
    if record is None:
        problem = OutputError(
            "output exists and has no provenance record (made by another program or an older inpaint)",
            path=job.output,
            hint=redo,
        )
        return JobOutcome(job, Status.FAILED, error=problem.one_line())
    if not record["complete"]:
        return None  # ours, cut short before its panel or intermediates: redo with these settings
    differences = made_with.differences(record["provenance"]) if made_with is not None else []
    if differences:
        problem = OutputError(
            f"output made with other settings: {', '.join(differences)}", path=job.output, hint=redo
        )
        return JobOutcome(job, Status.FAILED, error=problem.one_line())
    panel = panel_path(job.output) if settings.panel else None
    if provenance.missing_artefacts(record, panel, intermediates_folder(job, settings)):
        return None  # same settings, so the redone output is the same; the missing artefacts appear
    return JobOutcome(job, Status.SKIPPED, provenance=record["provenance"])


def dry_run_action(job: Job, settings: RunSettings, made_with: Provenance | None = None) -> tuple[str, bool]:
    """What a run would do with a job, judged from names and file headers only (milliseconds per
    file): `("run", False)`, `("skip: ...", False)`, or the one-line error and True if it would fail."""
    decided = precheck(job, settings, made_with)
    if decided is not None:
        failed = decided.status is Status.FAILED
        return (decided.error if failed else "skip: output exists, made with the same settings"), failed
    problem = header_problem(job, settings)
    return ("run", False) if problem is None else (problem, True)


def header_problem(job: Job, settings: RunSettings) -> str | None:
    """Why a job's files would fail, seen in their headers: not an image, too large, truncated, a
    mask of another size. None if the headers look fine (decoding may still find damage)."""
    if storage.is_remote(job.image) or any(map(storage.is_remote, job.masks)):
        return None  # headers of objects in a store are not fetched for a dry run
    try:
        image = headers.read_header(job.image, max_pixels=settings.max_pixels)
        for path, header in [(job.image, image)] + [
            (mask, headers.read_header(mask, max_pixels=settings.max_pixels)) for mask in job.masks
        ]:
            if header.truncated:
                raise InputError("file is truncated", path=path, hint="re-export or re-scan it")
            if image.size not in (header.size, header.size[::-1]):  # sideways: decoding decides
                raise size_mismatch(path, header.size, image.size, job.image)
    except InpaintError as error:
        return error.one_line()
    return None
