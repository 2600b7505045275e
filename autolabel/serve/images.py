"""Task image URLs → bytes: Label Studio's local files from disk, its uploads and storages through the server."""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from autolabel.core import storage
from autolabel.core.fileio import MAX_INPUT_BYTES
from autolabel.embedding.decode import DecodeError, read_bytes
from autolabel.review.exporters.label_studio import LOCAL_FILES

TIMEOUT = 30.0  # seconds for one image request
URL_ENV, KEY_ENV = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"  # as `export --url` reads them


@dataclass
class TaskImages:
    """How this backend reaches a project's images: `server` (LABEL_STUDIO_URL, else the address /setup gave) with
    `api_key`, and `document_root` (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) for local files read from disk."""

    server: str | None = None
    api_key: str | None = None
    document_root: Path | None = None
    _client: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def location(self, ref: str, task_id: Any = None) -> str:
        """Where Prepare reads the image a task names: a file, the server's URL for it, or the URL itself."""
        if not isinstance(ref, str) or not ref.strip():
            raise DecodeError(f"the task's image is {ref!r}, not a URL")
        ref = ref.strip()
        if ref.startswith(LOCAL_FILES) and self.document_root is not None:
            path = (self.document_root / unquote(ref[len(LOCAL_FILES):])).resolve()
            if not path.is_relative_to(self.document_root.resolve()):
                raise DecodeError(f"{ref}: leaves the local-files document root")
            return str(path)
        if ref.startswith("/"):
            return self._on_server(ref)
        scheme = urlsplit(ref).scheme.lower()
        if scheme in ("http", "https"):
            return ref
        if storage.is_url(ref) and self.server and task_id is not None:  # s3://, gs://…: the project's storage
            fileuri = base64.urlsafe_b64encode(ref.encode()).decode()
            return self._on_server(f"/tasks/{int(task_id)}/presign/?fileuri={quote(fileuri)}")
        if storage.is_url(ref):
            return ref  # read with this machine's credentials (fsspec)
        raise DecodeError(f"{ref}: not an image URL Label Studio serves (/data/…, http(s)://, s3://…)")

    def _on_server(self, ref: str) -> str:
        if not self.server:
            raise DecodeError(f"{ref} is served by Label Studio: set {URL_ENV} and {KEY_ENV} for autolabel serve "
                              f"(or LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT for local files)")
        return self.server.rstrip("/") + ref

    def read(self, location: str) -> bytes:
        """The bytes at a location `location()` gave; DecodeError (one line) when they cannot be had."""
        if self.server and location.startswith(self.server.rstrip("/") + "/"):
            return self._server_bytes(location)
        if urlsplit(location).scheme.lower() in ("http", "https"):
            try:
                import httpx
            except ImportError:
                raise DecodeError("reading images over HTTP needs httpx: pip install 'autolabel[serve]'") from None

            return _bounded(lambda: httpx.stream("GET", location, timeout=TIMEOUT, follow_redirects=True), location)
        return read_bytes(location)

    def _server_bytes(self, url: str) -> bytes:
        from autolabel.core.errors import AutolabelError
        from autolabel.review.exporters.label_studio_api import connect

        with self._lock:
            if self._client is None:
                try:
                    self._client = connect(self.server, self.api_key)
                except AutolabelError as exc:
                    raise DecodeError(str(exc)) from None
        http = self._client._client_wrapper.httpx_client  # the SDK's client: its auth headers, PATs refreshed
        parts = urlsplit(url)
        path = parts.path[len(urlsplit(self.server or "").path.rstrip("/")):].lstrip("/")
        return _bounded(lambda: http.stream(path, method="GET", params=dict(parse_qsl(parts.query)),
                                            request_options={"timeout_in_seconds": TIMEOUT, "max_retries": 0}), url)


def _bounded(open_stream: Any, url: str) -> bytes:
    """Read a streamed response whole, at most MAX_INPUT_BYTES, following the presign redirect of a storage."""
    import httpx

    try:
        with open_stream() as response:
            if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("location"):
                target = response.headers["location"]  # a storage's presigned URL: no Label Studio credentials
                return _bounded(lambda: httpx.stream("GET", target, timeout=TIMEOUT, follow_redirects=True), target)
            if response.status_code != 200:
                raise DecodeError(f"{url}: HTTP {response.status_code} from the server")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_INPUT_BYTES:
                    raise DecodeError(f"{url}: larger than {MAX_INPUT_BYTES >> 20} MB, refused")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise DecodeError(f"{url}: cannot fetch it ({' '.join(str(exc).split())[:200]})") from None


def from_environment(hostname: str | None = None, access_token: str | None = None) -> TaskImages:
    """LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY (else the server address and token /setup sent) and the document
    root, as the environment sets them."""
    root = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    server = os.environ.get(URL_ENV) or hostname or None
    key = os.environ.get(KEY_ENV) if os.environ.get(URL_ENV) else (access_token or os.environ.get(KEY_ENV))
    return TaskImages(server, key or None, Path(os.path.abspath(root)) if root else None)
