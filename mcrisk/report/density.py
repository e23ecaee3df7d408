"""The density curve the report draws for a metric: a Gaussian kernel density on the metric's own
(linear) axis, so the curve has the modes the scenarios have and no others.

A transformed axis (asinh, log) widens the bins of the tails: a tail that rises steadily towards the
centre can turn into a second hump there. On a linear axis the kernel density is a smoothed
histogram, with its bandwidth set by Silverman's robust rule of thumb,
``h = 0.9 min(sd, IQR / 1.349) n^(-1/5)`` (Silverman 1986, eq. 3.31), the common default of
statistics packages (R's ``bw.nrd0``). It is computed by binning: the rows are counted on a grid of
at most ``MAX_BINS`` cells at most h/4 wide and the counts convolved with the kernel, which differs
from the exact sum by far less than a pixel of the figure.
"""

from __future__ import annotations

import numpy as np

MAX_BINS = 8192  # grid cells of the binned density: a step of at most h/4, or of the range / MAX_BINS


def bandwidth(x: np.ndarray) -> float:
    """Silverman's robust bandwidth of the finite values `x`; 0 for fewer than two distinct values."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return 0.0
    sd = float(np.std(x, ddof=1))
    q25, q75 = np.quantile(x, (0.25, 0.75))
    spread = min(sd, float(q75 - q25) / 1.349) or sd  # (IQR 0 with sd > 0: a point mass plus a tail)
    return 0.9 * spread * x.size ** (-0.2)


def density(x: np.ndarray, h: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The Gaussian kernel density of the finite values of `x` on a linear grid: ``(grid, pdf)``,
    the pdf integrating to 1 over the grid (which runs 4 bandwidths past the extreme values).

    `h`: the bandwidth (default: :func:`bandwidth`). None when there is nothing to draw: fewer
    than two finite values, or all of them equal.
    """
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    h = bandwidth(x) if h is None else float(h)
    if x.size < 2 or not h > 0 or np.ptp(x) == 0:
        return None
    lo, hi = float(x.min()) - 4 * h, float(x.max()) + 4 * h
    bins = int(min(MAX_BINS, max(64, np.ceil((hi - lo) / (h / 4)))))
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    step = edges[1] - edges[0]
    reach = int(min((bins - 1) // 2, np.ceil(4 * h / step)))
    offsets = np.arange(-reach, reach + 1) * step
    kernel = np.exp(-0.5 * (offsets / h) ** 2)
    kernel /= kernel.sum()  # a kernel narrower than a cell (a capped grid) keeps its mass
    pdf = np.convolve(counts.astype(np.float64), kernel, mode="same") / (x.size * step)
    return 0.5 * (edges[:-1] + edges[1:]), pdf
