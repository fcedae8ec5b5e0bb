"""`inpaint edit`: options from `EditOptions`, the server from `review.editor.session`, one line out.

The address (with its access token) goes to stdout on one line, `open http://127.0.0.1:PORT/?token=...`,
so that a terminal makes it a link; the rest goes to stderr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from inpaint_cli.cli.console import console, fail, printable
from inpaint_cli.review.editor.options import EditOptions

if TYPE_CHECKING:
    from inpaint_cli.review.editor.catalogue import Catalogue


def edit_command(options: EditOptions) -> None:
    """Correct the damage masks of a batch by hand, in a page in your browser.

    Shows each photo with its mask (what `inpaint detect` found) over it: paint what was missed,
    erase what is not damage, and go on to the next photo; every change is saved to MASKS as
    <stem>_mask.png (the detector's file is kept beside it, hidden). Then fill them with
    `inpaint run PHOTOS --mask MASKS`. The page is served on 127.0.0.1 only, to whoever has the
    printed address; Ctrl-C stops it.
    """
    from inpaint_cli.errors import InpaintError
    from inpaint_cli.review.editor import session
    from inpaint_cli.review.editor.lock import EditorRunning

    try:
        served = session.serve(options, lambda url, catalogue: _ready(url, catalogue, options.no_browser))
    except EditorRunning as running:
        if running.url is None or running.photos != str(options.photos.resolve()):
            fail(running)
        console.print(f"already open: {escape(running.url.split('?')[0])} (the same photos)", soft_wrap=True)
        _ready(running.url, None, options.no_browser)
        return
    except InpaintError as error:
        fail(error)
    console.print(f"stopped: {served.saves} save(s) made, every saved mask complete", soft_wrap=True)
    for problem in served.overlay_problems:
        console.print(f"warning: {escape(printable(problem))}", soft_wrap=True)


def _ready(url: str, catalogue: Catalogue | None, no_browser: bool) -> None:
    if catalogue is not None:
        problems = sum(photo.problem is not None for photo in catalogue.photos)
        folder = escape(printable(str(catalogue.masks_root)))
        console.print(
            f"editing the masks of {len(catalogue.photos)} photo(s) in {folder}"
            + (f" ({problems} cannot be edited: see the page)" if problems else "")
            + "; Ctrl-C to stop",
            soft_wrap=True,
        )
    typer.echo(f"open {url}")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
