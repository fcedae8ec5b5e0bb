"""What to do with a job before its pixels are read, for every kind of job: a known problem, files it
would write that exist already (skip the job, redo it, or refuse it, from its provenance record), the
temporary files killed runs left, and a dry run's look at the file headers.

Nothing that this tool did not write is replaced without `--overwrite`: on a resume a job's existing
files must all be listed by its record (the main output's), else the job fails naming the file. A mask
a person corrected in `inpaint edit` is not replaced even with `--overwrite`: that work exists nowhere
else, while the detector's mask it replaced is kept beside it.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterable
from pathlib import Path

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import Artefact, Existing, Job, Outputs
from inpaint_cli.batch.outcomes import JobOutcome, Status
from inpaint_cli.batch.provenance import Provenance
from inpaint_cli.errors import InpaintError, InputError, OutputError
from inpaint_cli.files import storage
from inpaint_cli.files.atomic import TEMPORARY_NAME, remove_if_abandoned
from inpaint_cli.imaging import headers
from inpaint_cli.imaging.masks import size_mismatch
from inpaint_cli.review.editor.records import EditRecord, hand_edit

logger = logging.getLogger("inpaint_cli.batch.engine")

REDO_HINT = "use --overwrite to redo it, or choose another -o"


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


def _present(artefact: Artefact) -> list[Path]:
    """The files of an artefact that exist: the file itself (if not empty: outputs are renamed into
    place only once whole, so an empty one is none of ours), or the files in its folder."""
    if artefact.folder:
        try:
            return sorted(Path(entry.path) for entry in os.scandir(artefact.path) if not entry.is_dir())
        except OSError:
            return []
    try:
        return [artefact.path] if artefact.path.stat().st_size > 0 else []
    except OSError:
        return []


def precheck(job: Job, outputs: Outputs, made_with: Provenance | None = None) -> JobOutcome | None:
    """The outcome of a job decided without reading its image: a known problem or existing files.

    With `Existing.ERROR` any existing file the job writes fails it. With `Existing.SKIP` (a resume)
    the job is skipped only if its provenance record says it was made with the same settings as
    `made_with` and has every artefact asked for now; it is redone if its record shows it was cut
    short or lacks an artefact (a panel), and refused if it was made otherwise, by something else, or
    if a file it would write is not listed in its record. `--overwrite` redoes it (what the command
    reads is never written: `jobs.check_plan` refused that before anything ran).
    """
    if job.problem is not None:
        return _failed(job, job.problem)
    artefacts = outputs.artefacts(job)
    present = [(artefact, path) for artefact in artefacts for path in _present(artefact)]
    for _, path in present:
        edit = _hand_edit(path)
        if edit is not None:
            return _failed(job, _kept_edit(path, edit))
    if not present or outputs.existing is Existing.OVERWRITE:
        return None
    first, path = present[0]
    if outputs.existing is Existing.ERROR or not outputs.recorded:
        made = _made_by(path, outputs) if path == job.output else ""
        hint = keep_both(job, outputs, made_with, "replace it") if path == job.output else None
        return _failed(
            job,
            OutputError(
                f"{first.name} exists{made}", path=path, hint=hint or "use --overwrite to replace it"
            ),
        )
    return _resume(job, outputs, artefacts, present, made_with)


def _hand_edit(path: Path) -> EditRecord | None:
    """The record of a mask corrected in `inpaint edit` that is still as the person left it."""
    return hand_edit(path) if path.suffix == ".png" and not storage.is_remote(path) else None


def _kept_edit(mask: Path, edit: EditRecord) -> OutputError:
    kept = f"; the detector's mask is kept as {', '.join(edit.originals)}" if edit.originals else ""
    hint = f"delete it to detect again{kept}"
    return OutputError("edited by hand (inpaint edit), so kept", path=mask, hint=hint)


def _resume(
    job: Job,
    outputs: Outputs,
    artefacts: list[Artefact],
    present: list[tuple[Artefact, Path]],
    made_with: Provenance | None,
) -> JobOutcome | None:
    """The outcome of a job with existing files, in a resumed batch; None: (re)do it."""
    main = next(artefact for artefact in artefacts if not artefact.folder)
    try:
        record = provenance.read_record(main.path)
    except InputError as error:  # the record's own problem (a FIFO, nesting 100,000 deep), and the way on
        return _failed(job, InputError(error.what, path=error.path, hint=REDO_HINT))
    first, path = present[0]
    if record is None or record.get("kind", "inpaint") != outputs.kind:
        made_by = "another program or an older inpaint" if record is None else f"inpaint {record['kind']}"
        problem = OutputError(
            f"{first.name} exists and has no provenance record (made by {made_by})",
            path=path,
            hint=(keep_both(job, outputs, made_with, "redo it") if path == job.output else None) or REDO_HINT,
        )
        return _failed(job, problem)
    if not record["complete"]:
        return None  # ours, cut short: what it was writing follows its record, so redo with these settings
    ours = {str(listed) for listed in record["written"]}
    for artefact, path in present:
        if provenance.absolute(path) not in ours:
            problem = OutputError(
                f"{artefact.name} exists and was not written with {main.path.name}",
                path=path,
                hint="use --overwrite to replace it, or choose another -o",
            )
            return _failed(job, problem)
    if not _present(main):
        return None  # ours, and its main output is gone: redo it
    differences = made_with.differences(record["provenance"]) if made_with is not None else []
    if differences:
        problem = OutputError(
            f"{main.name} made with other settings: {', '.join(differences)}",
            path=main.path,
            hint=keep_both(job, outputs, made_with, "redo it") or REDO_HINT,
        )
        return _failed(job, problem)
    if provenance.missing_artefacts(record, artefacts):
        return None  # same settings, so the redone output is the same; the missing artefacts appear
    return JobOutcome(job, Status.SKIPPED, provenance=record["provenance"])


def _made_by(output: Path, outputs: Outputs) -> str:
    """`, made with --model NAME` when a filled image's provenance record names its model (other
    kinds' models, detectors, are not chosen with --model)."""
    if outputs.kind != "inpaint":
        return ""
    record = provenance.read_record(output)
    model = record["provenance"].get("model") if record is not None else None
    return f", made with --model {model}" if isinstance(model, str) else ""


KEEP_BOTH_TRIES = 100
"""Names tried for `keep_both`'s suggestion: `_<model>`, then `_<model>-2` ... while they are taken."""


def keep_both(job: Job, outputs: Outputs, made_with: Provenance | None, verb: str) -> str | None:
    """The hint for a filled image in the way: the exact `-o` that keeps both, and `--overwrite` to
    `verb`; None for other kinds of output, or without a model to name.

    The suggestion is the output's name (a batch: its output folder) with this run's model added,
    as image tools that name outputs after their model do (`photo_inpainted_pconv-tiny.png`)."""
    if made_with is None or outputs.kind != "inpaint" or job.output is None:
        return None
    if job.relative is None:
        taken = job.output
        names = [f"{taken.stem}_{{}}{taken.suffix}", ""]
    else:
        taken = job.output.parents[len(job.relative.parts) - 1]  # the batch's output folder
        names = [f"{taken.name}_{{}}", os.sep]
    model = made_with.model
    for tag in [model, *(f"{model}-{count}" for count in range(2, KEEP_BOTH_TRIES))]:
        free = taken.with_name(names[0].format(tag))
        if not free.exists():
            return f"to keep both: -o {shlex.quote(str(free) + names[1])}; to {verb}: --overwrite"
    return None


def _failed(job: Job, problem: InpaintError) -> JobOutcome:
    return JobOutcome(job, Status.FAILED, error=problem.one_line())


def dry_run_action(
    job: Job, outputs: Outputs, made_with: Provenance | None, *, max_pixels: int
) -> tuple[str, bool]:
    """What a run would do with a job, judged from names and file headers only (milliseconds per
    file): `("run", False)`, `("skip: ...", False)`, or the one-line error and True if it would fail."""
    decided = precheck(job, outputs, made_with)
    if decided is not None:
        failed = decided.status is Status.FAILED
        return (decided.error if failed else "skip: output exists, made with the same settings"), failed
    problem = header_problem(job, max_pixels=max_pixels)
    return ("run", False) if problem is None else (problem, True)


def header_problem(job: Job, *, max_pixels: int) -> str | None:
    """Why a job's files would fail, seen in their headers: not an image, too large, truncated, a
    mask of another size. None if the headers look fine (decoding may still find damage)."""
    if storage.is_remote(job.image) or any(map(storage.is_remote, job.masks)):
        return None  # headers of objects in a store are not fetched for a dry run
    try:
        image = headers.read_header(job.image, max_pixels=max_pixels)
        for path, header in [(job.image, image)] + [
            (mask, headers.read_header(mask, max_pixels=max_pixels)) for mask in job.masks
        ]:
            if header.truncated:
                raise InputError("file is truncated", path=path, hint="re-export or re-scan it")
            if image.size not in (header.size, header.size[::-1]):  # sideways: decoding decides
                raise size_mismatch(path, header.size, image.size, job.image)
    except InpaintError as error:
        return error.one_line()
    return None
