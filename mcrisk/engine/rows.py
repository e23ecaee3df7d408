"""A chunk's scenario rows on their way out: the Parquet schema, the float columns assembled on
the device into one block, and its copy to the host (pinned memory on GPUs)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa

from mcrisk.engine.plan import PLAIN_SYSTEM_FIELDS, Plan


def scenario_fields(plan: Plan, storage_dtype) -> list[pa.Field]:
    """The Parquet schema of scenario rows: scenario, system, every metric, every input (docs/outputs.md)."""
    f = [pa.field("scenario", pa.int64()), pa.field("system", pa.dictionary(pa.int32(), pa.string()))]
    f += [pa.field(m, pa.from_numpy_dtype(storage_dtype)) for m in plan.metrics]
    shared = [i for i in plan.inputs if i.system is None]
    own = list(dict.fromkeys(i.column for i in plan.inputs if i.system is not None))
    f += [pa.field(i.column, pa.from_numpy_dtype(storage_dtype)) for i in shared]
    f += [pa.field(c, pa.from_numpy_dtype(storage_dtype)) for c in own]
    f += [
        pa.field(f"system.{p}", pa.int64() if p != "depreciation_years" else pa.float64()) for p in PLAIN_SYSTEM_FIELDS
    ]
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
    system fields. On the H200's 16-core host, writing 1e7 scenarios takes the writer threads 30
    thread-seconds this way, against 101 when the host transposes and repeats every column of
    every part (benchmarks/RESULTS.md).
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
        """The float columns of a chunk's rows, (F, n S): `out` the metrics (S, n) (S counts the
        portfolio row, last, where there is one), `values` every input by path, drawn (n,) or fixed
        (0-d). A system without the field, and the portfolio row, get NaN inputs."""
        S, n = out["capex_usd"].shape
        own = len(self.plan.systems)  # the study's systems; rows own .. S - 1 are the portfolio's
        nan = jnp.asarray(np.nan, dtype)

        def per_scenario(v: Any) -> jax.Array:  # (n,) or 0-d -> (n,)
            return jnp.broadcast_to(jnp.asarray(v, dtype), (n,))

        cols = []
        for name in self.names:
            kind, src = self._source[name]
            if kind == "metric":
                c = out[src].astype(dtype).T
            elif kind == "shared":
                c = jnp.broadcast_to(per_scenario(values[src])[:, None], (n, own))
            else:
                c = jnp.stack([per_scenario(values[p] if p in values else nan) for p in src], axis=1)
            if kind != "metric" and S > own:
                c = jnp.concatenate([c, jnp.full((n, S - own), nan)], axis=1)
            cols.append(c.reshape(n * S))
        return jnp.stack(cols) if cols else jnp.zeros((0, n * S), dtype)

    def columns(self, start: int, sel: np.ndarray, block: np.ndarray) -> dict[str, Any]:
        """The columns of the rows of scenarios `sel` (ascending offsets in the chunk whose first
        scenario is `start`), from the chunk's block on the host."""
        plan, S, k = self.plan, len(self.plan.row_systems), len(sel)
        if k and int(sel[-1]) - int(sel[0]) + 1 == k:  # a run of offsets: slices, no copy
            part = block[:, int(sel[0]) * S : (int(sel[-1]) + 1) * S]
        else:  # a subsample
            part = block[:, (sel.astype(np.int64)[:, None] * S + np.arange(S)).reshape(-1)]
        cols: dict[str, Any] = dict(zip(self.names, part))
        host = {
            "scenario": lambda: np.repeat(start + sel.astype(np.int64), S),
            "system": lambda: pa.DictionaryArray.from_arrays(
                pa.array(np.tile(np.arange(S, dtype=np.int32), k)), pa.array(list(plan.row_systems))
            ),
            **{f"system.{p}": (lambda p=p: self._plain(p, k)) for p in PLAIN_SYSTEM_FIELDS},
        }
        cols.update({name: host[name]() for name in self.host_names})
        return cols

    def _plain(self, field: str, k: int) -> Any:
        """A plain system field (units, GPUs per unit, depreciation years) for k scenarios' rows:
        each system's value, and null in the portfolio row (read as NaN)."""
        values = np.tile(np.asarray(self.plan.plain[field]), k)
        extra = len(self.plan.row_systems) - len(self.plan.systems)
        if not extra:
            return values
        own = len(self.plan.systems)
        full = np.zeros((k, own + extra), values.dtype)
        full[:, :own] = values.reshape(k, own)
        mask = np.zeros((k, own + extra), bool)
        mask[:, own:] = True
        kind = pa.float64() if field == "depreciation_years" else pa.int64()  # (as in scenario_fields)
        return pa.array(full.reshape(-1).astype(kind.to_pandas_dtype()), mask=mask.reshape(-1), type=kind)


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
    grows while the first chunks are written, unless it was grown before (the chunk loop
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
