"""Running the editor: plan the batch, hold the masks folder, serve on 127.0.0.1 until Ctrl-C.

Ctrl-C (or SIGTERM) stops accepting requests and lets the saves under way finish (uvicorn's graceful
shutdown), so every mask the page was told is saved is complete; a second Ctrl-C stops at once, and
even then a mask is either the old file or the new one (atomic writes).
"""

from __future__ import annotations

import errno
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from inpaint_cli.batch.resume import remove_stale_parts
from inpaint_cli.errors import UsageError
from inpaint_cli.review.editor.catalogue import Catalogue, plan_catalogue, written_by
from inpaint_cli.review.editor.lock import folder_lock
from inpaint_cli.review.editor.options import EditOptions
from inpaint_cli.review.editor.overlays import Overlays
from inpaint_cli.review.editor.pixels import Views
from inpaint_cli.review.editor.preview import Previews
from inpaint_cli.review.editor.server import Editor, ServerAccess, create_app
from inpaint_cli.review.editor.store import MaskStore

HOST = "127.0.0.1"
GRACEFUL_SECONDS = 30
"""How long Ctrl-C waits for requests under way: a save of a 100-megapixel mask takes about a second."""
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Served:
    """What a session did, for the closing line."""

    catalogue: Catalogue
    saves: int
    overlay_problems: list[str]
    """Overlays `detect` wrote beside saved masks that could not be redrawn, one line each."""


def serve(options: EditOptions, on_ready: Callable[[str, Catalogue], None]) -> Served:
    """Serve the editor of `options` until stopped; `on_ready(url, catalogue)` once it listens.

    Raises UsageError for a batch that cannot be edited or a port that cannot be had, and
    `lock.EditorRunning` when another editor serves the same masks folder.
    """
    import uvicorn

    if options.model is not None:
        _check_model(options.model)
    catalogue = plan_catalogue(options.photos, options.masks, recursive=options.recursive)
    options.masks.mkdir(exist_ok=True)  # `plan_catalogue` checked that only this last folder is missing
    with folder_lock(options.masks) as held:
        # Temporary files of saves a kill cut short (never those of a live writer: they are locked).
        remove_stale_parts(path for photo in catalogue.photos for path, _ in written_by(photo))
        listening = _listen(options.port)
        access = ServerAccess(port=listening.getsockname()[1], token=secrets.token_urlsafe(TOKEN_BYTES))
        held.announce(access.url, options.photos)
        store = MaskStore(catalogue, max_pixels=options.max_pixels)
        views = Views(max_pixels=options.max_pixels)
        title = f"inpaint edit: {options.photos.resolve().name}"
        overlays = Overlays(views, max_pixels=options.max_pixels)
        editor = Editor(catalogue, store, views, overlays, title, Previews(options.model))
        config = uvicorn.Config(
            create_app(editor, access),
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # no proxy in front: a forwarded-for header is a lie
            server_header=False,
            ws="none",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
        on_ready(access.url, catalogue)
        try:
            uvicorn.Server(config).run(sockets=[listening])
        except KeyboardInterrupt:  # uvicorn hands Ctrl-C on once it has stopped: the normal way out
            pass
        finally:
            overlays.close()  # before the views it draws from
            views.close()
            listening.close()
    return Served(catalogue, store.saves, overlays.problems)


def _check_model(name: str) -> None:
    """A `--model` that names nothing is a usage error now, not at the first preview."""
    from inpaint_cli import api

    known = api.available_models()
    if name not in known:
        raise UsageError(f"unknown model {name!r} for --model", hint="see inpaint models")


def _listen(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1 (never another interface): `port`, or a free one for 0."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listening.bind((HOST, port))
    except OSError as error:
        listening.close()
        busy = error.errno == errno.EADDRINUSE
        raise UsageError(
            f"{HOST}:{port}: {'is in use' if busy else error.strerror}",
            hint="choose another --port, or leave --port out for a free one",
        ) from None
    listening.listen()
    return listening
