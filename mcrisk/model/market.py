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


class MarketState(NamedTuple):
    """What a month carries to the next."""

    shock_sum: jax.Array  # running sum of the price shocks
    elec_log: jax.Array  # y_t, log deviation of the electricity price
    util_logit: jax.Array  # x_t, logit utilization


class MarketMonth(NamedTuple):
    """The market in month t, each (n,)."""

    price: jax.Array  # P_t, $/Mtok
    electricity: jax.Array  # e_t, $/kWh
    utilization: jax.Array  # U_t in [0, 1]


class Shocks(NamedTuple):
    """Standard normal monthly shocks of one month, each (n,)."""

    price: jax.Array
    electricity: jax.Array
    utilization: jax.Array


def _util_center(p: MarketParams) -> jax.Array:
    u = jnp.clip(p.util_mean, UTIL_CLIP, 1.0 - UTIL_CLIP)
    return jnp.log(u) - jnp.log1p(-u)


def market_init(p: MarketParams) -> MarketState:
    zero = jnp.zeros_like(p.price0)
    return MarketState(shock_sum=zero, elec_log=zero, util_logit=_util_center(p))


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

    return MarketState(shock_sum, elec_log, util_logit), MarketMonth(price, electricity, utilization)
