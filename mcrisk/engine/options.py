"""A run's options: typed, checked once, and recorded as the manifest's and checkpoints' ``options``.

:class:`RunOptions` is what every part of a run reads (the chunk loop, the writer, publishing).
Its constructor checks every value and raises one :class:`~mcrisk.errors.StudyError` naming each
option by its argument name (``scenarios``, ``chunk_size``: the keywords of ``run_study``; the
CLI shows them as its flags, ``--scenarios``, ``--chunk-size``). :meth:`RunOptions.record` is the
JSON object a run records, and :meth:`RunOptions.from_record` reads one back (``--from-manifest``,
``--resume``, ``mcrisk merge``), including those of runs that recorded fewer options.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcrisk.engine.plan import MONTHLY_SCENARIOS, PLAIN_SYSTEM_FIELDS
from mcrisk.errors import Problem, StudyError, _shown, type_name
from mcrisk.model.metrics import ALL_METRICS
from mcrisk.stats.convergence import parse_target
from mcrisk.study.columns import study_path
from mcrisk.study.schema import Study

DIAGNOSTIC_DRAWS = 1 << 14  # scenarios kept on the host for ArviZ (ESS, MCSE of p5, R-hat)
NoneType = type(None)


def _whole(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def count_problems(
    *,
    scenarios: Any = None,
    seed: Any = None,
    chunk_size: Any = None,
    precision: Any = None,
    checkpoint_every: Any = None,
    shard: Any = None,
    monthly_scenarios: Any = MONTHLY_SCENARIOS,
) -> list[Problem]:
    """What is wrong with the counts of a run (None: not given), each problem named by its argument."""
    problems = []
    if monthly_scenarios is not None and not (_whole(monthly_scenarios) and monthly_scenarios >= 1):
        problems.append(
            Problem("monthly_scenarios", f"must be a whole number >= 1 (or all), got {monthly_scenarios!r}")
        )
    if shard is not None and not (
        isinstance(shard, Sequence)
        and len(shard) == 2
        and all(map(_whole, shard))
        and 1 <= shard[1]
        and 0 <= shard[0] < shard[1]
    ):
        problems.append(Problem("shard", f"must be i/k with 0 <= i < k, got {shard}"))
    bounds = (
        ("scenarios", scenarios, 1, 2**32 - 1, "must be between 1 and 4294967295"),
        ("seed", seed, 0, 2**63 - 1, "must be a non-negative integer"),
        ("chunk_size", chunk_size, 1, 1 << 26, "must be between 1 and 67108864"),
        ("checkpoint_every", checkpoint_every, 1, None, "must be >= 1 chunk"),
    )
    for name, value, lo, hi, says in bounds:
        if value is not None and not (_whole(value) and lo <= value and (hi is None or value <= hi)):
            problems.append(Problem(name, f"{says}, got {value}"))
    if precision is not None and precision not in ("float32", "float64"):
        problems.append(Problem("precision", f"must be float32 or float64, got {precision!r}"))
    return problems


def check_counts(**counts: Any) -> None:
    """StudyError (source "options") naming every count that :func:`count_problems` refuses."""
    problems = count_problems(**counts)
    if problems:
        raise StudyError(problems, "options")


@dataclass(frozen=True)
class RunOptions:
    """How a study is run. Sequences are kept as tuples; the record holds them as JSON arrays.

    `chunk_size` None: the plan's default; `checkpoint_every` None: about every 4M scenarios
    (128M on accelerators), in chunks; `shard` (i, k): the i-th of k slices of the chunks;
    `columns` None: every Parquet column; `sample_fraction` None: every scenario's rows;
    `monthly_scenarios` None: bands over every scenario; `sampler_dims`: a base run's sampler
    dimensions, for variants that share its draws; `overrides`: the ``--set`` values, a record
    only (study.yaml already has them); `target_mcse`: 'METRIC:STAT:VALUE' to stop early.
    """

    scenarios: int
    seed: int
    precision: str
    chunk_size: int | None = None
    write_scenarios: bool = True
    diagnostic_draws: int = DIAGNOSTIC_DRAWS
    checkpoint_every: int | None = None
    shard: tuple[int, int] | None = None
    columns: tuple[str, ...] | None = None
    sample_fraction: float | None = None
    monthly: bool = True
    monthly_scenarios: int | None = MONTHLY_SCENARIOS
    sampler_dims: tuple[str, ...] | None = None
    overrides: Mapping[str, Any] | None = field(default=None, compare=False)
    target_mcse: str | None = None
    analyze: bool = True
    stress: bool = True

    def __post_init__(self) -> None:
        check_counts(
            scenarios=self.scenarios,
            seed=self.seed,
            chunk_size=self.chunk_size,
            precision=self.precision,
            checkpoint_every=self.checkpoint_every,
            shard=self.shard,
            monthly_scenarios=self.monthly_scenarios,
        )
        problems = []
        if self.sample_fraction is not None and not (0.0 < self.sample_fraction <= 1.0):
            problems.append(Problem("sample_fraction", f"must be in (0, 1], got {self.sample_fraction}"))
        if self.columns is not None and not list(self.columns):  # ("--columns ''" kept every column)
            problems.append(
                Problem(
                    "columns", "names no column: give the columns to keep, or leave the option out to keep every one"
                )
            )
        if problems:
            raise StudyError(problems, "options")
        if self.target_mcse is not None:
            try:
                parse_target(self.target_mcse)
            except StudyError as exc:
                raise StudyError([Problem("target_mcse", p.message) for p in exc.problems], "options") from None
            if self.shard is not None:
                raise StudyError(
                    [Problem("target_mcse", "cannot be combined with shard (each shard would stop on its own)")],
                    "options",
                )
        for name in ("scenarios", "seed", "chunk_size", "checkpoint_every", "monthly_scenarios", "diagnostic_draws"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("shard", "columns", "sampler_dims"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.overrides is not None:
            object.__setattr__(self, "overrides", dict(self.overrides) or None)

    @classmethod
    def for_study(
        cls,
        study: Study,
        *,
        scenarios: int | None = None,
        seed: int | None = None,
        precision: str | None = None,
        **given: Any,
    ) -> RunOptions:
        """Options for `study`: its ``simulation`` section fills in the scenarios, seed and precision
        not given, and the columns kept must be columns of its rows."""
        sim = study.simulation
        opts = cls(
            scenarios=sim.scenarios if scenarios is None else scenarios,
            seed=sim.seed if seed is None else seed,
            precision=sim.precision if precision is None else precision,
            **given,
        )
        opts.check_columns(study)
        return opts

    def check_columns(self, study: Study) -> None:
        """StudyError naming each column kept that the study's rows do not have (with the closest that they do)."""
        if self.columns is None:
            return
        known = {*ALL_METRICS, *(i.column for i in study.inputs()), *(f"system.{p}" for p in PLAIN_SYSTEM_FIELDS)}
        problems = []
        for c in self.columns:  # a dotted path, or its Parquet column name (mcrisk.study.columns)
            if study_path(c) not in known and c not in ("scenario", "system"):
                close = difflib.get_close_matches(c, sorted(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(Problem("columns", f"unknown column {c!r}{hint}"))
        if problems:
            raise StudyError(problems, "options")

    @property
    def shard_index(self) -> tuple[int, int]:
        """(i, k): this run's slice of k; (0, 1) for a whole run."""
        return self.shard or (0, 1)

    def replace(self, **changes: Any) -> RunOptions:
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """The JSON object a run records (manifest.json and checkpoints: ``options``)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v
        return out

    @staticmethod
    def record_problems(obj: Mapping[str, Any]) -> list[str]:
        """What is wrong with a recorded ``options`` object: missing, mistyped or unknown options."""
        problems = []
        missing = [f"'options.{k}'" for k in RECORDED if k not in obj]
        if missing:
            problems.append(f"no field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        for k, types in (RECORDED | OPTIONAL).items():
            if k in obj and not _is(obj[k], types):
                problems.append(f"'options.{k}' must be {type_name(types)}, got {_shown(obj[k])}")
        for k, (t, names) in _LIST_ELEMENTS.items():
            items = obj.get(k)
            if isinstance(items, list) and not all(_is(x, t) for x in items):
                problems.append(f"'options.{k}' must be a list of {names}, got {_shown(items)}")
        for k, low in _MINIMA.items():
            if _is(obj.get(k), int) and obj[k] < low:
                problems.append(f"'options.{k}' must be >= {low}, got {obj[k]}")
        if isinstance(obj.get("shard"), list) and len(obj["shard"]) != 2:
            problems.append(f"'options.shard' must be [index, count], got {_shown(obj['shard'])}")
        unknown = [f"'options.{k}'" for k in obj if k not in RECORDED and k not in OPTIONAL]
        if unknown:
            problems.append(f"{', '.join(unknown)}: not an option of this version of mcrisk run")
        return problems

    @classmethod
    def from_record(cls, obj: Mapping[str, Any]) -> RunOptions:
        """The options a run recorded (`obj` free of :meth:`record_problems`); an option an older run
        did not record takes its default, but for `monthly_scenarios`: those runs kept bands over
        every scenario."""
        problems = cls.record_problems(obj)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**{"monthly_scenarios": None, **obj})


# The options a run records, with their JSON types: those every run records, then those an older run may lack.
RECORDED = {
    "scenarios": int,
    "seed": int,
    "precision": str,
    "chunk_size": (int, NoneType),
    "write_scenarios": bool,
    "diagnostic_draws": int,
    "checkpoint_every": (int, NoneType),
}
OPTIONAL = {
    "shard": (list, NoneType),
    "columns": (list, NoneType),
    "sample_fraction": (float, NoneType),
    "monthly": bool,
    "monthly_scenarios": (int, NoneType),
    "sampler_dims": (list, NoneType),
    "overrides": (dict, NoneType),
    "target_mcse": (str, NoneType),
    "analyze": bool,
    "stress": bool,
}
# The least value of each recorded count.
_MINIMA = {
    "scenarios": 1,
    "seed": 0,
    "chunk_size": 1,
    "diagnostic_draws": 0,
    "checkpoint_every": 1,
    "monthly_scenarios": 1,
}
# The type of every element of the list options (a shard is [i, k]), and its name in a message.
_LIST_ELEMENTS = {"shard": (int, "whole numbers"), "columns": (str, "strings"), "sampler_dims": (str, "strings")}


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    """Whether a JSON value has one of `types` (true is not a count; a whole number is a number)."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, types)
