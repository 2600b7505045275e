"""The HTTP side of `autolabel serve`: Label Studio's ML backend routes on the standard library's threaded server.

Five small JSON routes need no web framework (the backend SDK, label-studio-ml, pulls Flask, gunicorn and RQ);
every refusal is a JSON `{"error": …}` whose one line is also the HTTP reason phrase, which is what Label Studio
shows in its ML backend settings and logs.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autolabel.serve.annotations import PayloadError
from autolabel.serve.backend import Backend, BackendError

MAX_BODY = 64 << 20  # bytes of one request (a "retrieve predictions" of ~100,000 tasks)
READ_TIMEOUT = 60.0  # seconds a client may take to send its request


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /health (and /), POST /setup, /predict, /webhook, /train."""

    server: Server
    timeout = READ_TIMEOUT
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("", "/health"):
            self._answer(200, self.server.backend.health())
        elif path == "/versions":
            self._answer(200, {"versions": sorted({p.fitted[0] for p in list(self.server.backend.projects.values())
                                                   if p.fitted})})
        else:
            self._refuse(404, f"no route GET {path}; this is autolabel's Label Studio ML backend")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0].rstrip("/")
        routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/setup": self.server.backend.setup, "/predict": self.server.backend.predict,
            "/webhook": self.server.backend.webhook, "/train": self.server.backend.train}
        payload = self._body()
        if payload is None:
            return
        if path not in routes:
            self._refuse(404, f"no route POST {path}; this is autolabel's Label Studio ML backend")
            return
        try:
            self._answer(200, routes[path](payload))
        except BackendError as exc:
            self._refuse(exc.status, str(exc))
        except PayloadError as exc:
            self._refuse(400, str(exc))
        except Exception as exc:  # a bug must not take the server down: answer, and leave the trace in the log
            traceback.print_exc(file=sys.stderr)
            self._refuse(500, f"internal error in autolabel serve ({type(exc).__name__}: {exc})")

    def _body(self) -> dict[str, Any] | None:
        """The request's JSON object, or None after refusing it (no length, too large, not a JSON object)."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._refuse(411, "a request body needs a Content-Length (chunked bodies are not taken)")
            return None
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._refuse(413, f"request of {int(length)} bytes refused: at most {MAX_BODY >> 20} MB (retrieve "
                              "predictions for fewer tasks at once)")
            return None
        raw = self.rfile.read(int(length))
        try:
            payload = json.loads(raw or b"{}")
        except (ValueError, RecursionError) as exc:
            self._refuse(400, f"the request body is not JSON ({' '.join(str(exc).split())[:120]})")
            return None
        if not isinstance(payload, dict):
            self._refuse(400, f"the request body must be a JSON object, got {type(payload).__name__}")
            return None
        return payload

    def _refuse(self, status: int, message: str) -> None:
        self.server.log(f"{self.command} {self.path}: {status} {message}")
        self._answer(status, {"error": message}, message)

    def _answer(self, status: int, body: dict[str, Any], reason: str | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        phrase = " ".join((reason or "").split()).encode("ascii", "replace").decode()[:300] or None
        self.send_response(status, phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (Label Studio's 1 s health check)
            self.close_connection = True
            self.server.log(f"{self.command} {self.path}: the client left before the answer")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's signature)
        self.server.log(f"{self.address_string()} {format % args}", True)


class Server(ThreadingHTTPServer):
    """The backend behind HTTP; `log` writes one line per event to stderr (requests only when verbose)."""

    daemon_threads = True

    def __init__(self, backend: Backend, host: str, port: int, log: Callable[..., None]) -> None:
        self.backend, self.log = backend, log
        super().__init__((host, port), Handler)
