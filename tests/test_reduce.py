"""Streaming reducers (mcrisk.stats.reduce) and the quantile sketch (mcrisk.stats.sketch): exact counts and moments, quantiles.

Every check compares the streamed summary with numpy on the full array:
counts exact, mean/sd to 1e-12, quantiles and tail means within the sketch's
documented relative error alpha (+1e-7 for the float32-log bucket edges).
"""

import jax

jax.config.update("jax_enable_x64", True)

import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mcrisk.stats import reduce as red  # noqa: E402
from mcrisk.stats import sketch as sk  # noqa: E402

SPEC = red.SketchSpec()
K = SPEC.n_buckets
REL = SPEC.rel_accuracy + 1e-7  # documented relative error of a representative
PROBS = [0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99]
N = 20_000
_update = jax.jit(red.update, static_argnums=(3, 4))
_bins = jax.jit(red.bin_index, static_argnums=1)


def datasets(seed: int = 0) -> np.ndarray:
    """(H, N) float64 series: one per row, covering the awkward cases."""
    rng = np.random.default_rng(seed)
    special = rng.standard_normal(N) * 50.0
    special[rng.choice(N, 900, replace=False)] = rng.choice(
        [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-15, -3e-13, 1e30], 900
    )
    mixture = np.where(rng.random(N) < 0.5, -rng.lognormal(2.0, 1.5, N), rng.standard_normal(N) * 10.0)
    mixture[rng.random(N) < 0.2] = 0.0
    tiny = np.where(rng.random(N) < 0.7, rng.uniform(-1e-12, 1e-12, N), rng.lognormal(0.0, 1.0, N))
    return np.stack(
        [
            rng.standard_normal(N) * 1e6,  # normal x 1e6
            rng.lognormal(0.0, 2.0, N),  # lognormal
            mixture,  # negatives, zeros
            special,  # +-inf, NaN, zeros, below min_abs, huge
            tiny,  # mostly inside the zero bucket
            np.full(N, 3.0),  # constant
        ]
    )


def stream(
    x: np.ndarray, chunk: int, seed: int = 1, dtype=np.float64, layout: red.Layout = red.Layout()
) -> red.HostState:
    """Feed x (H, n) in chunks of `chunk` columns, each scattered into a wider block
    whose other columns hold garbage (NaN, inf, huge) and are masked off."""
    rng = np.random.default_rng(seed)
    H, n = x.shape
    width = chunk + 37
    state = red.init_state(H, SPEC, layout.copies)
    for start in range(0, n, chunk):
        part = x[:, start : start + chunk]
        cols = np.sort(rng.choice(width, part.shape[1], replace=False))
        block = rng.choice([np.nan, np.inf, -np.inf, 7e30, 0.0], (H, width))
        block[:, cols] = part
        mask = np.zeros(width, bool)
        mask[cols] = True
        state = _update(state, jnp.asarray(block.astype(dtype)), jnp.asarray(mask), SPEC, layout.interleave)
    return red.to_host(state)


def assert_moments_match(host: red.HostState, x: np.ndarray) -> None:
    m = host.moments
    for h, row in enumerate(x):
        fin = row[np.isfinite(row)]
        assert m.count[h] == np.count_nonzero(~np.isnan(row))
        assert m.nan[h] == np.count_nonzero(np.isnan(row))
        assert m.posinf[h] == np.count_nonzero(row == np.inf)
        assert m.neginf[h] == np.count_nonzero(row == -np.inf)
        assert m.n_finite[h] == fin.size
        assert m.min[h] == np.nanmin(row) and m.max[h] == np.nanmax(row)
        sd = fin.std(ddof=1)
        # a mean near zero is only accurate relative to the spread of the data
        assert abs(m.mean[h] - fin.mean()) <= 1e-12 * (abs(fin.mean()) + sd)
        assert red.sd(host)[h] == pytest.approx(sd, rel=1e-12)


def assert_close_rel(got: float, want: float, what: str) -> None:
    """Within the sketch's error: exact for +-inf, min_abs inside the zero bucket, REL in
    range; beyond max_abs the outermost finite bucket's representative."""
    if np.isinf(want):
        assert got == want, what
    elif abs(want) > SPEC.max_abs:
        assert got == np.sign(want) * sk._representatives(SPEC)[-2], what
    elif abs(want) <= SPEC.min_abs:
        assert abs(got - want) <= SPEC.min_abs, what
    else:
        assert abs(got - want) <= REL * abs(want) * (1 + 1e-12), (what, got, want)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return datasets()


@pytest.fixture(scope="module")
def one_pass(data) -> red.HostState:
    return stream(data, N)


def test_layout_and_representatives():
    assert K == math.ceil(math.log(SPEC.max_abs / SPEC.min_abs) / math.log(SPEC.gamma)) == 82894
    assert SPEC.n_bins == 2 * K + 3
    state = red.init_state(4, SPEC)
    assert state.hist.shape == (1, 4, 2 * K + 3) and state.hist.dtype == jnp.int32
    assert state.moments.count.dtype == jnp.int64 and state.moments.mean.dtype == jnp.float64
    # every representative is within alpha of both edges of its bucket
    b = sk._bounds(SPEC)
    rep = sk._representatives(SPEC)
    pos = rep[K + 2 : 2 * K + 2]
    assert np.all(np.abs(pos - b[1:]) <= (SPEC.rel_accuracy + 1e-12) * b[1:])
    assert np.all(np.abs(pos - b[:-1]) <= (SPEC.rel_accuracy + 1e-12) * b[:-1])
    assert np.array_equal(rep[1 : K + 1], -pos[::-1]) and rep[K + 1] == 0.0
    assert rep[0] == -np.inf and rep[-1] == np.inf


def test_bucket_of_a_value():
    rng = np.random.default_rng(5)
    x = 10.0 ** rng.uniform(-12, 24, 200_000) * rng.choice([-1.0, 1.0], 200_000)
    t = np.log(np.abs(x) / SPEC.min_abs) / math.log(SPEC.gamma)
    far = np.abs(t - np.round(t)) > 1e-3  # not within 1e-6 (relative) of a bucket edge
    want = np.where(x < 0, K + 1 - np.ceil(t), K + 1 + np.ceil(t))
    got = np.asarray(_bins(jnp.asarray(x), SPEC))
    np.testing.assert_array_equal(got[far], want[far])
    assert np.all(np.abs(got - want) <= 1)
    # just inside / outside an edge b_i, for many i
    b = sk._bounds(SPEC)
    i = rng.integers(1, K, 1000)
    edge = np.concatenate([b[i] * (1 - 1e-6), b[i] * (1 + 1e-6)])
    got = np.asarray(_bins(jnp.asarray(edge), SPEC))
    np.testing.assert_array_equal(got, K + 1 + np.concatenate([i, i + 1]))
    special = np.array(
        [0.0, -0.0, SPEC.min_abs, -SPEC.min_abs, np.nextafter(SPEC.min_abs, 1.0), 1e30, -1e30, np.inf, -np.inf, np.nan]
    )
    got = np.asarray(_bins(jnp.asarray(special), SPEC))
    np.testing.assert_array_equal(got, [K + 1] * 4 + [K + 2, 2 * K + 1, 1, 2 * K + 2, 0, K + 1])
    # float32 input: the same bucket as the same value in float64
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(_bins(jnp.asarray(x32), SPEC)), np.asarray(_bins(jnp.asarray(x32.astype(np.float64)), SPEC))
    )


def test_counts_and_moments_match_numpy(data, one_pass):
    assert_moments_match(one_pass, data)
    assert_moments_match(stream(data, 1000), data)


def test_quantiles_within_alpha_of_inverted_cdf(data, one_pass):
    got = red.quantiles(one_pass, PROBS, SPEC)
    assert got.shape == (data.shape[0], len(PROBS)) and got.dtype == np.float64
    for h, row in enumerate(data):
        want = np.quantile(row[~np.isnan(row)], PROBS, method="inverted_cdf")
        for q, g, w in zip(PROBS, got[h], want):
            assert_close_rel(g, w, f"series {h} q={q}")
    assert np.all(got[-1] == 3.0)  # constant series: clamped into [min, max], exact
    # the extreme ranks are the exact min and max (+-inf included)
    ext = red.quantiles(one_pass, [0.0, 1.0], SPEC)
    np.testing.assert_array_equal(ext, np.stack([one_pass.moments.min, one_pass.moments.max], 1))


@pytest.mark.parametrize("q", [0.01, 0.05, 0.5, 1.0])
def test_tail_mean_within_alpha_of_exact_expected_shortfall(data, one_pass, q):
    got = red.tail_mean(one_pass, q, SPEC)
    for h, row in enumerate(data):
        v = np.sort(row[~np.isnan(row)])
        tail = v[: max(1, math.ceil(q * v.size))]
        if tail[0] == -np.inf:
            assert got[h] == -np.inf
        elif tail[-1] == np.inf:
            assert got[h] == np.inf
        else:
            bound = REL * np.mean(np.abs(tail)) * (1 + 1e-9) + SPEC.min_abs
            assert abs(got[h] - tail.mean()) <= bound, (h, got[h], tail.mean())


def test_chunk_size_and_padding_do_not_change_the_summary(data, one_pass):
    for chunk in (1000, 4096):
        other = stream(data, chunk, seed=chunk)
        np.testing.assert_array_equal(other.hist, one_pass.hist)
        assert_same(other, one_pass)


@pytest.mark.parametrize("layout", [red.Layout(1, 1), red.Layout(8, 0), red.Layout(3, 32), red.Layout(2, 6)])
def test_device_layouts_count_the_same(data, one_pass, layout):
    """Copies of the histogram and the scatter's order (the accelerators' layout) change no count:
    the same summary, bit for bit, as one histogram filled series by series."""
    state = red.init_state(data.shape[0], SPEC, layout.copies)
    assert state.hist.shape == (layout.copies, data.shape[0], SPEC.n_bins)
    other = stream(data, 4096, layout=layout)
    assert other.hist.shape == one_pass.hist.shape
    assert_same(other, one_pass)
    # a flush adds a device state's copies into the host totals
    dev = _update(state, jnp.asarray(data[:, 7000:]), jnp.ones(N - 7000, bool), SPEC, layout.interleave)
    assert_same(red.merge_into(stream(data[:, :7000], 4096), dev), one_pass)


def test_copies_must_fit_int32_indices():
    with pytest.raises(ValueError, match="int32"):
        red.init_state(200, SPEC, copies=200)


def assert_same(a: red.HostState, b: red.HostState) -> None:
    """Counts, min/max and histogram bit-identical; mean and m2 to float64 rounding."""
    np.testing.assert_array_equal(a.hist, b.hist)
    for f in ("count", "nan", "posinf", "neginf", "n_finite", "min", "max"):
        np.testing.assert_array_equal(getattr(a.moments, f), getattr(b.moments, f), err_msg=f)
    scale = np.sqrt(b.moments.m2 / np.maximum(b.moments.n_finite, 1))
    np.testing.assert_allclose(a.moments.mean, b.moments.mean, rtol=1e-12, atol=1e-12 * scale.max())
    np.testing.assert_allclose(a.moments.m2, b.moments.m2, rtol=1e-12)


def test_merge_of_halves_equals_one_pass(data, one_pass):
    first = stream(data[:, :7000], 4096)
    second_dev = red.init_state(data.shape[0], SPEC)
    second_dev = _update(second_dev, jnp.asarray(data[:, 7000:]), jnp.ones(N - 7000, bool), SPEC)
    merged = red.merge(first, second_dev)  # b may be a device ReduceState
    assert merged.hist.dtype == np.int64
    assert_same(merged, one_pass)
    assert_moments_match(merged, data)


def test_merge_into_equals_merge_and_adds_in_place(data):
    first = stream(data[:, :7000], 4096)
    second_dev = _update(
        red.init_state(data.shape[0], SPEC), jnp.asarray(data[:, 7000:]), jnp.ones(N - 7000, bool), SPEC
    )
    want = red.merge(first, second_dev)
    buffer = first.hist
    got = red.merge_into(first, second_dev)  # what a run's flush does, the device counts int32
    assert got.hist is buffer and got.hist.dtype == np.int64
    assert_same(got, want)
    for f, g in zip(want.moments, got.moments):
        np.testing.assert_array_equal(g, f)


def test_merge_is_associative_and_commutative(data):
    a, b, c = (stream(data[:, s], 4096) for s in (slice(0, 5000), slice(5000, 5001), slice(5001, N)))
    empty = red.to_host(red.init_state(data.shape[0], SPEC))
    ab_c = red.merge(red.merge(a, b), c)
    a_bc = red.merge(a, red.merge(b, c))
    c_ba = red.merge(c, red.merge(b, a))
    for other in (a_bc, c_ba, red.merge(empty, ab_c), red.merge(ab_c, empty)):
        assert_same(other, ab_c)


def test_float32_input(data):
    x32 = data.astype(np.float32)
    host = stream(x32, 4096, dtype=np.float32)
    x = x32.astype(np.float64)
    assert_moments_match(host, x)
    np.testing.assert_array_equal(host.hist, stream(x, 4096).hist)
    got = red.quantiles(host, PROBS, SPEC)
    for h, row in enumerate(x):
        want = np.quantile(row[~np.isnan(row)], PROBS, method="inverted_cdf")
        for q, g, w in zip(PROBS, got[h], want):
            assert_close_rel(g, w, f"float32 series {h} q={q}")


def test_a_coarse_spec_keeps_its_own_error_bound():
    spec = red.SketchSpec(rel_accuracy=0.01, min_abs=1e-3, max_abs=1e3)
    rng = np.random.default_rng(9)
    x = np.stack([rng.lognormal(0.0, 1.0, 5000), -rng.lognormal(0.0, 4.0, 5000)])
    host = red.to_host(_update(red.init_state(2, spec), jnp.asarray(x), jnp.ones(5000, bool), spec))
    assert host.hist.shape == (2, spec.n_bins)
    got = red.quantiles(host, PROBS, spec)
    rep_k = sk._representatives(spec)[-2]
    for h in range(2):
        for g, w in zip(got[h], np.quantile(x[h], PROBS, method="inverted_cdf")):
            if abs(w) > spec.max_abs:
                assert g == np.sign(w) * rep_k
            elif abs(w) > spec.min_abs:
                assert abs(g - w) <= (spec.rel_accuracy + 1e-7) * abs(w)
            else:
                assert abs(g - w) <= spec.min_abs


def test_empty_and_all_nan_series():
    x = np.stack([np.full(10, np.nan), np.full(10, np.nan)])
    host = red.to_host(_update(red.init_state(2, SPEC), jnp.asarray(x), jnp.array([True] * 9 + [False]), SPEC))
    assert list(host.moments.nan) == [9, 9] and list(host.moments.count) == [0, 0]
    assert np.all(np.isnan(red.quantiles(host, [0.5], SPEC)))
    assert np.all(np.isnan(red.tail_mean(host, 0.05, SPEC)))
    assert np.all(np.isnan(red.sd(host)))
    assert host.hist.sum() == 0


def test_stats_are_nan_where_there_is_no_value_and_over_the_values_elsewhere(data, one_pass):
    """What a table reports: NaN, not the state's merge identities (mean 0, min +inf, max -inf),
    for a series with no value; otherwise the moments of the finite values and the exact range."""
    nan, inf = np.nan, np.inf
    x = np.array(
        [
            [nan] * 6,  # no value at all
            [inf, -inf, nan, inf, nan, nan],  # values, none finite
            [nan, 5.0, nan, nan, nan, nan],  # one finite value
            [nan, 1.0, 2.0, 4.0, inf, nan],  # some of each
        ]
    )
    host = red.to_host(_update(red.init_state(4, SPEC), jnp.asarray(x), jnp.ones(6, bool), SPEC))
    assert list(host.moments.mean[:2]) == [0.0, 0.0] and host.moments.min[0] == inf  # the identities stay in the state
    st = red.stats(host)
    np.testing.assert_allclose(st.mean, [nan, nan, 5.0, 7.0 / 3.0], rtol=1e-15)  # (NaN only where NaN)
    np.testing.assert_allclose(st.sd, [nan, nan, nan, np.std([1.0, 2.0, 4.0], ddof=1)], rtol=1e-15)
    np.testing.assert_array_equal(st.min, [nan, -inf, 5.0, 1.0])
    np.testing.assert_array_equal(st.max, [nan, inf, 5.0, inf])
    # ... where merges still need them: an empty state merged in changes no statistic
    empty = red.to_host(red.init_state(len(data), SPEC))
    for got in (red.stats(one_pass), red.stats(red.merge(empty, one_pass))):
        for h, row in enumerate(data):
            fin = row[np.isfinite(row)]
            assert got.mean[h] == one_pass.moments.mean[h] and abs(got.mean[h] - fin.mean()) <= 1e-12 * (
                abs(fin.mean()) + fin.std()
            )
            assert got.sd[h] == pytest.approx(fin.std(ddof=1), rel=1e-12)
            assert got.min[h] == np.nanmin(row) and got.max[h] == np.nanmax(row)


def test_sketch_quantiles_and_tail_mean_of_a_plain_histogram():
    """The sketch's read-out on a numpy histogram, no reducer state: a hand-made histogram gives
    each bin's representative clamped into [lo, hi], the exact extremes at ranks 1 and n, and
    the mean of the representatives of the lowest ranks."""
    rep = sk._representatives(SPEC)
    hist = np.zeros((2, SPEC.n_bins), np.int64)
    b1, b2, b3 = K + 1 + 100, K + 1 + 5000, K + 1 + 9000  # three positive buckets
    hist[0, [b1, b2, b3]] = [2, 5, 3]  # ranks 1-2, 3-7, 8-10
    lo, hi = np.array([rep[b1] * 0.9995, np.nan]), np.array([rep[b3], np.nan])
    got = sk.quantiles(hist, lo, hi, [0.0, 0.15, 0.2, 0.25, 0.7, 0.75, 1.0], SPEC)
    np.testing.assert_array_equal(got[0], [lo[0], rep[b1], rep[b1], rep[b2], rep[b2], rep[b3], hi[0]])
    assert np.isnan(got[1]).all()  # an empty series
    # lowest 3 of 10: both values of b1 and one of b2; lowest 1: rank 1 only
    np.testing.assert_allclose(sk.tail_mean(hist, lo, hi, 0.3, SPEC)[0], (2 * rep[b1] + rep[b2]) / 3, rtol=1e-15)
    assert sk.tail_mean(hist, lo, hi, 0.05, SPEC)[0] == rep[b1]
    assert np.isnan(sk.tail_mean(hist, lo, hi, 0.5, SPEC)[1])
    # an infinite value in the tail makes the tail mean infinite
    hist[1, [0, b1]] = [1, 9]
    assert sk.tail_mean(hist, np.array([0.0, -np.inf]), np.array([0.0, rep[b1]]), 0.5, SPEC)[1] == -np.inf
    with pytest.raises(ValueError, match="bins"):
        sk.spec_for(hist[:, :-1], SPEC)
    with pytest.raises(ValueError, match="probability"):
        sk.quantiles(hist, lo, hi, [1.5], SPEC)


def test_sketch_of_a_numpy_histogram_matches_the_streamed_one(data, one_pass):
    """A histogram made with numpy from bin_index gives the reducer's quantiles exactly."""
    hist = np.zeros((data.shape[0], SPEC.n_bins), np.int64)
    bins = np.asarray(_bins(jnp.asarray(data), SPEC))
    for h in range(data.shape[0]):
        ok = ~np.isnan(data[h])
        np.add.at(hist[h], bins[h, ok], 1)
    np.testing.assert_array_equal(hist, one_pass.hist)
    lo, hi = np.nanmin(data, axis=1), np.nanmax(data, axis=1)
    np.testing.assert_array_equal(sk.quantiles(hist, lo, hi, PROBS, SPEC), red.quantiles(one_pass, PROBS, SPEC))
    np.testing.assert_array_equal(sk.tail_mean(hist, lo, hi, 0.05, SPEC), red.tail_mean(one_pass, 0.05, SPEC))
