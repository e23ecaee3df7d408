"""The DIST forms of a study: pydantic models, supports, means and inverse CDFs.

Every form maps a uniform u in (0, 1) to a value through `quantile(u)`, a pure
JAX function (jit/vmap/grad safe) that keeps the dtype of `u`. Parameters are
validated once, on the host, when a model is built; `quantile` never raises.

`quantiles(dists, u, params)` evaluates many forms at once with their numbers as arguments
(`quantile_params`): arrays whose shapes depend only on the forms, so studies that differ
only in their distributions' values share one compiled program.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Annotated, Any, ClassVar, Literal, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter,
                      ValidationInfo, field_validator, model_validator)
from scipy import special

from mcrisk.sampling import beta as beta_tables
from mcrisk.study.checks import Num as _Num, above_low as _above_low, fmt_e as _e, fmt_g as _g
from mcrisk.study.checks import mode_inside as _mode_inside, positive as _positive

__all__ = ["Fixed", "Uniform", "LogUniform", "Triangular", "Pert", "Normal", "LogNormal",
           "Beta", "Discrete", "Dist", "parse_dist", "quantiles", "quantile_params", "clamp_uniform", "Z95"]

Z95 = 1.6448536269514722
"""ndtri(0.95): a lognormal's p5 and p95 lie Z95 sigmas either side of its log-median."""


def clamp_uniform(u: jax.Array) -> jax.Array:
    """Clamp uniforms into [eps, 1 - eps] of their dtype; same shape and dtype.

    eps = finfo(dtype).eps (1.19e-7 float32, 2.2e-16 float64), as NumPyro's
    `clamp_probs`: it is the smallest step of a [0, 1) uniform generator, so
    only an exact 0 moves, 1 - eps is still < 1, and every inverse CDF below
    stays finite (no log(0), ndtri(0) or logit(1)).
    """
    u = jnp.asarray(u)
    if not jnp.issubdtype(u.dtype, jnp.floating):
        raise TypeError(f"quantile needs floating uniforms, got dtype {u.dtype}")
    eps = float(jnp.finfo(u.dtype).eps)
    return jnp.clip(u, eps, 1.0 - eps)


def _in_dtype(params: tuple, dtype) -> tuple:
    """Parameters (float64 on the host, or already traced) in the dtype of the uniforms."""
    return tuple(jnp.asarray(a, dtype) for a in params)


def _cols(p: jax.Array, u: jax.Array) -> list[jax.Array]:
    """The columns of a (k, m) parameter array, each shaped to broadcast along axis 0 of u (k, ...)."""
    return [c.reshape((-1,) + (1,) * (u.ndim - 1)) for c in p.T]


@functools.partial(jax.jit, static_argnums=0)
def _ppf(kind: type, params: tuple, probs: jax.Array) -> jax.Array:
    """Quantiles of one form of class `kind` at probs (p,), its parameters (`_pack`) as arguments:
    one program per class, dtype and number of probabilities, whatever the values."""
    return kind._batch(params, clamp_uniform(probs)[None])[0]


_PPF_KEPT: dict[tuple[str, tuple[float, ...]], np.ndarray] = {}


class _DistBase(BaseModel):
    """Common interface of the DIST forms: support, mean, describe, quantile."""

    # validate_by_name etc.: Normal and Beta store their `mean` parameter as
    # `mean_` (alias "mean"), since `mean()` is the method every form shares.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)
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
        args = [f"{fields[k].alias or k}={_g(getattr(self, k))}" for k in self._show
                if getattr(self, k) is not None and getattr(self, k) != fields[k].default]
        return f"{self.dist}({', '.join(args)})"

    def quantile(self, u: jax.Array) -> jax.Array:
        """Inverse CDF, pure JAX: uniforms in (0, 1), any shape, float32/64 -> values, same shape and dtype.

        u is clamped first (`clamp_uniform`); differentiable in u for the continuous forms.
        """
        return self._quantile(clamp_uniform(u))

    def ppf(self, probs: Sequence[float]) -> np.ndarray:
        """float64 quantiles at `probs`, for tables: one compiled call on the host CPU (op by op,
        each primitive would compile on its own: 1.3 s for a lognormal, against 0.14 s), its
        parameters as arguments (one program per class of form), kept per form and probabilities
        (a study's stresses ask again for the same)."""
        key = (self.model_dump_json(), tuple(float(p) for p in probs))
        if key not in _PPF_KEPT:
            with jax.default_device(jax.local_devices(backend="cpu")[0]):
                values = np.asarray(_ppf(type(self), type(self)._pack([self]), np.asarray(key[1], np.float64)), np.float64)
            if len(_PPF_KEPT) >= 256:
                _PPF_KEPT.clear()
            _PPF_KEPT[key] = values
        return _PPF_KEPT[key].copy()

    def _quantile(self, u: jax.Array) -> jax.Array:
        # One formula serves one draw and many: a single form is a batch of one column, its
        # parameters constants of the program.
        return type(self)._batch(_in_dtype(type(self)._pack([self]), u.dtype), u[None])[0]

    def _params(self) -> tuple:
        """This form's numbers as `_batch` reads them, worked out in float64 on the host: a vector
        (bounds, widths, log-parameters), then any tables; their shapes depend on the form only."""
        raise NotImplementedError

    @classmethod
    def _pack(cls, dists: Sequence["_DistBase"]) -> tuple:
        """The parameters of k forms of this class, float64: each of `_params` stacked to (k, ...)."""
        return tuple(np.stack([np.asarray(a, np.float64) for a in arrays]) for arrays in zip(*(d._params() for d in dists)))

    @classmethod
    def _batch(cls, params: tuple, u: jax.Array) -> jax.Array:
        """Inverse CDFs of k forms of this class at once: their parameters (`_pack`, in u's dtype)
        and clamped u (k, ...) -> (k, ...), form j on row j. A pure function of both: the
        parameters may be traced. Forms along the first axis, so that each form's parameters are
        one value across a contiguous row: XLA's CPU loops vectorize that, and not a parameter
        that changes along the last axis (7 lognormals of 16,384 draws: 1.5 ms against 4.5)."""
        raise NotImplementedError


class Fixed(_DistBase):
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

    def _params(self):
        return ([self.value],)

    @classmethod
    def _batch(cls, params, u):
        return jnp.broadcast_to(_cols(params[0], u)[0], u.shape)


class Uniform(_DistBase):
    """Uniform on [low, high], low < high."""

    dist: Literal["uniform"] = "uniform"
    low: _Num
    high: _Num
    _high = field_validator("high")(_above_low)

    def mean(self):
        return 0.5 * (self.low + self.high)

    def _params(self):
        return ([self.low, self.high, self.high - self.low],)

    @classmethod
    def _batch(cls, params, u):
        lo, hi, width = _cols(params[0], u)
        return jnp.clip(lo + u * width, lo, hi)


class LogUniform(_DistBase):
    """Log-uniform on [low, high]: log(x) uniform; 0 < low < high."""

    dist: Literal["loguniform"] = "loguniform"
    low: _Num
    high: _Num
    _low = field_validator("low")(_positive)
    _high = field_validator("high")(_above_low)

    def mean(self):
        return (self.high - self.low) / math.log(self.high / self.low)

    def _params(self):
        return ([math.log(self.low), math.log(self.high / self.low), self.low, self.high],)

    @classmethod
    def _batch(cls, params, u):
        log_lo, log_ratio, lo, hi = _cols(params[0], u)
        return jnp.clip(jnp.exp(log_lo + u * log_ratio), lo, hi)  # exp may round just outside


class Triangular(_DistBase):
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

    def _params(self):
        r = self.high - self.low
        return ([self.low, self.high, (self.mode - self.low) / r, r * (self.mode - self.low), r * (self.high - self.mode)],)

    @classmethod
    def _batch(cls, params, u):
        lo, hi, split, left_area, right_area = _cols(params[0], u)
        left = u < split
        # Each sqrt gets a harmless 1 where its branch is not taken, so that the
        # untaken branch (sqrt(0) when mode == low or high) cannot put NaN in grad.
        a = jnp.where(left, u * left_area, 1.0)
        b = jnp.where(left, 1.0, (1.0 - u) * right_area)
        return jnp.clip(jnp.where(left, lo + jnp.sqrt(a), hi - jnp.sqrt(b)), lo, hi)


# ---------------------------------------------------------------- beta-shaped forms
# Their inverse CDFs read a float64 table per (alpha, beta) (mcrisk/beta.py).

class _BetaShaped(_DistBase):
    """A beta distribution rescaled to [low, high]; subclasses give shape_params()."""

    def shape_params(self) -> tuple[float, float]:
        """The (alpha, beta) of the underlying Beta on [0, 1]."""
        raise NotImplementedError

    def _params(self):
        return ([self.low, self.high, self.high - self.low], *beta_tables.table(*self.shape_params()))

    @classmethod
    def _batch(cls, params, u):
        bounds, y_tab, dy_tab = params
        lo, hi, width = _cols(bounds, u)
        return jnp.clip(lo + width * beta_tables.unit_quantile(y_tab, dy_tab, u), lo, hi)


class Pert(_BetaShaped):
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
        return (1.0 + self.shape * (self.mode - self.low) / r,
                1.0 + self.shape * (self.high - self.mode) / r)

    def mean(self):
        return (self.low + self.shape * self.mode + self.high) / (self.shape + 2.0)


class Beta(_BetaShaped):
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
                raise ValueError(f"too large for mean {_e(m)} on [{_e(low)}, {_e(high)}]: need sd < "
                                 f"sqrt((mean-low)*(high-mean)) = {bound:.4g}, got {_e(v)}")
        return v

    def shape_params(self):
        r = self.high - self.low
        mu, var = (self.mean_ - self.low) / r, (self.sd / r) ** 2
        nu = mu * (1.0 - mu) / var - 1.0
        return (mu * nu, (1.0 - mu) * nu)

    def mean(self):
        return self.mean_


# ---------------------------------------------------------------- normal family

def _truncation(mean: float, sd: float, low: Optional[float], high: Optional[float]):
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


class Normal(_DistBase):
    """Normal(mean, sd), optionally truncated to [low, high] (either bound may be left out)."""

    dist: Literal["normal"] = "normal"
    mean_: _Num = Field(alias="mean")
    sd: _Num
    low: Optional[_Num] = None
    high: Optional[_Num] = None
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
            _, pa, pb = _truncation(m, sd, low, v if high else None)
            if not abs(pb - pa) > 0:
                raise ValueError(f"leaves no probability mass of normal(mean={_e(m)}, sd={_e(sd)}) "
                                 f"(bound {(v - m) / sd:.3g} sd from the mean); move it towards the mean")
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

    def _params(self):
        mirror, pa, pb = _truncation(self.mean_, self.sd, self.low, self.high)
        return ([pa, pb - pa, -self.sd if mirror else self.sd, self.mean_, *self.support()],)

    @classmethod
    def _batch(cls, params, u):
        # Untruncated: pa = 0, pb = 1, so pa + u (pb - pa) is u exactly.
        pa, width, signed_sd, mean, lo, hi = _cols(params[0], u)
        x = mean + signed_sd * jax.scipy.special.ndtri(pa + u * width)
        return jnp.clip(x, lo, hi)  # rounding in ndtri may step just outside


class LogNormal(_DistBase):
    """Lognormal from EITHER its 5th/95th percentiles {p5, p95} OR {median, sigma} (sigma: sd of log x)."""

    dist: Literal["lognormal"] = "lognormal"
    p5: Optional[_Num] = None
    p95: Optional[_Num] = Field(None, validate_default=True)
    median: Optional[_Num] = Field(None, validate_default=True)
    sigma: Optional[_Num] = Field(None, validate_default=True)
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

    def _params(self):
        return (list(self.log_params()),)

    @classmethod
    def _batch(cls, params, u):
        mu, s = _cols(params[0], u)
        return jnp.exp(mu + s * jax.scipy.special.ndtri(u))


class Discrete(_DistBase):
    """Finite distribution: P(x = values[k]) = weights[k] / sum(weights); weights >= 0, sum > 0.

    Fields keep the order given; quantile() sorts values ascending (with their
    weights) and drops zero weights, so it is monotone and never draws them.
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
        return (f"discrete(values=[{', '.join(map(_g, self.values))}], "
                f"weights=[{', '.join(map(_g, self.weights))}])")

    @classmethod
    def _pack(cls, dists):
        """(values, cdf), each (k, size): padded to a size that depends only on the number of values
        (a power of 2, at least 8), the values with the last, the cdf with +inf (never < u)."""
        tables = [d.table() for d in dists]
        size = max(8, *(1 << (len(x) - 1).bit_length() for x, _ in tables))
        x = np.stack([np.pad(x, (0, size - len(x)), mode="edge") for x, _ in tables])
        cdf = np.stack([np.pad(c, (0, size - len(c)), constant_values=np.inf) for _, c in tables])
        return x, cdf

    @classmethod
    def _batch(cls, params, u):
        x, cdf = params
        # Q(u) = min{x_k : F(x_k) >= u}: u equal to a boundary F(x_k) gives x_k. The padding is
        # never below u, so it counts only where u is NaN, as the last value does.
        # compare_all (a count of cdf < u) is fastest for the few values a study lists and cheap to compile.
        method = "compare_all" if cdf.shape[-1] <= 64 else "sort"
        find = jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="left", method=method))
        k = jnp.clip(find(cdf, u), 0, cdf.shape[-1] - 1)
        return jax.vmap(lambda row, i: row[i])(x, k)


def _bare_number(obj: Any) -> Any:
    """A bare int/float (not bool) is a fixed value."""
    if isinstance(obj, bool):
        raise ValueError(f"expected a number or a mapping with a `dist` key, got {obj}")
    if isinstance(obj, numbers.Real):
        return {"dist": "fixed", "value": float(obj)}
    return obj


Dist = Annotated[
    Union[Fixed, Uniform, LogUniform, Triangular, Pert, Normal, LogNormal, Beta, Discrete],
    Field(discriminator="dist"),
    BeforeValidator(_bare_number),
]
"""Any DIST form of a study: a bare number or a mapping tagged by `dist`."""

_DIST_ADAPTER = TypeAdapter(Dist)


def parse_dist(obj: Any) -> Dist:
    """Validate one DIST (bare number, mapping or model); raises pydantic.ValidationError."""
    return _DIST_ADAPTER.validate_python(obj)


def _groups(dists: Sequence[Dist]) -> list[tuple[type, list[int]]]:
    """The columns of each class of form (beta and PERT together), in order of first appearance."""
    groups: dict[type, list[int]] = {}
    for j, d in enumerate(dists):
        groups.setdefault(type(d) if not isinstance(d, _BetaShaped) else _BetaShaped, []).append(j)
    return list(groups.items())


def quantile_params(dists: Sequence[Dist], dtype) -> list[tuple]:
    """The numbers of `dists` as `quantiles` takes them: per class of form, a tuple of arrays in
    `dtype` (worked out in float64 on the host, then rounded once). Their shapes depend only on
    which forms sit in which columns (and a discrete form's padded size), not on their values."""
    return [tuple(a.astype(np.dtype(dtype)) for a in kind._pack([dists[j] for j in cols])) for kind, cols in _groups(dists)]


def quantiles(dists: Sequence[Dist], u: jax.Array, params: Sequence[tuple] | None = None) -> list[jax.Array]:
    """Inverse CDFs of many forms at once: u (n, k) uniforms -> k arrays (n,).

    Column j equals ``dists[j].quantile(u[:, j])``; forms of one class are evaluated together
    as one vectorized formula, so a study with 50 uncertain inputs compiles a handful of
    kernels rather than 50. `params` (`quantile_params(dists, u.dtype)`, the default) may be
    traced: a program that takes them as arguments serves any `dists` of the same forms.
    """
    u = clamp_uniform(u)
    groups = _groups(dists)
    if params is None:
        params = quantile_params(dists, u.dtype)
    out: list[jax.Array | None] = [None] * len(dists)
    for (kind, cols), p in zip(groups, params, strict=True):
        # (k, n): one row per form (see _DistBase._batch), from static column slices
        block = kind._batch(_in_dtype(p, u.dtype), jnp.stack([u[:, j] for j in cols]))
        for c, j in enumerate(cols):
            out[j] = block[c]
    return out
