"""The review page's thumbnails, a job kind of the one engine (`engine.run_jobs`).

Each row of a page (an image of a batch: its input, masks and result) is a job: its pictures are
decoded, judged at full size and made small in the reader threads (so at most one full-size row per
reader is held), and written in the writer threads, atomically. A row whose files cannot be read
fails alone, with its reason as a finding; Ctrl-C stops the build with the thumbnails under way
written. Nothing is recorded or resumed: the page keeps its own cache of the rows it has drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from inpaint_cli.batch.jobs import Artefact, Existing, Job
from inpaint_cli.batch.outcomes import JobOutcome, Status
from inpaint_cli.review import thumbnails as review_pixels


@dataclass(frozen=True)
class RowPictures:
    """What one page row shows: the files, and how its run read the masks."""

    key: str
    """The row's thumbnail names start with it (a digest of the files and their states)."""
    image: Path | None
    masks: tuple[Path, ...]
    result: Path | None
    """The filled image (or a detection's overlay); None for a failure."""
    mask_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ThumbnailSettings:
    """Every job writes its row's thumbnails into the page's files folder (overwriting: a row is
    redrawn only when its files changed)."""

    kind: ClassVar[str] = "thumbnails"
    recorded: ClassVar[bool] = False
    folder: Path
    existing: Existing = Existing.OVERWRITE

    def artefacts(self, job: Job) -> list[Artefact]:
        key = str(job.relative)
        return [
            Artefact(f"{kind} thumbnail", review_pixels.thumbnail_path(self.folder, key, kind))
            for kind in review_pixels.THUMBNAIL_KINDS
        ]


@dataclass
class ThumbnailKind:
    """Thumbnails of page rows, the rows found by their key (`Job.relative`)."""

    settings: ThumbnailSettings
    rows: dict[str, RowPictures]
    side: int
    max_pixels: int
    made_with: None = None
    stage: ClassVar[str] = "thumbnails"

    def load(self, outcome: JobOutcome) -> review_pixels.Thumbnails:
        row = self.rows[str(outcome.job.relative)]
        return review_pixels.make_thumbnails(
            row.image, row.masks, row.result, self.side, row.mask_options, self.max_pixels
        )

    def process(self, outcome: JobOutcome, loaded: review_pixels.Thumbnails) -> review_pixels.Thumbnails:
        outcome.details["findings"] = loaded.findings
        return loaded

    def save(self, outcome: JobOutcome, loaded: object, made: review_pixels.Thumbnails) -> None:
        thumbs = review_pixels.write_thumbnails(made, self.settings.folder, str(outcome.job.relative))
        outcome.details["thumbs"] = thumbs
        outcome.written += [
            review_pixels.thumbnail_path(self.settings.folder, str(outcome.job.relative), kind)
            for kind, link in thumbs.items()
            if link is not None
        ]


def draw_thumbnails(
    rows: Collection[RowPictures],
    folder: Path,
    *,
    side: int,
    workers: int,
    max_pixels: int,
    on_outcome: Callable[[JobOutcome], None] | None = None,
) -> dict[str, dict]:
    """Per row key, `{"thumbs": {kind: URL or None}, "findings": [...]}`. A row that failed has no
    thumbnails and its reason as a finding. Ctrl-C raises `KeyboardInterrupt` once the thumbnails
    under way are written."""
    from inpaint_cli.batch.engine import run_jobs

    kind = ThumbnailKind(ThumbnailSettings(folder), {row.key: row for row in rows}, side, max_pixels)
    jobs = [Job(row.image or folder / row.key, row.masks, None, relative=Path(row.key)) for row in rows]
    ran = run_jobs(kind, jobs, workers=workers, on_outcome=on_outcome)
    if ran.interrupted:
        raise KeyboardInterrupt
    made = {}
    for outcome in ran:
        if outcome.status is Status.FAILED:
            thumbs, findings = (
                dict.fromkeys(review_pixels.THUMBNAIL_KINDS),
                [f"{review_pixels.NO_THUMBNAIL}: {outcome.error}"],
            )
        else:
            thumbs, findings = outcome.details["thumbs"], outcome.details["findings"]
        made[str(outcome.job.relative)] = {"thumbs": thumbs, "findings": findings}
    return made
