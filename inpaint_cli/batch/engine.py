"""The one batch engine: every kind of job (fill, detect, compare) read, processed and written
without losing anything.

A job kind (`JobKind`, one per module in `batch/kinds/`) supplies three steps for one job: `load`
(decode its files, in reader threads), `process` (the model, in the calling thread) and `save` (write
its artefacts, in writer threads); its settings (`jobs.Outputs`) say what each job writes. The engine
owns the rest, the same for every kind: `workers` threads decode the next images and as many encode
finished ones while the model works, so it never waits for a file (at most `2 * workers + 1` loaded
jobs are held); a job decided from its files alone (a problem found while pairing, an existing
output: `resume.precheck`) never loads; every per-input problem becomes a failed `JobOutcome` (the
batch goes on); outputs are written atomically between two provenance records, so a run killed at
any moment leaves only complete outputs and a rerun resumes; Ctrl-C lets queued writes finish.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from inpaint_cli.batch import provenance
from inpaint_cli.batch.jobs import Job, Outputs, primary
from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status
from inpaint_cli.batch.provenance import Provenance
from inpaint_cli.batch.resume import precheck, remove_stale_parts
from inpaint_cli.errors import InpaintError
from inpaint_cli.files import storage

T = TypeVar("T")
L = TypeVar("L")
R = TypeVar("R")


class JobKind(Protocol[L, R]):
    """What one kind of job does with one input; the engine does everything else."""

    @property
    def settings(self) -> Outputs:
        """What each job writes and what to do with existing files (torch-free, known when planning)."""

    @property
    def made_with(self) -> Provenance | None:
        """Recorded beside each main output and compared on resume (None: `settings.recorded` is off)."""

    stage: str
    """The process step's name in per-stage timings (`fill`, `detect`, `compare`)."""

    def load(self, outcome: JobOutcome) -> L:
        """Decode the job's files (reader thread); notes go to `outcome.warnings`."""

    def process(self, outcome: JobOutcome, loaded: L) -> R:
        """The model's work on one loaded job (the calling thread)."""

    def save(self, outcome: JobOutcome, loaded: L, result: R) -> None:
        """Write the job's artefacts atomically, appending each to `outcome.written` (writer thread)."""


def run_jobs(
    kind: JobKind[Any, Any],
    jobs: Iterable[Job],
    *,
    workers: int = 1,
    fail_fast: bool = False,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    on_start: Callable[[Job], None] | None = None,
) -> Outcomes:
    """Run jobs of one kind, returning their outcomes in job order (with the jobs never started).

    `on_start` sees each job as the model takes it and `on_outcome` each result as it comes (both in
    the calling thread). With `fail_fast`, nothing new starts after a failure; outputs being written
    are finished. Ctrl-C cancels the reads that have not started, lets every queued write finish and
    returns with `interrupted` set. Temporary files that killed runs left beside these jobs' outputs
    are removed first.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    jobs = list(jobs)
    artefacts = [artefact for job in jobs for artefact in kind.settings.artefacts(job)]
    files = [artefact.path for artefact in artefacts if not artefact.folder]
    if kind.settings.recorded:  # a record cut short leaves its temporary file too
        files += [provenance.record_path(main.path) for job in jobs if (main := primary(kind.settings, job))]
    remove_stale_parts(files, folders=[artefact.path for artefact in artefacts if artefact.folder])
    queues = _Queues(jobs, kind, workers, fail_fast, on_outcome)
    interrupted = False
    try:
        queues.read_ahead()
        while queues.loading:
            index, outcome, future = queues.loading.popleft()
            queues.read_ahead()
            loaded = future.result()
            result = None
            if loaded is not None:
                if on_start is not None:
                    on_start(outcome.job)
                result = _attempt(outcome, functools.partial(kind.process, outcome, loaded), kind.stage)
            if outcome.status is Status.FAILED:
                queues.finish(index, outcome)
            else:
                queues.save(index, outcome, loaded, result)
            queues.collect_saved(block_above=workers)
            if queues.stop:
                queues.drop_reads()
        queues.collect_saved(block_above=0)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        queues.close()
    not_run = [job for index, job in enumerate(jobs) if index not in queues.outcomes]
    outcomes = queues.outcomes
    return Outcomes((outcomes[index] for index in sorted(outcomes)), not_run, interrupted)


def _attempt(outcome: JobOutcome, step: Callable[[], T], stage: str) -> T | None:
    """Run one step of a job, adding its time (in total and to its stage); a problem with this
    input fails the outcome."""
    started = time.perf_counter()
    try:
        return step()
    except InpaintError as exc:
        outcome.error = exc.one_line()
    except OSError as exc:  # unreadable file, full disk: this input fails, the batch goes on
        # A rename into place names its target second: the file the user asked for, not the temporary.
        outcome.error = f"{exc.filename2 or exc.filename or outcome.job.image}: {exc.strerror or exc}"
    finally:
        seconds = time.perf_counter() - started
        outcome.seconds += seconds
        outcome.stages[stage] = outcome.stages.get(stage, 0.0) + seconds
    outcome.status = Status.FAILED
    return None


def _save(kind: JobKind[L, R], outcome: JobOutcome, loaded: L, result: R) -> None:
    """Write a job's artefacts between two provenance records: `complete: false` first (the files
    that follow are ours even if cut short), `complete: true` last (everything it lists is there)."""
    job = outcome.job
    main = primary(kind.settings, job)
    made_with = kind.made_with if kind.settings.recorded and main is not None else None
    folder = next((a.path for a in kind.settings.artefacts(job) if a.folder), None)
    if main is not None:
        main.path.parent.mkdir(parents=True, exist_ok=True)
    if made_with is not None:
        _write_record(kind.settings.kind, job, main.path, made_with, [], folder, complete=False)
    kind.save(outcome, loaded, result)
    if made_with is not None:
        _write_record(kind.settings.kind, job, main.path, made_with, outcome.written, folder, complete=True)
        outcome.provenance = made_with.as_dict()


def _write_record(
    kind: str,
    job: Job,
    output: Path,
    made_with: Provenance,
    written: list[Path],
    folder: Path | None,
    *,
    complete: bool,
) -> None:
    with storage.staged_write(provenance.record_path(output)) as staged:
        provenance.write_record(
            staged,
            made_with,
            kind=kind,
            image=job.image,
            written=written,
            intermediates=folder,
            complete=complete,
        )


class _Queues(Generic[L, R]):
    """What `run_jobs` has under way: jobs not read yet, reads and writes in their thread pools, and
    the outcomes reported so far (each exactly once, in the calling thread)."""

    def __init__(
        self,
        jobs: list[Job],
        kind: JobKind[L, R],
        workers: int,
        fail_fast: bool,
        on_outcome: Callable[[JobOutcome], None] | None,
    ) -> None:
        self.pending = iter(enumerate(jobs))
        self.kind = kind
        self.workers, self.fail_fast, self.on_outcome = workers, fail_fast, on_outcome
        self.outcomes: dict[int, JobOutcome] = {}
        self.loading: deque[tuple[int, JobOutcome, Future[L | None]]] = deque()
        self.saving: deque[tuple[int, Future[JobOutcome]]] = deque()
        # Separate pools: a slow encode never delays the decode the model is about to wait for.
        self.readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaint-read")
        self.writers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaint-write")
        self.written: dict[int, JobOutcome] = {}
        """Every write that finished, as its writer thread saw it."""
        self.stop = False
        """Set after a failure with `fail_fast`: nothing new starts."""

    def finish(self, index: int, outcome: JobOutcome) -> None:
        if index in self.outcomes:  # already reported before a Ctrl-C landed: once only
            return
        self.outcomes[index] = outcome
        self.stop = self.stop or (self.fail_fast and outcome.status is Status.FAILED)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def read_ahead(self) -> None:
        """Start loading the next jobs, up to `workers` ahead; jobs decided from their files alone
        (skipped, refused) are reported at once."""
        while not self.stop and len(self.loading) < self.workers:
            index, job = next(self.pending, (None, None))
            if job is None:
                return
            decided = precheck(job, self.kind.settings, self.kind.made_with)
            if decided is not None:
                self.finish(index, decided)
                continue
            outcome = JobOutcome(job, Status.DONE)
            load = functools.partial(self.kind.load, outcome)
            self.loading.append((index, outcome, self.readers.submit(_attempt, outcome, load, "read")))

    def save(self, index: int, outcome: JobOutcome, loaded: L, result: R) -> None:
        """Queue the writing of a processed job, once fewer than `workers` writes are queued."""

        def write() -> JobOutcome:
            _attempt(outcome, lambda: _save(self.kind, outcome, loaded, result), "write")
            # Noted by the writer thread, which no Ctrl-C interrupts: a write that a Ctrl-C in the
            # calling thread kept out of `saving` (between `submit` and `append`) is still reported.
            self.written[index] = outcome
            return outcome

        self.collect_saved(block_above=self.workers - 1)
        self.saving.append((index, self.writers.submit(write)))

    def collect_saved(self, block_above: int) -> None:
        """Report finished writes in order; wait while more than `block_above` are queued."""
        while self.saving and (len(self.saving) > block_above or self.saving[0][1].done()):
            index, future = self.saving[0]
            self.finish(index, future.result())
            self.saving.popleft()  # only now: a Ctrl-C landing in between finds it still listed

    def drop_reads(self) -> None:
        for _, _, dropped in self.loading:
            dropped.cancel()
        self.loading.clear()

    def close(self) -> None:
        """Stop both pools and report the writes let finish: reads not started are cancelled, but
        every queued write runs (its job is processed already; at most `workers` are queued)."""
        self.readers.shutdown(wait=True, cancel_futures=True)
        # Not cancelled: under load a write just submitted may not have started when Ctrl-C lands,
        # and cancelling it threw a finished fill away.
        self.writers.shutdown(wait=True)
        # Left only when interrupted (Ctrl-C): report the writes that were let finish.
        for index in sorted(self.written):
            self.finish(index, self.written[index])
