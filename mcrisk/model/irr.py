"""The annual IRR of each scenario's monthly cash flows: the largest root of NPV, in pure JAX.

NPV is evaluated on a grid of monthly discount factors, the largest-rate sign change is
bracketed (or a pair of roots between two grid points found by a peak search), and the root is
refined by safeguarded Newton steps in float64. See :func:`irr`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mcrisk.model.cashflows import SUM

# IRR search range (annual): -99% to +10,000% a year.
IRR_LOW, IRR_HIGH = -0.99, 100.0
_IRR_GRID = 64
_IRR_PEAKS = 2  # local maxima of the grid NPV searched for a pair of roots between two grid points
_IRR_PEAK_STEPS = 12  # golden-section steps per search (the cell shrinks to 0.3% of its width)
_GOLDEN = 0.6180339887498949
SEARCH_BATCH = 256  # the peak search gathers 1/SEARCH_BATCH of the rows at a time (see _search_rows)
SEARCH_UNROLL = 8  # Horner's months per pass in the peak search when the Newton steps use Estrin (see irr)


def irr_newton_steps(months: int) -> int:
    """Newton steps of the IRR's refinement: 5 up to 48 months, one more for each further 48 (the
    NPV polynomial's degree is the horizon; at 240 months 5 steps left 1,067 of 6,000 of the
    default study's IRRs off by more than 1e-8 in log(1 + a), 9 leave none)."""
    return 5 + max(0, -(-(months - 48) // 48))


def _horner(
    z: jax.Array, capex: jax.Array, residual: jax.Array, cf_at, T: int, unroll: int
) -> tuple[jax.Array, jax.Array]:
    """NPV and dNPV/dz at z by Horner's rule; `cf_at(t)` is CF_{t+1} (0-based month t)."""

    def body(k, acc):
        p, dp = acc
        cf = cf_at(T - 1 - k).astype(z.dtype)
        # One Horner step: p <- p z + CF_t, dp <- dp z + p (highest month first).
        return p * z + cf, dp * z + p

    # The residual is received with the last month's flow.
    zero = jnp.zeros_like(z)
    p0 = cf_at(T - 1).astype(z.dtype) + residual
    p, dp = jax.lax.fori_loop(1, T, body, (p0, zero), unroll=max(1, min(unroll, T - 1)))
    # p = sum_t CF_t z^(t-1); NPV = z p - I; dNPV/dz = p + z dp
    return z * p - capex, p + z * dp


def _estrin(z: jax.Array, capex: jax.Array, residual: jax.Array, cf_at, T: int) -> tuple[jax.Array, jax.Array]:
    """NPV and dNPV/dz at z by Estrin's scheme: the same polynomial as :func:`_horner`, summed as a
    tree. Neighbouring months pair up as a + z b, pairs of pairs as A + z^2 B, and so on (log2 T
    levels, each with its power of z and the power's derivative), so that every month is read in
    one pass of independent operations rather than a chain of T dependent steps."""
    # (value, derivative) of each sub-polynomial; the months' own terms have no derivative (None).
    terms: list[tuple[jax.Array, jax.Array | None]] = [(cf_at(t).astype(z.dtype), None) for t in range(T)]
    terms[-1] = (terms[-1][0] + residual, None)  # the residual is received with the last month's flow
    w, dw = z, None  # w = z^(2^level) and its derivative (None: 1)
    while len(terms) > 1:
        pairs = []
        for (a, da), (b, db) in zip(terms[0::2], terms[1::2]):
            # d/dz (a + w b) = da + w db + dw b
            d = b if dw is None else dw * b
            d = d if db is None else d + w * db
            pairs.append((a + w * b, d if da is None else da + d))
        terms = pairs + terms[len(pairs) * 2 :]
        w, dw = w * w, 2 * w if dw is None else 2 * w * dw
    p, dp = terms[0]
    dp = jnp.zeros_like(z) if dp is None else dp
    # p = sum_t CF_t z^(t-1); NPV = z p - I; dNPV/dz = p + z dp
    return z * p - capex, p + z * dp


def npv_at(
    z: jax.Array, capex: jax.Array, cash_flows: jax.Array, residual: jax.Array, unroll: int | None = 4
) -> tuple[jax.Array, jax.Array]:
    """NPV and dNPV/dz at monthly discount factor z = 1/(1 + r_m).

    z, capex, residual: (...,); cash_flows: (T, ...). NPV(z) = -I + sum_t CF_t z^t + V z^T.
    `unroll`: by Horner's rule, `unroll` months fused per pass over the running (p, dp); None:
    every month in one pass, by Estrin's scheme (:func:`_estrin`; see :func:`irr`).
    """
    cf_at, T = (lambda t: cash_flows[t]), cash_flows.shape[0]
    if unroll is None:
        return _estrin(z, capex, residual, cf_at, T)
    return _horner(z, capex, residual, cf_at, T, unroll)


def irr_grid(k: jax.Array) -> jax.Array:
    """Monthly discount factor z of IRR grid point k (float64, 0 .. K-1): K points evenly spaced
    in log z, ascending in z, from an annual rate of IRR_HIGH (k = 0) to IRR_LOW (k = K - 1)."""
    lo, hi = -jnp.log1p(jnp.float64(IRR_HIGH)) / 12, -jnp.log1p(jnp.float64(IRR_LOW)) / 12
    return jnp.exp(lo + k * ((hi - lo) / (_IRR_GRID - 1)))


def irr_powers(months: int) -> tuple[jax.Array, jax.Array]:
    """The grid's z (K,) and powers z^t (T, K), float64."""
    z_grid = irr_grid(jnp.arange(_IRR_GRID, dtype=SUM))
    t = jnp.arange(1, months + 1, dtype=SUM)
    return z_grid, z_grid[None, :] ** t[:, None]


def grid_marks(
    flows_pv: jax.Array, next_pv: jax.Array, capex: jax.Array, residual: jax.Array, z_T: jax.Array, next_z_T: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Where NPV >= 0 on the IRR's grid, and where it stops rising (NPV(k + 1) <= NPV(k); the grid's
    last point always, as if NPV beyond it were -inf): two (K, ...) bool arrays.

    flows_pv: (K, ...) sum_t CF_t z_k^t in the path dtype; next_pv: the same at grid point k + 1
    (any value at k = K - 1); z_T, next_z_T: z_k^T and z_(k+1)^T (float64), broadcast against it.
    """
    K = flows_pv.shape[0]
    # NPV >= 0 without materializing a float64 (K, ...) array; the capex cancels from the falls.
    nonneg = flows_pv >= (capex - residual * z_T).astype(flows_pv.dtype)
    falls = next_pv.astype(SUM) + residual * next_z_T <= flows_pv.astype(SUM) + residual * z_T
    return nonneg, falls | (jax.lax.broadcasted_iota(jnp.int32, falls.shape, 0) == K - 1)


def grid_points(
    nonneg: jax.Array, falls: jax.Array, rows_per_pass: int | None = None
) -> tuple[jax.Array, list[jax.Array]]:
    """The first grid point with NPV >= 0 and the first :data:`_IRR_PEAKS` local maxima of the grid
    NPV (a fall that follows a rise), each K where there is none.

    Read from one 64-bit mask per row and per mark: one pass over the (K, ...) grid, where a
    min-reduction over k per point made one pass each (counted for an H100: 490 against 521 bytes
    per scenario-month for the whole simulate stage; an argmax took twice as long on a CPU).

    `rows_per_pass`: None makes each mask one reduction over k, what accelerators run. An int
    ORs the grid's rows into the mask in a loop, that many rows per pass, what CPUs run: there
    XLA wrote the reduction's (K, ...) uint64 terms out before summing them, and the IRR of a
    16,384-scenario chunk took 65 ms, 25 ms with the loop (8 rows per pass). Compiled for an
    H100 the loop moved 10% more bytes (565 against 514 per scenario-month for the simulate
    stage) in 318 kernels instead of 173. The masks are the same integers either way."""
    K = nonneg.shape[0]
    assert K <= 64, K
    bit = (jnp.uint64(1) << jnp.arange(K, dtype=jnp.uint64)).reshape((K,) + (1,) * (nonneg.ndim - 1))

    def mask(m):
        if rows_per_pass is None:
            return jnp.sum(jnp.where(m, bit, jnp.uint64(0)), axis=0)  # (distinct bits: sum = or)

        def row(k, bits):
            return bits | jnp.where(jax.lax.dynamic_index_in_dim(m, k, keepdims=False), bit[k], jnp.uint64(0))

        return jax.lax.fori_loop(0, K, row, jnp.zeros(m.shape[1:], jnp.uint64), unroll=rows_per_pass)

    rises = jnp.uint64((1 << K) - 1 if K < 64 else 2**64 - 1)

    def lowest(bits, k):  # the lowest set bit at or above k (int32 arrays), K where none
        bits = jnp.where(k < K, bits & (rises << jnp.minimum(k, K - 1).astype(jnp.uint64)), jnp.uint64(0))
        low = bits & (~bits + jnp.uint64(1))
        return jnp.where(bits == 0, K, 63 - jax.lax.clz(low).astype(jnp.int32))

    fall_bits = mask(falls)
    first = lowest(mask(nonneg), jnp.zeros(nonneg.shape[1:], jnp.int32))
    peaks, start = [], jnp.zeros_like(first)
    for _ in range(_IRR_PEAKS):
        peaks.append(lowest(fall_bits, start))
        start = lowest(~fall_bits & rises, peaks[-1] + 1)
    return first, peaks


def irr_bracket(
    first: jax.Array, peaks: list[jax.Array], capex: jax.Array, residual: jax.Array, grid_at, search
) -> tuple:
    """The bracket `irr_refine` starts from.

    first, peaks: :func:`grid_points`; grid_at(k) -> (z_k, flows_pv[k], z_k^T) at grid points k,
    an int array shaped like capex; search(a, b, look), lists with one array per peak -> a list
    of (hit, z, NPV): the :func:`peak_search` of NPV over each [a, b] where `look`.

    The largest rate with NPV >= 0 is the first grid point (in ascending z) where NPV >= 0, unless
    NPV rises to 0 and falls back between two grid points before it: a pair of roots the grid
    does not see. So the first :data:`_IRR_PEAKS` local maxima of the grid NPV before that point
    are searched (golden section, in float64) where their grid value is within one drop to a
    neighbour of 0; a point with NPV >= 0 found there makes the bracket.
    """
    K = _IRR_GRID
    any_nonneg = first < K
    before = first  # the grid points left of the bracket: k < before
    first = jnp.where(any_nonneg, first, 0)
    k_hi = jnp.maximum(first, 1)

    def at(k):  # z and NPV (float64) at grid points k
        z, pv, zT = grid_at(k)
        return z, pv.astype(SUM) + residual * zT - capex

    (z_lo, f_lo), (z_hi, f_hi), (_, f_top) = at(k_hi - 1), at(k_hi), at(jnp.zeros_like(first))
    ends, looks = [], []
    for peak in peaks:
        left, right = jnp.maximum(peak - 1, 0), jnp.minimum(peak + 1, K - 1)
        (z_a, f_a), (_, f_p), (z_b, f_b) = at(left), at(jnp.minimum(peak, K - 1)), at(right)
        near = jnp.minimum(jnp.where(peak > 0, f_a, jnp.inf), jnp.where(peak < K - 1, f_b, jnp.inf))
        # A parabola through three grid points rises at most a quarter of its smaller drop above
        # the middle one: a margin of 4x that.
        looks.append((peak < before) & (f_p + (f_p - near) >= 0))
        ends.append((peak, z_a, f_a, z_b))
    # Every peak searched at once (a later one is wasted where an earlier one hits: few rows look).
    hits = search([e[1] for e in ends], [e[3] for e in ends], looks)
    found = jnp.zeros(first.shape, bool)
    for (peak, z_a, f_a, _), look, (hit, z_x, f_x) in zip(ends, looks, hits):
        new = look & hit & ~found
        # NPV < 0 at the left end (a grid point before the bracket), >= 0 at the point found.
        z_lo, f_lo = jnp.where(new, z_a, z_lo), jnp.where(new, f_a, f_lo)
        z_hi, f_hi = jnp.where(new, z_x, z_hi), jnp.where(new, f_x, f_hi)
        first = jnp.where(new, jnp.maximum(peak, 1), first)
        any_nonneg = any_nonneg | new
        found = found | new
    return first, any_nonneg, z_lo, z_hi, f_lo, f_hi, f_top


def peak_search(npv, a: jax.Array, b: jax.Array, look: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Golden-section search for the maximum of NPV over [a, b] (z), where `look`: whether a point
    with NPV >= 0 was met, the smallest such z and NPV there (inf / -inf where none)."""
    a, b = jnp.where(look, a, 1.0), jnp.where(look, b, 1.0)  # no work where not looking (NaN-free)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = npv(c)[0], npv(d)[0]
    best_z = jnp.minimum(jnp.where(fc >= 0, c, jnp.inf), jnp.where(fd >= 0, d, jnp.inf))
    best_f = jnp.where(fc >= 0, fc, jnp.where(fd >= 0, fd, -jnp.inf))

    def step(_, state):
        a, b, c, d, fc, fd, best_z, best_f = state
        left = fc >= fd  # the maximum lies in [a, d]: keep c as the new d
        a, b = jnp.where(left, a, c), jnp.where(left, d, b)
        x = jnp.where(left, b - _GOLDEN * (b - a), a + _GOLDEN * (b - a))
        fx = npv(x)[0]
        c, d, fc, fd = (jnp.where(left, x, d), jnp.where(left, c, x), jnp.where(left, fx, fd), jnp.where(left, fc, fx))
        take = (fx >= 0) & (x < best_z)
        return a, b, c, d, fc, fd, jnp.where(take, x, best_z), jnp.where(take, fx, best_f)

    state = jax.lax.fori_loop(0, _IRR_PEAK_STEPS, step, (a, b, c, d, fc, fd, best_z, best_f))
    best_z, best_f = state[-2], state[-1]
    return look & jnp.isfinite(best_z), best_z, best_f


def irr_refine(bracket: tuple, npv, nan: jax.Array, months: int) -> jax.Array:
    """From the grid's bracket to the annual IRR: a secant start and safeguarded Newton steps.

    bracket: (first, any_nonneg, z_lo, z_hi, f_lo, f_hi, f_top): the first grid point with NPV
    >= 0 (0 if none), whether there is one, the bracket's ends and NPV there, and NPV at the top
    rate. `npv(z)` returns (NPV, dNPV/dz) in float64; `nan` marks scenarios whose flows hold a NaN.
    """
    first, any_nonneg, z_lo, z_hi, f_lo, f_hi, f_top = bracket
    # Start from the secant between the bracket ends, then Newton steps kept inside the bracket.
    z = z_lo - f_lo * (z_hi - z_lo) / jnp.where(f_hi != f_lo, f_hi - f_lo, 1.0)

    def newton(_, state):
        z, lo, hi = state
        f, df = npv(z)
        lo = jnp.where(f < 0, z, lo)
        hi = jnp.where(f >= 0, z, hi)
        step = z - f / jnp.where(df != 0, df, 1.0)
        # Closed bounds: at a root (f == 0) the step is z itself and must stay there.
        inside = (step >= lo) & (step <= hi) & jnp.isfinite(step)
        return jnp.where(inside, step, 0.5 * (lo + hi)), lo, hi

    z, _, _ = jax.lax.fori_loop(0, irr_newton_steps(months), newton, (z, z_lo, z_hi))
    rate = z ** (-12.0) - 1.0
    rate = jnp.where(first == 0, IRR_HIGH, rate)
    rate = jnp.where(f_top > 0, jnp.inf, jnp.where(any_nonneg, rate, -jnp.inf))
    return jnp.where(nan, jnp.nan, rate)


def _search_rows(capex, cf, residual, unroll: int | None, a: list, b: list, look: list) -> list:
    """:func:`peak_search` of each peak's cell, on the rows that look only: they are few (0.1% of
    the default study's rows at 48 months, 1.6% at 120), and each search evaluates NPV 14 times,
    each a pass over the cash flows. They are gathered 1/:data:`SEARCH_BATCH` of the rows at a
    time (no pass at all where none looks), padded to that many: compiled for an H100, gathering
    1/32 made the default study's simulate stage move 514 bytes per scenario-month, 1/256 498
    (a batch's padding is searched too; a further batch, where more rows look, costs a pass
    over the rows' flags). The search only brackets the root, so no gradient flows through it:
    the Newton steps after it carry the IRR's derivative."""
    R, shape = len(look), look[0].shape
    cols = cf.shape[0], -1
    cf, capex, residual = (jax.lax.stop_gradient(x) for x in (cf.reshape(cols), capex, residual))
    flat = lambda xs: jnp.stack([jnp.broadcast_to(x, shape) for x in xs]).reshape(-1)  # noqa: E731
    a, b, pending = flat(a), flat(b), flat(look)
    m, sn = pending.size, pending.size // R
    cap = min(m, max(128, m // SEARCH_BATCH))
    whole = lambda x: jnp.broadcast_to(x, shape).reshape(-1)  # noqa: E731

    def batch(state):
        pending, hit, z, f = state
        # The first `cap` pending rows, by their ranks among the pending (padding: m, out of range).
        rank = jnp.cumsum(pending, dtype=jnp.int32) - 1
        slot = jnp.where(pending & (rank < cap), rank, cap)
        idx = jnp.full(cap, m, jnp.int32).at[slot].set(jnp.arange(m, dtype=jnp.int32), mode="drop")
        use = idx < m
        idx = jnp.minimum(idx, m - 1)
        col = idx % sn  # the row's column of the cash flows (peak-major stacking)
        # Gathered once (a barrier: XLA would otherwise fuse the gather into each of the search's
        # 14 passes, each then reading the cash flows' scattered columns anew).
        rows = jax.lax.optimization_barrier((whole(capex)[col], cf[:, col], whole(residual)[col]))
        npv = lambda z: npv_at(z, rows[0], rows[1], rows[2], unroll)  # noqa: E731
        h, zx, fx = peak_search(npv, a[idx], b[idx], use)
        idx = jnp.where(use, idx, m)  # padding: out of range, dropped
        put = lambda x, v: x.at[idx].set(v, mode="drop")  # noqa: E731
        return put(pending, False), put(hit, h), put(z, zx), put(f, fx)

    init = (pending, jnp.zeros(m, bool), jnp.full(m, jnp.inf, SUM), jnp.full(m, -jnp.inf, SUM))
    with jax.named_scope("irr_search"):
        _, hit, z, f = jax.lax.while_loop(lambda s: jnp.any(s[0]), batch, init)
    split = lambda x: list(x.reshape((R,) + shape))  # noqa: E731
    return list(zip(split(hit), split(z), split(f)))


def irr(
    capex: jax.Array,
    cash_flows: jax.Array,
    residual: jax.Array,
    *,
    unroll: int | None = 4,
    flows_nan: jax.Array | None = None,
    mask_rows_per_pass: int | None = None,
) -> jax.Array:
    """Annual IRR in [-0.99, 100]: the largest root of NPV; +inf / -inf per the model's rules.

    capex, residual: (S, n) float64; cash_flows: (T, S, n). NPV is evaluated on a grid of
    64 monthly discount factors (one matrix product); the largest-rate sign change is bracketed,
    or a pair of roots between two grid points found by searching the grid's first local maxima
    (:func:`irr_bracket`), and refined by safeguarded Newton steps to float64 precision
    (:func:`irr_newton_steps`).

    `unroll`: how the Newton steps evaluate NPV: by Horner's rule, `unroll` months per pass, or
    None, every month in one pass by Estrin's scheme (:func:`npv_at`); the peak search then
    takes Horner, :data:`SEARCH_UNROLL` months a pass. Horner's arithmetic is the same whatever
    its unroll, and so are its IRRs; Estrin's sums the same terms in another order (IRRs within
    1e-13 of Horner's in log(1 + a)). On a GPU each pass is a kernel that reads the cash flows
    it covers and reads and writes the running float64 (p, dp): with Horner over 8 months a
    pass the default study's simulate stage moved 607 bytes per scenario-month in 471 kernels
    (compiled for an H100), with Estrin in the Newton steps 500 in 377 (and 498 in 173 with
    Estrin in the search too). Horner over every month moves as few bytes, but its chain of T
    dependent steps, copied into the program four times (the Newton step, the search's), compiled
    twice as long on an H200 (5.0 s against 2.4 s over 8 months); Estrin's tree, of as many
    operations, is in the program once, and the search, on a few rows of a chunk, keeps Horner.
    So accelerators take Estrin (:func:`mcrisk.engine.plan.irr_unroll`). On a CPU the IRR of a
    16,384-scenario chunk took 27 ms with Estrin against 8 ms with Horner, so CPUs keep Horner,
    4 months a pass.
    `flows_nan`: (S, n), where a scenario's cash flows hold a NaN, if the caller knows it
    already (the float64 running total of the cash flows is NaN exactly then, or when it
    holds both +inf and -inf); else it is found from `cash_flows`, one more pass over them.
    `mask_rows_per_pass`: how the grid's sign masks are read (:func:`grid_points`).
    """
    T = cash_flows.shape[0]
    cf = cash_flows  # kept in the path dtype; each use casts to float64 inside the fused loop
    z_grid, powers = irr_powers(T)  # ascending z = descending rate
    # The grid only brackets the root and seeds Newton, so it runs in the path dtype (a float32
    # matrix product is 3x faster on CPUs); the Newton steps below evaluate NPV in float64.
    # (The named scopes name each part's kernels in a profile or HLO: benchmarks/traffic.py --parts.)
    with jax.named_scope("irr_grid"):
        flows_pv = jnp.einsum("tk,tsn->ksn", powers.astype(cf.dtype), cf, precision=jax.lax.Precision.HIGHEST)
    z_T = powers[-1]

    # grid point k: its z, its NPV of the flows, and z^T (k an int array shaped like capex)
    grid_at = lambda k: (z_grid[k], jnp.take_along_axis(flows_pv, k[None], 0)[0], z_T[k])  # noqa: E731
    npv = lambda z: npv_at(z, capex, cf, residual, unroll)  # noqa: E731
    shift = lambda x: jnp.concatenate([x[1:], x[-1:]])  # noqa: E731  (grid point k + 1; k = K - 1 unused)
    search = lambda a, b, look: _search_rows(capex, cf, residual, unroll or SEARCH_UNROLL, a, b, look)  # noqa: E731
    with jax.named_scope("irr_grid"):
        marks = grid_marks(flows_pv, shift(flows_pv), capex, residual, z_T[:, None, None], shift(z_T)[:, None, None])
        points = grid_points(*marks, mask_rows_per_pass)
    with jax.named_scope("irr_bracket"):
        bracket = irr_bracket(*points, capex, residual, grid_at, search)
    nan = jnp.isnan(cf).any(axis=0) if flows_nan is None else flows_nan
    with jax.named_scope("irr_newton"):
        return irr_refine(bracket, npv, nan, T)
