"""The mask editor's page in a real browser: Debian's Chromium, headless, driven by Playwright.

Every test paints with the mouse as a person would and then reads the mask file the server saved:
it must hold exactly the pixels painted (a brush of size d covers the pixels whose centres lie within
d/2 of the pointer's pixel; a stroke covers the straight lines between pointer positions), at 1:1 and
at 1:4. The photo pixel under the pointer is read from the page's own status line.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_editor import PHOTO_SIZE, EditorServer, make_batch, saved_hole
from test_review_browser import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium binary (apt-get install chromium; .ci/run installs it)"
    ),
]

BRUSH = 9
"""The page's brush size when it opens."""
VIEWPORT = {"width": 1200, "height": 800}
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


class _Probe:
    """Screen points and photo pixels of a page at 1:1, from the page's status line."""

    def __init__(self, page) -> None:
        self.page = page

    def pixel_at(self, x: float, y: float) -> tuple[int, int]:
        self.page.mouse.move(x, y)
        found = re.fullmatch(r"x (-?\d+), y (-?\d+)", self.page.text_content("#where"))
        return int(found[1]), int(found[2])

    def screen_of(self, pixel: tuple[int, int]) -> tuple[int, int]:
        """The screen point over a photo pixel, found by probing near the canvas's centre (over the
        photo after any zoom from the list); exact at 1:1 and beyond."""
        box = self.page.locator("#canvas").bounding_box()
        cx, cy = round(box["x"] + box["width"] / 2), round(box["y"] + box["height"] / 2)
        x0, y0 = self.pixel_at(cx, cy)
        x1, y1 = self.pixel_at(cx + 16, cy + 16)
        sx, sy = (x1 - x0) / 16, (y1 - y0) / 16
        return round(cx + (pixel[0] - x0) / sx), round(cy + (pixel[1] - y0) / sy)

    def colour(self, point: tuple[int, int]) -> list[int]:
        """The colour shown at a screen point (from a screenshot: what a person sees)."""
        self.page.mouse.move(5, 5)  # the brush outline would be drawn over the pixel
        self.page.wait_for_timeout(100)
        shot = self.page.screenshot(clip={"x": point[0], "y": point[1], "width": 1, "height": 1})
        return list(Image.open(io.BytesIO(shot)).convert("RGB").getpixel((0, 0)))


class Editing(_Probe):
    """A page of the editor on a batch of three photos whose detector marked a bar in each."""

    def __init__(self, browser, root: Path) -> None:
        self.photos, self.masks = make_batch(root)
        self.server = EditorServer(self.photos, self.masks)
        super().__init__(browser.new_page(viewport=VIEWPORT))
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(m.text))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(self.server.url)
        self.ready("p0.png")

    def ready(self, name: str) -> None:
        self.page.wait_for_selector(f'#canvas[data-ready="1"][data-photo="{name}"]', state="attached")

    def saved(self) -> None:
        self.page.wait_for_selector('#save-state[data-state="saved"]', state="attached")

    def zoom(self, value: str) -> None:
        self.page.select_option("#zoom", value)

    def stroke(self, points: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Drag through screen points; the photo pixels of the pointer positions."""
        pixels = [self.pixel_at(*points[0])]
        self.page.mouse.down()
        for x, y in points[1:]:
            pixels.append(self.pixel_at(x, y))
        self.page.mouse.up()
        return pixels

    def mask(self, name: str = "p0") -> np.ndarray:
        return saved_hole(self.masks / f"{name}_mask.png")

    def close(self) -> None:
        self.page.close()
        self.server.stop()


@pytest.fixture
def editing(browser, tmp_path: Path) -> Iterator[Editing]:
    opened = Editing(browser, tmp_path)
    yield opened
    opened.close()
    assert opened.problems == []
    assert all(url.startswith(f"http://127.0.0.1:{opened.server.port}/") for url in opened.requests)


def detected() -> np.ndarray:
    hole = np.zeros(PHOTO_SIZE, dtype=bool)
    hole[100:110, 50:350] = True
    return hole


def disc(hole: np.ndarray, x: int, y: int, size: int, value: bool = True) -> None:
    radius = size / 2
    reach = int(radius)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if (
                dx * dx + dy * dy <= radius * radius
                and 0 <= y + dy < hole.shape[0]
                and 0 <= x + dx < hole.shape[1]
            ):
                hole[y + dy, x + dx] = value


def bresenham(start: tuple[int, int], end: tuple[int, int]) -> list[tuple[int, int]]:
    (x, y), (x1, y1) = start, end
    dx, dy = abs(x1 - x), -abs(y1 - y)
    sx, sy = (1 if x < x1 else -1), (1 if y < y1 else -1)
    error, points = dx + dy, []
    while True:
        points.append((x, y))
        if (x, y) == (x1, y1):
            return points
        twice = 2 * error
        if twice >= dy:
            error, x = error + dy, x + sx
        if twice <= dx:
            error, y = error + dx, y + sy


def painted(
    hole: np.ndarray, pixels: list[tuple[int, int]], size: int = BRUSH, value: bool = True
) -> np.ndarray:
    """`hole` with a stroke through these pointer positions painted (or erased, value False)."""
    hole = hole.copy()
    for start, end in zip(pixels, pixels[1:] or pixels, strict=False):
        for x, y in bresenham(start, end):
            disc(hole, x, y, size, value)
    return hole


def test_a_stroke_at_1_to_1_saves_exactly_its_pixels(editing: Editing) -> None:
    editing.zoom("1")
    pixels = editing.stroke([(700 + step, 300) for step in range(0, 41, 2)])
    assert pixels[-1][0] - pixels[0][0] == 40 and pixels[0][1] == pixels[-1][1]
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), painted(detected(), pixels))
    assert editing.page.text_content("#photos li:first-child .badge") == "edited"


def test_a_stroke_at_1_to_4_saves_exactly_its_pixels(editing: Editing) -> None:
    editing.zoom("0.25")
    assert editing.page.text_content("#zoom-shown") == "1:4"
    pixels = editing.stroke([(720 + step, 400) for step in range(0, 11)])
    # One screen pixel is four photo pixels.
    assert [x - pixels[0][0] for x, _ in pixels] == list(range(0, 41, 4))
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), painted(detected(), pixels))


def test_the_eraser_removes_what_the_detector_marked(editing: Editing) -> None:
    editing.zoom("1")
    editing.page.keyboard.press("e")
    start = editing.pixel_at(700, 300)
    bar_top = 300 + (100 - start[1])  # screen row of the detector's bar
    pixels = editing.stroke([(700, bar_top - 10 + step) for step in range(0, 31, 3)])
    editing.saved()
    expected = painted(detected(), pixels, value=False)
    assert expected.sum() < detected().sum()
    np.testing.assert_array_equal(editing.mask(), expected)


def test_undo_and_redo(editing: Editing) -> None:
    editing.zoom("1")
    first = editing.stroke([(650 + step, 250) for step in range(0, 31, 3)])
    second = editing.stroke([(660, 320 + step) for step in range(0, 31, 3)])
    both = painted(painted(detected(), first), second)
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), both)
    editing.page.keyboard.press("Control+z")
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), painted(detected(), first))
    editing.page.keyboard.press("Control+z")
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), detected())
    editing.page.keyboard.press("Control+Shift+z")
    editing.page.keyboard.press("Control+Shift+Z")
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), both)


def test_undo_survives_a_visit_to_another_photo_unless_the_mask_changed_on_disk(editing: Editing) -> None:
    editing.zoom("1")
    first = editing.stroke([(650 + step, 250) for step in range(0, 31, 3)])
    editing.page.keyboard.press("n")
    editing.ready("p1.png")
    editing.page.keyboard.press("p")
    editing.ready("p0.png")
    editing.page.keyboard.press("Control+z")  # the stroke made before p1 was opened
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), detected())
    editing.page.keyboard.press("Control+Shift+z")
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), painted(detected(), first))
    # Another program rewrites p0's mask while p1 is open: p0's history is of another mask, dropped.
    editing.page.keyboard.press("n")
    editing.ready("p1.png")
    elsewhere = np.zeros(PHOTO_SIZE, dtype=bool)
    elsewhere[10:20, 10:20] = True
    Image.fromarray(elsewhere.astype(np.uint8) * 255).save(editing.masks / "p0_mask.png")
    editing.page.keyboard.press("p")
    editing.ready("p0.png")
    editing.page.keyboard.press("Control+z")
    editing.page.wait_for_timeout(1500)  # longer than the save delay
    np.testing.assert_array_equal(editing.mask(), elsewhere)


def test_shift_click_draws_a_straight_line(editing: Editing) -> None:
    editing.zoom("1")
    start = editing.stroke([editing.screen_of((60, 150))])
    editing.page.keyboard.down("Shift")
    end = editing.stroke([editing.screen_of((137, 201))])
    editing.page.keyboard.up("Shift")
    assert (start[0], end[0]) == ((60, 150), (137, 201))
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), painted(detected(), [start[0], end[0]]))


def test_fill_closes_an_outline_and_clears_a_marked_area(editing: Editing) -> None:
    editing.zoom("1")
    editing.page.keyboard.press("[")
    editing.page.keyboard.press("[")
    assert editing.page.text_content("#size") == "6"
    corners = [(100, 150), (180, 150), (180, 210), (100, 210), (100, 150)]
    outline = editing.stroke([editing.screen_of(corners[0])])
    editing.page.keyboard.down("Shift")
    for corner in corners[1:]:
        outline += editing.stroke([editing.screen_of(corner)])
    editing.page.keyboard.up("Shift")
    assert outline == corners
    expected = painted(detected(), outline, size=6).astype(np.uint8)
    editing.page.keyboard.press("f")
    editing.stroke([editing.screen_of((140, 180))])
    cv2.floodFill(expected, None, (140, 180), 1, flags=4)
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), expected.astype(bool))
    assert expected[150:211, 100:181].all()
    # A click with the fill on a marked area (a false detection) clears all of it.
    editing.stroke([editing.screen_of((200, 105))])
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), expected.astype(bool) & ~detected())


def test_the_next_photo_saves_the_previous_and_a_reload_keeps_everything(editing: Editing) -> None:
    editing.zoom("1")
    first = editing.stroke([(700 + step, 300) for step in range(0, 21, 2)])
    editing.page.keyboard.press("n")  # at once: no waiting for the save's delay
    editing.ready("p1.png")
    np.testing.assert_array_equal(editing.mask("p0"), painted(detected(), first))
    editing.zoom("1")
    second = editing.stroke([editing.screen_of((60, 150 + step)) for step in range(0, 21, 2)])
    editing.saved()
    editing.page.reload()
    editing.ready("p1.png")  # the same photo again
    badges = editing.page.locator("#photos .badge").all_text_contents()
    assert badges == ["edited", "edited", "unedited"]
    editing.zoom("1")
    editing.page.fill("#opacity", "100")
    colour = editing.colour(editing.screen_of(second[0]))
    assert colour[:3] == [255, 40, 40]  # the saved stroke is shown over the photo
    assert editing.colour(editing.screen_of((300, 250)))[:3] != [255, 40, 40]
    third = editing.stroke([editing.screen_of((250 + step, 220)) for step in range(0, 21, 2)])
    editing.saved()
    np.testing.assert_array_equal(editing.mask("p1"), painted(painted(detected(), second), third))
    editing.page.keyboard.press("p")
    editing.ready("p0.png")
    np.testing.assert_array_equal(editing.mask("p0"), painted(detected(), first))


def test_no_damage_here_and_clear(editing: Editing) -> None:
    editing.page.click("#no-damage")
    editing.saved()
    assert not editing.mask().any()
    assert editing.page.text_content("#photos li:first-child .badge") == "no damage"
    editing.page.keyboard.press("Control+z")
    editing.saved()
    np.testing.assert_array_equal(editing.mask(), detected())
    assert editing.page.text_content("#photos li:first-child .badge") == "edited"
    editing.page.click("#clear")
    editing.saved()
    assert not editing.mask().any()
    assert editing.page.text_content("#photos li:first-child .badge") == "edited"


def test_screenshot_for_the_docs(browser, tmp_path: Path) -> None:
    """The picture of docs/editing-masks.md: the example print with a corrected mask. Written to
    docs/ only when INPAINT_DOCS_PICTURES is set (the docs are remade on purpose, not by every run)."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    photos, masks = tmp_path / "scans", tmp_path / "scans_masks"
    photos.mkdir()
    masks.mkdir()
    shutil.copy(examples / "portrait_damaged.png", photos / "portrait.png")
    shutil.copy(examples / "portrait_mask.png", masks / "portrait_mask.png")
    for index in range(1, 4):
        shutil.copy(examples / "portrait_original.png", photos / f"scan_{index:02d}.png")
    server = EditorServer(photos, masks)
    page = browser.new_page(viewport={"width": 1280, "height": 760})
    try:
        page.goto(server.url)
        page.wait_for_selector('#canvas[data-ready="1"]', state="attached")
        page.fill("#opacity", "70")
        page.mouse.move(760, 380)
        page.wait_for_timeout(200)
        picture = tmp_path / "editing_masks.png"
        page.screenshot(path=str(picture))
    finally:
        page.close()
        server.stop()
    assert picture.stat().st_size > 50_000  # a photo, not a blank page
    if os.environ.get("INPAINT_DOCS_PICTURES"):
        shutil.copy(picture, DOCS / "editing_masks.png")


def test_a_large_scan_shows_coarse_first_and_paints_exactly_on_full_resolution_tiles(
    browser, tmp_path
) -> None:
    """4200x2800: a first view of 1050x700, then photo tiles and mask tiles at 1:1."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    size = (2800, 4200)
    ramp = np.linspace(40, 220, size[1], dtype=np.float32)[None, :].repeat(size[0], axis=0)
    Image.fromarray(
        np.stack([ramp, ramp[::-1], np.full(size, 90, np.float32)], axis=2).astype(np.uint8)
    ).save(photos / "large.jpg", quality=90)
    bar = np.zeros(size, dtype=bool)
    bar[1400:1440, 500:3700] = True
    Image.fromarray(bar.astype(np.uint8) * 255).save(masks / "large_mask.png")
    server = EditorServer(photos, masks)
    page = browser.new_page(viewport=VIEWPORT)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(server.url)
        page.wait_for_selector('#canvas[data-ready="1"][data-photo="large.jpg"]', state="attached")
        page.fill("#opacity", "100")
        probe = _Probe(page)
        assert not any("/api/tile" in url for url in requests)  # the first view alone
        assert probe.colour(probe.screen_of((2100, 1420)))[:3] == [255, 40, 40]  # the coarse overlay
        page.select_option("#zoom", "1")
        centre = probe.pixel_at(700, 560)  # below the detector's bar
        page.wait_for_timeout(500)
        assert any("/api/tile?name=large.jpg&level=0" in url for url in requests)
        pixels = [probe.pixel_at(700 + step, 560) for step in range(0, 31, 3)]
        page.mouse.move(700, 560)
        page.mouse.down()
        for step in range(3, 31, 3):
            page.mouse.move(700 + step, 560)
        page.mouse.up()
        page.wait_for_selector('#save-state[data-state="saved"]', state="attached")
        np.testing.assert_array_equal(saved_hole(masks / "large_mask.png"), painted(bar, pixels))
        inside, outside = probe.screen_of(centre), probe.screen_of((centre[0], centre[1] + BRUSH // 2 + 1))
        assert probe.colour(inside)[:3] == [255, 40, 40]  # the full-resolution overlay, pixel-exact
        assert probe.colour(outside)[:3] != [255, 40, 40]
        assert not bar[centre[1] + BRUSH // 2 + 1, centre[0]]
    finally:
        page.close()
        server.stop()


def test_space_drag_pans_and_the_wheel_zooms_around_the_pointer(editing: Editing) -> None:
    editing.zoom("1")
    before = editing.pixel_at(700, 400)
    editing.page.keyboard.down(" ")
    editing.page.mouse.down()
    editing.page.mouse.move(660, 370, steps=4)
    editing.page.mouse.up()
    editing.page.keyboard.up(" ")
    assert editing.pixel_at(660, 370) == before  # the photo moved with the pointer
    assert editing.page.text_content("#save-state") == "saved"  # panning painted nothing
    editing.page.mouse.move(660, 370)
    editing.page.mouse.wheel(0, -400)  # twice as close, around the pointer
    editing.page.wait_for_timeout(200)
    assert editing.page.text_content("#zoom-shown") == "2:1"
    assert editing.pixel_at(660, 370) == before
    assert editing.pixel_at(680, 370) == (before[0] + 10, before[1])


def test_the_fill_preview_shows_the_models_fill_until_the_next_change(browser, tmp_path: Path) -> None:
    photos, masks = make_batch(tmp_path, 1)
    server = EditorServer(photos, masks, "--model", "telea")
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(server.url)
        page.wait_for_selector('#canvas[data-ready="1"]', state="attached")
        page.fill("#opacity", "100")
        page.select_option("#zoom", "1")
        probe = _Probe(page)
        on_bar = probe.screen_of((200, 105))
        assert probe.colour(on_bar) == [255, 40, 40]
        page.keyboard.press("v")
        page.wait_for_selector('#canvas[data-preview="1"]', state="attached", timeout=60000)
        assert probe.colour(on_bar) != [255, 40, 40]  # the fill, where the mask was shown
        assert page.text_content("#message") == "the fill, previewed (V or any change hides it)"
        page.mouse.move(*probe.screen_of((50, 50)))
        page.mouse.down()
        page.mouse.up()
        assert page.get_attribute("#canvas", "data-preview") == "0"
        assert probe.colour(on_bar) == [255, 40, 40]
    finally:
        page.close()
        server.stop()
