"""The simulate stage as one fused GPU kernel (Pallas, Triton backend): ``--month-kernel fused``.

On a GPU the ``lax.scan`` month loop is bound by memory traffic: each step runs kernels that
read and write the loop's state (the market state and the float64 running totals) in device
memory, and the IRR and the metrics read the monthly cash flows and totals back: 435 bytes per
scenario-month for the default study, counted in the program compiled for an H100
(``benchmarks/traffic.py``). This kernel gives each block of BLOCK scenarios one program that
keeps the month state, the IRR's 64-point grid and the metrics in registers: device memory sees
the parameters (once), the monthly shocks (read), the cash flows (written, and read back by the
IRR's Newton steps while still in the L2 cache) and the 26 metrics (written), 52 bytes per
scenario-month.

It computes the same functions as the scan (``processes.market_step``, ``economics.month_flows``,
``economics.accumulate``, ``metrics.irr_bracket``, ``metrics.irr_refine`` and ``metrics.compute``, called on one block of
scenarios and one system at a time), so the model has one implementation; float32 results agree
with the scan's to rounding, which ``tests/test_fused.py`` checks in Pallas' interpreter on CPU
(and on a GPU, run by ``benchmarks/gpu.sh``). The scan stays the default and the reference: it
runs everywhere, and it is what ``jax.grad`` differentiates (a Pallas kernel has no automatic
derivative).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import metrics
from .economics import SUM, Plant, SiteParams, SystemParams, accumulate, discount_factor, month_flows, totals_init
from .processes import MarketParams, MarketState, Shocks, market_init, market_step

BLOCK = 128  # scenarios per program
# Threads share the IRR grid (64 x BLOCK float32). With 8 warps (256 threads) for 128 scenarios,
# each scenario's month-loop values sit on two threads (the PTX indexes by tid & 127): half the
# month loop's arithmetic is redundant, but the grid fits in registers. ptxas (H100): 128 x 8
# uses 255 registers a thread, 124 bytes spilled with one grid; 2,504 since the IRR also
# accumulates the grid one point on (for its local maxima, metrics.grid_marks). One scenario a
# thread spilled more with one grid: 128 x 4 3.5 KB, 256 x 8 4.2 KB. Which costs more is for a
# GPU to tell: gpu.sh times 128x8, 128x4, 256x8 and 64x4 (benchmarks/kernels.py --fused).
WARPS = 8


def pack(mp: MarketParams, site: SiteParams, sp: SystemParams, pl: Plant, n: int, dtype) -> jax.Array:
    """Every parameter as one (rows, n) array of the path dtype (fixed values broadcast)."""
    S = jnp.shape(pl.capacity)[0]
    rows = [jnp.broadcast_to(jnp.asarray(x, dtype), (n,))[None] for x in (*mp, *site)]
    rows += [jnp.broadcast_to(jnp.asarray(x, dtype), (S, n)) for x in (*sp, *pl)]
    return jnp.concatenate(rows)


def _unpack(par, S: int):
    """The named parameters of one block from the packed rows, each (B,); systems as lists."""
    k = 0

    def take(count):
        nonlocal k
        out = [par[k + j, :] for j in range(count)]
        k += count
        return out

    mp = MarketParams(*take(len(MarketParams._fields)))
    site = SiteParams(*take(len(SiteParams._fields)))
    sp_rows = [take(S) for _ in SystemParams._fields]
    pl_rows = [take(S) for _ in Plant._fields]
    sps = [SystemParams(*(r[s] for r in sp_rows)) for s in range(S)]
    pls = [Plant(*(r[s] for r in pl_rows)) for s in range(S)]
    return mp, site, sps, pls


def _irr(s: int, S: int, T: int, sp: SystemParams, cum: jax.Array, pw_ref, cf_ref) -> jax.Array:
    """System s's IRR in this block, as metrics.irr computes it: the grid NPVs (and those one grid
    point on, which metrics.irr takes by a shift that Triton has no lowering for) accumulated
    month by month in registers (K x BLOCK each), the bracket found by reductions over the grid,
    then the shared steps (metrics.irr_bracket, metrics.irr_refine), reading back the cash flows
    this program wrote (still in the L2 cache)."""
    K = metrics._IRR_GRID
    cf_at = lambda t: cf_ref[t * S + s, :]  # noqa: E731
    capex = sp.units.astype(SUM) * sp.capex.astype(SUM)  # as metrics.compute has it
    residual = capex * sp.residual.astype(SUM)

    def grid(t, acc):
        cf = cf_at(t)[None, :]
        return acc[0] + pw_ref[t, :K][:, None] * cf, acc[1] + pw_ref[t, K:][:, None] * cf

    zeros = jnp.zeros((K, cum.shape[0]), cf_ref.dtype)
    acc, acc_next = jax.lax.fori_loop(0, T, grid, (zeros, zeros))
    kk = jax.lax.broadcasted_iota(jnp.int32, acc.shape, 0)
    z_of = lambda k: metrics.irr_grid(k.astype(SUM))  # noqa: E731
    k_col = jax.lax.broadcasted_iota(jnp.int32, (K, 1), 0)
    z_T, next_z_T = z_of(k_col) ** jnp.asarray(T, SUM), z_of(k_col + 1) ** jnp.asarray(T, SUM)  # (K, 1)

    def grid_at(k):  # no gathers in a Triton program: z from k, the grid NPV by a masked sum
        z = z_of(k)
        return z, jnp.sum(jnp.where(kk == k[None, :], acc, 0), axis=0), z ** jnp.asarray(T, SUM)

    npv = lambda z: metrics._horner(z, capex, residual, cf_at, T, 1)  # noqa: E731

    def search(a, b, look):  # few blocks have a row to search (0.2% of rows in the default study)
        def one(a, b, look):
            none = lambda: (jnp.zeros_like(look), jnp.full_like(a, jnp.inf), jnp.full_like(a, -jnp.inf))  # noqa: E731
            any_look = jnp.max(look.astype(jnp.int32)) > 0  # (Triton lowers no reduce_or)
            return jax.lax.cond(any_look, lambda: metrics.peak_search(npv, a, b, look), none)

        return [one(*x) for x in zip(a, b, look)]

    marks = metrics.grid_marks(acc, acc_next, capex, residual, z_T, next_z_T)
    bracket = metrics.irr_bracket(*metrics.grid_points(*marks), capex, residual, grid_at, search)
    return metrics.irr_refine(bracket, npv, jnp.isnan(cum), T)


def _kernel(S: int, T: int, shocks_on: tuple[bool, bool, bool], dtype):
    def kernel(par_ref, e0_ref, e1_ref, e2_ref, pw_ref, *out_refs):
        *met_refs, cf_ref = out_refs
        mp, site, sps, pls = _unpack(par_ref, S)
        capex = [(sp.units * sp.capex).astype(SUM) for sp in sps]  # as the scan has it (payback)
        start = jax.tree.map(lambda x: jnp.broadcast_to(x, mp.price0.shape), totals_init((1,)))
        refs = (e0_ref, e1_ref, e2_ref)

        def month(i, carry):
            state, tots = carry
            t = (i + 1).astype(dtype)
            eps = Shocks(*(refs[j][i, :] if on else jnp.zeros_like(mp.price0) for j, on in enumerate(shocks_on)))
            state, mkt = market_step(mp, MarketState(*state), eps, t)
            df = discount_factor(site.discount_rate, t)
            new = []
            for s in range(S):
                f = month_flows(sps[s], pls[s], mkt, t)
                new.append(accumulate(tots[s], f, mkt, df, t, capex[s]))
                cf_ref[i * S + s, :] = f.cash_flow.astype(cf_ref.dtype)
            return tuple(state), new

        _, tots = jax.lax.fori_loop(0, T, month, (tuple(market_init(mp)), [start] * S))
        for s in range(S):
            irr = _irr(s, S, T, sps[s], tots[s].cum_cash_flow, pw_ref, cf_ref)
            out = metrics.compute(sps[s], site, pls[s], tots[s], None, mp.price0, T, irr_values=irr)
            for ref, name in zip(met_refs, metrics.METRICS):
                ref[s, :] = out[name]

    return kernel


def simulate(mp: MarketParams, site: SiteParams, sp: SystemParams, pl: Plant, shocks: Shocks, n: int, months: int,
             dtype, *, mesh=None, interpret: bool = False) -> dict[str, jax.Array]:
    """Every metric of n scenarios, each (S, n) float64, as the scan and metrics.compute give
    them, by one kernel per block of BLOCK scenarios. `shocks`: (T, n) arrays or None.
    `mesh`: the devices the scenarios are split over (one kernel per device, on its own
    scenarios; n / devices must be a multiple of BLOCK). `interpret`: run in Pallas'
    interpreter (any backend; for tests)."""
    S = jnp.shape(pl.capacity)[0]
    devices = 1 if mesh is None else mesh.devices.size
    if (n // devices) % BLOCK or n % devices:
        raise ValueError(f"the fused month loop needs a multiple of {BLOCK} scenarios per device, got {n} on {devices}")
    par = pack(mp, site, sp, pl, n, dtype)
    on = tuple(s is not None for s in shocks)
    eps = [s if s is not None else jnp.zeros((1, n), dtype) for s in shocks]
    powers = metrics.irr_powers(months)[1]  # (T, K), as metrics.irr's grid product uses them
    # ... and at grid point k + 1 (the last column unused), side by side: (T, 2K)
    powers = jnp.concatenate([powers, powers[:, 1:], powers[:, -1:]], axis=1).astype(dtype)
    call = lambda par, pw, *eps: _call(par, pw, eps, S, months, on, dtype, interpret)  # noqa: E731
    if mesh is not None:
        from jax.sharding import PartitionSpec as P

        cols = P(None, "scenarios")
        call = jax.shard_map(call, mesh=mesh, in_specs=(cols, P(), cols, cols, cols),
                             out_specs=(cols,) * (len(metrics.METRICS) + 1), check_vma=False)
    *met, _ = call(par, powers, *eps)
    return dict(zip(metrics.METRICS, met))


def _call(par, powers, eps, S: int, months: int, on: tuple[bool, ...], dtype, interpret: bool):
    from jax.experimental import pallas as pl_
    from jax.experimental.pallas import triton as pltriton

    n = par.shape[1]
    row = lambda r: pl_.BlockSpec((r, BLOCK), lambda i: (0, i))  # noqa: E731
    shock_spec = [row(e.shape[0]) for e in eps]
    return pl_.pallas_call(
        _kernel(S, months, on, dtype),
        grid=(n // BLOCK,),
        in_specs=[row(par.shape[0]), *shock_spec, pl_.BlockSpec(powers.shape, lambda i: (0, 0))],
        out_specs=[row(S)] * len(metrics.METRICS) + [row(months * S)],
        out_shape=[jax.ShapeDtypeStruct((S, n), SUM)] * len(metrics.METRICS)  # each metric, by system
        + [jax.ShapeDtypeStruct((months * S, n), dtype)],  # the cash flows: the IRR's working memory
        interpret=interpret,
        compiler_params=None if interpret else pltriton.CompilerParams(num_warps=WARPS, num_stages=1),
        name="mcrisk_month_loop",
    )(par, *eps, powers)
