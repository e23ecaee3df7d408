"""summary.nc: the retained scenario draws (metrics and the drawn inputs beside them) as netCDF.

Written with xarray alone, so that it does not depend on ArviZ's version, and opened by either:
ArviZ 0.2x (``az.from_netcdf`` gives an InferenceData with a ``scenario_draws`` group) and 1.x
(``az.from_netcdf`` or ``xarray.open_datatree`` give a DataTree). The draws are not a posterior:
they are the first n scenarios of the run, in 4 chains of consecutive scenario indices (ArviZ's
diagnostics read them as such), so the group says what they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mcrisk.io import atomic
from mcrisk.study.columns import study_path
from mcrisk.study.labels import unit_of

GROUP = "scenario_draws"
CHAINS = 4
# zlib over HDF5's byte shuffle (which groups the exponent bytes of neighbouring floats together).
_COMPRESSION = {"zlib": True, "complevel": 1, "shuffle": True}


def chains_of(n: int) -> tuple[int, int]:
    """(chains, draws per chain) of n retained scenarios (1 chain below 16: ArviZ needs 4 draws a chain)."""
    chains = CHAINS if n >= 4 * CHAINS else 1
    return chains, n // chains


def _lossless_float32(x: np.ndarray) -> np.ndarray:
    """x as float32 where that loses nothing (a float32 run's metrics), else as it is."""
    if x.dtype == np.float64:
        with np.errstate(all="ignore"):
            y = x.astype(np.float32)
        if np.array_equal(y.astype(np.float64), x, equal_nan=True):
            return y
    return x


def write_draws(
    path: Path | str,
    metrics: Mapping[str, np.ndarray],
    inputs: Mapping[str, np.ndarray],
    systems: Sequence[str],
    attrs: Mapping[str, object],
) -> None:
    """metrics: name -> (S, n) values per system; inputs (`inputs_from_rows`): column name ->
    (n,) or (S, n) drawn values of the same scenarios 0 .. n - 1. Each variable has dims (chain,
    draw[, system]), a ``units`` attribute where its name says it, and is compressed; `attrs` go
    on the file and the group."""
    import xarray as xr

    n = next(iter(metrics.values())).shape[1] if metrics else next(iter(inputs.values())).shape[0]
    chains, per = chains_of(n)
    keep = chains * per
    data = {}
    for name, x in metrics.items():
        v = np.asarray(x)[:, :keep].reshape(len(systems), chains, per).transpose(1, 2, 0)
        data[name] = (("chain", "draw", "system"), _lossless_float32(v), _attrs(name, "metric"))
    for name, x in inputs.items():
        x = np.asarray(x)
        if x.ndim == 2:
            v, dims = x[:, :keep].reshape(len(systems), chains, per).transpose(1, 2, 0), ("chain", "draw", "system")
        else:
            v, dims = x[:keep].reshape(chains, per), ("chain", "draw")
        data[name] = (dims, _lossless_float32(v), _attrs(name, "drawn input"))
    coords = {
        "chain": np.arange(chains),
        "draw": np.arange(per),
        "system": list(systems),
        "scenario": (("chain", "draw"), np.arange(keep, dtype=np.int64).reshape(chains, per)),
    }
    ds = xr.Dataset(data, coords=coords, attrs=dict(attrs))
    encoding = {name: dict(_COMPRESSION) for name in data}
    with atomic.atomic_path(path) as tmp:
        xr.Dataset(attrs=dict(attrs)).to_netcdf(tmp, engine="h5netcdf", mode="w")
        ds.to_netcdf(tmp, engine="h5netcdf", mode="a", group=GROUP, encoding=encoding)


def _attrs(name: str, kind: str) -> dict[str, str]:
    unit = unit_of(name)
    return {"kind": kind, **({"units": unit} if unit is not None else {})}


def inputs_from_rows(parts: Path, n: int, systems: Sequence[str]) -> dict[str, np.ndarray]:
    """The drawn inputs of scenarios 0 .. n - 1 from a run's scenario rows (the folder of Parquet
    parts), by dotted path: market, facility and finance inputs as (n,), per-system inputs
    (``system.*``) as (S, n). Empty where the rows do not hold them all (no rows written, a column or scenario
    subset, a sampled fraction)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    if n == 0 or not parts.is_dir() or not any(parts.glob("part-*.parquet")):
        return {}
    ds = pads.dataset(parts, format="parquet")
    names = [c for c in ds.schema.names if study_path(c) != c]  # the inputs (mcrisk.study.columns)
    if not names or "scenario" not in ds.schema.names or "system" not in ds.schema.names:
        return {}
    table = ds.to_table(columns=["scenario", "system", *names], filter=pc.field("scenario") < n)
    if table.num_rows != n * len(systems):
        return {}
    system = np.asarray(table.column("system").to_pylist())
    scenario = table.column("scenario").to_numpy()
    out: dict[str, np.ndarray] = {}
    for name in names:
        col = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        per_system = np.full((len(systems), n), np.nan)
        for s, sys_name in enumerate(systems):
            m = system == sys_name
            per_system[s, scenario[m]] = col[m]
        path = study_path(name)
        if path.startswith("system."):
            out[path] = per_system
        else:  # shared by the systems: every system row holds the same draw
            out[path] = per_system[0]
    return out
