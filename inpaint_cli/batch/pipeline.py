"""`inpaint run` as one library call: a `RunOptions` in, outputs written, a `RunResult` out; and what
every batch command does once its jobs ran (`write_results`: the report and the review page).

The path of one image: the options are checked (`RunOptions`), the input is paired with its mask(s)
and output and every planned read and write is checked (`kinds.inpaint.plan_run`), the model is
loaded once (`engine.Inpainter`), and `engine.run_jobs` reads, fills and writes each job as the
inpaint job kind (`kinds.inpaint.InpaintKind`) while `RunEvents` hears about every step (the CLI
renders them; a Python caller may ignore them).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint_cli.batch.run_options import RunOptions, planning_options, run_settings
from inpaint_cli.errors import InpaintError
from inpaint_cli.options import DEFAULT_MODEL

if TYPE_CHECKING:  # the CLI imports this module for `--help`: no numpy, OpenCV or torch behind it
    from inpaint_cli.batch.jobs import Job, JobPlan
    from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings
    from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status
    from inpaint_cli.batch.provenance import Provenance
    from inpaint_cli.engine.inpainter import Inpainter
    from inpaint_cli.review import page as review
    from inpaint_cli.weights import DownloadProgress


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model, for `-v` and the demo-model note."""

    name: str
    family: str
    device: str
    precision: str
    threads: int
    load_seconds: float
    demo_note: str | None = None
    """Set when the model is a bundled demo-quality one: what to use for real work."""
    precision_note: str | None = None
    """Set when the precision asked for is not faster than fp32 on this CPU (`Inpainter.precision_note`)."""


@dataclass(frozen=True)
class DryRunRow:
    """What a run would do with one image (or one unused mask), without loading a model."""

    image: str
    masks: str
    output: str
    action: str
    fails: bool = False


@dataclass
class RunResult:
    """What one `inpaint run` did, in input order."""

    plan: JobPlan
    outcomes: list[JobOutcome] = field(default_factory=list)
    not_run: list[Job] = field(default_factory=list)
    """Jobs never started (`--fail-fast`, Ctrl-C)."""
    interrupted: bool = False
    model: ModelInfo | None = None
    dry_run: list[DryRunRow] | None = None
    """The pairing table of `--dry-run` (nothing else ran)."""
    seconds: float = 0.0
    """Time of the jobs, from the first read to the last write (the model load is in `model`)."""
    report_error: str | None = None

    def counts(self) -> dict[Status, int]:
        from inpaint_cli.batch.outcomes import status_counts

        return status_counts(self.outcomes)

    @property
    def failed(self) -> bool:
        from inpaint_cli.batch.outcomes import Status

        dry_failed = any(row.fails for row in self.dry_run or ())
        return dry_failed or self.report_error is not None or self.counts()[Status.FAILED] > 0


class RunEvents:
    """What a run tells as it goes; every method may be overridden, none is required."""

    download_progress: DownloadProgress | None = None
    """Progress of a model download, if the model is not cached yet."""

    def jobs_planned(self, jobs: list[Job]) -> None:
        """The inputs are paired: these jobs will run (before the model is loaded)."""

    def model_loaded(self, model: ModelInfo) -> None:
        """The model is loaded and about to fill the first image."""

    def job_started(self, job: Job) -> None:
        """The model takes this job."""

    def job_planned(self, job: Job, description: str, seconds: float | None) -> None:
        """Before the model fills this job: its plan in words and the estimated seconds (None before
        passes of its sizes have run on this machine: `job_estimated` then follows its first pass)."""

    def job_estimated(self, job: Job, seconds: float) -> None:
        """After the first pass of a job not estimated before: the seconds the rest should take."""

    def job_progress(self, job: Job, done: int, total: int) -> None:
        """`done` of the `total` network passes (boxes or tiles) of this job are finished."""

    def job_finished(self, outcome: JobOutcome) -> None:
        """A job is done, skipped or failed (in the order they finish)."""

    def workers_changed(self, live: int) -> None:
        """A distributed run (`--ray`) has `live` workers with their model loaded (started or lost one)."""

    def page_written(self, summary: review.PageSummary) -> None:
        """The review page (`--html`) is written: where, how many rows, how long it took."""


def run(options: RunOptions, events: RunEvents | None = None) -> RunResult:
    """Fill the holes of every input of `options`, write the outputs (and report), return what happened.

    Usage problems (missing files, contradicting options, an unknown model) raise `UsageError` before
    anything is written; a problem with one input fails that input only. Ctrl-C ends the run early
    with `interrupted` set: outputs written so far are complete.
    """
    events = events or RunEvents()
    settings = run_settings(options)
    plan = plan_jobs(options, settings)
    if options.dry_run:
        return RunResult(plan, dry_run=dry_run_rows(plan, settings, options))
    events.jobs_planned(plan.jobs)
    if options.ray is not None:  # the cluster's workers load the model; this process only plans
        started = time.perf_counter()
        ran, model = _run_on_ray(options, plan, settings, events), None
    else:
        model, started, ran = _run_here(options, plan, settings, events)
    result = RunResult(plan, list(ran), ran.not_run, ran.interrupted, model)
    result.seconds = time.perf_counter() - started
    page = None if options.html is None else (options.html, "inpaint review", options.max_pixels)
    summary, result.report_error = write_results(
        "inpaint", plan, ran, report=options.report, page=page, model=options.model or ""
    )
    if summary is not None:
        events.page_written(summary)
    return result


def _run_here(
    options: RunOptions, plan: JobPlan, settings: RunSettings, events: RunEvents
) -> tuple[ModelInfo | None, float, Outcomes]:
    """The jobs in this process: the model loaded once, then `engine.run_jobs` (the model's info,
    when the jobs started, their outcomes). No model when every input fails from its headers."""
    from inpaint_cli.batch.engine import run_jobs
    from inpaint_cli.batch.kinds.inpaint import InpaintKind, Watch, provenance_of

    refused = _refused_by_headers(plan.jobs, settings)
    if refused is not None:  # nothing could run: no model is downloaded or loaded for it
        for outcome in refused:
            events.job_finished(outcome)
        return None, time.perf_counter(), refused
    inpainter, model = load_inpainter(options, events.download_progress)
    events.model_loaded(model)
    started = time.perf_counter()
    kind = InpaintKind(
        inpainter,
        settings,
        made_with=provenance_of(inpainter, settings, checkpoint=options.checkpoint),
        watch=Watch(events.job_planned, events.job_progress, events.job_estimated),
    )
    ran = run_jobs(
        kind,
        plan.jobs,
        workers=options.jobs,
        fail_fast=options.fail_fast,
        on_outcome=events.job_finished,
        on_start=events.job_started,
    )
    return model, started, ran


def _refused_by_headers(jobs: list[Job], settings: RunSettings) -> Outcomes | None:
    """Every job failed from its files' headers (not an image, truncated, a mask of another size), or
    None as soon as one may run. A single bad photo is then reported as what it is, not as a model
    download that failed; a batch reads one header or a few before its model loads."""
    from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status
    from inpaint_cli.batch.resume import header_problem, precheck

    refused = []
    for job in jobs:
        if precheck(job, settings) is not None:
            return None  # its existing files decide it, judged with the loaded model's settings as before
        problem = header_problem(job, max_pixels=settings.max_pixels)
        if problem is None:
            return None
        refused.append(JobOutcome(job, Status.FAILED, error=problem))
    return Outcomes(refused, not_run=[], interrupted=False) if refused else None


def write_results(
    kind: str,
    plan: JobPlan,
    ran: Outcomes,
    *,
    report: Path | None,
    page: tuple[Path, str, int] | None,
    model: str = "",
    about: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
) -> tuple[review.PageSummary | None, str | None]:
    """After a batch of any kind: the JSON report (`report`) and the review page (`page`: its path,
    title and `--max-pixels`), both from the one report (`outcomes.report_of`). Returns the page's
    summary and a one-line error if either could not be written (the outputs are there: the batch is
    not undone)."""
    from inpaint_cli.batch.outcomes import report_of, write_report

    data = report_of(
        kind, ran, not_run=ran.not_run, unused_masks=plan.unused_masks, about=about, counts=counts
    )
    problem = None
    if report is not None:
        try:
            write_report(report, data)
        except InpaintError as error:
            problem = error.one_line()
        except OSError as error:
            problem = f"{report}: cannot write the report ({error.strerror or error})"
    if page is None:
        return None, problem
    from inpaint_cli.review import page as review

    try:
        rows = review.rows_from_report(data, model=model)
        return review.build_page(rows, page[0], title=page[1], max_pixels=page[2]), problem
    except OSError as error:
        return None, problem or f"{page[0]}: cannot write the review page ({error.strerror or error})"


# --- before anything runs ----------------------------------------------------------------------------


def plan_jobs(options: RunOptions, settings: RunSettings) -> JobPlan:
    """Pair the input(s) with masks and outputs, and check every planned read and write (`plan_run`,
    through the one target check): the files named exist, nothing read is written, no two writes
    share a target (the review page included), every write can happen."""
    from inpaint_cli.batch.kinds.inpaint import plan_run
    from inpaint_cli.files.targets import Access

    reads = (
        []
        if options.checkpoint is None
        else [Access(options.checkpoint, "the checkpoint", option="--checkpoint")]
    )
    writes = []
    if options.html is not None:
        from inpaint_cli.review import page as review

        writes = review.page_writes(options.html)
    plan = plan_run(
        options.input,
        options.mask,
        options.output,
        settings,
        recursive=options.recursive,
        report=options.report,
        reads=reads,
        writes=writes,
    )
    if options.html is not None:  # after the target check: a page that is an input is a usage error
        review.check_page(options.html, overwrite=options.overwrite is True)
    return plan


def _expected_provenance(options: RunOptions, settings: RunSettings) -> Provenance:
    """What the run would record beside each output, as known before loading the model."""
    from inpaint_cli.batch import provenance

    # As `engine.Inpainter` names itself: after the weight file when one is given.
    model = options.checkpoint.name if options.checkpoint else options.model or DEFAULT_MODEL
    return provenance.expected(
        model,
        options.checkpoint,
        settings,
        strategy=options.strategy.value,
        plan_options=provenance.plan_options(options),
    )


def dry_run_rows(plan: JobPlan, settings: RunSettings, options: RunOptions) -> list[DryRunRow]:
    """The pairing table: per image its mask(s), output and what a run would do."""
    from inpaint_cli.batch.resume import dry_run_action

    made_with = _expected_provenance(options, settings)
    rows = []
    for job in plan.jobs:
        # Names and file headers only.
        action, fails = dry_run_action(job, settings, made_with, max_pixels=settings.max_pixels)
        rows.append(
            DryRunRow(str(job.image), ", ".join(map(str, job.masks)) or "-", str(job.output), action, fails)
        )
    rows += [DryRunRow("-", str(mask), "-", "unused: no image has this name") for mask in plan.unused_masks]
    rows += [DryRunRow("-", "-", "-", message, fails=True) for message in plan.unreadable]
    return rows


def _run_on_ray(options: RunOptions, plan: JobPlan, settings: RunSettings, events: RunEvents) -> Outcomes:
    """The jobs on Ray workers (`distributed`), each building the inpaint kind once (`inpaint_kind`)."""
    from inpaint_cli.batch import distributed

    return distributed.run_on_ray(
        functools.partial(inpaint_kind, options, settings),
        plan.jobs,
        distributed.cluster_of(options),
        on_outcome=events.job_finished,
        on_workers=events.workers_changed,
        fail_fast=options.fail_fast,
    )


# --- the model ----------------------------------------------------------------------------------------


def inpaint_kind(options: RunOptions, settings: RunSettings) -> InpaintKind:
    """The inpaint job kind with its model loaded (what each worker of a distributed run builds once)."""
    from inpaint_cli.batch.kinds.inpaint import InpaintKind, provenance_of

    inpainter = load_inpainter(options)[0]
    return InpaintKind(inpainter, settings, provenance_of(inpainter, settings, checkpoint=options.checkpoint))


def load_inpainter(
    options: RunOptions, progress: DownloadProgress | None = None
) -> tuple[Inpainter, ModelInfo]:
    """The model of `--model` / `--checkpoint` on the chosen device, and what to say about it.

    Without `--model`, a checkpoint's family is recognised from the file; else the default model.
    """
    import torch

    from inpaint_cli.engine.inpainter import Inpainter

    if options.threads:
        torch.set_num_threads(options.threads)  # the process's setting, made here, not in a constructor
    settings = {
        "device": options.device,
        "precision": options.precision.value,
        "options": planning_options(options),
    }
    if options.model is None and options.checkpoint is not None:
        inpainter = Inpainter.from_checkpoint(options.checkpoint, None, **settings)
    else:
        name = options.model or DEFAULT_MODEL
        inpainter = Inpainter.from_name(name, checkpoint=options.checkpoint, progress=progress, **settings)
    model = ModelInfo(
        name=options.model or (options.checkpoint.name if options.checkpoint else DEFAULT_MODEL),
        family=inpainter.network.family,
        device=str(inpainter.device),
        precision=inpainter.precision_summary,
        threads=torch.get_num_threads(),
        load_seconds=inpainter.load_seconds,
        demo_note=demo_note(options.model) if options.checkpoint is None else None,
        precision_note=inpainter.precision_note,
    )
    return inpainter, model


def demo_note(name: str | None) -> str | None:
    """For a bundled demo-quality model: which model to use for real restorations."""
    if name is None:
        return None
    from inpaint_cli import weights

    entry = weights.load_manifest().get(name)
    if entry is None or entry.variant != "demo":
        return None
    return (
        f"{name} is a small demo-quality model bundled for trying the tool offline; "
        f"for real restorations use --model {entry.family} (inpaint weights pull {entry.family})"
    )
