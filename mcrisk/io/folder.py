"""The run folder's life cycle: a hidden partial folder beside the destination, published atomically.

A run writes into a hidden folder beside its destination, ``.NAME.partial``, and renames it
into place only when every file is complete, so a killed run never leaves a folder that looks
finished. The partial folder holds checkpoints (reducer state at fixed chunk boundaries,
:mod:`mcrisk.io.checkpoint`) and the Parquet parts of every chunk (:mod:`mcrisk.io.parquet`),
which is what lets ``--resume`` continue a killed run.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from mcrisk.errors import RunFolderError
from mcrisk.io import atomic
from mcrisk.io.lock import FolderLock, live_runs_around

SCENARIOS_DIR = "scenarios.parquet"  # a folder of part-CCCCCC-KKK.parquet files: chunk C's parts K
CHECKPOINT_DIR = "checkpoint"
SHARD_STATE = "reducers"  # a shard's reducer state, kept in its run folder for `mcrisk merge`
MAX_NAME_BYTES = 200  # a run folder's name: 255 (NAME_MAX) less what .NAME.partial and .NAME.lock add


def partial_path(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a finished mcrisk folder (a run, merge or sweep): its manifest.json names a study hash."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "study_sha256" in manifest


def _is_empty_folder(path: Path) -> bool:
    try:
        return not any(path.iterdir())
    except OSError:
        return False


def is_partial_folder(path: Path) -> bool:
    """Whether `path` is an interrupted run's partial folder: its study.yaml or checkpoint, or
    nothing at all (a run killed right after creating it)."""
    return (path / "study.yaml").is_file() or (path / CHECKPOINT_DIR).is_dir() or _is_empty_folder(path)


def _check_destination(final: Path) -> None:
    """Refuse a destination that can never be published: the current folder or one that contains
    it (it cannot be renamed while a process works inside it), a path without a folder name, or
    one below a file."""
    try:
        target, cwd = final.resolve(), Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:
        raise RunFolderError(
            f"cannot use the output folder {str(final)!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if target == cwd or target in cwd.parents:
        raise RunFolderError(
            f"the output folder {str(final)!r} is the current folder or contains it, and cannot be replaced by a run; "
            "choose another folder with --out"
        )
    if len(final.name.encode()) > MAX_NAME_BYTES:
        raise RunFolderError(
            f"the output folder's name is {len(final.name.encode())} bytes long; at most {MAX_NAME_BYTES} "
            "(file systems take 255, less the run's .NAME.partial): choose a shorter one with --out"
        )
    if final.name in ("", ".."):
        raise RunFolderError(
            f"the output folder {str(final)!r} must end in a plain folder name (choose another with --out)"
        )
    for parent in final.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(
                f"cannot create the output folder {str(final)!r}: {str(parent)!r} is a file, not a folder"
            )


class RunFolder:
    """A destination folder and the hidden partial folder a run writes into first.

    Every check happens here, before anything is simulated: the destination must be a plain
    folder name outside the current folder's ancestry, may exist only with `force` and only as
    an mcrisk run folder (manifest.json) or an empty folder, and the partial folder must be
    creatable. Whatever cannot be used raises RunFolderError and leaves the disk as it was.
    """

    def __init__(self, out: str | Path, force: bool = False, resume: bool = False, inputs: Sequence[str | Path] = ()):
        self.final = Path(out)
        self.tmp = partial_path(self.final)
        self._keep = False
        _check_destination(self.final)
        check_inputs(self.final, inputs)
        if resume and not self.final.parent.is_dir():
            raise RunFolderError(
                f"nothing to resume at {str(self.final)!r}: no interrupted run ({self.tmp.name}) was found"
            )
        try:  # (where the lock file goes)
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot create the output folder {str(self.final)!r}: {_reason(exc)}") from None
        # One writer per folder, from here to publish (or discard): taken before anything is written.
        self.lock = FolderLock(self.final, "write the run folder", creating="create the output folder")
        try:
            self._open(force, resume)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, force: bool, resume: bool) -> None:
        live = live_runs_around(self.final)
        if live:
            raise RunFolderError(
                f"the output folder {str(self.final)!r} contains, or is inside, a run that is still being written: "
                f"{'; '.join(live)}; wait for it to finish or choose another folder with --out"
            )
        tidy(self.final, force)
        if resume:
            if not self.resumable():
                found = (
                    f"{self.tmp.name} holds no checkpoint: its run stopped before the first one, or is still "
                    "running; start it again with --force"
                    if self.tmp.is_dir()
                    else f"no interrupted run ({self.tmp.name}) was found"
                )
                raise RunFolderError(f"nothing to resume at {str(self.final)!r}: {found}")
            return
        if self.final.exists() and not self.final.is_dir():
            raise RunFolderError(f"{str(self.final)!r} exists and is not a folder")
        if self.final.exists() and not force:
            raise RunFolderError(
                f"the output folder {str(self.final)!r} already exists; pass --force to replace it "
                "(or choose another folder with --out)"
            )
        if self.final.is_dir() and not (is_run_folder(self.final) or _is_empty_folder(self.final)):
            raise RunFolderError(
                f"the output folder {str(self.final)!r} exists and is not an mcrisk run folder (it has no manifest.json); "
                "--force only replaces a run folder: choose another folder with --out"
            )
        if self.tmp.exists() and not force:
            raise RunFolderError(
                f"an interrupted run of {str(self.final)!r} is waiting in {self.tmp.name}; continue it with "
                f"--resume {self.final}, or pass --force to start over"
                if self.resumable()
                else f"a run of {str(self.final)!r} was started in {self.tmp.name} and has no checkpoint: it is still running, "
                "or stopped before its first one; pass --force to start over"
            )
        if self.tmp.exists() and not (self.tmp.is_dir() and is_partial_folder(self.tmp)):
            raise RunFolderError(
                f"{str(self.tmp)!r} is in the way of the run's partial folder and is not an interrupted mcrisk run; "
                "move it away or choose another folder with --out"
            )
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir()
        except OSError as exc:
            raise RunFolderError(f"cannot create the output folder {str(self.final)!r}: {_reason(exc)}") from None

    def path(self, name: str) -> Path:
        return self.tmp / name

    def write_study(self, text: str) -> None:
        """The run's study.yaml, its first file: a folder that cannot take it fails here, before any simulation."""
        try:
            self.path("study.yaml").write_text(text)
        except OSError as exc:
            self.discard()
            raise RunFolderError(f"cannot write into the output folder {str(self.final)!r}: {_reason(exc)}") from None

    def publish(self) -> Path:
        """Move the finished run into place (replacing an old one only now, at the very end).

        If the rename fails, the old folder is put back and the finished run stays in the
        partial folder (RunFolderError says where): nothing is lost. The checkpoint goes last, from
        the published folder: until the rename, an interrupted run can still be resumed."""
        old = None
        try:
            atomic.fsync_tree(self.tmp)  # the files, then the rename, durable against a host crash
            if self.final.exists():
                old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
                self.final.rename(old)
            self.tmp.rename(self.final)
            atomic.fsync_folder(self.final.parent)
        except OSError as exc:
            if old is not None and not self.final.exists():
                try:
                    old.rename(self.final)
                except OSError:
                    pass
            self._keep = True
            raise RunFolderError(
                f"cannot move the finished run into {str(self.final)!r}: {_reason(exc)}; "
                f"it is kept in {str(self.tmp)!r}"
            ) from None
        shutil.rmtree(self.final / CHECKPOINT_DIR, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        tidy(self.final, True)
        self.lock.release()
        return self.final

    @property
    def kept(self) -> bool:
        """Whether the partial folder is kept whatever happens (a finished run that could not be moved into place)."""
        return self._keep

    def resumable(self) -> bool:
        """Whether the partial folder holds a checkpoint `--resume` can continue from (its JSON
        is written last: a checkpoint is complete or absent)."""
        return (self.tmp / CHECKPOINT_DIR / "checkpoint.json").is_file()

    def discard(self) -> None:
        if not self._keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.lock.release()

    def release(self) -> None:
        """Let another process write the folder (the partial folder stays as it is, for --resume)."""
        self.lock.release()


def check_inputs(final: Path, inputs: Sequence[str | Path]) -> None:
    """Refuse an output folder that is, contains or is inside one of the command's `inputs` (a study
    file, a manifest, a shard being merged): replacing it would destroy what it reads."""
    target = Path(os.path.abspath(final))
    for given in inputs:
        src = Path(os.path.abspath(given))
        if src == target or target in src.parents or src in target.parents:
            where = "is" if src == target else "contains" if target in src.parents else "is inside"
            raise RunFolderError(
                f"the output folder {str(final)!r} {where} the input {str(given)!r}, which writing it would "
                "destroy; choose another folder with --out"
            )


def tidy(final: Path, replacing: bool) -> None:
    """Remove what killed processes left around the run folder `final` (its lock held): a published
    folder's checkpoint/ (killed after the rename), report and table temporaries inside it, and
    the old folder a publish set aside (``.NAME.old-PID``) once `final` is there again or is
    being replaced (`replacing`). Never follows a symlink; what cannot be removed stays."""
    if replacing or final.is_dir():
        for old in final.parent.glob(f".{glob.escape(final.name)}.old-*"):
            _remove(old)
    if final.is_dir() and not final.is_symlink() and (final / "manifest.json").is_file():
        _remove(final / CHECKPOINT_DIR)
        for leftover in (*final.glob(".figures.tmp-*"), *final.glob(".*.tmp-*")):
            _remove(leftover)


def _remove(path: Path) -> None:
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
    except OSError:
        pass


def _reason(exc: OSError) -> str:
    """An OSError as a short reason, with the path it concerns when that is not the one in the message."""
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason
