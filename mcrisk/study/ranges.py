"""The ranges a DIST field must stay in, checked on every value the distribution can take."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

from mcrisk.study.distributions import Dist, Fixed, LogNormal


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class InRange:
    """Checks that every value a DIST can take lies in [lo, hi] (open ends where asked)."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def text(self) -> str:
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"

    def __call__(self, d: Dist) -> Dist:
        lo, hi = d.support()
        # A lognormal's support is (0, inf): 0 is its infimum, never a value it takes.
        attains_lo = not isinstance(d, LogNormal)
        bad_lo = lo < self.lo or (self.lo_open and lo <= self.lo and attains_lo)
        bad_hi = hi > self.hi or (self.hi_open and hi >= self.hi)
        if not (bad_lo or bad_hi):
            return d
        if isinstance(d, Fixed):
            raise ValueError(f"must lie in {self.text()}, got {_fmt(d.value)}")
        edge = lo if bad_lo else hi
        hint = " (truncate it with low/high)" if math.isinf(edge) else ""
        raise ValueError(f"must lie in {self.text()}; {d.describe()} reaches {_fmt(edge)}{hint}")


Positive = Annotated[Dist, AfterValidator(InRange(0.0, lo_open=True))]
NonNegative = Annotated[Dist, AfterValidator(InRange(0.0))]
UnitInterval = Annotated[Dist, AfterValidator(InRange(0.0, 1.0))]
UnitHalfOpen = Annotated[Dist, AfterValidator(InRange(0.0, 1.0, hi_open=True))]
