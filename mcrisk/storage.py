"""The run folder: scenario Parquet, summary tables, ArviZ NetCDF, manifest; published atomically.

Everything is written into a hidden temporary folder beside the destination and renamed into
place only when complete, so a killed run never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RunFolderError

SCENARIOS_FILE = "scenarios.parquet"


class RunFolder:
    """A destination folder and the temporary folder a run writes into first."""

    def __init__(self, out: str | Path, force: bool = False):
        self.final = Path(out)
        if self.final.exists() and not force:
            raise RunFolderError(
                f"the output folder {str(self.final)!r} already exists; pass --force to replace it "
                "(or choose another folder with --out)"
            )
        if self.final.exists() and not self.final.is_dir():
            raise RunFolderError(f"{str(self.final)!r} exists and is not a folder")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.parent / f".{self.final.name}.partial-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()

    def path(self, name: str) -> Path:
        return self.tmp / name

    def publish(self) -> Path:
        """Move the finished run into place (replacing an old one only now, at the very end)."""
        old = None
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            self.final.rename(old)
        self.tmp.rename(self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


class ScenarioWriter:
    """Streams chunks of scenario rows to one Parquet file from a background thread.

    pyarrow releases the GIL while encoding, so the next chunk is simulated while this one is
    written. `busy_seconds` is the time the thread spent writing.
    """

    def __init__(self, path: Path, schema: pa.Schema, metadata: Mapping[str, str]):
        self.schema = schema.with_metadata({k: str(v) for k, v in metadata.items()})
        self._writer = pq.ParquetWriter(
            path, self.schema, compression="snappy", use_dictionary=["system"], write_statistics=True
        )
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self.busy_seconds = 0.0
        self.rows = 0
        self._thread = threading.Thread(target=self._loop, name="mcrisk-parquet", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            table = self._queue.get()
            if table is None:
                return
            if self._error is not None:
                continue
            t0 = time.perf_counter()
            try:
                self._writer.write_table(table)
                self.rows += table.num_rows
            except BaseException as exc:  # surfaced in put()/close()
                self._error = exc
            self.busy_seconds += time.perf_counter() - t0

    def put(self, columns: Mapping[str, np.ndarray]) -> None:
        if self._error is not None:
            raise self._error
        arrays = [
            c if isinstance(c := columns[f.name], pa.Array) else pa.array(c, type=f.type) for f in self.schema
        ]
        self._queue.put(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise self._error
