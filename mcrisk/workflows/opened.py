"""`open_run`: a finished run folder read back, for a notebook or a script.

:class:`Run` reads what the folder holds when it is asked for: the tables (pandas), the manifest,
the study, the summary draws (ArviZ or xarray) and the scenario rows through a pyarrow dataset
over exactly the Parquet parts the manifest lists. It writes nothing. A folder that is not a
finished run is refused on opening, with the reason (RunFolderError).
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

from mcrisk.errors import RunFolderError
from mcrisk.io.folder import SCENARIOS_DIR, partial_path
from mcrisk.io.lock import held_by_other
from mcrisk.io.netcdf import GROUP
from mcrisk.io.readers import check_folder, damaged, read_manifest, reading
from mcrisk.io.verify import listed_parts, verify_run
from mcrisk.study.columns import column_name, study_path
from mcrisk.workflows import display

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from mcrisk.study.schema import Study

# Columns of the tables that hold names, read as text (a system named 1 stays "1").
_TEXT = ("system", "system_a", "system_b", "stress", "input", "metric", "quantity", "parameter", "region", "claim")
_KEYS = ("scenario", "system")  # the columns every scenario table keeps


class Certainty(NamedTuple):
    """P(metric <= x) over the scenario rows of one system (Crystal Ball's "certainty"):
    `p`, its Monte Carlo standard error sqrt(p (1 - p) / n), and `n`, the rows counted (those
    whose value is not NaN)."""

    p: float
    mcse: float
    n: int


def open_run(path: str | Path) -> Run:
    """The finished run folder `path` (written by ``mcrisk run``, ``run_study`` or ``mcrisk merge``).

    RunFolderError, naming the folder and what is wrong, for a folder that is not a finished run:
    missing, a file, an interrupted run's partial folder, one a run is writing, a sweep's folder,
    or one whose manifest.json, summary.csv or risk.csv is damaged."""
    return Run(Path(path))


class Run:
    """A finished run folder, read-only. `summary` and `risk` are read on opening; every other
    table, the scenario rows and the summary draws when first asked for (tables are cached and
    handed out as copies)."""

    def __init__(self, folder: Path):
        self.folder = folder
        _check_finished(folder)
        self._manifest = read_manifest(folder / "manifest.json", folder)
        self._tables: dict[str, pd.DataFrame] = {}
        self._parts: list[Path] | None = None
        self._idata: Any = None
        self._study: Study | None = None
        for name in ("summary", "risk"):
            self._read(name)

    # ------------------------------------------------------------------ what it shows
    def __repr__(self) -> str:
        return display.text(self._glance())

    def _repr_html_(self) -> str:
        return display.to_html(self._glance())

    def _glance(self) -> display.Glance:
        return display.glance("mcrisk.Run", self._manifest, self._tables["summary"], self._tables["risk"], self.folder)

    # ------------------------------------------------------------------ tables
    @property
    def manifest(self) -> dict[str, Any]:
        """manifest.json (a copy): seed, scenarios, options, systems, outputs, versions, timings."""
        return copy.deepcopy(self._manifest)

    @property
    def systems(self) -> list[str]:
        """The systems of the run's rows, in order (with ``portfolio`` last where the study has one)."""
        systems = self._manifest.get("systems")
        return [str(s) for s in systems] if isinstance(systems, list) else [str(s) for s in self.risk["system"]]

    @property
    def tables(self) -> list[str]:
        """The names of the tables the folder holds (its CSV files, and ``monthly``), for `table`."""
        names = [p.stem for p in self.folder.glob("*.csv") if not p.name.startswith(".")]
        if (self.folder / "monthly.parquet").is_file():
            names.append("monthly")
        return sorted(names)

    def table(self, name: str) -> pd.DataFrame:
        """The table `name` (``summary``, ``risk``, ``breakeven``, ``calibration``, ``stress``,
        ``sensitivity``, ``comparison``, ``monthly``, ``greeks``, ``reverse_stress``,
        ``design_point``: see docs/outputs.md) as a DataFrame; ValueError naming those the folder
        holds if it has no such table."""
        if name not in self._tables:
            if name not in self.tables:
                close = difflib.get_close_matches(str(name), self.tables, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"table(name={name!r}): the run folder {str(self.folder)!r} has no such table{hint}; "
                    f"it has {', '.join(self.tables)}"
                )
            self._read(name)
        return self._tables[name].copy()

    def _read(self, name: str) -> None:
        import pandas as pd

        path = self.folder / ("monthly.parquet" if name == "monthly" else f"{name}.csv")
        with reading(path, self.folder):
            if name == "monthly":
                table = pd.read_parquet(path)
            else:
                table = pd.read_csv(path, dtype={c: str for c in _TEXT})
        if name in ("summary", "risk") and "system" not in table.columns:
            raise damaged(path, "no column 'system'", self.folder)
        self._tables[name] = table

    def _optional(self, name: str) -> pd.DataFrame | None:
        return self.table(name) if name in self.tables else None

    @property
    def summary(self) -> pd.DataFrame:
        """summary.csv: one row per system and metric (n, mean, sd, P1..P99, min, max, MCSEs, ESS, R-hat)."""
        return self.table("summary")

    @property
    def risk(self) -> pd.DataFrame:
        """risk.csv: one row per system (P(loss), VaR, CVaR, payback and ROI odds, with their MCSEs)."""
        return self.table("risk")

    @property
    def breakeven(self) -> pd.DataFrame | None:
        """breakeven.csv (what must be true), or None."""
        return self._optional("breakeven")

    @property
    def calibration(self) -> pd.DataFrame | None:
        """calibration.csv (revenue per GPU-hour against the rental market), or None."""
        return self._optional("calibration")

    @property
    def stress(self) -> pd.DataFrame | None:
        """stress.csv (the base case beside each stress), or None (a study without stresses)."""
        return self._optional("stress")

    @property
    def sensitivity(self) -> pd.DataFrame | None:
        """sensitivity.csv (what drives the metric), or None."""
        return self._optional("sensitivity")

    @property
    def comparison(self) -> pd.DataFrame | None:
        """comparison.csv (paired comparisons of the systems), or None."""
        return self._optional("comparison")

    @property
    def greeks(self) -> pd.DataFrame | None:
        """greeks.csv (``mcrisk run --greeks``), or None."""
        return self._optional("greeks")

    @property
    def monthly(self) -> pd.DataFrame | None:
        """monthly.parquet (percentile bands per system, quantity and month), or None."""
        return self._optional("monthly")

    @property
    def study(self) -> Study:
        """The study as run (study.yaml), validated."""
        if self._study is None:
            from mcrisk.study.schema import load_study

            self._study = load_study(self.folder / "study.yaml")
        return self._study

    @property
    def idata(self) -> Any:
        """summary.nc, the first scenarios' metrics and drawn inputs (group ``scenario_draws``):
        an ArviZ InferenceData (ArviZ 0.2x) or DataTree (ArviZ 1.x), or without ArviZ an xarray
        Dataset of the group; None where the run retained no draws."""
        if self._idata is None:
            path = self.folder / "summary.nc"
            if not path.is_file() and not (self._manifest.get("outputs") or {}).get("inference_data"):
                return None
            with reading(path, self.folder):
                self._idata = _open_draws(path)
        return self._idata

    def verify(self) -> list[str]:
        """What is wrong with the folder against its manifest (every file's SHA-256, every part):
        nothing if it is what its run wrote (``mcrisk verify``)."""
        return verify_run(self.folder)

    # ------------------------------------------------------------------ scenario rows
    def dataset(self) -> pads.Dataset:
        """The scenario rows as a pyarrow dataset over the Parquet parts the manifest lists (and
        no other file), in scenario order; nothing is read until it is scanned. RunFolderError
        if the run kept no rows, or its parts are not those its manifest lists."""
        import pyarrow.dataset as pads

        if self._parts is None:
            self._parts = listed_parts(self.folder, self._manifest)
        if not self._parts:
            raise RunFolderError(
                f"the run in {str(self.folder)!r} kept no scenario rows (it was run with write_scenarios=False, "
                "mcrisk run --no-scenarios): run the study again with them to read its scenarios"
            )
        with reading(self.folder / SCENARIOS_DIR, self.folder):
            return pads.dataset([str(p) for p in self._parts], format="parquet")

    def columns(self) -> list[str]:
        """The columns of the scenario rows, as the files name them."""
        return list(self.dataset().schema.names)

    def _resolve(self, columns: Sequence[str], names: Sequence[str]) -> dict[str, str]:
        """{name in the files: name asked for} for each column asked for: a study path
        (``market.token_price.initial_usd_per_mtok``) is found under that name or with its dots
        as double underscores (``market__token_price__initial_usd_per_mtok``), and either way."""
        have, out = set(names), {}
        for c in columns:
            found = next((n for n in (c, column_name(c), study_path(c)) if n in have), None)
            if found is None:
                close = difflib.get_close_matches(c, names, n=1) or difflib.get_close_matches(
                    column_name(c), names, n=1
                )
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                kept = (self._manifest.get("options") or {}).get("columns")
                why = f"; the run kept only {', '.join(kept)} (columns=)" if kept else ""
                raise ValueError(f"columns: the scenario rows have no column {c!r}{hint}{why}")
            out[found] = c
        return out

    def _system_filter(self, systems: str | Sequence[str] | None) -> pc.Expression | None:
        import pyarrow.compute as pc

        if systems is None:
            return None
        wanted = [systems] if isinstance(systems, str) else [str(s) for s in systems]
        unknown = [s for s in wanted if s not in self.systems]
        if unknown:
            raise ValueError(
                f"systems: the run has no system {', '.join(map(repr, unknown))}; it has {', '.join(self.systems)}"
            )
        return pc.field("system").isin(wanted)

    @overload
    def scenarios(
        self,
        columns: Sequence[str] | None = None,
        *,
        systems: str | Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        as_arrow: Literal[False] = False,
    ) -> pd.DataFrame: ...

    @overload
    def scenarios(
        self,
        columns: Sequence[str] | None = None,
        *,
        systems: str | Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        as_arrow: Literal[True],
    ) -> pa.Table: ...

    def scenarios(
        self,
        columns: Sequence[str] | None = None,
        *,
        systems: str | Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        as_arrow: bool = False,
    ) -> pd.DataFrame | pa.Table:
        """The scenario rows (``scenario`` and ``system`` always, then `columns`, or every column),
        of the `systems` given (a name or a list; all if None) and matching `filter` (a
        ``pyarrow.compute`` expression on the files' column names, e.g. ``pc.field("npv_usd") < 0``),
        in scenario order. Only those columns and rows are read. A column asked for by its study
        path is found under either spelling of the files (dots, or double underscores) and comes
        back under the name asked for. A pandas DataFrame, or a pyarrow Table with `as_arrow`."""
        ds = self.dataset()
        names = list(ds.schema.names)
        if isinstance(columns, str):  # one column
            columns = [columns]
        wanted = self._resolve([*_KEYS, *(c for c in columns if c not in _KEYS)] if columns else names, names)
        where = self._system_filter(systems)
        if filter is not None:
            where = filter if where is None else where & filter
        with reading(self.folder / SCENARIOS_DIR, self.folder):
            table = ds.to_table(columns=list(wanted), filter=where)
        table = table.rename_columns([wanted[n] for n in table.column_names])
        return table if as_arrow else table.to_pandas()

    @overload
    def cdf(self, metric: str, x: float, system: str) -> Certainty: ...

    @overload
    def cdf(self, metric: str, x: float, system: None = None) -> pd.DataFrame: ...

    def cdf(self, metric: str, x: float, system: str | None = None) -> Certainty | pd.DataFrame:
        """P(`metric` <= `x`) counted over the scenario rows (Crystal Ball's "certainty"), with
        its Monte Carlo standard error sqrt(p (1 - p) / n); n counts the rows whose value is not
        NaN (+-inf are values). For one `system`, a :class:`Certainty` (p, mcse, n); for every
        system, a DataFrame with a row per system (system, p, mcse, n). A run written with a
        sample fraction counts the rows it kept."""
        import numpy as np
        import pandas as pd

        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or math.isnan(x):
            raise ValueError(f"x: must be a number, got {x!r}")
        rows = self.scenarios([metric], systems=system)
        values = rows[metric].to_numpy(dtype=np.float64)
        out = []
        for s in [system] if system is not None else self.systems:
            v = values[(rows["system"] == s).to_numpy()]
            n = int(np.count_nonzero(~np.isnan(v)))
            p = float(np.count_nonzero(v <= float(x)) / n) if n else math.nan
            out.append(Certainty(p, math.sqrt(p * (1 - p) / n) if n else math.nan, n))
        if system is not None:
            return out[0]
        return pd.DataFrame(
            {"system": self.systems, "p": [c.p for c in out], "mcse": [c.mcse for c in out], "n": [c.n for c in out]}
        )


def _check_finished(folder: Path) -> None:
    """RunFolderError unless `folder` is a finished run's folder that no run is writing."""
    partial = partial_path(folder)
    if not folder.exists() and partial.is_dir():
        raise RunFolderError(
            f"{str(folder)!r} is not a finished run: the run was interrupted, and its partial folder "
            f"{partial.name} is kept; continue it with mcrisk run --resume {folder} (run_study(out=..., resume=True))"
        )
    if folder.name.startswith(".") and folder.name.endswith(".partial"):
        final = folder.parent / folder.name[1 : -len(".partial")]
        raise RunFolderError(
            f"{str(folder)!r} is an interrupted or running run's partial folder, not a finished run; "
            f"continue it with mcrisk run --resume {final}"
        )
    check_folder(folder)
    who = held_by_other(folder)
    if who:
        raise RunFolderError(f"{str(folder)!r} is not a finished run: it is being written by {who}")
    if not (folder / "manifest.json").is_file():
        raise RunFolderError(
            f"{str(folder)!r} is not a run folder: it has no manifest.json (write one with mcrisk run)"
        )


def _open_draws(path: Path) -> Any:
    """summary.nc with ArviZ where it is installed (0.2x: InferenceData, 1.x: DataTree), else with xarray."""
    try:
        import arviz as az
    except ImportError:
        import xarray as xr

        return xr.open_dataset(path, group=GROUP, engine="h5netcdf")
    return az.from_netcdf(path)
