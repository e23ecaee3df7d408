"""The report's density curves: on a linear axis, with as many modes as a linear histogram of the
same rows, units on every axis, and the kernel density's numbers checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import find_peaks

from mcrisk.report import figures as fg
from mcrisk.report.density import bandwidth, density


def modes(y: np.ndarray, prominence: float = 0.03) -> int:
    """Local maxima of a curve standing out by at least `prominence` of its peak (zeros padded at
    both ends, so a maximum at an edge counts)."""
    y = np.concatenate(([0.0], np.asarray(y, np.float64), [0.0]))
    return len(find_peaks(y, prominence=prominence * y.max())[0])


def histogram_modes(x: np.ndarray, prominence: float = 0.03, bins: int = 50) -> int:
    """The modes of a linear histogram of `x`: `bins` bins from its P0.1 to its P99.9."""
    counts, _ = np.histogram(x, bins=bins, range=tuple(np.percentile(x, (0.1, 99.9))))
    return modes(counts, prominence)


def percentiles(x: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(x, q)) for q in (1, 5, 10, 25, 50, 75, 90, 95, 99)}


RNG = np.random.default_rng(11)
N = 200_000  # (the report draws at most 200,000 scenarios per system)
CASES = {  # name -> (rows of NPV in $, their number of modes)
    "unimodal": (RNG.normal(5e6, 3e6, N), 1),
    "bimodal": (np.concatenate([RNG.normal(-2e6, 0.6e6, N // 2), RNG.normal(4e6, 0.8e6, N // 2)]), 2),
    # A loss tail rising steadily from -$4M towards a single peak at $20M (the default study's GB200):
    # a density drawn on an asinh axis linear within +-$200k shows a second hump near -$2M here.
    "loss tail": (RNG.normal(20e6, 15e6, N), 1),
    "long tail": (25e6 - RNG.lognormal(np.log(5e6), 0.6, N), 1),
    # Two systems' scales 50 times apart in one figure (a rack against a server).
    "small and unimodal": (RNG.normal(1e5, 6e4, N), 1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_density_has_the_modes_of_a_linear_histogram(name):
    x, expected = CASES[name]
    assert histogram_modes(x) == expected  # the synthetic rows are what they claim
    grid, pdf = density(x)
    assert modes(pdf) == expected


def test_the_plotted_density_of_each_system_has_the_modes_of_its_histogram():
    names = list(CASES)
    samples = {n: CASES[n][0] for n in names}
    fig = fg.distribution("npv_usd", {n: percentiles(x) for n, x in samples.items()}, fg.palette(names), samples)
    ax_density, ax_ecdf = fig.axes
    assert ax_density.get_xscale() == ax_ecdf.get_xscale() == "linear"
    drawn = {line.get_label(): line.get_ydata() for line in ax_density.get_lines() if line.get_label() in samples}
    assert set(drawn) == set(names)
    for n in names:
        assert modes(drawn[n]) == histogram_modes(samples[n]) == CASES[n][1], n


def test_the_density_integrates_to_one_and_matches_the_normal_convolved_with_its_kernel():
    x = RNG.normal(0.0, 2.0, 200_000)
    grid, pdf = density(x, h=0.5)
    step = grid[1] - grid[0]
    assert pdf.sum() * step == pytest.approx(1.0, abs=1e-9)
    # A N(0, 2^2) sample smoothed by a N(0, 0.5^2) kernel: N(0, 2^2 + 0.5^2), peak 1/sqrt(2 pi 4.25) = 0.19352
    peak = 1 / math.sqrt(2 * math.pi * 4.25)
    assert pdf.max() == pytest.approx(peak, rel=0.02)
    assert grid[np.argmax(pdf)] == pytest.approx(0.0, abs=0.1)


def test_silverman_bandwidth_by_hand():
    # x = 1..10: sd = sqrt(110/12) = 3.0277, IQR = 7.75 - 3.25 = 4.5, 4.5 / 1.349 = 3.3358 > sd;
    # h = 0.9 * 3.0277 * 10^(-1/5) = 1.7193
    x = np.arange(1.0, 11.0)
    assert bandwidth(x) == pytest.approx(0.9 * math.sqrt(110 / 12) * 10**-0.2, rel=1e-12)
    assert bandwidth(x) == pytest.approx(1.7193, abs=1e-4)
    # With an outlier the IQR rule takes over: x = 1..9 and 1000
    y = np.append(np.arange(1.0, 10.0), 1000.0)
    assert bandwidth(y) == pytest.approx(0.9 * (np.subtract(*np.quantile(y, (0.75, 0.25))) / 1.349) * 10**-0.2)


@pytest.mark.parametrize("x", [np.array([]), np.array([3.0]), np.full(10, 2.5), np.array([np.nan, 1.0, np.inf])])
def test_nothing_to_draw_gives_none(x):
    assert density(x) is None


def test_non_finite_values_are_left_out():
    x = RNG.normal(0, 1, 1000)
    with_nan = np.concatenate([x, [np.nan, np.inf, -np.inf]])
    a, b = density(x), density(with_nan)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize(
    ("metric", "unit", "label"),
    [
        ("npv_usd", "$", "NPV ($)"),
        ("cost_per_mtok_usd", "$/Mtok", "cost per Mtok sold ($/Mtok)"),
        ("irr", "%", "IRR (%/yr)"),
        ("roi_multiple", "x", "revenue per $ of capex (x)"),
        ("payback_months", "months", "payback (months)"),
        ("market.electricity.usd_per_kwh", "$/kWh", "electricity price ($/kWh)"),
        ("breakeven_rental_usd_per_gpu_hour", "$/GPU-h", "break-even initial rental ($/GPU-h)"),
    ],
)
def test_units_of_the_axes(metric, unit, label):
    assert fg.unit(metric) == unit
    assert fg.axis_label(metric) == label


def test_every_axis_of_the_distribution_and_tornado_has_a_unit():
    import pandas as pd

    x = RNG.normal(0.12, 0.03, 2000)
    fig = fg.distribution("cost_per_mtok_usd", {"a": percentiles(x)}, {"a": "#000000"}, {"a": x})
    for ax in fig.axes:
        assert "$/Mtok" in ax.get_xlabel()
    drivers = pd.DataFrame(
        {
            "system": ["a", "a"],
            "input": ["market.token_price.initial_usd_per_mtok", "facility.pue"],
            "rank": [1, 2],
            "first_order": [0.6, 0.2],
            "bottom_p50": [0.10, 0.11],
            "top_p50": [0.14, 0.13],
        }
    )
    fig = fg.tornado(drivers, {"a": 0.12}, {"a": "#000000"}, "cost_per_mtok_usd")
    assert "($/Mtok)" in fig.axes[-1].get_xlabel()
    assert "$0.12/Mtok" in fig.axes[0].get_title(loc="left")
