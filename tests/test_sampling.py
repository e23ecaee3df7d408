"""Sampling: uniforms by scenario index, the Gaussian copula and the monthly shocks.

Each test states one property of the contract in mcrisk/sampling.py.
"""

import jax

jax.config.update("jax_enable_x64", True)

import hashlib  # noqa: E402
import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.special import ndtri  # noqa: E402
from scipy.stats import qmc  # noqa: E402

from mcrisk.sampling import uniforms as S  # noqa: E402

# Compiling threefry takes seconds, so most tests draw the same shape, (N, 5), and reuse it.
N = 4096
STREAMS = tuple(S.stream_id(p) for p in ("a.x", "b.y", "c.z", "d.w", "e.v"))
DTYPES = (jnp.float32, jnp.float64)


def all_uniforms(method, dtype, n=N, seed=11, streams=STREAMS):
    """Uniforms of scenarios 0..n-1 (n <= N), drawn as one padded (N, d) call."""
    idx = jnp.asarray(np.arange(N) % n, jnp.uint32)
    return np.asarray(S.make_sampler(method, seed, streams, n).uniforms(idx, dtype))[:n]


def in_chunks(uniforms, n, size, dtype):
    """The engine's way: fixed-size chunks, the last one padded with valid indices and trimmed."""
    parts = []
    for start in range(0, n, size):
        idx = np.arange(start, start + size) % n
        parts.append(np.asarray(uniforms(jnp.asarray(idx, jnp.uint32), dtype))[: n - start])
    return np.concatenate(parts)


# --------------------------------------------------------------------------- keys


def test_stream_id_is_the_first_4_bytes_of_sha256_big_endian():
    name = "systems.gb200.capex_usd"
    assert S.stream_id(name) == int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) == 0xD913D214
    assert S.stream_id("market.token_price.shock") != S.stream_id("market.electricity.shock")
    assert all(0 <= S.stream_id(f"s{i}") < 2**32 for i in range(100))


def test_scenario_keys_fold_each_global_index_into_the_root():
    root = S.root_key(5)
    keys = S.scenario_keys(root, jnp.array([0, 3, 2**32 - 1], jnp.uint32))
    for k, i in zip(keys, (0, 3, 2**32 - 1)):
        assert np.array_equal(jax.random.key_data(k), jax.random.key_data(jax.random.fold_in(root, jnp.uint32(i))))


# --------------------------------------------------------------------------- open interval


@pytest.mark.parametrize(
    "k, bits, dtype",
    [
        (0, 23, np.float32),
        (2**23 - 1, 23, np.float32),
        (0, 52, np.float64),
        (2**52 - 1, 52, np.float64),
        (2**32 - 1, 32, np.float64),
    ],
)
def test_bit_to_uniform_map_never_reaches_0_or_1(k, bits, dtype):
    u = S._open_unit(jnp.asarray(k, jnp.uint64), bits, jnp.dtype(dtype))
    assert u.dtype == dtype and 0.0 < float(u) < 1.0
    assert float(u) == (k + 0.5) * 2.0**-bits  # exact in the dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", S.METHODS)
def test_uniforms_are_strictly_inside_0_1(method, dtype):
    u = all_uniforms(method, dtype)
    assert u.shape == (N, len(STREAMS)) and u.dtype == dtype
    assert (u > 0).all() and (u < 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_uniforms_pass_kolmogorov_smirnov(dtype):
    u = all_uniforms("random", dtype)
    for j in range(u.shape[1]):
        assert stats.kstest(u[:, j], "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u.T)[np.triu_indices(u.shape[1], 1)]).max() < 4 / math.sqrt(N)


# --------------------------------------------------------------------------- invariance


@pytest.mark.parametrize(
    "method, dtype",
    [("random", jnp.float32), ("sobol", jnp.float32), ("sobol", jnp.float64), ("lhs", jnp.float32)],
)
def test_uniforms_do_not_depend_on_chunking_or_jit(method, dtype):
    sampler = S.make_sampler(method, 3, STREAMS, N)
    whole = np.asarray(sampler.uniforms(jnp.arange(N, dtype=jnp.uint32), dtype))
    assert np.array_equal(in_chunks(sampler.uniforms, N, 7, dtype), whole)
    # chunks of 1000 through an outer jax.jit, as the engine calls it: still bit-identical
    assert np.array_equal(in_chunks(jax.jit(sampler.uniforms, static_argnums=1), N, 1000, dtype), whole)


@pytest.mark.parametrize("method", ["random", "lhs"])
def test_a_stream_keeps_its_values_whatever_its_column(method):
    forward = all_uniforms(method, jnp.float64)
    backward = all_uniforms(method, jnp.float64, streams=STREAMS[::-1])
    assert np.array_equal(backward, forward[:, ::-1])


@pytest.mark.parametrize("method", ["random", "lhs"])
def test_a_stream_keeps_its_values_whatever_the_other_streams(method):
    others = tuple(S.stream_id(p) for p in ("f.u", "g.t", "h.s"))
    mixed = all_uniforms(method, jnp.float64, streams=STREAMS[:2] + others)
    assert np.array_equal(mixed[:, :2], all_uniforms(method, jnp.float64)[:, :2])


def test_seeds_and_streams_give_different_draws():
    for method in S.METHODS:
        a, b = all_uniforms(method, jnp.float64, seed=1), all_uniforms(method, jnp.float64, seed=2)
        assert not np.array_equal(a, b)
        assert len(np.unique(a[:, 0] - a[:, 1])) > N // 2


# --------------------------------------------------------------------------- Sobol'


def test_sobol_direction_numbers_are_scipys_joe_kuo_table_to_32_bits():
    # scipy keeps its 32-bit table in the private Sobol._sv; a cross-check of every bit,
    # since the public points only reach the low bits in reasonable time.
    d = 1000
    assert np.array_equal(S.sobol_directions(d), qmc.Sobol(d, scramble=False, bits=32)._sv.astype(np.uint32))


def test_sobol_direction_numbers_are_scipys_public_points_to_bit_24():
    # Point 2**(b+1) - 1 of an unscrambled qmc.Sobol (Gray-code order) is direction number b:
    # bits past those sobol_directions reads itself come from its recurrence.
    d, bits = 6, 25
    engine, done = qmc.Sobol(d, scramble=False, bits=32), 0
    ours = S.sobol_directions(d)
    for b in range(bits):
        point = 2 ** (b + 1) - 1
        engine.fast_forward(point - done)
        done = point + 1
        assert np.array_equal(ours[:, b], (engine.random(1)[0] * 2.0**32).astype(np.uint32)), b


def test_sobol_direction_numbers_and_uniforms_are_those_runs_were_made_with():
    # sha256 of what the sampler made when Sobol' runs were first recorded: a change here changes
    # every Sobol' run's numbers.
    v = S.sobol_directions(1111)  # dimensions of every degree up to 13, all 32 bits
    assert hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() == (
        "86f95f6051991a3f9c2dbccf74cb5f09d393235067937ec1896fb55c003f38e6"
    )
    sampler = S.make_sampler("sobol", 12345, [S.stream_id(f"x{j}") for j in range(9)], 5000)
    idx = np.array([0, 1, 2, 3, 1023, 4095, 4999, 2**31 + 5, 2**32 - 1], np.uint32)
    want = {
        jnp.float32: "f48eb5291556f829290b838566eb1a01e98464039a1b26565ce978dc04bd12e4",
        jnp.float64: "c2263e677857ebe108fe477558264538c90d6cf28980e81116f8774ac6bb86b3",
    }
    for dtype, digest in want.items():
        assert hashlib.sha256(np.asarray(sampler.uniforms(idx, dtype)).tobytes()).hexdigest() == digest, dtype


def test_unscrambled_sobol_points_equal_scipys_as_a_set():
    d, k = 1000, 10
    plain = S.make_sampler("sobol", 0, range(d), 2**k, scramble=False)
    ours = np.asarray(plain.uniforms(jnp.arange(2**k, dtype=jnp.uint32), jnp.float64))
    ours = ours - 0.5 * 2.0**-32  # undo the half-step centring: exact in float64
    theirs = qmc.Sobol(d, scramble=False).random(2**k)  # Gray-code order, 30 bits
    rows = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    assert np.array_equal(rows(ours), rows(theirs))


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_2_to_the_k_block_of_scrambled_sobol_is_stratified_in_each_coordinate(dtype):
    k, d = 10, 1000
    sampler = S.make_sampler("sobol", 4, range(d), N)
    u = np.asarray(sampler.uniforms(jnp.arange(N, dtype=jnp.uint32), dtype)).astype(np.float64)
    for block in u.reshape(N // 2**k, 2**k, d):
        cells = np.sort(np.floor(block * 2**k).astype(np.int64), axis=0)
        assert np.array_equal(cells, np.broadcast_to(np.arange(2**k)[:, None], cells.shape))


def test_sobol_scramble_changes_with_the_seed_and_keeps_index_0_off_the_corner():
    first = jnp.zeros(1, jnp.uint32)
    a, b = (S.make_sampler("sobol", s, STREAMS, N).uniforms(first, jnp.float64) for s in (1, 2))
    assert not np.array_equal(a, b)
    assert (np.asarray(a) > 1e-3).any()


# --------------------------------------------------------------------------- Latin hypercube


@pytest.mark.parametrize("n", [1, 2, 5, 1000, 3001])
def test_lhs_hits_each_stratum_exactly_once_per_dimension(n):
    u = all_uniforms("lhs", jnp.float64, n=n)
    cells = np.sort(np.floor(u * n).astype(np.int64), axis=0)
    assert np.array_equal(cells, np.broadcast_to(np.arange(n)[:, None], cells.shape))


def test_lhs_float32_is_the_float64_point_rounded():
    u32, u64 = all_uniforms("lhs", jnp.float32, n=1000), all_uniforms("lhs", jnp.float64, n=1000)
    assert np.array_equal(u32, np.minimum(u64.astype(np.float32), np.nextafter(np.float32(1), np.float32(0))))


def test_lhs_indices_past_n_scenarios_wrap_instead_of_looping_forever():
    sampler = S.make_sampler("lhs", 11, STREAMS, 1000)
    u = np.asarray(sampler.uniforms(jnp.arange(N, dtype=jnp.uint32), jnp.float64))
    assert np.array_equal(u[1000:2000], u[:1000])


def test_lhs_permutations_differ_between_dimensions():
    u = all_uniforms("lhs", jnp.float64, n=1000)
    assert abs(stats.spearmanr(u[:, 0], u[:, 1]).statistic) < 0.15


# --------------------------------------------------------------------------- variance reduction


def _smooth_sum(u):
    """Sum of 5 inverse CDFs with known means: normal 0, exponential 1, logistic 0, uniform 1/2, Gumbel gamma."""
    return ndtri(u[:, 0]) - np.log1p(-u[:, 1]) + np.log(u[:, 2] / (1 - u[:, 2])) + u[:, 3] - np.log(-np.log(u[:, 4]))


def test_sobol_and_lhs_estimate_a_mean_far_better_than_random():
    truth = 1 + 0.5 + np.euler_gamma
    rmse = {}
    for method in S.METHODS:
        errors = [_smooth_sum(all_uniforms(method, jnp.float64, seed=s)).mean() - truth for s in range(20)]
        rmse[method] = math.sqrt(np.mean(np.square(errors)))
    # measured: random 0.042, sobol 0.0004, lhs 0.0005
    assert rmse["sobol"] < 0.1 * rmse["random"], rmse
    assert rmse["lhs"] < 0.1 * rmse["random"], rmse


# --------------------------------------------------------------------------- Gaussian copula

RHOS = (-0.8, -0.3, 0.3, 0.6, 0.9)


@pytest.fixture(scope="module")
def pairs():
    """(200_704, 2) independent float64 uniforms, drawn in chunks of the shared (N, 5) shape."""
    sampler = S.make_sampler("random", 21, STREAMS, 49 * N)
    chunks = [sampler.uniforms(jnp.arange(c * N, (c + 1) * N, dtype=jnp.uint32), jnp.float64) for c in range(49)]
    return jnp.concatenate(chunks)[:, :2]


@pytest.mark.parametrize("rho", RHOS)
def test_copula_gives_the_spearman_correlation_of_a_gaussian_with_uniform_marginals(pairs, rho):
    n = pairs.shape[0]
    factor = S.copula_factor(np.array([[1.0, rho], [rho, 1.0]]))
    u = np.asarray(S.apply_copula(pairs, jnp.asarray(factor)))
    expected = 6 / math.pi * math.asin(rho / 2)
    se = math.sqrt(1.06 / (n - 3)) * (1 - expected**2)  # Fieller, Hartley & Pearson (1957)
    assert abs(stats.spearmanr(u[:, 0], u[:, 1]).statistic - expected) < 4 * se
    for j in range(2):
        assert stats.kstest(u[:, j], "uniform").pvalue > 1e-3


def test_copula_keeps_float32_tails_finite_and_inside_0_1():
    extremes = jnp.array([[0.0, 0.0], [2.0**-24, 1e-30], [1 - 2.0**-24, 1.0], [1.0, 1 - 2.0**-24]], jnp.float32)
    for rho in (0.9, -0.9):
        u = S.apply_copula(extremes, jnp.asarray(S.copula_factor(np.array([[1, rho], [rho, 1]])), jnp.float32))
        assert u.dtype == jnp.float32 and bool(jnp.all((u > 0) & (u < 1)))


def test_copula_in_float32_follows_float64(pairs):
    factor = S.copula_factor(np.array([[1.0, 0.6], [0.6, 1.0]]))
    p32 = pairs.astype(jnp.float32)  # the same inputs for both: rounding them is not the copula's error
    u64 = np.asarray(S.apply_copula(p32.astype(jnp.float64), jnp.asarray(factor)))
    u32 = np.asarray(S.apply_copula(p32, jnp.asarray(factor, jnp.float32)))
    assert u32.dtype == np.float32
    np.testing.assert_allclose(u32, u64, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_copula_draws_do_not_depend_on_the_rows_beside_them(pairs, dtype):
    # A scenario's correlated draws must not change with its chunk: a matrix product's summation
    # order follows the kernel's blocking, which depends on the row count (JAX 0.12's CPU dot gave
    # other last bits for some rows at chunk sizes 300 and 128).
    corr = np.array([[1.0, 0.5, -0.3, 0.2], [0.5, 1.0, 0.1, 0.4], [-0.3, 0.1, 1.0, 0.25], [0.2, 0.4, 0.25, 1.0]])
    factor = jnp.asarray(S.copula_factor(corr), dtype)
    u = jnp.concatenate([pairs[:2048], pairs[2048:4096]], axis=1).astype(dtype)
    whole = np.asarray(S.apply_copula(u, factor))
    for start, n in ((0, 1), (3, 5), (444, 60), (7, 128), (100, 300), (1, 1000), (0, 2047)):
        part = np.asarray(S.apply_copula(u[start : start + n], factor))
        assert np.array_equal(part, whole[start : start + n]), (start, n)


def test_identity_correlation_leaves_uniforms_almost_unchanged(pairs):
    u = S.apply_copula(pairs[:1000], jnp.asarray(S.copula_factor(np.eye(2))))
    np.testing.assert_allclose(np.asarray(u), np.asarray(pairs[:1000]), rtol=0, atol=1e-12)


def test_inconsistent_correlations_are_rejected_with_the_smallest_eigenvalue():
    corr = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    smallest = np.linalg.eigvalsh(corr)[0]  # -0.8
    message = S.check_correlation_matrix(corr)
    assert message is not None and f"{smallest:.4g}" in message and "lower the correlations" in message
    with pytest.raises(ValueError, match="lower the correlations"):
        S.copula_factor(corr)


@pytest.mark.parametrize(
    "corr, words",
    [
        (np.ones((2, 3)), "square"),
        ([[1.0, 0.5], [0.4, 1.0]], "not symmetric: [0, 1] = 0.5 but [1, 0] = 0.4"),
        ([[2.0, 0.5], [0.5, 1.0]], "unit diagonal"),
        ([[1.0, 1.5], [1.5, 1.0]], "outside [-1, 1]"),
        ([[1.0, np.nan], [np.nan, 1.0]], "non-finite"),
    ],
)
def test_malformed_correlation_matrices_are_named(corr, words):
    assert words in S.check_correlation_matrix(corr)


def test_valid_matrices_pass_and_factor_back():
    for corr in (np.eye(1), np.array([[1, 0.6], [0.6, 1]]), np.array([[1, 0.9, 0.8], [0.9, 1, 0.75], [0.8, 0.75, 1]])):
        assert S.check_correlation_matrix(corr) is None
        factor = S.copula_factor(corr)
        np.testing.assert_allclose(factor @ factor.T, corr, atol=1e-12)


def test_perfect_correlation_is_accepted_and_gives_identical_normal_scores(pairs):
    corr = np.ones((2, 2))  # singular but PSD: no Cholesky, the eigen factor takes over
    assert S.check_correlation_matrix(corr) is None
    factor = S.copula_factor(corr)
    np.testing.assert_allclose(factor @ factor.T, corr, atol=1e-12)
    z = np.asarray(ndtri(S.apply_copula(pairs[:1000], jnp.asarray(factor))))
    np.testing.assert_allclose(z[:, 0], z[:, 1], rtol=0, atol=1e-9)
    assert np.std(z[:, 0]) > 0.9


def test_bad_sampler_arguments_are_named():
    with pytest.raises(ValueError, match="unknown sampler 'halton'; choose one of random, sobol, lhs"):
        S.make_sampler("halton", 1, STREAMS, N)
    with pytest.raises(ValueError, match="n_scenarios must be in"):
        S.make_sampler("lhs", 1, STREAMS, 0)
    with pytest.raises(ValueError, match="32-bit unsigned"):
        S.make_sampler("random", 1, (-1,), N)
    with pytest.raises(ValueError, match="float32 or float64"):
        S.make_sampler("random", 1, STREAMS, N).uniforms(jnp.arange(3, dtype=jnp.uint32), jnp.float16)


# --------------------------------------------------------------------------- monthly shocks


@pytest.mark.parametrize("dtype", DTYPES)
def test_shock_normals_are_standard_normal_and_depend_only_on_the_scenario_index(dtype):
    root, stream, months = S.root_key(8), S.stream_id("market.token_price.shock"), 12
    z = np.asarray(S.shock_normals(root, jnp.arange(N, dtype=jnp.uint32), stream, months, dtype))
    assert z.shape == (N, months) and z.dtype == dtype
    assert abs(z.mean()) < 4 / math.sqrt(z.size) and abs(z.std() - 1) < 4 / math.sqrt(2 * z.size)
    # another chunk that overlaps this one: the shared scenarios get the same rows
    later = np.asarray(S.shock_normals(root, jnp.arange(1000, 1000 + N, dtype=jnp.uint32), stream, months, dtype))
    assert np.array_equal(later[: N - 1000], z[1000:])
    bits = np.asarray(jax.random.bits(jax.random.fold_in(jax.random.fold_in(root, 17), stream), (months,), jnp.uint32))
    u = ((bits >> 9) + 0.5) * 2.0**-23 if dtype == jnp.float32 else (bits + 0.5) * 2.0**-32
    assert np.allclose(z[17], stats.norm.ppf(u), rtol=1e-5 if dtype == jnp.float32 else 1e-12)


def test_shock_normals_are_the_same_draws_in_both_precisions():
    """float64 runs check float32 runs: the same bits make both precisions' shocks."""
    root, stream, idx = S.root_key(8), S.stream_id("market.demand.shock"), jnp.arange(4096, dtype=jnp.uint32)
    z32 = np.asarray(S.shock_normals(root, idx, stream, 24, jnp.float32), np.float64)
    z64 = np.asarray(S.shock_normals(root, idx, stream, 24, jnp.float64))
    # float32 keeps 23 of the 32 bits: u moves by at most 2**-24, z by 2**-24 / pdf(z) (more in the tails)
    bound = 2.0**-24 / stats.norm.pdf(z64) + 2e-6 * np.abs(z64)
    assert np.all(np.abs(z32 - z64) <= bound)
    assert np.median(np.abs(z32 - z64)) < 1e-6
