"""The portfolio row (MODEL.md "The portfolio row") and every extension, engine against the float64 reference.

Random small studies (seeded) with 2-3 systems use timing and lead times, purchase months,
GPU-hour and token systems, contracts with counterparty default, hardware generations, tax,
debt, a cost of equity, rental shocks and ``portfolio: true``. The engine's drawn inputs, shocks
and default uniforms are fed to the independent reference (``mcrisk.reference``), and every row
(the systems' and the portfolio's) and every metric is compared:

* float64: within rtol 1e-6 (money that nets out, such as NPV or profit, relative to the money
  it nets: |revenue| + |capex|; the IRRs within 1e-6 absolute), payback months, live months and
  default months exactly, NaN and inf patterns (with signs) identical;
* float32 paths (float64 sums): within rtol 2e-5 (IRRs within 2e-5 absolute), the same NaN
  pattern, and payback months within one month (a float32 path may cross capex a month apart).
  The paths' own rounding (1e-7 a step, compounded over up to 48 months of prices and shocks)
  left the study with every extension within 1e-6 of the reference, float64 within 3e-14.
"""

from __future__ import annotations

import copy

import jax
import numpy as np
import pytest

from mcrisk.engine.plan import make_plan, sample, simulate
from mcrisk.model.metrics import ALL_METRICS
from mcrisk.reference import portfolio_metrics, system_metrics
from mcrisk.study.schema import study_from_dict

N = 96  # scenarios per study
EXACT = ("payback_months", "live_months", "contract_default_month")
RATES = ("irr", "equity_irr")
NAMES = ("alpha", "mid_rack", "zeta", "b-200")


def U(lo: float, hi: float) -> dict:
    return {"dist": "uniform", "low": float(lo), "high": float(hi)}


def random_study(seed: int, every: bool = False) -> dict:
    """A small study with 2-3 systems and MODEL.md's extensions, each switched on at random
    (`every`: all of them, with one token and one GPU-hour system at least)."""
    rng = np.random.default_rng(seed)
    on = (lambda p: True) if every else (lambda p: bool(rng.random() < p))  # noqa: E731
    T = int(rng.choice([24, 36, 48]))
    market: dict = {
        "token_price": {
            "initial_usd_per_mtok": {"dist": "lognormal", "p5": 0.5, "p95": 2.5},
            "annual_decline": U(0.1, 0.7),
            "volatility": float(rng.uniform(0.05, 0.3)),
        },
        "demand": {
            "utilization": {"dist": "beta", "mean": 0.6, "sd": 0.15},
            "ramp_months": U(0, 6),
            "persistence": 0.7,
            "volatility": float(rng.choice([0.0, 0.4])),
        },
        "electricity": {"usd_per_kwh": U(0.05, 0.15), "volatility": 0.2, "mean_reversion": 1.0},
    }
    if on(0.7):
        market["rental"] = {"volatility": U(0.1, 0.3)}
    if on(0.7):
        market["succession"] = {
            "first_month": U(3, T),
            "token_price_step": U(0.0, 0.3),
            "rental_step": U(0.0, 0.3),
        }
        if on(0.5):
            market["succession"]["every_months"] = U(6, 18)
    finance: dict = {"discount_rate": U(0.06, 0.15)}
    if on(0.6):
        finance["cost_of_equity"] = U(0.1, 0.2)
    if on(0.7):
        finance["tax_rate"] = U(0.1, 0.3)
    if on(0.7):
        finance["debt"] = {"share": U(0.2, 0.7), "annual_rate": U(0.03, 0.12), "tenor_months": int(rng.integers(6, T))}
    k = int(rng.integers(2, 4))
    names = list(rng.permutation(NAMES)[:k])
    modes = ["tokens", "gpu_hours"] + [str(rng.choice(["tokens", "gpu_hours"])) for _ in range(k - 2)]
    systems = {}
    for i, name in enumerate(names):
        gpus = int(rng.choice([8, 72]))
        s: dict = {
            "units": int(rng.integers(1, 4)),
            "gpus_per_unit": gpus,
            "capex_usd": U(30_000 * gpus, 50_000 * gpus),
            "it_power_kw": float(1.7 * gpus),
            "throughput_tokens_per_s_per_gpu": {"dist": "lognormal", "p5": 500, "p95": 4000},
            "efficiency": U(0.6, 0.9),
            "availability": {"dist": "beta", "mean": 0.97, "sd": 0.015},
            "software_speedup": {"ceiling": U(1.0, 2.0), "time_constant_months": U(2, 9)},
            "maintenance_fraction_per_year": 0.02,
            "license_usd_per_gpu_year": float(rng.choice([0.0, 4500.0])),
            "residual_value_fraction": U(0.0, 0.15),
            "depreciation_years": int(rng.choice([3, 4, 5])),
        }
        if on(0.7):
            s["purchase_month"] = int(rng.integers(0, T // 3))
        if on(0.7):
            s["lead_months"] = U(0, 5)
        mode = modes[i] if every else str(rng.choice(["tokens", "gpu_hours"]))
        if mode == "gpu_hours":
            s["revenue_mode"] = "gpu_hours"
            s["rental"] = {"initial_usd_per_gpu_hour": U(1.5, 4.0), "annual_decline": U(0.1, 0.3)}
        if on(0.7):
            s["contract"] = {
                "share": U(0.2, 0.8),
                "term_months": int(rng.integers(6, T)),
                "price_multiple": U(0.7, 1.1),
                "usage": U(0.6, 1.0),
                "annual_default_probability": U(0.02, 0.3) if on(0.7) else 0.0,
            }
        systems[name] = s
    return {
        "name": f"random-{seed}",
        "simulation": {"scenarios": N, "horizon_months": T, "seed": seed},
        "market": market,
        "facility": {"pue": U(1.1, 1.4), "colocation_usd_per_kw_month": U(150, 220)},
        "finance": finance,
        "portfolio": True,
        "systems": systems,
    }


def engine(raw: dict, precision: str, n: int = N, chunk_size: int | None = None):
    """The engine's plan, draws and metrics ((S + 1, n) each, float64) of a study's first n scenarios."""
    plan = make_plan(
        study_from_dict(copy.deepcopy(raw)),
        scenarios=n,
        seed=raw["simulation"]["seed"],
        precision=precision,
        chunk_size=chunk_size,
        monthly=False,
    )
    # jitted: compiling each stage takes a third of the time running them op by op does
    draw = jax.jit(lambda i: sample(plan, i))(np.arange(plan.chunk, dtype=np.uint32))
    out = jax.jit(lambda d: simulate(plan, d, plan.chunk))(draw)
    return plan, draw, {k: np.asarray(v, np.float64)[:, :n] for k, v in out.items()}


def reference_inputs(plan, draw, n: int):
    """The reference's market, systems (study order), shocks and default uniforms, from the engine's draws."""
    st = plan.study

    def value(path: str):
        if path in draw.values:
            return np.asarray(draw.values[path], np.float64)[:n]
        return plan.fixed[path]

    market = {i.path: value(i.path) for i in plan.inputs if i.system is None}
    if st.finance.debt is not None and st.finance.debt.tenor_months is not None:
        market["finance.debt.tenor_months"] = float(st.finance.debt.tenor_months)
    systems, uniforms = {}, {}
    for name, sys in st.systems.items():
        own = {i.field: value(i.path) for i in plan.inputs if i.system == name}
        own.update({f: float(getattr(sys, f)) for f in ("units", "gpus_per_unit", "depreciation_years")})
        own["purchase_month"] = float(sys.purchase_month or 0)
        own["revenue_mode"] = sys.revenue_mode or "tokens"
        if sys.contract is not None:
            own["contract.term_months"] = float(sys.contract.term_months or 0)
        systems[name] = own
        w = draw.values.get(f"systems.{name}.contract.default")
        if w is not None:
            uniforms[name] = np.asarray(w, np.float64)[:n]
    # a shock the study does not use is None; (n, T) on CPUs, (T, n) on accelerators
    eps = [
        None if e is None else (np.asarray(e, np.float64).T if plan.time_major_shocks else np.asarray(e, np.float64))
        for e in draw.shocks
    ]
    return market, systems, [None if e is None else e[:n] for e in eps], uniforms


def reference(plan, draw, n: int = N) -> dict[str, np.ndarray]:
    """Every metric of every row by the reference, (S + 1, n), the portfolio last."""
    market, systems, eps, uniforms = reference_inputs(plan, draw, n)
    T = plan.months
    rows = [system_metrics(market, own, T, *eps, default_uniform=uniforms.get(name)) for name, own in systems.items()]
    rows.append(portfolio_metrics(market, systems, T, *eps, default_uniforms=uniforms))
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def compare(got: dict, want: dict, plan, rtol: float, rate_atol: float, payback_slack: int, where: str) -> None:
    """Every metric of every row: identical NaN patterns (and infinities, with signs, but for a
    float32 run's payback), exact counts of months, the rest within `rtol` (see the module's docstring)."""
    assert set(got) == set(ALL_METRICS)
    money = np.abs(want["revenue_usd"]) + np.abs(want["capex_usd"])
    for m in ALL_METRICS:
        a, b = got[m], want[m]
        msg = f"{where}: {m}"
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=msg)
        if m == "payback_months" and payback_slack:
            both = np.isfinite(a) & np.isfinite(b)
            assert np.all(np.abs(a[both] - b[both]) <= payback_slack), msg
            assert np.mean(np.isinf(a) != np.isinf(b)) <= 0.02, msg
            continue
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b), err_msg=msg)
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b), err_msg=msg)
        fin = np.isfinite(a) & np.isfinite(b)
        if m in EXACT and not payback_slack:
            np.testing.assert_array_equal(a[fin], b[fin], err_msg=msg)
            continue
        if m in RATES:
            atol = rate_atol
        elif m.endswith("_usd") and m not in ("capex_usd",):
            atol = rtol * money
        elif m in ("net_roi", "operating_margin", "min_dscr"):
            atol = rtol * money / np.abs(want["capex_usd"])
        else:
            atol = 0.0
        with np.errstate(invalid="ignore"):  # (inf - inf where fin is False)
            bad = fin & ~(np.abs(a - b) <= np.broadcast_to(atol, a.shape) + rtol * np.abs(b))
        assert not bad.any(), (
            f"{msg}: {bad.sum()} values differ, e.g. row, scenario {np.argwhere(bad)[0]}: {a[bad][:3]} != {b[bad][:3]}"
        )


def _uses_everything(raw: dict) -> None:
    systems = raw["systems"].values()
    assert {s.get("revenue_mode", "tokens") for s in systems} == {"tokens", "gpu_hours"}
    assert all("contract" in s and "purchase_month" in s and "lead_months" in s for s in systems)
    assert {"rental", "succession"} <= set(raw["market"])
    assert {"tax_rate", "debt", "cost_of_equity"} <= set(raw["finance"])


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_engine_matches_the_reference_on_a_study_with_every_extension(precision):
    raw = random_study(11, every=True)
    _uses_everything(raw)
    plan, draw, got = engine(raw, precision)
    assert plan.row_systems == (*raw["systems"], "portfolio")
    if precision == "float64":
        compare(got, reference(plan, draw), plan, rtol=1e-6, rate_atol=1e-6, payback_slack=0, where="float64")
    else:
        compare(got, reference(plan, draw), plan, rtol=2e-5, rate_atol=2e-5, payback_slack=1, where="float32")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_engine_matches_the_reference_on_random_studies(seed):
    raw = random_study(100 + seed)
    plan, draw, got = engine(raw, "float64")
    compare(got, reference(plan, draw), plan, rtol=1e-6, rate_atol=1e-6, payback_slack=0, where=f"seed {seed}")


def test_the_row_does_not_depend_on_the_order_of_the_systems():
    """The fleet sums its systems in the order of their names: listing them in another order
    changes no bit of the portfolio row (nor of the systems' rows)."""
    raw = random_study(11, every=True)
    flipped = copy.deepcopy(raw)
    flipped["systems"] = dict(reversed(list(raw["systems"].items())))
    plan, _, a = engine(raw, "float64")
    other, _, b = engine(flipped, "float64")
    where = [other.systems.index(s) for s in plan.systems] + [len(plan.systems)]
    for m in ALL_METRICS:
        np.testing.assert_array_equal(a[m], b[m][where], err_msg=m)


def test_the_row_flows_through_the_run_folder(tmp_path):
    """scenarios.parquet (every scenario's portfolio row last, with the scenario's market,
    facility and finance inputs and NaN system inputs), summary.csv,
    risk.csv, the report; none in breakeven.csv, comparison.csv or sensitivity.csv. The row does
    not depend on the chunk size, bit for bit."""
    import pandas as pd

    from mcrisk import run_study
    from mcrisk.report.page import write_report

    raw = random_study(11, every=True)
    n = 300
    result = run_study(raw, out=tmp_path / "run", scenarios=n, precision="float64", chunk_size=256, stress=False)
    rows = pd.read_parquet(result.folder / "scenarios.parquet")
    systems = [*raw["systems"], "portfolio"]
    assert list(rows["system"].astype(str)[: len(systems)]) == systems
    pf = rows[rows["system"] == "portfolio"].sort_values("scenario")
    assert len(pf) == n
    _, _, direct = engine(raw, "float64", n=n, chunk_size=1024)
    _, _, small = engine(raw, "float64")  # 96 scenarios in a chunk of 512
    for m in ALL_METRICS:
        np.testing.assert_array_equal(small[m], direct[m][:, :N], err_msg=m)
        # (the run passes fixed inputs as arguments, the direct program holds them as constants)
        np.testing.assert_allclose(pf[m].to_numpy(), direct[m][-1], rtol=1e-12, atol=0, err_msg=m)
    inputs = [c for c in rows.columns if c not in ("scenario", "system", *ALL_METRICS)]
    shared = [c for c in inputs if not c.startswith("system__")]
    assert shared and len(shared) < len(inputs) and pf[[c for c in inputs if c not in shared]].isna().all().all()
    own = rows[rows["system"] != "portfolio"]
    first = own.groupby("scenario")[shared].first().sort_index()  # the scenario's shared inputs
    np.testing.assert_array_equal(pf[shared].to_numpy(), first.to_numpy())
    assert own["system__units"].notna().all() and own["market__token_price__initial_usd_per_mtok"].notna().all()
    for table in (result.summary, result.risk):
        assert list(table["system"].unique()) == systems
    s = result.summary.set_index(["system", "metric"])
    assert s.loc[("portfolio", "capex_usd"), "mean"] == pytest.approx(
        sum(s.loc[(x, "capex_usd"), "mean"] for x in raw["systems"]), rel=1e-9
    )
    assert s.loc[("portfolio", "live_months"), "n_nan"] == n
    assert "portfolio" not in set(result.breakeven["system"])
    for name in ("comparison", "sensitivity"):
        table = pd.read_csv(result.folder / f"{name}.csv")
        assert "portfolio" not in set(table.filter(like="system").stack()), name
    assert "portfolio" in result.manifest["systems"]
    page = write_report(result.folder).read_text()
    assert "portfolio" in page
