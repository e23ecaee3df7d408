"""Checking a run folder against what it records: ``mcrisk verify``, ``--resume`` and ``mcrisk merge``.

A finished folder's manifest.json records the study's hash, the size and SHA-256 of every
output and the rows, size and SHA-256 of every Parquet part; a checkpoint records the study's
hash and the parts written before it. :func:`verify_run` checks a finished folder end to end
and returns what is wrong, one sentence each (nothing: the folder is what its run wrote);
:func:`check_partial` checks an interrupted run's partial folder before ``--resume`` continues
it; :func:`listed_parts` gives the parts a reader may read, refusing a folder whose parts are
not those its manifest lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mcrisk.errors import RunFolderError, StudyError
from mcrisk.io.folder import CHECKPOINT_DIR, SCENARIOS_DIR
from mcrisk.io.integrity import (
    check_files,
    check_parts,
    chunks_of,
    part_chunk,
    parts_on_disk,
    record_problems,
)
from mcrisk.io.lock import held_by_other
from mcrisk.io.readers import check_folder, damaged, read_manifest, reading
from mcrisk.study.schema import Study, load_study


def _shard_range(options: Mapping[str, Any], n_chunks: int) -> tuple[int, int]:
    shard = options.get("shard")
    i, k = (shard[0], shard[1]) if isinstance(shard, list) and len(shard) == 2 else (0, 1)
    return i * n_chunks // k, (i + 1) * n_chunks // k


def _chunk_problems(have: set[int], want: range) -> list[str]:
    missing, extra = sorted(set(want) - have), sorted(have - set(want))
    out = []
    if missing:
        out.append(f"no part of chunk(s) {', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
    if extra:
        out.append(
            f"parts of chunk(s) {', '.join(map(str, extra[:5]))}{' ...' if len(extra) > 5 else ''} outside this run's "
            f"chunks {want.start}-{want.stop - 1}"
        )
    return out


def _study_problem(folder: Path, sha: Any, what: str) -> tuple[Study | None, str | None]:
    try:
        st = load_study(folder / "study.yaml")
    except (StudyError, RunFolderError, OSError) as exc:
        return None, f"study.yaml cannot be read as a study ({str(exc).splitlines()[0]})"
    if st.digest() != sha:
        return st, f"study.yaml is not the study {what} was written for (its hash differs): it was changed"
    return st, None


def check_partial(tmp: Path, meta: Mapping[str, Any]) -> Study:
    """The study of an interrupted run's partial folder `tmp` whose checkpoint is `meta` (already
    read and typed), after checking that the study is the one the checkpoint was written for, that
    next_chunk lies in the run's chunks, and that the parts the checkpoint lists (those of every
    chunk before next_chunk) are on disk as written. Parts of later chunks (written after the
    checkpoint) are removed: the resumed run writes them again. RunFolderError naming what is wrong."""
    ck = tmp / CHECKPOINT_DIR / "checkpoint.json"
    st, problem = _study_problem(tmp, meta.get("study_sha256"), "the checkpoint")
    if problem:
        raise RunFolderError(f"cannot resume from {str(tmp)!r}: {problem}")
    parts = meta.get("parts")
    problems = record_problems(parts, "parts", part=True) if "parts" in meta else ["no field 'parts'"]
    n_chunks, nxt = meta.get("n_chunks"), meta["next_chunk"]
    if not isinstance(n_chunks, int) or isinstance(n_chunks, bool):
        problems.append("'n_chunks' must be a whole number")
    if problems:
        raise damaged(ck, "; ".join(problems), tmp)
    lo, hi = _shard_range(meta["options"], n_chunks)
    if not lo <= nxt <= hi:
        raise damaged(ck, f"next_chunk {nxt} is outside the run's chunks {lo}-{hi - 1}", tmp)
    want = range(lo, nxt) if meta["options"].get("write_scenarios", True) else range(0)
    problems = _chunk_problems(chunks_of(parts), want)
    if problems:
        raise damaged(ck, "its parts do not match next_chunk " + str(nxt) + ": " + "; ".join(problems), tmp)
    for name in parts_on_disk(tmp):
        chunk = part_chunk(name)
        if name not in parts and chunk is not None and chunk >= nxt:
            (tmp / SCENARIOS_DIR / name).unlink(missing_ok=True)
    problems = check_parts(tmp, parts)
    if problems:
        raise RunFolderError(
            f"cannot resume from {str(tmp)!r}: its parts are not those its checkpoint recorded: {'; '.join(problems)}"
        )
    return st


def _manifest_problems(m: Mapping[str, Any]) -> list[str]:
    problems = record_problems(m.get("parts"), "parts", part=True) if "parts" in m else []
    problems += record_problems(m.get("files"), "files", part=False) if "files" in m else []
    if "parts" not in m or "files" not in m:
        problems.append("it records no parts or files (written by an older mcrisk: run it again to verify it)")
    return problems


def _expected_chunks(m: Mapping[str, Any]) -> tuple[range, int | None]:
    """The chunks a run's parts must cover and its rows (None where --sample-fraction leaves them to chance)."""
    C, opts = m.get("chunk_size"), m.get("options") or {}
    if not isinstance(C, int) or C <= 0 or not isinstance(m.get("scenarios"), int):
        return range(0), None
    shard = m.get("shard")
    if isinstance(shard, dict) and isinstance(shard.get("chunks"), list) and len(shard["chunks"]) == 2:
        lo, hi = shard["chunks"]
        total = opts.get("scenarios", m["scenarios"])
    else:
        lo, hi, total = 0, -(-m["scenarios"] // C), m["scenarios"]
    scenarios = sum(min(C, total - c * C) for c in range(lo, hi))
    systems = m.get("systems") if isinstance(m.get("systems"), list) else []
    rows = scenarios * len(systems) if opts.get("sample_fraction") is None else None
    return range(lo, hi), rows


def _parts_problems(folder: Path, m: Mapping[str, Any], full: bool) -> list[str]:
    parts = m["parts"]
    problems = check_parts(folder, parts, full=full)
    if not (m.get("outputs") or {}).get("scenarios"):
        return problems + ([f"it kept no scenarios, yet lists {len(parts)} part(s)"] if parts else [])
    want, rows = _expected_chunks(m)
    problems += [f"{SCENARIOS_DIR}: {p}" for p in _chunk_problems(chunks_of(parts), want)]
    have = sum(r["rows"] for r in parts.values())
    if rows is not None and have != rows:
        problems.append(f"{SCENARIOS_DIR} records {have:,} rows where {m['scenarios']:,} scenarios make {rows:,}")
    return problems


def verify_run(folder: str | Path) -> list[str]:
    """What is wrong with the finished run folder `folder` against its manifest (nothing: it verifies).

    Checks that no process is writing it, that nothing a killed process left is inside it, that
    study.yaml is the study of the manifest's hash, that every recorded file has its size and
    SHA-256, and that scenarios.parquet/ holds exactly the parts listed, each as written, covering
    the run's chunks with the rows its scenarios make."""
    folder = Path(folder)
    check_folder(folder)
    who = held_by_other(folder)
    problems = [f"it is being written by {who}"] if who else []
    m = read_manifest(folder / "manifest.json", folder)
    problems += [f"manifest.json: {p}" for p in _manifest_problems(m)]
    if problems:
        return problems
    _, problem = _study_problem(folder, m["study_sha256"], "the manifest")
    problems += [problem] if problem else []
    problems += check_files(folder, m["files"])
    problems += _parts_problems(folder, m, full=True)
    leftovers = [p.name for p in (folder / CHECKPOINT_DIR, *folder.glob(".*.tmp-*")) if p.exists()]
    if leftovers:
        problems.append(f"it holds what a killed process left: {', '.join(leftovers)}")
    return problems


def listed_parts(folder: Path, manifest: Mapping[str, Any]) -> list[Path]:
    """The Parquet parts a reader of the finished run `folder` may read: those its manifest lists,
    in scenario order, after checking that they are the parts on disk with the sizes written (a
    manifest of an mcrisk that recorded none: every part on disk; a folder whose scenarios.parquet/
    is gone altogether: none, as for a run that kept no scenarios). RunFolderError if not, naming
    a part that cannot be read as Parquet by what is wrong with it."""
    if "parts" not in manifest:
        return [folder / SCENARIOS_DIR / n for n in parts_on_disk(folder)]
    problems = record_problems(manifest["parts"], "parts", part=True)
    if problems:
        raise damaged(folder / "manifest.json", "; ".join(problems), folder)
    if not (folder / SCENARIOS_DIR).is_dir():
        return []
    problems = check_parts(folder, manifest["parts"], full=False)
    if problems:
        for name in manifest["parts"]:  # a part that is not Parquet at all is named for that
            path = folder / SCENARIOS_DIR / name
            if path.is_file():
                with reading(path, folder):
                    pq.ParquetFile(path).close()
        raise RunFolderError(
            f"the parts of {str(folder)!r} are not those its manifest lists: {'; '.join(problems)} "
            f"(mcrisk verify {folder} checks the whole folder)"
        )
    return [folder / SCENARIOS_DIR / n for n in sorted(manifest["parts"])]
