"""The simulate stage's inputs and, for studies with MODEL.md's extensions, its month loop.

The named parameter pytrees of a chunk are gathered here from the drawn and fixed inputs
(:func:`params`). A study that uses no extension runs the base month loop of
:mod:`mcrisk.engine.plan`; one that does runs :func:`ext_simulate`, whose traced parts are chosen
by the plan's static :class:`~mcrisk.model.operators.Flags`. Functions take the run's plan
(:class:`mcrisk.engine.plan.Plan`) as their first argument.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mcrisk.model.cashflows import SUM, SiteParams, SystemParams, discount_factor, plant
from mcrisk.model.finance_metrics import ext_accumulate, ext_metrics, ext_totals_init
from mcrisk.model.market import MarketParams, Shocks, market_init, market_step
from mcrisk.model.operators import (
    ExtParams,
    Flags,
    default_month,
    ext_month_flows,
    finance_init,
    finance_step,
    loan,
    tax_basis,
)
from mcrisk.model.portfolio import fleet_init, fleet_metrics, fleet_step, total, with_fleet
from mcrisk.sampling.uniforms import make_sampler, stream_id
from mcrisk.study.schema import Study

# Study paths of the market inputs, in MarketParams order (the extensions' are gathered apart).
MARKET_PATHS = MarketParams(
    price0="market.token_price.initial_usd_per_mtok",
    decline="market.token_price.annual_decline",
    price_vol="market.token_price.volatility",
    util_mean="market.demand.utilization",
    ramp="market.demand.ramp_months",
    persistence="market.demand.persistence",
    util_vol="market.demand.volatility",
    elec0="market.electricity.usd_per_kwh",
    elec_vol="market.electricity.volatility",
    reversion="market.electricity.mean_reversion",
)
SITE_PATHS = SiteParams(
    pue="facility.pue",
    colocation="facility.colocation_usd_per_kw_month",
    discount_rate="finance.discount_rate",
)
_BASE_MARKET = len(MarketParams._fields) - len(MarketParams._field_defaults)  # the base model's market inputs
# Fields of a system, in SystemParams order ('units', 'gpus_per_unit', 'depreciation_years' are plain numbers).
SYSTEM_FIELDS = SystemParams(
    units="units",
    gpus="gpus_per_unit",
    capex="capex_usd",
    power_kw="it_power_kw",
    idle="idle_power_fraction",
    throughput="throughput_tokens_per_s_per_gpu",
    efficiency="efficiency",
    availability="availability",
    price_multiplier="price_multiplier",
    speedup_ceiling="software_speedup.ceiling",
    speedup_tau="software_speedup.time_constant_months",
    maintenance="maintenance_fraction_per_year",
    license="license_usd_per_gpu_year",
    residual="residual_value_fraction",
    depreciation_years="depreciation_years",
)
PLAIN_SYSTEM_FIELDS = ("units", "gpus_per_unit", "depreciation_years")
# Monthly shock streams and the volatility input that switches each on (an absent input: off).
SHOCKS = Shocks(
    price=("market.token_price.shock", "market.token_price.volatility"),
    electricity=("market.electricity.shock", "market.electricity.volatility"),
    utilization=("market.demand.shock", "market.demand.volatility"),
    rental=("market.rental.shock", "market.rental.volatility"),
)
# The uniform of a contract's default month, per scenario and system: stream systems.<name>.contract.default.
DEFAULT_STREAM = "systems.{}.contract.default"


def study_flags(study: Study) -> Flags | None:
    """Which extensions the study uses (None: none, and the run is the base model's program)."""
    systems = list(study.systems.values())
    fin = study.finance
    flags = Flags(
        timing=any(s.purchase_month is not None or s.lead_months is not None for s in systems),
        contract=any(s.contract is not None for s in systems),
        gpu_hours=any(s.revenue_mode == "gpu_hours" for s in systems),
        tax=fin.tax_rate is not None,
        debt=fin.debt is not None,
    )
    other = study.market.succession is not None or study.market.rental is not None or fin.cost_of_equity is not None
    return flags if any(flags) or other or bool(study.portfolio) else None


def _value(plan, values: dict[str, jax.Array], path: str, default: float | None = None) -> jax.Array:
    if path in values:
        return values[path]
    if default is not None and path not in plan.fixed:
        return jnp.asarray(default, plan.dtype)
    return jnp.asarray(plan.fixed[path], plan.dtype)


def _system_param(plan, values: dict[str, jax.Array], fld: str, n: int) -> jax.Array:
    """One SystemParams field as (S, n), or (S, 1) when every system has it fixed."""
    if fld in PLAIN_SYSTEM_FIELDS:
        paths = [f"systems.{s}.{fld}" for s in plan.systems]
        if all(p in values for p in paths):
            return jnp.stack([jnp.asarray(values[p], plan.dtype) for p in paths])[:, None]
        return jnp.asarray(plan.plain[fld], plan.dtype)[:, None]
    return _stack(plan, [_value(plan, values, f"systems.{s}.{fld}") for s in plan.systems], n)


def _stack(plan, per: list, n: int) -> jax.Array:
    """Per-system values, each 0-d or (n,) -> (S, 1) or (S, n)."""
    if all(jnp.ndim(p) == 0 for p in per):
        return jnp.stack([jnp.asarray(p, plan.dtype) for p in per])[:, None]
    return jnp.stack([jnp.broadcast_to(jnp.asarray(p, plan.dtype), (n,)) for p in per])


def _scenarios(v, n: int) -> jax.Array:
    """A market, facility or finance input as (n,); one given per system, (S, n), stays so (the
    pathwise Greeks give each system its own copy, so that one reverse pass separates the systems)."""
    return jnp.broadcast_to(v, jnp.broadcast_shapes(jnp.shape(v), (n,)))


def params(plan, values: dict[str, jax.Array], n: int) -> tuple[MarketParams, SiteParams, SystemParams]:
    """Assemble the named parameter pytrees of a chunk from the drawn and fixed inputs."""
    full = lambda p, d=None: _scenarios(_value(plan, values, p, d), n)  # noqa: E731
    mp = MarketParams(*(full(p) for p in MARKET_PATHS[:_BASE_MARKET]))
    if plan.ext is not None:
        mp = _ext_market(plan, values, mp, full)
    site = SiteParams(*(full(p) for p in SITE_PATHS))
    sp = SystemParams(*(_system_param(plan, values, f, n) for f in SYSTEM_FIELDS))
    return mp, site, sp


def _rounded(x: jax.Array, lo: float, hi: float) -> jax.Array:
    """A drawn count of months: rounded to the nearest integer (halves up), clipped to [lo, hi]."""
    return jnp.clip(jnp.floor(x + 0.5), lo, hi)


def _ext_market(plan, values, mp: MarketParams, full) -> MarketParams:
    st: Study = plan.study
    if st.market.succession is not None:
        every = None
        if st.market.succession.every_months is not None:
            every = _rounded(full("market.succession.every_months"), 1.0, np.inf)
        mp = mp._replace(
            arrival_first=_rounded(full("market.succession.first_month"), 1.0, np.inf),
            arrival_every=every,
            price_step=full("market.succession.token_price_step", 0.0),
            rental_step=full("market.succession.rental_step", 0.0),
        )
    if plan.ext.gpu_hours:
        mp = mp._replace(rental_vol=full("market.rental.volatility", 0.0))
    return mp


def ext_params(
    plan, values: dict[str, jax.Array], n: int, mp: MarketParams, site: SiteParams, sp: SystemParams
) -> tuple[ExtParams, jax.Array, jax.Array]:
    """The extensions' inputs of a chunk, the cost of equity (n,) and the debt share (n,)."""
    st: Study = plan.study
    T = plan.months
    sysv = lambda fld, d: _stack(plan, [_value(plan, values, f"systems.{s}.{fld}", d) for s in plan.systems], n)  # noqa: E731
    plain = lambda get: jnp.asarray([float(get(st.systems[s])) for s in plan.systems], SUM)[:, None]  # noqa: E731
    purchase = plain(lambda s: s.purchase_month or 0)
    lead = _rounded(sysv("lead_months", 0.0).astype(SUM), 0.0, float(T))
    go_live = purchase + lead
    gpu = jnp.asarray([st.systems[s].revenue_mode == "gpu_hours" for s in plan.systems])[:, None]
    rental0 = sysv("rental.initial_usd_per_gpu_hour", 1.0)
    multiple = sysv("contract.price_multiple", 1.0)
    scen = lambda p, d: _scenarios(_value(plan, values, p, d), n).astype(SUM)  # noqa: E731
    pd = sysv("contract.annual_default_probability", 0.0)
    w = _stack(plan, [values.get(DEFAULT_STREAM.format(s), 0.5) for s in plan.systems], n)
    capex = (sp.units * sp.capex).astype(SUM)
    debt = st.finance.debt
    share = scen("finance.debt.share", 0.0)
    tenor = float((debt.tenor_months if debt is not None else None) or T)
    rate, bal, pmt = loan(share, scen("finance.debt.annual_rate", 0.0), tenor, lead, capex)
    xp = ExtParams(
        purchase=purchase,
        go_live=go_live,
        gpu_hours=gpu,
        rental0=rental0,
        rental_decline=sysv("rental.annual_decline", 0.0),
        share=sysv("contract.share", 0.0),
        term=plain(lambda s: s.contract.term_months if s.contract is not None else 0).astype(plan.dtype),
        contract_price=multiple * jnp.where(gpu, rental0, mp.price0),
        usage=sysv("contract.usage", 1.0),
        default_month=default_month(w, pd, T),
        tax_rate=scen("finance.tax_rate", 0.0),
        tax_months=12 * sp.depreciation_years.astype(SUM),
        debt_rate=rate,
        tenor=jnp.asarray(tenor, SUM),
        payment=pmt,
        balance_live=bal,
    )
    equity = (
        scen("finance.cost_of_equity", None)
        if st.finance.cost_of_equity is not None
        else site.discount_rate.astype(SUM)
    )
    return xp, equity, share


def contract_uniforms(plan, idx: jax.Array) -> dict[str, jax.Array]:
    """The uniform w of each defaultable contract's default month, by stream name, (n,) each."""
    names = [
        DEFAULT_STREAM.format(s)
        for s, sys in plan.study.systems.items()
        if sys.contract is not None
        and not (
            plan.fixed.get(f"systems.{s}.contract.annual_default_probability", 0.0) == 0.0
            and f"systems.{s}.contract.annual_default_probability" in plan.fixed
        )
    ]
    if not names:
        return {}
    u = make_sampler("random", plan.seed, tuple(stream_id(p) for p in names), max(plan.scenarios, 1)).uniforms(
        idx, plan.dtype
    )
    return {p: u[:, j] for j, p in enumerate(names)}


def ext_month_loop(plan, draw, n: int, *, bands: bool, fleet: bool = False):
    """The month loop (one ``lax.scan``) with the extensions: the metrics' totals and parameters,
    the free cash flows and equity flows (T, S, n) float64, and the band values if `bands`; with
    `fleet`, also the portfolio row's totals and summed monthly flows ((T, n) each), else None."""
    flags: Flags = plan.ext
    mp, site, sp = params(plan, draw.values, n)
    xp, equity_rate, share = ext_params(plan, draw.values, n, mp, site, sp)
    pl = plant(sp, site)
    S, T = len(plan.systems), plan.months
    capex = jnp.broadcast_to((sp.units * sp.capex).astype(SUM), (S, n))
    sale = capex * sp.residual.astype(SUM) - tax_basis(xp, capex, T) if flags.tax else None
    zeros = jnp.zeros((T, n), plan.dtype)
    eps = Shocks(*(zeros if s is None else s if plan.time_major_shocks else s.T for s in draw.shocks))
    months = jnp.arange(1, T + 1, dtype=plan.dtype)
    fleet_capex = total(capex, plan.fleet_order) if fleet else None

    def step(carry, x):
        state, tot, fin, ft = carry
        e, t = x
        state, mkt = market_step(mp, state, e, t)
        f = ext_month_flows(flags, mp, sp, xp, pl, mkt, t)
        cash = f.cash_flow.astype(SUM)
        fin, fm = finance_step(flags, xp, fin, cash, t, T, capex, sale)
        tot = ext_accumulate(
            tot, f, fm, discount_factor(site.discount_rate, t), discount_factor(equity_rate, t), t, capex, xp.go_live
        )
        ys = (fm.free_cash_flow, fm.equity_flow if flags.debt else None)
        fy = None
        if fleet:
            ft, fy = fleet_step(ft, fm, cash, t, fleet_capex, plan.fleet_order, flags.debt)
        if bands:
            paid = jnp.where(t.astype(SUM) >= xp.purchase, capex, 0.0)
            ys += ((tot.cum_fcf - paid).astype(plan.dtype), f.revenue, mkt.utilization)
        return (state, tot, fin, ft), (ys, fy)

    ft0 = fleet_init(n) if fleet else None
    init = (market_init(mp), ext_totals_init((S, n), flags.contract), finance_init(flags, xp, (S, n)), ft0)
    with jax.named_scope("month_loop"):
        (_, tot, fin, ft), (ys, fy) = jax.lax.scan(step, init, (eps, months), unroll=plan.unroll)
    balloon = None
    if flags.debt:
        owed = share * capex * (1 + xp.debt_rate) ** (T - xp.purchase)  # never live by T: all capitalized
        balloon = jnp.where(xp.go_live >= T, owed, fin.balance)
    return (mp, site, sp, pl, xp, equity_rate, share, balloon), tot, ys, ((ft, fy) if fleet else None)


def ext_simulate(plan, draw, n: int, irr_kw: dict[str, Any]) -> tuple[dict[str, jax.Array], tuple]:
    """Every metric of a study with extensions, (S, n) float64 ((S + 1, n) with the portfolio row
    last where the study asks for it), and the band values' monthly rows (the systems' only)."""
    fleet = bool(plan.study.portfolio)
    (mp, site, sp, pl, xp, equity_rate, share, balloon), tot, ys, fl = ext_month_loop(
        plan, draw, n, bands=plan.monthly, fleet=fleet
    )
    debt = None if balloon is None else (share, balloon, ys[1])
    rates = (site.discount_rate, equity_rate)
    out = ext_metrics(sp, xp, pl, tot, rates, mp.price0, plan.months, ys[0], irr_kw, debt)
    if fleet:
        pf = fleet_metrics(out, sp, xp, pl, tot, site.discount_rate, plan.months, fl, irr_kw, debt, plan.fleet_order)
        out = with_fleet(out, pf)
    return out, ys[2:]
