"""Distributed batches on a local Ray cluster started here: the same outcomes and bytes as the local
batch, a driver that never loads a model, lost workers, bounded memory, fail-fast, Ctrl-C, and S3."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image
from storage_helpers import (
    BAD,
    GOOD,
    NO_MASK,
    have_s3_server,
    interruptible,
    leftovers,
    make_hole,
    make_messy,
    remote_hashes,
    tree_hashes,
    upload_tree,
)

from inpaint_cli.batch import distributed, provenance
from inpaint_cli.batch import engine as batch_engine
from inpaint_cli.batch.distributed import RayOptions
from inpaint_cli.batch.jobs import Existing, Job
from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings, panel_path, plan_folder
from inpaint_cli.batch.outcomes import JobOutcome, Outcomes, Status
from inpaint_cli.engine import inpainter as engine
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.errors import UsageError
from inpaint_cli.files import storage

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed (pip install -e ".[ray]")')
SKIP = RunSettings(existing=Existing.SKIP)
TELEA = functools.partial(Inpainter.from_name, "telea", device="cpu")


def _make_kind(load: object) -> InpaintKind:
    return InpaintKind(load(), SKIP)


def kind_of(load: object) -> functools.partial[InpaintKind]:
    """What each Ray worker builds once: the inpaint kind with the model `load()` gives, resuming."""
    return functools.partial(_make_kind, load)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(UsageError) as missing:
        distributed.require_ray()
    expected = '--ray needs Ray, which is not installed (pip install "inpaint-cli[ray]")'
    assert missing.value.one_line() == expected


def test_workers_default_to_what_the_cluster_holds_and_a_worker_too_big_for_it_is_refused() -> None:
    gpu_cluster = {"CPU": 16.0, "GPU": 2.0}
    assert distributed.worker_count(RayOptions(cpus_per_worker=4), gpu_cluster) == 4
    assert distributed.worker_count(RayOptions(gpus_per_worker=1, cpus_per_worker=4), gpu_cluster) == 2
    assert distributed.worker_count(RayOptions(gpus_per_worker=0.5), gpu_cluster) == 4
    assert distributed.worker_count(RayOptions(workers=3), gpu_cluster) == 3
    with pytest.raises(UsageError) as no_gpu:
        distributed.worker_count(RayOptions(workers=2, gpus_per_worker=1), {"CPU": 16.0})
    assert no_gpu.value.one_line() == (
        "the Ray cluster has 0 GPU(s): too few for --gpus-per-worker 1 "
        "(use --gpus-per-worker 0 for CPU workers)"
    )
    with pytest.raises(UsageError, match="has 2 CPU"):
        distributed.worker_count(RayOptions(cpus_per_worker=3), {"CPU": 2.0})


@pytest.fixture(scope="module")
def cluster() -> object:
    """A two-CPU local cluster, started after the S3 server so that its workers reach it too."""
    if not HAVE_RAY:
        pytest.skip('Ray is not installed (pip install -e ".[ray]")')
    import ray
    from storage_helpers import s3_server

    # Functions and classes of this module reach the workers by value (tests/ is not importable there).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with s3_server() if have_s3_server() else contextlib.nullcontext() as endpoint:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            # conftest.py keeps the cluster on loopback: tests reach 127.0.0.1 and nothing else.
            assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in ray.nodes())
            yield endpoint  # None without moto and s3fs: the S3 test skips
        finally:
            ray.shutdown()


def local_run(photos: Path, masks: Path | str, out: Path) -> Outcomes:
    plan = plan_folder(photos, Path(masks), out, recursive=True)
    return batch_engine.run_jobs(InpaintKind(TELEA(), SKIP), plan.jobs)


def by_name(outcomes: list[JobOutcome]) -> dict[str, JobOutcome]:
    return {outcome.job.relative.as_posix(): outcome for outcome in outcomes}


def never_load(*args: object, **kwargs: object) -> None:
    raise AssertionError("the driver loaded a model")


@pytest.mark.ray
@needs_ray
def test_messy_folder_on_ray_matches_the_local_run_and_the_driver_loads_no_model(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, masks = make_messy(tmp_path)
    local = by_name(local_run(photos, masks, tmp_path / "local"))
    plan = plan_folder(photos, masks, tmp_path / "ray", recursive=True)
    monkeypatch.setattr(engine.Inpainter, "from_name", never_load)  # in this process only
    live: list[int] = []

    outcomes = distributed.run_on_ray(
        kind_of(TELEA), plan.jobs, RayOptions(workers=2), on_workers=live.append
    )

    found = by_name(outcomes)
    assert [o.job for o in outcomes] == plan.jobs  # one outcome per job, in plan order
    assert {name: o.status for name, o in found.items()} == {name: o.status for name, o in local.items()}
    assert {name: o.error for name, o in found.items()} == {name: o.error for name, o in local.items()}
    assert {name for name, o in found.items() if o.status is Status.DONE} == set(GOOD)
    for name, problem in BAD.items():
        assert f"{photos / name}: {problem}" in found[name].error
    assert found[NO_MASK].error.startswith(f"{photos / NO_MASK}: no mask found")
    assert tree_hashes(tmp_path / "ray") == tree_hashes(tmp_path / "local")  # byte-identical
    assert leftovers(tmp_path / "ray") == []
    pids = set()
    for name in GOOD:
        record = found[name].as_record()
        assert record["node"] and len(record["worker"]) == 12 and record["seconds"] > 0, record
        pids.add(record["worker_pid"])
    assert os.getpid() not in pids and 1 <= len(pids) <= max(live) <= 2  # the 2nd may start late

    again = distributed.run_on_ray(kind_of(TELEA), plan.jobs, RayOptions(workers=2))
    assert {o.job.relative.as_posix() for o in again if o.status is Status.SKIPPED} == set(GOOD)
    assert tree_hashes(tmp_path / "ray") == tree_hashes(tmp_path / "local")


@pytest.mark.ray
@needs_ray
def test_a_bundled_network_gives_the_same_bytes_on_ray_as_locally(cluster: str, tmp_path: Path) -> None:
    photos, masks = make_messy(tmp_path)
    pconv = functools.partial(Inpainter.from_name, "pconv-tiny", device="cpu")
    jobs = [job for job in plan_folder(photos, masks, tmp_path / "local").jobs if job.problem is None]
    local = batch_engine.run_jobs(InpaintKind(pconv(), SKIP), jobs)
    assert sum(o.status is Status.DONE for o in local) == len(GOOD) - 1  # all but the nested one
    ray_jobs = plan_folder(photos, masks, tmp_path / "ray").jobs

    outcomes = distributed.run_on_ray(
        kind_of(pconv), [j for j in ray_jobs if j.problem is None], RayOptions(workers=1)
    )

    assert [o.status for o in outcomes] == [o.status for o in local]
    assert tree_hashes(tmp_path / "ray") == tree_hashes(tmp_path / "local")


def save_photos(folder: Path, count: int, size: tuple[int, int]) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{index:05}.png")
    mask = folder.parent / "mask.png"
    hole = np.zeros(size, dtype=np.uint8)
    hole[size[0] // 4 : size[0] // 2, size[1] // 4 : size[1] // 2] = 255
    Image.fromarray(hole).save(mask)
    return mask


@pytest.mark.ray
@needs_ray
def test_a_killed_worker_s_jobs_run_elsewhere_and_every_output_is_written_once(
    cluster: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    mask = save_photos(tmp_path / "photos", 40, (96, 128))
    local_run(tmp_path / "photos", mask, tmp_path / "local")
    jobs = plan_folder(tmp_path / "photos", mask, tmp_path / "ray").jobs
    written: dict[Path, tuple[int, int]] = {}
    killed: list[int] = []
    live: list[int] = []

    def kill_one_worker(outcome: JobOutcome) -> None:
        written[outcome.job.output] = _identity(outcome.job.output)
        if len(written) == 3 and not killed:
            killed.append(outcome.placement["worker_pid"])
            os.kill(killed[0], signal.SIGKILL)

    outcomes = distributed.run_on_ray(
        kind_of(TELEA), jobs, RayOptions(workers=2), on_outcome=kill_one_worker, on_workers=live.append
    )

    assert killed and any(after < before for before, after in itertools.pairwise(live))  # a loss seen
    assert [o.job for o in outcomes] == jobs and {o.status for o in outcomes} == {Status.DONE}
    assert all(o.placement.get("worker_pid") != killed[0] for o in outcomes[-10:])
    # Nothing missing, partial or corrupt: the same bytes as the local run and no temporary files...
    assert tree_hashes(tmp_path / "ray") == tree_hashes(tmp_path / "local")
    assert leftovers(tmp_path / "ray") == []
    # ... and nothing written twice: each output is the file that was there when it was reported.
    assert {path: _identity(path) for path in written} == written
    time.sleep(1)  # Ray's note of the death would come within this
    assert "worker died" not in capfd.readouterr().out  # stdout stays for result paths (-q)


def telea_dying_in_a_panel(marker: str) -> InpaintKind:
    """Telea with panels in a worker that dies halfway through writing its first panel, once
    (`marker` says it happened): the output is written, the panel is a `.part.png`, the record says
    `complete: false`. Outputs are refused if they exist (no --overwrite, no resume)."""
    from inpaint_cli.files.atomic import atomic_path
    from inpaint_cli.review import visualize

    original = visualize.save_png

    def dying(path: Path, picture: object) -> None:
        if path.name.endswith("_panel.png") and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            with atomic_path(path) as temporary:
                temporary.write_bytes(b"\x89PNG\r\n\x1a\n half a panel")
                os.kill(os.getpid(), signal.SIGKILL)
        original(path, picture)

    visualize.save_png = dying
    return InpaintKind(TELEA(), RunSettings(panel=True))


@needs_ray
@pytest.mark.ray
def test_a_worker_killed_between_output_and_panel_has_its_job_redone(cluster: str, tmp_path: Path) -> None:
    """Issue 27: killing a worker while `run --panel --ray` writes gave exit 0 and "done", with a
    panel missing, a `.part.png` left and the record at `complete: false`."""
    mask = save_photos(tmp_path / "photos", 8, (32, 40))
    jobs = plan_folder(tmp_path / "photos", mask, tmp_path / "out").jobs
    marker = tmp_path / "killed"

    outcomes = distributed.run_on_ray(
        functools.partial(telea_dying_in_a_panel, str(marker)), jobs, RayOptions(workers=2)
    )

    assert marker.exists()  # a worker did die in a panel
    assert [o.status for o in outcomes] == [Status.DONE] * len(jobs), [o.error for o in outcomes]
    assert not any(o.warnings for o in outcomes), [o.warnings for o in outcomes]
    for job in jobs:
        record = provenance.read_record(job.output)
        assert record is not None and record["complete"], job.output
        assert panel_path(job.output).is_file()
    assert leftovers(tmp_path / "out") == []
    assert sorted(tree_hashes(tmp_path / "out")) == sorted(
        [f"{i:05}.png" for i in range(8)] + [f"{i:05}_panel.png" for i in range(8)]
    )


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


class PoisonedTelea:
    """Telea, except that an image 13 px wide kills the process that fills it (as a crash would)."""

    def __init__(self) -> None:
        self.inner = Inpainter.from_name("telea", device="cpu")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def inpaint(self, pixels: np.ndarray, hole: np.ndarray, **options: object) -> object:
        if pixels.shape[1] == 13:
            os._exit(1)
        return self.inner.inpaint(pixels, hole, **options)


@pytest.mark.ray
@needs_ray
def test_an_image_that_kills_every_worker_fails_alone(cluster: str, tmp_path: Path) -> None:
    mask = save_photos(tmp_path / "photos", 6, (16, 20))
    Image.fromarray(np.zeros((16, 13, 3), np.uint8)).save(tmp_path / "photos" / "00002.png")
    Image.fromarray(make_hole(16, 13).astype(np.uint8) * 255).save(tmp_path / "narrow_mask.png")
    jobs = plan_folder(tmp_path / "photos", mask, tmp_path / "out").jobs
    jobs[2] = Job(jobs[2].image, (tmp_path / "narrow_mask.png",), jobs[2].output, jobs[2].relative)

    outcomes = distributed.run_on_ray(kind_of(PoisonedTelea), jobs, RayOptions(workers=2, max_attempts=2))

    statuses = [o.status.value for o in outcomes]
    assert statuses == ["done", "done", "failed", "done", "done", "done"]
    assert outcomes[2].error == (
        f"{jobs[2].image}: 2 Ray workers were lost while restoring it (more memory per worker?)"
    )
    assert sorted(tree_hashes(tmp_path / "out")) == [f"0000{i}.png" for i in (0, 1, 3, 4, 5)]


def counting_telea(log: str) -> Inpainter:
    """Telea, noting the loading process's id in `log` (one line per model load)."""
    with open(log, "a") as file:
        file.write(f"{os.getpid()}\n")
    return Inpainter.from_name("telea", device="cpu")


@pytest.mark.ray
@needs_ray
@pytest.mark.slow
def test_driver_memory_stays_flat_over_2000_images_and_each_worker_loads_once(
    cluster: str, tmp_path: Path
) -> None:
    mask = save_photos(tmp_path / "photos", 2000, (8, 8))
    jobs = plan_folder(tmp_path / "photos", mask, tmp_path / "out").jobs
    loads = tmp_path / "loads.txt"
    process = psutil.Process()
    rss: dict[int, int] = {}

    def sample(outcome: JobOutcome) -> None:
        count = len(rss) + 1
        rss[count] = process.memory_info().rss if count % 100 == 0 else 0

    load = functools.partial(counting_telea, str(loads))
    outcomes = distributed.run_on_ray(kind_of(load), jobs, RayOptions(workers=2), on_outcome=sample)

    assert sum(o.status is Status.DONE for o in outcomes) == 2000
    loaded_in = loads.read_text().split()  # one line per model load, by process
    assert len(set(loaded_in)) == len(loaded_in) <= 2 and str(os.getpid()) not in loaded_in
    assert {str(o.placement["worker_pid"]) for o in outcomes} <= set(loaded_in)
    growth = (max(rss.values()) - rss[500]) / 2**20
    print(f"driver RSS at 500 images {rss[500] / 2**20:.0f} MiB, growth to 2000 images {growth:.1f} MiB")
    assert growth < 24, f"driver RSS grew {growth:.1f} MiB from image 500 to 2000"


@pytest.mark.ray
@needs_ray
def test_fail_fast_and_ctrl_c_stop_the_cluster_s_work(cluster: str, tmp_path: Path) -> None:
    import ray

    mask = save_photos(tmp_path / "photos", 30, (64, 64))
    (tmp_path / "photos" / "00003.png").write_bytes(b"not a png")
    jobs = plan_folder(tmp_path / "photos", mask, tmp_path / "out").jobs

    stopped = distributed.run_on_ray(kind_of(TELEA), jobs, RayOptions(workers=2), fail_fast=True)

    assert len(stopped) < len(jobs) and stopped[3].status is Status.FAILED
    ran = {o.job.output.name for o in stopped if o.status is Status.DONE}
    assert set(tree_hashes(tmp_path / "out")) == ran  # never-run jobs wrote nothing

    seen: list[JobOutcome] = []

    def interrupt(outcome: JobOutcome) -> None:
        seen.append(outcome)
        if len(seen) == 2:
            raise KeyboardInterrupt

    interrupted = distributed.run_on_ray(kind_of(TELEA), jobs, RayOptions(workers=2), on_outcome=interrupt)

    assert interrupted.interrupted and sorted(map(id, interrupted)) == sorted(map(id, seen))
    assert interrupted.not_run == [job for job in jobs if job not in {o.job for o in seen}]
    deadline = time.monotonic() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # the interrupted run's workers are being stopped
    assert ray.available_resources().get("CPU", 0) == 2
    local_run(tmp_path / "photos", mask, tmp_path / "local")
    reference = tree_hashes(tmp_path / "local")
    assert all(reference[name] == digest for name, digest in tree_hashes(tmp_path / "out").items())

    finished = distributed.run_on_ray(kind_of(TELEA), jobs, RayOptions(workers=2))  # the same call resumes
    assert sum(o.status is Status.FAILED for o in finished) == 1
    assert tree_hashes(tmp_path / "out") == reference and leftovers(tmp_path / "out") == []


@pytest.mark.ray
@pytest.mark.s3
@needs_ray
@pytest.mark.slow
def test_s3_folders_on_ray_give_the_local_outputs(cluster: str | None, tmp_path: Path) -> None:
    if cluster is None:
        pytest.skip('needs moto[server] and s3fs (pip install -e ".[test]")')
    import fsspec

    photos, masks = make_messy(tmp_path)
    local_run(photos, masks, tmp_path / "local")
    fsspec.filesystem("s3").mkdir("ray-archive")
    upload_tree(photos, "s3://ray-archive/photos")
    upload_tree(masks, "s3://ray-archive/masks")
    remote = {name: storage.location(f"s3://ray-archive/{name}") for name in ("photos", "masks", "out")}
    plan = plan_folder(remote["photos"], remote["masks"], remote["out"], recursive=True)

    outcomes = distributed.run_on_ray(kind_of(TELEA), plan.jobs, RayOptions(workers=2))

    done = {o.job.relative.as_posix() for o in outcomes if o.status is Status.DONE}
    assert done == set(GOOD)
    failed = {o.job.relative.as_posix(): o.error for o in outcomes if o.status is Status.FAILED}
    assert failed["corrupt.png"].startswith("s3://ray-archive/photos/corrupt.png: image data is truncated")
    assert remote_hashes("s3://ray-archive/out") == tree_hashes(tmp_path / "local")


# --- the command line ------------------------------------------------------------------------------


def invoke(*args: str | Path) -> object:
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    return CliRunner().invoke(app, ["run", *map(str, args)])


def test_cluster_options_without_ray_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, masks = make_messy(tmp_path)
    alone = invoke(photos, "-m", masks, "--model", "telea", "--workers", "2")
    assert alone.exit_code == 2
    assert "error: --workers, --cpus-per-worker and --gpus-per-worker need --ray" in alone.stderr

    # A bare --ray before the input folder: the folder is the input, not the address (a dry run
    # pairs without contacting any cluster, so it works without Ray).
    dry = invoke("--ray", photos, "-m", masks, "--model", "telea", "-r", "--dry-run", "--workers", "2")
    assert dry.exit_code == 1, dry.stderr  # the messy folder's bad inputs fail the dry run
    assert f"{photos / 'good.png'}\t{masks / 'good.png'}" in dry.stdout

    monkeypatch.setitem(sys.modules, "ray", None)
    missing = invoke(photos, "-m", masks, "-o", tmp_path / "out", "--model", "telea", "-r", "--ray")
    assert missing.exit_code == 2, missing.stderr
    assert 'error: --ray needs Ray, which is not installed (pip install "inpaint-cli[ray]")' in missing.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
@needs_ray
def test_run_ray_reports_node_worker_and_time_per_image_and_resumes(cluster: str, tmp_path: Path) -> None:
    photos, masks = make_messy(tmp_path)
    out, report = tmp_path / "out", tmp_path / "report.json"
    dry = invoke(photos, "-m", masks, "-o", out, "--model", "telea", "-r", "--ray", "--dry-run")
    assert dry.exit_code == 1 and not out.exists()  # the dry run names the bad inputs and starts nothing

    result = invoke(photos, "-m", masks, "-o", out, "--model", "telea", "-r", "--ray", "--report", report)

    assert result.exit_code == 1, result.stderr  # bad inputs fail alone, as locally
    records = json.loads(report.read_text())
    assert records["summary"] == {"done": 7, "skipped": 0, "failed": 3, "not_run": 0, "unused_masks": 1}
    for record in records["inputs"]:
        if record["status"] == "done":
            assert record["node"] and record["worker"] and record["worker_pid"] != os.getpid()
            assert record["seconds"] > 0 and record["provenance"]["model"] == "telea"
    assert sorted(tree_hashes(out)) == sorted(GOOD) and leftovers(out) == []

    again = invoke(photos, "-m", masks, "-o", out, "--model", "telea", "-r", "--ray", "--report", report)
    assert again.exit_code == 1
    assert json.loads(report.read_text())["summary"]["skipped"] == 7


# --- detect on Ray ---------------------------------------------------------------------------------


def detect(*args: str | Path) -> object:
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    return CliRunner().invoke(app, ["detect", *map(str, args)])


def damaged_photos(folder: Path) -> Path:
    """Two scratched photos and, in a subfolder, one without damage (120×160 px)."""
    from detect_helpers import scratched, smooth_photo

    (folder / "album").mkdir(parents=True)
    Image.fromarray(scratched(smooth_photo(120, 160, seed=0))[0]).save(folder / "a.png")
    Image.fromarray(scratched(smooth_photo(120, 160, seed=1))[0]).save(folder / "b.png")
    Image.fromarray(smooth_photo(120, 160, seed=2)).save(folder / "album" / "c.png")
    return folder


def same_in_both(record: dict[str, object]) -> dict[str, object]:
    """A detect report's record without what differs between two runs: paths, times, placement."""
    varying = {"output", "written", "overlay", "seconds", "node", "worker", "worker_pid"}
    return {key: value for key, value in record.items() if key not in varying}


def test_detect_cluster_options_without_ray_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = damaged_photos(tmp_path / "photos")
    for option in (["--workers", "2"], ["--cpus-per-worker", "2"], ["--gpus-per-worker", "1"]):
        alone = detect(photos, "--detector", "classical", *option)
        assert (alone.exit_code, alone.output) == (
            2,
            "error: --workers, --cpus-per-worker and --gpus-per-worker need --ray\n",
        ), option
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    missing = detect(photos, "-r", "--detector", "classical", "--ray", "--workers", "2")
    assert (missing.exit_code, missing.output) == (
        2,
        'error: --ray needs Ray, which is not installed (pip install "inpaint-cli[ray]")\n',
    )
    assert not (tmp_path / "photos_masks").exists()


@needs_ray
@pytest.mark.ray
def test_detect_on_ray_gives_the_local_masks_records_and_report_and_resumes(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inpaint_cli.batch.kinds.detect import DetectRequest, plan_detection, run_detection
    from inpaint_cli.detect import detectors
    from inpaint_cli.detect.detection import Mode

    photos = damaged_photos(tmp_path / "photos")
    common = ["-r", "--detector", "classical"]
    local = detect(photos, *common, "-o", tmp_path / "local", "--report", tmp_path / "local.json")
    assert local.exit_code == 0, local.output
    monkeypatch.setattr(detectors, "load_detector", never_load)  # in this process only

    ray_args = ["-o", tmp_path / "ray", "--report", tmp_path / "ray.json", "--ray", "--workers", "2"]
    on_ray = detect(photos, *common, *ray_args)

    assert on_ray.exit_code == 0, on_ray.output
    # The workers as they load the detector (a second may not be ready before the first is done).
    assert on_ray.output.startswith("Ray: 0 workers live\nRay: 1 worker live\n"), on_ray.output
    assert "3 done (1 without damage), 0 skipped, 0 failed" in on_ray.output
    masks = ["a_mask.png", "a_overlay.jpg", "album/c_mask.png", "album/c_overlay.jpg", "b_mask.png"]
    masks.append("b_overlay.jpg")
    assert sorted(tree_hashes(tmp_path / "ray")) == masks
    assert tree_hashes(tmp_path / "ray") == tree_hashes(tmp_path / "local")  # byte-identical
    assert leftovers(tmp_path / "ray") == []
    for name in masks[::2]:
        here = provenance.read_record(tmp_path / "local" / name)
        there = provenance.read_record(tmp_path / "ray" / name)
        assert there is not None and there["complete"], name
        assert there["provenance"] == here["provenance"], name
    local_report = json.loads((tmp_path / "local.json").read_text())
    report = json.loads((tmp_path / "ray.json").read_text())
    assert report["kind"] == "detect"
    assert (
        (report["detector"], report["mode"])
        == ("classical", "high_res")
        == (
            local_report["detector"],
            local_report["mode"],
        )
    )
    assert (
        report["summary"]
        == local_report["summary"]
        == {
            "done": 3,
            "skipped": 0,
            "failed": 0,
            "not_run": 0,
            "unused_masks": 0,
            "no_damage": 1,
        }
    )
    assert [same_in_both(r) for r in report["inputs"]] == [same_in_both(r) for r in local_report["inputs"]]
    for record in report["inputs"]:
        assert record["node"] and len(record["worker"]) == 12 and record["worker_pid"] != os.getpid()

    # The library call resumes the same folder: every mask is skipped, none rewritten.
    before = {path: _identity(path) for path in (tmp_path / "ray").rglob("*_mask.png")}
    request = DetectRequest(photos, tmp_path / "ray", "classical", recursive=True, ray="auto", workers=2)
    again = run_detection(request, plan_detection(request))
    assert [o.status for o in again.outcomes] == [Status.SKIPPED] * 3
    assert (again.detector, again.mode) == ("classical", Mode.HIGH_RES)
    assert {path: _identity(path) for path in before} == before


def start_driver(tmp_path: Path, cluster_address: str, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "inpaint_cli",
        "run",
        str(tmp_path / "photos"),
        "-m",
        str(tmp_path / "mask.png"),
    ]
    command += [
        "-o",
        str(tmp_path / "out"),
        "--model",
        "telea",
        "--ray",
        cluster_address,
        "--workers",
        "2",
        *extra,
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )


def wait_for_outputs(process: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(tree_hashes(out) if out.exists() else {}) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no outputs appeared"
        time.sleep(0.05)


@pytest.mark.ray
@needs_ray
@pytest.mark.slow
def test_a_killed_or_interrupted_driver_resumes_with_the_same_command(cluster: str, tmp_path: Path) -> None:
    import ray

    address = ray.get_runtime_context().gcs_address  # the drivers join this test's cluster
    mask = save_photos(tmp_path / "photos", 100, (96, 128))
    local_run(tmp_path / "photos", mask, tmp_path / "local")

    killed = start_driver(tmp_path, address)
    wait_for_outputs(killed, tmp_path / "out", 5)
    killed.kill()  # SIGKILL: no report, no clean-up
    killed.communicate()
    report = tmp_path / "report.json"
    interrupted = start_driver(tmp_path, address, "--report", str(report))
    wait_for_outputs(interrupted, tmp_path / "out", len(tree_hashes(tmp_path / "out")) + 5)
    interrupted.send_signal(signal.SIGINT)
    _, stderr = interrupted.communicate(timeout=60)

    assert interrupted.returncode == 130, stderr
    summary = json.loads(report.read_text())["summary"]
    assert summary["not_run"] > 0 and summary["done"] + summary["skipped"] + summary["not_run"] == 100
    reference = tree_hashes(tmp_path / "local")
    assert all(reference[name] == digest for name, digest in tree_hashes(tmp_path / "out").items())

    finished = start_driver(tmp_path, address, "--report", str(report))
    _, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 0, stderr
    assert json.loads(report.read_text())["summary"]["failed"] == 0
    assert tree_hashes(tmp_path / "out") == reference and leftovers(tmp_path / "out") == []


JOIN_ATTEMPTS = 3
"""How often the ray:// test joins when the head reports a start-up failure of its own."""


@contextlib.contextmanager
def ray_client_head(client_port: int) -> object:
    """A separate head node (`ray start --head --block`) serving Ray Client on 127.0.0.1:`client_port`,
    as a remote cluster would; its whole process group is stopped afterwards."""
    from storage_helpers import free_port

    # Its own temporary folder, so that its `ray_current_cluster` record never leads this machine's
    # other `ray.init()` calls to it (short: Ray's socket paths must fit 107 bytes).
    temp = tempfile.mkdtemp(prefix="rayhead", dir="/tmp")
    # No token: a real cluster's token is its admin's to hand out.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp}
    # The head's client proxier gives a per-client server this long to start (a new Python process
    # importing Ray): Ray's default of 30 s is too short on a loaded machine, where the join then
    # fails with "Initialization failure from server" (issue 30). A real head is set by its admin.
    env.setdefault("RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S", "240")
    ray_cli = str(Path(sys.executable).with_name("ray"))  # the ray command of this environment
    command = [ray_cli, "start", "--head", "--block", "--port", str(free_port()), "--num-cpus", "1"]
    command += ["--ray-client-server-port", str(client_port), "--include-dashboard", "false"]
    command += ["--disable-usage-stats"]
    head = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", client_port), 1):
                break
            time.sleep(0.5)
        yield env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def client_server_logs(temp: Path) -> str:
    """The end of the head's Ray Client server logs (why a client could not join), for a failure."""
    logs = sorted(temp.glob("ray/session_*/logs/ray_client_server*.err"))  # $RAY_TMPDIR/ray/session_*
    return "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')[-1500:]}" for log in logs)


@pytest.mark.ray
@needs_ray
@pytest.mark.slow
def test_a_ray_client_address_joins_that_cluster_and_gives_the_local_bytes(tmp_path: Path) -> None:
    from storage_helpers import free_port

    mask = save_photos(tmp_path / "photos", 6, (48, 64))
    local_run(tmp_path / "photos", mask, tmp_path / "local")
    port = free_port()
    report = tmp_path / "report.json"
    with ray_client_head(port) as env:
        command = [sys.executable, "-m", "inpaint_cli", "run", str(tmp_path / "photos"), "-m", str(mask)]
        command += ["-o", str(tmp_path / "out"), "--model", "telea", "--ray", f"ray://127.0.0.1:{port}"]
        command += ["--workers", "1", "--report", str(report), "-q"]
        for _ in range(JOIN_ATTEMPTS):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 2 or "Initialization failure from server" not in done.stderr:
                break
            # The head's per-client server did not start: found already dead (psutil.ZombieProcess
            # in proxier.start_specific_server), or exited at once while the previous attempt's
            # still held its port. A failure of the head, not of the run, which wrote nothing.
            assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
            time.sleep(5)
        head_logs = "" if done.returncode == 0 else client_server_logs(Path(env["RAY_TMPDIR"]))

    assert done.returncode == 0, done.stderr[-2000:] + head_logs
    assert tree_hashes(tmp_path / "out") == tree_hashes(tmp_path / "local")
    records = json.loads(report.read_text())["inputs"]
    assert len(records) == 6 and {r["node"] for r in records} == {"127.0.0.1"}
