"""The run folder: scenario Parquet, summary tables, ArviZ NetCDF, manifest; published atomically.

A run writes into a hidden folder beside its destination, ``.NAME.partial``, and renames it
into place only when every file is complete, so a killed run never leaves a folder that looks
finished. The partial folder holds checkpoints (reducer state at fixed chunk boundaries) and
the Parquet parts of every chunk, which is what lets ``--resume`` continue a killed run.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mcrisk.engine.plan import METRICS, PLAIN_SYSTEM_FIELDS, Plan
from mcrisk.errors import RunFolderError
from mcrisk.io.readers import damaged, field_problems, read_json, reading

SCENARIOS_DIR = "scenarios.parquet"  # a folder of part-CCCCCC-KKK.parquet files: chunk C's parts K
# Rows per Parquet part at most: a chunk is cut into parts of whole scenarios, written by several
# threads at once. 262,144 rows of the default study's 56 columns are 60 MB in Arrow.
PART_ROWS = 1 << 18
# Columns whose Parquet statistics (each row group's min and max) are written: the index columns,
# by which a reader finds a scenario's rows without reading the rest. The metrics and inputs
# get none: their rows are in scenario order, so every part spans nearly their whole range and
# min/max would let no reader skip a part; computing them took 30% of the encoding (a 2-core CPU).
STATISTICS_COLUMNS = ["scenario", "system"]
CHECKPOINT_DIR = "checkpoint"
SHARD_STATE = "reducers"  # a shard's reducer state, kept in its run folder for `mcrisk merge`


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
        raise RunFolderError(f"cannot use the output folder {str(final)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if target == cwd or target in cwd.parents:
        raise RunFolderError(
            f"the output folder {str(final)!r} is the current folder or contains it, and cannot be replaced by a run; "
            "choose another folder with --out"
        )
    if final.name in ("", ".."):
        raise RunFolderError(f"the output folder {str(final)!r} must end in a plain folder name (choose another with --out)")
    for parent in final.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"cannot create the output folder {str(final)!r}: {str(parent)!r} is a file, not a folder")


class RunFolder:
    """A destination folder and the hidden partial folder a run writes into first.

    Every check happens here, before anything is simulated: the destination must be a plain
    folder name outside the current folder's ancestry, may exist only with `force` and only as
    an mcrisk run folder (manifest.json) or an empty folder, and the partial folder must be
    creatable. Whatever cannot be used raises RunFolderError and leaves the disk as it was.
    """

    def __init__(self, out: str | Path, force: bool = False, resume: bool = False):
        self.final = Path(out)
        self.tmp = partial_path(self.final)
        self._keep = False
        _check_destination(self.final)
        if resume:
            if not self.resumable():
                found = (f"{self.tmp.name} holds no checkpoint: its run stopped before the first one, or is still "
                         "running; start it again with --force" if self.tmp.is_dir() else f"no interrupted run ({self.tmp.name}) was found")
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
                f"--resume {self.final}, or pass --force to start over" if self.resumable() else
                f"a run of {str(self.final)!r} was started in {self.tmp.name} and has no checkpoint: it is still running, "
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
            if self.final.exists():
                old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
                self.final.rename(old)
            self.tmp.rename(self.final)
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


def _reason(exc: OSError) -> str:
    """An OSError as a short reason, with the path it concerns when that is not the one in the message."""
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason


def write_json(path: Path, obj: Any, *, strict: bool = False) -> None:
    """Write JSON atomically (a temporary file renamed over the target). `strict`: a number that is
    not finite is written as null, since JSON has none (Python writes Infinity and NaN, which it
    reads back, but jq and JavaScript refuse): for the manifests users read; a checkpoint, read by
    mcrisk alone, keeps them exactly."""
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(_finite_or_null(obj) if strict else obj, indent=2, sort_keys=False, default=_json_default,
                      allow_nan=not strict)
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def _finite_or_null(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: _finite_or_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_null(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite_or_null(x.tolist())
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(folder: Path, meta: dict, arrays: Mapping[str, np.ndarray], name: str = CHECKPOINT_DIR) -> None:
    """Arrays first, then the JSON that names them: a checkpoint is complete or absent."""
    d = folder / name
    d.mkdir(exist_ok=True)
    name = f"state-{meta['next_chunk']:06d}.npz"
    with open(d / (name + ".tmp"), "wb") as f:
        np.savez(f, **arrays)
    os.replace(d / (name + ".tmp"), d / name)
    write_json(d / "checkpoint.json", dict(meta, arrays=name))
    for old in d.glob("state-*.npz"):
        if old.name != name:
            old.unlink()


def load_checkpoint(folder: Path, name: str = CHECKPOINT_DIR) -> tuple[dict, dict[str, np.ndarray]]:
    """A checkpoint's JSON and arrays; RunFolderError naming the file (in `folder`) that is damaged."""
    d = folder / name
    meta = read_json(d / "checkpoint.json", folder)
    problems = field_problems(meta, ("arrays", "next_chunk"), {"arrays": str, "next_chunk": int})
    if problems:
        raise damaged(d / "checkpoint.json", "; ".join(problems), folder)
    path = d / meta["arrays"]
    with reading(path, folder), open(path, "rb") as f:
        if not zipfile.is_zipfile(f):  # (np.load would take it for a pickle)
            raise damaged(path, "not an .npz archive", folder)
        f.seek(0)
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
    return meta, arrays


# --------------------------------------------------------------------------- scenario rows


def writer_threads() -> int:
    """Parquet writer threads: one per core beyond the first, at least 1 and at most 16."""
    return max(1, min(16, (os.cpu_count() or 2) - 1))


def part_scenarios(n_systems: int) -> int:
    """Scenarios per Parquet part: :data:`PART_ROWS` rows of `n_systems` rows per scenario."""
    return max(1, PART_ROWS // max(1, n_systems))


class ScenarioWriter:
    """Writes the scenario rows of each chunk as Parquet parts, from a pool of threads.

    Chunk c's scenarios at offsets [k P, (k + 1) P) go to ``scenarios.parquet/part-CCCCCC-KKK.parquet``
    (P = `per_part` scenarios), so the parts a chunk is cut into depend only on the chunk and
    the study, and a resumed run writes the same parts under the same names. The numbers are
    zero-padded to at least 6 and 3 digits, more if the run's `chunks` or the parts of a chunk of
    `chunk_size` scenarios need them, so that the names sort in scenario order. Each part is
    assembled into rows (`rows(start, sel, host)` -> columns; a :class:`HostBlock` `host` is
    waited for first, in `wait_seconds`) and encoded by one of `threads`
    threads (numpy and pyarrow release the GIL for both), written under a temporary name and
    renamed: a part is complete or absent. The parts of one chunk are written at once, while
    the next chunks are simulated; at most `threads` parts wait in the queue, which bounds
    memory. `busy_seconds`: the threads' time, summed over threads, plus the caller's time
    handing parts over (waiting for room in the queue when writing is the bottleneck).
    """

    def __init__(self, folder: Path, schema: pa.Schema, metadata: Mapping[str, str],
                 rows: Callable[[int, np.ndarray, Any], Mapping[str, Any]], per_part: int, chunks: int, chunk_size: int,
                 threads: int | None = None):
        self.folder = folder
        folder.mkdir(exist_ok=True)
        self.schema = schema.with_metadata({k: str(v) for k, v in metadata.items()})
        self.rows, self.per_part = rows, per_part
        self._widths = (max(6, len(str(chunks - 1))), max(3, len(str(-(-chunk_size // per_part) - 1))))
        self.threads = threads or writer_threads()
        self._queue: queue.Queue = queue.Queue(maxsize=self.threads)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.busy_seconds = 0.0
        self.wait_seconds = 0.0  # the part of busy_seconds spent waiting for HostBlocks' copies
        self._pool = [threading.Thread(target=self._loop, name=f"mcrisk-parquet-{k}", daemon=True) for k in range(self.threads)]
        for t in self._pool:
            t.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    t0 = time.perf_counter()
                    name, start, sel, host = item
                    if isinstance(host, HostBlock):
                        host = host.get()
                        with self._lock:
                            self.wait_seconds += time.perf_counter() - t0
                    columns = self.rows(start, sel, host)
                    arrays = [c if isinstance(c := columns[f.name], pa.Array) else pa.array(c, type=f.type) for f in self.schema]
                    path = self.folder / name
                    tmp = path.with_name(f".{path.name}.tmp")  # hidden: Parquet readers skip it
                    pq.write_table(pa.Table.from_arrays(arrays, schema=self.schema), tmp, compression="snappy",
                                   use_dictionary=["system"], write_statistics=STATISTICS_COLUMNS)
                    os.replace(tmp, path)
                    with self._lock:
                        self.busy_seconds += time.perf_counter() - t0
            except BaseException as exc:  # surfaced in put()/drain()/close()
                self._error = exc
            finally:
                self._queue.task_done()

    def put(self, chunk: int, start: int, valid: int, sel: np.ndarray, host: Any) -> None:
        """Queue the rows of chunk `chunk` (first scenario `start`, `valid` scenarios): scenarios
        at offsets `sel` (ascending) of the chunk, from the host arrays `host`, one part per
        `per_part` offsets. Waits while `threads` parts are queued."""
        if self._error is not None:
            raise self._error
        t0 = time.perf_counter()
        n_parts = max(1, -(-valid // self.per_part))
        cuts = np.searchsorted(sel, np.arange(1, n_parts) * self.per_part)
        for k, part in enumerate(np.split(sel, cuts)):
            self._queue.put((f"part-{chunk:0{self._widths[0]}d}-{k:0{self._widths[1]}d}.parquet", start, part, host))
        with self._lock:
            self.busy_seconds += time.perf_counter() - t0

    def drain(self) -> None:
        """Wait until every chunk handed over so far is on disk."""
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        for _ in self._pool:
            self._queue.put(None)
        for t in self._pool:
            t.join()
        if self._error is not None:
            raise self._error


def scenario_fields(plan: Plan, storage_dtype) -> list[pa.Field]:
    """The Parquet schema of scenario rows: scenario, system, every metric, every input (docs/outputs.md)."""
    f = [pa.field("scenario", pa.int64()), pa.field("system", pa.dictionary(pa.int32(), pa.string()))]
    f += [pa.field(m, pa.from_numpy_dtype(storage_dtype)) for m in plan.metrics]
    shared = [i for i in plan.inputs if i.system is None]
    own = list(dict.fromkeys(i.column for i in plan.inputs if i.system is not None))
    f += [pa.field(i.column, pa.from_numpy_dtype(storage_dtype)) for i in shared]
    f += [pa.field(c, pa.from_numpy_dtype(storage_dtype)) for c in own]
    f += [pa.field(f"system.{p}", pa.int64() if p != "depreciation_years" else pa.float64()) for p in PLAIN_SYSTEM_FIELDS]
    return f


# Columns the host makes for each part; the device assembles every other (float) column.
HOST_COLUMNS = ("scenario", "system", *(f"system.{p}" for p in PLAIN_SYSTEM_FIELDS))


class ScenarioRows:
    """How the scenario rows of a chunk are made, in two places.

    The device assembles every float column of `fields` (the metrics and the inputs) into one
    block (F, n S) of scenario-major rows (scenario 0: every system, ...) in the storage dtype:
    :meth:`block`, a stage of the run. One copy moves the block to the host (:class:`HostBlock`),
    and each Parquet part's columns are slices of it, which pyarrow wraps without copying. The
    host adds the rest per part (:meth:`columns`): the scenario index, the system, and the plain
    system fields. Before, the host transposed and repeated every column of every part: on the
    H200's 16-core host, writing 1e7 scenarios took the writer threads 101 thread-seconds, and 30
    this way (benchmarks/RESULTS.md).
    """

    def __init__(self, plan: Plan, fields: list[pa.Field]):
        self.plan = plan
        self.names = [f.name for f in fields if f.name not in HOST_COLUMNS]  # the block's rows, in schema order
        self.host_names = [f.name for f in fields if f.name in HOST_COLUMNS]
        source: dict[str, tuple[str, Any]] = {m: ("metric", m) for m in plan.metrics}
        for inp in plan.inputs:
            if inp.system is None:
                source[inp.column] = ("shared", inp.path)
            else:
                source.setdefault(inp.column, ("system", tuple(f"systems.{s}.{inp.field}" for s in plan.systems)))
        self._source = source

    def block(self, out: Mapping[str, jax.Array], values: Mapping[str, jax.Array], dtype) -> jax.Array:
        """The float columns of a chunk's rows, (F, n S): `out` the metrics (S, n), `values` every
        input by path, drawn (n,) or fixed (0-d). A system without the field gets NaN."""
        S, n = out["capex_usd"].shape
        nan = jnp.asarray(np.nan, dtype)

        def per_scenario(v: Any) -> jax.Array:  # (n,) or 0-d -> (n,)
            return jnp.broadcast_to(jnp.asarray(v, dtype), (n,))

        cols = []
        for name in self.names:
            kind, src = self._source[name]
            if kind == "metric":
                c = out[src].astype(dtype).T
            elif kind == "shared":
                c = jnp.broadcast_to(per_scenario(values[src])[:, None], (n, S))
            else:
                c = jnp.stack([per_scenario(values[p] if p in values else nan) for p in src], axis=1)
            cols.append(c.reshape(n * S))
        return jnp.stack(cols) if cols else jnp.zeros((0, n * S), dtype)

    def columns(self, start: int, sel: np.ndarray, block: np.ndarray) -> dict[str, Any]:
        """The columns of the rows of scenarios `sel` (ascending offsets in the chunk whose first
        scenario is `start`), from the chunk's block on the host."""
        plan, S, k = self.plan, len(self.plan.systems), len(sel)
        if k and int(sel[-1]) - int(sel[0]) + 1 == k:  # a run of offsets: slices, no copy
            part = block[:, int(sel[0]) * S:(int(sel[-1]) + 1) * S]
        else:  # a subsample
            part = block[:, (sel.astype(np.int64)[:, None] * S + np.arange(S)).reshape(-1)]
        cols: dict[str, Any] = dict(zip(self.names, part))
        host = {
            "scenario": lambda: np.repeat(start + sel.astype(np.int64), S),
            "system": lambda: pa.DictionaryArray.from_arrays(pa.array(np.tile(np.arange(S, dtype=np.int32), k)),
                                                             pa.array(list(plan.systems))),
            **{f"system.{p}": (lambda p=p: np.tile(np.asarray(plan.plain[p]), k)) for p in PLAIN_SYSTEM_FIELDS},
        }
        cols.update({name: host[name]() for name in self.host_names})
        return cols


class HostBlock:
    """A chunk's row block on its way to the host: the copy starts at once, and the first part
    that needs it waits for it (the others reuse it).

    On a GPU the block goes to pinned (page-locked) host memory in one transfer, which the host
    then reads in place: JAX's ordinary copy to a NumPy array stages through a bounce buffer
    into freshly faulted pages, and it moved a chunk's block (0.64 GB) at 1.5 GB/s on an H200's
    host, against 52 GB/s into pinned memory (benchmarks/transfer.py). The writer's queue holds
    at most a few chunks' blocks (about 2 GB for the default study). On CPUs the block is host
    memory already, read in place."""

    def __init__(self, block: jax.Array, pinned: Any = None):
        self._array = jax.device_put(block, pinned) if pinned is not None else block
        if pinned is None:
            self._array.copy_to_host_async()
        self._host: np.ndarray | None = None
        self._lock = threading.Lock()

    def get(self) -> np.ndarray:
        with self._lock:
            if self._host is None:
                self._host = np.asarray(self._array)
            return self._host


def reserve_pinned(shape: tuple[int, ...], dtype: Any, where: Any, pinned: Any, count: int) -> None:
    """Grow JAX's pool of pinned host memory by `count` row blocks of `shape` (placed like
    `where` on the devices), then give them back to the pool.

    A block copied into pinned memory that the pool already holds took 12 ms on an H200 (0.64 GB);
    one for which the pool had to grow took 0.44 s, the time to pin the pages. A run writing
    rows holds several chunks' blocks at once (those its writer's queue holds), so the pool
    grows while the first chunks are written, unless it was grown before (:func:`mcrisk.engine.loop.execute`
    does it in a background thread while the stages compile)."""
    block = jnp.zeros(shape, dtype, device=where)
    held = [jax.device_put(block, pinned) for _ in range(count)]
    jax.block_until_ready(held)


def pinned_host(sharding: Any) -> Any:
    """`sharding` in pinned host memory, where the devices are accelerators that have it; else None."""
    devices = sharding.device_set
    if all(d.platform == "cpu" for d in devices):
        return None
    if not all("pinned_host" in {m.kind for m in d.addressable_memories()} for d in devices):
        return None
    return sharding.with_memory_kind("pinned_host")
