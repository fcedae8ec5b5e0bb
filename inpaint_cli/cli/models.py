"""`inpaint models` and `inpaint doctor`: what the tool can run, and what this machine offers it.

`models` reads only the manifest and the cache index (torch-free, instant); `doctor` imports torch
and OpenCV to report their versions and devices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.filesize import decimal
from rich.table import Table

from inpaint_cli.cli.console import print_table
from inpaint_cli.cli.weights import cached_size_text, reported
from inpaint_cli.options import CLASSICAL_METHODS

if TYPE_CHECKING:
    from inpaint_cli import weights

CLASSICAL_LICENSE = "Apache-2.0 (OpenCV)"


def models() -> None:
    """Registered models: family, variant, download size, licence, and whether they are cached."""
    with reported():
        table = models_table()
    print_table(table)


def doctor() -> None:
    """Versions, devices, cache folder, and which registered weights are cached."""
    import platform

    import cv2
    import numpy
    import PIL
    import torch

    from inpaint_cli import weights

    table = Table(title="inpaint doctor", show_header=False)
    table.add_row("python", platform.python_version())
    table.add_row("torch", torch.__version__)
    table.add_row("numpy / pillow / opencv", f"{numpy.__version__} / {PIL.__version__} / {cv2.__version__}")
    table.add_row("cpu threads", str(torch.get_num_threads()))
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    table.add_row("cuda", ", ".join(f"cuda:{i} {name}" for i, name in enumerate(cuda)) or "not available")
    mps = getattr(torch.backends, "mps", None)
    table.add_row("mps", "available" if mps is not None and mps.is_available() else "not available")
    table.add_row("cache folder", str(weights.cache_dir()))
    manifest = weights.load_manifest()
    bundled = weights.bundled_names()  # shipped in the package: they work offline
    cached = [name for name in manifest if name not in bundled and weights.cached_path(name) is not None]
    missing = [name for name in manifest if name not in cached and name not in bundled]
    table.add_row("bundled weights", ", ".join(bundled) or "none")
    table.add_row("cached weights", ", ".join(cached) or "none")
    table.add_row("not cached", ", ".join(missing) or "none")
    for found in weights.find_foreign_checkpoints():
        name = weights.model_for_file(found, manifest) or "NAME"
        table.add_row("importable file", f"{found}  (inpaint weights import {name} {found})")
    Console().print(table)


def models_table() -> Table:
    """Every named model of the manifest and the weight-free classical methods, for `inpaint models`.

    Torch-free: only the manifest and the cache index are read.
    """
    from inpaint_cli import weights

    table = Table(title="models", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column in ("family", "variant", "download", "license", "cached"):
        table.add_column(column)
    for entry in weights.load_manifest().values():
        row = (entry.family, entry.variant, _download_column(entry), entry.license, _cached_column(entry))
        table.add_row(entry.name, *row)
    for name in CLASSICAL_METHODS:
        table.add_row(name, "classical", f"opencv {name}", "-", CLASSICAL_LICENSE, "weight-free")
    return table


def _download_column(entry: weights.ModelEntry) -> str:
    """What a pull transfers: exact, `~` where only approximate, `by hand`, `-` for a bundled model."""
    if entry.bundled is not None:
        return "-"
    size = entry.download_size()
    if size is not None:
        return ("~" if size[1] else "") + decimal(size[0])
    return "by hand" if all(s.manual for s in entry.sources if not s.is_bundled) else "?"


def _cached_column(entry: weights.ModelEntry) -> str:
    if entry.bundled is not None:
        return f"bundled ({decimal(entry.bundled.stat().st_size)})" if entry.bundled.is_file() else "bundled"
    return cached_size_text(entry.name)
