"""`run_greeks`: exact sensitivities (greeks.csv), the reverse stress test (reverse_stress.csv) and
the most likely loss scenario (design_point.csv) of a study, on the same draws as its run.

Two passes over the scenarios, chunk by chunk: the metric alone (its quantiles, the kernel's
bandwidth, the drawn inputs for the reverse stress test), then the metric with one reverse pass
per row (:class:`mcrisk.engine.greeks.Programs`) into running sums (:class:`mcrisk.stats.greeks.Sums`).
Then the FORM design point of each row (:mod:`mcrisk.engine.design_point`). docs/greeks.md
explains each number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mcrisk._x64 import enable_float64
from mcrisk.engine import greeks as eg
from mcrisk.engine.design_point import design_points
from mcrisk.engine.plan import make_plan, on_accelerator, sample_values
from mcrisk.errors import Problem, StudyError
from mcrisk.stats import greeks as sg
from mcrisk.stats.reverse_stress import COLUMNS as RS_COLUMNS
from mcrisk.stats.reverse_stress import reverse_stress
from mcrisk.study.schema import Study, default_study_path, load_study
from mcrisk.workflows.greeks_table import DESIGN_COLUMNS, design_table, greeks_table, not_differentiable_table
from mcrisk.workflows.progress_log import ProgressLog

REVERSE_STRESS_SCENARIOS = 1 << 20  # the reverse stress test reads the first this many scenarios


def greeks_chunk() -> int:
    """Scenarios per chunk of the Greeks' passes: its reverse sweep keeps the month loop's
    intermediates, about 50 float64 values per scenario, system and month, so chunks are far
    smaller than a run's. On a 2-core CPU (the default study, float64) 512 scenarios per chunk
    took 0.09-0.14 s for the gradients and the estimators' sums, 1,024 took 0.23-0.29 s and 2,048
    0.45-0.48 s (the forward pass 0.006, 0.011 and 0.052 s): small chunks stay in cache."""
    return 1 << 16 if on_accelerator() else 1 << 9


@dataclass
class GreeksResult:
    folder: Path
    metric: str
    scenarios: int
    greeks: pd.DataFrame
    reverse_stress: pd.DataFrame
    design_point: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)


def _rows_of(plan, names: tuple[str, ...]) -> dict[str, list]:
    """The drawn inputs of each row: market, facility and finance inputs, and the row's system's
    (every input for the portfolio)."""
    return {r: [i for i in plan.uncertain if r == "portfolio" or i.system is None or i.system == r] for r in names}


def forward_pass(progs: eg.Programs, scenarios: int, keep: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The metric (R, N) of every scenario, and the drawn inputs of the first `keep` by path."""
    plan = progs.plan
    sv, fixed = sample_values(plan), dict(plan.fixed)
    ms, xs = [], []
    for start, valid, idx in eg.chunks(plan, scenarios):
        m, x, _ = progs.forward(sv, fixed, idx)
        ms.append(np.asarray(m)[:, :valid])
        if start < keep:
            xs.append({p: np.asarray(v)[: min(valid, keep - start)] for p, v in x.items()})
    x = {p: np.concatenate([c[p] for c in xs]) for p in xs[0]} if xs else {}
    return np.concatenate(ms, axis=1), x


def gradient_pass(progs: eg.Programs, scenarios: int, sums: sg.Sums, progress: Callable | None = None) -> sg.Sums:
    plan = progs.plan
    sv, fixed = sample_values(plan), dict(plan.fixed)
    centers = {k: np.asarray(v, np.float64) for k, v in sums.centers.items()}
    h = np.asarray(sums.h, np.float64)
    log = ProgressLog(f"gradients of {progs.plan.study.name!r}")
    log.start(0, scenarios)
    for start, valid, idx in eg.chunks(plan, scenarios):
        sums.add_partial(progs.sums(sv, fixed, idx, np.arange(plan.chunk) < valid, centers, h))
        log(start + valid, scenarios)
        if progress is not None:
            progress(start + valid, scenarios)
    return sums


def run_greeks(
    study: str | Path | Mapping | Study | None = None,
    *,
    out: str | Path | None = None,
    scenarios: int | None = None,
    seed: int | None = None,
    metric: str = "npv_usd",
    chunk_size: int | None = None,
    force: bool = False,
    design: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> GreeksResult:
    """Write greeks.csv, reverse_stress.csv and design_point.csv for `study` into `out`
    (default outputs/<study name>-greeks/; a run folder when called by ``mcrisk run --greeks``)."""
    enable_float64()
    st = load_study(default_study_path() if study is None else study)
    folder = Path(out) if out is not None else Path("outputs") / f"{st.name}-greeks"
    names = ("greeks.csv", "reverse_stress.csv", "design_point.csv")
    if not force and any((folder / n).exists() for n in names):
        raise StudyError([Problem("--out", f"{folder} already has greeks.csv; pass --force to replace it")], "options")
    n = scenarios or st.simulation.scenarios
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    base = make_plan(
        st, scenarios=n, seed=st.simulation.seed if seed is None else seed, precision="float64",
        chunk_size=chunk_size or greeks_chunk(), monthly=False,
    )  # fmt: skip
    plan = eg.gradient_plan(base)
    tgts = tuple(eg.targets(plan))
    progs = eg.Programs(plan, metric, tgts)
    m, x = forward_pass(progs, n, REVERSE_STRESS_SCENARIOS)
    rows = eg.row_names(plan, m.shape[0])
    secs["forward"] = time.perf_counter() - t0
    if metric in eg.NOT_DIFFERENTIABLE_METRICS:
        table = not_differentiable_table(rows, tgts, metric, eg.NOT_DIFFERENTIABLE_METRICS[metric])
    else:
        t1 = time.perf_counter()
        centers = {k: np.array([sg.quantile(r, a) for r in m]) for k, a in sg.LEVELS.items()}
        h = np.array([sg.bandwidth(r) for r in m])
        sums = gradient_pass(progs, n, sg.Sums(centers, h), progress)
        table = greeks_table(rows, tgts, metric, m, centers, h, sums.result())
        secs["gradients"] = time.perf_counter() - t1
    inputs_of = _rows_of(plan, rows)
    k = next(iter(x.values())).size if x else 0
    rs, dp = pd.DataFrame(columns=RS_COLUMNS), pd.DataFrame(columns=DESIGN_COLUMNS)
    if metric.endswith("npv_usd"):  # a loss is an NPV below 0: other metrics have no loss region
        parts = [reverse_stress(r, m[j, :k], {i.path: x[i.path] for i in inputs_of[r]}) for j, r in enumerate(rows)]
        rs = pd.concat(parts, ignore_index=True)
    if design and metric.endswith("npv_usd"):
        t2 = time.perf_counter()
        points = design_points(plan, metric, rows)
        dp = design_table(points, inputs_of, {r: float(np.mean(m[j] < 0)) for j, r in enumerate(rows)}, metric)
        secs["design_point"] = time.perf_counter() - t2
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "greeks.csv", index=False)
    rs.to_csv(folder / "reverse_stress.csv", index=False)
    dp.to_csv(folder / "design_point.csv", index=False)
    secs["total"] = time.perf_counter() - t0
    return GreeksResult(folder, metric, n, table, rs, dp, secs)


def moved_metric(progs: eg.Programs, study: Study, path: str, param: str, value: float, scenarios: int) -> np.ndarray:
    """The metric (R, N) with one parameter of one input set to `value`, on the same draws (the
    same seed, indices and sampler columns) and the same compiled program: the finite-difference
    check of a pathwise derivative with common random numbers."""
    from mcrisk.study import variants

    inp = next(i for i in progs.plan.inputs if i.path == path)
    if inp.dist.is_fixed:
        new: Any = value
    else:
        new = inp.dist.model_dump(by_alias=True, exclude_unset=True) | {"dist": inp.dist.dist, param: value}
    moved = variants.apply(variants.raw_study(study), {path: new}, label="greeks")
    plan = progs.plan
    p = make_plan(moved, scenarios=plan.scenarios, seed=plan.seed, precision="float64", chunk_size=plan.chunk,
                  monthly=False, dims=plan.dims)  # fmt: skip
    sv, fixed = sample_values(p), dict(p.fixed)
    ms = [np.asarray(progs.forward(sv, fixed, idx)[0])[:, :valid] for _, valid, idx in eg.chunks(plan, scenarios)]
    return np.concatenate(ms, axis=1)
