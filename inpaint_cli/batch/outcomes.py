"""What a batch did: one `JobOutcome` per input, `Outcomes` for a batch, and the JSON report.

One report format for every kind of job (README, "Batches", *Report*): `format`, `version` and `kind`
(`inpaint`, `detect`, `compare`), a `summary` of counts, one record per input (`JobOutcome.as_record`:
the same keys for every kind, plus the kind's own `details`), the inputs never started and the masks
that matched no image, and the kind's own facts about the whole batch (`about`: the detector, the
models compared). The review page reads it with one reader (`review.page.rows_from_report`).
Torch-free, so review pages and distributed runs can read and write reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import Job
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.files.jsonfile import json_text

REPORT_FORMAT = "inpaint-report"
REPORT_VERSION = 2
"""1: the reports of `run` before `kind` (no `format`); 2: one schema for every kind."""


class Status(str, Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class JobOutcome:
    """What happened to one job. `as_record()` is its entry in the JSON report."""

    job: Job
    status: Status
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    strategy: str | None = None
    """How the job was processed, in words (`auto: 2 crop boxes`, `high_res`)."""
    written: list[Path] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per step (`read`, `fill`, `write`), for `-v`."""
    placement: dict[str, str] = field(default_factory=dict)
    """Where a distributed batch ran this input (`node`, `worker`); empty for a local run."""
    provenance: dict[str, Any] | None = None
    """What made the output: this run's settings when done, the recorded ones when skipped."""
    details: dict[str, Any] = field(default_factory=dict)
    """The kind's own facts about this input, as JSON values (`damage_fraction`, per-model scores)."""

    def as_record(self) -> dict[str, Any]:
        """The JSON report entry of this input; every path absolute."""
        shown = provenance.absolute
        return {
            "image": shown(self.job.image),
            "masks": [shown(m) for m in self.job.masks],
            "original": None if self.job.original is None else shown(self.job.original),
            "output": None if self.job.output is None else shown(self.job.output),
            "status": self.status.value,
            "strategy": self.strategy,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "warnings": self.warnings,
            "written": [shown(p) for p in self.written],
            "provenance": self.provenance,
            **self.details,
            **self.placement,
        }


class Outcomes(list[JobOutcome]):
    """The outcomes of `engine.run_jobs` in job order, and what did not run."""

    def __init__(self, outcomes: Iterable[JobOutcome], not_run: list[Job], interrupted: bool) -> None:
        super().__init__(outcomes)
        self.not_run = not_run
        """Jobs never started (`fail_fast`, Ctrl-C), in job order."""
        self.interrupted = interrupted


def status_counts(outcomes: Iterable[JobOutcome]) -> dict[Status, int]:
    """How many outcomes have each status: the one count behind the report and the summary."""
    counts = dict.fromkeys(Status, 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


def report_of(
    kind: str,
    outcomes: Sequence[JobOutcome],
    *,
    not_run: Sequence[Job] = (),
    unused_masks: Sequence[Path] = (),
    about: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The report of a batch as JSON values: what `write_report` writes and the review page reads.
    `about` holds the kind's facts about the whole batch, `counts` its own counts for the summary."""
    by_status = {status.value: count for status, count in status_counts(outcomes).items()}
    summary = {**by_status, "not_run": len(not_run), "unused_masks": len(unused_masks), **(counts or {})}
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "kind": kind,
        **(about or {}),
        "summary": summary,
        "inputs": [outcome.as_record() for outcome in outcomes],
        "not_run": [provenance.absolute(job.image) for job in not_run],
        "unused_masks": [provenance.absolute(mask) for mask in unused_masks],
    }


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write a report (`report_of`) atomically; every path in it is absolute."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(report, indent=2) + "\n", encoding="utf-8")
    return path
