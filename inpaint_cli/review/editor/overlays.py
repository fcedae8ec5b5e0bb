"""Detector overlays kept in step with the masks edited by hand.

`inpaint detect` writes `<stem>_overlay.jpg` beside each mask for people to look at (the review page
of a detect report shows it). Once the mask is edited, that picture would show the detector's mask.
After each save the overlay, where one exists, is drawn again from the mask file as saved: in one
background thread, so that a save does not wait for a scan-sized JPEG, and the editor waits for the
redraws under way when it stops."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from inpaint_cli.batch.jobs import overlay_path
from inpaint_cli.errors import InpaintError
from inpaint_cli.imaging import masks
from inpaint_cli.review.editor.catalogue import Photo
from inpaint_cli.review.editor.pixels import Views


class Overlays:
    """Redraws the overlays of saved masks (thread-safe); `problems` says which could not be."""

    def __init__(self, views: Views, *, max_pixels: int) -> None:
        self.views = views
        self.max_pixels = max_pixels
        self.problems: list[str] = []
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overlays")

    def saved(self, photo: Photo) -> None:
        """`photo`'s mask was saved: redraw its overlay, if it has one, in the background."""
        if not overlay_path(photo.mask).is_file():
            return
        with self._lock:
            if photo.name in self._queued:
                return  # the redraw already queued reads the mask file as it is when it runs
            self._queued.add(photo.name)
        self._pool.submit(self._redraw, photo)

    def close(self) -> None:
        """Wait for the redraws under way and queued (each a few seconds at most)."""
        self._pool.shutdown(wait=True)

    def _redraw(self, photo: Photo) -> None:
        from inpaint_cli.detect.detectors import write_overlay

        with self._lock:
            self._queued.discard(photo.name)  # a save from now on queues another redraw
        target = overlay_path(photo.mask)
        try:
            geometry = self.views.geometry(photo)
            size = (geometry.height, geometry.width)
            hole = masks.read_mask(photo.mask, size=size, max_pixels=self.max_pixels, image=photo.image)
            write_overlay(target, self.views.region(photo, 0, 0, geometry.width, geometry.height), hole)
        except InpaintError as error:
            self.problems.append(f"{target}: not redrawn ({error.one_line()})")
        except OSError as error:
            self.problems.append(f"{target}: not redrawn ({error.strerror or error})")
