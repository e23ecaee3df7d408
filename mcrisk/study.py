"""The study file: YAML 1.2 loading, the closed schema, defaults, and the flat list of inputs.

A study is validated once, on the host, before anything is simulated or written. Every
problem is collected and reported with its dotted path (``systems.gb200.capex_usd.high``).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import numpy as np
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .distributions import Dist, Fixed, LogNormal
from .errors import Problem, StudyError

# --------------------------------------------------------------------------- YAML 1.2


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 floats (`3.0e6`, `1e5` are numbers) and no duplicate keys."""


_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str = "<study>") -> Any:
    """Parse YAML text safely (no code runs), raising StudyError on a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        raise StudyError([Problem("", f"not valid YAML{where}: {what}")], source) from None


# --------------------------------------------------------------------------- ranges of DIST fields


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class InRange:
    """Checks that every value a DIST can take lies in [lo, hi] (open ends where asked)."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def text(self) -> str:
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"

    def __call__(self, d: Dist) -> Dist:
        lo, hi = d.support()
        # A lognormal's support is (0, inf): 0 is its infimum, never a value it takes.
        attains_lo = not isinstance(d, LogNormal)
        bad_lo = lo < self.lo or (self.lo_open and lo <= self.lo and attains_lo)
        bad_hi = hi > self.hi or (self.hi_open and hi >= self.hi)
        if not (bad_lo or bad_hi):
            return d
        if isinstance(d, Fixed):
            raise ValueError(f"must lie in {self.text()}, got {_fmt(d.value)}")
        edge = lo if bad_lo else hi
        hint = " (truncate it with low/high)" if math.isinf(edge) else ""
        raise ValueError(f"must lie in {self.text()}; {d.describe()} reaches {_fmt(edge)}{hint}")


Positive = Annotated[Dist, AfterValidator(InRange(0.0, lo_open=True))]
NonNegative = Annotated[Dist, AfterValidator(InRange(0.0))]
UnitInterval = Annotated[Dist, AfterValidator(InRange(0.0, 1.0))]
UnitHalfOpen = Annotated[Dist, AfterValidator(InRange(0.0, 1.0, hi_open=True))]


def _fixed(x: float) -> Fixed:
    return Fixed(dist="fixed", value=x)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Simulation(_Closed):
    scenarios: int = Field(100_000, ge=1, le=2**32 - 1)
    horizon_months: int = Field(48, ge=1, le=240)
    seed: int = Field(0, ge=0, le=2**63 - 1)
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


class Market(_Closed):
    token_price: TokenPrice
    demand: Demand
    electricity: Electricity


class Facility(_Closed):
    pue: Annotated[Dist, AfterValidator(InRange(1.0))] = _fixed(1.3)
    colocation_usd_per_kw_month: NonNegative = _fixed(0.0)


class Finance(_Closed):
    discount_rate: Annotated[Dist, AfterValidator(InRange(-1.0, lo_open=True))] = _fixed(0.10)


class SoftwareSpeedup(_Closed):
    ceiling: Positive = _fixed(1.0)
    time_constant_months: Positive = _fixed(6.0)


class System(_Closed):
    preset: str | None = None
    units: int = Field(1, ge=1)
    gpus_per_unit: int = Field(ge=1)
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
    depreciation_years: float = Field(4.0, gt=0, allow_inf_nan=False)


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


class Study(_Closed):
    name: str = Field(min_length=1)
    description: str | None = None
    simulation: Simulation = Simulation()
    market: Market
    facility: Facility = Facility()
    finance: Finance = Finance()
    systems: dict[str, System] = Field(min_length=1)
    correlations: list[tuple[str, str, Annotated[float, Field(ge=-1.0, le=1.0)]]] = []

    @field_validator("systems")
    @classmethod
    def _system_names(cls, v: dict[str, System]) -> dict[str, System]:
        bad = [n for n in v if not _NAME.match(n)]
        if bad:
            raise ValueError(
                f"system names must use letters, digits, '_' and '-' (no dots), got {bad}"
            )
        return v

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
        """The study with every default filled in, fixed DISTs written as plain numbers."""
        return _plain(self.model_dump(mode="json"))

    def digest(self) -> str:
        """sha256 of the resolved study (canonical JSON): what a result was computed from."""
        text = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False, width=100)


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
        if isinstance(value, BaseModel) and not hasattr(value, "quantile"):
            yield from _walk_dists(value, f"{prefix}.{name}")
        elif hasattr(value, "quantile"):
            yield f"{prefix}.{name}", value


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("dist") == "fixed" and set(obj) == {"dist", "value"}:
            return obj["value"]
        return {k: _plain(v) for k, v in obj.items() if not (k == "preset" and v is None)}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- errors


_DIST_TAGS = {"fixed", "uniform", "loguniform", "triangular", "pert", "normal", "lognormal", "beta", "discrete"}


def _clean_loc(loc: tuple) -> str:
    parts: list[str] = []
    for i, p in enumerate(loc):
        s = str(p)
        if "[" in s and "]" in s and not s.isdigit():  # pydantic's function-after[...] wrappers
            continue
        if s in _DIST_TAGS and i > 0 and str(loc[i - 1]) != "systems":
            continue
        parts.append(s)
    return ".".join(parts)


def _allowed_here(loc: tuple) -> list[str]:
    """Field names allowed beside an unknown key at `loc` (for 'did you mean')."""
    model: Any = Study
    for p in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            f = model.model_fields.get(str(p))
            if f is None:
                return []
            ann = f.annotation
            if getattr(ann, "__origin__", None) is dict:
                model = ("dict", ann.__args__[1])
            else:
                model = ann
        elif isinstance(model, tuple):
            model = model[1]
        else:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _message(err: dict) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_here(err["loc"])
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown field{hint}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "union_tag_invalid":
        return f"unknown distribution {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "a distribution needs a 'dist' key (fixed, uniform, loguniform, triangular, pert, normal, lognormal, beta or discrete), or write a plain number"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {value!r}"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"must be a finite number, got {value!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {value!r}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {value!r}"
    if kind in ("too_short", "too_long"):
        return f"{err['msg'][0].lower()}{err['msg'][1:]}"
    if kind == "model_attributes_type":  # a DIST given as something else than a number or a mapping
        return f"must be a number or a distribution such as {{dist: uniform, low: 1, high: 2}}, got {value!r}"
    if kind in ("dict_type", "model_type"):
        return f"must be a mapping of fields, got {value!r}"
    if kind in ("string_type",):
        return f"must be text, got {value!r}"
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg


def problems_from(exc: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into study problems with clean dotted paths."""
    out = [Problem(_clean_loc(e["loc"]), _message(e)) for e in exc.errors()]
    seen, unique = set(), []
    for p in out:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            unique.append(p)
    return unique


# --------------------------------------------------------------------------- correlations


def _check_correlations(study: Study) -> list[Problem]:
    from .sampling import check_correlation_matrix

    inputs = {i.path: i for i in study.inputs()}
    problems: list[Problem] = []
    pairs: dict[tuple[str, str], float] = {}
    for k, (a, b, rho) in enumerate(study.correlations):
        where = f"correlations.{k}"
        ok = True
        for j, p in enumerate((a, b)):
            if p not in inputs:
                close = difflib.get_close_matches(p, list(inputs), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(Problem(f"{where}.{j}", f"unknown input {p!r}{hint}"))
                ok = False
            elif inputs[p].dist.is_fixed:
                problems.append(
                    Problem(f"{where}.{j}", f"{p!r} is fixed, so it cannot be correlated; give it a distribution or drop this pair")
                )
                ok = False
        if not ok:
            continue
        if a == b:
            problems.append(Problem(where, f"pairs an input with itself ({a!r})"))
            continue
        key = tuple(sorted((a, b)))
        if key in pairs:
            problems.append(Problem(where, f"the pair ({a}, {b}) is given twice"))
            continue
        pairs[key] = rho
    if problems or not pairs:
        return problems
    names = sorted({p for pair in pairs for p in pair})
    pos = {n: i for i, n in enumerate(names)}
    corr = np.eye(len(names))
    for (a, b), rho in pairs.items():
        corr[pos[a], pos[b]] = corr[pos[b], pos[a]] = rho
    msg = check_correlation_matrix(corr)
    if msg:
        problems.append(Problem("correlations", msg))
    return problems


# --------------------------------------------------------------------------- presets


def _apply_presets(raw: dict) -> tuple[dict, list[Problem], dict[str, str]]:
    """Fill each system's fields from its catalog preset; the study's own fields win."""
    systems = raw.get("systems")
    provenance: dict[str, str] = {}
    problems: list[Problem] = []
    if not isinstance(systems, dict):
        return raw, problems, provenance
    raw = copy.deepcopy(raw)
    for name, spec in raw["systems"].items():
        if not isinstance(spec, dict) or not spec.get("preset"):
            continue
        try:
            from . import catalog

            base = catalog.system_fields(spec["preset"])
            sources = catalog.system_provenance(spec["preset"])
        except (KeyError, ValueError, ImportError) as exc:
            msg = exc.args[0] if exc.args else str(exc)
            problems.append(Problem(f"systems.{name}.preset", str(msg)))
            continue
        merged = _deep_merge(base, spec)
        for field in base:
            if field not in spec:
                provenance[f"systems.{name}.{field}"] = sources.get(field, f"preset {spec['preset']}")
        raw["systems"][name] = merged
    return raw, problems, provenance


def _deep_merge(base: dict, top: Mapping) -> dict:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and "dist" not in v:
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- loading


def study_from_dict(raw: Any, source: str = "<study>") -> Study:
    """Validate a study given as plain data; raise StudyError with every problem found."""
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise StudyError([Problem("", f"a study must be a mapping of sections, got {got}")], source)
    raw, problems, _ = _apply_presets(raw)
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        raise StudyError(problems + problems_from(exc), source) from None
    problems += _check_correlations(study)
    if problems:
        raise StudyError(problems, source)
    return study


def load_study(source: str | Path | Mapping | Study) -> Study:
    """Load and validate a study from a YAML path, YAML text already parsed (a dict), or a Study."""
    if isinstance(source, Study):
        return source
    if isinstance(source, Mapping):
        return study_from_dict(dict(source))
    path = Path(source)
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StudyError([Problem("", f"cannot read the study file: {exc.strerror or exc}")], name) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError([Problem("", f"the file is not UTF-8 text (byte {exc.start})")], name) from None
    return study_from_dict(parse_yaml(text, name), name)


def default_study_path() -> Path:
    """The embedded default study (configs/default.yaml, shipped inside the package)."""
    return Path(str(resources.files("mcrisk.configs") / "default.yaml"))
