"""Checks and number formatting shared by the DIST forms (mcrisk.study.distributions).

Field validators raise ValueError, so pydantic's error loc ends at the field. A field that failed
its own check is absent from info.data: its dependants then skip the cross-field check instead of
reporting a second, derived error.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BeforeValidator, ValidationInfo

from mcrisk.study.limits import int_problem

__all__ = ["fmt_g", "fmt_e", "positive", "above_low", "mode_inside", "plain_number", "Num", "Int", "plain_int"]


def fmt_g(x: float) -> str:
    """Shortest text that reads back as x exactly (3e+06 and 3000001 differ); plain between 1e-4 and 1e6."""
    for p in range(1, 18):
        s = f"{x:.{p}g}"
        if float(s) == x:
            break
    exp = math.floor(math.log10(abs(x))) if x else 0
    return f"{x:.{max(p, exp + 1)}g}" if 0 <= exp < 6 else s


def fmt_e(x: float) -> str:
    """fmt_g for messages: exponent forms keep a decimal point (3.0e+06), like the spec."""
    s = fmt_g(x)
    if "e" in s:
        mant, ex = s.split("e")
        s = (mant if "." in mant else mant + ".0") + "e" + ex
    return s


def positive(cls, v, info: ValidationInfo):
    if v is not None and not v > 0:
        raise ValueError(f"must be > 0, got {fmt_e(v)}")
    return v


def above_low(cls, v, info: ValidationInfo):
    low = info.data.get("low")
    if v is not None and low is not None and not v > low:
        raise ValueError(f"must be > low ({fmt_e(low)}), got {fmt_e(v)}")
    return v


def mode_inside(cls, v, info: ValidationInfo):
    low, high = info.data.get("low"), info.data.get("high")
    if low is not None and high is not None and not low <= v <= high:
        raise ValueError(f"must lie in [low, high] = [{fmt_e(low)}, {fmt_e(high)}], got {fmt_e(v)}")
    return v


def plain_number(v):
    """A study's number as its file wrote it: pydantic's lax mode would take True as 1 and the
    text '1000' as 1000, but a boolean or a quoted number in a study is a typo (as are `1:30`
    and `yes`, text under the YAML 1.2 that studies are read with: mcrisk.study.yaml12)."""
    if isinstance(v, (bool, str)):
        raise ValueError(f"must be a number, got {v!r}")
    return v


Num = Annotated[float, BeforeValidator(plain_number)]
"""A float field of a DIST form, or of a study: a boolean or text is refused."""


def plain_int(v):
    """A study's whole number: a plain number (see plain_number) within the 64-bit range."""
    v = plain_number(v)
    problem = int_problem(v)
    if problem:
        raise ValueError(problem)
    return v


Int = Annotated[int, BeforeValidator(plain_int)]
"""An int field of a study (a whole float such as 1e5 is taken): a boolean or text is refused."""
