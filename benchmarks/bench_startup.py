"""Start-up of `inpaint`: how long a command takes when the work itself is nothing.

Each case runs `python -m inpaint_cli ...` in a fresh process, on the README's example (384×384) with
`telea` (no weights, a few milliseconds of filling), so what is timed is the interpreter, the imports
and the set-up of the command:

- `--help`: the application alone;
- `run --dry-run`: pairing and checks, no model;
- `run telea`: a whole single-image run with the weight-free classical method;
- `import torch`: the floor of any command that runs a model through the engine.

With `--against REV`, the same cases run from a copy of that git revision's `inpaint_cli/` (made with
`git archive`), interleaved round by round with this tree, so that load from other processes on a
shared machine hits both alike; the ratio is the median of the per-round ratios. Besides wall time,
the children's CPU seconds are reported: other processes do not inflate them.

Run: `python benchmarks/bench_startup.py --rounds 7 --against main`.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from measure import cpu_model_and_flags, load_note

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "portrait_damaged.png"
MASK = ROOT / "examples" / "portrait_mask.png"


def cases(output: Path) -> dict[str, list[str]]:
    """The command lines timed, by name (`-m inpaint_cli` arguments, or `-c` code)."""
    run = ["-m", "inpaint_cli", "run", str(EXAMPLE), "--mask", str(MASK), "--model", "telea"]
    return {
        "--help": ["-m", "inpaint_cli", "--help"],
        "run --dry-run": [*run, "-o", str(output), "--overwrite", "--dry-run"],
        "run telea": [*run, "-o", str(output), "--overwrite", "-q"],
        "import torch": ["-c", "import torch"],
    }


def timed_child(arguments: list[str], tree: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process run from `tree`."""
    environment = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "80"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], env=environment, capture_output=True, cwd=tree)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(arguments)} failed in {tree}:\n{done.stdout.decode()}{done.stderr.decode()}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def source_of(revision: str, into: Path) -> Path:
    """`inpaint_cli/` as it was at `revision`, extracted under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "inpaint_cli"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(
    trees: dict[str, Path], rounds: int, output: Path
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(case, tree) -> [(wall, cpu)] per round; every round runs every case from every tree in turn."""
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_index in range(rounds + 1):  # the first round warms the file cache and is dropped
        for case, arguments in cases(output).items():
            for name, tree in trees.items():
                result = timed_child(arguments, tree)
                if round_index:
                    samples.setdefault((case, name), []).append(result)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--against", metavar="REV", help="also time this git revision (e.g. main)")
    args = parser.parse_args()
    model, flags = cpu_model_and_flags()
    print(f"{model} [{' '.join(flags)}], {os.cpu_count()} cores, {load_note()}")
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"this tree": ROOT}
        if args.against:
            trees[args.against] = source_of(args.against, Path(scratch) / "before")
        samples = measure(trees, args.rounds, Path(scratch) / "out.png")
    print(f"median of {args.rounds} rounds: wall seconds (CPU seconds)")
    for case in cases(Path("out.png")):
        cells = []
        for name in trees:
            walls, cpus = zip(*samples[case, name], strict=True)
            cells.append(f"{name}: {statistics.median(walls):.2f} s ({statistics.median(cpus):.2f} s)")
        line = f"{case:<15} " + "   ".join(cells)
        if args.against:
            pairs = zip(samples[case, args.against], samples[case, "this tree"], strict=True)
            wall_ratio = statistics.median(before[0] / after[0] for before, after in pairs)
            line += f"   {args.against}/this: {wall_ratio:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
