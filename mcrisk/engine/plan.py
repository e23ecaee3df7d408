"""The run loop: chunks of scenario indices, sharded over local devices, reduced on the device.

A run is three pure, jitted stages per chunk of scenario indices:

* ``sample``: uniforms by scenario index -> copula -> inverse CDFs, and the monthly shocks;
* ``simulate``: market paths and every system's monthly cash flows (``lax.scan`` over months)
  -> the metrics of each scenario and system;
* ``reduce``: streaming summaries kept on the device (moments, quantile sketch, tail counts).

Only what is written (scenario rows, if asked) and the first ``diagnostic_draws`` scenarios
(for ArviZ) cross to the host. Keys derive from scenario indices, so neither the chunk size
nor the device count changes any number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mcrisk.engine.stages import (
    MARKET_PATHS,
    PLAIN_SYSTEM_FIELDS,
    SHOCKS,
    SITE_PATHS,
    SYSTEM_FIELDS,
    contract_uniforms,
    ext_month_loop,
    ext_simulate,
    params,
    study_flags,
)
from mcrisk.errors import Problem, StudyError
from mcrisk.model import metrics as metrics_mod
from mcrisk.model.cashflows import accumulate, discount_factor, month_flows, plant, totals_init
from mcrisk.model.market import Shocks, market_init, market_step
from mcrisk.model.operators import Flags
from mcrisk.sampling.quantiles import quantile_params, quantiles
from mcrisk.sampling.uniforms import apply_copula, copula_factor, make_sampler, root_key, shock_normals, stream_id
from mcrisk.stats import reduce as red
from mcrisk.study.schema import PORTFOLIO, Input, Study, correlation_matrix

METRICS = metrics_mod.METRICS
__all__ = ["MARKET_PATHS", "SITE_PATHS", "SYSTEM_FIELDS", "PLAIN_SYSTEM_FIELDS", "SHOCKS", "params"]  # (re-exported)

# The bands come from the first this many scenarios (by index; all of them in smaller runs). A
# chart of percentile bands cannot show more: at 262,144 scenarios the standard error of the
# rank of a 5th percentile is 0.043 percentage points. Their sketches cost a scatter-add of
# (2 S + 1) T values per scenario, 5x the cost of the metric summaries on an H200, so capping
# them is what keeps runs of 1e8 scenarios bound by the simulation (see docs/outputs.md).
MONTHLY_SCENARIOS = 1 << 18
# Exact tail counts kept per system: (name, metric, test).
TAIL_COUNTS: tuple[tuple[str, str, Callable[[jax.Array], jax.Array]], ...] = (
    ("npv_below_0", "npv_usd", lambda x: x < 0),
    ("payback_within_horizon", "payback_months", jnp.isfinite),
    ("roi_multiple_at_least_15", "roi_multiple", lambda x: x >= 15),
)
# Kept too where the study has debt (finance.debt), for risk.csv's lender and equity odds; other
# plans keep TAIL_COUNTS alone, so their programs are unchanged.
DEBT_TAIL_COUNTS: tuple[tuple[str, str, Callable[[jax.Array], jax.Array]], ...] = (
    ("min_dscr_below_1_2", "min_dscr", lambda x: x < 1.2),
    ("equity_npv_below_0", "equity_npv_usd", lambda x: x < 0),
)


@dataclass(frozen=True)
class Plan:
    """Everything fixed before the first chunk: inputs, sampler, copula, devices, shapes."""

    study: Study
    scenarios: int
    seed: int
    dtype: Any
    months: int
    systems: tuple[str, ...]
    inputs: tuple[Input, ...]  # every static input, study order (output columns)
    uncertain: tuple[Input, ...]  # inputs with a distribution, sorted by path
    dims: tuple[str, ...]  # the sampler's dimensions, by study path (the uncertain inputs, or a base plan's first)
    sample_cols: tuple[int, ...]  # the sampler column of each uncertain input
    fixed: dict[str, float]  # path -> value of fixed inputs
    plain: dict[str, tuple[float, ...]]  # system field -> value per system (units, gpus, depreciation)
    sampler: Any
    copula_cols: tuple[int, ...]
    copula_factor: np.ndarray | None
    shocks_on: Shocks  # bool per shock stream
    chunk: int
    mesh: Mesh
    monthly: bool = True
    sketch: red.SketchSpec = field(default_factory=red.SketchSpec)
    unroll: int = 1  # months per step of the month loop (see default_unroll)
    sketch_layout: red.Layout = red.Layout()  # how the device keeps the sketches (see default_sketch_layout)
    # Monthly shocks drawn (T, n), the layout the month loop reads, on accelerators; (n, T) on CPUs,
    # where writing them month-major made the shock draws 35% slower than transposing them after.
    time_major_shocks: bool = False
    ext: Flags | None = None  # the extensions the study uses (None: the base model's program)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this run computes: METRICS, and the extensions' where the study has any."""
        return METRICS if self.ext is None else metrics_mod.ALL_METRICS

    @property
    def tail_counts(self) -> tuple[tuple[str, str, Callable[[jax.Array], jax.Array]], ...]:
        """The exact tail counts this run keeps: TAIL_COUNTS, and DEBT_TAIL_COUNTS where the study has debt."""
        return TAIL_COUNTS + DEBT_TAIL_COUNTS if self.ext is not None and self.ext.debt else TAIL_COUNTS

    @property
    def row_systems(self) -> tuple[str, ...]:
        """The system of each output row of a scenario: the study's systems, then the portfolio
        row (MODEL.md "The portfolio row") where the study asks for one. Metrics are (len(row_systems), n)."""
        return self.systems + ((PORTFOLIO,) if self.study.portfolio else ())

    @property
    def fleet_order(self) -> tuple[int, ...]:
        """The order in which the portfolio row sums over systems: by name, so that the row is the
        same however the study lists them."""
        return tuple(sorted(range(len(self.systems)), key=lambda s: self.systems[s]))

    @property
    def n_series(self) -> int:
        return len(self.metrics) * len(self.row_systems)

    @property
    def n_monthly(self) -> int:
        """Monthly band series: (cumulative cash flow, revenue) x system x month, then utilization x month."""
        return self.months * (2 * len(self.systems) + 1) if self.monthly else 0


def on_accelerator() -> bool:
    """Whether JAX runs on a GPU or TPU here (the defaults that follow differ from a CPU's)."""
    return jax.default_backend() != "cpu"


def default_chunk_size() -> int:
    """Scenarios per chunk: large on accelerators; on CPUs small enough that a chunk's arrays stay
    in cache (16,384 ran 1e6 scenarios 15% faster than 65,536 on a 2-core EPYC; see RESULTS.md)."""
    return 1 << 20 if on_accelerator() else 1 << 14


def small_run_chunk(scenarios: int) -> int:
    """The chunk of a run smaller than a chunk: the scenario count rounded up to a power of two, at
    least 512. Runs of 10 and of 500 scenarios then compile the same programs (or load them from
    the disk cache): compiling takes seconds, simulating the padding (masked out) microseconds."""
    return max(512, 1 << max(0, scenarios - 1).bit_length())


def default_unroll() -> int:
    """Months per step of the month loop (``lax.scan``'s unroll). On a GPU each step is a kernel
    that reads and writes the loop's state in device memory; fusing 4 months per step cuts that
    traffic: the simulate stage of the default study ran 1.44x faster on an H200 (2.4e9 -> 3.5e9
    scenario-months/s; 8 months gained 2% more and took longer to compile; see
    benchmarks/RESULTS.md). On a 2-core CPU it gained nothing. XLA may round float32 paths
    differently when it fuses differently (relative 1e-5 here), so the unroll is part of the program
    and written to the manifest; on one backend every run uses the same."""
    return 4 if on_accelerator() else 1


def default_sketch_layout() -> red.Layout:
    """How the device keeps the quantile sketches (:class:`mcrisk.stats.reduce.Layout`; no count depends on it).

    CPUs: one histogram per series, filled series by series (a sequential loop; scenario by
    scenario ran 2.8x slower on a 2-core EPYC, 32 scenarios at a time and 8 copies 20-60% slower).
    Accelerators: 8 copies, filled 32 scenarios (a warp) of each series in turn. There the sketch
    update is a scatter of atomic additions, and it ran at 5-6e9 additions per second on an
    H200, for the metric sketches (13 ms per chunk of 2**20, as long as the whole simulate stage)
    and for the monthly bands alike, whatever their bins: far below the card's rate for atomics
    to distinct addresses. Filled series by series,
    the additions in flight at once all fall on one series' busy bins (a few cache slices), and in
    the default study 3 of the 78 series are constant (a fixed licence cost) and 2 more put over
    80% of their values in one bin (a payback beyond the horizon): 2**20 additions to one address
    per chunk each. Interleaving the series spreads the additions in flight over all of them (a
    warp still adds 32 neighbouring scenarios of one series, whose bins share cache lines), and
    copies split each address's queue 8 ways, for 8x the device memory (414 MB for the metric
    sketches, 104 MB for the bands). Unmeasured on a GPU when chosen: ``benchmarks/kernels.py``
    times each layout on the card.
    """
    return red.Layout(copies=8, interleave=32) if on_accelerator() else red.Layout()


def irr_mask_rows() -> int | None:
    """How the IRR reads its grid's sign masks (:func:`mcrisk.model.metrics.grid_points`): on CPUs a loop,
    8 of the 64 grid rows per pass (the IRR 2.6x faster there); on accelerators one reduction
    (the loop moved 10% more bytes compiled for an H100)."""
    return None if on_accelerator() else 8


def irr_unroll(months: int) -> int | None:
    """How the IRR's Newton steps evaluate NPV (:func:`mcrisk.model.irr.irr`'s ``unroll``): on
    accelerators every month in one pass, by Estrin's scheme (None); on CPUs Horner's rule, 4
    months a pass.

    The IRR is half of the simulate stage on a GPU, and its NPV evaluations most of that: each
    of Horner's passes is a kernel that reads and writes the running float64 sums. On an H200
    (`benchmarks/irr_unroll.py`, one chunk of 2**20 scenarios of the default study), Horner
    over all 47 months compiled in 5.0 s and ran in 9.6 ms per chunk; 16 months, 3.6 s and 10.5
    ms; 8 months, 2.4 s and 11.2 ms. Estrin's scheme reads every month in one pass like the
    first, as a tree of independent operations rather than a chain of 47, and only in the Newton
    steps (the peak search keeps Horner): compiled for an H100 (`benchmarks/traffic.py`), the
    stage moves 500 bytes per scenario-month against 607 with Horner over 8 months. Its compile
    on a card is still to be measured (`benchmarks/gpu.sh`, step irr); compiled for an H100 on a
    2-core host with JAX 0.10.2, Horner over 8 and over 47 months and Estrin (there in the search
    too) took the same time (3.4-3.5 s, medians of 3). On a CPU the IRR took 3x as long with
    Estrin (27 ms against 8 ms for a chunk of 16,384 scenarios), so CPUs keep Horner."""
    return None if on_accelerator() else 4


def make_plan(
    study: Study,
    *,
    scenarios: int,
    seed: int,
    precision: str,
    chunk_size: int | None,
    monthly: bool = True,
    dims: Sequence[str] | None = None,
    unroll: int | None = None,
) -> Plan:
    """Fix everything a run needs before its first chunk.

    `dims`: the sampler dimensions of a base run this one must share draws with (a stress or a
    sweep point): its uncertain inputs keep those columns, new ones are appended. With the
    random and Latin-hypercube samplers a column depends only on its path anyway; with Sobol'
    it is what keeps an input's points the same when another input becomes fixed.
    """
    inputs = tuple(study.inputs())
    uncertain = tuple(sorted((i for i in inputs if not i.dist.is_fixed), key=lambda i: i.path))
    base = tuple(dims) if dims is not None else ()
    dims = base + tuple(i.path for i in uncertain if i.path not in base)
    col_of = {p: k for k, p in enumerate(dims)}
    fixed = {i.path: float(i.dist.mean()) for i in inputs if i.dist.is_fixed}
    systems = tuple(study.systems)
    plain = {f: tuple(float(getattr(study.systems[s], f)) for s in systems) for f in PLAIN_SYSTEM_FIELDS}
    _check_range(uncertain, fixed, plain, systems, precision)
    sampler = make_sampler(study.simulation.sampler, seed, tuple(stream_id(p) for p in dims), scenarios)
    cols, factor = (), None
    if study.correlations:
        names, corr = correlation_matrix({(a, b): rho for a, b, rho in study.correlations})
        cols, factor = tuple(col_of[n] for n in names), copula_factor(corr)
    known = {i.path for i in inputs}
    shocks_on = Shocks(*(vol in known and not (vol in fixed and fixed[vol] == 0.0) for _, vol in SHOCKS))
    devices = np.array(jax.local_devices())  # this process's (under jax.distributed each runs its own shard)
    chunk = min(chunk_size or default_chunk_size(), small_run_chunk(scenarios))
    chunk = -(-chunk // len(devices)) * len(devices)  # a multiple of the device count
    return Plan(
        study=study,
        scenarios=scenarios,
        seed=seed,
        dtype=jnp.float64 if precision == "float64" else jnp.float32,
        months=study.simulation.horizon_months,
        systems=systems,
        inputs=inputs,
        uncertain=uncertain,
        dims=dims,
        sample_cols=tuple(col_of[i.path] for i in uncertain),
        fixed=fixed,
        plain=plain,
        sampler=sampler,
        copula_cols=cols,
        copula_factor=factor,
        shocks_on=shocks_on,
        chunk=chunk,
        mesh=Mesh(devices, ("scenarios",)),
        monthly=monthly,
        unroll=unroll or default_unroll(),
        sketch_layout=default_sketch_layout(),
        time_major_shocks=on_accelerator(),
        ext=study_flags(study),
    )


def _check_range(uncertain, fixed: dict, plain: dict, systems, precision: str) -> None:
    """Every input must fit the path dtype: a float32 run turns 1e39 into inf, and every metric
    that depends on it with it, with only a NumPy warning. StudyError names each input."""
    big = float(np.finfo(np.float64 if precision == "float64" else np.float32).max)
    values = dict(fixed)
    values.update({f"systems.{s}.{f}": v for f, vs in plain.items() for s, v in zip(systems, vs)})
    problems = [
        Problem(p, f"{v:g} is beyond the largest {precision} number ({big:.3g})")
        for p, v in values.items()
        if abs(v) > big
    ]
    for i in uncertain:  # the draws' range: the support's bounds, or the mean where a bound is infinite
        lo, hi = (float(x) for x in i.dist.support())
        reach = max((abs(x) for x in (lo, hi) if np.isfinite(x)), default=0.0)
        reach = max(reach, abs(float(i.dist.mean())) if not (np.isfinite(lo) and np.isfinite(hi)) else 0.0)
        if reach > big:
            problems.append(
                Problem(i.path, f"its draws reach {reach:g}, beyond the largest {precision} number ({big:.3g})")
            )
    if problems:
        hint = " (a float64 run, --precision float64, holds up to 1.8e308)" if precision == "float32" else ""
        raise StudyError(problems, f"for a {precision} run{hint}")


# --------------------------------------------------------------------------- stages


class Sample(NamedTuple):
    """One chunk's draws: uncertain inputs by path (n,) and monthly shocks (None if off), (T, n)
    if the plan has time-major shocks, else (n, T)."""

    values: dict[str, jax.Array]
    shocks: Shocks


def sample_values(plan: Plan) -> dict[str, Any]:
    """The numbers of the sample stage, in the path dtype: each distribution's parameters
    (`quantile_params`) and the copula factor (None without correlations).

    Passed to the sample stage as arguments (not baked in as constants), so that variants of a
    study that differ only in distribution values (stresses, sweep points) share one compiled program.
    """
    factor = None if plan.copula_factor is None else np.asarray(plan.copula_factor, plan.dtype)
    return {"dists": quantile_params([inp.dist for inp in plan.uncertain], plan.dtype), "copula": factor}


def draw_inputs(plan: Plan, idx: jax.Array, values: dict[str, Any] | None = None) -> dict[str, jax.Array]:
    """The uncertain static inputs of scenarios `idx` (uint32, (n,)), by study path, each (n,).

    `values`: `sample_values(plan)`, the default (then constants of the program), or traced."""
    values = sample_values(plan) if values is None else values
    u = draw_uniforms(plan, idx, values)
    drawn = quantiles([inp.dist for inp in plan.uncertain], u, values["dists"])
    out = {inp.path: v for inp, v in zip(plan.uncertain, drawn)}
    if plan.ext is not None and plan.ext.contract:
        out.update(contract_uniforms(plan, idx))
    return out


def draw_uniforms(plan: Plan, idx: jax.Array, values: dict[str, Any] | None = None) -> jax.Array:
    """The uniforms (n, k) of scenarios `idx` that the inverse CDFs of the uncertain inputs read,
    column j for ``plan.uncertain[j]``: the sampler's, through the copula where the study has one.
    (The pathwise Greeks hold them fixed while a distribution's parameters move.)"""
    values = sample_values(plan) if values is None else values
    u = plan.sampler.uniforms(idx, plan.dtype)
    # Columns by static slices, not index arrays: XLA compiles those to gathers and scatters,
    # which are slow on CPUs.
    columns = [u[:, j] for j in range(u.shape[1])]
    if plan.copula_factor is not None:
        z = apply_copula(
            jnp.stack([columns[j] for j in plan.copula_cols], axis=1), jnp.asarray(values["copula"], plan.dtype)
        )
        for k, j in enumerate(plan.copula_cols):
            columns[j] = z[:, k]
    u = jnp.stack([columns[j] for j in plan.sample_cols], axis=1) if plan.sample_cols else u[:, :0]
    # The uniforms are materialized before the inverse CDFs: fusing the two made XLA's GPU fusion
    # pass take 6.4 s on this one program, so that it compiled in 10.5-12.3 s for an H100 and 3.8-4.7
    # s with the barrier (fewer kernels and bytes too: 9 and 1.4 GB per 2^20 scenarios, from 11 and
    # 1.8). The draws are the same: on a CPU the program, its time and its bits are unchanged.
    return jax.lax.optimization_barrier(u)


def shock_streams(plan: Plan) -> list[int | None]:
    """Stream id of each monthly shock that is switched on (None where its volatility is fixed at 0)."""
    return [stream_id(name) if on else None for (name, _), on in zip(SHOCKS, plan.shocks_on)]


def draw_shocks(plan: Plan, idx: jax.Array, normals: Callable = shock_normals) -> Shocks:
    """Monthly shocks of scenarios `idx`, each (T, n) (one row per month; (n, T) unless
    `plan.time_major_shocks`), or None where switched off.

    The stream id is a traced argument of `normals`, so one compiled function serves all three.
    """
    root = root_key(plan.seed)
    return Shocks(
        *(
            None if s is None else normals(root, idx, s, plan.months, plan.dtype, time_major=plan.time_major_shocks)
            for s in shock_streams(plan)
        )
    )


def chunk_indices(
    start: jax.Array, size: int, n_total: jax.Array | int, n_bands: jax.Array | int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Scenario indices start .. start + size - 1 of a chunk (uint32), which of them are real
    scenarios (< n_total; the last chunk is padded), and which count in the monthly bands (< n_bands)."""
    i = jnp.asarray(start, jnp.int64) + jnp.arange(size, dtype=jnp.int64)
    return i.astype(jnp.uint32), i < n_total, i < n_bands


def sample(plan: Plan, idx: jax.Array) -> Sample:
    """Draw the static inputs and monthly shocks of scenarios `idx` (uint32, (n,))."""
    return Sample(draw_inputs(plan, idx), draw_shocks(plan, idx))


def fixed_values(plan: Plan) -> dict[str, np.ndarray]:
    """Every fixed input and plain system field by study path, as 0-d arrays of the path dtype.

    Passed to the simulate stage as arguments (not baked in as constants), so that variants of a
    study that differ only in fixed values (sweep points, stresses) share one compiled program.
    """
    out = {p: np.asarray(v, plan.dtype) for p, v in plan.fixed.items()}
    for fld in PLAIN_SYSTEM_FIELDS:
        out.update({f"systems.{s}.{fld}": np.asarray(v, plan.dtype) for s, v in zip(plan.systems, plan.plain[fld])})
    return out


def _month_loop(plan: Plan, draw: Sample, n: int, *, flows: bool, bands: bool):
    """The month loop (``lax.scan``) of a chunk: the parameters, the running totals, and the
    monthly outputs asked for: the cash flows (T, S, n) if `flows` (the IRR needs them), and the
    band values (cumulative cash flow, revenue: (T, S, n); utilization: (T, n)) if `bands`."""
    mp, site, sp = params(plan, draw.values, n)
    pl = plant(sp, site)
    S = len(plan.systems)
    capex = jnp.broadcast_to((sp.units * sp.capex).astype(jnp.float64), (S, n))
    zeros = jnp.zeros((plan.months, n), plan.dtype)
    eps = Shocks(*(zeros if s is None else s if plan.time_major_shocks else s.T for s in draw.shocks))
    months = jnp.arange(1, plan.months + 1, dtype=plan.dtype)

    def step(carry, x):
        state, tot = carry
        e, t = x
        state, mkt = market_step(mp, state, e, t)
        f = month_flows(sp, pl, mkt, t)
        tot = accumulate(tot, f, mkt, discount_factor(site.discount_rate, t), t, capex)
        ys = (f.cash_flow,) if flows else ()
        if bands:
            # The cumulative cash flow is the float64 running total itself (a sequential sum, the same
            # whatever the chunk shape, not a cumsum XLA may reassociate), less capex, stored in the
            # path dtype (the sketch resolves 0.5%): half the bytes of storing the float64 total.
            ys += ((tot.cum_cash_flow - capex).astype(plan.dtype), f.revenue, mkt.utilization)
        return (state, tot), ys

    with jax.named_scope("month_loop"):  # (names the loop's kernels in a profile or HLO: benchmarks/traffic.py --parts)
        (_, tot), ys = jax.lax.scan(step, (market_init(mp), totals_init((S, n))), (eps, months), unroll=plan.unroll)
    return (mp, site, sp, pl), tot, ys


def _band_rows(cumulative: jax.Array, revenue: jax.Array, util: jax.Array) -> jax.Array:
    """Monthly band values in series order (quantity, system, month), then utilization by month: (n_monthly, n)."""
    T, S, n = cumulative.shape
    per_system = jnp.stack([cumulative, revenue])  # (2, T, S, n)
    return jnp.concatenate([jnp.transpose(per_system, (0, 2, 1, 3)).reshape(2 * S * T, n), util])


def simulate_months(plan: Plan, draw: Sample, n: int) -> tuple[dict[str, jax.Array], jax.Array | None]:
    """Market paths and cash flows month by month -> every metric, each (S, n) float64, and the
    monthly band values (n_monthly, n) in the path dtype (None when the plan keeps no monthly bands)."""
    if plan.ext is not None:
        irr_kw = dict(unroll=irr_unroll(plan.months), mask_rows_per_pass=irr_mask_rows())
        out, ys = ext_simulate(plan, draw, n, irr_kw)
        return out, (_band_rows(*ys) if plan.monthly else None)
    (mp, site, sp, pl), tot, ys = _month_loop(plan, draw, n, flows=True, bands=plan.monthly)
    out = metrics_mod.compute(
        sp,
        site,
        pl,
        tot,
        ys[0],
        mp.price0,
        plan.months,
        irr_unroll=irr_unroll(plan.months),
        irr_mask_rows=irr_mask_rows(),
    )
    return out, (_band_rows(*ys[1:]) if plan.monthly else None)


def simulate(plan: Plan, draw: Sample, n: int) -> dict[str, jax.Array]:
    """Market paths and cash flows month by month -> every metric, each (S, n) float64."""
    return simulate_months(replace(plan, monthly=False) if plan.monthly else plan, draw, n)[0]


def monthly_values(plan: Plan, draw: Sample, n: int) -> jax.Array:
    """The monthly band values alone, (n_monthly, n): the month loop with no IRR and no metrics.

    A run computes its metrics with :func:`simulate` in every chunk and the band values with this
    in the chunks that hold band scenarios (the first 262,144 by default): on a GPU the band
    outputs cost a quarter of the simulate stage's memory traffic (``benchmarks/traffic.py``), and
    every chunk's metrics still come from the same program, so no number depends on which
    chunk a scenario falls in.
    """
    if plan.ext is not None:
        return _band_rows(*ext_month_loop(plan, draw, n, bands=True)[2][2:])
    _, _, ys = _month_loop(plan, draw, n, flows=False, bands=True)
    return _band_rows(*ys)
