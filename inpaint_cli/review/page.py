"""The review page: one static HTML file that shows what a batch did, image by image.

`build_page` takes generic `ReviewRow`s (from a batch report with `rows_from_report`, or from any
command that has per-image results, such as detection) and writes:

- `<page>.html`: the page. Jinja2 renders it with autoescaping; the rows travel as JSON inside a
  `<script type="application/json">` element (Jinja's `tojson` escapes `<`, `>`, `&` and `'`), and
  the page's own script shows one page of rows at a time, filling every text with `textContent`,
  so a file named `<script>alert(1)</script>.png` is shown, never run. CSS and JS are inlined from
  `inpaint_cli/templates/`: the page needs nothing from the network.
- `<page stem>_files/`: thumbnails (input, mask overlay, result; `review_pixels`), each written
  atomically and loaded lazily, and `rows.json`, the rows of the last build with what was learned
  from the pixels, so a rebuild reuses thumbnails of unchanged files and a resumed batch keeps the
  rows of the images an earlier run did.

Rows are sorted so that failures come first, then suspicious results, then the rest by name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import statistics
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from inpaint_cli.batch.run_options import MAX_DILATE
from inpaint_cli.errors import InputError, OutputError
from inpaint_cli.files.atomic import atomic_path
from inpaint_cli.files.jsonfile import Kind, Shape, Whole, json_text, read_json, shape_problem, usable_path
from inpaint_cli.files.targets import Access, check_targets
from inpaint_cli.options import DEFAULT_MAX_PIXELS, DEFAULT_PAGE_TITLE
from inpaint_cli.review import thumbnails as review_pixels

THUMBNAIL_SIDE = 256
"""Longest side of a thumbnail: sharp enough to judge a fill, ~10 KB as JPEG."""
PAGE_SIZE = 50
"""Rows shown at once; the others wait in the page's JSON."""
FILES_SUFFIX = "_files"
CACHE_NAME = "rows.json"
CACHE_VERSION = 1
SLOW_FACTOR = 5.0
"""An image that took this many times the median time (and over a second) is suspicious."""
THUMBNAIL_NAME = re.compile(r"(?P<key>[0-9a-f]{20})_(input|mask|result)\.jpg")
FAILED = "failed"
NO_DAMAGE = "no damage found"
EDITED_NOTE = "mask edited by hand"
STATUS_ORDER = {FAILED: 0}
"""Rank of a status in the page's order (lower first); suspicious rows come next, then the rest."""


@dataclass
class ReviewRow:
    """One image on the review page. `status` is free text (`done`, `failed`, `no damage`, ...)."""

    name: str
    status: str
    image: Path | None = None
    masks: tuple[Path, ...] = ()
    output: Path | None = None
    model: str = ""
    strategy: str = ""
    seconds: float | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    suspicious: list[str] = field(default_factory=list)
    """Why this result deserves a look; the builder adds its own findings from the pixels."""
    note: str = ""
    mask_options: dict[str, Any] = field(default_factory=dict)
    """How the run read the masks (`threshold`, `invert`, `dilate`), for the overlay; default if empty."""
    judge_fill: bool = True
    """Look for flat or unchanged fills in `output`; False when `output` is not a fill (a detection's
    overlay), so only the size of the hole is judged."""


@dataclass
class PageSummary:
    page: Path
    rows: int
    counts: dict[str, int]
    suspicious: int
    thumbnails_written: int
    thumbnails_reused: int
    seconds: float
    page_bytes: int


# --- rows from a batch report ------------------------------------------------------------------------


MASK_RANGES = {"threshold": (0, 255), "dilate": (0, MAX_DILATE)}
"""`provenance.mask` settings the overlays reuse, in `masks.read_mask`'s ranges."""
MASK_SHAPE: Shape = {
    "threshold": (Whole(*MASK_RANGES["threshold"]), None),
    "invert": (bool, None),
    "dilate": (Whole(*MASK_RANGES["dilate"]), None),
}
CACHED_ROW_SHAPE: Shape = {
    "name": str,
    "status": str,
    "image": (Kind.PATH, None),
    "masks": [Kind.PATH],
    "output": (Kind.PATH, None),
    "model": str,
    "strategy": str,
    "seconds": (Kind.NUMBER, None),
    "error": (str, None),
    "warnings": [str],
    "suspicious": [str],
    "note": str,
    "mask_options": MASK_SHAPE,
    "judge_fill": bool,
}
"""A `ReviewRow` as `rows.json` keeps it; a row of another shape is not reused."""
CACHED_THUMBS_SHAPE: Shape = {
    "thumbs": {kind: (str, None) for kind in ("input", "mask", "result")},
    "findings": [str],
}
"""What `rows.json` keeps of one row's thumbnails: their links and what the pixels showed."""


def load_report(path: Path) -> dict:
    """A batch report (`--report` of `run`, `detect`, `compare`), read as untrusted data
    (`jsonfile.read_json`); its fields are checked as `rows_from_report` reads them."""
    path = Path(path)
    report = read_json(path)
    if not isinstance(report, dict) or not isinstance(report.get("inputs"), list):
        raise InputError("not a batch report (no 'inputs' list)", path=path, hint="give a --report file")
    return report


def _resolve(text: str | None, bases: Sequence[Path]) -> Path | None:
    """A report path: absolute as is; relative to the first base where it exists (else the first).
    A name no file can have (a NUL, a lone surrogate that stands for no byte) is a ValueError."""
    if not text:
        return None
    if not usable_path(text):
        raise ValueError(f"{json.dumps(text)} is not a usable file name")
    path = Path(text)
    if path.is_absolute() or not bases:
        return path
    for base in bases:
        if (base / path).exists():
            return base / path
    return bases[0] / path


def report_kind(report: dict) -> str:
    """The job kind of a report: its `kind`; a report from before `kind` (version 1) is a run's, or a
    detection's when it names its detector."""
    kind = report.get("kind")
    if isinstance(kind, str):
        return kind
    return "detect" if "detector" in report else "inpaint"


def rows_from_report(report: dict, *, bases: Sequence[Path] = (), model: str = "") -> list[ReviewRow]:
    """The rows of a report of any kind (`outcomes.report_of`): one per input, plus the inputs that
    never ran. The one reader of reports, for `inpaint report` and for the page a batch writes.

    `inpaint`: the input, its mask(s) and the filled output. `detect`: the input, the detected mask
    (shown as an overlay) and, as the result, the overlay picture; status `no damage found` when
    nothing survived the detector. `compare`: the input, its mask(s) and the comparison grid. Relative
    paths are looked up under `bases` in order (the working folder, the report's folder); a field of
    the wrong type is an InputError naming the entry.
    """
    bases = [Path(base) for base in bases]
    kind = report_kind(report)
    inputs = report.get("inputs")
    if not isinstance(inputs, list):
        raise InputError("the report has no 'inputs' list")
    rows = []
    for number, record in enumerate(inputs, 1):
        if not isinstance(record, dict) or not record.get("image"):
            continue
        try:
            rows.append(_row(kind, record, report, bases, model))
        except (TypeError, ValueError) as exc:
            raise InputError(f"input {number} of the report: {exc}") from None
    try:
        not_run = [(image, _resolve(image, bases)) for image in _texts(report.get("not_run"), "not_run")]
    except (TypeError, ValueError) as exc:
        raise InputError(f"the report's {exc}") from None
    rows += [ReviewRow(name=image, status="not run", image=path) for image, path in not_run]
    _shorten_names(rows)
    return rows


def _row(kind: str, record: dict, report: dict, bases: list[Path], model: str) -> ReviewRow:
    """One input of a report as a row; raises TypeError naming a field of the wrong type."""
    status = _text(record.get("status") or "unknown", "status")
    if status == "done" and record.get("no_damage") is True:  # a detection, or run --mask auto's
        status = NO_DAMAGE
    seconds = record.get("seconds")
    row = ReviewRow(
        name=_text(record["image"], "image"),
        status=status,
        image=_resolve(_text(record["image"], "image"), bases),
        masks=tuple(path for text in _texts(record.get("masks"), "masks") if (path := _resolve(text, bases))),
        output=_resolve(_text(record.get("output"), "output"), bases),
        model=_model_of(record, report, model),
        strategy=_text(record.get("strategy") or "", "strategy"),
        seconds=seconds if isinstance(seconds, int | float) and not isinstance(seconds, bool) else None,
        error=_text(record.get("error"), "error") or None,
        warnings=_texts(record.get("warnings"), "warnings"),
    )
    if kind == "detect":
        return _detection_row(row, record, report, bases)
    if kind == "compare":
        row.judge_fill = False  # the output is a grid of fills, not one
        row.note = _text(record.get("best") or "", "best")
        return row
    row.mask_options = _mask_options(record)
    row.note = _edit_note(row.masks)
    return row


def _edit_note(masks: Sequence[Path]) -> str:
    """`mask edited by hand` where `inpaint edit` saved one of the masks and it is unchanged since."""
    from inpaint_cli.review.editor.records import hand_edit

    return EDITED_NOTE if any(hand_edit(path) for path in masks) else ""


def _detection_row(row: ReviewRow, record: dict, report: dict, bases: list[Path]) -> ReviewRow:
    """A detection's row: its mask is the output it wrote (`mask` in version-1 reports), the result
    shown is its overlay."""
    mask = _resolve(_text(record.get("output") or record.get("mask"), "output"), bases)
    failed = row.status == FAILED
    row.masks = (mask,) if mask is not None and not failed else ()
    row.output = None if failed else _resolve(_text(record.get("overlay"), "overlay"), bases)
    fraction = record.get("damage_fraction")
    if isinstance(fraction, int | float) and not isinstance(fraction, bool) and fraction:
        row.note = f"{fraction:.2%} damaged"
    row.strategy = row.strategy or _text(report.get("mode") or "", "mode")
    row.judge_fill = False
    return row


def _text(value: object, field_name: str = "path") -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"'{field_name}' is not text")


def _texts(value: object, field_name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"'{field_name}' is not a list of text")
    return list(value)


def _model_of(record: dict, report: dict, default: str) -> str:
    sources = (record, record.get("provenance"), report, report.get("summary"))
    for source, key in [(source, "model") for source in sources] + [(report, "detector")]:
        if isinstance(source, dict) and isinstance(source.get(key), str):
            return source[key]
    models = report.get("models")
    if isinstance(models, list) and all(isinstance(name, str) for name in models):
        return ", ".join(models)
    return default


def _mask_options(record: dict) -> dict[str, Any]:
    recorded = record.get("provenance")
    recorded = recorded.get("mask") if isinstance(recorded, dict) else None
    if not isinstance(recorded, dict):
        return {}
    options = {key: recorded[key] for key in review_pixels.MASK_OPTIONS if key in recorded}
    kinds = {"threshold": int, "invert": bool, "dilate": int}
    if not all(isinstance(value, kinds[key]) for key, value in options.items()):
        raise TypeError("'provenance.mask' has a setting of the wrong type")
    for key, (low, high) in MASK_RANGES.items():
        if key in options and not low <= options[key] <= high:
            raise ValueError(f"'provenance.mask.{key}' is {options[key]}, outside {low}..{high}")
    return options


def _shorten_names(rows: list[ReviewRow]) -> None:
    """Name images by their path under the folder all of them share (the batch's input folder)."""
    images = [os.path.abspath(row.image) for row in rows if row.image is not None]
    if not images or len(images) != len(rows):
        return
    common = os.path.commonpath([os.path.dirname(image) for image in images])
    for row, image in zip(rows, images, strict=True):
        row.name = os.path.relpath(image, common)


def page_writes(page: Path) -> list[Access]:
    """What a page writes: the page and its thumbnails folder, for `targets.check_targets` (a run
    plans them with its other writes, so a page never overwrites an input, a mask or an output)."""
    page = Path(page)
    thumbnails = files_folder(page)
    return [
        Access(page, "the review page", option="--html"),
        Access(thumbnails, "the review page's thumbnails folder", folder=True, option="--html"),
    ]


def check_page(page: Path, *, overwrite: bool = False) -> None:
    """Refuse (OutputError), before anything runs, a page that would replace files this tool did not
    make: an existing `page` or a non-empty thumbnails folder without the `rows.json` a build leaves
    (a page of ours is rebuilt; anything else needs `overwrite`). Even then, a build removes only
    the thumbnails its own `rows.json` lists."""
    page = Path(page)
    folder = files_folder(page)
    if overwrite or _is_ours(folder):
        return
    hint = "give another --html, or --overwrite to replace it"
    if page.exists():
        raise OutputError("exists and is not a review page made by inpaint", path=page, hint=hint)
    try:
        occupied = folder.is_dir() and any(folder.iterdir())
    except OSError as exc:
        raise OutputError(f"cannot list the folder ({exc.strerror or exc})", path=folder) from None
    if occupied or (folder.exists() and not folder.is_dir()):
        raise OutputError("exists and was not made by inpaint", path=folder, hint=hint)


def _is_ours(folder: Path) -> bool:
    """Whether `folder` holds the `rows.json` of a page this tool built."""
    return _read_cache(folder) is not None


def rebuild_page(
    report_file: Path,
    page: Path,
    *,
    title: str = DEFAULT_PAGE_TITLE,
    model: str = "",
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PageSummary:
    """`inpaint report`: the review page of a report, without running anything again. Its reads (the
    report, every image, mask and output it names) and writes (the page, its thumbnails folder) go
    through the one target check first, so a page never replaces a file it shows."""
    report_file, page = Path(report_file), Path(page)
    data = load_report(report_file)
    try:
        rows = rows_from_report(data, bases=[Path.cwd(), report_file.parent], model=model)
    except InputError as exc:
        raise InputError(exc.what, path=report_file, hint="give a --report file") from None
    reads = [Access(report_file, "the report"), *row_reads(rows)]
    check_targets(reads, page_writes(page))
    check_page(page, overwrite=overwrite)
    return build_page(rows, page, title=title, max_pixels=max_pixels)


def row_reads(rows: Iterable[ReviewRow]) -> Iterator[Access]:
    """The files the rows show (images, masks, outputs), as reads for `targets.check_targets`."""
    for row in rows:
        if row.image is not None:
            yield Access(row.image, f"the image {row.name}")
        for mask in row.masks:
            yield Access(mask, f"a mask of {row.name}")
        if row.output is not None:
            yield Access(row.output, f"the output of {row.name}")


def files_folder(page: Path) -> Path:
    """The folder of a page's thumbnails (`<page stem>_files/` beside it): never walked for inputs."""
    page = Path(page)
    return page.with_name(page.stem + FILES_SUFFIX)


# --- thumbnails cache keys ----------------------------------------------------------------------------


def _file_key(path: Path | None) -> str | None:
    """Identity of a file's current content for the thumbnail cache: path, size and mtime."""
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"


def _row_key(row: ReviewRow) -> str:
    parts = [_file_key(row.image), *(_file_key(m) for m in row.masks), _file_key(row.output)]
    parts.append(json.dumps(row.mask_options, sort_keys=True))
    if not row.judge_fill:  # other findings for the same files: other thumbnails' cache entry
        parts.append("no fill")
    return hashlib.sha1("\n".join(str(p) for p in parts).encode("utf-8", "surrogateescape")).hexdigest()[:20]


# --- ordering and the page ----------------------------------------------------------------------------


def _slow_findings(rows: Sequence[ReviewRow]) -> None:
    times = [row.seconds for row in rows if row.seconds and row.status != FAILED]
    if len(times) < 3:
        return
    median = statistics.median(times)
    for row in rows:
        if row.seconds and row.seconds > max(1.0, SLOW_FACTOR * median):
            row.suspicious.append(f"slow: {row.seconds:.1f} s (median {median:.2f} s)")


def _flag(row: ReviewRow) -> None:
    """Findings that need no pixels: warnings and downscaled fills."""
    row.suspicious += [f"warning: {warning}" for warning in row.warnings]
    if "downscaled" in row.strategy:
        row.suspicious.append(f"filled at reduced resolution ({row.strategy})")


def sort_rows(rows: Iterable[ReviewRow]) -> list[ReviewRow]:
    """Failures first, then suspicious results, then the rest; by name within each group."""
    return sorted(rows, key=lambda r: (STATUS_ORDER.get(r.status, 2 if not r.suspicious else 1), r.name))


def _link(path: Path | None, page_folder: str) -> str | None:
    """A URL to `path` relative to the page's (absolute) folder; a file: URL across drives."""
    if path is None:
        return None
    absolute = os.path.abspath(path)  # no symlinks resolved: 10,000 rows cost no file-system calls
    try:
        relative = os.path.relpath(absolute, page_folder)
    except ValueError:
        return Path(absolute).as_uri()
    return urllib.parse.quote(relative.replace(os.sep, "/"), errors="surrogateescape")  # bytes of the name


def _page_record(row: ReviewRow, thumbs: dict, page_folder: str) -> dict:
    """A row as the page's script reads it (short keys keep 10,000 rows small)."""
    record = {
        "n": row.name,
        "s": row.status,
        "m": row.model,
        "g": row.strategy,
        "t": row.seconds,
        "e": row.error,
        "w": row.warnings,
        "q": row.suspicious,
        "o": row.note,
        "th": [thumbs.get("input"), thumbs.get("mask"), thumbs.get("result")],
        "l": [_link(row.image, page_folder), _link(row.output, page_folder)],
        "k": [_link(mask, page_folder) for mask in row.masks],
    }
    return {key: value for key, value in record.items() if value not in (None, "", [])}


def _read_cache(folder: Path) -> dict | None:
    """The `rows.json` of an earlier build, or None if there is none of ours. Its entries of the
    wrong shape are dropped: the cache only saves work, the page is rebuilt from the report."""
    try:
        cache = read_json(folder / CACHE_NAME)
    except InputError:
        return None
    if not isinstance(cache, dict) or cache.get("version") != CACHE_VERSION:
        return None
    if not isinstance(cache.get("rows"), dict) or not isinstance(cache.get("thumbs"), dict):
        return None
    for part, shape in (("rows", CACHED_ROW_SHAPE), ("thumbs", CACHED_THUMBS_SHAPE)):
        cache[part] = {
            key: value for key, value in cache[part].items() if shape_problem(value, shape) is None
        }
    return cache


def _load_cache(folder: Path) -> dict:
    return _read_cache(folder) or {"rows": {}, "thumbs": {}}


def _row_identity(row: ReviewRow) -> str:
    """Which row of an earlier build a row is: its image and mask(s), and its output when that is a
    fill (a skipped detection has no overlay in its record, but the same mask)."""
    masks = ",".join(map(str, row.masks))
    return f"{row.image}|{masks}|{row.output}" if row.judge_fill else f"{row.image}|{masks}"


def _keep_earlier_runs(rows: list[ReviewRow], cache: dict) -> list[ReviewRow]:
    """A row skipped because its output exists takes the row of the run that made the output."""
    kept = []
    for row in rows:
        earlier = cache["rows"].get(_row_identity(row))
        if row.status == "skipped" and earlier and earlier.get("status") not in (None, "skipped", FAILED):
            earlier = {**earlier, "masks": tuple(Path(m) for m in earlier.get("masks", ()))}
            for name in ("image", "output"):
                earlier[name] = Path(earlier[name]) if earlier.get(name) else None
            known = {item.name for item in fields(ReviewRow)}
            earlier = {key: value for key, value in earlier.items() if key in known}
            row = ReviewRow(**{**earlier, "suspicious": [], "note": "done by an earlier run"})
        kept.append(row)
    return kept


def _row_as_json(row: ReviewRow) -> dict:
    data = {item.name: getattr(row, item.name) for item in fields(ReviewRow)}
    data.update(
        image=str(row.image) if row.image else None,
        output=str(row.output) if row.output else None,
        masks=[str(m) for m in row.masks],
    )
    return data


def build_page(
    rows: Iterable[ReviewRow],
    page: Path,
    *,
    title: str = DEFAULT_PAGE_TITLE,
    thumbnails: bool = True,
    thumbnail_side: int = THUMBNAIL_SIDE,
    page_size: int = PAGE_SIZE,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PageSummary:
    """Write the review page `page` and its thumbnails folder; see the module docstring. Pictures over
    `max_pixels` (`--max-pixels`, as `run` checks them) are not decoded: they get no thumbnail."""
    started = time.perf_counter()
    page = Path(page)
    page.parent.mkdir(parents=True, exist_ok=True)
    folder = files_folder(page)
    folder.mkdir(exist_ok=True)
    cache = _load_cache(folder)
    # Copies: the findings added below stay out of the caller's rows.
    copies = [replace(row, warnings=list(row.warnings), suspicious=list(row.suspicious)) for row in rows]
    rows = _keep_earlier_runs(copies, cache)
    for row in rows:
        _flag(row)
    _slow_findings(rows)
    keys = [_row_key(row) for row in rows]
    known = {key: made for key, made in cache.get("thumbs", {}).items() if _reusable(page.parent, made)}
    todo = [(row, key) for row, key in zip(rows, keys, strict=True) if thumbnails and key not in known]
    fresh = _thumbnails(todo, folder, thumbnail_side, workers or min(4, os.cpu_count() or 1), max_pixels)
    seen: dict = {**known, **fresh}
    for row, key in zip(rows, keys, strict=True):
        row.suspicious += seen.get(key, {}).get("findings", [])
    ordered = sort_rows(rows)
    order = {id(row): key for row, key in zip(rows, keys, strict=True)}
    where = os.path.abspath(page.parent)
    records = [_page_record(r, seen.get(order[id(r)], {}).get("thumbs", {}), where) for r in ordered]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    suspicious = sum(1 for row in rows if row.suspicious and row.status != FAILED)
    html = render_page(records, title=title, counts=counts, suspicious=suspicious, page_size=page_size)
    with atomic_path(page) as tmp:
        tmp.write_text(html, encoding="utf-8")
    _save_cache(folder, rows, {key: seen[key] for key in keys if key in seen})
    _remove_unused_thumbnails(folder, cache, set(keys))
    return PageSummary(
        page=page,
        rows=len(rows),
        counts=counts,
        suspicious=suspicious,
        thumbnails_written=sum(
            sum(v is not None for v in made["thumbs"].values()) for made in fresh.values()
        ),
        thumbnails_reused=len(rows) - len(fresh) if thumbnails else 0,
        seconds=time.perf_counter() - started,
        page_bytes=page.stat().st_size,
    )


def _thumbnails(
    todo: list[tuple[ReviewRow, str]], folder: Path, side: int, workers: int, max_pixels: int
) -> dict[str, dict]:
    """The thumbnails of these rows (with their keys), drawn through the batch engine."""
    from inpaint_cli.batch.kinds.thumbnails import RowPictures, draw_thumbnails

    pictures = {  # one job a key: rows of the same files share their thumbnails
        key: RowPictures(
            key, row.image, row.masks, None if row.status == FAILED else row.output, row.mask_options
        )
        for row, key in todo
    }
    made = draw_thumbnails(pictures.values(), folder, side=side, workers=workers, max_pixels=max_pixels)
    kept = ("hole covers", review_pixels.NO_THUMBNAIL)
    for row, key in todo:
        if not row.judge_fill:  # the result is no fill: keep only the findings about the hole itself
            made[key]["findings"] = [text for text in made[key]["findings"] if text.startswith(kept)]
    return made


def _reusable(page_folder: Path, made: dict) -> bool:
    """Thumbnails of an earlier build that are all there; none that were refused (another
    --max-pixels may allow them now)."""
    refused = any(finding.startswith(review_pixels.NO_THUMBNAIL) for finding in made["findings"])
    return not refused and _thumbs_exist(page_folder, made)


def _thumbs_exist(page_folder: Path, made: object) -> bool:
    thumbs = made.get("thumbs") if isinstance(made, dict) else None
    return isinstance(thumbs, dict) and all(
        name is None or (page_folder / urllib.parse.unquote(name, errors="surrogateescape")).is_file()
        for name in thumbs.values()
    )


def _remove_unused_thumbnails(folder: Path, earlier: dict, keys: set[str]) -> None:
    """Thumbnails of files that changed or left the batch: only those the earlier build's `rows.json`
    lists as its own, and only thumbnail names inside `folder` (a file of the same pattern that another
    program put there, or a name that a crafted `rows.json` points elsewhere, stays)."""
    for key, made in earlier.get("thumbs", {}).items():
        thumbs = made.get("thumbs") if isinstance(made, dict) else None
        if key in keys or not isinstance(thumbs, dict):
            continue
        for link in thumbs.values():
            name = (
                Path(urllib.parse.unquote(link, errors="surrogateescape")) if isinstance(link, str) else None
            )
            if name and name.parent == Path(folder.name) and THUMBNAIL_NAME.fullmatch(name.name):
                (folder / name.name).unlink(missing_ok=True)


def _save_cache(folder: Path, rows: Sequence[ReviewRow], thumbs: dict) -> None:
    # Rows are kept without the findings the builder adds, which are recomputed each time.
    stored = {}
    for row in rows:
        data = _row_as_json(row)
        data["suspicious"] = []
        stored[_row_identity(row)] = data
    cache = {"version": CACHE_VERSION, "rows": stored, "thumbs": thumbs}
    with atomic_path(folder / CACHE_NAME) as tmp:
        tmp.write_text(json_text(cache), encoding="utf-8")


def render_page(
    records: Sequence[dict],
    *,
    title: str,
    counts: dict[str, int],
    suspicious: int,
    page_size: int = PAGE_SIZE,
) -> str:
    """The page's HTML from page records (see `_page_record`); every value is escaped."""
    from importlib.resources import files

    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("inpaint_cli.review", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.policies["json.dumps_function"] = json_text
    environment.policies["json.dumps_kwargs"] = {"separators": (",", ":")}
    assets = files("inpaint_cli.review") / "templates"
    # The page's own assets, inlined: trusted files of this package, not data. The page's
    # Content-Security-Policy lets only these exact texts run, by their hashes.
    style = (assets / "review.css").read_text(encoding="utf-8")
    script = (assets / "review.js").read_text(encoding="utf-8")
    return environment.get_template("review.html.j2").render(
        title=title,
        rows=records,
        total=len(records),
        counts=sorted(counts.items(), key=lambda item: (STATUS_ORDER.get(item[0], 1), item[0])),
        suspicious=suspicious,
        page_size=page_size,
        style=Markup(style),
        script=Markup(script),
        style_hash=_csp_hash(style),
        script_hash=_csp_hash(script),
    )


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
