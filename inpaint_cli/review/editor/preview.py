"""A preview of the fill of the current mask, for the part of the photo on screen (`inpaint edit --model`).

The model is loaded at the first preview (through the public API, as `inpaint run` would load it, on
the CPU unless a GPU is there) and kept; one preview runs at a time. The region is bounded so that a
preview stays a matter of seconds: zoom in to preview a part of a large scan.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from inpaint_cli.review.editor.store import Refused

MAX_PREVIEW_PIXELS = 2048 * 2048
"""The largest region previewed at once: LaMa fills it in seconds on a CPU; a 24 MP scan in minutes."""


class Previews:
    """Fills for the page, with one model loaded once."""

    def __init__(self, model: str | None) -> None:
        self.model_name = model
        self._model: Any = None
        self._lock = threading.Lock()

    def fill(self, pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """`pixels` (a region of the photo) with `hole` filled by the model; `Refused` without one."""
        if self.model_name is None:
            raise Refused(
                409, "no preview model: start inpaint edit with --model NAME (telea, lama-tiny, ...)"
            )
        with self._lock:
            if self._model is None:
                from inpaint_cli import api

                self._model = api.load_model(self.model_name)
            return self._model.inpaint(pixels, hole)
