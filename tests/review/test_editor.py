"""`inpaint edit`'s server, as a person's browser or an attacker's page would talk to it.

Each test starts the real command (`python -m inpaint_cli edit ... --no-browser`) in a subprocess
and speaks HTTP to it: the guard (token, Host, Origin), names that are not the batch's, uploads that
must be refused with nothing written, saves (the original kept once, the record), SIGKILL in the
middle of a save, Ctrl-C, and a second editor on the same folder. The page itself is driven in a
real browser by `test_editor_browser.py`, which uses `EditorServer` from here.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint_cli.review.editor import records
from inpaint_cli.review.editor.catalogue import plan_catalogue
from inpaint_cli.review.editor.lock import LOCK_NAME
from inpaint_cli.review.editor.store import MaskStore, Refused, decode_upload, upload_limit

PHOTO_SIZE = (300, 403)  # height, width: a row of 1-bit pixels ends in a partial byte
START_SECONDS = 30
INPAINT = [sys.executable, "-m", "inpaint_cli"]


class EditorServer:
    """`inpaint edit PHOTOS --masks MASKS --no-browser` in a subprocess, and requests to it."""

    def __init__(self, photos: Path, masks: Path, *extra: str) -> None:
        command = [*INPAINT, "edit", str(photos), "--masks", str(masks)]
        self.process = subprocess.Popen(
            [*command, "--no-browser", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        if not line.startswith("open "):
            self.process.kill()
            raise AssertionError(f"no address printed: {line!r} {self.process.stderr.read()}")
        self.url = line.split()[1]
        self.port = int(self.url.split(":")[2].split("/")[0])
        self.token = self.url.split("token=")[1]

    def request(
        self, method: str, path: str, body: bytes | None = None, *, token: bool = True, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); `token` adds the X-Inpaint-Token header."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        sent = {key.replace("_", "-"): value for key, value in headers.items()}
        if token:
            sent.setdefault("X-Inpaint-Token", self.token)
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def save(self, name: str, hole: np.ndarray, **headers: str) -> tuple[int, dict]:
        status, _, data = self.request("PUT", f"/api/mask?name={name}", png_of(hole), **headers)
        return status, json.loads(data)

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode, self.process.stderr.read()


def png_of(hole: np.ndarray) -> bytes:
    """A 1-bit PNG of a hole, as the page sends it."""
    buffer = io.BytesIO()
    Image.fromarray(hole).save(buffer, format="PNG")
    return buffer.getvalue()


def saved_hole(path: Path) -> np.ndarray:
    """The hole in a saved mask file, checking it is the tool's mask form: 8-bit grey, 0 or 255."""
    with Image.open(path) as image:
        assert image.mode == "L", image.mode
        pixels = np.asarray(image)
    assert set(np.unique(pixels)) <= {0, 255}
    return pixels == 255


def make_batch(root: Path, count: int = 3, *, detected: bool = True) -> tuple[Path, Path]:
    """`photos/p0.png ...` (random colour, 403x300) and `masks/p0_mask.png ...` (a detector's bar)."""
    photos, masks = root / "photos", root / "masks"
    photos.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(7)
    for index in range(count):
        pixels = rng.integers(0, 255, (*PHOTO_SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"p{index}.png")
        if detected:
            hole = np.zeros(PHOTO_SIZE, dtype=np.uint8)
            hole[100:110, 50:350] = 255
            Image.fromarray(hole).save(masks / f"p{index}_mask.png")
    return photos, masks


def files_in(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.name != LOCK_NAME}


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path]:
    return make_batch(tmp_path)


@pytest.fixture
def server(batch: tuple[Path, Path]) -> Iterator[EditorServer]:
    running = EditorServer(*batch)
    yield running
    running.stop()


def a_hole(seed: int = 0) -> np.ndarray:
    hole = np.zeros(PHOTO_SIZE, dtype=bool)
    hole[20 + seed : 40 + seed, 30:90] = True
    hole[200, :] = True
    return hole


# --- the guard -----------------------------------------------------------------------------------


def test_without_the_token_the_page_an_image_and_a_save_are_refused(server: EditorServer, batch) -> None:
    before = files_in(batch[1])
    for method, path in [("GET", "/"), ("GET", "/api/view?name=p0.png"), ("GET", "/api/mask?name=p0.png")]:
        status, _, body = server.request(method, path, token=False)
        assert (status, body) == (
            401,
            b"error: no access token: open the address `inpaint edit` printed (with ?token=)\n",
        )
    status, _, _ = server.request("PUT", "/api/mask?name=p0.png", png_of(a_hole()), token=False)
    assert status == 401
    for method, path in [("GET", "/api/view?name=p0.png"), ("PUT", "/api/mask?name=p0.png")]:
        status, _, body = server.request(method, path, png_of(a_hole()), X_Inpaint_Token="wrong")
        assert status == 403 and b"wrong access token" in body
    status, _, body = server.request("GET", "/?token=wrong", token=False)
    assert status == 403
    assert files_in(batch[1]) == before


def test_the_printed_address_becomes_an_httponly_same_site_cookie(server: EditorServer) -> None:
    status, headers, _ = server.request("GET", f"/?token={server.token}", token=False)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"inpaint-edit-{server.port}={server.token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    status, headers, page = server.request(
        "GET", "/", token=False, Cookie=f"inpaint-edit-{server.port}={server.token}"
    )
    assert status == 200 and b'<script src="/static/editor.js"></script>' in page
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"


def test_other_hosts_and_origins_are_refused_and_no_cors(server: EditorServer) -> None:
    port = server.port
    refused = [
        {"Host": f"evil.example:{port}"},  # DNS rebinding: another name pointed at 127.0.0.1
        {"Host": f"127.0.0.1:{port + 1}"},
        {"Origin": "http://evil.example"},
        {"Origin": f"http://127.0.0.1:{port + 1}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in refused:
        status, answer, _ = server.request("GET", "/api/photos", **headers)
        assert status == 403, headers
        assert not any(name.startswith("access-control-") for name in answer), headers
    status, answer, _ = server.request("OPTIONS", "/api/mask?name=p0.png", Origin="http://evil.example")
    assert status == 403 and "access-control-allow-origin" not in answer
    status, _, _ = server.request(
        "GET", "/api/photos", Origin=f"http://localhost:{port}", Sec_Fetch_Site="same-origin"
    )
    assert status == 200


def test_only_names_of_the_batch_are_served(server: EditorServer, batch, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(secret)
    before = files_in(batch[1])
    for name in [
        "../secret.png",
        str(secret),
        "p0.png/../p1.png",
        "../masks/p0_mask.png",
        "%2e%2e/secret.png",
    ]:
        for path in (f"/api/view?name={name}", f"/api/mask?name={name}"):
            status, _, body = server.request("GET", path)
            assert status == 404, (name, path)
            assert "is not a photo of this batch" in json.loads(body)["error"]
        status, _, _ = server.request("PUT", f"/api/mask?name={name}", png_of(a_hole()))
        assert status == 404
    status, _, body = server.request("GET", "/static/../editor.py")
    assert status == 404
    assert files_in(batch[1]) == before


def test_symbolic_links_out_of_the_folders_are_listed_but_never_opened(tmp_path: Path) -> None:
    photos, masks = make_batch(tmp_path, 2)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros(PHOTO_SIZE, np.uint8)).save(outside / "elsewhere.png")
    (photos / "linked.png").symlink_to(outside / "elsewhere.png")
    (masks / "p1_mask.png").unlink()
    Image.fromarray(np.zeros(PHOTO_SIZE, np.uint8)).save(outside / "precious.png")
    (masks / "p1_mask.png").symlink_to(outside / "precious.png")
    before = {path.name: path.read_bytes() for path in outside.iterdir()}
    server = EditorServer(photos, masks)
    try:
        status, _, body = server.request("GET", "/api/photos")
        listed = {photo["name"]: photo for photo in json.loads(body)["photos"]}
        assert listed["linked.png"]["status"] == "problem"
        assert (
            "symbolic link" in listed["linked.png"]["problem"]
            and "out of PHOTOS" in listed["linked.png"]["problem"]
        )
        assert "out of MASKS" in listed["p1.png"]["problem"]
        assert listed["p0.png"]["status"] == "unedited"
        for name in ("linked.png", "p1.png"):
            status, _, body = server.request("PUT", f"/api/mask?name={name}", png_of(a_hole()))
            assert status == 409 and "symbolic link" in json.loads(body)["error"]
            status, _, _ = server.request("GET", f"/api/view?name={name}")
            assert status == 409
    finally:
        server.stop()
    assert {path.name: path.read_bytes() for path in outside.iterdir()} == before


# --- uploads -------------------------------------------------------------------------------------


def test_refused_uploads_say_why_and_write_nothing(server: EditorServer, batch) -> None:
    before = files_in(batch[1])
    limit = upload_limit(PHOTO_SIZE)
    wrong_size = png_of(np.ones((10, 10), bool))
    colour = io.BytesIO()
    Image.fromarray(np.zeros((*PHOTO_SIZE, 3), np.uint8)).save(colour, format="PNG")
    truncated = png_of(np.random.default_rng(0).random(PHOTO_SIZE) > 0.5)[:-200]
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros(PHOTO_SIZE, np.uint8)).save(jpeg, format="JPEG")
    cases = [
        (b"\x00" * (limit + 1), 413, f"p0.png: the mask upload is larger than {limit:,} bytes"),
        (jpeg.getvalue(), 415, "p0.png: the mask upload is not a PNG image"),
        (b"hello", 415, "p0.png: the mask upload is not a PNG image"),
        (wrong_size, 422, "mask is 10x10 but image is 403x300"),
        (colour.getvalue(), 415, "p0.png: the mask upload must be a grey PNG, not RGB"),
        (truncated, 422, "p0.png: the mask upload is truncated or corrupt"),
        (_bomb_png(), 422, "p0.png: the mask upload: image has more than 120,900 pixels"),
    ]
    for body, status, message in cases:
        got, _, answer = server.request("PUT", "/api/mask?name=p0.png", body)
        assert got == status, message
        assert message in json.loads(answer)["error"]
    assert files_in(batch[1]) == before


def _bomb_png() -> bytes:
    """A valid PNG header that claims 100000x100000 pixels (a few bytes of zlib would inflate to 10 GB)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def test_an_upload_streamed_past_the_bound_is_cut_off(server: EditorServer, batch) -> None:
    """Without a Content-Length (chunked), the body is counted as it arrives."""
    before = files_in(batch[1])
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    chunks = iter([b"\x89PNG\r\n\x1a\n", *[b"\0" * 65536] * (upload_limit(PHOTO_SIZE) // 65536 + 2)])
    connection.request(
        "PUT",
        "/api/mask?name=p0.png",
        body=chunks,
        headers={"X-Inpaint-Token": server.token},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413
    assert files_in(batch[1]) == before


# --- saving --------------------------------------------------------------------------------------


def test_a_save_writes_the_mask_keeps_the_detectors_once_and_records_the_edit(
    server: EditorServer, batch
) -> None:
    photos, masks = batch
    detected = (masks / "p0_mask.png").read_bytes()
    status, _, _ = server.request("GET", "/api/mask?name=p0.png")
    assert status == 200
    first, second = a_hole(0), a_hole(5)
    status, answer = server.save("p0.png", first)
    assert (status, answer["status"]) == (200, "edited")
    np.testing.assert_array_equal(saved_hole(masks / "p0_mask.png"), first)
    assert (masks / ".p0_mask.original.png").read_bytes() == detected
    record = json.loads((masks / ".p0_mask.png.inpaint.json").read_text())
    assert record["format"] == "inpaint-mask-edit" and record["edited_by_hand"] is True
    assert record["originals"] == [".p0_mask.original.png"] and record["no_damage"] is False
    status, again = server.save("p0.png", second, If_Match=answer["tag"])
    assert status == 200
    np.testing.assert_array_equal(saved_hole(masks / "p0_mask.png"), second)
    assert (masks / ".p0_mask.original.png").read_bytes() == detected  # kept once: the detector's
    status, _, body = server.request("GET", "/api/photos")
    assert [p["status"] for p in json.loads(body)["photos"]] == ["edited", "unedited", "unedited"]
    status, answer = server.save("p0.png", np.zeros(PHOTO_SIZE, bool), If_Match=again["tag"])
    assert answer["status"] == "edited"  # an empty mask is not "no damage" unless the page says so
    status, _, body = server.request(
        "PUT", "/api/mask?name=p1.png&no_damage=1", png_of(np.zeros(PHOTO_SIZE, bool))
    )
    assert json.loads(body)["status"] == "no damage"
    assert not saved_hole(masks / "p1_mask.png").any()
    assert sorted(path.name for path in photos.iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_a_save_redraws_the_overlay_detect_wrote_and_makes_none_where_there_was_none(
    tmp_path: Path,
) -> None:
    from inpaint_cli.detect.detectors import write_overlay

    photos, masks = make_batch(tmp_path)
    detected = saved_hole(masks / "p0_mask.png")
    for name in ("p0", "p1"):
        pixels = np.asarray(Image.open(photos / f"{name}.png"))
        write_overlay(masks / f"{name}_overlay.jpg", pixels, detected)
    untouched = (masks / "p1_overlay.jpg").read_bytes()
    server = EditorServer(photos, masks)
    try:
        status, answer = server.save("p0.png", a_hole(0))
        assert status == 200
        assert server.save("p0.png", a_hole(5), If_Match=answer["tag"])[0] == 200
        assert server.save("p2.png", a_hole(0))[0] == 200
    finally:
        code, errors = server.stop()
    assert code == 0 and "warning" not in errors
    # What detect would draw for the mask as last saved, to the byte (the same encoder and quality).
    expected = write_overlay(tmp_path / "expected.jpg", np.asarray(Image.open(photos / "p0.png")), a_hole(5))
    assert (masks / "p0_overlay.jpg").read_bytes() == expected.read_bytes()
    assert (masks / "p1_overlay.jpg").read_bytes() == untouched  # not edited
    assert not (masks / "p2_overlay.jpg").exists()  # edit writes no overlay detect did not


def test_a_mask_changed_on_disk_since_the_page_loaded_it_is_not_overwritten(
    server: EditorServer, batch
) -> None:
    masks = batch[1]
    _, headers, _ = server.request("GET", "/api/mask?name=p0.png")
    loaded = headers["x-mask-tag"]
    Image.fromarray(np.full(PHOTO_SIZE, 255, np.uint8)).save(masks / "p0_mask.png")  # another program
    status, answer = server.save("p0.png", a_hole(), If_Match=loaded)
    assert status == 409 and "changed on disk since the page loaded it" in answer["error"]
    assert saved_hole(masks / "p0_mask.png").all()
    assert not (masks / ".p0_mask.original.png").exists()


def test_the_hole_the_page_gets_is_every_paired_mask_ored_and_saving_retires_the_others(
    tmp_path: Path,
) -> None:
    photos, masks = make_batch(tmp_path, 1, detected=False)
    first, second = np.zeros(PHOTO_SIZE, np.uint8), np.zeros(PHOTO_SIZE, np.uint8)
    first[10:20] = 255
    second[:, 5:9] = 200
    Image.fromarray(first).save(masks / "p0_mask1.png")
    Image.fromarray(second).save(masks / "p0_mask2.png")
    catalogue = plan_catalogue(photos, masks)
    photo = catalogue.get("p0.png")
    assert photo.mask == masks / "p0_mask.png"
    assert photo.sources == (masks / "p0_mask1.png", masks / "p0_mask2.png")
    store = MaskStore(catalogue, max_pixels=10**8)
    hole, tag = store.load(photo, PHOTO_SIZE)
    np.testing.assert_array_equal(hole, (first > 127) | (second > 127))
    edited = hole.copy()
    edited[10:20, 100:200] = False
    store.save(photo, edited, no_damage=False, expected=tag)
    assert sorted(path.name for path in masks.iterdir()) == [
        ".p0_mask.png.inpaint.json",
        ".p0_mask1.original.png",
        ".p0_mask2.original.png",
        "p0_mask.png",
    ]
    np.testing.assert_array_equal(saved_hole(masks / "p0_mask.png"), edited)
    assert records.hand_edit(masks / "p0_mask.png").originals == (
        ".p0_mask1.original.png",
        ".p0_mask2.original.png",
    )
    np.testing.assert_array_equal(np.asarray(Image.open(masks / ".p0_mask2.original.png")), second)


def test_an_edit_record_no_longer_counts_once_the_mask_is_rewritten(tmp_path: Path) -> None:
    photos, masks = make_batch(tmp_path, 1)
    catalogue = plan_catalogue(photos, masks)
    store = MaskStore(catalogue, max_pixels=10**8)
    photo = catalogue.get("p0.png")
    _, tag = store.load(photo, PHOTO_SIZE)
    store.save(photo, a_hole(), no_damage=False, expected=tag)
    assert store.status(photo).value == "edited"
    Image.fromarray(np.zeros(PHOTO_SIZE, np.uint8)).save(masks / "p0_mask.png")  # detect --overwrite
    assert store.status(photo).value == "unedited"
    (masks / ".p0_mask.png.inpaint.json").write_text("{not json")
    assert records.read_edit_record(masks / "p0_mask.png") is None


def test_decode_upload_reads_one_and_eight_bit_grey(tmp_path: Path) -> None:
    photos, masks = make_batch(tmp_path, 1)
    photo = plan_catalogue(photos, masks).get("p0.png")
    hole = a_hole()
    eight = io.BytesIO()
    Image.fromarray(hole.astype(np.uint8) * 255).save(eight, format="PNG")
    for data in (png_of(hole), eight.getvalue()):
        np.testing.assert_array_equal(decode_upload(data, photo, PHOTO_SIZE), hole)
    with pytest.raises(Refused) as refused:
        decode_upload(png_of(hole), photo, (301, 403))
    assert refused.value.status == 422 and refused.value.message == (
        "p0.png: mask is 403x300 but image is 403x301 "
        "(a mask must have the image's size once both are turned upright by EXIF)"
    )


# --- kills, Ctrl-C, one editor per folder ----------------------------------------------------------


def _noisy_hole(size: tuple[int, int], seed: int) -> np.ndarray:
    """A hole that compresses badly, so that writing it takes long enough to be interrupted."""
    return np.random.default_rng(seed).random(size) > 0.5


def _wait_for_temporary(folder: Path, stem: str, give_up: float) -> bool:
    while time.monotonic() < give_up:
        if any(name.startswith(f".{stem}.") and ".part" in name for name in os.listdir(folder)):
            return True
    return False


@pytest.mark.slow
def test_sigkill_during_a_save_leaves_the_old_mask_or_the_new_never_a_partial_one(tmp_path: Path) -> None:
    size = (2000, 3000)
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir(), masks.mkdir()
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(photos / "big.png")
    old = _noisy_hole(size, 1)
    Image.fromarray(old.astype(np.uint8) * 255).save(masks / "big_mask.png")
    new = _noisy_hole(size, 2)
    server = EditorServer(photos, masks)
    sending = threading.Thread(target=lambda: _ignore_errors(server.save, "big.png", new))
    sending.start()
    caught = _wait_for_temporary(masks, "big_mask", time.monotonic() + 60)
    server.process.send_signal(signal.SIGSTOP)  # frozen in the middle of writing the temporary file
    server.process.kill()
    server.process.wait()
    sending.join()
    assert caught, "the save never started writing"
    np.testing.assert_array_equal(saved_hole(masks / "big_mask.png"), old)
    left = [name for name in os.listdir(masks) if ".part" in name]
    assert left and all(name.startswith(".") for name in left)  # hidden: never taken for a mask
    # The next editor on the folder removes what the killed one left, and saves as usual.
    server = EditorServer(photos, masks)
    try:
        assert not [name for name in os.listdir(masks) if ".part" in name]
        status, _ = server.save("big.png", new)
        assert status == 200
    finally:
        server.stop()
    np.testing.assert_array_equal(saved_hole(masks / "big_mask.png"), new)


def _ignore_errors(call, *args) -> None:
    with contextlib.suppress(OSError, http.client.HTTPException):  # the server was killed mid-request
        call(*args)


@pytest.mark.slow
def test_ctrl_c_lets_the_save_under_way_finish(tmp_path: Path) -> None:
    size = (2000, 3000)
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir(), masks.mkdir()
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(photos / "big.png")
    new = _noisy_hole(size, 3)
    server = EditorServer(photos, masks)
    answers: list[tuple[int, dict]] = []
    sending = threading.Thread(target=lambda: answers.append(server.save("big.png", new)))
    sending.start()
    assert _wait_for_temporary(masks, "big_mask", time.monotonic() + 60)
    code, stderr = server.stop(signal.SIGINT)
    sending.join()
    assert code == 0, stderr
    assert answers and answers[0][0] == 200
    assert "stopped: 1 save(s) made, every saved mask complete" in stderr
    np.testing.assert_array_equal(saved_hole(masks / "big_mask.png"), new)
    assert not (masks / LOCK_NAME).exists()


def test_a_second_editor_on_the_same_masks_joins_or_refuses(
    server: EditorServer, batch, tmp_path: Path
) -> None:
    photos, masks = batch
    joined = subprocess.run(
        [*INPAINT, "edit", str(photos), "--masks", str(masks), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )
    assert joined.returncode == 0
    assert joined.stdout == f"open {server.url}\n"
    assert f"already open: http://127.0.0.1:{server.port}/ (the same photos)" in joined.stderr
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(other / "o.png")
    refused = subprocess.run(
        [*INPAINT, "edit", str(other), "--masks", str(masks), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(
        f"error: {masks}: another inpaint edit has this masks folder open at http://127.0.0.1:{server.port}/"
    )
    assert server.token not in refused.stderr


def test_a_port_in_use_is_a_usage_error(batch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "inpaint_cli",
                "edit",
                str(batch[0]),
                "--masks",
                str(batch[1]),
                "--port",
                str(port),
                "--no-browser",
            ],
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
        )
    finally:
        taken.close()
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: 127.0.0.1:{port}: is in use (choose another --port, or leave --port out for a free one)"
    )
    assert not (batch[1] / LOCK_NAME).exists()


def test_the_server_listens_on_loopback_only(server: EditorServer) -> None:
    address = None
    for line in Path(f"/proc/{server.process.pid}/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.split(":")[1], 16) == server.port:  # LISTEN
            address = local.split(":")[0]
    assert address == "0100007F"  # 127.0.0.1, little-endian hex


def test_run_fills_the_edited_masks_and_its_review_page_says_which_were_edited(tmp_path: Path) -> None:
    photos, masks = make_batch(tmp_path)
    server = EditorServer(photos, masks)
    try:
        edited = a_hole()
        status, _ = server.save("p0.png", edited)
        assert status == 200
    finally:
        server.stop()
    out, page = tmp_path / "out", tmp_path / "review.html"
    result = subprocess.run(
        [
            *INPAINT,
            "run",
            str(photos),
            "--mask",
            str(masks),
            "--model",
            "telea",
            "-o",
            str(out),
            "--html",
            str(page),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"unused masks +│ 0 ", result.stderr)  # the kept original and the record are no masks
    source = np.asarray(Image.open(photos / "p0.png"))
    filled = np.asarray(Image.open(out / "p0.png"))
    changed = (source != filled).any(axis=2)
    assert changed.any() and not (changed & ~edited).any()  # the edited hole, not the detector's bar
    assert not (changed[100:110, 100:300] & ~edited[100:110, 100:300]).any()
    assert page.read_text().count('"o":"mask edited by hand"') == 1


def test_a_port_out_of_range_is_a_usage_error(batch) -> None:
    result = subprocess.run(
        [*INPAINT, "edit", str(batch[0]), "--masks", str(batch[1]), "--port", "70000", "--no-browser"],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "error: --port 70000 is out of range (between 0 and 65535)",
    )


def test_a_photo_turned_by_exif_is_shown_and_masked_upright(tmp_path: Path) -> None:
    """Stored 3000x2000 with orientation 6 (turn right): the page works on the upright 2000x3000."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    stored = np.full((2000, 3000, 3), 200, np.uint8)
    stored[-300:, :300] = (255, 0, 0)  # stored bottom-left: upright top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(photos / "turned.jpg", quality=95, exif=exif)
    server = EditorServer(photos, masks)
    try:
        status, _, body = server.request("GET", "/api/photo?name=turned.jpg")
        info = json.loads(body)
        assert (info["width"], info["height"], info["view_level"]) == (2000, 3000, 1)
        status, _, view = server.request("GET", "/api/view?name=turned.jpg")
        shown = np.asarray(Image.open(io.BytesIO(view)).convert("RGB"))
        assert shown.shape == (1500, 1000, 3)  # the level-1 view, decoded at half size
        assert shown[20, 20, 0] > 200 and shown[20, 20, 1] < 60  # red at the upright top-left
        assert shown[-20, -20, 0] < 230 and shown[-20, -20, 1] > 150
        hole = np.zeros((3000, 2000), bool)
        hole[:10] = True
        status, _ = server.save("turned.jpg", hole)
        assert status == 200
        status, answer = server.save("turned.jpg", np.zeros((2000, 3000), bool))
        assert status == 422 and "mask is 3000x2000 but image is 2000x3000" in answer["error"]
    finally:
        server.stop()
    np.testing.assert_array_equal(saved_hole(masks / "turned_mask.png"), hole)


# --- the fill preview (--model) --------------------------------------------------------------------


def test_a_preview_fills_the_region_with_the_model_and_writes_nothing(tmp_path: Path) -> None:
    photos, masks = make_batch(tmp_path, 1)
    ramp = np.linspace(60, 160, PHOTO_SIZE[1], dtype=np.float32)[None, :, None].repeat(PHOTO_SIZE[0], 0)
    smooth = ramp.repeat(3, 2).astype(np.uint8)
    smooth[110:120, 110:170] = 255  # a white scratch, all inside the hole below
    Image.fromarray(smooth).save(photos / "p0.png")
    before = {**files_in(photos), **files_in(masks)}
    server = EditorServer(photos, masks, "--model", "telea")
    try:
        hole = np.zeros((60, 80), bool)
        hole[20:30, 10:70] = True
        status, headers, body = server.request(
            "POST", "/api/preview?name=p0.png&x=100&y=90&w=80&h=60", png_of(hole)
        )
        assert status == 200 and headers["content-type"] == "image/jpeg"
        filled = np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)
        photo = np.asarray(Image.open(photos / "p0.png"))[90:150, 100:180].astype(int)
        assert filled.shape == (60, 80, 3)
        difference = np.abs(filled - photo).max(axis=2)
        assert difference[hole].mean() > 60  # the scratch is gone
        assert difference[~hole].mean() < 3  # the rest is the photo (up to JPEG)
        for query, status_wanted in [("x=400&y=0&w=10&h=10", 400), ("x=0&y=0&w=0&h=10", 400), ("x=a", 400)]:
            status, _, answer = server.request("POST", f"/api/preview?name=p0.png&{query}", png_of(hole))
            assert status == status_wanted, query
        status, _, answer = server.request("POST", "/api/preview?name=p0.png&x=0&y=0&w=80&h=61", png_of(hole))
        assert status == 422 and "mask is 80x60 but image is 80x61" in json.loads(answer)["error"]
    finally:
        server.stop()
    assert {**files_in(photos), **files_in(masks)} == before


def test_without_a_model_a_preview_says_how_to_get_one(server: EditorServer) -> None:
    status, _, body = server.request(
        "POST", "/api/preview?name=p0.png&x=0&y=0&w=8&h=8", png_of(np.ones((8, 8), bool))
    )
    assert status == 409
    assert (
        json.loads(body)["error"]
        == "no preview model: start inpaint edit with --model NAME (telea, lama-tiny, ...)"
    )


def test_an_unknown_preview_model_is_a_usage_error(batch) -> None:
    result = subprocess.run(
        [*INPAINT, "edit", str(batch[0]), "--masks", str(batch[1]), "--model", "nope", "--no-browser"],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "error: unknown model 'nope' for --model (see inpaint models)",
    )
