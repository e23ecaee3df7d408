"""Vendor claims: reproduced from their stated assumptions, then put under realistic uncertainty.

A claim file (``configs/claims/*.yaml``, shipped as ``mcrisk.configs``) holds

- ``checks``: the published figures, each a metric of one system or the ratio of one
  system's metric to another's (paired by scenario), with its source and when it holds;
- ``point``: a study with every input fixed, the claim's stated assumptions (its name and
  scenario count are supplied here);
- ``uncertain``: dotted-path changes to that study that make it realistic (``null`` drops
  the point's value so that the catalog or the default applies), and its scenario count.

Besides numbers, DIST mappings and text, a value in ``point`` or ``uncertain.set`` may name
a catalog figure: ``{prior: NAME}``, ``{workload_price: NAME, interactivity_tok_s_user: X}``
or ``{tco_capex: SYSTEM, basis: costh | [costh, costn], years: 4}`` (SemiAnalysis $/GPU-hour
x GPUs x hours, booked as capex; two bases give a uniform between them).

The point values come from the float64 reference model (``mcrisk.reference``: every input is
fixed, so one evaluation is exact); the uncertain runs go through the engine (``run_study``)
and P(claim holds) is counted over every scenario, with MCSE sqrt(p (1 - p) / N).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mcrisk import reference
from mcrisk.engine.options import check_counts
from mcrisk.errors import StudyError, problems_from
from mcrisk.model.metrics import METRICS
from mcrisk.study import catalog
from mcrisk.study.checks import Int, Num
from mcrisk.study.overrides import OverrideError, set_path
from mcrisk.study.presets import leaves
from mcrisk.study.schema import Study, parse_yaml, study_from_dict
from mcrisk.workflows.run import run_study

HOURS_PER_YEAR = 8766.0  # 365.25 x 24, as MODEL.md's month of 730.5 h
DEFAULT_OUT = Path("outputs") / "claims"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Closed):
    """One published figure and the rule that says whether a scenario bears it out."""

    id: str
    text: str
    source: str
    date: str
    tag: Literal["V", "I", "O", "D", "LQ"]
    metric: str
    system: str | None = None
    ratio: tuple[str, str] | None = None  # metric of the first system / metric of the second
    holds_if: Literal[">=", "<="]
    published: Num
    rounding: Num = Field(gt=0)  # unit of the published figure's last digit
    reproduction: str  # what the point case assumes, in words
    # What the uncertain version measures where it is not the published quantity (e.g. the cost of
    # a token sold at the fleet's utilization against a cost at saturation).
    uncertain_measures: str | None = None

    @model_validator(mode="after")
    def _one_quantity(self) -> Check:
        if (self.system is None) == (self.ratio is None):
            raise ValueError("give exactly one of system (a metric of one system) or ratio ([numerator, denominator])")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)}")
        return self

    @property
    def systems(self) -> tuple[str, ...]:
        return (self.system,) if self.system is not None else tuple(self.ratio)

    def quantity(self) -> str:
        if self.system is not None:
            return f"{self.metric} of {self.system}"
        return f"{self.metric} of {self.ratio[0]} / {self.ratio[1]}"

    def value(self, metrics: Callable[[str], Any]) -> Any:
        """The checked quantity from a system -> metric values lookup (scalars or arrays)."""
        if self.system is not None:
            return metrics(self.system)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(metrics(self.ratio[0]), np.float64) / np.asarray(metrics(self.ratio[1]), np.float64)

    def holds(self, x: Any) -> Any:
        x = np.asarray(x, np.float64)
        return x >= self.published if self.holds_if == ">=" else x <= self.published

    def reproduces(self, x: float) -> bool:
        """True when x rounds to the published figure (within half a unit of its last digit)."""
        return abs(x - self.published) <= self.rounding / 2 * (1 + 1e-9)


class Uncertain(_Closed):
    scenarios: Int = Field(20_000, ge=1)
    note: str
    set: dict[str, Any] = {}


class ClaimFile(_Closed):
    title: str
    checks: list[Check] = Field(min_length=1)
    point: dict[str, Any]
    uncertain: Uncertain


class ClaimError(ValueError):
    """A claim file that cannot be used; the message names the file, the path and the fix."""


# --------------------------------------------------------------------------- loading


def claims_folder() -> Path:
    """The shipped claim files (configs/claims inside the package)."""
    return Path(str(resources.files("mcrisk.configs") / "claims"))


def claim_names() -> list[str]:
    return sorted(p.stem for p in claims_folder().glob("*.yaml"))


def _claim_path(name: str | Path) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = claims_folder() / f"{name}.yaml"
    if shipped.exists():
        return shipped
    raise ClaimError(f"unknown claim {str(name)!r}; shipped claims: {', '.join(claim_names())} (or give a .yaml path)")


def load_claim(name: str | Path) -> tuple[str, ClaimFile]:
    """(name, claim file) of a shipped claim or a claim file path; StudyError if it is malformed."""
    path = _claim_path(name)
    raw = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    try:
        return path.stem, ClaimFile.model_validate(raw)
    except ValidationError as exc:
        raise StudyError(problems_from(exc, ClaimFile), str(path)) from None


# --------------------------------------------------------------------------- catalog values


def _path_matches(pattern: str, path: str) -> bool:
    a, b = pattern.split("."), path.split(".")
    return len(a) == len(b) and all(x in ("*", y) for x, y in zip(a, b))


_FORMS = {
    "prior": {"prior"},
    "workload_price": {"workload_price", "interactivity_tok_s_user"},
    "tco_capex": {"tco_capex", "basis", "years"},
}


def _catalog_value(form: dict, path: str) -> tuple[Any, str]:
    """A catalog figure named in a claim file: (study value, provenance line)."""
    kind = next(k for k in _FORMS if k in form)
    if set(form) - _FORMS[kind]:
        raise ClaimError(f"{{{kind}: ...}} takes {', '.join(sorted(_FORMS[kind]))}, got {', '.join(sorted(form))}")
    if kind == "prior":
        applies, value, line = catalog.prior_value(form["prior"])
        if not _path_matches(applies, path):
            raise ClaimError(f"prior {form['prior']!r} is a value for {applies}, not for {path}")
        return value, line
    if kind == "workload_price":
        x = form.get("interactivity_tok_s_user")
        return (
            catalog.workload_price(form["workload_price"], x),
            catalog.workload_price_provenance(form["workload_price"], x),
        )
    system = catalog.get_entry(form["tco_capex"], "system")
    tco, years = system.tco_usd_per_gpu_hour, form.get("years", 4)
    if not isinstance(years, (int, float)) or isinstance(years, bool) or years <= 0:
        raise ClaimError(f"tco_capex years must be a number > 0, got {years!r}")
    basis = [form.get("basis", "costh")] if isinstance(form.get("basis", "costh"), str) else list(form["basis"])
    if not 1 <= len(basis) <= 2 or any(b not in ("costh", "costn", "costr") for b in basis):
        raise ClaimError(f"tco_capex basis must be costh, costn, costr or a [low, high] pair of them, got {basis}")
    hours = system.gpus_per_unit.value * years * HOURS_PER_YEAR
    dollars = [getattr(tco, b) * hours for b in basis]
    value = dollars[0] if len(dollars) == 1 else {"dist": "uniform", "low": min(dollars), "high": max(dollars)}
    rates = " to ".join(f"{b} ${getattr(tco, b):g}" for b in basis)
    line = (
        f"TCO {form['tco_capex']}: {rates}/GPU-hr x {system.gpus_per_unit.value} GPUs x {years:g} yr x "
        f"{HOURS_PER_YEAR:g} h; {tco.source}, {tco.date} [{tco.tag}]"
    )
    return value, line


def _resolve(tree: Any, path: str, lines: dict[str, str]) -> Any:
    """Replace every catalog value form in a study tree, recording its provenance by path."""
    if isinstance(tree, dict) and any(k in tree for k in _FORMS):
        try:
            value, lines[path] = _catalog_value(tree, path)
        except (catalog.CatalogError, ClaimError) as exc:
            raise ClaimError(f"{path}: {exc}") from None
        return value
    if isinstance(tree, dict):
        return {k: _resolve(v, f"{path}.{k}" if path else k, lines) for k, v in tree.items()}
    return tree


def studies(name: str, claim: ClaimFile) -> tuple[dict, dict, dict[str, str], dict[str, str]]:
    """The point and uncertain studies of a claim file as plain dicts, and the catalog lines of each."""
    point = copy.deepcopy(claim.point)
    point.setdefault("name", f"claim-{name}")
    point.setdefault("simulation", {})["scenarios"] = 1
    uncertain = copy.deepcopy(point)
    uncertain["simulation"]["scenarios"] = claim.uncertain.scenarios
    for dotted, value in claim.uncertain.set.items():
        try:
            set_path(uncertain, dotted, value)
        except OverrideError as exc:
            raise ClaimError(str(exc)) from None
    point_lines: dict[str, str] = {}
    uncertain_lines: dict[str, str] = {}
    return _resolve(point, "", point_lines), _resolve(uncertain, "", uncertain_lines), point_lines, uncertain_lines


# --------------------------------------------------------------------------- evaluation


def point_metrics(study: Study) -> dict[str, dict[str, float]]:
    """Every metric of every system of a study whose inputs are all fixed (float64 reference model)."""
    inputs = study.inputs()
    loose = [f"{i.path} ({i.dist.describe()})" for i in inputs if not i.dist.is_fixed]
    if loose:
        raise ClaimError(f"a point study fixes every input; these are uncertain: {', '.join(loose)}")
    values = {i.path: float(i.dist.mean()) for i in inputs}
    market = {i.path: values[i.path] for i in inputs if i.system is None}
    out = {}
    for name, system in study.systems.items():
        own = {i.field: values[i.path] for i in inputs if i.system == name}
        own.update(units=system.units, gpus_per_unit=system.gpus_per_unit, depreciation_years=system.depreciation_years)
        metrics = reference.system_metrics(market, own, study.simulation.horizon_months)
        out[name] = {m: float(v[0]) for m, v in metrics.items()}
    return out


def _distribution(check: Check, scenarios: pd.DataFrame) -> dict[str, float]:
    x = np.asarray(check.value(lambda s: scenarios[s].to_numpy()), np.float64)
    n = x.size
    p = float(np.count_nonzero(check.holds(x))) / n  # NaN never holds
    finite = x[~np.isnan(x)]
    q = np.quantile(finite, [0.05, 0.5, 0.95]) if finite.size else [math.nan] * 3
    return {
        "scenarios": n,
        "p_holds": p,
        "p_holds_mcse": math.sqrt(p * (1 - p) / n),
        "p5": float(q[0]),
        "p50": float(q[1]),
        "p95": float(q[2]),
        "n_nan": int(n - finite.size),
    }


@dataclass
class ClaimsResult:
    """One row per check (see COLUMNS), where claims.csv was written, and each claim's run folder."""

    table: pd.DataFrame
    csv: Path
    inputs_csv: Path
    folders: dict[str, Path]


COLUMNS = (
    "claim",
    "check",
    "text",
    "source",
    "date",
    "tag",
    "quantity",
    "holds_if",
    "published",
    "point_value",
    "reproduced",
    "reproduction",
    "scenarios",
    "p_holds",
    "p_holds_mcse",
    "p5",
    "p50",
    "p95",
    "n_nan",
    "uncertain_measures",
    "uncertainty",
    "run_folder",
)


def _input_rows(name: str, which: str, study: Study) -> list[dict]:
    """Every input of a claim's study with its value and source (inputs.csv)."""
    values = dict(leaves(study.resolved()))
    return [
        {
            "claim": name,
            "study": which,
            "path": path,
            "source": source,
            "value": json.dumps(values.get(path)) if isinstance(values.get(path), dict) else values.get(path),
        }
        for path, source in study.provenance().items()
    ]


def run_claims(
    names: Sequence[str | Path] | None = None,
    *,
    out: str | Path = DEFAULT_OUT,
    scenarios: int | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ClaimsResult:
    """Reproduce each claim at its point and run it under uncertainty; write claims.csv and inputs.csv.

    ``names``: shipped claim names (``claim_names()``) or claim file paths; all shipped claims
    if None. ``scenarios`` and ``seed`` override each uncertain study's. Each claim's run
    folder is ``out/<claim>/`` and is replaced on every call.
    """

    check_counts(scenarios=scenarios, seed=seed)  # before anything is announced or run
    out = Path(out)
    loaded = [load_claim(n) for n in (names or claim_names())]
    rows, input_rows, folders = [], [], {}
    for name, claim in loaded:
        point_raw, uncertain_raw, point_lines, uncertain_lines = studies(name, claim)
        point_study = study_from_dict(point_raw, f"claim {name}: point").with_provenance(point_lines)
        uncertain_study = study_from_dict(uncertain_raw, f"claim {name}: uncertain").with_provenance(uncertain_lines)
        for check in claim.checks:
            missing = [s for s in check.systems if s not in point_study.systems or s not in uncertain_study.systems]
            if missing:
                raise ClaimError(f"claim {name}: check {check.id} names systems {missing} that its studies lack")
        values = point_metrics(point_study)
        if progress is not None:
            progress(f"{name}: {scenarios or claim.uncertain.scenarios:,} scenarios")
        result = run_study(uncertain_study, out=out / name, scenarios=scenarios, seed=seed, force=True)
        folders[name] = result.folder
        metrics = sorted({c.metric for c in claim.checks})
        frame = pd.read_parquet(result.folder / "scenarios.parquet", columns=["scenario", "system", *metrics])
        frame["system"] = frame["system"].astype(str)
        for check in claim.checks:
            wide = frame.pivot(index="scenario", columns="system", values=check.metric)
            x = float(check.value(lambda s, metric=check.metric, point=values: point[s][metric]))
            rows.append(
                {
                    "claim": name,
                    "check": check.id,
                    "text": check.text,
                    "source": check.source,
                    "date": check.date,
                    "tag": check.tag,
                    "quantity": check.quantity(),
                    "holds_if": f"{check.holds_if} {check.published:g}",
                    "published": check.published,
                    "point_value": x,
                    "reproduced": check.reproduces(x),
                    "reproduction": " ".join(check.reproduction.split()),
                    **_distribution(check, wide),
                    "uncertain_measures": " ".join((check.uncertain_measures or "").split()) or None,
                    "uncertainty": " ".join(claim.uncertain.note.split()),
                    "run_folder": str(result.folder),
                }
            )
        input_rows += _input_rows(name, "point", point_study) + _input_rows(name, "uncertain", uncertain_study)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    out.mkdir(parents=True, exist_ok=True)
    csv, inputs_csv = out / "claims.csv", out / "inputs.csv"
    table.to_csv(csv, index=False)
    pd.DataFrame(input_rows).to_csv(inputs_csv, index=False)
    return ClaimsResult(table=table, csv=csv, inputs_csv=inputs_csv, folders=folders)
