"""Shared measurement helpers of the benchmarks: peak memory, timing, load control, machine facts.

    from measure import interleaved, machine_summary, pin_threads, run_in_child

- Peak memory: `reset_peak_rss` + `peak_rss` (Linux VmHWM, reset through /proc/self/clear_refs, so
  building a model or a warm-up pass does not count), `run_in_child` (a fresh spawned process: no
  allocator cache from earlier passes), `RssSampler` (polled RSS where VmHWM cannot be reset).
- Timing: `median_seconds`, `interleaved` (candidates in turn, round after round, so a change of load
  on a shared machine hits them alike), `ratio` of medians.
- Load control: `pin_threads` (torch and OpenMP threads), `load_note` (warns when the machine is busy).
- `machine_summary`: CPU model and the flags that decide bf16/int8 kernels, cores, threads, load.

Benchmarks are scripts run as `python benchmarks/<script>.py`, which puts this folder first on
`sys.path`; tests never import them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
RSS_SAMPLE_SECONDS = 0.005
BUSY_LOAD_PER_CORE = 0.5
"""Above this load average per core, timings are noisy: ratios from interleaved runs still hold."""


# --- peak memory ------------------------------------------------------------------------------------------


def reset_peak_rss() -> None:
    """Start the peak resident size afresh (Linux), so that what ran before is not counted."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss() -> int:
    """Peak resident bytes since `reset_peak_rss` (Linux VmHWM), else since the process started."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def current_rss() -> int:
    return psutil.Process().memory_info().rss


def peak_rss_increase(action: Callable[[], T]) -> tuple[T, int]:
    """Run `action`; its result and the peak resident bytes it added above the level before it."""
    before = current_rss()
    reset_peak_rss()
    result = action()
    return result, max(0, peak_rss() - before)


def run_in_child(function: Callable[..., T], *args: Any, threads: int | None = None) -> T:
    """`function(*args)` in a fresh spawned process (importable by name), its result returned.

    A fresh process has no allocator cache or peak from earlier measurements; `threads` pins it.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, initializer=pin_threads if threads else None, initargs=(threads,)) as pool:
        return pool.apply(function, args)


class RssSampler:
    """Peak RSS of this process while a block runs, polled (for work spread over threads or
    processes whose high-water mark cannot be reset separately): `with RssSampler() as s: ...; s.peak`."""

    def __init__(self, processes: Callable[[], list[psutil.Process]] | None = None) -> None:
        self.processes = processes or (lambda: [psutil.Process()])
        self.baseline = self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _total(self) -> int:
        total = 0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(RSS_SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = self._total()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.baseline)


# --- timing -----------------------------------------------------------------------------------------------


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def median_seconds(action: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        action()
    return statistics.median(timed(action)[0] for _ in range(repeats))


def interleaved(
    actions: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    cpu_seconds: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each action per round; every round runs all of them in turn (after `warmup`
    rounds), so that a change of load on a shared machine slows them alike. `cpu_seconds`, when
    given, receives the process's CPU time of each run too (other processes do not inflate it)."""
    for _ in range(warmup):
        for action in actions.values():
            action()
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(rounds):
        for name, action in actions.items():
            cpu_started = time.process_time()
            samples[name].append(timed(action)[0])
            if cpu_seconds is not None:
                cpu_seconds.setdefault(name, []).append(time.process_time() - cpu_started)
    return samples


def ratio(samples: Mapping[str, list[float]], slower: str, faster: str) -> float:
    """Median of the per-round ratios slower/faster (robust to load that changes between rounds)."""
    return statistics.median(a / b for a, b in zip(samples[slower], samples[faster], strict=True))


# --- load control and machine facts ----------------------------------------------------------------------


def pin_threads(threads: int | None) -> None:
    """Use `threads` CPU threads in torch and OpenMP (None: leave the defaults)."""
    if not threads:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and its flags that decide bf16/int8 kernels (/proc/cpuinfo on Linux)."""
    from inpaint_cli.engine.auto_precision import cpu_description

    return cpu_description()


def load_note() -> str:
    """The load average, with a warning when the machine is busy."""
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    busy = load > BUSY_LOAD_PER_CORE * cores
    return f"load {load:.1f} on {cores} cores" + (" (busy: absolute times are noisy)" if busy else "")


def machine_summary() -> str:
    """One line: CPU model and flags, cores, torch threads and version, load."""
    import torch

    model, flags = cpu_model_and_flags()
    return (
        f"{model} [{' '.join(flags) or 'no AVX2/AVX-512/AMX flags'}], torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), {load_note()}"
    )


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    """Print a title and the seconds the section took."""
    print(f"\n## {title}")
    started = time.perf_counter()
    yield
    print(f"({time.perf_counter() - started:.0f} s)")
