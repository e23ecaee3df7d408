"""What a run folder holds, content-addressed: every Parquet part's rows, size and SHA-256, and
every other output's size and SHA-256, as the checkpoint and manifest.json record them.

A record is ``{"rows": int, "bytes": int, "sha256": str}`` for a part (named by its file name in
``scenarios.parquet/``), ``{"bytes": int, "sha256": str}`` for a file (by its path in the
folder). The checks here return what is wrong, one sentence per problem, naming the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mcrisk.io.folder import CHECKPOINT_DIR, SCENARIOS_DIR

PART_NAME = re.compile(r"^part-(\d{6,})-(\d{3,})\.parquet$")
# Files of a run folder that later commands rewrite (mcrisk analyze, mcrisk report [--pdf]): not recorded.
REWRITTEN = ("manifest.json", "sensitivity.csv", "comparison.csv", "report.html", "report.pdf")
_BLOCK = 1 << 20


def digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file, read in blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def copy_digest(src: Path, dst: Path) -> tuple[int, str]:
    """Copy `src` to `dst` and return the (size, SHA-256) of what was copied (read once)."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as f, open(dst, "wb") as g:
        while block := f.read(_BLOCK):
            h.update(block)
            g.write(block)
            size += len(block)
    shutil.copystat(src, dst)
    return size, h.hexdigest()


def part_chunk(name: str) -> int | None:
    """The chunk a part's file name says it holds, or None if it is not a part's name."""
    m = PART_NAME.match(name)
    return int(m.group(1)) if m else None


def record_files(folder: Path) -> dict[str, dict]:
    """The size and SHA-256 of every file of a finished run in `folder` but its parts, its
    checkpoint and the files later commands rewrite, by path in the folder (sorted)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if d not in (SCENARIOS_DIR, CHECKPOINT_DIR, "figures")]
        for f in files:
            rel = (rel_root / f).as_posix()
            if rel in REWRITTEN or f.startswith("."):
                continue
            size, sha = digest(Path(root) / f)
            out[rel] = {"bytes": size, "sha256": sha}
    return dict(sorted(out.items()))


def _is_record(r: Any, part: bool) -> bool:
    keys = {"bytes": int, "sha256": str, **({"rows": int} if part else {})}
    return isinstance(r, Mapping) and all(
        isinstance(r.get(k), t) and not isinstance(r.get(k), bool) for k, t in keys.items()
    )


def record_problems(records: Any, what: str, part: bool) -> list[str]:
    """What is wrong with a `records` object as JSON holds it (not a mapping of records)."""
    if not isinstance(records, Mapping):
        return [f"'{what}' must be an object of file records"]
    bad = [str(k) for k, r in records.items() if not _is_record(r, part)]
    if bad:
        return [f"'{what}' has malformed records for {', '.join(bad[:3])}"]
    return []


def check_files(folder: Path, records: Mapping[str, Mapping], *, full: bool = True) -> list[str]:
    """The recorded files of `folder` that are missing, of another size, or (with `full`) of another SHA-256."""
    problems = []
    for rel, r in records.items():
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"the manifest names {rel!r}, which is not inside the run folder")
            continue
        if not path.is_file():
            problems.append(f"{rel} is missing")
            continue
        size = path.stat().st_size
        if size != r["bytes"]:
            problems.append(f"{rel} has {size:,} bytes where {r['bytes']:,} were written")
        elif full and digest(path)[1] != r["sha256"]:
            problems.append(f"{rel} does not have the SHA-256 that was written (it was changed)")
    return problems


def parts_on_disk(folder: Path) -> list[str]:
    """The names of the Parquet parts in `folder`'s scenarios.parquet/ (sorted): every visible file."""
    d = folder / SCENARIOS_DIR
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))


def check_parts(folder: Path, records: Mapping[str, Mapping], *, full: bool = True) -> list[str]:
    """What is wrong with `folder`'s parts against their `records`: a part missing, one that is
    not listed (a foreign part), one of another size, or (with `full`) of other contents."""
    on_disk = set(parts_on_disk(folder))
    problems = []
    extra = sorted(on_disk - set(records))
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        problems.append(f"{SCENARIOS_DIR}/ holds part(s) it did not write: {shown}")
    named = {f"{SCENARIOS_DIR}/{name}": r for name, r in records.items()}
    bad_names = [name for name in records if part_chunk(name) is None]
    if bad_names:
        problems.append(f"the record names {', '.join(bad_names[:3])}, which are not part names")
        return problems
    return problems + check_files(folder, named, full=full)


def chunks_of(records: Iterable[str]) -> set[int]:
    """The chunks the parts named `records` hold."""
    return {c for c in (part_chunk(n) for n in records) if c is not None}
