"""benchmarks/gpu_check.py's CPU-side logic: arguments, the half-precision comparisons, the out-of-memory
fallback (simulated) and the report, run as a command with `--device cpu` on tiny sizes. The CUDA run
itself needs a GPU (see the script's docstring)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def test_a_missing_gpu_is_a_usage_error() -> None:
    completed = _run("--device", "cuda:0")
    assert completed.returncode == 2
    assert completed.stderr.strip() == "error: CUDA is not available on this machine (use --device cpu)"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--oom-fraction", "1.5"], "--oom-fraction must be between 0 and 1"),
        (["--sizes", "64", "128", "--tile", "256"], "--tile must be at least 16"),
        (["--checks", "speed"], "invalid choice: 'speed'"),
    ],
)
def test_bad_arguments_exit_2(arguments: list[str], message: str) -> None:
    completed = _run("--device", "cpu", *arguments)
    assert completed.returncode == 2 and message in completed.stderr


def test_half_precision_and_the_out_of_memory_fallback_on_cpu() -> None:
    completed = _run("--device", "cpu", "--checks", "devices", "half", "oom", "--simulate-oom")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert any(line.startswith("skipped  device selection") for line in lines)
    half = [
        line for line in lines if re.match(r"PASS +(lama|gatedconv-pt|gatedconv-tf|pconv) (fp16|bf16) ", line)
    ]
    # lama case_b, two cases per DeepFill variant, pconv case_b; each in fp16 and bf16.
    assert len(half) == 2 * (1 + 2 + 2 + 1), completed.stdout
    means = [float(re.search(r"hole mean ([\d.]+)", line).group(1)) for line in half]
    assert all(0 < mean < 3 for mean in means)
    (oom,) = [line for line in lines if "out-of-memory fallback" in line]
    assert oom.startswith("PASS") and "512² one pass -> " in oom and "tiles" in oom
    assert lines[-1].startswith("all checks passed")


def test_throughput_lines_for_every_family_and_precision() -> None:
    completed = _run(
        "--device", "cpu", "--checks", "throughput", "--tiny", "--sizes", "64", "256", "--tile", "128"
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rates = re.findall(
        r"PASS +(lama|gatedconv|pconv) (fp32|bf16|int8) (64|256)² +([\d.]+) MP/s \((\w+):", completed.stdout
    )
    assert len(rates) == 3 * 2 * 2, completed.stdout  # families × (fp32, auto) × sizes
    assert all(float(rate) > 0 for *_, rate, _ in rates)
    assert {(side, strategy) for _, _, side, _, strategy in rates} == {("64", "full"), ("256", "tile")}


def test_refinement_lines_on_cpu() -> None:
    completed = _run("--device", "cpu", "--checks", "refine", "--tiny", "--refine-size", "96", "128")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    (fixture,) = [line for line in lines if line.startswith("PASS     refine two_scales fp32")]
    mean, largest = (float(value) for value in re.search(r"hole mean (\S+) max (\S+),", fixture).groups())
    assert mean <= 1e-3 and largest <= 2e-2 and "(2 scales)" in fixture  # SPEC §11 test 4
    (half,) = [line for line in lines if line.startswith("PASS     refine two_scales bf16")]
    assert float(re.search(r"hole mean ([\d.]+)", half).group(1)) < 3
    sized = [line for line in lines if re.match(r"PASS +refine 128x96 (fp32|bf16) +[\d.]+ s per step", line)]
    assert len(sized) == 2 and lines[-1].startswith("all checks passed")
