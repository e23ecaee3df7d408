"""The check of a study's correlation matrix (NumPy): what the Gaussian copula accepts.

The study checks its `correlations` with it when it is loaded, and the copula
(`mcrisk.sampling.uniforms.copula_factor`) again before it factors the matrix.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PSD_TOL", "check_correlation_matrix"]

PSD_TOL = 1e-10  # eigenvalues in [-PSD_TOL, 0) are rounding noise and are clipped to 0


def check_correlation_matrix(corr) -> str | None:
    """None if corr is a valid correlation matrix (square, finite, symmetric, unit diagonal,
    entries in [-1, 1], positive semidefinite), else a message naming the problem and the fix."""
    c = np.asarray(corr, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        return f"correlation matrix must be square, got shape {c.shape}"
    if not np.all(np.isfinite(c)):
        return "correlation matrix has non-finite entries"
    if not np.allclose(c, c.T, rtol=0, atol=1e-12):
        i, j = np.unravel_index(np.argmax(np.abs(c - c.T)), c.shape)
        return f"correlation matrix is not symmetric: [{i}, {j}] = {c[i, j]:g} but [{j}, {i}] = {c[j, i]:g}"
    if not np.allclose(np.diag(c), 1.0, rtol=0, atol=1e-12):
        return f"correlation matrix needs a unit diagonal, got {np.diag(c).tolist()}"
    if np.any(np.abs(c) > 1):
        i, j = np.unravel_index(np.argmax(np.abs(c)), c.shape)
        return f"correlation [{i}, {j}] = {c[i, j]:g} is outside [-1, 1]"
    smallest = float(np.linalg.eigvalsh(c)[0]) if c.size else 0.0
    if smallest < -PSD_TOL:
        return (
            f"correlation matrix is not positive semidefinite (smallest eigenvalue {smallest:.4g}, "
            f"must be >= -{PSD_TOL:g}): the correlations contradict each other; lower the "
            f"correlations (in absolute value) until they are consistent"
        )
    return None
