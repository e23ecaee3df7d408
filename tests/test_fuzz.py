"""Property-based tests (hypothesis): malformed studies, raw files and CLI flags never crash mcrisk.

Every generated input is INVALID by construction (and where construction alone cannot promise
that, it is filtered with `assume`), so every property asserts a failure:

1. mutations of a valid study (`small_study()`): a wrong type at any node, an out-of-range value
   for the field (ranges from STUDY.md), an inconsistent DIST, a deleted required field, an unknown
   field at any level, an unknown catalog name (preset, workload, software_curve) -> `study_from_dict` raises StudyError, every problem names a path in a real
   section and a message, and one problem sits at (or under) the mutated path; a sample of them also
   goes through `mcrisk validate` and `mcrisk run` (exit 2, `error:`, no traceback, nothing written);
2. correlation matrices that are not positive semi-definite, and correlations on unknown or fixed
   inputs -> a problem at `correlations` (naming the eigenvalue) or at `correlations.K.J`;
3. raw files: invalid YAML, non-UTF-8 bytes, empty files, top-level scalars and lists, duplicate
   keys -> `validate` and `run` exit 2 with `error:`, no traceback, no run folder;
4. bad CLI flags of `run` on a valid study -> exit 2 naming the flag, nothing written;
5. Python-object YAML tags are refused by the safe loader and never executed.

The CLI runs in-process (typer's CliRunner), and `run` only ever sees invalid input, which fails
before JAX compiles anything. At the end of the module a line reports how many malformed inputs
were tried (`TRIED`, counted in each test body, explicit examples included). MCRISK_FUZZ_SCALE=10
runs ten times as many.
"""

from __future__ import annotations

import collections
import copy
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.errors import StudyError
from mcrisk.study.schema import load_study, parse_yaml, study_from_dict

from .conftest import small_study

runner = CliRunner()

# How many malformed inputs each property tried; reported once the module is done.
TRIED: collections.Counter = collections.Counter()

# MCRISK_FUZZ_SCALE multiplies every max_examples (default 1: about 1,000 inputs in ~25 s).
SCALE = float(os.environ.get("MCRISK_FUZZ_SCALE", "1"))


def n(examples: int) -> int:
    return max(1, round(examples * SCALE))


# No example database (hypothesis still keeps its own caches in .hypothesis/, which it git-ignores).
FUZZ = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}


@pytest.fixture(scope="module", autouse=True)
def _report_tried(request):
    yield
    total = sum(TRIED.values())
    parts = ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items()))
    line = f"test_fuzz: {total} malformed inputs tried ({parts})"
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is None or capman is None:  # pragma: no cover - pytest without them (xdist workers)
        print(line)
        return
    with capman.global_and_fixture_disabled():  # past pytest's capture, also under -q
        reporter.write_line("")
        reporter.write_line(line)


# --------------------------------------------------------------------------- the schema, from STUDY.md

SECTIONS = {"name", "description", "simulation", "market", "facility", "finance", "sizing", "systems", "correlations"}
SYSTEMS = tuple(small_study()["systems"])  # ('rack', 'server')
INF = math.inf

# DIST fields: (lo, hi, lo_open, hi_open); every value a DIST takes must lie in that interval.
MARKET_DISTS = {
    "market.token_price.initial_usd_per_mtok": (0.0, INF, True, False),
    "market.token_price.annual_decline": (0.0, 1.0, False, True),
    "market.token_price.volatility": (0.0, INF, False, False),
    "market.demand.utilization": (0.0, 1.0, False, False),
    "market.demand.ramp_months": (0.0, INF, False, False),
    "market.demand.persistence": (0.0, 1.0, False, True),
    "market.demand.volatility": (0.0, INF, False, False),
    "market.electricity.usd_per_kwh": (0.0, INF, False, False),
    "market.electricity.volatility": (0.0, INF, False, False),
    "market.electricity.mean_reversion": (0.0, 12.0, False, False),
    "facility.pue": (1.0, INF, False, False),
    "facility.colocation_usd_per_kw_month": (0.0, INF, False, False),
    "finance.discount_rate": (-1.0, INF, True, False),
}
SYSTEM_DISTS = {
    "capex_usd": (0.0, INF, True, False),
    "it_power_kw": (0.0, INF, True, False),
    "idle_power_fraction": (0.0, 1.0, False, False),
    "throughput_tokens_per_s_per_gpu": (0.0, INF, True, False),
    "efficiency": (0.0, 1.5, True, False),
    "availability": (0.0, 1.0, False, False),
    "price_multiplier": (0.0, INF, True, False),
    "software_speedup.ceiling": (0.0, INF, True, False),
    "software_speedup.time_constant_months": (0.0, INF, True, False),
    "maintenance_fraction_per_year": (0.0, INF, False, False),
    "license_usd_per_gpu_year": (0.0, INF, False, False),
    "residual_value_fraction": (0.0, 1.0, False, False),
}
DIST_RANGES = {**MARKET_DISTS, **{f"systems.{s}.{f}": r for s in SYSTEMS for f, r in SYSTEM_DISTS.items()}}

# Whole-number fields: [lo, hi] (hi None: unbounded).
INT_RANGES = {
    "simulation.scenarios": (1, 2**32 - 1),
    "simulation.horizon_months": (1, 240),
    "simulation.seed": (0, 2**63 - 1),
    **{f"systems.{s}.units": (1, None) for s in SYSTEMS},
    **{f"systems.{s}.gpus_per_unit": (1, None) for s in SYSTEMS},
}
POSITIVE_FLOATS = {f"systems.{s}.depreciation_years" for s in SYSTEMS}  # > 0, finite
LITERALS = {"simulation.sampler": {"random", "sobol", "lhs"}, "simulation.precision": {"float32", "float64"}}

REQUIRED = {
    "name",
    "market",
    "systems",
    "market.token_price",
    "market.token_price.initial_usd_per_mtok",
    "market.demand",
    "market.demand.utilization",
    "market.electricity",
    "market.electricity.usd_per_kwh",
    *(
        f"systems.{s}.{f}"
        for s in SYSTEMS
        for f in ("gpus_per_unit", "capex_usd", "it_power_kw", "throughput_tokens_per_s_per_gpu")
    ),
}
# Parameters a DIST cannot do without (lognormal: either pair; deleting one half breaks it).
DIST_REQUIRED = {
    "fixed": {"value"},
    "uniform": {"low", "high"},
    "loguniform": {"low", "high"},
    "triangular": {"low", "mode", "high"},
    "pert": {"low", "mode", "high"},
    "normal": {"mean", "sd"},
    "beta": {"mean", "sd"},
    "lognormal": {"p5", "p95", "median", "sigma"},
    "discrete": {"values", "weights"},
}
DIST_TAGS = set(DIST_REQUIRED)

BASE = study_from_dict(small_study())
UNCERTAIN = [i.path for i in BASE.inputs() if not i.dist.is_fixed]
FIXED = [i.path for i in BASE.inputs() if i.dist.is_fixed]
ALL_INPUTS = set(UNCERTAIN) | set(FIXED)


def dotted(path: tuple) -> str:
    return ".".join(map(str, path))


def get(tree, path: tuple):
    for p in path:
        tree = tree[p]
    return tree


def put(tree, path: tuple, value) -> None:
    node = tree
    for p in path[:-1]:
        node = node.setdefault(p, {}) if isinstance(node, dict) else node[p]
    node[path[-1]] = value


def drop(tree, path: tuple) -> None:
    del get(tree, path[:-1])[path[-1]]


def nodes(tree, prefix: tuple = ()):
    """(path, value) of every node below the root: sections, fields, DIST parameters, list items."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        yield prefix + (k,), v
        yield from nodes(v, prefix + (k,))


def mappings(tree, prefix: tuple = ()):
    """Paths of every mapping (the root included), where an unknown key can go."""
    if isinstance(tree, dict):
        yield prefix
        for k, v in tree.items():
            yield from mappings(v, prefix + (k,))
    elif isinstance(tree, list):
        for k, v in enumerate(tree):
            yield from mappings(v, prefix + (k,))


def field_of(path: tuple) -> str | None:
    """The DIST field a path is (or lies in), else None."""
    for n in range(len(path), 0, -1):
        if dotted(path[:n]) in DIST_RANGES:
            return dotted(path[:n])
    return None


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


# --------------------------------------------------------------------------- value strategies

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
# Text no number parser reads as a number (pydantic reads '3' or ' 4.5 ' as numbers in lax mode;
# nothing starting with a letter parses, except inf/nan, which every numeric field refuses).
word = st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9 _./-]{0,15}\Z")
unknown_key = st.from_regex(r"\Ax[a-z0-9_]{0,12}\Z")  # no field of the schema starts with 'x'
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), finite, word)
# A mapping that is never valid anywhere: no `dist` key, and an unknown key in every model.
no_dist_mapping = st.dictionaries(unknown_key, scalar, min_size=1, max_size=3)
nested = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(word, inner, max_size=3), max_leaves=8
)


def below(lo: float, lo_open: bool):
    """Floats that break a lower bound: < lo, or <= lo when the bound is open (-0.0 <= 0 too)."""
    return st.floats(min_value=lo - 1e9, max_value=lo if lo_open else math.nextafter(lo, -INF), allow_nan=False)


def above(hi: float, hi_open: bool):
    return st.floats(min_value=hi if hi_open else math.nextafter(hi, INF), max_value=hi + 1e9, allow_nan=False)


def out_of_range_dist(rng: tuple):
    """A DIST (bare number or distribution) with values outside the field's range."""
    lo, hi, lo_open, hi_open = rng
    bad = [below(lo, lo_open)]
    if math.isfinite(hi):
        bad.append(above(hi, hi_open))
    number = st.one_of(*bad)
    return st.one_of(
        number,
        st.sampled_from([math.nan, math.inf, -math.inf]),  # no DIST takes a non-finite value
        number.map(lambda x: {"dist": "fixed", "value": x}),
        # a uniform that reaches past the bound
        below(lo, lo_open).map(lambda x: {"dist": "uniform", "low": x, "high": lo + 1.0}),
        # a normal is unbounded below unless truncated, and every DIST field has a lower bound
        st.just({"dist": "normal", "mean": lo + 0.5, "sd": 0.1}),
    )


def inconsistent_dist():
    """(distribution, the parameter its problem is reported at, or None for the field itself)."""
    pos = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
    nonpos = st.floats(min_value=-1e6, max_value=0.0, allow_nan=False)
    gap = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)  # 0 included: low == high is invalid too

    def low_high(d):
        return st.tuples(finite, gap).map(lambda t: ({**d, "low": t[0], "high": t[0] - t[1]}, "high"))

    ordered = st.tuples(finite, pos).map(lambda t: (t[0], t[0] + t[1])).filter(lambda t: t[1] > t[0])

    def mode_outside(tag):
        return (
            st.tuples(ordered, pos, st.booleans())
            .map(
                lambda t: {
                    "dist": tag,
                    "low": t[0][0],
                    "high": t[0][1],
                    "mode": t[0][1] + t[1] if t[2] else t[0][0] - t[1],
                }
            )
            .filter(lambda d: not d["low"] <= d["mode"] <= d["high"])
            .map(lambda d: (d, "mode"))
        )

    tri_low_high = st.tuples(finite, gap, finite).map(lambda t: {"low": t[0], "high": t[0] - t[1], "mode": t[2]})
    return st.one_of(
        low_high({"dist": "uniform"}),
        st.tuples(nonpos, pos).map(lambda t: ({"dist": "loguniform", "low": t[0], "high": t[1]}, "low")),
        st.tuples(pos, gap)
        .map(lambda t: ({"dist": "loguniform", "low": t[0], "high": t[0] - t[1]}, "high"))
        .filter(lambda c: c[0]["low"] > 0),
        tri_low_high.map(lambda d: ({"dist": "triangular", **d}, "high")),
        tri_low_high.map(lambda d: ({"dist": "pert", **d}, "high")),
        mode_outside("triangular"),
        mode_outside("pert"),
        st.tuples(ordered, nonpos).map(
            lambda t: ({"dist": "pert", "low": t[0][0], "high": t[0][1], "mode": t[0][0], "shape": t[1]}, "shape")
        ),
        st.tuples(finite, nonpos).map(lambda t: ({"dist": "normal", "mean": t[0], "sd": t[1]}, "sd")),
        # low within 3 sd of the mean (else low itself is refused: no probability mass left above it)
        st.tuples(finite, pos, st.floats(-3.0, 3.0), gap)
        .map(lambda t: (t[0], t[1], t[0] + t[2] * t[1], t[3]))
        .map(lambda t: ({"dist": "normal", "mean": t[0], "sd": t[1], "low": t[2], "high": t[2] - t[3]}, "high")),
        st.tuples(pos, gap).map(lambda t: ({"dist": "lognormal", "p5": t[0], "p95": t[0] - t[1]}, "p95")),
        st.tuples(nonpos, pos).map(lambda t: ({"dist": "lognormal", "p5": t[0], "p95": t[1]}, "p5")),
        st.tuples(pos, nonpos).map(lambda t: ({"dist": "lognormal", "median": t[0], "sigma": t[1]}, "sigma")),
        st.tuples(nonpos, pos).map(lambda t: ({"dist": "lognormal", "median": t[0], "sigma": t[1]}, "median")),
        st.tuples(pos, pos).map(
            lambda t: ({"dist": "lognormal", "p5": t[0], "p95": 2 * t[0], "median": t[1], "sigma": 0.3}, "median")
        ),
        st.tuples(st.floats(0.01, 0.99), nonpos).map(lambda t: ({"dist": "beta", "mean": t[0], "sd": t[1]}, "sd")),
        st.floats(0.01, 0.99).map(lambda m: ({"dist": "beta", "mean": m, "sd": math.sqrt(m * (1 - m))}, "sd")),
        st.one_of(st.floats(-1e6, 0.0), st.floats(1.0, 1e6)).map(
            lambda m: ({"dist": "beta", "mean": m, "sd": 0.1}, "mean")
        ),
        st.integers(1, 5).map(
            lambda k: ({"dist": "discrete", "values": list(range(1, k + 1)), "weights": [0] * k}, "weights")
        ),
        st.tuples(st.integers(1, 5), st.integers(0, 6))
        .filter(lambda t: t[0] != t[1])
        .map(lambda t: ({"dist": "discrete", "values": list(range(1, t[0] + 1)), "weights": [1] * t[1]}, "weights")),
        st.tuples(st.integers(1, 5), st.floats(-1e6, -1e-9)).map(
            lambda t: (
                {"dist": "discrete", "values": list(range(1, t[0] + 1)), "weights": [t[1]] + [1] * (t[0] - 1)},
                "weights",
            )
        ),
        st.just(({"dist": "discrete", "values": [], "weights": []}, "values")),
        # an unknown form, or a tag that is no text
        st.one_of(
            st.from_regex(r"\A[a-z_]{1,12}\Z").filter(lambda s: s not in DIST_TAGS), st.integers(), st.none()
        ).map(lambda tag: ({"dist": tag, "low": 1, "high": 2}, None)),
    )


some_list = st.lists(scalar, min_size=1, max_size=3)  # [] would be a valid `correlations`


def wrong_type(path: tuple):
    """Values of a type the node at `path` never takes."""
    key = dotted(path)
    field = field_of(path)
    kinds = [some_list, no_dist_mapping, st.none()]
    if field is not None and field != key:  # inside a DIST: a parameter, its `dist` tag, or a list item
        if path[-1] == "dist":
            kinds += [st.booleans(), finite, word.filter(lambda s: s not in DIST_TAGS)]
        elif path[-1] in ("values", "weights"):
            kinds = [no_dist_mapping, st.none(), word, st.booleans(), finite]  # a list may well be valid
        else:
            kinds += [word, st.booleans()]
    elif key in DIST_RANGES:
        kinds += [word, st.booleans()]  # a number is a fixed DIST
    elif key in INT_RANGES or key in POSITIVE_FLOATS or re.fullmatch(r"correlations\.\d+\.2", key):
        kinds.append(word)  # bool is a separate, known problem (test_bool_is_not_a_number below)
    elif key in LITERALS:
        kinds += [word.filter(lambda s: s not in LITERALS[key]), st.booleans(), finite]
    elif key == "name" or re.fullmatch(r"correlations\.\d+\.[01]", key):
        kinds += [st.booleans(), finite]  # a text name is checked in test_study; a text in a pair is an input's name
    else:  # sections, systems, the correlations list and its pairs
        kinds += [word, st.booleans(), finite]
    return st.one_of(*kinds)


# --------------------------------------------------------------------------- 1. mutated studies

BASE_NODES = [p for p, _ in nodes(small_study())]
BASE_MAPPINGS = list(mappings(small_study()))


def _wrong_type_mutation(draw, study):
    path = draw(st.sampled_from(BASE_NODES))
    key, field = dotted(path), field_of(path)
    value = draw(wrong_type(path))
    put(study, path, value)
    # A scalar is reported at the node itself; a mapping or list may be reported inside it. A DIST
    # parameter set to null is reported at its field (normal's low: the support is then unbounded)
    # or at its partner (lognormal's p5: at p95), and a `dist` tag at the field.
    scalar_value = not isinstance(value, (dict, list))
    if field is not None and field != key:
        exact = field if path[-1] == "dist" and scalar_value else key if scalar_value and value is not None else None
        return "wrong-type", field, exact
    return "wrong-type", key, key if scalar_value else None


def _out_of_range_mutation(draw, study):
    key = draw(st.sampled_from(sorted({*DIST_RANGES, *INT_RANGES, *POSITIVE_FLOATS, "correlations.0.2"})))
    if key in DIST_RANGES:
        value = draw(out_of_range_dist(DIST_RANGES[key]))
    elif key in INT_RANGES:
        lo, hi = INT_RANGES[key]
        bad = [st.integers(max_value=lo - 1), st.floats(lo, lo + 1000).filter(lambda x: x != int(x))]
        if hi is not None:
            bad.append(st.integers(min_value=hi + 1))
        value = draw(st.one_of(*bad))
    elif key in POSITIVE_FLOATS:
        value = draw(st.one_of(st.floats(-1e9, 0.0), st.sampled_from([math.nan, math.inf])))
    else:
        value = draw(
            st.one_of(st.floats(1.0, 1e9, exclude_min=True), st.floats(-1e9, -1.0, exclude_max=True), st.just(math.nan))
        )
    put(study, tuple(int(p) if p.isdigit() else p for p in key.split(".")), value)
    return "out-of-range", key, None


def _inconsistent_mutation(draw, study):
    key = draw(st.sampled_from(sorted(DIST_RANGES)))
    dist, param = draw(inconsistent_dist())
    put(study, tuple(key.split(".")), dist)
    return "inconsistent-dist", key, f"{key}.{param}" if param else key


def _delete_mutation(draw, study):
    dists = [(p, v) for p, v in nodes(small_study()) if isinstance(v, dict) and "dist" in v]
    choices = [tuple(k.split(".")) for k in sorted(REQUIRED)]
    choices += [p + ("dist",) for p, _ in dists]
    choices += [p + (k,) for p, v in dists for k in v if k in DIST_REQUIRED[v["dist"]]]
    path = draw(st.sampled_from(choices))
    drop(study, path)
    key = dotted(path)
    if key in REQUIRED:
        return "delete", key, key
    return "delete", field_of(path), None


def _unknown_key_mutation(draw, study):
    parent = draw(st.sampled_from(BASE_MAPPINGS))
    key = draw(unknown_key)
    assume(key not in get(study, parent))
    put(study, parent + (key,), draw(nested))
    path = dotted(parent + (key,))
    return "unknown-field", path, path if parent != ("systems",) else None


CATALOG_KIND = {"preset": "system", "workload": "workload", "software_curve": "software_curve"}


def _unknown_catalog_name_mutation(draw, study):
    """A system that names a catalog entry that does not exist (or one of another kind)."""
    from mcrisk.study import catalog

    system = draw(st.sampled_from(SYSTEMS))
    key = draw(st.sampled_from(sorted(CATALOG_KIND)))
    known = set(catalog.names(CATALOG_KIND[key]))
    other = sorted(set(catalog.names()) - known)
    name = draw(
        st.one_of(st.sampled_from(other), st.text(min_size=1, max_size=20), st.integers(), some_list).filter(
            lambda v: v not in known if isinstance(v, str) else True
        )
    )
    study["systems"][system][key] = name
    path = f"systems.{system}.{key}"
    return "unknown-catalog-name", path, path


MUTATIONS = {
    "wrong-type": _wrong_type_mutation,
    "out-of-range": _out_of_range_mutation,
    "inconsistent-dist": _inconsistent_mutation,
    "delete": _delete_mutation,
    "unknown-field": _unknown_key_mutation,
    "unknown-catalog-name": _unknown_catalog_name_mutation,
}


@st.composite
def mutated_study(draw, kinds=tuple(MUTATIONS)):
    """(study, kind, prefix: the path some problem must lie at or under, exact path or None)."""
    study = small_study()
    kind = draw(st.sampled_from(kinds))
    kind, prefix, exact = MUTATIONS[kind](draw, study)
    return study, kind, prefix, exact


def check_problems(exc: StudyError, prefix: str, exact: str | None, study: dict) -> None:
    assert exc.problems, "a StudyError without problems"
    extra_top = set(study) - SECTIONS  # an unknown top-level key is reported under its own name
    for p in exc.problems:
        assert p.path, f"problem without a path: {p}"
        assert p.path.split(".")[0] in SECTIONS | extra_top, f"path outside the study: {p}"
        assert p.message.strip(), f"problem without a message: {p}"
        assert "Traceback" not in p.message
    paths = [p.path for p in exc.problems]
    assert any(under(p, prefix) for p in paths), f"no problem at or under {prefix!r}: {exc.problems}"
    if exact is not None:
        assert exact in paths, f"no problem at exactly {exact!r}: {exc.problems}"


@pytest.mark.parametrize("kind", list(MUTATIONS))
@settings(max_examples=n(80), **FUZZ)
@given(data=st.data())
def test_mutated_study_is_rejected_naming_the_field(kind, data):
    study, kind, prefix, exact = data.draw(mutated_study((kind,)), label="mutation")
    TRIED["mutated studies"] += 1
    with pytest.raises(StudyError) as info:
        study_from_dict(copy.deepcopy(study))
    check_problems(info.value, prefix, exact, study)
    if kind == "delete" and exact is not None:
        assert any(p.path == exact and "missing" in p.message for p in info.value.problems), info.value.problems
    if kind == "unknown-field" and exact is not None:
        assert any(p.path == exact and "unknown field" in p.message for p in info.value.problems), info.value.problems


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "study.yaml"
    path.write_bytes(data)
    return path


def _invoke(args: list[str]):
    result = runner.invoke(app, args)
    text = result.stdout + (result.stderr or "")
    return result, text


def assert_refused(folder: Path, study_file: Path, *extra: str, expect: tuple[str, ...] = ()) -> None:
    """`validate` and `run` both exit 2 with `error:`, no traceback, and write nothing."""
    out = folder / "run"
    for args in (["validate", str(study_file)], ["run", str(study_file), "--out", str(out), "-q", *extra]):
        result, text = _invoke(args)
        assert result.exit_code == 2, (args, result.exception, text)
        assert isinstance(result.exception, SystemExit), (args, repr(result.exception), text)
        assert "Traceback" not in text, text
        assert "error:" in text.lower(), text
        for e in expect:
            assert e in text, (e, text)
    assert not out.exists()
    assert sorted(p.name for p in folder.iterdir()) == [study_file.name]


@settings(max_examples=n(60), **FUZZ)
@given(mutated_study())
def test_mutated_study_file_exits_2_through_the_cli(case):
    study, _, prefix, exact = case
    TRIED["mutated study files (CLI)"] += 1
    text = yaml.safe_dump(study, sort_keys=False, allow_unicode=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        assert_refused(folder, _write(folder, text.encode()), expect=(f"{exact or prefix}",))


# --------------------------------------------------------------------------- 2. correlations

PSD_INPUTS = [
    "market.token_price.initial_usd_per_mtok",
    "market.demand.utilization",
    "facility.pue",
    "finance.discount_rate",
]


@st.composite
def not_psd_correlations(draw):
    names = draw(st.lists(st.sampled_from(PSD_INPUTS), min_size=3, max_size=4, unique=True))
    n = len(names)
    rho = st.floats(-1.0, 1.0, allow_nan=False)
    c = np.eye(n)
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            r = draw(rho)
            c[i, j] = c[j, i] = r
            a, b = (names[i], names[j]) if draw(st.booleans()) else (names[j], names[i])
            pairs.append([a, b, r])
    smallest = float(np.linalg.eigvalsh(c)[0])
    assume(smallest < -1e-6)  # well past mcrisk's rounding tolerance (1e-10)
    order = draw(st.permutations(range(len(pairs))))
    return [pairs[k] for k in order], smallest


@settings(max_examples=n(150), **FUZZ)
@given(not_psd_correlations())
@example(
    (
        [
            ["facility.pue", "finance.discount_rate", 0.9],
            ["facility.pue", "market.demand.utilization", 0.9],
            ["finance.discount_rate", "market.demand.utilization", -0.9],
        ],
        float(np.linalg.eigvalsh([[1, 0.9, 0.9], [0.9, 1, -0.9], [0.9, -0.9, 1]])[0]),
    )
)
def test_correlations_not_psd_are_rejected(case):
    pairs, smallest = case
    TRIED["non-PSD correlation matrices"] += 1
    study = small_study()
    study["correlations"] = pairs
    with pytest.raises(StudyError) as info:
        study_from_dict(study)
    problems = info.value.problems
    assert [p.path for p in problems] == ["correlations"], problems
    msg = problems[0].message
    assert "eigenvalue" in msg and "positive semidefinite" in msg, msg
    got = float(re.search(r"smallest eigenvalue (\S+?),", msg).group(1))
    assert math.isclose(got, smallest, rel_tol=1e-3, abs_tol=1e-9), (got, smallest, msg)


def _not_an_input(s: str) -> bool:
    return s not in ALL_INPUTS


@st.composite
def correlations_with_a_bad_input(draw):
    """Valid pairs with one pair naming an unknown or a fixed input; (pairs, bad path, needle)."""
    good = [list(p) for p in small_study()["correlations"]]
    how = draw(st.sampled_from(["fixed", "typo", "text", "section"]))
    if how == "fixed":
        name, needle = draw(st.sampled_from(FIXED)), "is fixed"
    elif how == "typo":
        name = draw(st.sampled_from(UNCERTAIN)) + draw(st.sampled_from(["x", "_", ".low", "s", ".0"]))
        needle = "unknown input"
    elif how == "text":
        name, needle = draw(st.text(max_size=30).filter(_not_an_input)), "unknown input"
    else:
        name = draw(
            st.sampled_from(
                [
                    "facility",
                    "systems.rack",
                    "market.demand",
                    "systems.nope.capex_usd",
                    "name",
                    "systems.rack.units",
                    "simulation.seed",
                ]
            )
        )
        needle = "unknown input"
    partner = draw(st.sampled_from(UNCERTAIN))
    j = draw(st.integers(0, 1))
    pair = [name, partner] if j == 0 else [partner, name]
    pair.append(draw(st.floats(-0.5, 0.5)))
    k = draw(st.integers(0, len(good)))
    good.insert(k, pair)
    return good, f"correlations.{k}.{j}", needle


@settings(max_examples=n(100), **FUZZ)
@given(correlations_with_a_bad_input())
def test_correlation_on_unknown_or_fixed_input_is_rejected(case):
    pairs, where, needle = case
    TRIED["correlations on unknown/fixed inputs"] += 1
    study = small_study()
    study["correlations"] = pairs
    with pytest.raises(StudyError) as info:
        study_from_dict(study)
    assert any(p.path == where and needle in p.message for p in info.value.problems), info.value.problems


# --------------------------------------------------------------------------- 3. raw files

VALID_TEXT = yaml.safe_dump(small_study(), sort_keys=False)


def _is_valid_study(data: bytes) -> bool:
    try:
        study_from_dict(parse_yaml(data.decode("utf-8")))
    except (StudyError, UnicodeDecodeError):
        return False
    except Exception:  # noqa: BLE001 - a crash is for the CLI to show; not a valid study
        return False
    return True


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


SYNTAX_BREAKERS = [
    "[",
    "]",
    "{",
    "}",
    ":",
    ": :",
    "\t",
    "- ",
    "&",
    "*",
    "!",
    "%",
    "@",
    "`",
    '"',
    "'",
    "|",
    ">",
    "\n  bad",
    "\n- x\n",
    ": [",
    "---\n- a",
    "\x00",
    "\x07",
    "\ufffe",
]

top_level_non_mapping = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    st.lists(nested, max_size=4),
)


@st.composite
def raw_file(draw):
    """(bytes of a file that is no valid study, what kind it is)."""
    kind = draw(
        st.sampled_from(["binary", "bad-byte", "text", "syntax", "truncated", "empty", "top-level", "duplicate-key"])
    )
    if kind == "binary":
        data = draw(st.binary(min_size=1, max_size=200).filter(_not_utf8))
    elif kind == "bad-byte":  # a valid study with one byte that is never UTF-8
        pos = draw(st.integers(0, len(VALID_TEXT)))
        bad = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\x80", b"\xc3", b"\xed\xa0\x80"]))
        data = VALID_TEXT.encode()[:pos] + bad + VALID_TEXT.encode()[pos:]
    elif kind == "text":
        data = draw(st.text(max_size=200)).encode()
    elif kind == "syntax":
        pos = draw(st.integers(0, len(VALID_TEXT)))
        data = (VALID_TEXT[:pos] + draw(st.sampled_from(SYNTAX_BREAKERS)) + VALID_TEXT[pos:]).encode()
    elif kind == "truncated":
        data = VALID_TEXT[: draw(st.integers(0, len(VALID_TEXT) - 1))].encode()
    elif kind == "empty":
        data = draw(
            st.sampled_from(["", "\n", "   ", "# only a comment\n", "---\n", "---\n...\n", "~\n", "null"])
            | st.text(alphabet=" \n\r", max_size=10)
        ).encode()
    elif kind == "top-level":
        data = yaml.safe_dump(draw(top_level_non_mapping), allow_unicode=True).encode()
    else:  # a top-level key written twice
        key = draw(st.sampled_from(list(small_study())))
        data = (VALID_TEXT + f"{key}: {draw(st.sampled_from(['1', 'x', '[]', '{}']))}\n").encode()
    assume(not _is_valid_study(data))
    return data, kind


@settings(max_examples=n(150), **FUZZ)
@given(raw_file())
@example((b"", "empty"))
@example((b"name: caf\xe9\n", "binary"))
@example((b"- 1\n- 2\n", "top-level"))
@example((b"name: [unclosed\nmarket: {", "syntax"))
def test_raw_file_exits_2_without_traceback(case):
    data, kind = case
    TRIED["raw files"] += 1
    event(kind)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        assert_refused(folder, _write(folder, data))


# --------------------------------------------------------------------------- 4. CLI flags


def _parses_as_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


not_an_int = st.text(max_size=12).filter(lambda s: not _parses_as_int(s))


@st.composite
def bad_flag(draw):
    """(flag, value): a value the flag refuses."""
    flag = draw(st.sampled_from(["--scenarios", "--chunk-size", "--precision", "--seed", "--checkpoint-every"]))
    if flag != "--precision" and draw(st.integers(0, 4)) == 0:
        return flag, draw(not_an_int)  # typer's own usage error, also exit 2
    if flag == "--scenarios":
        value = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=2**32)))
    elif flag == "--chunk-size":
        value = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=2**26 + 1)))
    elif flag == "--seed":
        value = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63)))
    elif flag == "--checkpoint-every":
        value = draw(st.integers(max_value=0))
    else:
        value = draw(st.text(max_size=20).filter(lambda s: s not in ("float32", "float64")))
    return flag, str(value)


@settings(max_examples=n(100), **FUZZ)
@given(bad_flag())
@example(("--scenarios", "0"))
@example(("--scenarios", str(2**32)))
@example(("--chunk-size", "0"))
@example(("--precision", "half"))
@example(("--seed", "-1"))
@example(("--checkpoint-every", "0"))
@example(("--scenarios", "1.5"))
def test_bad_flag_exits_2_naming_it(case):
    flag, value = case
    TRIED["CLI flags"] += 1
    event(flag)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study_file = _write(folder, VALID_TEXT.encode())
        out = folder / "run"
        result, text = _invoke(["run", str(study_file), "--out", str(out), "-q", f"{flag}={value}"])
        assert result.exit_code == 2, (flag, value, repr(result.exception), text)
        assert isinstance(result.exception, SystemExit), (flag, value, repr(result.exception), text)
        assert "Traceback" not in text, text
        assert flag in text, (flag, text)
        assert not out.exists()
        assert sorted(p.name for p in folder.iterdir()) == ["study.yaml"]


# --------------------------------------------------------------------------- 5. Python tags

PAYLOADS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/apply:subprocess.call [["touch", "{marker}"]]',
    '!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
    "!!python/object/apply:builtins.exec [\"open('{marker}', 'w').close()\"]",
    "!!python/name:os.system",
    "!!python/module:os",
    '!python/object/apply:os.system ["touch {marker}"]',
    '!<tag:yaml.org,2002:python/object/apply:os.system> ["touch {marker}"]',
]
SENTINEL = "__PAYLOAD__"


@st.composite
def tagged_study(draw):
    """A study whose node at a random path is a Python-object tag, as YAML text with a marker path."""
    where = draw(st.sampled_from([()] + BASE_NODES))
    return draw(st.sampled_from(PAYLOADS)), where


@settings(max_examples=n(40), **FUZZ)
@given(tagged_study())
def test_python_tags_are_refused_and_never_run(case):
    payload, where = case
    TRIED["python-object tags"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        marker = folder / "hacked"
        code = payload.replace("{marker}", str(marker))
        if where == ():
            text = code + "\n"
        else:
            study = small_study()
            put(study, where, SENTINEL)
            text = yaml.safe_dump(study, sort_keys=False).replace(SENTINEL, code)
        study_file = _write(folder, text.encode())
        with pytest.raises(StudyError) as info:
            load_study(study_file)
        assert "python/" in str(info.value) and "not valid YAML" in str(info.value), str(info.value)
        assert_refused(folder, study_file, expect=("not valid YAML",))
        assert not marker.exists()


# --------------------------------------------------------------------------- regressions: bugs the fuzzing above found


@pytest.mark.parametrize("text", ["? [1, 2]\n: 3\n", "{[1]: 2}\n", "name: x\n? {a: 1}\n: 3\n"])
def test_unhashable_yaml_key_exits_2(text):
    TRIED["regressions"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        assert_refused(folder, _write(folder, text.encode()), expect=("not valid YAML",))


@pytest.mark.parametrize(
    "path",
    [
        "systems.rack.units",
        "systems.server.gpus_per_unit",
        "simulation.scenarios",
        "simulation.seed",
        "simulation.horizon_months",
        "systems.rack.depreciation_years",
        "correlations.0.2",
    ],
)
def test_bool_is_not_a_number(path):
    TRIED["regressions"] += 1
    study = small_study()
    put(study, tuple(int(p) if p.isdigit() else p for p in path.split(".")), True)
    with pytest.raises(StudyError) as info:
        study_from_dict(study)
    assert any(p.path == path for p in info.value.problems), info.value.problems


@pytest.mark.parametrize(
    "parent, key",
    [
        (("market", "demand"), "beta"),
        (("systems", "rack"), "normal"),
        (("facility",), "uniform"),
        (("systems", "rack"), "a[1]"),
    ],
)
def test_unknown_field_named_like_a_dist_is_reported_at_itself(parent, key):
    TRIED["regressions"] += 1
    study = small_study()
    put(study, parent + (key,), 1)
    with pytest.raises(StudyError) as info:
        study_from_dict(study)
    assert dotted(parent + (key,)) in [p.path for p in info.value.problems], info.value.problems


def test_problem_message_stays_short_for_a_huge_value():
    TRIED["regressions"] += 1
    lines = ["x_anchors:", "  a0: &a0 [lol]"]
    for i in range(1, 5):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = "\n".join(lines) + "\n" + VALID_TEXT.replace("name: small", "name: *a4")
    with pytest.raises(StudyError) as info:
        study_from_dict(parse_yaml(text))
    assert all(len(p.message) < 2000 for p in info.value.problems), max(len(p.message) for p in info.value.problems)
