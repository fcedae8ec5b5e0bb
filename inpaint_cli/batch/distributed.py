"""Running a batch on a Ray cluster: one model per worker, bounded work in flight, lost workers replaced.

The plan is made once on the driver (this process), which never loads a model. Each worker is a Ray
actor that builds its job kind (and so its model) once with the `make_kind` function it is given and
then processes one job per call with the local batch engine (`engine.run_jobs`), so pairing,
skip/resume, atomic writes and the report records are those of a local run, for every kind of job.
The driver keeps at most `in_flight` calls queued per worker, so neither its memory nor the
cluster's grows with the archive.

A worker that dies (killed, out of memory, node lost) fails the calls queued on it. The job it was
running is charged one attempt; all of them are queued again for the other workers, and a new worker
is started in its place. A job the lost worker had finished (its provenance record, written after the
output, panel and intermediates, says `complete`) is not run again; one cut short (an output without
its panel) is run again as a resume, which redoes what it left. A job that loses `max_attempts`
workers fails alone, like an unreadable image.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inpaint_cli.batch import provenance
from inpaint_cli.batch.engine import run_jobs
from inpaint_cli.batch.jobs import Existing
from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status
from inpaint_cli.errors import InpaintError, UsageError
from inpaint_cli.files import storage
from inpaint_cli.options import DEFAULT_RAY_ADDRESS

if TYPE_CHECKING:
    from inpaint_cli.batch.engine import JobKind
    from inpaint_cli.batch.jobs import Job
    from inpaint_cli.options import DistributedOptions

INSTALL_HINT = 'pip install "inpaint-cli[ray]"'

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a distributed batch runs."""

    address: str = DEFAULT_RAY_ADDRESS
    workers: int | None = None
    """Actors, each with its own model; default: as many as the cluster's CPUs (or GPUs) allow."""
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    in_flight: int = 2
    """Calls queued per worker: one running, one ready to start, so a worker never waits for the driver."""
    max_attempts: int = 3
    """Workers a job may lose before it fails (a job that kills every worker it meets is the problem)."""
    max_replacements: int | None = None
    """Workers started in place of lost ones; default: twice the number of workers."""

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise UsageError("--cpus-per-worker and --gpus-per-worker cannot be negative")
        if self.in_flight < 1 or self.max_attempts < 1:
            raise ValueError("in_flight and max_attempts must be at least 1")


def cluster_of(options: DistributedOptions) -> RayOptions:
    """The cluster a command's `--ray`, `--workers`, `--cpus-per-worker` and `--gpus-per-worker` ask for."""
    return RayOptions(
        options.ray or DEFAULT_RAY_ADDRESS, options.workers, options.cpus_per_worker, options.gpus_per_worker
    )


def require_ray() -> Any:
    """The `ray` module, or a usage error that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--ray needs Ray, which is not installed", hint=INSTALL_HINT) from exc
    return ray


def connect(address: str = DEFAULT_RAY_ADDRESS) -> bool:
    """Join the cluster at `address` (`auto`, `host:port`, `ray://host:10001`); True if this call
    started a new local cluster (or connection) that the caller should shut down."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=None if address == DEFAULT_RAY_ADDRESS else address,
            log_to_driver=False,  # worker logs stay in the cluster's log folder, not over the progress bar
            logging_level=logging.ERROR,  # not its start-up notes over our progress
            include_dashboard=False if address == DEFAULT_RAY_ADDRESS else None,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"cannot join the Ray cluster at {address}: {exc}", hint="check --ray") from exc
    return True


def quiet_cluster_messages(ray: Any) -> None:
    """Route the cluster's error notes (`(raylet) A worker died ...`), which Ray prints on stdout, to
    this module's debug log: stdout is for result paths (`-q`), and the driver reports lost workers
    itself. Ray has no setting for it, so its printer is wrapped where it exists (a private name)."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(module, "print_to_stdstream", None)
    if original is None or getattr(original, "quiet_raylet", False):
        return

    def to_log(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if data.get("pid") != "raylet":
            original(data, *args, **kwargs)
            return
        for line in data.get("lines", []):
            logger.debug("ray: %s", line)

    to_log.quiet_raylet = True  # type: ignore[attr-defined]
    module.print_to_stdstream = to_log


def worker_count(options: RayOptions, resources: dict[str, float]) -> int:
    """`options.workers`, or as many workers as the cluster's resources hold (at least one).

    A worker larger than the whole cluster would wait forever for its place: a usage error.
    """
    counts = []
    for name, flag, wanted in (
        ("GPU", "--gpus-per-worker", options.gpus_per_worker),
        ("CPU", "--cpus-per-worker", options.cpus_per_worker),
    ):
        if wanted <= 0:
            continue
        available = resources.get(name, 0.0)
        if available < wanted:
            hint = "use --gpus-per-worker 0 for CPU workers" if name == "GPU" else f"give a smaller {flag}"
            raise UsageError(
                f"the Ray cluster has {available:g} {name}(s): too few for {flag} {wanted:g}", hint=hint
            )
        counts.append(int(available // wanted))
    return options.workers or max(1, min(counts, default=1))


class Worker:
    """One Ray actor: builds its job kind (its model) once, then processes the jobs it is given, one
    per call."""

    def __init__(self, make_kind: Callable[[], JobKind[Any, Any]]) -> None:
        import ray

        self.error: InpaintError | None = None
        self.kind: JobKind[Any, Any] | None = None
        context = ray.get_runtime_context()
        self.placement = {
            "node": ray.util.get_node_ip_address(),
            "worker": context.get_actor_id()[:12],
            "worker_pid": os.getpid(),
        }
        try:
            self.kind = make_kind()
        except InpaintError as exc:  # a missing model is the user's to fix: the driver says it once
            self.error = exc

    def ready(self) -> tuple[dict[str, object], InpaintError | None]:
        """Where this worker runs, and why it cannot work (None when its model is loaded)."""
        return self.placement, self.error

    def process(self, job: Job, resume: bool = False) -> JobOutcome:
        """Process one job as a local batch would; problems with the input become its outcome.
        `resume`: the job lost a worker in this run, so files of its own that it finds are redone."""
        assert self.kind is not None, "process() called on a worker whose model did not load"
        (outcome,) = run_jobs(_resuming(self.kind) if resume else self.kind, [job])
        outcome.placement = dict(self.placement)
        return outcome


@dataclass
class _Actor:
    handle: Any
    ready: bool = False
    queued: deque[tuple[Any, int]] = field(default_factory=deque)
    """(call reference, job index) in the order the actor runs them: the first one is running."""


class _Run:
    """The driver's loop: submit, collect, replace lost workers, stop on fail-fast or Ctrl-C."""

    def __init__(
        self,
        ray: Any,
        make_kind: Callable[[], JobKind[Any, Any]],
        jobs: Sequence[Job],
        options: RayOptions,
        on_outcome: Callable[[JobOutcome], None] | None,
        on_workers: Callable[[int], None] | None,
        fail_fast: bool,
    ) -> None:
        self.ray, self.make_kind, self.jobs = ray, make_kind, jobs
        self.options, self.fail_fast = options, fail_fast
        self.on_outcome, self.on_workers = on_outcome, on_workers
        self.worker_class = ray.remote(Worker)
        self.pending: deque[int] = deque(range(len(jobs)))
        self.attempts: dict[int, int] = {}
        self.outcomes: dict[int, JobOutcome] = {}
        self.actors: list[_Actor] = []
        self.calls: dict[Any, _Actor] = {}
        """Every unfinished reference (model loads and jobs) and the actor it runs on."""
        self.stop = False
        self.last_loss = ""
        self.provenances: list[dict[str, Any]] = []
        self.started = time.time()
        workers = worker_count(options, ray.cluster_resources())
        self.workers = min(workers, max(1, len(jobs)))
        self.replacements = options.max_replacements
        if self.replacements is None:
            self.replacements = 2 * self.workers

    def run(self) -> Outcomes:
        """The outcomes in job order; Ctrl-C ends the run early with `interrupted` set."""
        for _ in range(self.workers):
            self._start_worker()
        self._workers_changed()  # none live yet: the workers are starting and loading the model
        interrupted = False
        try:
            while (self.pending and not self.stop) or any(actor.queued for actor in self.actors):
                self._submit()
                if not self.actors:
                    self._give_up(f"no Ray worker is left and none may be started ({self.last_loss})")
                    break
                done, _ = self.ray.wait(list(self.calls), num_returns=1, timeout=1.0)
                for reference in done:
                    if reference in self.calls:  # a lost actor's other calls were handled with it
                        self._collect(reference)
        except BaseException as exc:
            # Ctrl-C or an error: queued work is cancelled and the workers stopped (their partial
            # writes are temporary files that the next run removes).
            for reference in list(self.calls):
                self.ray.cancel(reference)
            if not isinstance(exc, KeyboardInterrupt):
                raise
            interrupted = True
        finally:
            for actor in self.actors:
                self.ray.kill(actor.handle, no_restart=True)
        not_run = [job for index, job in enumerate(self.jobs) if index not in self.outcomes]
        return Outcomes((self.outcomes[i] for i in sorted(self.outcomes)), not_run, interrupted)

    def _start_worker(self) -> None:
        handle = self.worker_class.options(
            num_cpus=self.options.cpus_per_worker,
            num_gpus=self.options.gpus_per_worker,
            max_restarts=0,  # a lost worker is replaced by a fresh actor here, its jobs requeued
        ).remote(self.make_kind)
        actor = _Actor(handle)
        self.actors.append(actor)
        self.calls[handle.ready.remote()] = actor

    def _live(self) -> int:
        return sum(actor.ready for actor in self.actors)

    def _submit(self) -> None:
        for actor in self.actors:
            while (
                actor.ready and len(actor.queued) < self.options.in_flight and self.pending and not self.stop
            ):
                index = self.pending.popleft()
                reference = actor.handle.process.remote(self.jobs[index], index in self.attempts)
                actor.queued.append((reference, index))
                self.calls[reference] = actor

    def _collect(self, reference: Any) -> None:
        actor = self.calls.pop(reference)
        exceptions = self.ray.exceptions
        try:
            result = self.ray.get(reference)
        except exceptions.RayActorError as exc:
            self.last_loss = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._lose(actor)
            return
        except exceptions.RayTaskError as exc:  # a bug, not a bad input: this job fails, the batch goes on
            index = self._dequeue(actor, reference)
            job = self.jobs[index]
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            self._finish(index, JobOutcome(job, Status.FAILED, error=f"{job.image}: {cause}"))
            return
        if not actor.ready:
            placement, error = result
            if error is not None:
                raise error
            actor.ready = True
            logger.info("worker %s ready on %s", placement["worker"], placement["node"])
            self._workers_changed()
            return
        self._finish(self._dequeue(actor, reference), result)

    def _dequeue(self, actor: _Actor, reference: Any) -> int:
        for position, (queued, index) in enumerate(actor.queued):
            if queued == reference:
                del actor.queued[position]
                return index
        raise KeyError(reference)

    def _lose(self, actor: _Actor) -> None:
        """A worker died: requeue its jobs (the running one charged an attempt) and replace it."""
        self.actors.remove(actor)
        self.ray.kill(actor.handle, no_restart=True)
        for reference in [ref for ref, owner in self.calls.items() if owner is actor]:
            del self.calls[reference]
        requeue = []
        for position, (_, index) in enumerate(actor.queued):
            if position == 0:
                self.attempts[index] = self.attempts.get(index, 0) + 1
                if self._settled_after_loss(index):
                    continue
            requeue.append(index)
        self.pending.extendleft(reversed(requeue))
        logger.warning("a Ray worker was lost; %d job(s) queued again", len(requeue))
        if self.replacements > 0:
            self.replacements -= 1
            self._start_worker()
        self._workers_changed()

    def _settled_after_loss(self, index: int) -> bool:
        """Whether the job a lost worker was running needs no new run: everything it promised was
        written before the loss (its provenance record, written last, says `complete`), or it has
        lost too many workers. A job cut short between its output and its panel is run again."""
        job = self.jobs[index]
        record = _finished_record(job.output, self.started)
        if record is not None:
            written = [storage.location(path) for path in record["written"]]
            self._finish(index, JobOutcome(job, Status.DONE, written=written))
            return True
        attempts = self.attempts[index]
        if attempts < self.options.max_attempts:
            return False
        error = f"{job.image}: {attempts} Ray workers were lost while restoring it (more memory per worker?)"
        self._finish(index, JobOutcome(job, Status.FAILED, error=error))
        return True

    def _finish(self, index: int, outcome: JobOutcome) -> None:
        outcome.job = self.jobs[index]  # the driver's own object, not the worker's copy
        # Every output of a worker has the same provenance: keep one copy, not one per image.
        if outcome.provenance is not None:
            same = next((known for known in self.provenances if known == outcome.provenance), None)
            if same is None:
                self.provenances.append(outcome.provenance)
            else:
                outcome.provenance = same
        self.outcomes[index] = outcome
        if self.fail_fast and outcome.status is Status.FAILED:
            self.stop = True
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _give_up(self, reason: str) -> None:
        while self.pending:
            index = self.pending.popleft()
            job = self.jobs[index]
            self._finish(index, JobOutcome(job, Status.FAILED, error=f"{job.image}: {reason}"))

    def _workers_changed(self) -> None:
        if self.on_workers is not None:
            self.on_workers(self._live())


def _finished_record(output: storage.AnyPath, started: float) -> dict[str, Any] | None:
    """The provenance record of an output this run finished: written since `started`, its record
    `complete` (written after every artefact the job asked for); else None."""
    if not _written_since(output, started):
        return None
    try:
        record = provenance.read_record(output)
    except InpaintError:  # unreadable: the job is run again, which rewrites it
        return None
    return record if record is not None and record["complete"] else None


def _resuming(kind: JobKind[Any, Any]) -> JobKind[Any, Any]:
    """`kind` resuming (`Existing.SKIP`) where it would refuse existing files (`Existing.ERROR`), for
    a job that lost a worker: the files of its own that worker left (an output without its panel, a
    record at `complete: false`) are redone instead of refused. A shallow copy: the model is shared."""
    settings = kind.settings
    if settings.existing is not Existing.ERROR or not dataclasses.is_dataclass(settings):
        return kind
    resumed = copy.copy(kind)
    object.__setattr__(resumed, "settings", dataclasses.replace(settings, existing=Existing.SKIP))
    return resumed


def _written_since(path: storage.AnyPath, started: float) -> bool:
    """A complete output whose last change is after `started` (this run wrote it)."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return stat.st_size > 0 and stat.st_mtime >= started - 1.0  # 1 s: file-system timestamp granularity


def run_on_ray(
    make_kind: Callable[[], JobKind[Any, Any]],
    jobs: Iterable[Job],
    options: RayOptions = RayOptions(),  # frozen: sharing the default is safe
    *,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    on_workers: Callable[[int], None] | None = None,
    fail_fast: bool = False,
) -> Outcomes:
    """Run `jobs` on Ray workers that each call `make_kind()` once; outcomes in job order.

    Same contract as `engine.run_jobs`: every per-input problem is a failed outcome, `on_outcome`
    sees each outcome as it arrives (in this thread), `fail_fast` starts nothing new after a
    failure, and Ctrl-C cancels the cluster's work and returns with `interrupted` set (and the
    jobs never finished in `not_run`). `on_workers` sees the number of live workers whenever it
    changes. `make_kind` is pickled to the workers: a module-level function or a `functools.partial`
    of one.
    """
    jobs = list(jobs)
    ray = require_ray()
    if not jobs:
        return Outcomes([], [], interrupted=False)
    started_here = connect(options.address)
    quiet_cluster_messages(ray)
    try:
        return _Run(ray, make_kind, jobs, options, on_outcome, on_workers, fail_fast).run()
    finally:
        if started_here:
            ray.shutdown()
