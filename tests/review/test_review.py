"""The review page: rows from a batch report, thumbnails, order, escaping, size for 10,000 images,
rebuilding and resuming, and `inpaint report`. The page in a real browser: test_review_browser.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inpaint_cli.batch.jobs import Job
from inpaint_cli.batch.outcomes import JobOutcome, Status, report_of, write_report
from inpaint_cli.cli.app import app
from inpaint_cli.review import page as review
from inpaint_cli.review import thumbnails as review_pixels

HEIGHT, WIDTH = 300, 400
SCRIPT_NAME = "<script>alert(1)</script>.png"
"""A slash is a path separator: this name is the file `script>.png` in the folder `<script>alert(1)<`."""
IMG_NAME = "<img src=x onerror=alert(2)>.png"
NAMES = ["a.png", "flat.png", SCRIPT_NAME, IMG_NAME, "broken.png", "old.png"]


def make_batch(root: Path) -> Path:
    """A finished batch on disk: inputs, masks, outputs and its JSON report (`outcomes.write_report`).

    a.png and both hostile names are done (filled with noise), flat.png is done with a flat grey fill
    (suspicious), broken.png failed, old.png was skipped (output exists).
    """
    rng = np.random.default_rng(7)
    hole = np.zeros((HEIGHT, WIDTH), dtype=bool)
    hole[100:160, 150:260] = True
    outcomes = []
    for index, name in enumerate(NAMES):
        image, mask, output = root / "in" / name, root / "masks" / name, root / "out" / name
        for path in (image, mask, output):
            path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image)
        Image.fromarray(hole.astype(np.uint8) * 255).save(mask)
        job = Job(image, (mask,), output, relative=Path(name))
        if name == "broken.png":
            outcomes.append(JobOutcome(job, Status.FAILED, 0.01, error=f"{mask}: mask is 10x10"))
            continue
        filled = pixels.copy()
        filled[hole] = 128 if name == "flat.png" else rng.integers(0, 256, (int(hole.sum()), 3))
        Image.fromarray(filled).save(output)
        status = Status.SKIPPED if name == "old.png" else Status.DONE
        strategy = None if status is Status.SKIPPED else "auto: 1 crop box"
        seconds = 0.0 if status is Status.SKIPPED else 0.5 + index / 10
        outcomes.append(JobOutcome(job, status, seconds, strategy=strategy, written=[output]))
    return write_report(root / "report.json", report_of("inpaint", outcomes))


def page_rows(page: Path) -> list[dict]:
    """The rows the page's script shows, read back from the page's JSON."""
    html = page.read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="rows-data">(.*?)</script>', html, re.S)
    return json.loads(data.group(1))


def build(root: Path, report: Path, **options) -> review.PageSummary:
    rows = review.rows_from_report(review.load_report(report), bases=[root], model="telea")
    return review.build_page(rows, root / "review" / "page.html", **options)


def test_page_rows_match_the_report_with_failures_and_suspicious_first(tmp_path: Path) -> None:
    report = make_batch(tmp_path)
    summary = build(tmp_path, report)
    rows = page_rows(summary.page)
    assert summary.counts == {"done": 4, "failed": 1, "skipped": 1}
    reported = json.loads(report.read_text())["summary"]
    assert summary.counts == {status: reported[status] for status in summary.counts}
    names = [row["n"] for row in rows]
    assert names[:2] == ["broken.png", "flat.png"]
    assert set(names) == set(NAMES)
    failed, flat = rows[0], rows[1]
    assert failed["s"] == "failed" and failed["e"].endswith("mask is 10x10")
    assert flat["q"] == ["the hole is filled with one flat colour"]
    assert summary.suspicious == 1
    assert {row["m"] for row in rows} == {"telea"}
    assert failed["th"][2] is None  # no result picture for a failure
    done = next(row for row in rows if row["n"].endswith("a.png"))
    assert done["g"] == "auto: 1 crop box" and done["t"] == pytest.approx(0.5)
    assert done["l"] == ["../in/a.png", "../out/a.png"] and done["k"] == ["../masks/a.png"]


def test_thumbnails_are_small_jpegs_beside_the_page_with_the_hole_in_red(tmp_path: Path) -> None:
    summary = build(tmp_path, make_batch(tmp_path))
    folder = summary.page.parent / "page_files"
    rows = {Path(row["n"]).name: row for row in page_rows(summary.page)}
    # 5 readable inputs with masks: input + mask overlay each; 4 results (done and skipped).
    assert summary.thumbnails_written == 6 * 2 + 5
    input_thumb, mask_thumb, result_thumb = (summary.page.parent / t for t in rows["a.png"]["th"])
    with Image.open(input_thumb) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (256, 192)
    overlay = np.asarray(Image.open(mask_thumb), dtype=np.int16)
    # The hole (rows 100-160, columns 150-260) scaled by 0.64: rows 64-102, columns 96-166.
    inside, outside = overlay[70:96, 102:160].mean(axis=(0, 1)), overlay[10:50, 10:80].mean(axis=(0, 1))
    assert inside[0] - inside[1] > 100  # reddened
    assert abs(outside[0] - outside[1]) < 10
    assert result_thumb.is_file()
    assert not [p for p in folder.iterdir() if ".part" in p.name]


def test_hostile_file_names_stay_text(tmp_path: Path) -> None:
    summary = build(tmp_path, make_batch(tmp_path), title="<b>review</b>")
    html = summary.page.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert html.count("<script") == 2  # the JSON data and the page's own script
    assert "<title>&lt;b&gt;review&lt;/b&gt;</title>" in html
    names = {row["n"] for row in page_rows(summary.page)}
    assert SCRIPT_NAME in names and IMG_NAME in names  # named by their path in the input folder
    links = next(row["l"] for row in page_rows(summary.page) if row["n"].endswith(IMG_NAME))
    assert links[0] == "../in/%3Cimg%20src%3Dx%20onerror%3Dalert%282%29%3E.png"


def test_page_is_offline_and_only_its_own_script_may_run(tmp_path: Path) -> None:
    summary = build(tmp_path, make_batch(tmp_path))
    html = summary.page.read_text(encoding="utf-8")
    assert re.search(r"https?://|//cdn|@import", html) is None
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy


def test_ten_thousand_rows_make_a_small_page(tmp_path: Path) -> None:
    """Generation of a 10,000-image page (no pictures on disk): every row present, under 300 bytes
    each. Its speed is measured by benchmarks/bench_review_page.py."""
    statuses = ["done"] * 8 + ["failed", "skipped"]
    records = [
        {
            "image": f"/archive/scans/box{i // 1000:02d}/scan_{i:05d}.tif",
            "masks": [f"/archive/masks/box{i // 1000:02d}/scan_{i:05d}.png"],
            "output": f"/archive/out/box{i // 1000:02d}/scan_{i:05d}.tif",
            "status": statuses[i % 10],
            "strategy": "auto: 2 crop boxes",
            "seconds": 1.0 + (i % 7) / 10,
            "error": "mask is 10x10 but image is 4000x3000" if i % 10 == 8 else None,
            "warnings": [],
        }
        for i in range(10_000)
    ]
    report = {"summary": {}, "inputs": records}
    summary = review.build_page(review.rows_from_report(report), tmp_path / "page.html", thumbnails=False)
    rows = page_rows(summary.page)
    assert len(rows) == summary.rows == 10_000
    assert summary.counts == {"done": 8000, "failed": 1000, "skipped": 1000}
    assert all(row["s"] == "failed" for row in rows[:1000])
    assert summary.page_bytes < 10_000 * 300, summary.page_bytes


def test_rebuild_reuses_thumbnails_and_replaces_those_of_changed_files(tmp_path: Path) -> None:
    report = make_batch(tmp_path)
    first = build(tmp_path, report)
    again = build(tmp_path, report)
    assert again.thumbnails_written == 0 and again.thumbnails_reused == len(NAMES)
    assert page_rows(again.page) == page_rows(first.page)
    before = {Path(row["n"]).name: row["th"] for row in page_rows(first.page)}
    Image.new("RGB", (WIDTH, HEIGHT), "blue").save(tmp_path / "out" / "a.png")
    changed = build(tmp_path, report)
    assert changed.thumbnails_written == 3 and changed.thumbnails_reused == len(NAMES) - 1
    after = {Path(row["n"]).name: row["th"] for row in page_rows(changed.page)}
    assert after["a.png"] != before["a.png"] and after["old.png"] == before["old.png"]
    assert not any((first.page.parent / name).exists() for name in before["a.png"])


def test_a_resumed_batch_keeps_the_rows_of_images_done_before(tmp_path: Path) -> None:
    report = make_batch(tmp_path)
    build(tmp_path, report)
    data = json.loads(report.read_text())
    for record in data["inputs"]:
        if record["status"] == "done":  # the rerun skips what the first run did
            record.update(status="skipped", strategy=None, seconds=0.0)
    rows = review.rows_from_report(data, model="telea")
    resumed = review.build_page(rows, tmp_path / "review" / "page.html")
    shown = {Path(row["n"]).name: row for row in page_rows(resumed.page)}
    assert shown["a.png"]["s"] == "done" and shown["a.png"]["o"] == "done by an earlier run"
    assert shown["a.png"]["g"] == "auto: 1 crop box"
    assert shown["old.png"]["s"] == "skipped"  # skipped already in the first run: nothing to keep
    assert shown["flat.png"]["q"] == ["the hole is filled with one flat colour"]
    assert resumed.counts == {"done": 4, "failed": 1, "skipped": 1}


def test_report_command_builds_the_page_and_refuses_bad_reports(tmp_path: Path) -> None:
    report = make_batch(tmp_path)
    runner = CliRunner()
    page = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(report), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "6 image(s)" in result.output
    assert len(page_rows(page)) == 6
    (tmp_path / "notes.json").write_text('{"inputs": 3}')
    result = runner.invoke(app, ["report", str(tmp_path / "notes.json"), "--html", str(page)])
    assert result.exit_code == 1
    assert result.output.strip().endswith("not a batch report (no 'inputs' list) (give a --report file)")
    result = runner.invoke(app, ["report", str(report), "--html", str(report)])
    assert result.exit_code == 2 and "is the report and cannot be the review page" in result.output
    assert json.loads(report.read_text())["inputs"]


def test_pixel_findings() -> None:
    rng = np.random.default_rng(0)
    before = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    hole = np.zeros((40, 40), dtype=bool)
    hole[10:20, 10:20] = True
    assert review_pixels.pixel_findings(before, hole, before) == ["the hole is unchanged"]
    flat = before.copy()
    flat[hole] = 0
    assert review_pixels.pixel_findings(before, hole, flat) == ["the hole is filled with one flat colour"]
    noisy = before.copy()
    noisy[hole] = rng.integers(0, 256, (100, 3))
    assert review_pixels.pixel_findings(before, hole, noisy) == []
    big = np.ones((40, 40), dtype=bool)
    big[:, :20] = False
    assert review_pixels.pixel_findings(before, big, None) == ["hole covers 50% of the image"]


def test_a_fill_in_colours_found_nowhere_around_the_hole_is_flagged() -> None:
    """Issue 30: blots of colour the photo does not have (a sepia print filled green and black where
    the network had no input) are flagged; a fill in the photo's own colours is not."""
    rows, cols = np.mgrid[:120, :160]
    tone = (90 + rows + cols // 2).astype(np.uint8)
    sepia = np.stack([tone, (tone * 0.85).astype(np.uint8), (tone * 0.65).astype(np.uint8)], axis=-1)
    hole = np.zeros((120, 160), bool)
    hole[:50, 100:] = True  # a torn corner
    assert review_pixels.pixel_findings(sepia, hole, sepia.copy()) == ["the hole is unchanged"]
    blotted = sepia.copy()
    blotted[10:30, 120:150] = (40, 160, 60)  # 600 green pixels, 20 % of the hole
    assert review_pixels.pixel_findings(sepia, hole, blotted) == [
        "20% of the fill has colours found nowhere around the hole (unfilled?)"
    ]
    toned = sepia.copy()
    toned[:50, 100:] = sepia[60:110, 40:100][::-1]  # the print's own tones, moved
    assert review_pixels.pixel_findings(sepia, hole, toned) == []
    small = sepia.copy()
    small[10:20, 120:130] = (40, 160, 60)  # 100 px: noise, not a patch
    assert review_pixels.foreign_colours(small, hole) == (100 / hole.sum(), 100)
    assert review_pixels.pixel_findings(sepia, hole, small) == []


def test_run_html_writes_the_page_and_a_resumed_batch_updates_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    hole = np.zeros((48, 64), dtype=np.uint8)
    hole[10:20, 10:30] = 255
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            tmp_path / "in" / f"{name}.png"
        )
        Image.fromarray(hole if name != "c" else hole[:8, :8]).save(tmp_path / "masks" / f"{name}.png")
    page = tmp_path / "review.html"
    args = ["run", str(tmp_path / "in"), "--mask", str(tmp_path / "masks"), "-o", str(tmp_path / "out")]
    args += ["--model", "telea", "--html", str(page)]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 1  # c.png fails
    rows = {row["n"]: row for row in page_rows(page)}
    assert [row["n"] for row in page_rows(page)] == ["c.png", "a.png", "b.png"]
    assert rows["c.png"]["s"] == "failed" and "8x8" in rows["c.png"]["e"]
    assert rows["a.png"]["s"] == "done" and rows["a.png"]["m"] == "telea" and len(rows["a.png"]["th"]) == 3
    (tmp_path / "out" / "b.png").unlink()
    assert runner.invoke(app, args).exit_code == 1  # resumed: a.png skipped, b.png redone
    rows = {row["n"]: row for row in page_rows(page)}
    assert rows["a.png"]["s"] == "done" and rows["a.png"]["o"] == "done by an earlier run"
    assert rows["b.png"]["s"] == "done" and "o" not in rows["b.png"]
    before = (tmp_path / "in" / "a.png").read_bytes()
    result = runner.invoke(app, [*args[:-1], str(tmp_path / "in" / "a.png")])
    assert result.exit_code == 2  # one check of every read and write (targets.check_targets)
    assert "is an input image and cannot be the review page (choose another --html)" in result.output
    assert (tmp_path / "in" / "a.png").read_bytes() == before


def test_mask_overlay_reads_masks_as_the_run_did(tmp_path: Path) -> None:
    hole = np.zeros((20, 30), dtype=np.uint8)
    hole[5:10, 5:20] = 255
    Image.fromarray(hole).save(tmp_path / "m.png")
    record = {"image": str(tmp_path / "i.png"), "masks": [str(tmp_path / "m.png")], "status": "done"}
    record["provenance"] = {"model": "ns", "mask": {"threshold": 127, "invert": True, "dilate": 1}}
    (row,) = review.rows_from_report({"inputs": [record]})
    assert row.model == "ns" and row.mask_options == {"threshold": 127, "invert": True, "dilate": 1}
    read = review_pixels.read_hole(row.masks, (20, 30), row.mask_options)
    assert read.sum() == 20 * 30 - 3 * 13  # inverted, then grown by 1 px: the white bar shrinks to 3×13
    assert review_pixels.read_hole(row.masks, (20, 30)).sum() == 5 * 15


def test_a_page_name_needing_url_quoting_still_reuses_its_thumbnails(tmp_path: Path) -> None:
    report = make_batch(tmp_path)
    rows = review.rows_from_report(review.load_report(report))
    page = tmp_path / "my review #1.html"
    first = review.build_page(rows, page)
    assert all(thumb.startswith("my%20review%20%231_files/") for thumb in page_rows(page)[1]["th"])
    assert (tmp_path / "my review #1_files").is_dir()
    again = review.build_page(rows, page)
    assert first.thumbnails_written == 17 and again.thumbnails_written == 0


def test_run_html_says_where_the_page_is_and_quiet_says_nothing_more(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(tmp_path / "in" / "a.png")
    hole = np.zeros((32, 40), dtype=np.uint8)
    hole[5:12, 5:20] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    page = tmp_path / "review.html"
    args = ["run", str(tmp_path / "in"), "--mask", str(tmp_path / "mask.png"), "-o", str(tmp_path / "out")]
    args += ["--model", "telea", "--html", str(page)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    wrote = [line for line in result.output.splitlines() if line.startswith(f"wrote {page}")]
    assert len(wrote) == 1
    expected = f"wrote {page}: 1 image(s) (done 1, suspicious 0), 3 new thumbnail(s), "
    assert re.fullmatch(re.escape(expected) + r"\d+\.\d s", wrote[0]), wrote
    (tmp_path / "out" / "a.png").unlink()
    quiet = CliRunner().invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == f"{tmp_path / 'out' / 'a.png'}\n"


def make_scans(folder: Path) -> None:
    """a.png: a 2-px white scratch across a grainy gradient; clean.png: the gradient alone; broken.png:
    no image (as test_detect's classical scenes, at 120x160)."""
    import cv2

    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:120, 0:160].astype(np.float32)
    base = np.stack([60 + 120 * x / 160, 80 + 90 * y / 120, 140 - 60 * x / 160], axis=-1)
    folder.mkdir()
    for name in ("a", "clean"):
        pixels = np.clip(base + rng.normal(0, 2.0, (120, 160, 1)), 0, 255).round().astype(np.uint8)
        if name == "a":
            cv2.line(pixels, (15, 20), (145, 100), (250, 250, 250), 2)
        Image.fromarray(pixels).save(folder / f"{name}.png")
    (folder / "broken.png").write_bytes(b"not a png")


def test_detect_html_shows_each_detection_and_counts_match_the_report(tmp_path: Path) -> None:
    make_scans(tmp_path / "in")
    page, report = tmp_path / "detect.html", tmp_path / "detect.json"
    args = ["detect", str(tmp_path / "in"), "--detector", "classical", "--html", str(page)]
    result = CliRunner().invoke(app, [*args, "--report", str(report)])
    assert result.exit_code == 1, result.output  # broken.png failed
    summary = json.loads(report.read_text())["summary"]
    assert summary == {"done": 2, "skipped": 0, "failed": 1, "not_run": 0, "unused_masks": 0, "no_damage": 1}
    assert f"wrote {page}: 3 image(s) (done 1, failed 1, no damage found 1, suspicious 0)" in result.output
    rows = {row["n"]: row for row in page_rows(page)}
    assert page_rows(page)[0]["n"] == "broken.png"
    counts = {status: sum(row["s"] == status for row in rows.values()) for status in ("done", "failed")}
    assert counts == {"done": summary["done"] - summary["no_damage"], "failed": summary["failed"]}
    assert sum(row["s"] == "no damage found" for row in rows.values()) == summary["no_damage"]
    assert "not a PNG" in rows["broken.png"]["e"] and rows["broken.png"].get("th", [None] * 3)[2] is None
    done = rows["a.png"]
    assert done["m"] == "classical" and done["g"] == "high_res" and done["o"].endswith("% damaged")
    masks = tmp_path / "in_masks"
    assert done["l"] == ["in/a.png", "in_masks/a_overlay.jpg"] and done["k"] == ["in_masks/a_mask.png"]
    # Thumbnails of a 160-px image keep its size: the mask thumbnail reddens exactly the detected damage.
    found = np.asarray(Image.open(masks / "a_mask.png")) == 255
    assert found.mean() > 0.005
    shown, plain = (np.asarray(Image.open(page.parent / t), dtype=np.int16) for t in done["th"][1::-1])
    redder = (shown[..., 0] - shown[..., 1]) - (plain[..., 0] - plain[..., 1])
    assert redder[found].mean() > 80 and abs(redder[~found].mean()) < 5
    assert (page.parent / done["th"][2]).is_file() and (masks / "a_overlay.jpg").is_file()
    # A rerun skips every mask and keeps the rows of the first run.
    again = CliRunner().invoke(app, args)
    rows = {row["n"]: row for row in page_rows(page)}
    assert (
        again.exit_code == 1 and rows["a.png"]["s"] == "done" and rows["clean.png"]["s"] == "no damage found"
    )


def test_detect_html_refuses_to_overwrite_an_input_or_a_mask(tmp_path: Path) -> None:
    make_scans(tmp_path / "in")
    before = (tmp_path / "in" / "a.png").read_bytes()
    args = ["detect", str(tmp_path / "in"), "--detector", "classical", "--html"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "in" / "a.png")])
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        "is an input image and cannot be the review page (choose another --html)"
    )
    assert (tmp_path / "in" / "a.png").read_bytes() == before and not (tmp_path / "in_masks").exists()
    mask = tmp_path / "in_masks" / "clean_mask.png"
    result = CliRunner().invoke(app, [*args, str(mask)])
    assert result.exit_code == 2 and "cannot be the review page" in result.output
    assert not mask.exists()


def test_detect_html_inside_the_photos_folder_is_not_taken_for_photos(tmp_path: Path) -> None:
    make_scans(tmp_path / "in")
    page = tmp_path / "in" / "review.html"
    args = ["detect", str(tmp_path / "in"), "-r", "--detector", "classical", "--html", str(page)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 1 and (tmp_path / "in" / "review_files").is_dir()
    again = CliRunner().invoke(app, args)  # the thumbnails under in/review_files/ are no photos
    assert again.exit_code == 1, again.output
    assert "0 done (0 without damage), 2 skipped, 1 failed" in again.output
    assert sorted(row["n"] for row in page_rows(page)) == ["a.png", "broken.png", "clean.png"]


def test_report_never_writes_its_page_over_a_file_of_the_report(tmp_path: Path) -> None:
    """#27: `inpaint report r.json --html in/a.png` replaced the photo with the page (r.json from a real
    `run --report`); the same with a mask or an output as the page. Only page == report was checked."""
    hole = np.zeros((24, 32), np.uint8)
    hole[5:10, 5:20] = 255
    for folder in ("in", "masks"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(tmp_path / "in" / "a.png")
    Image.fromarray(hole).save(tmp_path / "masks" / "a.png")
    report = tmp_path / "r.json"
    args = ["run", str(tmp_path / "in"), "--mask", str(tmp_path / "masks"), "-o", str(tmp_path / "out")]
    ran = CliRunner().invoke(app, [*args, "--model", "telea", "--report", str(report)])
    assert ran.exit_code == 0, ran.output
    for page, role in [
        (tmp_path / "in" / "a.png", "the image a.png"),
        (tmp_path / "masks" / "a.png", "a mask of a.png"),
        (tmp_path / "out" / "a.png", "the output of a.png"),
    ]:
        before = page.read_bytes()
        result = CliRunner().invoke(app, ["report", str(report), "--html", str(page)])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (
            f"error: {page}: is {role} and cannot be the review page (choose another --html)"
        )
        assert page.read_bytes() == before and not page.with_name("a_files").exists()


def test_report_replaces_and_removes_only_files_it_made(tmp_path: Path) -> None:
    """#27: `report` deleted files in `<page>_files/` that looked like thumbnails and rewrote a
    `rows.json` there; a page of another program was replaced without `--overwrite`."""
    report = make_batch(tmp_path)
    page, files = tmp_path / "page.html", tmp_path / "page_files"
    files.mkdir()
    foreign = {files / "rows.json": b'{"mine": true}', files / f"{'0' * 20}_input.jpg": b"a photo of mine"}
    for path, data in foreign.items():
        path.write_bytes(data)
    refused = CliRunner().invoke(app, ["report", str(report), "--html", str(page)])
    assert refused.exit_code == 1
    hint = "give another --html, or --overwrite to replace it"
    assert refused.output.strip() == f"error: {files}: exists and was not made by inpaint ({hint})"
    assert all(path.read_bytes() == data for path, data in foreign.items()) and not page.exists()
    (files / "rows.json").unlink()
    page.write_text("<p>my own page</p>")
    refused = CliRunner().invoke(app, ["report", str(report), "--html", str(page)])
    assert refused.exit_code == 1 and "exists and is not a review page made by inpaint" in refused.output
    assert page.read_text() == "<p>my own page</p>"
    made = CliRunner().invoke(app, ["report", str(report), "--html", str(page), "--overwrite"])
    assert made.exit_code == 0, made.output
    ours = {path.name for path in files.iterdir()} - {path.name for path in foreign}
    assert len(ours) > 10 and (files / "rows.json").is_file()
    # A rebuild after every input changed removes its own old thumbnails, never the look-alike.
    for name in NAMES:
        os.utime(tmp_path / "in" / name, ns=(1, 1))  # a new mtime: new thumbnails
    again = CliRunner().invoke(app, ["report", str(report), "--html", str(page)])
    assert again.exit_code == 0, again.output
    left = {path.name for path in files.iterdir()}
    assert (files / f"{'0' * 20}_input.jpg").read_bytes() == b"a photo of mine"
    assert not (ours - {"rows.json"}) & left  # every thumbnail of the first build was replaced


def test_report_renders_a_detection_report_as_detect_wrote_its_page(tmp_path: Path) -> None:
    """#24: `inpaint report` given a detect report rendered empty rows; one reader for every kind."""
    make_scans(tmp_path / "in")
    report, by_detect, by_report = tmp_path / "detect.json", tmp_path / "detect.html", tmp_path / "again.html"
    args = ["detect", str(tmp_path / "in"), "--detector", "classical", "--report", str(report)]
    assert CliRunner().invoke(app, [*args, "--html", str(by_detect)]).exit_code == 1  # broken.png
    assert json.loads(report.read_text())["kind"] == "detect"
    result = CliRunner().invoke(app, ["report", str(report), "--html", str(by_report)])
    assert result.exit_code == 0, result.output
    rows = {row["n"]: row for row in page_rows(by_report)}

    def without_thumbnails(page: Path) -> dict[str, dict]:  # each page has its own thumbnails folder
        return {
            row["n"]: {key: value for key, value in row.items() if key != "th"} for row in page_rows(page)
        }

    assert without_thumbnails(by_report) == without_thumbnails(by_detect)
    done = rows["a.png"]
    assert done["s"] == "done" and done["m"] == "classical" and done["g"] == "high_res"
    assert done["o"].endswith("% damaged") and done["k"] == ["in_masks/a_mask.png"]
    assert done["l"] == ["in/a.png", "in_masks/a_overlay.jpg"] and len(done["th"]) == 3
    assert rows["clean.png"]["s"] == "no damage found" and rows["broken.png"]["s"] == "failed"


def test_report_renders_a_comparison_report_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    hole = np.zeros((48, 64), np.uint8)
    hole[10:20, 10:30] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    report = tmp_path / "compare.json"
    args = ["compare", str(image), "--mask", str(tmp_path / "mask.png"), "--models", "telea,ns"]
    compared = CliRunner().invoke(app, [*args, "--original", str(image), "--json", str(report)])
    assert compared.exit_code == 0, compared.output
    result = CliRunner().invoke(app, ["report", str(report), "--html", str(tmp_path / "page.html")])
    assert result.exit_code == 0, result.output
    (row,) = page_rows(tmp_path / "page.html")
    assert row["s"] == "done" and row["m"] == "telea, ns" and row["k"] == ["mask.png"]
    assert row["l"] == ["scan.png", "scan_compare.png"] and row["o"].startswith("best: ")
    data = json.loads(report.read_text())
    data["inputs"][0]["masks"] = "mask.png"  # a report edited by hand: one line, no traceback
    report.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["report", str(report), "--html", str(tmp_path / "page.html")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {report}: input 1 of the report: 'masks' is not a list of text (give a --report file)"
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"masks": 3}, "input 1 of the report: 'masks' is not a list of text"),
        ({"warnings": "slow"}, "input 1 of the report: 'warnings' is not a list of text"),
        ({"output": 5}, "input 1 of the report: 'output' is not text"),
        ({"status": ["done"]}, "input 1 of the report: 'status' is not text"),
        (
            {"provenance": {"mask": {"threshold": "high"}}},
            "input 1 of the report: 'provenance.mask' has a setting of the wrong type",
        ),
        ({"not_run": 5}, "the report's 'not_run' is not a list of text"),
    ],
)
def test_a_malformed_report_is_one_line_naming_the_field(tmp_path: Path, change: dict, problem: str) -> None:
    """#27: malformed fields in a report given to `inpaint report` gave tracebacks."""
    report = make_batch(tmp_path)
    data = json.loads(report.read_text())
    if "not_run" in change:
        data.update(change)
    else:
        data["inputs"][0].update(change)
    report.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["report", str(report), "--html", str(tmp_path / "page.html")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == f"error: {report}: {problem} (give a --report file)"
    assert not (tmp_path / "page.html").exists()


def rows_by_name(page: Path) -> dict[str, dict]:
    return {Path(row["n"]).name: row for row in page_rows(page)}


# --- the thumbnails through the one engine (batch/kinds/thumbnails.py) ------------------------------


def test_a_thumbnail_that_cannot_be_written_fails_its_row_alone(tmp_path: Path) -> None:
    report = make_batch(tmp_path)
    # The row of flat.png: its result thumbnail's name is taken by a folder, so writing it fails.
    first = build(tmp_path, report)
    flat = rows_by_name(first.page)["flat.png"]
    blocked = first.page.parent / flat["th"][2]
    blocked.unlink()
    for path in (first.page.parent / "page_files").glob("*.jpg"):
        path.unlink()  # nothing reusable: every row is drawn again
    blocked.mkdir()
    summary = build(tmp_path, report)
    rows = rows_by_name(summary.page)
    assert rows["flat.png"]["th"] == [None, None, None]
    (finding,) = [text for text in rows["flat.png"]["q"] if text.startswith(review_pixels.NO_THUMBNAIL)]
    assert str(blocked) in finding
    others = [row for name, row in rows.items() if name not in ("flat.png", "broken.png")]
    assert len(others) == 4 and all(row["th"][0] and row["th"][1] for row in others)
    assert summary.counts == {"done": 4, "failed": 1, "skipped": 1}


def test_ctrl_c_while_thumbnails_are_drawn_writes_no_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = make_batch(tmp_path)
    drawn = review_pixels.make_thumbnails
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return drawn(*args, **kwargs)

    monkeypatch.setattr(review_pixels, "make_thumbnails", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, report, workers=1)
    assert not (tmp_path / "review" / "page.html").exists()
    folder = tmp_path / "review" / "page_files"
    assert not [path for path in folder.iterdir() if ".part" in path.name]
    assert len(calls) == 3  # nothing started after Ctrl-C
