"""Test helpers for batches beyond one folder: a messy photo folder, and an S3-compatible server on
127.0.0.1 (moto in server mode) that fsspec URLs `s3://...` reach in this process and in Ray workers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HEIGHT, WIDTH = 32, 40
GOOD = [
    "good.png",
    "good.jpg",
    "colour16.tif",
    "grey16.png",
    "rgba.png",
    "nested/deeper/inner.png",
    "Straße é.png",
]
BAD = {"corrupt.png": "image data is truncated or corrupt", "empty.jpg": "file is empty (0 bytes)"}
NO_MASK = "nomask.png"


def make_hole(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    hole = np.zeros((height, width), dtype=bool)
    hole[10:18, 12:26] = True
    return hole


def noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def make_messy(root: Path) -> tuple[Path, Path]:
    """`root/photos` and `root/masks`: several formats, a nested image, a non-ASCII name, a truncated
    and an empty file, an image without a mask, a text file and a mask without an image."""
    photos, masks = root / "photos", root / "masks"
    (photos / "nested/deeper").mkdir(parents=True)
    masks.mkdir()
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=1)).save(photos / "good.png")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=2)).save(photos / "good.jpg", quality=95)
    cv2.imwrite(str(photos / "colour16.tif"), noise((HEIGHT, WIDTH, 3), np.uint16, seed=3))
    cv2.imwrite(str(photos / "grey16.png"), noise((HEIGHT, WIDTH), np.uint16, seed=4))
    Image.fromarray(noise((HEIGHT, WIDTH, 4), seed=5), "RGBA").save(photos / "rgba.png")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=6)).save(photos / "nested/deeper/inner.png")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=7)).save(photos / "Straße é.png")
    whole = (photos / "good.png").read_bytes()
    (photos / "corrupt.png").write_bytes(whole[: len(whole) // 2])
    (photos / "empty.jpg").write_bytes(b"")
    Image.fromarray(noise((HEIGHT, WIDTH, 3), seed=8)).save(photos / NO_MASK)
    (photos / "notes.txt").write_text("not an image\n")
    mask = Image.fromarray(make_hole().astype(np.uint8) * 255)
    for name in [*GOOD, *BAD]:
        path = masks / Path(name).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        mask.save(path)
    mask.save(masks / "orphan_mask.png")
    return photos, masks


RECORD_SUFFIX = ".inpaint.json"
"""Hidden provenance records beside outputs (they name their own paths, so they differ by folder)."""


def tree_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every visible file under `folder`, by relative path."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def leftovers(folder: Path) -> list[str]:
    """Hidden files under `folder` that are not provenance records: temporaries of unfinished writes."""
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob(".*")
        if path.is_file() and not path.name.endswith(RECORD_SUFFIX)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def have_s3_server() -> bool:
    """Whether the S3 tests can run: moto's server and s3fs are installed (the test extra has them)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("moto", "s3fs", "flask"))


S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1; yields its endpoint URL.

    fsspec's configuration points `s3://` at it in this process (`fsspec.config.conf`) and in
    processes started meanwhile (`FSSPEC_S3_ENDPOINT_URL`), such as the workers of a local Ray cluster.
    """
    import fsspec.config
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved_env = {key: os.environ.get(key) for key in [*S3_ENVIRONMENT, "FSSPEC_S3_ENDPOINT_URL"]}
    saved_conf = fsspec.config.conf.get("s3")
    os.environ.update(S3_ENVIRONMENT, FSSPEC_S3_ENDPOINT_URL=endpoint)
    fsspec.config.conf["s3"] = {"endpoint_url": endpoint}
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if saved_conf is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved_conf
        s3fs.S3FileSystem.clear_instance_cache()


def upload_tree(folder: Path, url: str) -> None:
    """Copy every file under `folder` to the fsspec URL `url` (one object per file)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(folder).as_posix()}", path.read_bytes())


def remote_hashes(url: str) -> dict[str, str]:
    """SHA-256 of every object under `url` by relative key; any hidden object other than a provenance
    record (a temporary) is listed under its name with the value `LEFTOVER`."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    found = {}
    for key in sorted(fs.find(root)):
        name = key[len(root) + 1 :]
        if not name.rsplit("/", 1)[-1].startswith("."):
            found[name] = hashlib.sha256(fs.cat_file(key)).hexdigest()
        elif not name.endswith(RECORD_SUFFIX):
            found[name] = "LEFTOVER"
    return found


def interruptible() -> None:
    """`preexec_fn` for a child a test interrupts: Ctrl-C acts as on a terminal even when the tests
    themselves run in the background, whose children a shell starts with SIGINT ignored (Python then
    installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
