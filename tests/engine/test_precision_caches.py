"""The precision caches (`precision-choices.json`, `int8-plans.json`) are caches: whatever is in their
place (nesting 100,000 deep, a FIFO, /dev/zero, a list where a machine's entry belongs) costs a new
measurement, never a traceback or a hang (issue 27)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from inpaint_cli.checkpoints.loading import load_network
from inpaint_cli.engine import auto_precision
from inpaint_cli.engine.auto_precision import Measurement

BUNDLED = Path(__file__).resolve().parents[2] / "inpaint_cli" / "bundled"
DEEP = "[" * 100_000 + "]" * 100_000


def _list_for_the_machine(path: Path) -> None:
    path.write_text(f'{{"{auto_precision.machine_key()}": [1, 2]}}')


def _list_for_the_model(path: Path) -> None:
    path.write_text(f'{{"{auto_precision.machine_key()}": {{"anything": []}}, "lama-tiny": [1]}}')


DAMAGE: dict[str, Callable[[Path], None]] = {
    "deep": lambda path: path.write_text(DEEP),
    "fifo": os.mkfifo,
    "dev-zero": lambda path: path.symlink_to("/dev/zero"),
    "machine-entry-a-list": _list_for_the_machine,
    "model-entry-a-list": _list_for_the_model,
}


def _within(seconds: float, call: Callable[[], object]) -> object:
    """`call()`'s result; fails the test if it takes longer than `seconds` (a FIFO hung forever)."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "hangs"
    assert result, "raised (see the thread's traceback above)"
    return result[0]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_choices_cache_costs_one_measurement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    network = load_network(BUNDLED / "lama-tiny.safetensors")
    measured = []

    def measure(net: object, run: object, names: list[str]) -> Measurement:
        measured.append(names)
        return Measurement({"fp32": 1.0, "bf16": 0.5}, {"bf16": 0.0})

    monkeypatch.setattr(auto_precision, "measure", measure)
    monkeypatch.setattr(auto_precision, "MEASURE_ABOVE_GFLOP", 0.0)
    monkeypatch.setattr(auto_precision, "candidates", lambda: ["bf16"])
    cache = tmp_path / auto_precision.CHOICES_NAME
    DAMAGE[damage](cache)

    assert _within(30, lambda: auto_precision.choose(network, "lama-tiny", None, cache)) == "bf16"
    assert len(measured) == 1
    assert cache.is_file() and not cache.is_symlink()  # replaced by a good cache (atomically)
    assert auto_precision.choose(network, "lama-tiny", None, cache) == "bf16" and len(measured) == 1


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_plans_cache_costs_one_calibration(tmp_path: Path, damage: str) -> None:
    plans = tmp_path / auto_precision.PLANS_NAME
    DAMAGE[damage](plans)
    assert _within(30, lambda: auto_precision.known_int8_plan(plans, "lama-tiny") or "none") == "none"
