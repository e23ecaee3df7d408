"""Scenario rows as Parquet parts, written by a pool of threads while the next chunks run."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mcrisk.io import atomic
from mcrisk.io.integrity import digest

# Rows per Parquet part at most: a chunk is cut into parts of whole scenarios, written by several
# threads at once. 262,144 rows of the default study's 56 columns are 60 MB in Arrow.
PART_ROWS = 1 << 18
# Columns whose Parquet statistics (each row group's min and max) are written: the index columns,
# by which a reader finds a scenario's rows without reading the rest. The metrics and inputs
# get none: their rows are in scenario order, so every part spans nearly their whole range and
# min/max would let no reader skip a part; computing them took 30% of the encoding (a 2-core CPU).
STATISTICS_COLUMNS = ["scenario", "system"]


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
    assembled into rows (`rows(start, sel, host)` -> columns, `host` what the part's `fetch`
    returns: the chunk's row block, waited for in `wait_seconds`) and encoded by one of `threads`
    threads (numpy and pyarrow release the GIL for both), written under a temporary name and
    renamed: a part is complete or absent. The parts of one chunk are written at once, while
    the next chunks are simulated; at most `threads` parts wait in the queue, which bounds
    memory. `busy_seconds`: the threads' time, summed over threads, plus the caller's time
    handing parts over (waiting for room in the queue when writing is the bottleneck).
    """

    def __init__(
        self,
        folder: Path,
        schema: pa.Schema,
        metadata: Mapping[str, str],
        rows: Callable[[int, np.ndarray, Any], Mapping[str, Any]],
        per_part: int,
        chunks: int,
        chunk_size: int,
        threads: int | None = None,
        records: Mapping[str, dict] | None = None,
    ):
        self.folder = folder
        # Each part's rows, bytes and SHA-256 by file name (mcrisk.io.integrity), those of a
        # resumed run's checkpoint first: what the checkpoints and the manifest record.
        self.records: dict[str, dict] = dict(records or {})
        folder.mkdir(exist_ok=True)
        self.schema = schema.with_metadata({k: str(v) for k, v in metadata.items()})
        self.rows, self.per_part = rows, per_part
        self._widths = (max(6, len(str(chunks - 1))), max(3, len(str(-(-chunk_size // per_part) - 1))))
        self.threads = threads or writer_threads()
        self._queue: queue.Queue = queue.Queue(maxsize=self.threads)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.busy_seconds = 0.0
        self.wait_seconds = 0.0  # the part of busy_seconds spent waiting for the row blocks (fetch)
        self._pool = [
            threading.Thread(target=self._loop, name=f"mcrisk-parquet-{k}", daemon=True) for k in range(self.threads)
        ]
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
                    name, start, sel, fetch = item
                    host = None
                    if fetch is not None:
                        host = fetch()
                        with self._lock:
                            self.wait_seconds += time.perf_counter() - t0
                    columns = self.rows(start, sel, host)
                    arrays = [
                        c if isinstance(c := columns[f.name], pa.Array) else pa.array(c, type=f.type)
                        for f in self.schema
                    ]
                    table = pa.Table.from_arrays(arrays, schema=self.schema)
                    with atomic.atomic_path(self.folder / name) as tmp:  # hidden: Parquet readers skip it
                        pq.write_table(
                            table,
                            tmp,
                            compression="snappy",
                            use_dictionary=["system"],
                            write_statistics=STATISTICS_COLUMNS,
                        )
                        size, sha = digest(tmp)
                    with self._lock:
                        self.records[name] = {"rows": table.num_rows, "bytes": size, "sha256": sha}
                        self.busy_seconds += time.perf_counter() - t0
            except BaseException as exc:  # surfaced in put()/drain()/close()
                self._error = exc
            finally:
                self._queue.task_done()

    def put(self, chunk: int, start: int, valid: int, sel: np.ndarray, fetch: Callable[[], Any] | None) -> None:
        """Queue the rows of chunk `chunk` (first scenario `start`, `valid` scenarios): scenarios
        at offsets `sel` (ascending) of the chunk, from the host arrays `fetch()` returns (it may
        wait for a copy to finish; called by each part's thread), one part per `per_part`
        offsets. Waits while `threads` parts are queued."""
        if self._error is not None:
            raise self._error
        t0 = time.perf_counter()
        n_parts = max(1, -(-valid // self.per_part))
        cuts = np.searchsorted(sel, np.arange(1, n_parts) * self.per_part)
        for k, part in enumerate(np.split(sel, cuts)):
            self._queue.put((f"part-{chunk:0{self._widths[0]}d}-{k:0{self._widths[1]}d}.parquet", start, part, fetch))
        with self._lock:
            self.busy_seconds += time.perf_counter() - t0

    def blocks_held(self, chunk_size: int) -> int:
        """How many chunks' row blocks the writer holds at most: its queue and threads hold at most
        2 x `threads` parts, of `chunk_size` / `per_part` parts per chunk."""
        parts = -(-chunk_size // self.per_part)
        return -(-2 * self.threads // parts) + 2

    def written(self) -> dict[str, dict]:
        """The records of the parts on disk so far, by name (sorted): call after drain() or close()."""
        with self._lock:
            return dict(sorted(self.records.items()))

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
