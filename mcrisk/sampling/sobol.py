"""Host constants of the Sobol' sampler (NumPy): Joe-Kuo direction numbers to 32 bits, and the scramble.

The direction numbers are those of scipy's `scipy.stats.qmc.Sobol` (new-joe-kuo-6.21201), read
through its public interface only. Point n of an unscrambled `qmc.Sobol(d, bits=32)` is the XOR
of the direction numbers v_b for the bits b of gray(n) = n ^ (n >> 1), so point 2**(b+1) - 1 is
v_b itself; v_b = m_b 2**(31 - b) with m_b odd. Reading every v_b up to bit 31 that way would
walk 2**32 points, so only the first few are read (`_leading_directions`), enough to recover
each dimension's primitive polynomial (`_polynomials`), and the Bratley-Fox recurrence makes the
rest (`_recurrence`). Joe and Kuo take the primitive polynomials in order of degree, all of each
degree, so dimension j's degree follows from how many there are of each (`_degrees`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BITS", "sobol_directions", "sobol_scramble"]

BITS = 32  # bits of every direction number and point
_TAG_SOBOL = 0x50B01  # the host RNG stream of the scramble (see uniforms: one tag per use of the seed)


def _primitive_count(n: int) -> int:
    """Primitive polynomials of degree n over GF(2): phi(2**n - 1) / n."""
    m = phi = (1 << n) - 1
    p = 2
    while p * p <= m:
        if m % p == 0:
            while m % p == 0:
                m //= p
            phi -= phi // p
        p += 1
    if m > 1:
        phi -= phi // m
    return phi // n


def _degrees(d: int) -> np.ndarray:
    """Degree of the primitive polynomial of each of the first d dimensions; 0 for dimension 0
    (the van der Corput sequence)."""
    deg = np.zeros(d, np.int64)
    j, n = 1, 0
    while j < d:
        n += 1
        count = _primitive_count(n)
        deg[j : j + count] = n
        j += count
    return deg


def _leading_directions(engine, k: int) -> np.ndarray:
    """v_0 ... v_{k-1} of each dimension, (d, k) uint64, from points 2**(b+1) - 1 of `engine`, a new
    unscrambled `qmc.Sobol(d, bits=32)`: 2**k points in all."""
    v = np.zeros((engine.d, k), np.uint64)
    done = 0
    for b in range(k):
        point = (1 << (b + 1)) - 1
        engine.fast_forward(point - done)
        # exact: a point is an integer below 2**32 times 2**-32 in float64
        v[:, b] = (engine.random(1)[0] * 2.0**BITS).astype(np.uint64)
        done = point + 1
    return v


def _polynomials(m: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """Each dimension's primitive polynomial (bit i the coefficient of x**i, x**deg and 1 included)
    from its m_0 ... m_deg ((d, >= max(deg) + 1), odd). The recurrence at k = deg,
    m_deg = m_0 ^ (m_0 << deg) ^ XOR_{i<deg} a_i (m_{deg-i} << i), fixes a_1, a_2, ... in turn:
    bit i of the right side gets a_i from the odd m_{deg-i} and the rest from a_1 ... a_{i-1}."""
    poly = np.ones(len(deg), np.int64)
    for j, n in enumerate(int(x) for x in deg):
        if n == 0:
            continue
        mm = [int(x) for x in m[j, : n + 1]]
        rest = mm[n] ^ mm[0] ^ (mm[0] << n)
        a = [0] * n
        for i in range(1, n):
            bit = (rest >> i) & 1
            for i2 in range(1, i):
                bit ^= a[i2] & (mm[n - i2] >> (i - i2))
            a[i] = bit & 1
        poly[j] = (1 << n) | sum(a[i] << (n - i) for i in range(1, n)) | 1
    return poly


def _recurrence(poly: np.ndarray, deg: np.ndarray, m: np.ndarray) -> np.ndarray:
    """m_0 ... m_31 of each dimension from its polynomial and first deg m_k ((d, >= max(deg)))
    by the Bratley-Fox / Joe-Kuo recurrence; (d, 32) uint64, m_k odd and < 2**(k+1)."""
    d = len(poly)
    out = np.zeros((d, BITS), np.uint64)
    out[:, : m.shape[1]] = m[:, :BITS]
    out[deg == 0] = 1  # the first dimension is the van der Corput sequence
    rows = np.arange(d)
    for k in range(BITS):
        rec = (deg > 0) & (k >= deg)
        new = out[rows, np.maximum(k - deg, 0)].copy()  # the x**deg and 1 terms
        for i in range(1, int(deg.max(initial=0)) + 1):  # a_i m_{k-i} 2**i, with a_deg = 1
            a = (poly >> np.maximum(deg - i, 0)) & 1
            on = rec & (i <= deg) & (a == 1)
            new ^= np.where(on, out[rows, np.maximum(k - i, 0)] << np.uint64(i), np.uint64(0))
        out[rec, k] = new[rec]
    return out


def sobol_directions(d: int) -> np.ndarray:
    """Joe-Kuo direction numbers (new-joe-kuo-6.21201, as scipy's `qmc.Sobol`) -> (d, 32) uint32.

    v[j, b] is the 32-bit direction number of dimension j for bit b of the index. Up to 1,000
    dimensions take milliseconds; all 21,201 take about 15 s (2**19 points read from scipy)."""
    from scipy.stats import qmc  # (here: scipy.stats takes 0.4 s to import, and only a Sobol' run needs it)

    if not 0 <= d <= qmc.Sobol.MAXDIM:
        raise ValueError(f"Sobol' supports up to {qmc.Sobol.MAXDIM} dimensions, got {d}; use sampler 'lhs' or 'random'")
    if d == 0:
        return np.zeros((0, BITS), np.uint32)
    deg = _degrees(d)
    k = int(deg.max()) + 1  # m_0 ... m_deg of every dimension
    shifts = np.uint64(BITS - 1) - np.arange(k, dtype=np.uint64)
    m = _leading_directions(qmc.Sobol(d, scramble=False, bits=BITS), k) >> shifts
    m = _recurrence(_polynomials(m, deg), deg, m)
    return (m << (np.uint64(BITS - 1) - np.arange(BITS, dtype=np.uint64))).astype(np.uint32)


def sobol_scramble(directions: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear matrix scramble + digital shift (Matousek 1998; scipy's default LMS+shift).

    Dimension j uses its own host RNG seeded by (seed, j): a random lower-triangular binary
    32x32 matrix with unit diagonal acts on the binary digits of each direction number (digit
    0 = most significant), and a random 32-bit shift is XORed onto every point. Returns the
    scrambled directions (d, 32) and the shifts (d,), both uint32."""
    d = directions.shape[0]
    digits = (directions[:, :, None] >> (31 - np.arange(32, dtype=np.uint32))) & 1  # (d, b, k)
    lower, shift = np.zeros((d, 32, 32), np.int64), np.zeros(d, np.uint32)
    for j in range(d):
        rng = np.random.default_rng([seed % 2**64, _TAG_SOBOL, j])
        lower[j] = np.tril(rng.integers(0, 2, (32, 32)), -1) + np.eye(32, dtype=np.int64)
        shift[j] = rng.integers(0, 2**32, dtype=np.uint32)
    scrambled = np.einsum("jkl,jbl->jbk", lower, digits.astype(np.int64)) % 2
    weights = np.uint64(1) << (np.uint64(31) - np.arange(32, dtype=np.uint64))
    return (scrambled.astype(np.uint64) * weights).sum(-1).astype(np.uint32), shift
