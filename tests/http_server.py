"""A scripted HTTP server on 127.0.0.1 for download tests: ranges, cuts, stalls, trickles, 404s, web pages.

Nothing here reaches any other address. Each route says how to misbehave; every request is
logged so tests can assert what the client asked for (a `Range` header after a cut connection).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POLL_INTERVAL_S = 0.02
"""How often the serving loop checks for shutdown (the default 0.5 s would slow every test's teardown)."""
ENDLESS_CHUNK = 1 << 16
STALL_LIMIT_S = 30.0
"""A stalled handler gives up after this long even if the server is never closed."""


@dataclass
class Route:
    """What one path answers."""

    body: bytes = b""
    content_type: str = "application/octet-stream"
    ranges: bool = True
    """Honour `Range: bytes=N-` with 206 Partial Content (else always send the whole body)."""
    cut_after: int | None = None
    """Close the connection on reaching this byte of the body, on the first `cuts` requests."""
    cuts: int = 1
    stall_before_headers: bool = False
    stall_after: int | None = None
    """Send the body up to this byte, then nothing (until the server closes); resumes stall there too."""
    require_query: dict[str, str] = field(default_factory=dict)
    """Query parameters the request must carry, else 403 (a download behind a confirmation page)."""
    send_length: bool = True
    """Send `Content-Length` (else the body ends when the connection closes, like an endless stream)."""
    trickle_s: float | None = None
    """Send the body one byte at a time, this many seconds apart (a server that never quite stalls)."""
    endless: bool = False
    """After the body, send zeros until the client hangs up (a response that never ends)."""
    wrong_range: bool = False
    """Answer a `Range` request with 206 but the whole body from byte 0 (and a Content-Range saying so)."""


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    sent: int = 0
    """Body bytes written to the client."""


class LocalServer:
    """Serve `routes` on an ephemeral port of 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def requests_for(self, path: str) -> list[Request]:
        return [request for request in self.requests if request.path == path]

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                request = Request(parts.path, query, dict(self.headers))
                server.requests.append(request)
                route = server.routes.get(parts.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                if any(query.get(key) != value for key, value in route.require_query.items()):
                    self.send_error(403, "Forbidden")
                    return
                if route.stall_before_headers:
                    server._closing.wait(STALL_LIMIT_S)
                    return
                self._send_body(route, request)

            def _byte_range(self, route: Route) -> tuple[int, int] | None:
                """[start, end) asked by `Range: bytes=N-`, `bytes=N-M` or `bytes=-N`, if honoured."""
                size = len(route.body)
                asked = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
                if not route.ranges or not asked or asked.groups() == ("", ""):
                    return None
                first, last = asked.groups()
                if first == "":
                    return max(size - int(last), 0), size
                return int(first), min(int(last) + 1, size) if last else size

            def _send_body(self, route: Route, request: Request) -> None:
                size = len(route.body)
                asked = self._byte_range(route)
                start, end = 0, size
                if asked is not None and route.wrong_range:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{size - 1}/{size}")
                elif asked is not None:
                    start, end = asked
                    if start >= size:
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                if route.send_length:
                    self.send_header("Content-Length", str(end - start))
                else:
                    self.close_connection = True
                self.end_headers()
                if route.cut_after is not None and route.cuts > 0:
                    route.cuts -= 1
                    self._write(request, route.body[start : route.cut_after])
                    self.close_connection = True
                    return
                if route.stall_after is not None:
                    self._write(request, route.body[start : route.stall_after])
                    server._closing.wait(STALL_LIMIT_S)
                    return
                if route.trickle_s is not None:
                    for index in range(start, end):
                        if server._closing.is_set() or not self._write(
                            request, route.body[index : index + 1]
                        ):
                            return
                        time.sleep(route.trickle_s)
                    return
                self._write(request, route.body[start:end])
                zeros = bytes(ENDLESS_CHUNK)
                while route.endless and not server._closing.is_set() and self._write(request, zeros):
                    pass

            def _write(self, request: Request, data: bytes) -> bool:
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:  # the client hung up
                    return False
                request.sent += len(data)
                return True

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler
