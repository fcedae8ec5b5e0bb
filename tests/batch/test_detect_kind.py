"""The detect job kind (`batch/kinds/detect.py`) as a library: planning, running, resuming a killed
batch to the same masks with provenance, the detector's device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detect_helpers import grey_levels, scratched, smooth_photo
from PIL import Image

from inpaint_cli.engine.strategies import InpaintOptions
from inpaint_cli.errors import UsageError
from inpaint_cli.options import StrategyName


def test_python_api_finds_what_the_command_finds(tmp_path: Path) -> None:
    import inpaint_cli

    damaged, truth = scratched(smooth_photo())
    rgba = np.dstack([damaged, np.full(truth.shape, 255, np.uint8)])  # alpha is not the photo
    found = inpaint_cli.find_damage(rgba, detector="classical")
    assert found.mask.shape == truth.shape and not found.no_damage
    assert (found.mask & truth).sum() / truth.sum() > 0.9 and (
        found.mask & truth
    ).sum() / found.mask.sum() > 0.9
    clean = inpaint_cli.find_damage(smooth_photo(grain=6.0, seed=1), detector="classical")
    assert clean.no_damage and clean.fraction == 0

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(damaged).save(photos / "a.png")
    request = inpaint_cli.DetectRequest(
        photos, tmp_path / "masks", detector="classical", report=tmp_path / "r.json"
    )
    plan = inpaint_cli.plan_detection(request)
    assert [job.image.name for job in plan.jobs] == ["a.png"] and plan.plan.batch
    seen = []
    run = inpaint_cli.run_detection(request, plan, on_outcome=seen.append)
    assert run.detector == "classical" and run.not_run == 0 and seen == run.outcomes
    assert np.array_equal(grey_levels(tmp_path / "masks" / "a_mask.png") == 255, found.mask)
    (record,) = json.loads((tmp_path / "r.json").read_text())["inputs"]
    assert record["damage_fraction"] == pytest.approx(found.fraction, abs=1e-5)  # rounded in the report
    with pytest.raises(UsageError, match="takes no --checkpoint"):
        inpaint_cli.find_damage(damaged, detector="classical", checkpoint=tmp_path / "x.pt")


def test_a_detected_mask_has_a_provenance_record_and_a_rerun_with_other_settings_is_refused(
    tmp_path: Path,
) -> None:
    from inpaint_cli.batch import provenance
    from inpaint_cli.batch.kinds.detect import DetectRequest, plan_detection, run_detection

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(scratched(smooth_photo())[0]).save(photos / "a.png")
    request = DetectRequest(photos, detector="classical")
    (outcome,) = run_detection(request, plan_detection(request)).outcomes
    mask = tmp_path / "photos_masks" / "a_mask.png"
    record = provenance.read_record(mask)
    assert record["kind"] == "detect" and record["complete"] is True
    assert record["written"] == [str(mask), str(tmp_path / "photos_masks" / "a_overlay.jpg")]
    assert record["provenance"]["model"] == "classical" and record["provenance"]["mask"] == {"threshold": 0.5}
    assert outcome.provenance == record["provenance"]
    stricter = DetectRequest(photos, detector="classical", threshold=0.9)
    (refused,) = run_detection(stricter, plan_detection(stricter)).outcomes
    assert refused.error == (
        f"{mask}: mask made with other settings: mask threshold 0.5 (now 0.9) "
        "(use --overwrite to redo it, or choose another -o)"
    )
    (skipped,) = run_detection(request, plan_detection(request)).outcomes
    assert skipped.status.value == "skipped"


class _Stub:
    """Stands in for a model on another device: copies images through; detection is what is watched."""

    name, dtype_label = "stub", "float32"
    options = InpaintOptions(strategy=StrategyName.FULL)

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def plan(self, hole: np.ndarray, *, capture: bool = False) -> None:
        return None

    def estimate_seconds(self, plan: None) -> None:
        return None

    def inpaint(self, pixels: np.ndarray, hole: np.ndarray, **options: object) -> object:
        from inpaint_cli.engine.inpainter import InpaintResult

        return InpaintResult(pixels.copy(), [])


def test_mask_auto_detects_on_the_models_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#24: `--mask auto --device X` ran the detector on the CPU whatever X; it is now moved to the
    model's device (recorded here: there is no second device to run on)."""
    from inpaint_cli.batch import engine
    from inpaint_cli.batch.jobs import Job
    from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings
    from inpaint_cli.batch.pipeline import run
    from inpaint_cli.batch.run_options import RunOptions
    from inpaint_cli.models.scratch import ScratchUNet

    moved: list[torch.device] = []

    def recording_to(network: ScratchUNet, device: object) -> ScratchUNet:
        moved.append(torch.device(device))
        return network  # the weights stay where they are: this machine has one device

    monkeypatch.setattr(ScratchUNet, "to", recording_to)
    Image.fromarray(scratched(smooth_photo())[0]).save(tmp_path / "a.png")
    elsewhere = torch.device("cuda", 1)
    kind = InpaintKind(_Stub(elsewhere), RunSettings(detector="scratch-tiny", dilate=2))
    (outcome,) = engine.run_jobs(kind, [Job(tmp_path / "a.png", (), tmp_path / "out.png")])
    assert outcome.status.value == "done" and moved == [elsewhere]
    assert outcome.provenance["mask"] == {
        "threshold": 127,
        "invert": False,
        "dilate": 2,
        "detector": "scratch-tiny",
    }
    # Through `inpaint run` as a library call, the device the options name.
    options = RunOptions(
        input=tmp_path / "a.png",
        mask=Path("auto"),
        model="telea",
        device="cpu",
        output=str(tmp_path / "b.png"),
    )
    result = run(options)
    assert [o.status.value for o in result.outcomes] == ["done"] and moved[1:] == [torch.device("cpu")]
    # `inpaint detect --device`, the same.
    from inpaint_cli.batch.kinds.detect import DetectRequest, plan_detection, run_detection

    request = DetectRequest(tmp_path / "a.png", tmp_path / "masks", device="cpu")
    (tmp_path / "masks").mkdir()
    assert run_detection(request, plan_detection(request)).outcomes[0].status.value == "done"
    assert moved[2:] == [torch.device("cpu")]
