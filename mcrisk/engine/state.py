"""A run's summaries on the host: moved from the device at chunk boundaries, merged across
shards, and written to and read from checkpoints.

Every merge is exact (counts add, moments combine by Chan's rule), so where the boundaries fall
changes no number a run reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from mcrisk.engine.plan import Plan
from mcrisk.engine.reduction import reduce_init
from mcrisk.stats import reduce as red


@dataclass
class HostSummaries:
    """What a run keeps on the host: `host` the metric reducers (None before the first flush),
    `tails` the exact tail counts (tail x system), `retained` the first scenarios' float64
    metrics (series x draws, for ArviZ) and `monthly` the monthly-band reducers (or None)."""

    host: red.HostState | None
    tails: np.ndarray
    retained: np.ndarray
    monthly: red.HostState | None = None

    @classmethod
    def empty(cls, plan: Plan) -> HostSummaries:
        return cls(
            None, np.zeros((len(plan.tail_counts), len(plan.row_systems)), np.int64), np.zeros((plan.n_series, 0))
        )


def flush(plan: Plan, acc, state: HostSummaries) -> Any:
    """Move the device reducers to the host at a chunk boundary; return fresh device reducers."""
    state.host = _add(state.host, acc.state)
    state.tails = state.tails + np.asarray(jax.device_get(acc.tails))
    if acc.monthly is not None:
        state.monthly = _add(state.monthly, acc.monthly)
    return reduce_init(plan)


def _add(host: red.HostState | None, dev: red.ReduceState) -> red.HostState:
    """The host totals plus a device state's, the histogram added in place (see reduce.merge_into)."""
    return red.to_host(dev) if host is None else red.merge_into(host, dev)


def merge_states(a: HostSummaries, b: HostSummaries) -> HostSummaries:
    """Two host states of disjoint scenario ranges, `a` before `b`, as one."""
    monthly = None
    if a.monthly is not None and b.monthly is not None:
        monthly = red.merge(a.monthly, b.monthly)
    return HostSummaries(
        red.merge(a.host, b.host), a.tails + b.tails, np.concatenate([a.retained, b.retained], axis=1), monthly
    )


def _host_arrays(host: red.HostState, prefix: str) -> dict[str, np.ndarray]:
    arrays = {f"{prefix}m_{k}": v for k, v in host.moments._asdict().items()}
    nz = np.flatnonzero(host.hist)  # the histogram is sparse: keep its non-zero bins
    arrays.update(
        {
            f"{prefix}hist_shape": np.asarray(host.hist.shape),
            f"{prefix}hist_idx": nz,
            f"{prefix}hist_val": host.hist.reshape(-1)[nz],
        }
    )
    return arrays


def _host_from(arrays: dict[str, np.ndarray], prefix: str) -> red.HostState | None:
    if f"{prefix}hist_shape" not in arrays:
        return None
    shape = tuple(int(x) for x in arrays[f"{prefix}hist_shape"])
    hist = np.zeros(int(np.prod(shape)), np.int64)
    hist[arrays[f"{prefix}hist_idx"]] = arrays[f"{prefix}hist_val"]
    moments = red.Moments(*(arrays[f"{prefix}m_{k}"] for k in red.Moments._fields))
    return red.HostState(moments, hist.reshape(shape))


def checkpoint_arrays(state: HostSummaries) -> dict[str, np.ndarray]:
    arrays = _host_arrays(state.host, "")
    if state.monthly is not None:
        arrays.update(_host_arrays(state.monthly, "monthly_"))
    arrays.update(tails=state.tails, retained=state.retained)
    return arrays


def missing_arrays(arrays: dict[str, np.ndarray]) -> list[str]:
    """The arrays `state_from` reads that `arrays` (a checkpoint's, a shard's state) lacks."""
    need = ["tails", "retained", "hist_shape", "hist_idx", "hist_val", *(f"m_{k}" for k in red.Moments._fields)]
    return [k for k in need if k not in arrays]


def state_from(arrays: dict[str, np.ndarray]) -> HostSummaries:
    return HostSummaries(_host_from(arrays, ""), arrays["tails"], arrays["retained"], _host_from(arrays, "monthly_"))
