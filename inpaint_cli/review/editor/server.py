"""The editor's web application (Starlette): the page, its script, the photos' pixels and the masks.

Every request passes `Guard` first:

- the `Host` must be this server's own address (`127.0.0.1:PORT` or `localhost:PORT`), so a page of
  another site whose name was pointed at 127.0.0.1 (DNS rebinding) is refused;
- a request that says where it comes from (`Origin`, `Sec-Fetch-Site`) must come from this page;
  there are no CORS headers, and an `OPTIONS` preflight is refused;
- it must carry the session's token: the `token` cookie (HttpOnly, SameSite=Strict, set when the
  address `inpaint edit` printed is first opened) or an `X-Inpaint-Token` header. 401 without one,
  403 with a wrong one.

Responses forbid framing, sniffing, caching and referrers; the page's Content-Security-Policy admits
only this server's own script and style. Photos are named by their path under PHOTOS, looked up in
the catalogue: no request names a file.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from inpaint_cli.errors import InpaintError
from inpaint_cli.review.editor.catalogue import Catalogue, Photo
from inpaint_cli.review.editor.overlays import Overlays
from inpaint_cli.review.editor.pixels import Views, encode_jpeg
from inpaint_cli.review.editor.preview import MAX_PREVIEW_PIXELS, Previews
from inpaint_cli.review.editor.store import MaskStore, Refused, decode_upload, upload_limit

TOKEN_HEADER = "x-inpaint-token"
TAG_HEADER = "x-mask-tag"
STATIC_FILES = {"editor.js": "text/javascript", "editor.css": "text/css"}
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
ALLOWED_SITES = (None, "same-origin", "none")
"""`Sec-Fetch-Site` values let through: absent (not a browser), this page, or an address typed or
clicked in a terminal (`none`). `same-site` and `cross-site` are other pages."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ServerAccess:
    """Who may talk to the server: its port and the session's token."""

    port: int
    token: str

    @property
    def cookie(self) -> str:
        """Per port: cookies are shared between ports of a host, and two editors may run at once."""
        return f"inpaint-edit-{self.port}"

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


class Guard:
    """ASGI middleware: refuse what does not come from the editor's own page with its token."""

    def __init__(self, app: App, access: ServerAccess) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets, and no lifespan (the session runs uvicorn without one)
        refusal = self._refusal(scope)
        if refusal is None and _query_token(scope) is not None:
            refusal = self._exchange(scope)
        if refusal is not None:
            await refusal(scope, receive, _secured(send))
            return
        await self.app(scope, receive, _secured(send))

    def _refusal(self, scope: Scope) -> Response | None:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        if headers.get("host") not in self.access.hosts:
            return _refuse(403, f"this editor answers only to http://127.0.0.1:{self.access.port}/")
        origin = headers.get("origin")
        if origin is not None and origin not in {f"http://{host}" for host in self.access.hosts}:
            return _refuse(403, "requests from other pages are refused")
        if headers.get("sec-fetch-site") not in ALLOWED_SITES or scope["method"] == "OPTIONS":
            return _refuse(403, "requests from other pages are refused")
        if _query_token(scope) is not None:
            return None  # the address printed by `inpaint edit`: checked by `_exchange`
        given = headers.get(TOKEN_HEADER) or cookie_parser(headers.get("cookie", "")).get(self.access.cookie)
        if not given:
            return _refuse(401, "no access token: open the address `inpaint edit` printed (with ?token=)")
        if not secrets.compare_digest(given.encode(), self.access.token.encode()):
            return _refuse(403, "wrong access token: open the address `inpaint edit` printed")
        return None

    def _exchange(self, scope: Scope) -> Response:
        """`GET /?token=...`: the token becomes a cookie and leaves the address bar (and history)."""
        token = _query_token(scope) or ""
        if scope["path"] != "/" or not secrets.compare_digest(token.encode(), self.access.token.encode()):
            return _refuse(403, "wrong access token: open the address `inpaint edit` printed")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(self.access.cookie, self.access.token, httponly=True, samesite="strict", path="/")
        return response


def _query_token(scope: Scope) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _refuse(status: int, message: str) -> Response:
    return PlainTextResponse(f"error: {message}\n", status_code=status)


def _secured(send: Send) -> Send:
    async def send_secured(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return send_secured


# --- the application ---------------------------------------------------------------------------------


@dataclass
class Editor:
    """What the routes serve: the batch, its masks and its pixels."""

    catalogue: Catalogue
    store: MaskStore
    views: Views
    overlays: Overlays
    title: str
    previews: Previews = field(default_factory=lambda: Previews(None))
    _prepared: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def photo(self, request: Request) -> Photo:
        """The photo the request names (`?name=`), or `Refused` 404."""
        name = request.query_params.get("name", "")
        photo = self.catalogue.get(name)
        if photo is None:
            raise Refused(404, f"{name!r} is not a photo of this batch")
        if photo.problem is not None:
            raise Refused(409, photo.problem)
        return photo

    def listing(self) -> list[dict[str, Any]]:
        return [
            {"name": photo.name, "status": self.store.status(photo).value, "problem": photo.problem}
            for photo in self.catalogue.photos
        ]

    def run_lengths(self, photo: Photo) -> tuple[bytes, str]:
        """The hole as run lengths, and its tag: little-endian uint32 width, height, count, then the
        indices (in row order) where the value flips, starting from "kept" — a few kilobytes for a
        scan's scratches. One made ahead (`prepare`) is used while the mask files are unchanged."""
        import numpy as np

        ready = self._prepared.pop(photo.name, None)
        if ready is not None and ready[1] == self.store.tag(photo):
            return ready
        geometry = self.views.geometry(photo)
        hole, tag = self.store.load(photo, (geometry.height, geometry.width))
        flat = hole.ravel()
        flips = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        if flat.size and flat[0]:
            flips = np.concatenate([[0], flips])
        header = np.array([geometry.width, geometry.height, flips.size], dtype="<u4")
        return header.tobytes() + flips.astype("<u4").tobytes(), tag

    def prepare(self, photo: Photo) -> None:
        """Read the mask of the photo the page will likely open next (in the background)."""
        try:
            self._prepared = {photo.name: self.run_lengths(photo)}  # one kept: the next photo's
        except InpaintError:
            return  # its problem shows when the page opens it

    def next_after(self, photo: Photo) -> Photo | None:
        photos = [p for p in self.catalogue.photos if p.problem is None]
        index = photos.index(photo)
        return photos[index + 1] if index + 1 < len(photos) else None


def create_app(editor: Editor, access: ServerAccess) -> App:
    """The editor's ASGI application, guarded."""
    environment = Environment(
        loader=PackageLoader("inpaint_cli.review.editor", "templates"), autoescape=select_autoescape()
    )
    page = environment.get_template("editor.html.j2").render(
        title=editor.title,
        photos=len(editor.catalogue.photos),
        masks=str(editor.catalogue.masks_root),
        model=editor.previews.model_name,
    )
    routes = [
        Route("/", lambda request: Response(page, media_type="text/html; charset=utf-8")),
        Route("/static/{file}", _static),
        Route("/favicon.ico", lambda request: Response(status_code=204)),  # none: asked for by every browser
        Route("/api/photos", _handled(lambda request: JSONResponse({"photos": editor.listing()}))),
        Route("/api/photo", _handled(lambda request: _photo(editor, request))),
        Route("/api/view", _handled(lambda request: _jpeg(editor.views.view(editor.photo(request))))),
        Route("/api/tile", _handled(lambda request: _tile(editor, request))),
        Route("/api/mask", _handled(lambda request: _mask(editor, request))),
        Route("/api/mask", _save_route(editor), methods=["PUT"]),
        Route("/api/preview", _preview_route(editor), methods=["POST"]),
    ]
    return Guard(Starlette(routes=routes), access)


def _handled(endpoint: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
    """A blocking endpoint run in a worker thread, its refusals and bad files as `{"error": ...}`."""

    async def handle(request: Request) -> Response:
        try:
            return await run_in_threadpool(endpoint, request)
        except Refused as refused:
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        except InpaintError as error:
            return JSONResponse({"error": error.one_line()}, status_code=422)

    return handle


def _static(request: Request) -> Response:
    name = request.path_params["file"]
    if name not in STATIC_FILES:
        return _refuse(404, "no such file")
    text = resources.files("inpaint_cli.review.editor").joinpath("static", name).read_bytes()
    return Response(text, media_type=STATIC_FILES[name])


def _preview_route(editor: Editor) -> Callable[[Request], Awaitable[Response]]:
    """`POST /api/preview?name=&x=&y=&w=&h=` with the region's mask (a PNG as for a save): the
    region filled by the `--model`, as JPEG. Nothing is written."""

    async def preview(request: Request) -> Response:
        try:
            photo = editor.photo(request)
            geometry = await run_in_threadpool(editor.views.geometry, photo)
            left, top, width, height = _region(request, (geometry.height, geometry.width))
            data = await _bounded_body(request, upload_limit((height, width)), photo)

            def fill() -> bytes:
                hole = decode_upload(data, photo, (height, width))
                if hole.size > MAX_PREVIEW_PIXELS:
                    raise Refused(413, f"the region is larger than {MAX_PREVIEW_PIXELS:,} pixels: zoom in")
                pixels = editor.views.region(photo, left, top, width, height)
                return encode_jpeg(editor.previews.fill(pixels, hole))

            return _jpeg(await run_in_threadpool(fill))
        except Refused as refused:
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        except InpaintError as error:
            return JSONResponse({"error": error.one_line()}, status_code=422)

    return preview


def _region(request: Request, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """x, y, w, h of the query: whole numbers inside the photo, or `Refused` 400."""
    try:
        left, top, width, height = (int(request.query_params.get(key, "")) for key in ("x", "y", "w", "h"))
    except ValueError:
        raise Refused(400, "x, y, w and h must be whole numbers") from None
    if width < 1 or height < 1 or left < 0 or top < 0 or left + width > size[1] or top + height > size[0]:
        raise Refused(
            400, f"the region {width}x{height} at {left},{top} is not inside the {size[1]}x{size[0]} photo"
        )
    return left, top, width, height


def _jpeg(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg")


def _photo(editor: Editor, request: Request) -> Response:
    photo = editor.photo(request)
    geometry = editor.views.geometry(photo)
    editor.views.decode_ahead(photo)  # the page asks for the view next: start on it now
    size = (geometry.height, geometry.width)
    return JSONResponse(
        {
            "name": photo.name,
            **geometry.as_json(),
            "status": editor.store.status(photo).value,
            "upload_limit": upload_limit(size),
        }
    )


def _tile(editor: Editor, request: Request) -> Response:
    photo = editor.photo(request)
    try:
        level, column, row = (int(request.query_params.get(key, "")) for key in ("level", "x", "y"))
    except ValueError:
        raise Refused(400, "level, x and y must be whole numbers") from None
    data = editor.views.tile(photo, level, column, row)
    if data is None:
        raise Refused(404, f"{photo.name}: no tile {column},{row} at level {level}")
    return _jpeg(data)


def _mask(editor: Editor, request: Request) -> Response:
    photo = editor.photo(request)
    body, tag = editor.run_lengths(photo)
    following = editor.next_after(photo)
    editor.views.opened(photo, following)  # the mask is the page's last piece to wait for
    if following is not None:
        editor.views.later(editor.prepare, following)
    return Response(body, media_type="application/octet-stream", headers={TAG_HEADER: tag})


def _save_route(editor: Editor) -> Callable[[Request], Awaitable[Response]]:
    async def save(request: Request) -> Response:
        try:
            photo = editor.photo(request)
            geometry = await run_in_threadpool(editor.views.geometry, photo)
            size = (geometry.height, geometry.width)
            data = await _bounded_body(request, upload_limit(size), photo)
            no_damage = request.query_params.get("no_damage") == "1"
            expected = request.headers.get("if-match")

            def decode_and_save() -> Any:
                return editor.store.save(
                    photo, decode_upload(data, photo, size), no_damage=no_damage, expected=expected
                )

            saved = await run_in_threadpool(decode_and_save)
            editor.overlays.saved(photo)
        except Refused as refused:
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        except InpaintError as error:
            return JSONResponse({"error": error.one_line()}, status_code=422)
        except OSError as error:
            message = (
                f"{photo.name}: could not save the mask ({error.strerror or error}); nothing was replaced"
            )
            return JSONResponse({"error": message}, status_code=500)
        return JSONResponse({"tag": saved.tag, "status": saved.status.value}, headers={TAG_HEADER: saved.tag})

    return save


async def _bounded_body(request: Request, limit: int, photo: Photo) -> bytes:
    """The request's body, refused (413) as soon as it passes `limit`, whatever Content-Length says."""
    declared = request.headers.get("content-length")
    too_large = Refused(413, f"{photo.name}: the mask upload is larger than {limit:,} bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
