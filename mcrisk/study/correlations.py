"""A study's correlations: the matrix of its pairs, and the checks of what the Gaussian copula accepts (NumPy).

The study checks its `correlations` when it is loaded, and the copula
(`mcrisk.sampling.uniforms.copula_factor`) again before it factors the matrix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from mcrisk.errors import Problem

if TYPE_CHECKING:
    from mcrisk.study.schema import Study

__all__ = ["PSD_TOL", "check_correlation_matrix", "check_correlations", "correlation_matrix"]

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


def correlation_matrix(pairs: Mapping[tuple[str, str], float]) -> tuple[list[str], np.ndarray]:
    """The copula's inputs (sorted study paths) and their correlation matrix, unit diagonal."""
    names = sorted({p for pair in pairs for p in pair})
    pos = {n: i for i, n in enumerate(names)}
    corr = np.eye(len(names))
    for (a, b), rho in pairs.items():
        corr[pos[a], pos[b]] = corr[pos[b], pos[a]] = rho
    return names, corr


def check_correlations(study: Study) -> list[Problem]:
    inputs = {i.path: i for i in study.inputs()}
    problems: list[Problem] = []
    pairs: dict[tuple[str, str], float] = {}
    for k, (a, b, rho) in enumerate(study.correlations):
        where = f"correlations.{k}"
        ok = True
        for j, p in enumerate((a, b)):
            if p not in inputs:
                close = difflib.get_close_matches(p, list(inputs), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(Problem(f"{where}.{j}", f"unknown input {p!r}{hint}"))
                ok = False
            elif inputs[p].dist.is_fixed:
                problems.append(
                    Problem(
                        f"{where}.{j}",
                        f"{p!r} is fixed, so it cannot be correlated; give it a distribution or drop this pair",
                    )
                )
                ok = False
        if not ok:
            continue
        if a == b:
            problems.append(Problem(where, f"pairs an input with itself ({a!r})"))
            continue
        key = tuple(sorted((a, b)))
        if key in pairs:
            problems.append(Problem(where, f"the pair ({a}, {b}) is given twice"))
            continue
        pairs[key] = rho
    if problems or not pairs:
        return problems
    _, corr = correlation_matrix(pairs)
    msg = check_correlation_matrix(corr)
    if msg:
        problems.append(Problem("correlations", msg))
    return problems
