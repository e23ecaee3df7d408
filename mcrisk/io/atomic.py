"""Atomic, durable file writes: the one helper every file mcrisk writes goes through.

A file is written under a hidden temporary name in its own folder, flushed and fsynced, renamed
over the target, and the folder is fsynced so that the rename itself is on disk. A reader then
sees the old file or the new one, never a part; and after a host crash (power, kernel panic:
unlike a SIGKILL, these lose what the page cache held) a checkpoint or manifest is whole or
absent, not empty.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Make the entries of `folder` (a rename into it) durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """fsync `tmp`, rename it over `path`, fsync the folder."""
    _fsync_file(tmp)
    os.replace(tmp, path)
    fsync_folder(path.parent)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path` to write; on a clean exit it replaces `path` durably, and on
    an error it is removed. Hidden (a leading dot), so Parquet readers of the folder skip it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: Path | str, writer: Callable[[Path], object]) -> None:
    """`writer(tmp)` writes the file (pandas' to_csv, pyarrow's write_table); then it replaces `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (cheap for files already synced): before a
    finished run folder is renamed into place, so that what the rename publishes is on disk."""
    for path in sorted(Path(folder).rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            _fsync_file(path)
        elif path.is_dir():
            fsync_folder(path)
    fsync_folder(Path(folder))
