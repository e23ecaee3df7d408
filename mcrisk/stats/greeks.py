"""Estimators of the Greeks from per-scenario metrics m_i and pathwise derivatives g_i = dm_i/dtheta.

* mean: d E[m] / d theta = E[g] (the pathwise estimator; Glasserman 2004, 7.2), its standard
  error sd(g) / sqrt(N);
* value at risk, the a-quantile q_a of m: d q_a / d theta = E[g | m = q_a] (Hong 2009), estimated
  by a Gaussian kernel of bandwidth h around the empirical quantile (Liu and Hong 2009):
  sum_i K((m_i - q_a)/h) g_i / sum_i K((m_i - q_a)/h), its standard error by the delta method
  (the kernel's bias, O(h^2), is not in it);
* P(loss) = P(m < 0): the indicator has no pathwise derivative, so it is smoothed by the same
  kernel, P_h = E[Phi(-m/h)], whose pathwise derivative is -E[phi(m/h)/h g] (smoothed
  perturbation analysis): the same as -f_m(0) E[g | m = 0].

The sums are kept chunk by chunk (:class:`Sums`), so N does not bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def _phi(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


@dataclass
class Sums:
    """Running sums over scenarios for P targets and R rows: feed chunks with :meth:`add`.

    centers: (R,) per level, the quantiles q_a; h: (R,) bandwidths."""

    centers: dict[str, np.ndarray]
    h: np.ndarray
    n: int = 0
    s: dict[str, np.ndarray] = field(default_factory=dict)

    def _acc(self, key: str, value: np.ndarray) -> None:
        self.s[key] = self.s.get(key, 0.0) + value

    def add(self, m: np.ndarray, g: np.ndarray) -> None:
        """m: (R, n) metric of the chunk's real scenarios; g: (P, R, n) their derivatives."""
        m, g = np.asarray(m, np.float64), np.asarray(g, np.float64)
        self.n += m.shape[1]
        self._acc("g", g.sum(-1))
        self._acc("gg", (g * g).sum(-1))
        h = self.h[:, None]
        for name, q in self.centers.items():
            w = _phi((m - q[:, None]) / h)  # (R, n)
            self._acc(f"{name}_w", w.sum(-1))
            self._acc(f"{name}_w2", (w * w).sum(-1))
            self._acc(f"{name}_wg", (w * g).sum(-1))
            self._acc(f"{name}_w2g", (w * w * g).sum(-1))
            self._acc(f"{name}_w2gg", (w * w * g * g).sum(-1))
        k = -_phi(m / h) / h * g  # the smoothed P(loss)'s per-scenario derivative
        self._acc("loss", k.sum(-1))
        self._acc("loss2", (k * k).sum(-1))

    def result(self) -> dict[str, np.ndarray]:
        """Each estimate and its standard error, (P, R)."""
        n, s = self.n, self.s
        out = {}
        mean = s["g"] / n
        out["d_mean"], out["d_mean_se"] = mean, np.sqrt(np.maximum(s["gg"] / n - mean**2, 0) / max(n - 1, 1))
        for name in self.centers:
            W = s[f"{name}_w"]
            r = s[f"{name}_wg"] / W
            var = (s[f"{name}_w2gg"] - 2 * r * s[f"{name}_w2g"] + r * r * s[f"{name}_w2"]) / (W * W)
            out[f"d_{name}"], out[f"d_{name}_se"] = r, np.sqrt(np.maximum(var, 0))
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
