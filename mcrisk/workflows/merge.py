"""`mcrisk merge`: the shard folders of one run (`mcrisk run --shard i/k`, or `--shard auto`
under `jax.distributed`: mcrisk.engine.cluster) combined into the run folder a single job would write."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from mcrisk._x64 import enable_float64
from mcrisk.engine.options import RunOptions
from mcrisk.engine.plan import make_plan
from mcrisk.engine.state import merge_states, missing_arrays, state_from
from mcrisk.engine.timings import Timings
from mcrisk.errors import RunFolderError
from mcrisk.io.checkpoint import load_checkpoint
from mcrisk.io.folder import SCENARIOS_DIR, SHARD_STATE, RunFolder, check_inputs
from mcrisk.io.integrity import copy_digest
from mcrisk.io.lock import FolderLock
from mcrisk.io.readers import check_folder, damaged, field_problems, read_manifest
from mcrisk.io.verify import verify_run
from mcrisk.study.schema import load_study
from mcrisk.workflows.publish import RunResult, finish

# The manifest fields a merge reads from each shard's, with their JSON types.
_NEEDED = ("study_sha256", "options", "shard", "seconds", "chunks", "chunk_size")
_TYPES = {"options": dict, "shard": (dict, type(None)), "seconds": dict, "chunks": int, "chunk_size": int}
# The manifest keys every shard must share, as the message names them when they differ.
_PLURAL = {
    "study_sha256": "studies",
    "seed": "seeds",
    "scenarios": "scenario counts",
    "chunk_size": "chunk sizes",
    "month_loop_unroll": "month loop unrolls",
}


def merge_runs(folders: Sequence[str | Path], *, out: str | Path, force: bool = False) -> RunResult:
    """Combine the k shard folders of one run into the run folder a single job would write.

    Counts, exceedance probabilities and the quantile sketch merge exactly; means and sds are
    merged with Chan's formulas in shard order, equal to a single run's to float64 rounding
    (about 1e-15 relative); Parquet parts are copied; ESS/MCSE come from the same first
    scenarios as in a single run.
    """
    enable_float64()
    t_total = time.perf_counter()
    if not folders:
        raise RunFolderError("merge needs the run folders of the shards (mcrisk run --shard i/k)")
    if Path(out).resolve() in {Path(f).resolve() for f in folders}:
        raise RunFolderError(
            f"the output folder {str(out)!r} is one of the shards being merged; choose another with --out"
        )
    check_inputs(Path(out), folders)
    locks: list[FolderLock] = []
    try:  # no shard changes while it is read: each is locked, as the output is
        for f in dict.fromkeys(Path(f) for f in folders):
            if Path(f).is_dir():
                locks.append(FolderLock(Path(f), "merge the shard"))
        return _merge(_read_shards(folders), out, force, t_total)
    finally:
        for lock in locks:
            lock.release()


def _merge(shards: list[tuple[dict, dict, Path]], out: str | Path, force: bool, t_total: float) -> RunResult:
    """The merged run of the checked `shards` (in shard order), published into `out`."""
    first = shards[0][0]
    st = load_study(shards[0][2] / "study.yaml")
    opts = RunOptions.from_record(first["options"]).replace(shard=None)
    plan = make_plan(
        st,
        scenarios=opts.scenarios,
        seed=opts.seed,
        precision=opts.precision,
        chunk_size=opts.chunk_size,
        monthly=opts.monthly,
    )
    folder = RunFolder(out, force=force)
    try:
        folder.write_study(st.to_yaml())
        state = None
        for _, arrays, _ in shards:
            s = state_from(arrays)
            state = s if state is None else merge_states(state, s)
        n_diag = min(opts.scenarios, max(opts.diagnostic_draws, 0))
        state.retained = state.retained[:, :n_diag]
        records: dict[str, dict] = {}
        if opts.write_scenarios:
            parts = folder.path(SCENARIOS_DIR)
            parts.mkdir()
            for m, _, path in shards:
                for name, record in sorted(m["parts"].items()):  # the parts verified, copied as verified
                    if copy_digest(path / SCENARIOS_DIR / name, parts / name) != (record["bytes"], record["sha256"]):
                        raise RunFolderError(f"{path / SCENARIOS_DIR / name} changed while it was merged")
                    records[name] = record
        times = Timings.summed([m["seconds"] for m, _, _ in shards])
        extra = {
            "chunk_size": first["chunk_size"],
            "month_loop_unroll": first.get("month_loop_unroll"),
            "monthly_scenarios": first.get("monthly_scenarios"),
            "chunks": first["chunks"],
            "merged_from": [str(p) for _, _, p in shards],
            "parts": records,
        }
        return finish(st, plan, folder, opts, state, times, t_total, extra)
    except BaseException:
        folder.discard()
        raise


def _read_shards(folders: Sequence[str | Path]) -> list[tuple[dict, dict, Path]]:
    """(manifest, reducer arrays, folder) of each shard, in shard order; RunFolderError naming the
    folder that is not a shard, is damaged, belongs to another run, or is missing or repeated."""
    shards = []
    for f in folders:
        path = Path(f)
        check_folder(path)
        if not (path / "manifest.json").is_file():
            raise RunFolderError(
                f"{str(path)!r} is not a shard run folder (mcrisk run --shard i/k): it has no manifest.json"
            )
        m = read_manifest(path / "manifest.json", path, required=_NEEDED, types=_TYPES)
        if not m.get("shard"):  # a whole run (or a merged one): read first, it has no reducer state to load
            raise RunFolderError(f"{str(path)!r} is a whole run, not a shard (run it with --shard i/k)")
        problems = field_problems(m["shard"], ("index", "count"), {"index": int, "count": int}, prefix="shard.")
        problems += RunOptions.record_problems(m["options"])
        if problems:
            raise damaged(path / "manifest.json", "; ".join(problems), path)
        problems = verify_run(path)
        if problems:
            raise RunFolderError(f"the shard {str(path)!r} is not what its run wrote: {'; '.join(problems)}")
        meta, arrays = load_checkpoint(path, name=SHARD_STATE)
        if meta["next_chunk"] != m["shard"].get("chunks", [None, None])[-1]:
            raise damaged(path / SHARD_STATE / "checkpoint.json", "its reducers are not this shard's", path)
        if missing_arrays(arrays):
            raise damaged(
                path / SHARD_STATE / meta["arrays"], f"no array {', '.join(map(repr, missing_arrays(arrays)))}", path
            )
        shards.append((m, arrays, path))
    shards.sort(key=lambda s: s[0]["shard"]["index"])
    first = shards[0][0]
    k = first["shard"]["count"]
    same = tuple(_PLURAL)
    for m, _, path in shards:
        bad = [key for key in same if m.get(key) != first.get(key)]
        if bad or {o: v for o, v in m["options"].items() if o != "shard"} != {
            o: v for o, v in first["options"].items() if o != "shard"
        }:
            differ = ", ".join(_PLURAL[key] for key in bad) or "options"
            raise RunFolderError(f"{path} is a shard of another run ({differ} differ)")
    if sorted(m["shard"]["index"] for m, _, _ in shards) != list(range(k)) or any(
        m["shard"]["count"] != k for m, _, _ in shards
    ):
        have = sorted(m["shard"]["index"] for m, _, _ in shards)
        raise RunFolderError(f"need each of the {k} shards exactly once, got shards {have}")
    n_chunks = first["chunks"]
    for i, (m, _, path) in enumerate(shards):  # disjoint slices covering every chunk, as --shard i/k cuts them
        if m["shard"].get("chunks") != [i * n_chunks // k, (i + 1) * n_chunks // k]:
            raise RunFolderError(
                f"{path} holds chunks {m['shard'].get('chunks')}, not those of shard {i}/{k} of {n_chunks} chunks"
            )
    return shards
