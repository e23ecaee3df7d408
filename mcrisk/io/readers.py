"""Reading back what mcrisk wrote (manifests, checkpoints, tables, Parquet parts), checked.

A file that is damaged, or is not what mcrisk wrote there, is named in a RunFolderError (exit 2)
with the reason, before anything uses it: never a traceback from wherever it would have failed.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from mcrisk.errors import RunFolderError, _shown, type_name
from mcrisk.io.folder import SHARD_STATE

NoneType = type(None)
# What reading a damaged or foreign file raises: OSError (unreadable, a folder), ValueError (bad
# JSON, CSV or text encoding, an .npz that is not one, Arrow's ArrowInvalid), a broken zip (.npz),
# Arrow's other errors.
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, pa.ArrowException)
RUN_MANIFEST = ("study_sha256", "options")  # the fields that make a manifest.json a run's


def check_folder(folder: Path) -> None:
    """RunFolderError unless `folder` is an existing folder."""
    if not folder.exists():
        raise RunFolderError(f"{str(folder)!r} is not a run folder (no such folder)")
    if not folder.is_dir():
        raise RunFolderError(f"{str(folder)!r} is not a run folder: it is a file, not a folder")


def damaged(file: Path, why: str, folder: Path | None = None, *, what: str = "not what mcrisk wrote") -> RunFolderError:
    """The error for a file that cannot be used: 'cannot read run folder DIR: FILE is damaged or WHAT (why)'."""
    if folder is None:
        return RunFolderError(f"cannot read {str(file)!r}: it is damaged or {what} ({why})")
    name = file.relative_to(folder) if file.is_relative_to(folder) else file
    return RunFolderError(f"cannot read run folder {str(folder)!r}: {name} is damaged or {what} ({why})")


def reason(exc: BaseException) -> str:
    """A read error as a short reason for a message."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not text (UTF-8)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return (text if len(text) <= 200 else text[:197] + "...") or type(exc).__name__


@contextmanager
def reading(file: Path, folder: Path | None = None, *, what: str = "not what mcrisk wrote") -> Iterator[None]:
    """Turn what reading `file` raises into RunFolderError naming it (and its run folder)."""
    try:
        yield
    except FileNotFoundError:
        if folder is None:
            raise RunFolderError(f"cannot read {str(file)!r}: no such file") from None
        name = file.relative_to(folder) if file.is_relative_to(folder) else file
        raise RunFolderError(f"cannot read run folder {str(folder)!r}: it has no {name}") from None
    except READ_ERRORS as exc:
        raise damaged(file, reason(exc), folder, what=what) from None


def _json_type(x: Any) -> str:
    kinds = {dict: "a JSON object", list: "a JSON array", str: "a string", bool: "true or false", NoneType: "null"}
    return kinds.get(type(x), "a number")


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:  # JSON true is not a count
        return False
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, types)


def field_problems(
    obj: Mapping[str, Any], required: Sequence[str] = (), types: Mapping[str, Any] | None = None, prefix: str = ""
) -> list[str]:
    """What is wrong with a JSON object's fields: those `required` that are missing, and those present
    whose value is not of the type `types` gives (a type or a tuple of types; NoneType allows null)."""
    problems = []
    missing = [f"'{prefix}{k}'" for k in required if k not in obj]
    if missing:
        problems.append(f"no field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for k, t in (types or {}).items():
        if k in obj and not _is(obj[k], t):
            problems.append(f"'{prefix}{k}' must be {type_name(t)}, got {_shown(obj[k])}")
    return problems


def read_json(file: Path, folder: Path | None = None, *, what: str = "not what mcrisk wrote") -> dict:
    """A JSON file that must hold an object (a manifest, a checkpoint); RunFolderError naming it otherwise."""
    with reading(file, folder, what=what):
        obj = json.loads(file.read_text())
    if not isinstance(obj, dict):
        raise damaged(file, f"{_json_type(obj)}, not an object", folder, what=what)
    return obj


def manifest_kind(m: Mapping[str, Any]) -> str:
    """Which of mcrisk's JSON files `m` is: 'run' (mcrisk run or merge: a whole run, a shard, a claim's or a
    sweep point's run), 'sweep' (mcrisk sweep's folder), 'checkpoint' (an interrupted run's, or a shard's
    reducer state), or 'unknown'."""
    if "next_chunk" in m and "arrays" in m:
        return "checkpoint"
    if "grid" in m and "points" in m:
        return "sweep"
    if "options" in m:
        return "run"
    return "unknown"


def _not_a_run(file: Path, kind: str) -> str:
    """Why `file` (of `kind`, not 'run') is not a run manifest, and which file to use instead."""
    if kind == "sweep":
        return (
            f"{str(file)!r} is a sweep's manifest (mcrisk sweep), not a run manifest: each point of the sweep "
            f"is a run folder with its own, e.g. {file.parent / 'points' / '000' / 'manifest.json'}"
        )
    holder = file.parent.parent
    if file.parent.name == SHARD_STATE:
        return (
            f"{str(file)!r} is a shard's reducer state (read by mcrisk merge), not a run manifest: "
            f"the shard's manifest is {holder / 'manifest.json'}"
        )
    if holder.name.startswith(".") and holder.name.endswith(".partial"):
        return (
            f"{str(file)!r} is an interrupted run's checkpoint, not a run manifest: continue that run with "
            f"mcrisk run --resume {holder.parent / holder.name[1 : -len('.partial')]}"
        )
    return f"{str(file)!r} is a run's checkpoint, not a run manifest"


def read_manifest(
    file: Path,
    folder: Path | None = None,
    *,
    required: Sequence[str] = RUN_MANIFEST,
    types: Mapping[str, Any] | None = None,
) -> dict:
    """A run's manifest.json, checked: a JSON object, of a run (not a sweep's or a checkpoint), with the
    `required` fields and the `types` given. `folder`: the run folder it belongs to, for the message."""
    what = "not what mcrisk wrote" if folder is not None else "not a run manifest"
    m = read_json(file, folder, what=what)
    kind = manifest_kind(m)
    if kind == "sweep" and folder is not None:
        raise RunFolderError(
            f"{str(folder)!r} is a sweep folder (mcrisk sweep), not a run folder: each point of the "
            f"sweep is a run folder, e.g. {folder / 'points' / '000'}"
        )
    if kind in ("sweep", "checkpoint"):
        raise RunFolderError(_not_a_run(file, kind))
    problems = field_problems(m, required, types)
    if problems:
        raise damaged(file, "; ".join(problems), folder, what=what)
    return m
