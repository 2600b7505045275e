"""Safe inputs (regular files only, size cap, no blocking) and atomic, pre-checked outputs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from autolabel.core.errors import UsageError
from autolabel.core.fileio import (
    InputError,
    atomic_write,
    check_output_file,
    check_output_folder,
    open_regular,
    read_regular,
    remove_stale_temps,
    write_text,
)

from .conftest import finishes


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []
    worker = threading.Thread(target=lambda: outcome.append(_attempt(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], InputError) and "not a regular file (a FIFO)" in str(outcome[0].strerror)


def _attempt(path: Path) -> BaseException | bytes:
    try:
        return read_regular(path)
    except InputError as exc:
        return exc


def test_a_character_device_is_refused_unread() -> None:
    with pytest.raises(InputError, match="a character device"):
        read_regular("/dev/zero")


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(b"x" * 101)
    with pytest.raises(InputError, match="file too large"):
        read_regular(tmp_path / "big.jpg", max_bytes=100)
    assert read_regular(tmp_path / "big.jpg", max_bytes=101) == b"x" * 101


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    dead = tmp_path / ".out.parquet.999999999.abc.tmp"
    live = tmp_path / f".out.parquet.{os.getppid()}.abc.tmp"
    dead.write_text("x")
    live.write_text("x")
    remove_stale_temps(target)
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "file.txt" / "out.parquet", "is a file, not a folder"),
    (lambda p: Path("/proc/out.parquet"), "cannot write there"),
    (lambda p: p / ("x" * 256 + ".parquet"), "longer than 255 bytes"),
    (lambda p: p, "is a folder"),
])
def test_unwritable_outputs_are_refused_up_front(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "file.txt").write_text("user data")
    with pytest.raises(UsageError, match=message):
        check_output_file(make(tmp_path), "--out")
    assert (tmp_path / "file.txt").read_text() == "user data"


def test_a_writable_output_leaves_no_probe_behind(tmp_path: Path) -> None:
    check_output_file(tmp_path / "new" / "out.parquet", "--out")
    assert list((tmp_path / "new").iterdir()) == []


def test_open_regular_streams_a_regular_file_and_refuses_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(b"path\na.png\n")
    with open_regular(tmp_path / "m.csv") as f:
        assert f.read() == b"path\na.png\n"
    os.mkfifo(tmp_path / "pipe.csv")
    outcome = finishes(lambda: open_regular(tmp_path / "pipe.csv"))
    assert isinstance(outcome, InputError)
    assert outcome.strerror == "not a regular file (a FIFO); only regular files are read"


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "file.txt" / "export", "is a file, not a folder; choose another location"),
    (lambda p: p / "file.txt", "is a file, not a folder; choose a folder"),
    (lambda p: Path("/proc/export"), "cannot write there"),
    (lambda p: p / ("x" * 256), "longer than 255 bytes"),
])
def test_unwritable_output_folders_are_refused_creating_nothing(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "file.txt").write_text("user data")
    with pytest.raises(UsageError, match=message):
        check_output_folder(make(tmp_path), "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_a_writable_output_folder_is_not_created_by_the_check(tmp_path: Path) -> None:
    check_output_folder(tmp_path / "new" / "export", "--out")
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    (tmp_path / "labels.parquet").write_text("the table")
    with pytest.raises(UsageError, match=r"^--json .*labels.parquet: is .*labels.parquet, an input of this command; "
                                         "write to another file$"):
        check_output_file(tmp_path / "labels.parquet", "--json", [None, tmp_path / "labels.parquet"])


def test_atomic_writes_get_the_permissions_of_a_plain_new_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "report.html", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
