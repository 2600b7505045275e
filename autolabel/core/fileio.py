"""Safe file access: regular files only with a size cap, atomic writes, output locations checked up front."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from autolabel.core.errors import UsageError

MAX_INPUT_BYTES = 256 << 20  # an image file beyond this is refused unread (a device, a runaway file)
MAX_TEXT_BYTES = 64 << 20  # a label spec or review export
MAX_TABLE_BYTES = 64 << 30  # a manifest or labels table

# What marks a shard folder (`run --out DIR/`): its manifest, the lock of a run writing it, or a part file.
# Defined here, below the table package, for the guard that keeps every other output out of such a folder;
# the rest of the code takes them from autolabel.table.format.
SHARD_MANIFEST = "_autolabel.json"
SHARD_LOCK = "_autolabel.lock"
SHARD_PART_PREFIX, SHARD_PART_SUFFIX = "part-", ".parquet"
SHARD_PART = re.compile(rf"^{re.escape(SHARD_PART_PREFIX)}(\d{{5,}}){re.escape(SHARD_PART_SUFFIX)}$")


class InputError(OSError):
    """A file that cannot be read as input; the message is one line for an error row or an error message."""


def _open_checked(path: str | os.PathLike[str], max_bytes: int) -> tuple[int, int]:
    """(fd, size) of a regular file of at most `max_bytes`, opened without blocking; InputError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(errno.ENOENT, "file not found") from None
    except IsADirectoryError:
        raise InputError(errno.EISDIR, "is a directory, not a file") from None
    except PermissionError:
        raise InputError(errno.EACCES, "permission denied (check the file's read permissions)") from None
    except OSError as exc:
        raise InputError(exc.errno, f"cannot open file ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(errno.EISDIR, "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(errno.EINVAL, f"not a regular file ({_kind(info.st_mode)}); only regular files are read")
        if info.st_size > max_bytes:
            raise InputError(errno.EFBIG, f"file too large ({info.st_size} bytes, limit {max_bytes})")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_regular(path: str | os.PathLike[str], max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`.

    FIFOs, devices, sockets and folders are refused without blocking (opened non-blocking, checked with
    fstat before any read), and a file that grows past the cap while being read is refused too.
    """
    fd, _ = _open_checked(path, max_bytes)
    try:
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise InputError(errno.EFBIG, f"file too large (more than {max_bytes} bytes)")
        return b"".join(chunks)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(exc.errno, f"cannot read file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def open_regular(path: str | os.PathLike[str], max_bytes: int = MAX_TABLE_BYTES) -> BinaryIO:
    """A binary file object on a regular file, for readers that stream (Parquet, CSV); same checks as read_regular."""
    fd, _ = _open_checked(path, max_bytes)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def read_text(path: str | os.PathLike[str], what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A regular UTF-8 text file (specs, exports, manifests read whole); InputError names the problem."""
    data = read_regular(path, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(errno.EINVAL, f"{what} is not UTF-8 text (byte {exc.start})") from None


def read_json_object(path: str | os.PathLike[str], what: str) -> dict:
    """A regular file holding one JSON object; InputError (one line, naming `what`) for anything else."""
    import json

    try:
        value = json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise InputError(errno.EINVAL, f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(errno.EINVAL, f"{what} is not a JSON object")
    return value


def temp_beside(target: Path, tag: str = "tmp") -> Path:
    """A new hidden temp file in target's folder, named `.NAME.PID.*.TAG` so stale ones can be recognised.

    Created with the permissions a plain new file gets (0666 less the umask), so the renamed result has them too.
    """
    while True:
        path = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.{tag}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
            return path
        except FileExistsError:
            continue


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: Path) -> None:
    """Delete temp files that killed writers (SIGKILL, power loss) left beside target; live writers' files stay."""
    for tmp in target.parent.glob(f".{target.name}.*"):
        pid = tmp.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success it replaces target in one rename, on failure it is removed.

    Readers see the old file or the whole new one, never half of it.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(target)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:  # a full disk names no file, a failed rename names the temp file: name the target
        if isinstance(exc, InputError) or (exc.filename and os.fspath(exc.filename) != os.fspath(tmp)):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_write(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _name_problem(path: Path) -> str | None:
    try:
        os.fsencode(str(path))
    except UnicodeEncodeError:
        return "cannot be encoded as a file name here"
    for part in path.parts:
        if len(os.fsencode(part)) > 255:
            return f"the name '{part[:40]}…' is longer than 255 bytes"
    return None


def _checked_target(path: str | os.PathLike[str], option: str) -> Path:
    """The target as a Path after the checks every output shares: a name this system takes, under a folder."""
    target = Path(path).expanduser()
    problem = _name_problem(target)
    if problem:
        raise UsageError(f"{option} {path}: {problem}; choose a shorter or plain name")
    for ancestor in target.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UsageError(f"{option} {path}: {ancestor} is a file, not a folder; choose another location")
            break
    return target


def _unwritable(path: str | os.PathLike[str], option: str, exc: OSError) -> UsageError:
    return UsageError(f"{option} {path}: cannot write there ({exc.strerror or exc}); choose a writable location")


def _head(path: Path, size: int = 4096) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def json_with(*keys: str) -> Callable[[Path], bool]:
    """Tells a JSON object that has all of `keys` (the file a command's --json wrote) from any other file."""
    def ours(path: Path) -> bool:
        if path.stat().st_size > MAX_TEXT_BYTES:
            return False
        try:
            data = json.loads(path.read_bytes())
        except ValueError:
            return False
        return isinstance(data, dict) and all(key in data for key in keys)

    return ours


def autolabel_report(path: Path) -> bool:
    """True for a report that `autolabel report` wrote."""
    head = _head(path)
    return head.startswith(b"<!doctype html>") and b"<title>autolabel report" in head


SPEC_MARK = "# written by autolabel calibrate --write-spec"


def calibrated_spec(path: Path) -> bool:
    """True for a spec that `calibrate --write-spec` wrote (it starts with SPEC_MARK)."""
    return _head(path, len(SPEC_MARK)) == SPEC_MARK.encode()


def is_shard_folder(folder: Path) -> bool:
    """True for a folder a run wrote or is writing shards to (finished, running or interrupted)."""
    try:
        if any(os.path.lexists(folder / name) for name in (SHARD_MANIFEST, SHARD_LOCK)):
            return True
        with os.scandir(folder) as entries:
            return any(SHARD_PART.match(entry.name) for entry in entries)
    except OSError:
        return False


def refuse_inside_shards(target: Path, path: str | os.PathLike[str], option: str, own: Path | None = None) -> None:
    """Refuse (UsageError) writing `target` under a shard folder (other than `own`, the run's own --out): the
    folder must keep reading as one table, pandas' reader included. `path` is the location as given."""
    own_real = os.path.realpath(own) if own is not None else None
    for folder in target.absolute().parents:
        if os.path.isdir(folder) and os.path.realpath(folder) != own_real and is_shard_folder(folder):
            raise UsageError(f"{option} {path}: would write inside {folder}, a shard folder of `autolabel run` "
                             f"(only its parts and {SHARD_MANIFEST} belong there, so that it reads as one table); "
                             "choose another location")


def check_output_file(path: str | os.PathLike[str], option: str,
                      inputs: Iterable[str | os.PathLike[str] | None] = (),
                      replaces: Callable[[Path], bool] | None = None, shard_folder: Path | None = None) -> None:
    """Refuse (UsageError, one line) an output file that could not be written, before any work is done.

    Creates the missing parent folders (the write would), then proves the folder takes a new file by
    creating and removing one; the file itself, if it exists, must not be a folder, nor one of the
    command's `inputs` (writing there would destroy what is being read), nor — given `replaces`, which
    tells the command's own files from others — a non-empty file the command did not write. Nothing lands
    inside a shard folder but that folder's own files (`shard_folder`: the run's own --out).
    """
    from autolabel.core import storage

    if storage.is_url(str(path)):
        return
    target = _checked_target(path, option)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    if target.exists() and not target.is_file():  # a FIFO, a device, a socket: writing would replace or block on it
        raise UsageError(f"{option} {path}: is not a regular file (a FIFO, device or socket); choose another file")
    refuse_inside_shards(target, path, option, shard_folder)
    for given in inputs:
        if given is not None and (same_file(target, given) or _same_name(target, given)):
            raise UsageError(f"{option} {path}: is {given}, an input of this command; write to another file")
    if replaces is not None and _foreign(target, replaces):
        raise UsageError(f"{option} {path}: exists and is not a file this command wrote; choose another file "
                         "(nothing you wrote is replaced)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = temp_beside(target, "probe")
        probe.unlink()
    except OSError as exc:
        raise _unwritable(path, option, exc) from None


def check_output_folder(path: str | os.PathLike[str], option: str) -> None:
    """Refuse (UsageError, one line) an output folder that could not be written, creating nothing.

    The folder, or its nearest existing ancestor, must be a folder that takes a new entry (proved with a
    probe folder, removed at once), and not lie inside a shard folder.
    """
    target = _checked_target(path, option)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder; choose a folder")
    refuse_inside_shards(target, path, option)
    nearest = next(p for p in (target.absolute(), *target.absolute().parents) if p.exists())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".autolabel-probe-", dir=nearest))
    except OSError as exc:
        raise _unwritable(path, option, exc) from None


def _same_name(target: Path, other: str | os.PathLike[str]) -> bool:
    """True when `other` names `target` (for outputs of the same command that do not exist yet)."""
    from autolabel.core import storage

    return not storage.is_url(str(other)) and os.path.abspath(target) == os.path.abspath(Path(other).expanduser())


def _foreign(target: Path, ours: Callable[[Path], bool]) -> bool:
    try:
        if not target.is_file() or target.stat().st_size == 0:
            return False
        return not ours(target)
    except OSError:
        return False


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when both name one existing file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
