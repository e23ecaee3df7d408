"""A chunk's scenario rows on their way out: the Parquet schema, the float columns assembled on
the device into a block per dtype, and their copy to the host (pinned memory on GPUs)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa

from mcrisk.engine.plan import PLAIN_SYSTEM_FIELDS, Plan
from mcrisk.study.columns import column_name, field_metadata


def is_money(metric: str) -> bool:
    """Whether a metric is an amount of dollars: its name ends in ``_usd`` and is no rate (no
    ``_per_``: ``npv_usd``, ``capex_usd``, not ``cost_per_mtok_usd``). Its column is float64
    whatever the storage dtype: float32 resolves an NPV of $28M to $2, and amounts are summed
    and subtracted; a rate keeps float32's 7 significant digits."""
    return metric.endswith("_usd") and "_per_" not in metric


def _field(path: str, kind: pa.DataType) -> pa.Field:
    """The Parquet field of a metric or a dotted input path: an SQL name, the path in its metadata."""
    return pa.field(column_name(path), kind, metadata=field_metadata(path))


def scenario_fields(plan: Plan, storage_dtype) -> list[pa.Field]:
    """The Parquet schema of scenario rows: scenario, system, every metric (money in float64, the
    rest in `storage_dtype`), every input (docs/outputs.md)."""
    store = pa.from_numpy_dtype(storage_dtype)
    f = [pa.field("scenario", pa.int64()), pa.field("system", pa.dictionary(pa.int32(), pa.string()))]
    f += [pa.field(m, pa.float64() if is_money(m) else store) for m in plan.metrics]
    shared = [i for i in plan.inputs if i.system is None]
    own = list(dict.fromkeys(i.column for i in plan.inputs if i.system is not None))
    f += [_field(i.column, store) for i in shared]
    f += [_field(c, store) for c in own]
    f += [_field(f"system.{p}", pa.int64() if p != "depreciation_years" else pa.float64()) for p in PLAIN_SYSTEM_FIELDS]
    return f


# Columns the host makes for each part; the device assembles every other (float) column.
PLAIN_COLUMNS = {column_name(f"system.{p}"): p for p in PLAIN_SYSTEM_FIELDS}
HOST_COLUMNS = ("scenario", "system", *PLAIN_COLUMNS)


class ScenarioRows:
    """How the scenario rows of a chunk are made, in two places.

    The device assembles the float columns of `fields` (the metrics and the inputs) into one
    block (F, n S) of scenario-major rows (scenario 0: every system, ...) per column dtype: the
    storage dtype's, and in a float32 run a second, float64 one for the money metrics
    (:func:`is_money`): :meth:`block`, a stage of the run. One copy moves the blocks to the host
    (:class:`HostBlock`), and each Parquet part's columns are slices of them, which pyarrow wraps
    without copying. The host adds the rest per part (:meth:`columns`): the scenario index, the
    system, and the plain system fields. On the H200's 16-core host, writing 1e7 scenarios takes
    the writer threads 30 thread-seconds this way, against 101 when the host transposes and
    repeats every column of every part (benchmarks/RESULTS.md).
    """

    def __init__(self, plan: Plan, fields: list[pa.Field]):
        self.plan = plan
        floats = [f for f in fields if f.name not in HOST_COLUMNS]
        # The blocks: (dtype, their rows' column names in schema order), one per float dtype.
        dtypes = list(dict.fromkeys(f.type.to_pandas_dtype() for f in floats))
        self.groups = [(np.dtype(d), [f.name for f in floats if f.type.to_pandas_dtype() == d]) for d in dtypes]
        self.host_names = [f.name for f in fields if f.name in HOST_COLUMNS]
        source: dict[str, tuple[str, Any]] = {m: ("metric", m) for m in plan.metrics}
        for inp in plan.inputs:
            if inp.system is None:
                source[column_name(inp.column)] = ("shared", inp.path)
            else:
                paths = tuple(f"systems.{s}.{inp.field}" for s in plan.systems)
                source.setdefault(column_name(inp.column), ("system", paths))
        self._source = source

    def block_specs(self, rows: int) -> list[tuple[tuple[int, int], np.dtype]]:
        """(shape, dtype) of each block of a chunk of `rows` rows (scenarios x row systems)."""
        return [((len(names), rows), dtype) for dtype, names in self.groups]

    def block(self, out: Mapping[str, jax.Array], values: Mapping[str, jax.Array]) -> tuple[jax.Array, ...]:
        """The float columns of a chunk's rows, one block (F, n S) per dtype (:attr:`groups`): `out`
        the metrics (S, n) (S counts the portfolio row, last, where there is one), `values` every
        input by path, drawn (n,) or fixed (0-d). The shared inputs (market, facility, finance) are
        the scenario's in every row, the portfolio row's included; a system without a system
        field, and the portfolio row, get NaN there."""
        return tuple(self._block(out, values, dtype, names) for dtype, names in self.groups)

    def _block(self, out: Mapping[str, jax.Array], values: Mapping[str, jax.Array], dtype, names) -> jax.Array:
        S, n = out["capex_usd"].shape
        own = len(self.plan.systems)  # the study's systems; rows own .. S - 1 are the portfolio's
        nan = jnp.asarray(np.nan, dtype)

        def per_scenario(v: Any) -> jax.Array:  # (n,) or 0-d -> (n,)
            return jnp.broadcast_to(jnp.asarray(v, dtype), (n,))

        cols = []
        for name in names:
            kind, src = self._source[name]
            if kind == "metric":
                c = out[src].astype(dtype).T
            elif kind == "shared":  # the scenario's market: the portfolio row's too
                c = jnp.broadcast_to(per_scenario(values[src])[:, None], (n, S))
            else:
                c = jnp.stack([per_scenario(values[p] if p in values else nan) for p in src], axis=1)
                if S > own:
                    c = jnp.concatenate([c, jnp.full((n, S - own), nan)], axis=1)
            cols.append(c.reshape(n * S))
        return jnp.stack(cols)

    def columns(self, start: int, sel: np.ndarray, blocks: tuple[np.ndarray, ...]) -> dict[str, Any]:
        """The columns of the rows of scenarios `sel` (ascending offsets in the chunk whose first
        scenario is `start`), from the chunk's blocks on the host."""
        plan, S, k = self.plan, len(self.plan.row_systems), len(sel)
        cols: dict[str, Any] = {}
        for (_, names), block in zip(self.groups, blocks):
            if k and int(sel[-1]) - int(sel[0]) + 1 == k:  # a run of offsets: slices, no copy
                part = block[:, int(sel[0]) * S : (int(sel[-1]) + 1) * S]
            else:  # a subsample
                part = block[:, (sel.astype(np.int64)[:, None] * S + np.arange(S)).reshape(-1)]
            cols.update(zip(names, part))
        host = {
            "scenario": lambda: np.repeat(start + sel.astype(np.int64), S),
            "system": lambda: pa.DictionaryArray.from_arrays(
                pa.array(np.tile(np.arange(S, dtype=np.int32), k)), pa.array(list(plan.row_systems))
            ),
            **{name: (lambda p=p: self._plain(p, k)) for name, p in PLAIN_COLUMNS.items()},
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
    """A chunk's row blocks on their way to the host: the copy starts at once, and the first part
    that needs them waits for it (the others reuse it).

    On a GPU the blocks go to pinned (page-locked) host memory in one transfer, which the host
    then reads in place: JAX's ordinary copy to a NumPy array stages through a bounce buffer
    into freshly faulted pages, and it moved a chunk's block (0.64 GB) at 1.5 GB/s on an H200's
    host, against 52 GB/s into pinned memory (benchmarks/transfer.py). The writer's queue holds
    at most a few chunks' blocks (about 2 GB for the default study). On CPUs the blocks are host
    memory already, read in place. `block`: one array or a tuple of them; :meth:`get` gives the
    same structure of NumPy arrays."""

    def __init__(self, block: Any, pinned: Any = None):
        self._array = jax.device_put(block, pinned) if pinned is not None else block
        if pinned is None:
            for leaf in jax.tree.leaves(self._array):
                leaf.copy_to_host_async()
        self._host: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._host is None:
                self._host = jax.tree.map(np.asarray, self._array)
            return self._host


def reserve_pinned(specs: Sequence[tuple[tuple[int, ...], Any]], where: Any, pinned: Any, count: int) -> None:
    """Grow JAX's pool of pinned host memory by `count` chunks' row blocks, each chunk's blocks of
    the (shape, dtype) `specs` (placed like `where` on the devices), then give them back to the pool.

    A block copied into pinned memory that the pool already holds took 12 ms on an H200 (0.64 GB);
    one for which the pool had to grow took 0.44 s, the time to pin the pages. A run writing
    rows holds several chunks' blocks at once (those its writer's queue holds), so the pool
    grows while the first chunks are written, unless it was grown before (the chunk loop
    does it in a background thread while the stages compile)."""
    blocks = tuple(jnp.zeros(shape, dtype, device=where) for shape, dtype in specs)
    held = [jax.device_put(blocks, pinned) for _ in range(count)]
    jax.block_until_ready(held)


def pinned_host(sharding: Any) -> Any:
    """`sharding` in pinned host memory, where the devices are accelerators that have it; else None."""
    devices = sharding.device_set
    if all(d.platform == "cpu" for d in devices):
        return None
    if not all("pinned_host" in {m.kind for m in d.addressable_memories()} for d in devices):
        return None
    return sharding.with_memory_kind("pinned_host")
