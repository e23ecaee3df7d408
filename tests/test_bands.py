"""Monthly bands and the break-even table: on plain arrays against numpy, and in a run against
exact computations on the same draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mcrisk.engine.plan import fixed_values, make_plan, sample, simulate_months
from mcrisk.model.metrics import ALL_METRICS, METRICS
from mcrisk.reference import system_flows
from mcrisk.sampling.quantiles import ppf
from mcrisk.stats import reduce as red
from mcrisk.stats.bands import MONTHLY, MONTHLY_SKETCH, PERCENTILES, monthly_table, series_index
from mcrisk.stats.breakeven import COLUMNS as BREAKEVEN_COLUMNS
from mcrisk.stats.breakeven import PERCENTILES as BREAKEVEN_PERCENTILES
from mcrisk.stats.breakeven import breakeven_table
from mcrisk.study.columns import study_path
from mcrisk.study.schema import study_from_dict
from mcrisk.workflows.run import run_study

from .conftest import small_study

N = 3000


def fold(values: np.ndarray, spec: red.SketchSpec, chunk: int = 700) -> red.HostState:
    """The host reducers of `values` (H, n), folded chunk by chunk as a run does (last chunk padded)."""
    H, n = values.shape
    state = red.init_state(H, spec)
    update = jax.jit(red.update, static_argnums=(3, 4))
    for start in range(0, n, chunk):
        part = np.full((H, chunk), np.nan)
        part[:, : min(chunk, n - start)] = values[:, start : start + chunk]
        mask = np.arange(chunk) < n - start
        state = update(state, jnp.asarray(part), jnp.asarray(mask), spec, 0)
    return red.to_host(state)


def test_series_index_covers_every_monthly_series_once():
    S, T = 3, 5
    rows = {series_index(q, s, t, S, T) for q in MONTHLY[:2] for s in range(S) for t in range(1, T + 1)}
    rows |= {series_index("utilization", s, t, S, T) for s in range(S) for t in range(1, T + 1)}
    assert rows == set(range((2 * S + 1) * T))
    # utilization is the market's: every system reads the same series
    assert series_index("utilization", 0, 2, S, T) == series_index("utilization", 2, 2, S, T) == 2 * S * T + 1


def test_monthly_table_of_plain_arrays_matches_numpy():
    """The bands table straight from reducers of known values: counts and means exact,
    percentiles the inverted-CDF ones within the sketch's 0.5%, NaN values left out."""
    rng = np.random.default_rng(7)
    systems, T, n = ["a", "b"], 4, 2500
    H = (2 * len(systems) + 1) * T
    values = rng.standard_normal((H, n)) * rng.uniform(1, 1e6, (H, 1)) + rng.uniform(-1e6, 1e6, (H, 1))
    values[0, :100] = np.nan
    values[-1] = rng.uniform(0, 1, n)  # a utilization series
    table = monthly_table(fold(values, MONTHLY_SKETCH), systems, T)
    assert list(table.columns) == ["system", "quantity", "month", "n", "mean", *(f"p{p}" for p in PERCENTILES)]
    assert len(table) == len(systems) * len(MONTHLY) * T
    for row in table.itertuples():
        x = values[series_index(row.quantity, systems.index(row.system), row.month, len(systems), T)]
        x = x[~np.isnan(x)]
        assert row.n == len(x)
        assert row.mean == pytest.approx(x.mean(), rel=1e-12, abs=1e-9)
        want = np.percentile(x, PERCENTILES, method="inverted_cdf")
        np.testing.assert_allclose([getattr(row, f"p{p}") for p in PERCENTILES], want, rtol=5.01e-3, atol=1e-6)
    with pytest.raises(ValueError, match="series"):
        monthly_table(fold(values[:-1], MONTHLY_SKETCH), systems, T)


def test_breakeven_table_of_plain_arrays():
    """breakeven.csv's arithmetic on reducers of known values: the break-even side is the sketch's
    percentiles and the exact mean of the metric, the market side the study's price quantiles or
    the mean-utilization percentiles, and P(market clears) the exact share of NPVs >= 0, a NaN NPV
    counting as not clearing."""
    rng = np.random.default_rng(11)
    systems, n = ["a", "b", "c"], 3000
    S = len(systems)
    values = rng.lognormal(0.0, 1.0, (len(METRICS) * S, n))
    npv = METRICS.index("npv_usd") * S
    values[npv : npv + S] = rng.standard_normal((S, n)) + [[0.5], [-0.2], [0.0]]
    values[npv, :50] = np.nan
    spec = red.SketchSpec()
    host = fold(values, spec)
    below = (values[npv : npv + S] < 0).sum(axis=1)
    study = study_from_dict(small_study())
    table = breakeven_table(study, host, below, systems, spec)
    assert list(table.columns) == list(BREAKEVEN_COLUMNS)
    assert list(table["quantity"]) == ["initial_token_price_usd_per_mtok", "mean_utilization"] * S
    price = ppf(study.market.token_price.initial_usd_per_mtok, [p / 100 for p in BREAKEVEN_PERCENTILES])
    for row in table.itertuples():
        s = systems.index(row.system)
        metric = "breakeven_price_usd_per_mtok" if row.quantity.startswith("initial") else "breakeven_utilization"
        x = values[METRICS.index(metric) * S + s]
        got = [getattr(row, f"breakeven_p{p}") for p in BREAKEVEN_PERCENTILES]
        want = np.percentile(x, BREAKEVEN_PERCENTILES, method="inverted_cdf")
        np.testing.assert_allclose(got, want, rtol=spec.rel_accuracy + 1e-7)
        assert row.breakeven_mean == pytest.approx(x.mean(), rel=1e-12)
        if row.quantity.startswith("initial"):
            market = price
        else:
            u = values[METRICS.index("mean_utilization") * S + s]
            market = np.percentile(u, BREAKEVEN_PERCENTILES, method="inverted_cdf")
        rtol = 1e-12 if row.quantity.startswith("initial") else spec.rel_accuracy + 1e-7
        np.testing.assert_allclose([getattr(row, f"market_p{p}") for p in BREAKEVEN_PERCENTILES], market, rtol=rtol)
        clears = np.mean(values[npv + s] >= 0)  # NaN >= 0 is False: a NaN NPV does not clear
        assert row.p_market_clears == pytest.approx(clears, abs=1e-15)
        assert row.p_market_clears_mcse == pytest.approx(np.sqrt(clears * (1 - clears) / n), rel=1e-12)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    raw = small_study(scenarios=N)
    out = tmp_path_factory.mktemp("bands") / "run"
    # three chunks, so the bands also go through the device-to-host merges
    return raw, run_study(raw, out=out, chunk_size=1000, diagnostic_draws=0)


@pytest.fixture(scope="module")
def exact(run):
    """Every monthly value of every scenario, from the engine's own stage on one chunk of N."""
    raw, _ = run
    plan = make_plan(study_from_dict(raw), scenarios=N, seed=3, precision="float32", chunk_size=N)

    # jitted like the run's stages, fixed values passed as arguments as the run does (op-by-op
    # or constant-folded float32 rounding may differ from the run's kernels in the last bit)
    def months(idx, consts):
        draw = sample(plan, idx)
        return simulate_months(plan, draw._replace(values={**draw.values, **consts}), N)

    _, bands = jax.jit(months)(jnp.arange(N, dtype=jnp.uint32), fixed_values(plan))
    return plan, np.asarray(bands)


def test_monthly_bands_match_exact_percentiles(run, exact):
    _, result = run
    plan, bands = exact
    table = pd.read_parquet(result.folder / "monthly.parquet")
    S, T = len(plan.systems), plan.months
    assert len(table) == S * len(MONTHLY) * T
    assert set(table.columns) >= {"system", "quantity", "month", "n", "mean", *(f"p{p}" for p in PERCENTILES)}
    for row in table.itertuples():
        h = series_index(row.quantity, plan.systems.index(row.system), row.month, S, T)
        x = bands[h]
        assert row.n == N
        assert row.mean == pytest.approx(x.astype(np.float64).mean(), rel=1e-9, abs=1e-6)
        want = np.percentile(x, PERCENTILES, method="inverted_cdf")
        got = np.array([getattr(row, f"p{p}") for p in PERCENTILES])
        # 0.5% relative accuracy, values within 1e-6 of 0 reported as 0
        np.testing.assert_allclose(got, want, rtol=5.01e-3, atol=1e-6)


def test_cumulative_cash_flow_band_agrees_with_the_float64_reference(run):
    """The band's underlying values come from the model: rebuild scenario paths with the
    independent NumPy model (inputs from scenarios.parquet, shocks from the engine) and compare."""
    raw, result = run
    plan = make_plan(study_from_dict(raw), scenarios=N, seed=3, precision="float32", chunk_size=N)
    draw = sample(plan, jnp.arange(N, dtype=jnp.uint32))
    rows = pd.read_parquet(result.folder / "scenarios.parquet").rename(columns=study_path)  # by dotted path
    rack = rows[rows.system == "rack"].sort_values("scenario")
    market = {
        c: rack[c].to_numpy(np.float64) for c in rack.columns if c.startswith(("market.", "facility.", "finance."))
    }
    system = {c.removeprefix("system."): rack[c].to_numpy(np.float64) for c in rack.columns if c.startswith("system.")}
    # a shock the study does not use is a 0-d placeholder: the reference takes None for it
    eps = [
        None
        if np.ndim(e) == 0
        else np.asarray(e, np.float64).T
        if plan.time_major_shocks
        else np.asarray(e, np.float64)
        for e in draw.shocks
    ]
    f = system_flows(market, system, plan.months, *eps)
    cum = np.cumsum(f["cash_flow"], axis=1) - f["capex"][:, None]
    table = pd.read_parquet(result.folder / "monthly.parquet")
    band = table[(table.system == "rack") & (table.quantity == "cumulative_cash_flow_usd")].sort_values("month")
    for p in (5, 50, 95):
        want = np.percentile(cum, p, axis=0, method="inverted_cdf")
        scale = np.abs(f["capex"]).mean()
        np.testing.assert_allclose(band[f"p{p}"].to_numpy(), want, rtol=6e-3, atol=1e-4 * scale)


def test_breakeven_table_gives_a_gpu_hour_system_its_rental():
    """A system that rents GPU-hours breaks even on its initial rental price, not on the token
    price it does not sell at: its price row is initial_rental_usd_per_gpu_hour, the break-even
    side the metric breakeven_rental_usd_per_gpu_hour, the market side its rental's quantiles."""
    rng = np.random.default_rng(5)
    systems, n = ["rack", "server"], 2000
    S = len(systems)
    values = rng.lognormal(0.0, 1.0, (len(ALL_METRICS) * S, n))
    spec = red.SketchSpec()
    host = fold(values, spec)
    raw = small_study()
    rental = {"dist": "triangular", "low": 2.0, "mode": 3.0, "high": 5.0}
    raw["systems"]["server"] |= {"revenue_mode": "gpu_hours", "rental": {"initial_usd_per_gpu_hour": rental}}
    study = study_from_dict(raw)
    table = breakeven_table(study, host, np.zeros(S, np.int64), systems, spec, ALL_METRICS)
    table = table.set_index(["system", "quantity"])
    assert list(table.index) == [
        ("rack", "initial_token_price_usd_per_mtok"),
        ("rack", "mean_utilization"),
        ("server", "initial_rental_usd_per_gpu_hour"),
        ("server", "mean_utilization"),
    ]
    row = table.loc[("server", "initial_rental_usd_per_gpu_hour")]
    x = values[ALL_METRICS.index("breakeven_rental_usd_per_gpu_hour") * S + 1]
    assert row["breakeven_mean"] == pytest.approx(x.mean(), rel=1e-12)
    # the triangular(2, 3, 5)'s median: 5 - sqrt(0.5 * 3 * 2), as (x - 5)^2 / ((5 - 2)(5 - 3)) = 1/2
    assert row["market_p50"] == pytest.approx(5 - np.sqrt(3.0), rel=1e-9)


def test_breakeven_table(run):
    raw, result = run
    be = pd.read_csv(result.folder / "breakeven.csv")
    summary = result.summary.set_index(["system", "metric"])
    risk = result.risk.set_index("system")
    assert list(be.quantity.unique()) == ["initial_token_price_usd_per_mtok", "mean_utilization"]
    for row in be.itertuples():
        metric = "breakeven_price_usd_per_mtok" if row.quantity.startswith("initial") else "breakeven_utilization"
        for p in (5, 50, 95):
            assert getattr(row, f"breakeven_p{p}") == pytest.approx(
                summary.loc[(row.system, metric), f"p{p}"], rel=1e-12
            )
        # NPV is affine in both, so the market clears a scenario's break-even exactly when its NPV >= 0
        assert row.p_market_clears == pytest.approx(1 - risk.loc[row.system, "p_loss"], abs=1e-12)
        if row.quantity.startswith("initial"):
            # the market side is the study's lognormal with P5 = 0.5 and P95 = 2.5, exactly
            assert row.market_p5 == pytest.approx(0.5, rel=1e-9)
            assert row.market_p95 == pytest.approx(2.5, rel=1e-9)
            assert row.market_p50 == pytest.approx(
                stats.lognorm(s=np.log(5) / 3.2897072539029457, scale=np.sqrt(1.25)).median(), rel=1e-9
            )
        else:
            assert row.market_p50 == pytest.approx(summary.loc[(row.system, "mean_utilization"), "p50"], rel=1e-12)


def test_no_monthly_skips_the_bands(tmp_path):
    result = run_study(
        small_study(scenarios=200), out=tmp_path / "r", monthly=False, write_scenarios=False, diagnostic_draws=0
    )
    assert not (result.folder / "monthly.parquet").exists()
    assert result.manifest["outputs"]["monthly"] is None
    assert (result.folder / "breakeven.csv").exists()


def test_monthly_scenarios_caps_the_bands_by_index(tmp_path, exact):
    """Bands from the first M scenarios: exactly the sketch of those scenarios' values, whatever
    the chunking (M falls inside a chunk here), while the metric summaries cover all N."""
    plan, bands = exact
    M = 1234
    result = run_study(
        small_study(scenarios=N),
        out=tmp_path / "r",
        chunk_size=512,
        monthly_scenarios=M,
        write_scenarios=False,
        diagnostic_draws=0,
        stress=False,
    )
    table = result.monthly
    S, T = len(plan.systems), plan.months
    assert (table["n"] == M).all()
    assert result.manifest["monthly_scenarios"] == M
    assert result.summary["n"].max() == N
    for row in table.itertuples():
        x = bands[series_index(row.quantity, plan.systems.index(row.system), row.month, S, T)][:M]
        assert row.mean == pytest.approx(x.astype(np.float64).mean(), rel=1e-9, abs=1e-6)
        want = np.percentile(x, PERCENTILES, method="inverted_cdf")
        np.testing.assert_allclose([getattr(row, f"p{p}") for p in PERCENTILES], want, rtol=5.01e-3, atol=1e-6)
    # the same cap on other chunks gives the same sketch, hence the same percentiles
    other = run_study(
        small_study(scenarios=N),
        out=tmp_path / "o",
        chunk_size=1000,
        monthly_scenarios=M,
        write_scenarios=False,
        diagnostic_draws=0,
        stress=False,
    ).monthly
    pcols = [f"p{p}" for p in PERCENTILES]
    np.testing.assert_array_equal(other[pcols].to_numpy(), table[pcols].to_numpy())
