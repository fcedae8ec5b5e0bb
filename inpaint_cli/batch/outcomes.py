"""What a batch did: one `JobOutcome` per input, `Outcomes` for a run, and the JSON report.

The report format is documented in README ("Batches", *Report*); `JobOutcome.as_record()` is one
input's entry. Torch-free, so review pages and distributed runs can read and write reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import Job
from inpaint_cli.files.atomic import atomic_path


class Status(str, Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class JobOutcome:
    """What happened to one job. `as_record()` is its entry in the JSON report (README, "Batches")."""

    job: Job
    status: Status
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    strategy: str | None = None
    written: list[Path] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per step (`read`, `fill`, `write`), for `-v`."""
    placement: dict[str, str] = field(default_factory=dict)
    """Where a distributed batch ran this input (`node`, `worker`); empty for a local run."""
    provenance: dict[str, Any] | None = None
    """What made the output: this run's settings when done, the recorded ones when skipped."""

    def as_record(self) -> dict:
        """The JSON report entry of this input; every path absolute."""
        shown = provenance.absolute
        return {
            "image": shown(self.job.image),
            "masks": [shown(m) for m in self.job.masks],
            "output": shown(self.job.output),
            "status": self.status.value,
            "strategy": self.strategy,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "warnings": self.warnings,
            "written": [shown(p) for p in self.written],
            "provenance": self.provenance,
            **self.placement,
        }


class Outcomes(list[JobOutcome]):
    """The outcomes of `run_jobs` in job order, and what did not run."""

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


def write_report(
    path: Path,
    outcomes: Sequence[JobOutcome],
    *,
    not_run: Sequence[Job] = (),
    unused_masks: Sequence[Path] = (),
) -> Path:
    """The JSON report: a summary and one record per input, plus inputs never started
    (`--fail-fast`, Ctrl-C) and masks that matched no image. Every path in it is absolute."""
    counts = {status.value: count for status, count in status_counts(outcomes).items()}
    report = {
        "summary": {**counts, "not_run": len(not_run), "unused_masks": len(unused_masks)},
        "inputs": [o.as_record() for o in outcomes],
        "not_run": [provenance.absolute(job.image) for job in not_run],
        "unused_masks": [provenance.absolute(mask) for mask in unused_masks],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
