"""Storage: fsspec URLs for the input, mask and output folders of a local batch, atomic single-object
writes, and the same outputs as a run on local folders (against an S3 server on 127.0.0.1)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path, PurePosixPath

import pytest

from inpaint_cli.batch import engine
from inpaint_cli.batch.jobs import Existing, JobPlan
from inpaint_cli.batch.kinds.inpaint import InpaintKind, RunSettings, plan_folder
from inpaint_cli.batch.outcomes import JobOutcome, Status, report_of, write_report
from inpaint_cli.engine.inpainter import Inpainter
from inpaint_cli.errors import UsageError
from inpaint_cli.files import storage
from inpaint_cli.files.storage import RemotePath

pytest.importorskip("fsspec", reason="fsspec URLs need the fsspec package")
from storage_helpers import (
    BAD,
    GOOD,
    NO_MASK,
    have_s3_server,
    make_messy,
    remote_hashes,
    tree_hashes,
    upload_tree,
)


@pytest.fixture(scope="module")
def telea() -> Inpainter:
    return Inpainter.from_name("telea", device="cpu")


def test_location_tells_urls_from_paths_and_undoes_what_pathlib_does_to_a_url() -> None:
    assert storage.location("photos/a") == Path("photos/a")
    assert storage.location("file:///srv/scans") == Path("/srv/scans")
    remote = storage.location("memory://archive/scans/")
    assert remote == RemotePath("memory", PurePosixPath("archive/scans"))
    assert str(remote) == "memory://archive/scans"
    # A command-line parser that makes a Path of the URL leaves `memory:/archive/scans`.
    assert storage.location(Path("memory://archive/scans")) == remote

    with pytest.raises(UsageError) as unknown:
        storage.location("nosuchstore://bucket/x")
    assert unknown.value.one_line() == (
        "nosuchstore://bucket/x: unknown storage protocol nosuchstore:// (see fsspec's protocols)"
    )


def test_a_url_whose_package_is_missing_says_which_package() -> None:
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    with pytest.raises(UsageError) as missing:
        storage.location("gs://bucket/scans")
    assert missing.value.one_line().startswith("gs://bucket/scans: gs:// needs another package (")
    assert "gcsfs" in missing.value.one_line()


def test_remote_paths_join_compare_and_pickle_like_paths() -> None:
    root = storage.location("s3://bucket/scans")
    image = root / "box 1" / "a.tif"
    assert str(image) == "s3://bucket/scans/box 1/a.tif"
    assert (image.name, image.stem, image.suffix) == ("a.tif", "a", ".tif")
    assert str(image.with_suffix(".png")) == "s3://bucket/scans/box 1/a.png"
    assert image.parent == root / "box 1" and root in image.parents
    relative = image.relative_to(root)
    assert relative == PurePosixPath("box 1/a.tif")
    # The relative path joins onto a local output folder as well as onto a remote one.
    assert Path("/out") / relative == Path("/out/box 1/a.tif")
    assert str(storage.location("s3://bucket/out") / relative) == "s3://bucket/out/box 1/a.tif"
    assert sorted([root / "b", root / "a"]) == [root / "a", root / "b"]
    assert pickle.loads(pickle.dumps(image)) == image
    with pytest.raises(ValueError):
        image.relative_to(storage.location("memory://bucket/scans"))


def test_a_staged_write_puts_one_whole_object_or_nothing() -> None:
    target = storage.location("memory://staged/out/a.png")
    with pytest.raises(RuntimeError), storage.staged_write(target) as local:
        local.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert not target.exists()
    with storage.staged_write(target) as local:
        local.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and target.stat().st_size == 5
    assert not local.exists()  # the local staging copy is gone
    assert [files for _, _, files in storage.walk(target.parent)] == [["a.png"]]
    local_target = Path("/tmp/x.png")
    with storage.staged_write(local_target) as same:
        assert same == local_target  # local files are written in place by the atomic writers


def run_batch(
    inpainter: Inpainter, photos: storage.AnyPath, masks: storage.AnyPath, out: storage.AnyPath
) -> tuple[JobPlan, list[JobOutcome]]:
    plan = plan_folder(photos, masks, out, recursive=True)
    settings = RunSettings(existing=Existing.SKIP)
    return plan, engine.run_jobs(InpaintKind(inpainter, settings), plan.jobs, workers=2)


def records(outcomes: list[JobOutcome], photos: object) -> dict[str, dict]:
    prefix = f"{photos}/"
    return {o.as_record()["image"].removeprefix(prefix): o.as_record() for o in outcomes}


needs_s3 = pytest.mark.skipif(
    not have_s3_server(), reason='needs moto[server] and s3fs (pip install -e ".[test]")'
)


@pytest.mark.s3
@needs_s3
@pytest.mark.slow
def test_local_batch_on_s3_urls_matches_the_run_on_local_folders(tmp_path: Path, telea: Inpainter) -> None:
    from storage_helpers import s3_server

    photos, masks = make_messy(tmp_path)
    _, local_outcomes = run_batch(telea, photos, masks, tmp_path / "out")
    with s3_server():
        import fsspec

        fsspec.filesystem("s3").mkdir("archive")
        upload_tree(photos, "s3://archive/photos")
        upload_tree(masks, "s3://archive/masks")
        remote = {name: storage.location(f"s3://archive/{name}") for name in ("photos", "masks", "out")}

        plan, outcomes = run_batch(telea, remote["photos"], remote["masks"], remote["out"])

        found = records(outcomes, remote["photos"])
        assert {name for name, r in found.items() if r["status"] == "done"} == set(GOOD)
        assert found["nested/deeper/inner.png"]["output"] == "s3://archive/out/nested/deeper/inner.png"
        for name, problem in BAD.items():  # errors name the object, never the temporary local copy
            assert found[name]["error"].startswith(f"s3://archive/photos/{name}: {problem}"), found[name]
        assert found[NO_MASK]["error"].startswith(f"s3://archive/photos/{NO_MASK}: no mask found")
        assert [str(m) for m in plan.unused_masks] == ["s3://archive/masks/orphan_mask.png"]
        # Byte-identical outputs, and nothing else in the bucket's output prefix (no temporary objects).
        assert remote_hashes("s3://archive/out") == tree_hashes(tmp_path / "out")
        assert sorted(tree_hashes(tmp_path / "out")) == sorted(GOOD)
        local = records(local_outcomes, photos)
        assert {n: r["status"] for n, r in found.items()} == {n: r["status"] for n, r in local.items()}

        _, again = run_batch(telea, remote["photos"], remote["masks"], remote["out"])
        assert {o.job.relative.as_posix() for o in again if o.status is Status.SKIPPED} == set(GOOD)
        assert sum(o.status is Status.DONE for o in again) == 0
        report = write_report(tmp_path / "report.json", report_of("inpaint", again))
        assert json.loads(report.read_text())["summary"]["skipped"] == len(GOOD)


@pytest.mark.s3
@needs_s3
@pytest.mark.slow
def test_inpaint_run_on_s3_urls_writes_objects_reports_urls_and_resumes(tmp_path: Path) -> None:
    import fsspec
    from storage_helpers import s3_server
    from typer.testing import CliRunner

    from inpaint_cli.cli.app import app

    photos, masks = make_messy(tmp_path)
    run_batch(Inpainter.from_name("telea", device="cpu"), photos, masks, tmp_path / "local")
    report = tmp_path / "report.json"
    command = [
        "run",
        "s3://cli/photos",
        "-m",
        "s3://cli/masks",
        "-o",
        "s3://cli/out",
        "--model",
        "telea",
        "-r",
    ]
    with s3_server():
        fsspec.filesystem("s3").mkdir("cli")
        upload_tree(photos, "s3://cli/photos")
        upload_tree(masks, "s3://cli/masks")

        result = CliRunner().invoke(app, [*command, "--report", str(report)])

        assert result.exit_code == 1, result.stderr  # the broken inputs fail alone
        stderr = " ".join(result.stderr.split())
        assert "error: s3://cli/photos/corrupt.png: image data is truncated or corrupt" in stderr
        assert (
            f"error: s3://cli/photos/{NO_MASK}: no mask found (looked for s3://cli/masks/nomask.*" in stderr
        )
        done = {r["output"] for r in json.loads(report.read_text())["inputs"] if r["status"] == "done"}
        assert done == {f"s3://cli/out/{name}" for name in GOOD}
        assert remote_hashes("s3://cli/out") == tree_hashes(tmp_path / "local")  # and no leftovers

        again = CliRunner().invoke(app, [*command, "--report", str(report)])
        assert again.exit_code == 1
        assert json.loads(report.read_text())["summary"]["skipped"] == len(GOOD)
