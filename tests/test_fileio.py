"""Safe inputs (regular files only, size cap, no blocking) and atomic, pre-checked outputs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from autolabel.errors import UsageError
from autolabel.fileio import InputError, atomic_write, check_output_file, read_regular, remove_stale_temps


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
