"""One writer per run folder: an OS lock on a file beside the folder, ``.NAME.lock``.

A command that writes a run folder (a run, a resume, a merge, a report, an analysis) takes the
folder's lock before it writes anything and keeps it until its files are in place. The lock is
``fcntl.flock`` on the lock file, which the kernel releases when its process ends however it
ends (SIGKILL included): a lock file left by a killed process is stale and taken over at once.
The file holds the holder's PID and host, which a refusal quotes. The lock file is removed on
release; a process that locked a file another then removed checks that the path still names
the file it locked, and tries again if not, so two processes never both hold one folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from mcrisk.errors import RunFolderError

# The locks this process holds, by the folder's absolute path (a run's stresses run inside its
# partial folder, in the same process: its own locks are not a live run in the way).
_HELD: dict[Path, FolderLock] = {}


def lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _key(folder: Path) -> Path:
    return Path(os.path.abspath(folder))


def holder(folder: Path) -> str | None:
    """Who holds `folder`'s lock ('process PID on HOST'), or None if nobody does (no lock file,
    or one whose process has ended). This process's own locks count as held."""
    if _key(folder) in _HELD:
        return f"this process ({os.getpid()})"
    path = lock_path(folder)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _who(fd)
    else:
        return None
    finally:
        os.close(fd)


def held_by_other(folder: Path) -> str | None:
    """Who holds `folder`'s lock if another process does ('process PID on HOST'), else None."""
    return None if _key(folder) in _HELD else holder(folder)


def _who(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if len(text) >= 2:
        return f"process {text[0]} on {text[1]}"
    return "another process"


class FolderLock:
    """The lock of the run folder `folder`, taken at once (RunFolderError naming the holder if another
    process has it); `what` says what the caller is about to do, for the message (`creating`, if
    given, where the lock file cannot be created: the output folder cannot be either)."""

    def __init__(self, folder: Path, what: str = "write", creating: str | None = None):
        self.folder = Path(folder)
        self.path = lock_path(self.folder)
        self._fd: int | None = None
        if _key(self.folder) in _HELD:
            raise RunFolderError(f"cannot {what} {str(self.folder)!r}: this process is already writing it")
        for _ in range(100):  # (only if another process removes the file between open and flock)
            fd = self._open(creating or what)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                who = _who(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunFolderError(
                        f"cannot {what} {str(self.folder)!r}: it is in use by {who} (its lock is "
                        f"{self.path.name}); wait for that process to finish, or stop it"
                    ) from None
                raise RunFolderError(f"cannot lock {str(self.folder)!r}: {exc.strerror or exc}") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        else:  # pragma: no cover (a lock file removed a hundred times in a row)
            raise RunFolderError(f"cannot lock {str(self.folder)!r}: its lock file keeps changing")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        _HELD[_key(self.folder)] = self

    def _open(self, what: str) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise RunFolderError(
                f"cannot {what} {str(self.folder)!r}: cannot create its lock file {str(self.path)!r} ({reason})"
            ) from None

    def release(self) -> None:
        """Remove the lock file and release the lock (again: nothing)."""
        if self._fd is None:
            return
        _HELD.pop(_key(self.folder), None)
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)  # (closing releases the flock)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def live_runs_around(folder: Path) -> list[str]:
    """The live runs (held locks of other processes or of this one) that `folder` contains, or is
    inside of (a folder or its partial folder): 'PATH (process PID on HOST)' each."""
    found = []
    target = Path(os.path.abspath(folder))
    for up in [target, *target.parents]:
        name = up.name
        if name.startswith(".") and name.endswith(".partial"):
            up = up.parent / name[1 : -len(".partial")]
        if up == target:
            continue
        who = held_by_other(up)
        if who is not None:
            found.append(f"{up} ({who})")
    if target.is_dir():
        for root, _dirs, files in os.walk(target):
            for f in files:
                if f.startswith(".") and f.endswith(".lock"):
                    inner = Path(root) / f[1 : -len(".lock")]
                    who = held_by_other(inner)
                    if who is not None:
                        found.append(f"{inner} ({who})")
            if len(found) > 4:
                break
    return found
