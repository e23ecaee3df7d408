"""The study file: YAML 1.2 loading, the closed schema, defaults, and the flat list of inputs.

A study is validated once, on the host, before anything is simulated or written. Every
problem is collected and reported with its dotted path (``systems.gb200.capex_usd.high``).
Systems may start from catalog entries (preset, workload, software curve) and a study may be
sized to a budget; both are resolved here, and every value keeps a note of where it came from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mcrisk.errors import Problem, StudyError, _shown, problems_from
from mcrisk.study import limits, yaml12
from mcrisk.study.checks import Int
from mcrisk.study.checks import Num as Float
from mcrisk.study.correlations import check_correlations, correlation_matrix  # noqa: F401  (public: schema.correlation_matrix)
from mcrisk.study.distributions import Dist, DistBase, Fixed
from mcrisk.study.overrides import override_tree, relabel
from mcrisk.study.presets import CATALOG_KEYS, apply_catalog, apply_sizing, explain_missing, provenance_map
from mcrisk.study.ranges import InRange, NonNegative, Positive, UnitHalfOpen, UnitInterval

# --------------------------------------------------------------------------- YAML 1.2


def parse_yaml(text: str, source: str = "<study>") -> Any:
    """Parse YAML text safely (no code runs), raising StudyError on a syntax error."""
    limits.check_text(text, source)
    try:
        return yaml12.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        raise StudyError([Problem("", f"not valid YAML{where}: {what}")], source) from None


def _fixed(x: float) -> Fixed:
    return Fixed(dist="fixed", value=x)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Simulation(_Closed):
    scenarios: Int = Field(100_000, ge=1, le=2**32 - 1)
    horizon_months: Int = Field(48, ge=1, le=240)
    seed: Int = Field(0, ge=0, le=2**63 - 1)
    sampler: Literal["random", "sobol", "lhs"] = "random"
    precision: Literal["float32", "float64"] = "float32"


class TokenPrice(_Closed):
    initial_usd_per_mtok: Positive
    annual_decline: UnitHalfOpen = _fixed(0.0)
    volatility: NonNegative = _fixed(0.0)


class Demand(_Closed):
    utilization: UnitInterval
    ramp_months: NonNegative = _fixed(0.0)
    persistence: UnitHalfOpen = _fixed(0.8)
    volatility: NonNegative = _fixed(0.0)


class Electricity(_Closed):
    usd_per_kwh: NonNegative
    volatility: NonNegative = _fixed(0.0)
    mean_reversion: Annotated[Dist, AfterValidator(InRange(0.0, 12.0))] = _fixed(1.0)


class MarketRental(_Closed):
    volatility: NonNegative = _fixed(0.0)  # annual: the shock shared by every gpu_hours system


AtLeastOne = Annotated[Dist, AfterValidator(InRange(1.0))]


class Succession(_Closed):
    """New hardware generations: arrivals at month F, F + E, ... each cutting spot prices by a step."""

    first_month: AtLeastOne
    every_months: AtLeastOne | None = None  # absent: a single arrival
    token_price_step: UnitHalfOpen = _fixed(0.0)
    rental_step: UnitHalfOpen = _fixed(0.0)


class Market(_Closed):
    token_price: TokenPrice
    demand: Demand
    electricity: Electricity
    # Extensions (MODEL.md "How operators earn and finance"): absent is the base model, and is
    # left out of `resolved()` so that a study without them keeps its digest.
    rental: MarketRental | None = None
    succession: Succession | None = None


class Facility(_Closed):
    pue: Annotated[Dist, AfterValidator(InRange(1.0))] = _fixed(1.3)
    colocation_usd_per_kw_month: NonNegative = _fixed(0.0)


Rate = Annotated[Dist, AfterValidator(InRange(-1.0, lo_open=True))]


class Debt(_Closed):
    share: UnitHalfOpen = _fixed(0.0)  # of capex, borrowed at the purchase month
    annual_rate: NonNegative = _fixed(0.0)
    tenor_months: Int | None = Field(None, ge=1)  # absent: the horizon


class Finance(_Closed):
    discount_rate: Rate = _fixed(0.10)
    # Extensions; absent (None) is the base model: cost of equity = the discount rate, no tax, no debt.
    cost_of_equity: Rate | None = None
    tax_rate: UnitHalfOpen | None = None
    debt: Debt | None = None


class SoftwareSpeedup(_Closed):
    ceiling: Positive = _fixed(1.0)
    time_constant_months: Positive = _fixed(6.0)


class Rental(_Closed):
    initial_usd_per_gpu_hour: Positive
    annual_decline: UnitHalfOpen = _fixed(0.0)


class Contract(_Closed):
    """Take-or-pay: a share of capacity sold for `term_months` from go-live at a multiple of the initial spot price."""

    share: UnitInterval = _fixed(0.0)
    term_months: Int = Field(0, ge=0)
    price_multiple: Positive = _fixed(1.0)
    usage: UnitInterval = _fixed(1.0)
    annual_default_probability: UnitHalfOpen = _fixed(0.0)


class System(_Closed):
    # Catalog references (`mcrisk catalog`): resolved into the fields below at load time, and
    # dropped from `resolved()`, which spells every value out.
    preset: str | None = None
    workload: str | None = None
    interactivity_tok_s_user: Float | None = Field(None, gt=0, allow_inf_nan=False)
    software_curve: str | None = None
    serving: str | None = None
    units: Int = Field(1, ge=1)
    gpus_per_unit: Int = Field(ge=1)
    capex_usd: Positive
    it_power_kw: Positive
    idle_power_fraction: UnitInterval = _fixed(0.3)
    throughput_tokens_per_s_per_gpu: Positive
    efficiency: Annotated[Dist, AfterValidator(InRange(0.0, 1.5, lo_open=True))] = _fixed(1.0)
    availability: UnitInterval = _fixed(1.0)
    price_multiplier: Positive = _fixed(1.0)
    software_speedup: SoftwareSpeedup = SoftwareSpeedup()
    maintenance_fraction_per_year: NonNegative = _fixed(0.0)
    license_usd_per_gpu_year: NonNegative = _fixed(0.0)
    residual_value_fraction: UnitInterval = _fixed(0.0)
    depreciation_years: Float = Field(4.0, gt=0, allow_inf_nan=False)
    # Extensions (MODEL.md "How operators earn and finance"); absent (None) is the base model:
    # bought at month 0, live at once, selling tokens, no contract.
    purchase_month: Int | None = Field(None, ge=0)
    lead_months: NonNegative | None = None
    revenue_mode: Literal["tokens", "gpu_hours"] | None = None
    rental: Rental | None = None
    contract: Contract | None = None

    @model_validator(mode="after")
    def _rental_given(self) -> System:
        if self.revenue_mode == "gpu_hours" and self.rental is None:
            raise ValueError("revenue_mode: gpu_hours needs a rental section (rental.initial_usd_per_gpu_hour)")
        return self


class Sizing(_Closed):
    """Equal-budget comparison: each system's units = floor(budget / the mean of its per-unit figure)."""

    power_kw: Float | None = Field(None, gt=0, allow_inf_nan=False)  # IT power, per unit it_power_kw
    capex_usd: Float | None = Field(None, gt=0, allow_inf_nan=False)  # per unit capex_usd

    @model_validator(mode="after")
    def _one_budget(self) -> Sizing:
        if (self.power_kw is None) == (self.capex_usd is None):
            raise ValueError("give exactly one budget: power_kw (IT kW) or capex_usd")
        return self


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # fullmatch: a trailing newline is no letter
PORTFOLIO = "portfolio"  # the `system` of the portfolio row (MODEL.md "The portfolio row")


class Study(_Closed):
    name: str = Field(min_length=1, max_length=limits.MAX_NAME)
    description: str | None = None
    simulation: Simulation = Simulation()
    market: Market
    facility: Facility = Facility()
    finance: Finance = Finance()
    sizing: Sizing | None = None
    portfolio: bool | None = None  # true: one more row per scenario, every system as one fleet
    systems: dict[str, System] = Field(min_length=1)
    correlations: list[tuple[str, str, Annotated[Float, Field(ge=-1.0, le=1.0)]]] = []
    # Named stress tests: dotted study path -> value, each run on the base case's draws.
    stress: dict[str, dict[str, Any]] = {}
    _provenance: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _study_name(cls, v: str) -> str:
        # The name is the default run folder, outputs/<name>/: one plain folder name, never a path.
        if not _NAME.fullmatch(v):
            raise ValueError(
                f"the study name must use letters, digits, '_' and '-' (no dots, slashes or spaces; it names "
                f"the run folder outputs/<name>/), got {_shown(v)}"
            )
        return v

    @field_validator("stress")
    @classmethod
    def _stress_names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        bad = [n for n in v if not _NAME.fullmatch(n) or n == "base"]
        if bad:
            raise ValueError(f"stress names must use letters, digits, '_' and '-' and not be 'base', got {bad}")
        return v

    @field_validator("systems")
    @classmethod
    def _system_names(cls, v: dict[str, System]) -> dict[str, System]:
        bad = [n for n in v if not _NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"system names must use letters, digits, '_' and '-' (no dots), got {bad}")
        return v

    @model_validator(mode="after")
    def _portfolio_name(self) -> Study:
        if self.portfolio and PORTFOLIO in self.systems:
            raise ValueError(f"with portfolio: true no system may be named {PORTFOLIO!r} (the portfolio row's name)")
        return self

    # ------------------------------------------------------------------ derived views
    def inputs(self) -> list[Input]:
        """Every static input of the study, market first, then each system's (in study order)."""
        out: list[Input] = []
        for section in ("market", "facility", "finance"):
            for path, d in _walk_dists(getattr(self, section), section):
                out.append(Input(path=path, column=path, dist=d, system=None, field=path))
        for name, system in self.systems.items():
            for path, d in _walk_dists(system, f"systems.{name}"):
                field = path[len(f"systems.{name}.") :]
                out.append(Input(path=path, column=f"system.{field}", dist=d, system=name, field=field))
        return out

    def resolved(self) -> dict:
        """The study as a plain study: every default and catalog value filled in, fixed DISTs
        written as plain numbers, without catalog references or sizing (units are spelled out)."""
        return _plain(self.model_dump(mode="json"))

    def provenance(self) -> dict[str, str]:
        """Where each value of `resolved()` came from, by study path: 'study', 'default',
        'preset NAME: source, date [tag]', 'workload ...', 'curve ...' or 'sizing ...'."""
        return dict(self._provenance)

    def digest(self) -> str:
        """sha256 of the resolved study (canonical JSON): what a result was computed from."""
        text = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def with_provenance(self, sources: Mapping[str, str]) -> Study:
        """A copy whose provenance names `sources` for those paths (values a caller filled in)."""
        out = self.model_copy()
        out._provenance = {**self._provenance, **{p: s for p, s in sources.items() if p in self._provenance}}
        return out

    def to_yaml(self, provenance: bool = True) -> str:
        """`resolved()` as YAML, followed (if asked) by comments naming the source of every value
        the study did not write itself (catalog entries, sizing)."""
        text = yaml12.dump(self.resolved(), sort_keys=False, width=100)
        lines = [f"#   {p}: {src}" for p, src in self._provenance.items() if src not in ("study", "default")]
        if provenance and lines:
            text += "# Values not written in the study, and where they came from:\n" + "\n".join(lines) + "\n"
        return text


@dataclass(frozen=True)
class Input:
    """One static input: its study path, its output column, its distribution, and its owner."""

    path: str  # e.g. 'systems.gb200.capex_usd' or 'facility.pue'
    column: str  # e.g. 'system.capex_usd' or 'facility.pue'
    dist: Dist
    system: str | None  # owning system, None for market/facility/finance inputs
    field: str  # path inside the system ('software_speedup.ceiling'), or the full path


def _walk_dists(model: BaseModel, prefix: str):
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel) and not isinstance(value, DistBase):
            yield from _walk_dists(value, f"{prefix}.{name}")
        elif isinstance(value, DistBase):
            yield f"{prefix}.{name}", value


# Optional extension fields: left out of `resolved()` where absent (None), so that a study
# without them resolves, and hashes, as it did before they existed.
EXTENSION_KEYS = frozenset(
    {
        "rental",
        "succession",
        "every_months",
        "cost_of_equity",
        "tax_rate",
        "debt",
        "tenor_months",
        "portfolio",
        "purchase_month",
        "lead_months",
        "revenue_mode",
        "contract",
    }
)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("dist") == "fixed" and set(obj) == {"dist", "value"}:
            return obj["value"]
        return {
            k: _plain(v)
            for k, v in obj.items()
            if k not in CATALOG_KEYS and k != "sizing" and not (k in EXTENSION_KEYS and v is None)
        }
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _check_timing(study: Study) -> list[Problem]:
    """Each system's purchase month lies within the horizon."""
    T = study.simulation.horizon_months
    return [
        Problem(
            f"systems.{name}.purchase_month",
            f"must lie in [0, {T - 1}] (the horizon is {T} months), got {s.purchase_month}",
        )
        for name, s in study.systems.items()
        if s.purchase_month is not None and s.purchase_month > T - 1
    ]


def _check_stress(raw: dict, study: Study) -> list[Problem]:
    """Each stress must give a valid study when applied to this one; its problems carry its name."""
    problems: list[Problem] = []
    for name, overrides in study.stress.items():
        tree, found = override_tree(raw, overrides, f"stress.{name}")
        if not found:
            try:
                study_from_dict(tree, f"stress.{name}")
            except StudyError as exc:
                found = relabel(exc.problems, f"stress.{name}")
        problems += found
    return problems


# --------------------------------------------------------------------------- loading


def study_from_dict(raw: Any, source: str = "<study>") -> Study:
    """Validate a study given as plain data; raise StudyError with every problem found."""
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise StudyError([Problem("", f"a study must be a mapping of sections, got {got}")], source)
    merged, problems, filled = apply_catalog(raw)
    failed = {p.path.split(".")[1] for p in problems if not p.message.startswith("only applies")}
    try:
        study = Study.model_validate(merged)
    except ValidationError as exc:
        raise StudyError(problems + explain_missing(problems_from(exc, Study), raw, failed), source) from None
    study, sizing_problems, sized = apply_sizing(study, raw)
    problems += sizing_problems + check_correlations(study) + _check_timing(study)
    if not problems:
        problems += _check_stress(raw, study)
    if problems:
        raise StudyError(problems, source)
    study._provenance = provenance_map(study, raw, {**filled, **sized})
    return study


def load_study(source: str | Path | Mapping | Study | None = None) -> Study:
    """Load and validate a study from a YAML path, YAML text already parsed (a dict), or a Study;
    None (the default) loads the embedded default study, as `run_study(None)` runs it."""
    if source is None:
        source = default_study_path()
    if isinstance(source, Study):
        return source
    if isinstance(source, Mapping):
        return study_from_dict(dict(source))
    path = Path(source)
    name = str(path)
    try:
        if path.stat().st_size > limits.MAX_BYTES:  # (refused before it is read: a study is a few kB)
            raise StudyError(
                [Problem("", f"the file is {path.stat().st_size:,} bytes; a study is at most {limits.MAX_BYTES:,}")],
                name,
            )
        data = path.read_bytes()
    except OSError as exc:
        raise StudyError([Problem("", f"cannot read the study file: {exc.strerror or exc}")], name) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError([Problem("", f"the file is not UTF-8 text (byte {exc.start})")], name) from None
    return study_from_dict(parse_yaml(text, name), name)


def load_study_with_provenance(source: str | Path | Mapping | Study | None = None) -> tuple[Study, dict[str, str]]:
    """`load_study`, plus where each resolved value came from (see `Study.provenance`)."""
    study = load_study(source)
    return study, study.provenance()


def default_study_path() -> Path:
    """The embedded default study (configs/default.yaml, shipped inside the package)."""
    return Path(str(resources.files("mcrisk.configs") / "default.yaml"))
