"""Local paths and object-store URLs (s3://, gs://, az://, anything fsspec opens): read, list, upload."""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any

from autolabel.core.errors import SourceError, UsageError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


def is_url(path: str) -> bool:
    """True for `scheme://…` locations (file:// included)."""
    return bool(_URL.match(path))


def local_path(path: str) -> str:
    """`file:///x/y` → `/x/y` (so local outputs get every local check); anything else as it is."""
    if path.startswith("file://"):
        from urllib.parse import unquote

        return unquote(path[len("file://"):]) or "/"
    return path


def join(base: str, relative: str) -> str:
    """`relative` resolved against the folder URL `base` (absolute paths and URLs stay as they are)."""
    if is_url(relative) or relative.startswith("/"):
        return relative
    scheme, rest = base.split("://", 1)
    return f"{scheme}://{posixpath.normpath(posixpath.join(rest, relative))}"


def parent(url: str) -> str:
    """The folder URL of a file URL."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"


_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                   "AWS_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_CONNECTION_STRING",
                   "AZURE_STORAGE_ACCOUNT_NAME")
_FILESYSTEMS: dict[tuple, Any] = {}


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it); credentials come from the environment as the cloud SDKs read them.

    One filesystem per scheme and credential environment: connections are reused across images, and
    changed credentials are never served from a stale instance.
    """
    import fsspec

    scheme = url.split("://", 1)[0].lower()
    key = (scheme, *(os.environ.get(k) for k in _CREDENTIAL_ENV))
    try:
        fs = _FILESYSTEMS.get(key)
        if fs is None:
            options = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]} if scheme in ("s3", "s3a") and os.environ.get(
                "AWS_ENDPOINT_URL") else {}
            fs = _FILESYSTEMS[key] = fsspec.filesystem(scheme, skip_instance_cache=True, **options)
        return fs, fs._strip_protocol(url)
    except (ImportError, ValueError) as exc:
        extra = _EXTRAS.get(scheme)
        hint = f"pip install 'autolabel[{extra}]'" if extra else f"install the fsspec backend for {scheme}://"
        raise UsageError(f"{url}: cannot open {scheme}:// locations ({exc}); {hint}") from None


def explain(exc: BaseException) -> str:
    """One line for an object-store failure, with the usual fix for credentials."""
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, PermissionError) or any(k in lowered for k in (
            "accessdenied", "access denied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden",
            "credentials", "403")):
        return (f"access denied ({text}); check the credentials in the environment "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, "
                "AZURE_STORAGE_CONNECTION_STRING) and the endpoint (AWS_ENDPOINT_URL)")
    if isinstance(exc, FileNotFoundError) or "nosuchkey" in lowered or "nosuchbucket" in lowered:
        return "not found"
    return text


def describe_error(url: str, exc: BaseException) -> str:
    """`url: reason`, for errors about a whole SOURCE or OUT."""
    return f"{url}: {explain(exc)}"


def read_url(url: str) -> bytes:
    """The bytes of an object; raises OSError subclasses or the backend's errors."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return f.read()


def open_url(url: str, mode: str = "rb") -> Any:
    """A file object for an object-store location, errors turned into SourceError."""
    fs, path = filesystem(url)
    try:
        return fs.open(path, mode)
    except Exception as exc:  # backends raise their own types (botocore, google, azure)
        raise SourceError(describe_error(url, exc)) from None


def list_images(url: str, is_image: Any) -> list[str]:
    """Image object paths under a folder URL, relative to it, hidden names skipped, sorted."""
    fs, root = filesystem(url)
    try:
        found = fs.find(root)
    except Exception as exc:
        raise SourceError(describe_error(url, exc)) from None
    root = root.rstrip("/")
    rels = []
    for full in found:
        rel = full[len(root):].lstrip("/")
        if rel and is_image(rel) and not any(part.startswith(".") for part in rel.split("/")):
            rels.append(rel)
    return sorted(rels)


def is_folder(url: str) -> bool:
    """True when the URL names a folder (prefix) rather than an object."""
    fs, path = filesystem(url)
    try:
        return bool(fs.isdir(path))
    except Exception as exc:
        raise SourceError(describe_error(url, exc)) from None


def upload(local: str, url: str) -> None:
    """Put a finished local file at `url` (one PUT: readers see the old object or the whole new one)."""
    fs, path = filesystem(url)
    try:
        fs.put_file(local, path)
    except Exception as exc:
        raise SourceError(describe_error(url, exc)) from None


def resolve_location(given: str, base: Path | str) -> str:
    """Where to read an image named in a manifest: relative paths resolve against the manifest's folder."""
    if is_url(given):
        return given
    if is_url(str(base)):
        return join(str(base), given)
    expanded = os.path.expanduser(given)
    return expanded if os.path.isabs(expanded) else str(Path(base) / expanded)
