"""Market paths shared by every system of a scenario: token price, electricity, utilization.

Each process is an ``init``/``step`` pair run by ``lax.scan`` over months t = 1..T. Arrays are
shaped (n,) over scenarios; ``t`` is the month number as a float of the path dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Utilization's long-run mean is clipped this far from 0 and 1 before the logit.
UTIL_CLIP = 1e-6


class MarketParams(NamedTuple):
    """Static market inputs of n scenarios, each (n,) in the path dtype."""

    price0: jax.Array  # P0, $/Mtok
    decline: jax.Array  # d, annual decline of the expected price, in [0, 1)
    price_vol: jax.Array  # sp, annual volatility of the log price
    util_mean: jax.Array  # u, long-run mean utilization in [0, 1]
    ramp: jax.Array  # R, months to reach full demand
    persistence: jax.Array  # phi, monthly AR(1) coefficient of logit utilization
    util_vol: jax.Array  # su, monthly shock size on the logit scale
    elec0: jax.Array  # e0, $/kWh
    elec_vol: jax.Array  # se, annual volatility of log electricity price
    reversion: jax.Array  # k, mean reversion per year
    # Extensions (None where the study leaves them out; the traced program is then the base one).
    arrival_first: jax.Array | None = None  # F, month of the first new hardware generation (rounded, >= 1)
    arrival_every: jax.Array | None = None  # E, months between later arrivals (None: a single arrival)
    price_step: jax.Array | None = None  # jp, share the spot token price falls per arrival
    rental_step: jax.Array | None = None  # jh, share rental prices fall per arrival
    rental_vol: jax.Array | None = None  # sh, annual volatility of the rental price (None: no gpu_hours system)


class MarketState(NamedTuple):
    """What a month carries to the next."""

    shock_sum: jax.Array  # running sum of the price shocks
    elec_log: jax.Array  # y_t, log deviation of the electricity price
    util_logit: jax.Array  # x_t, logit utilization
    rental_sum: jax.Array | None = None  # running sum of the rental price shocks


class MarketMonth(NamedTuple):
    """The market in month t, each (n,)."""

    price: jax.Array  # P_t, $/Mtok
    electricity: jax.Array  # e_t, $/kWh
    utilization: jax.Array  # U_t in [0, 1]
    demand: jax.Array | None = None  # D_t, the demand level before the ramp
    rental: jax.Array | None = None  # the market's factor of every rental price: shock and arrivals


class Shocks(NamedTuple):
    """Standard normal monthly shocks of one month, each (n,)."""

    price: jax.Array
    electricity: jax.Array
    utilization: jax.Array
    rental: jax.Array | None = None


def _util_center(p: MarketParams) -> jax.Array:
    u = jnp.clip(p.util_mean, UTIL_CLIP, 1.0 - UTIL_CLIP)
    return jnp.log(u) - jnp.log1p(-u)


def market_init(p: MarketParams) -> MarketState:
    zero = jnp.zeros_like(p.price0)
    return MarketState(
        shock_sum=zero, elec_log=zero, util_logit=_util_center(p), rental_sum=None if p.rental_vol is None else zero
    )


def arrivals(p: MarketParams, t: jax.Array) -> jax.Array:
    """J_t, hardware generations arrived by month t: 0 before F, then 1 + floor((t - F) / E)."""
    after = t >= p.arrival_first
    if p.arrival_every is None:
        return after.astype(t.dtype)
    return jnp.where(after, 1 + jnp.floor((t - p.arrival_first) / p.arrival_every), 0.0)


def market_step(p: MarketParams, state: MarketState, eps: Shocks, t: jax.Array) -> tuple[MarketState, MarketMonth]:
    """Advance one month: state at t-1 and the shocks of month t -> state and market at t."""
    dt = jnp.asarray(1.0 / 12.0, p.price0.dtype)
    sqrt_dt = jnp.sqrt(dt)

    shock_sum = state.shock_sum + eps.price
    # Mean-preserving drift: E[P_t] = P0 (1 - d)^(t/12) whatever the volatility.
    log_drift = t * dt * jnp.log1p(-p.decline) - p.price_vol**2 * t * dt / 2
    price = p.price0 * jnp.exp(log_drift + p.price_vol * sqrt_dt * shock_sum)

    elec_log = state.elec_log * (1 - p.reversion * dt) + p.elec_vol * sqrt_dt * eps.electricity
    electricity = p.elec0 * jnp.exp(elec_log)

    m = _util_center(p)
    util_logit = m + p.persistence * (state.util_logit - m) + p.util_vol * eps.utilization
    ramp = jnp.where(p.ramp > 0, jnp.minimum(1.0, t / jnp.where(p.ramp > 0, p.ramp, 1.0)), 1.0)
    # With no shock the mean is used exactly (also u = 0 or 1, which the logit cannot carry).
    level = jnp.where(p.util_vol == 0, p.util_mean, jax.nn.sigmoid(util_logit))
    utilization = (ramp * level).astype(p.price0.dtype)

    state = MarketState(shock_sum, elec_log, util_logit, state.rental_sum)
    if p.arrival_first is None and p.rental_vol is None:
        return state, MarketMonth(price, electricity, utilization, level.astype(p.price0.dtype))
    return _extend(p, state, eps, t, MarketMonth(price, electricity, utilization, level.astype(p.price0.dtype)))


def _extend(
    p: MarketParams, state: MarketState, eps: Shocks, t: jax.Array, mkt: MarketMonth
) -> tuple[MarketState, MarketMonth]:
    """The extensions' market: generations cut the spot token price by (1 - jp)^J_t; the rental
    factor exp(-sh^2 t / 24 + sh sqrt(1/12) sum eps^h) (1 - jh)^J_t, shared by every rental price."""
    dt = jnp.asarray(1.0 / 12.0, p.price0.dtype)
    J = None if p.arrival_first is None else arrivals(p, t)
    price = mkt.price if J is None else mkt.price * jnp.exp(J * jnp.log1p(-p.price_step))
    rental = None
    if p.rental_vol is not None:
        rental_sum = state.rental_sum + eps.rental
        state = state._replace(rental_sum=rental_sum)
        log_r = -(p.rental_vol**2) * t * dt / 2 + p.rental_vol * jnp.sqrt(dt) * rental_sum
        if J is not None:
            log_r = log_r + J * jnp.log1p(-p.rental_step)
        rental = jnp.exp(log_r)
    return state, mkt._replace(price=price, rental=rental)
