"""The review page in a real browser: Debian's Chromium, headless, driven by Playwright.

Skipped only when no Chromium binary is installed (`.ci/run` installs the `chromium` package).
Playwright's own browser downloads are never used: the system binary is launched directly.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_review import IMG_NAME, SCRIPT_NAME, make_batch

from inpaint_cli.review import page as review

CHROMIUM = os.environ.get("INPAINT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAGE_SIZE = 2

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium binary (apt-get install chromium; .ci/run installs it)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def opened(browser, tmp_path: Path) -> Iterator[tuple[object, dict, list[str], list[str]]]:
    """The page of a small batch, opened from disk: (page, report summary, problems, requests)."""
    report = make_batch(tmp_path)
    rows = review.rows_from_report(review.load_report(report), model="telea")
    summary = review.build_page(rows, tmp_path / "review" / "page.html", page_size=PAGE_SIZE)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: message.type in ("error", "warning") and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(summary.page.resolve().as_uri())
    page.wait_for_load_state("load")
    yield page, json.loads(report.read_text())["summary"], problems, requests
    page.close()


def shown_names(page) -> list[str]:
    return [Path(name).name for name in page.locator("article.row .name").all_text_contents()]


def test_page_opens_offline_without_errors_and_counts_match_the_report(opened) -> None:
    page, reported, problems, requests = opened
    for status in ("done", "failed", "skipped"):
        count = page.locator(f'.count[data-count="{status}"] b').text_content()
        assert int(count) == reported[status], status
    assert page.locator('.count[data-count="all"]').text_content() == "6 images"
    assert page.locator("article.row").count() == PAGE_SIZE
    assert page.locator("#position").text_content() == "page 1 of 3 (6 shown)"
    assert shown_names(page) == ["broken.png", "flat.png"]
    page.click("#next")
    page.click("#next")
    assert page.locator("#position").text_content() == "page 3 of 3 (6 shown)"
    assert page.locator("#next").is_disabled()
    # Every thumbnail on this page loaded from the folder beside the page.
    page.wait_for_function("Array.from(document.images).every((img) => !img.src || img.complete)")
    loaded = page.eval_on_selector_all("img[src]", "imgs => imgs.map((img) => img.naturalWidth)")
    assert loaded and all(width == 256 for width in loaded)
    assert all(url.startswith("file://") for url in requests), requests
    assert problems == []


def test_toggle_shows_input_mask_or_result(opened) -> None:
    page, _, problems, _ = opened
    row = page.locator("article.row").nth(1)  # flat.png: done, all three pictures
    frame = row.locator(".frame")

    def visible() -> list[str]:
        return frame.evaluate(
            "f => ['input', 'mask', 'result'].filter("
            "(kind) => getComputedStyle(f.querySelector('.' + kind)).visibility === 'visible')"
        )

    assert frame.get_attribute("data-view") == "compare" and visible() == ["input", "result"]
    for view in ("input", "mask", "result"):
        row.locator(f'.views button[data-view="{view}"]').click()
        assert frame.get_attribute("data-view") == view
        assert visible() == [view]
        assert row.locator(f'.views button[data-view="{view}"]').get_attribute("aria-pressed") == "true"
    row.locator(".slider").fill("80")  # the divider: input on the left 80 %, result on the right
    assert frame.get_attribute("data-view") == "compare"
    clip = frame.evaluate("f => getComputedStyle(f.querySelector('.input')).clipPath")
    assert clip == "inset(0px 20% 0px 0px)"
    failed = page.locator("article.row").nth(0)  # no result: shown as input, compare unavailable
    assert failed.locator(".frame").get_attribute("data-view") == "input"
    assert failed.locator('.views button[data-view="compare"]').is_disabled()
    assert problems == []


def test_filter_by_status_and_attention(opened) -> None:
    page, reported, problems, _ = opened
    page.select_option("#filter", "status:failed")
    assert shown_names(page) == ["broken.png"]
    assert page.locator("article.row").evaluate_all("rows => rows.map((r) => r.dataset.status)") == ["failed"]
    assert page.locator("#position").text_content() == f"page 1 of 1 ({reported['failed']} shown)"
    page.select_option("#filter", "suspicious")
    assert shown_names(page) == ["flat.png"]
    page.select_option("#filter", "status:done")
    assert page.locator("#position").text_content() == "page 1 of 2 (4 shown)"
    assert set(page.locator("article.row .status").all_text_contents()) == {"done"}
    page.select_option("#filter", "all")
    assert page.locator("#position").text_content() == "page 1 of 3 (6 shown)"
    assert problems == []


def test_hostile_names_stay_text(opened) -> None:
    page, _, problems, _ = opened
    page.select_option("#filter", "status:done")
    names = []
    for _ in range(2):
        names += page.locator("article.row .name").all_text_contents()
        if not page.locator("#next").is_disabled():
            page.click("#next")
    assert SCRIPT_NAME in names and IMG_NAME in names
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 2
    assert page.evaluate("typeof window.alert") == "function" and problems == []  # no dialog was opened


def test_a_reload_keeps_the_filter_and_the_page(opened) -> None:
    page, _, problems, _ = opened
    page.select_option("#filter", "status:done")
    page.click("#next")
    assert page.evaluate("window.location.hash") == "#filter=status%3Adone&page=2"
    page.reload()
    page.wait_for_load_state("load")
    assert page.locator("#filter").input_value() == "status:done"
    assert page.locator("#position").text_content() == "page 2 of 2 (4 shown)"
    page.goto(page.url.split("#")[0] + "#filter=nonsense&page=99")
    page.reload()
    assert page.locator("#filter").input_value() == "all"
    assert page.locator("#position").text_content() == "page 3 of 3 (6 shown)"  # clamped to the last
    assert problems == []
