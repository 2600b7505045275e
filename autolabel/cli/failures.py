"""Unexpected failures (the OS, the libraries we call, our own bugs) → one line saying what failed and what to do."""

from __future__ import annotations

import errno
import os

# What to do about an OSError, by errno; the file it names comes first.
ADVICE = {
    errno.ENOSPC: "the disk is full: free space there, or write to another disk",
    errno.EDQUOT: "your disk quota is used up: free space there, or write to another disk",
    errno.EACCES: "permission denied: check its permissions, or choose another location",
    errno.EPERM: "operation not permitted: check its permissions, or choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.ENAMETOOLONG: "the name is too long for this file system: choose a shorter name",
    errno.ENOENT: "no such file or folder (was it moved or deleted while autolabel ran?)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "is a folder, not a file: give a file",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer --workers",
    errno.ENFILE: "too many open files on this system: close some programs and try again",
    errno.EIO: "input/output error: the disk or network share may be failing; check it and try again",
    errno.ENOMEM: "out of memory: use a smaller --batch-size or fewer --workers",
    errno.EXDEV: "cannot move a file across disks: keep the output on one disk",
    errno.ESTALE: "stale network file handle: remount the share and try again",
}
# Errors of these libraries are failures of what they were given or reached, not bugs of ours.
LIBRARIES = {
    "pyarrow": "Arrow/Parquet", "pandas": "pandas", "sqlite3": "SQLite", "PIL": "Pillow", "yaml": "YAML",
    "json": "JSON", "requests": "HTTP", "httpx": "HTTP", "urllib3": "HTTP", "http": "HTTP", "ssl": "TLS",
    "fsspec": "storage", "s3fs": "S3", "gcsfs": "GCS", "adlfs": "Azure storage", "botocore": "S3", "aiohttp": "HTTP",
    "huggingface_hub": "Hugging Face Hub", "safetensors": "safetensors", "transformers": "transformers",
    "torch": "torch", "ray": "Ray", "label_studio_sdk": "Label Studio SDK", "pydantic": "data validation",
    "numpy": "numpy", "zstandard": "zstd",
}
SQLITE_FULL = ("database or disk is full", "disk i/o error")


def _gist(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit] + ("…" if len(text) > limit else "")


def _filename(exc: BaseException) -> str | None:
    """The file an error (or the error it came from) names."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = getattr(current, "filename", None)
        if name:
            return os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
        current = current.__cause__ or current.__context__
    return None


def _errno(exc: BaseException) -> int | None:
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    text = str(exc).lower()
    for code in ADVICE:  # pyarrow's IO errors carry the errno only in their text ("[errno 28] ...")
        if f"[errno {code}]" in text:
            return code
    return None


def _library(exc: BaseException) -> str | None:
    for kind in type(exc).__mro__:
        root = (kind.__module__ or "").split(".")[0].lstrip("_")
        if root in LIBRARIES:
            return LIBRARIES[root]
    return None


def describe(exc: BaseException) -> tuple[str, int]:
    """(one line for stderr, exit code) for an exception no command turned into an AutolabelError.

    Names the file where the error has one and says what to do; exit 1 (a runtime failure: the input may be
    fine). Anything that is neither the OS's nor a library's is our bug and says so.
    """
    name = _filename(exc)
    where = f"{name}: " if name else ""
    code = _errno(exc)
    if code in ADVICE:
        return f"{where}{ADVICE[code]}", 1
    library = _library(exc)
    if library == "SQLite" and any(s in str(exc).lower() for s in SQLITE_FULL):
        return (f"{where}the embedding cache could not be written ({_gist(exc)}): free space in the cache folder, "
                "or pass --cache-dir DIR elsewhere or --no-cache"), 1
    if isinstance(exc, OSError):
        reason = exc.strerror or _gist(exc)
        return f"{where}{reason} (errno {exc.errno}): check the file and try again" if exc.errno else \
            f"{where}{reason}: check the file and try again", 1
    if isinstance(exc, MemoryError):
        return "out of memory: use a smaller --batch-size or fewer --workers, or free memory", 1
    if library is not None:
        return f"{where}{library} failed: {_gist(exc)}", 1
    return (f"{where}internal error ({type(exc).__name__}: {_gist(exc, 200)}); this is a bug in autolabel: "
            "please report it with the output of the same command run with -v"), 1
