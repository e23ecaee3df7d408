"""Income tax, debt and equity flows of the independent float64 reference model.

MODEL.md "Income tax (unlevered and levered)" and "Debt", written from the contract
alone. Monthly arrays are ``(n, T)`` (column ``j`` is month ``t = j + 1``), static ones
``(n,)``; loops run over months, vectorised over scenarios.
"""

from __future__ import annotations

import numpy as np

from .market import months_row


def tax_depreciation(capex: np.ndarray, years: np.ndarray, go_live: np.ndarray, T: int):
    """Straight-line tax depreciation to zero over ``years`` from go-live.

    ``Dx_t = I / (12 L)`` for ``g < t <= g + 12 L``, else 0. Returns ``(Dx, Bx)``: Dx (n, T)
    in $, and the tax basis left at T, ``Bx = I - sum_t Dx_t`` (n,).
    """
    t = months_row(T)
    g = go_live[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_month = (capex / (12.0 * years))[:, None]
        dx = np.where((t > g) & (t <= g + 12.0 * years[:, None]), per_month, 0.0)
    return dx, capex - dx.sum(axis=1)


def taxable_income(cash_flow, tax_dep, interest, residual, basis) -> np.ndarray:
    """``Y_t = CF_t - Dx_t - H_t``, plus the gain or loss on the sale ``V - Bx`` at T; $ (n, T)."""
    y = cash_flow - tax_dep - interest
    y[:, -1] = y[:, -1] + (residual - basis)
    return y


def income_tax(taxable: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Tax with losses carried forward without limit, $ (n, T).

    ``tax_t = x max(0, Y_t - NOL_{t-1})``, ``NOL_t = max(0, NOL_{t-1} - Y_t)``, ``NOL_0 = 0``.
    Exactly 0 where the rate is 0, whatever the income (so FCF_t = CF_t bit for bit).
    """
    n, T = taxable.shape
    x = np.broadcast_to(np.asarray(rate, dtype=np.float64), (n,))
    if np.all(x == 0.0):
        return np.zeros((n, T))
    y_cols = np.ascontiguousarray(taxable.T)
    tax = np.zeros((T, n))
    nol = np.zeros(n)
    for j in range(T):
        y = y_cols[j]
        tax[j] = np.where(x == 0.0, 0.0, x * np.maximum(0.0, y - nol))
        nol = np.maximum(0.0, nol - y)
    return np.ascontiguousarray(tax.T)


def debt_schedule(principal, annual_rate, tenor, purchase, go_live, T: int) -> dict[str, np.ndarray]:
    """A loan of ``principal`` drawn at month p, interest capitalized to go-live g, level payments after.

    ``i = rd / 12``; ``Bal_t = principal (1 + i)^(t - p)`` for ``p <= t <= g`` (nothing paid);
    ``PMT = Bal_g i / (1 - (1 + i)^-nd)`` (``Bal_g / nd`` when i = 0) in months ``g+1 .. g+nd``,
    ``H_t = i Bal_{t-1}``, ``Prin_t = PMT - H_t``, ``Bal_t = Bal_{t-1} - Prin_t``.
    All inputs (n,). Returns ``interest`` H and ``principal`` Prin, $ (n, T); ``payment`` PMT,
    ``balance_at_go_live`` Bal_g and ``balloon`` Bal_T (what is still owed after month T's
    payment, repaid at T), $ (n,).
    """
    n = np.shape(principal)[0]
    i = annual_rate / 12.0
    p, g, nd = purchase, go_live, tenor
    with np.errstate(divide="ignore", invalid="ignore"):
        bal_g = principal * (1.0 + i) ** (g - p)
        pmt = np.where(i == 0.0, bal_g / nd, bal_g * i / (1.0 - (1.0 + i) ** -nd))
    interest = np.zeros((T, n))
    repaid = np.zeros((T, n))
    bal = np.where(p == 0.0, principal, 0.0)  # Bal_0: drawn at t = 0, or not yet
    for j in range(T) if np.any(principal != 0.0) else ():  # without a loan every line stays 0
        t = j + 1.0
        paying = (t > g) & (t <= g + nd)
        h = np.where(paying, i * bal, 0.0)
        prin = np.where(paying, pmt - h, 0.0)
        lead = (t >= p) & (t <= g)
        bal = np.where(lead, principal * (1.0 + i) ** (t - p), bal - prin)
        interest[j], repaid[j] = h, prin
    return {
        "interest": np.ascontiguousarray(interest.T),
        "principal": np.ascontiguousarray(repaid.T),
        "payment": pmt,
        "balance_at_go_live": bal_g,
        "balloon": bal,
    }


def payback(capex: np.ndarray, cash_flow: np.ndarray) -> np.ndarray:
    """First month t with ``sum_{j<=t} CF_j >= I``; +inf if none; NaN if a NaN flow comes first. (n,)."""
    cum = np.cumsum(cash_flow, axis=1)
    reached = cum >= capex[:, None]
    found = reached.any(axis=1)
    first = np.argmax(reached, axis=1) + 1.0
    out = np.where(found, first, np.inf)
    # A NaN cash flow before payback leaves the answer undefined.
    nan_before = np.isnan(cum).any(axis=1) & ~found
    out[nan_before] = np.nan
    return out


def min_dscr(cover: np.ndarray, debt_service: np.ndarray) -> np.ndarray:
    """``min`` over months with ``DS_t > 0`` of ``cover_t / DS_t``; +inf where no debt is serviced. (n,)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(debt_service > 0.0, cover / debt_service, np.inf)
    return ratio.min(axis=1)
