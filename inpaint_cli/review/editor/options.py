"""The options of one `inpaint edit`, declared once with their command-line spelling (as `RunOptions`).

Torch-free and Typer-free: the CLI generates the `edit` command from this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inpaint_cli.options import DEFAULT_MAX_PIXELS, Panel, check_bounds, cli

MAX_PORT = 65535


@dataclass(frozen=True, kw_only=True)
class EditOptions:
    """Everything `inpaint edit` was asked to do. Invalid values raise `UsageError` on construction."""

    photos: Path = field(
        metadata=cli(
            "A photo, or a folder of photos: the batch whose masks to correct.",
            metavar="PHOTOS",
            argument=True,
            panel=Panel.INPUT_OUTPUT,
        )
    )
    masks: Path = field(
        metadata=cli(
            "The folder of masks, paired by name as `run --mask` pairs them (what `inpaint detect` wrote); "
            "each edited mask is saved as <stem>_mask.png there. Created if missing; a photo without "
            "a mask starts empty.",
            "--masks",
            metavar="MASKS",
            panel=Panel.INPUT_OUTPUT,
        )
    )
    port: int = field(
        default=0,
        metadata=cli(
            "Port on 127.0.0.1. Default: a free one.",
            metavar="N",
            minimum=0,
            maximum=MAX_PORT,
            panel=Panel.REVIEW,
        ),
    )
    no_browser: bool = field(
        default=False,
        metadata=cli("Print the address only; do not open a browser.", "--no-browser", panel=Panel.REVIEW),
    )
    recursive: bool = field(
        default=False,
        metadata=cli(
            "Also edit photos in subfolders (masks mirror the tree, as `detect -r` writes them).",
            "--recursive",
            "-r",
            panel=Panel.INPUT_OUTPUT,
        ),
    )
    model: str | None = field(
        default=None,
        metadata=cli(
            "Preview the fill of the mask on screen with this model (V in the page): a name from "
            "`inpaint models` (lama-tiny, lama, ...) or telea, ns. Loaded at the first preview.",
            metavar="NAME",
            panel=Panel.REVIEW,
        ),
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata=cli(
            "Refuse photos and masks with more pixels than this (decompression bombs).",
            metavar="N",
            minimum=1,
            panel=Panel.INPUT_OUTPUT,
        ),
    )

    def __post_init__(self) -> None:
        check_bounds(self)
