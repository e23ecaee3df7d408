"""The DIST forms of a study: pydantic models, their checks, supports, means and descriptions.

Parameters are validated once, on the host, when a model is built. The forms' inverse CDFs
(JAX) are in `mcrisk.sampling.quantiles`; this module is plain Python, NumPy and SciPy.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from scipy import special

from mcrisk.study.checks import Num as _Num
from mcrisk.study.checks import above_low as _above_low
from mcrisk.study.checks import fmt_e as _e
from mcrisk.study.checks import fmt_g as _g
from mcrisk.study.checks import mode_inside as _mode_inside
from mcrisk.study.checks import positive as _positive

__all__ = [
    "Fixed",
    "Uniform",
    "LogUniform",
    "Triangular",
    "Pert",
    "Normal",
    "LogNormal",
    "Beta",
    "Discrete",
    "Dist",
    "DistBase",
    "BetaShaped",
    "parse_dist",
    "truncation",
    "Z95",
]

Z95 = 1.6448536269514722
"""ndtri(0.95): a lognormal's p5 and p95 lie Z95 sigmas either side of its log-median."""


class DistBase(BaseModel):
    """Common interface of the DIST forms: support, mean, describe (inverse CDFs: mcrisk.sampling.quantiles)."""

    # validate_by_name etc.: Normal and Beta store their `mean` parameter as
    # `mean_` (alias "mean"), since `mean()` is the method every form shares.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )
    _show: ClassVar[tuple[str, ...]] = ("low", "high")  # attributes describe() shows, in order

    @property
    def is_fixed(self) -> bool:
        """True when every draw is the same value: `Fixed`, or `Discrete` with one value."""
        return False

    def support(self) -> tuple[float, float]:
        """Closed interval holding every draw; -inf/inf where unbounded."""
        return (self.low, self.high)  # the forms with bounds; the others override

    def mean(self) -> float:
        """Analytic mean, host float64."""
        raise NotImplementedError

    def describe(self) -> str:
        """Short human form, e.g. `uniform(low=1, high=2)`; parameters left at their default are omitted."""
        fields = type(self).model_fields
        args = [
            f"{fields[k].alias or k}={_g(getattr(self, k))}"
            for k in self._show
            if getattr(self, k) is not None and getattr(self, k) != fields[k].default
        ]
        return f"{self.dist}({', '.join(args)})"


class Fixed(DistBase):
    """A fixed value (also what a bare number in a study becomes)."""

    dist: Literal["fixed"] = "fixed"
    value: _Num

    @property
    def is_fixed(self) -> bool:
        return True

    def support(self):
        return (self.value, self.value)

    def mean(self):
        return self.value

    def describe(self):
        return _g(self.value)


class Uniform(DistBase):
    """Uniform on [low, high], low < high."""

    dist: Literal["uniform"] = "uniform"
    low: _Num
    high: _Num
    _high = field_validator("high")(_above_low)

    def mean(self):
        return 0.5 * (self.low + self.high)


class LogUniform(DistBase):
    """Log-uniform on [low, high]: log(x) uniform; 0 < low < high."""

    dist: Literal["loguniform"] = "loguniform"
    low: _Num
    high: _Num
    _low = field_validator("low")(_positive)
    _high = field_validator("high")(_above_low)

    def mean(self):
        return (self.high - self.low) / math.log(self.high / self.low)


class Triangular(DistBase):
    """Triangular on [low, high] with peak at mode; low < high, low <= mode <= high."""

    dist: Literal["triangular"] = "triangular"
    low: _Num
    high: _Num
    mode: _Num  # declared after high so its validator sees both bounds
    _show = ("low", "mode", "high")
    _high = field_validator("high")(_above_low)
    _mode = field_validator("mode")(_mode_inside)

    def mean(self):
        return (self.low + self.mode + self.high) / 3.0


# ---------------------------------------------------------------- beta-shaped forms
# Their inverse CDFs read a float64 table per (alpha, beta) (mcrisk.sampling.beta).


class BetaShaped(DistBase):
    """A beta distribution rescaled to [low, high]; subclasses give shape_params()."""

    def shape_params(self) -> tuple[float, float]:
        """The (alpha, beta) of the underlying Beta on [0, 1]."""
        raise NotImplementedError


class Pert(BetaShaped):
    """Beta-PERT on [low, high]: alpha = 1 + shape (mode-low)/(high-low), beta = 1 + shape (high-mode)/(high-low)."""

    dist: Literal["pert"] = "pert"
    low: _Num
    high: _Num
    mode: _Num
    shape: _Num = 4.0
    _show = ("low", "mode", "high", "shape")
    _high = field_validator("high")(_above_low)
    _mode = field_validator("mode")(_mode_inside)
    _shape = field_validator("shape")(_positive)

    def shape_params(self):
        r = self.high - self.low
        return (1.0 + self.shape * (self.mode - self.low) / r, 1.0 + self.shape * (self.high - self.mode) / r)

    def mean(self):
        return (self.low + self.shape * self.mode + self.high) / (self.shape + 2.0)


class Beta(BetaShaped):
    """Beta rescaled to [low, high] (default [0, 1]), given by the mean and sd of the VALUE on [low, high].

    So `{dist: beta, mean: 30, sd: 5, low: 0, high: 100}` has mean 30, sd 5;
    needs low < mean < high and 0 < sd < sqrt((mean-low)*(high-mean)).
    """

    dist: Literal["beta"] = "beta"
    low: _Num = 0.0  # bounds first: the mean and sd checks need them
    high: _Num = 1.0
    mean_: _Num = Field(alias="mean")
    sd: _Num
    _show = ("mean_", "sd", "low", "high")
    _high = field_validator("high")(_above_low)

    @field_validator("mean_")
    @classmethod
    def _mean_inside(cls, v, info: ValidationInfo):
        low, high = info.data.get("low"), info.data.get("high")
        if low is not None and high is not None and not low < v < high:
            raise ValueError(f"must lie strictly inside (low, high) = ({_e(low)}, {_e(high)}), got {_e(v)}")
        return v

    @field_validator("sd")
    @classmethod
    def _sd_fits(cls, v, info: ValidationInfo):
        _positive(cls, v, info)
        m, low, high = (info.data.get(k) for k in ("mean_", "low", "high"))
        if None not in (m, low, high):
            bound = math.sqrt((m - low) * (high - m))
            if not v < bound:
                raise ValueError(
                    f"too large for mean {_e(m)} on [{_e(low)}, {_e(high)}]: need sd < "
                    f"sqrt((mean-low)*(high-mean)) = {bound:.4g}, got {_e(v)}"
                )
        return v

    def shape_params(self):
        r = self.high - self.low
        mu, var = (self.mean_ - self.low) / r, (self.sd / r) ** 2
        nu = mu * (1.0 - mu) / var - 1.0
        return (mu * nu, (1.0 - mu) * nu)

    def mean(self):
        return self.mean_


# ---------------------------------------------------------------- normal family


def truncation(mean: float, sd: float, low: float | None, high: float | None):
    """(mirror, pa, pb) with z = ±ndtri(pa + u (pb - pa)); mass = |pb - pa|, host float64.

    When both bounds lie above the mean, Phi(a) and Phi(b) round to 1 and their
    difference cancels; the mirror form works with the upper tails Phi(-a), Phi(-b).
    """
    if low is None and high is None:
        return False, 0.0, 1.0
    a = -math.inf if low is None else (low - mean) / sd
    b = math.inf if high is None else (high - mean) / sd
    if a > 0:
        return True, float(special.ndtr(-a)), float(special.ndtr(-b))
    return False, float(special.ndtr(a)), float(special.ndtr(b))


class Normal(DistBase):
    """Normal(mean, sd), optionally truncated to [low, high] (either bound may be left out)."""

    dist: Literal["normal"] = "normal"
    mean_: _Num = Field(alias="mean")
    sd: _Num
    low: _Num | None = None
    high: _Num | None = None
    _show = ("mean_", "sd", "low", "high")
    _sd = field_validator("sd")(_positive)

    @field_validator("low", "high")
    @classmethod
    def _has_mass(cls, v, info: ValidationInfo):
        if v is None:
            return v
        high = info.field_name == "high"
        if high:
            _above_low(cls, v, info)
        if "mean_" in info.data and "sd" in info.data:
            m, sd = info.data["mean_"], info.data["sd"]
            # low alone is checked here; high checks itself together with low.
            low = info.data.get("low") if high else v
            _, pa, pb = truncation(m, sd, low, v if high else None)
            if not abs(pb - pa) > 0:
                raise ValueError(
                    f"leaves no probability mass of normal(mean={_e(m)}, sd={_e(sd)}) "
                    f"(bound {(v - m) / sd:.3g} sd from the mean); move it towards the mean"
                )
        return v

    def support(self):
        return (-math.inf if self.low is None else self.low, math.inf if self.high is None else self.high)

    def mean(self):
        if self.low is None and self.high is None:
            return self.mean_
        a = -np.inf if self.low is None else (self.low - self.mean_) / self.sd
        b = np.inf if self.high is None else (self.high - self.mean_) / self.sd
        from scipy import stats  # (here: scipy.stats takes 0.4 s to import, and every run would pay it)

        return float(stats.truncnorm(a, b, loc=self.mean_, scale=self.sd).mean())


class LogNormal(DistBase):
    """Lognormal from EITHER its 5th/95th percentiles {p5, p95} OR {median, sigma} (sigma: sd of log x)."""

    dist: Literal["lognormal"] = "lognormal"
    p5: _Num | None = None
    p95: _Num | None = Field(None, validate_default=True)
    median: _Num | None = Field(None, validate_default=True)
    sigma: _Num | None = Field(None, validate_default=True)
    _show = ("p5", "p95", "median", "sigma")
    _pos = field_validator("p5", "median")(_positive)

    @field_validator("p95")
    @classmethod
    def _p95(cls, v, info: ValidationInfo):
        p5 = info.data.get("p5")
        if v is None and p5 is not None:
            raise ValueError("is required with p5: give both percentiles")
        if v is not None and "p5" in info.data and p5 is None:
            raise ValueError("needs p5 as well: give both percentiles")
        if v is not None and p5 is not None and not v > p5:
            raise ValueError(f"must be > p5 ({_e(p5)}), got {_e(v)}")
        return v

    @field_validator("median", "sigma")
    @classmethod
    def _pair(cls, v, info: ValidationInfo):
        if v is not None and (info.data.get("p5") is not None or info.data.get("p95") is not None):
            raise ValueError("give either {p5, p95} or {median, sigma}, not both")
        if info.field_name == "sigma":
            _positive(cls, v, info)
            if v is None and info.data.get("median") is not None:
                raise ValueError("is required with median: give the sd of log x")
            if v is not None and "median" in info.data and info.data["median"] is None:
                raise ValueError("needs median as well")
        return v

    @model_validator(mode="after")
    def _one_pair(self):
        if self.p5 is None and self.median is None:
            raise ValueError("lognormal needs either {p5, p95} or {median, sigma}")
        return self

    def log_params(self) -> tuple[float, float]:
        """(mu, sigma) of log x: p5/p95 sit at mu -/+ Z95 sigma."""
        if self.median is not None:
            return math.log(self.median), self.sigma
        lo, hi = math.log(self.p5), math.log(self.p95)
        return 0.5 * (lo + hi), (hi - lo) / (2.0 * Z95)

    def support(self):
        return (0.0, math.inf)

    def mean(self):
        mu, s = self.log_params()
        return math.exp(mu + 0.5 * s * s)


class Discrete(DistBase):
    """Finite distribution: P(x = values[k]) = weights[k] / sum(weights); weights >= 0, sum > 0.

    Fields keep the order given; `table()` (what the inverse CDF reads) sorts values ascending
    (with their weights) and drops zero weights, so the inverse CDF is monotone and never draws them.
    """

    dist: Literal["discrete"] = "discrete"
    values: tuple[_Num, ...] = Field(min_length=1)  # tuples keep the model hashable
    weights: tuple[_Num, ...]

    @field_validator("weights")
    @classmethod
    def _weights(cls, v, info: ValidationInfo):
        values = info.data.get("values")
        if values is not None and len(values) != len(v):
            raise ValueError(f"must have one weight per value ({len(values)} values, {len(v)} weights)")
        for k, w in enumerate(v):
            if not w >= 0:
                raise ValueError(f"must be >= 0, got {_e(w)} at position {k}")
        if not sum(v) > 0:
            raise ValueError("must sum to a positive number")
        return v

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(values ascending, cumulative probabilities ending at exactly 1), float64, positive weights only."""
        x, w = np.asarray(self.values, float), np.asarray(self.weights, float)
        order = np.argsort(x[w > 0], kind="stable")
        x, w = x[w > 0][order], w[w > 0][order]
        cdf = np.cumsum(w) / w.sum()
        cdf[-1] = 1.0
        return x, cdf

    @property
    def is_fixed(self) -> bool:
        return len(self.table()[0]) == 1

    def support(self):
        x, _ = self.table()
        return (float(x[0]), float(x[-1]))

    def mean(self):
        return float(np.dot(self.values, self.weights) / np.sum(self.weights))

    def describe(self):
        return f"discrete(values=[{', '.join(map(_g, self.values))}], weights=[{', '.join(map(_g, self.weights))}])"


def _bare_number(obj: Any) -> Any:
    """A bare int/float (not bool) is a fixed value."""
    if isinstance(obj, bool):
        raise ValueError(f"expected a number or a mapping with a `dist` key, got {obj}")
    if isinstance(obj, numbers.Real):
        return {"dist": "fixed", "value": float(obj)}
    return obj


Dist = Annotated[
    Fixed | Uniform | LogUniform | Triangular | Pert | Normal | LogNormal | Beta | Discrete,
    Field(discriminator="dist"),
    BeforeValidator(_bare_number),
]
"""Any DIST form of a study: a bare number or a mapping tagged by `dist`."""

_DIST_ADAPTER = TypeAdapter(Dist)


def parse_dist(obj: Any) -> Dist:
    """Validate one DIST (bare number, mapping or model); raises pydantic.ValidationError."""
    return _DIST_ADAPTER.validate_python(obj)
