"""Estimators of the Greeks from per-scenario metrics m_i and pathwise derivatives g_i = dm_i/dtheta.

* mean: d E[m] / d theta = E[g] (the pathwise estimator; Glasserman 2004, 7.2), its standard
  error sd(g) / sqrt(N);
* value at risk, the a-quantile q_a of m: d q_a / d theta = E[g | m = q_a] (Hong 2009), estimated
  by a local-linear regression of g on m with a Gaussian kernel of bandwidth h around the
  empirical quantile (Liu and Hong 2009 use the kernel's plain average, Nadaraya-Watson; at a
  5% tail, where the density of m climbs steeply, that average leans toward the centre: on the
  default study it read 2-4% above the local-linear fit, which moved less with h), its
  standard error from the fit's weights and residuals (the kernel's bias, O(h^2), is not in it);
* P(loss) = P(m < 0): the indicator has no pathwise derivative, so it is smoothed by the same
  kernel, P_h = E[Phi(-m/h)], whose pathwise derivative is -E[phi(m/h)/h g] (smoothed
  perturbation analysis): the same as -f_m(0) E[g | m = 0].

The sums are kept chunk by chunk (:class:`Sums`), so N does not bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

LEVELS = {"p5": 0.05, "p1": 0.01}  # the VaR levels greeks.csv differentiates


def bandwidth(m: np.ndarray) -> float:
    """Silverman's rule of thumb, 0.9 min(sd, IQR/1.34) N^-1/5, for the kernel around a quantile."""
    m = np.asarray(m, np.float64)
    m = m[np.isfinite(m)]
    if m.size < 2:
        return float("nan")
    q75, q25 = np.percentile(m, [75, 25])
    spread = min(float(np.std(m, ddof=1)), float(q75 - q25) / 1.34) or float(np.std(m, ddof=1))
    return 0.9 * spread * m.size ** (-0.2)


def quantile(m: np.ndarray, a: float) -> float:
    """The empirical a-quantile (linear interpolation), the VaR the derivative is taken of."""
    return float(np.quantile(np.asarray(m, np.float64), a))


def _phi(z):
    return jnp.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def partial_sums(m, g, valid, centers: dict, h) -> dict[str, jax.Array]:
    """One chunk's sums (JAX, jit-safe: run on the device beside the gradients): m (R, n) the
    metric, g (P, R, n) the derivatives, valid (n,) the real scenarios (the last chunk is padded),
    centers {level: (R,)} the quantiles, h (R,) the bandwidths. Each sum is (P, R) or (R,)."""
    keep = valid.astype(m.dtype)
    m = jnp.where(valid, m, 0.0)
    g = g * keep
    out = {"n": keep.sum(), "g": g.sum(-1), "gg": (g * g).sum(-1)}
    hh = h[:, None]
    for name, q in centers.items():
        d = (m - q[:, None]) / hh  # (R, n), in bandwidths
        w = _phi(d) * keep
        dj = [jnp.ones_like(d), d, d * d, d * d * d, d * d * d * d]
        for j in range(3):
            out[f"{name}_S{j}"] = (w * dj[j]).sum(-1)
        for j in range(2):
            out[f"{name}_T{j}"] = (w * dj[j] * g).sum(-1)
        w2 = w * w
        gk = [None, g, g * g]
        for j in range(5):
            out[f"{name}_M{j}0"] = (w2 * dj[j]).sum(-1)
            for k in (1, 2):
                out[f"{name}_M{j}{k}"] = (w2 * dj[j] * gk[k]).sum(-1)
    k = -_phi(m / hh) / hh * g  # the smoothed P(loss)'s per-scenario derivative
    out["loss"], out["loss2"] = k.sum(-1), (k * k).sum(-1)
    return out


@dataclass
class Sums:
    """Running sums over scenarios for P targets and R rows: add each chunk's :func:`partial_sums`.

    centers: (R,) per level, the quantiles q_a; h: (R,) bandwidths."""

    centers: dict[str, np.ndarray]
    h: np.ndarray
    n: int = 0
    s: dict[str, np.ndarray] = field(default_factory=dict)

    def add_partial(self, part: dict) -> None:
        part = {k: np.asarray(v, np.float64) for k, v in part.items()}
        self.n += int(round(float(part.pop("n"))))
        for k, v in part.items():
            self.s[k] = self.s.get(k, 0.0) + v

    def add(self, m: np.ndarray, g: np.ndarray) -> None:
        """m: (R, n) metric of real scenarios; g: (P, R, n) their derivatives (on the host)."""
        m = jnp.asarray(m, jnp.float64)
        self.add_partial(partial_sums(m, jnp.asarray(g, jnp.float64), jnp.ones(m.shape[1], bool), self.centers, self.h))

    def _local_linear(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The local-linear fit g ~ a + b d at d = 0 (d = (m - q)/h), and the standard error of a:
        a = sum l_i g_i with l_i = w_i (S2 - S1 d_i) / D, so Var(a) ~ sum l_i^2 r_i^2, r_i the residuals,
        expanded in the running sums M_jk = sum w^2 d^j g^k."""
        s = self.s
        S0, S1, S2 = (s[f"{name}_S{j}"][None] for j in range(3))
        T0, T1 = s[f"{name}_T0"], s[f"{name}_T1"]
        D = S0 * S2 - S1 * S1
        a, b = (S2 * T0 - S1 * T1) / D, (S0 * T1 - S1 * T0) / D
        lev = {0: S2 * S2, 1: -2 * S2 * S1, 2: S1 * S1}  # (S2 - S1 d)^2 by power of d
        res = {(0, 2): 1.0, (0, 1): -2 * a, (1, 1): -2 * b, (0, 0): a * a, (1, 0): 2 * a * b, (2, 0): b * b}
        var = sum(cl * cr * s[f"{name}_M{jl + jr}{k}"] for jl, cl in lev.items() for (jr, k), cr in res.items())
        return a, np.sqrt(np.maximum(var, 0)) / np.abs(D)

    def result(self) -> dict[str, np.ndarray]:
        """Each estimate and its standard error, (P, R)."""
        n, s = self.n, self.s
        out = {}
        mean = s["g"] / n
        out["d_mean"], out["d_mean_se"] = mean, np.sqrt(np.maximum(s["gg"] / n - mean**2, 0) / max(n - 1, 1))
        for name in self.centers:
            out[f"d_{name}"], out[f"d_{name}_se"] = self._local_linear(name)
        lm = s["loss"] / n
        out["d_p_loss"] = lm
        out["d_p_loss_se"] = np.sqrt(np.maximum(s["loss2"] / n - lm**2, 0) / max(n - 1, 1))
        return out


def unit_step(value: float, low: float | None = None, high: float | None = None) -> float:
    """A round step in the parameter's own unit, about 1-5% of its value (or of the range
    low..high where the value is 0): 0.01 for a price of 0.296, 100,000 for a capex of 3.4e6."""
    scale = abs(value) if value != 0 else (abs(high - low) if low is not None and high is not None else 0.0)
    if not np.isfinite(scale) or scale == 0:
        return 0.01
    return float(10 ** np.floor(np.log10(0.05 * scale)))


def harrell_davis(x: np.ndarray, a: float, axis: int = -1) -> np.ndarray:
    """The Harrell-Davis estimate of the a-quantile: a beta-weighted average of every order
    statistic (Harrell and Davis 1982). Smooth in the sample, so a finite difference of it
    with common random numbers averages the derivatives of many scenarios near the quantile,
    where a difference of the plain empirical quantile follows the one or two that sit on it:
    the checks of the VaR derivatives difference this one."""
    from scipy.special import betainc

    x = np.sort(np.asarray(x, np.float64), axis=axis)
    n = x.shape[axis]
    edges = betainc(a * (n + 1), (1 - a) * (n + 1), np.arange(n + 1) / n)
    w = np.diff(edges)
    return np.tensordot(np.moveaxis(x, axis, -1), w, axes=([-1], [0]))
