"""NPV and the IRR of the independent float64 reference model (``mcrisk.reference``).

The IRR follows the contract's root rule (MODEL.md): the largest annual rate in
[IRR_MIN, IRR_MAX] at which NPV changes sign, found by a scan of a log-spaced rate grid
and refined by Brent's method (or safeguarded Newton); +inf when NPV stays positive at
IRR_MAX, -inf when it never reaches 0, NaN for a NaN cash flow. Written from the contract
alone, independently of the engine's solver.

An outlay may fall in any month ``p`` in ``[0, T - 1]`` (a system bought later than the
study's start, or a fleet with several outlays): ``fold_outlays`` moves each outlay paid
after t = 0 into that month's cash flow, so the same root rule applies to every flow pattern.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

IRR_MIN = -0.99  # lowest annual rate searched
IRR_MAX = 100.0  # highest annual rate searched


def _prepare_cash(capex, cash_flows, residual):
    cf = np.asarray(cash_flows, dtype=np.float64)
    if cf.ndim == 1:
        cf = cf[None, :]
    if cf.ndim != 2:
        raise ValueError(f"cash_flows: expected shape (n, T), got {cf.shape}")
    n = cf.shape[0]
    I = np.array(np.broadcast_to(np.asarray(capex, dtype=np.float64), (n,)))
    V = np.array(np.broadcast_to(np.asarray(residual, dtype=np.float64), (n,)))
    return I, cf, V


def _outlay_months(outlay_month, n: int, T: int) -> np.ndarray:
    p = np.array(np.broadcast_to(np.asarray(outlay_month, dtype=np.float64), (n,)))
    if not np.all((p == np.floor(p)) & (p >= 0) & (p <= T - 1)):
        raise ValueError(f"outlay_month: expected integers in [0, {T - 1}], got {outlay_month!r}")
    return p


def fold_outlays(cash_flows: ArrayLike, outlays) -> tuple[np.ndarray, np.ndarray]:
    """Outlays paid at given months as one outlay at t = 0 plus modified monthly flows.

    ``outlays``: pairs ``(amount, month)``, each ``(n,)`` or scalar, month an integer in
    ``[0, T - 1]``. Returns ``(capex, cf)``: the sum of the amounts paid at t = 0, (n,), and
    ``cash_flows`` (n, T) less each amount paid at ``p >= 1`` in column ``p - 1``. Without a
    later outlay ``cf`` holds the given flows unchanged.
    """
    cf = np.asarray(cash_flows, dtype=np.float64)
    if cf.ndim == 1:
        cf = cf[None, :]
    n, T = cf.shape
    capex = np.zeros(n)
    cf = cf.copy()
    rows = np.arange(n)
    for amount, month in outlays:
        I = np.broadcast_to(np.asarray(amount, dtype=np.float64), (n,))
        p = _outlay_months(month, n, T)
        capex = np.where(p == 0.0, capex + I, capex)
        later = np.flatnonzero(p > 0.0)
        np.subtract.at(cf, (rows[later], p[later].astype(np.int64) - 1), I[later])
    return capex, cf


def npv_reference(
    capex: ArrayLike, cash_flows: ArrayLike, residual: ArrayLike, annual_rate: ArrayLike, *, outlay_month: ArrayLike = 0
) -> np.ndarray:
    """``-I (1 + r_m)^-p + sum_t CF_t (1 + r_m)^-t + V (1 + r_m)^-T`` with ``r_m = (1 + a)^(1/12) - 1``.

    ``capex`` is paid at ``outlay_month`` p (integer in [0, T - 1], scalar or (n,)); $ (n,).
    """
    I, cf, V = _prepare_cash(capex, cash_flows, residual)
    n, T = cf.shape
    a = np.array(np.broadcast_to(np.asarray(annual_rate, dtype=np.float64), (n,)))
    r_m = (1.0 + a) ** (1.0 / 12.0) - 1.0
    p = _outlay_months(outlay_month, n, T)
    return _npv_monthly(I * (1.0 + r_m) ** (-p), cf, V, r_m)  # (1 + r_m)^-0 is exactly 1


def _npv_monthly(I, cf, V, r_m):
    T = cf.shape[1]
    t = np.arange(1, T + 1, dtype=np.float64)
    df = (1.0 + r_m)[:, None] ** (-t)
    return -I + (cf * df).sum(axis=1) + V * df[:, -1]


def _npv_and_slope_monthly(I, cf, V, r_m):
    T = cf.shape[1]
    t = np.arange(1, T + 1, dtype=np.float64)
    df = np.exp(-t * np.log1p(r_m)[:, None])  # (1 + r_m)^-t
    f = -I + (cf * df).sum(axis=1) + V * df[:, -1]
    slope = -((t * cf * df).sum(axis=1) + T * V * df[:, -1]) / (1.0 + r_m)
    return f, slope


def _annual_grid(points: int) -> np.ndarray:
    """Annual rates from IRR_MIN to IRR_MAX, evenly spaced in log(1 + a), endpoints exact."""
    if points < 2:
        raise ValueError("an IRR grid needs at least 2 points")
    g = np.linspace(np.log(1.0 + IRR_MIN), np.log(1.0 + IRR_MAX), points)
    a = np.expm1(g)
    a[0], a[-1] = IRR_MIN, IRR_MAX
    return a


def _sign_changes(I, cf, V):
    """Sign changes of the coefficients (-I, CF_1, ..., CF_{T-1}, CF_T + V), zeros skipped.

    NPV is a polynomial in x = (1 + r_m)^-1 > 0 with these coefficients, so by
    Descartes' rule of signs a row with at most one change has at most one root
    over the whole rate range.
    """
    n, T = cf.shape
    last = np.sign(-I)
    changes = np.zeros(n, dtype=np.int64)
    for j in range(T):
        c = cf[:, j] + V if j == T - 1 else cf[:, j]
        s = np.sign(c)
        flip = (s != 0) & (last != 0) & (s != last)
        changes += flip
        last = np.where(s != 0, s, last)
    return changes


def _scan(I, cf, V, a_grid, chunk):
    """Grid scan from a = 100 down to -0.99.

    Returns per row: the settled result (+inf, -inf, a grid rate where NPV is
    exactly 0, or NaN) or NaN with ``need`` set, and for ``need`` rows the
    monthly-rate bracket [lo, hi] with NPV(lo) > 0 > NPV(hi) and those NPVs.
    """
    n, T = cf.shape
    K = len(a_grid)
    t = np.arange(1, T + 1, dtype=np.float64)
    rm_grid = (1.0 + a_grid) ** (1.0 / 12.0) - 1.0
    D = (1.0 + rm_grid)[:, None] ** (-t)  # (K, T) discount factors
    # NPV on the grid as one product: [CF_1..CF_T, V, I] . [DF_1..DF_T, DF_T, -1]
    B = np.concatenate([D, D[:, -1:], -np.ones((K, 1))], axis=1)  # (K, T + 2)
    res = np.full(n, np.nan)
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    f_lo = np.full(n, np.nan)
    f_hi = np.full(n, np.nan)
    need = np.zeros(n, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for s in range(0, n, chunk):
            sl = slice(s, min(s + chunk, n))
            Ic, cfc, Vc = I[sl], cf[sl], V[sl]
            m = len(Ic)
            rows = np.arange(m)
            F = np.concatenate([cfc, Vc[:, None], Ic[:, None]], axis=1) @ B.T  # (m, K), ascending rates
            # The two ends exactly as the contract writes them (plain row sums).
            F[:, 0] = _npv_monthly(Ic, cfc, Vc, np.full(m, rm_grid[0]))
            F[:, -1] = _npv_monthly(Ic, cfc, Vc, np.full(m, rm_grid[-1]))

            top = F[:, -1]
            out = np.full(m, np.nan)
            out[top > 0] = np.inf
            out[top == 0] = IRR_MAX

            # Highest grid rate (first going down from 100) where NPV >= 0.
            nonneg = F >= 0
            k = K - 1 - np.argmax(nonneg[:, ::-1], axis=1)
            hit = nonneg[rows, k]
            f_k = F[rows, k]
            scan = top < 0
            if not np.isfinite(np.concatenate([Ic, Vc])).all() or not np.isfinite(cfc).all():
                isnan = np.isnan(F)
                above = np.arange(K)[None, :] > np.where(hit, k, -1)[:, None]
                scan &= ~(isnan & above).any(axis=1)  # undecidable: stays NaN
            out[scan & ~hit] = -np.inf
            exact = scan & hit & (f_k == 0)
            out[exact] = a_grid[k[exact]]
            cell = np.flatnonzero(scan & hit & (f_k > 0))
            lo[s + cell] = rm_grid[k[cell]]
            hi[s + cell] = rm_grid[k[cell] + 1]
            f_lo[s + cell] = f_k[cell]
            f_hi[s + cell] = F[cell, k[cell] + 1]
            need[s + cell] = True
            res[sl] = out
    return res, need, lo, hi, f_lo, f_hi


def _refine_brentq(I, cf, V, lo, hi, f_lo, f_hi):
    """Root of NPV in the monthly rate on [lo, hi]: one scipy ``brentq`` call per row."""
    T = cf.shape[1]
    t = np.arange(1, T + 1, dtype=np.float64)
    out = np.empty(len(I))
    for i in range(len(I)):
        c, cap, res = cf[i], I[i], V[i]

        def f(r, c=c, cap=cap, res=res):
            df = (1.0 + r) ** (-t)
            return -cap + np.dot(c, df) + res * df[-1]

        out[i] = optimize.brentq(f, lo[i], hi[i], xtol=1e-15, rtol=4.0 * np.finfo(float).eps, maxiter=500)
    return out


def _refine_newton(I, cf, V, lo, hi, f_lo, f_hi, max_iter: int = 200):
    """Root of NPV in the monthly rate on [lo, hi]: vectorised safeguarded Newton.

    Starts at the secant point of the bracket. The bracket keeps
    NPV(lo) > 0 > NPV(hi); a Newton step that leaves it (or is not finite) is
    replaced by the bracket's midpoint, so every row converges.
    """
    lo, hi = lo.copy(), hi.copy()
    x = lo + (hi - lo) * f_lo / (f_lo - f_hi)
    x = np.where((x > lo) & (x < hi), x, 0.5 * (lo + hi))
    tiny = 2.0 * np.finfo(float).eps
    active = np.ones(len(I), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(max_iter):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            xa = x[idx]
            f, fp = _npv_and_slope_monthly(I[idx], cf[idx], V[idx], xa)
            lo[idx] = np.where(f > 0, xa, lo[idx])
            hi[idx] = np.where(f < 0, xa, hi[idx])
            step = xa - f / fp
            ok = np.isfinite(step) & (step > lo[idx]) & (step < hi[idx])
            new = np.where(ok, step, 0.5 * (lo[idx] + hi[idx]))
            scale = np.maximum(1.0, np.abs(xa))
            done = (f == 0) | (np.abs(new - xa) <= tiny * scale) | (hi[idx] - lo[idx] <= tiny * scale)
            x[idx] = np.where(f == 0, xa, new)
            active[idx[done]] = False
    return x


def irr_reference(
    capex: ArrayLike,
    cash_flows: ArrayLike,
    residual: ArrayLike,
    *,
    outlay_month: ArrayLike = 0,
    method: str = "auto",
    grid_points: int = 1025,
    coarse_points: int = 129,
    chunk: int = 4096,
) -> np.ndarray:
    """Annual IRR of ``n`` projects: pay ``capex`` at ``outlay_month`` p (default t = 0),
    receive ``cash_flows[:, t-1]`` at the end of month t and ``residual`` at t = T.

    NPV(a) = -I (1+r_m)^-p + sum_t CF_t (1+r_m)^-t + V (1+r_m)^-T with r_m = (1+a)^(1/12) - 1.
    An outlay at p >= 1 is folded into CF_p (``fold_outlays``); with p = 0 the flows are used
    as given.
    Per row the result is the largest a in [-0.99, 100] with NPV(a) = 0;
    ``+inf`` where NPV(100) > 0; ``-inf`` where NPV < 0 over the whole range;
    NaN where that cannot be decided (NaN cash flows).

    Method. NPV is a polynomial in x = (1+r_m)^-1 with coefficients
    (-I, CF_1, ..., CF_T + V). Rows whose coefficients change sign at most once
    have at most one root (Descartes), found by scanning a coarse grid of
    ``coarse_points`` annual rates; other rows scan a fine grid of
    ``grid_points`` rates. Grids are evenly spaced in log(1 + a) and scanned
    from a = 100 downward to the first rate with NPV >= 0; the root inside
    that cell is refined in the monthly rate by scipy ``brentq`` per row
    (``method="brentq"``) or a vectorised safeguarded Newton
    (``method="newton"``); ``"auto"`` uses brentq for up to 1000 rows to
    refine and Newton beyond. Both converge to float64 precision. For rows
    with several sign changes, two roots closer than one fine cell (about
    0.9% in 1 + a) can be missed.
    """
    if method not in ("auto", "brentq", "newton"):
        raise ValueError(f"method must be 'auto', 'brentq' or 'newton', got {method!r}")
    I, cf, V = _prepare_cash(capex, cash_flows, residual)
    if np.any(np.asarray(outlay_month) != 0):
        I, cf = fold_outlays(cf, [(I, outlay_month)])
    n = cf.shape[0]
    finite = np.isfinite(I) & np.isfinite(V) & np.isfinite(cf).all(axis=1)
    simple = finite & (_sign_changes(I, cf, V) <= 1)

    out = np.full(n, np.nan)
    need = np.zeros(n, dtype=bool)
    lo, hi, f_lo, f_hi = (np.full(n, np.nan) for _ in range(4))
    for rows, points in ((np.flatnonzero(simple), coarse_points), (np.flatnonzero(~simple), grid_points)):
        if rows.size:
            parts = _scan(I[rows], cf[rows], V[rows], _annual_grid(points), chunk)
            for dst, src in zip((out, need, lo, hi, f_lo, f_hi), parts):
                dst[rows] = src

    idx = np.flatnonzero(need)
    if idx.size:
        use_brentq = method == "brentq" or (method == "auto" and idx.size <= 1000)
        refine = _refine_brentq if use_brentq else _refine_newton
        r = refine(I[idx], cf[idx], V[idx], lo[idx], hi[idx], f_lo[idx], f_hi[idx])
        out[idx] = (1.0 + r) ** 12 - 1.0
    return out
