"""Errors a user can act on: every problem names its study path, the value and the fix."""

from __future__ import annotations

import difflib
import reprlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (pydantic is imported where a study is validated: `mcrisk --help` does without it)
    from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Problem:
    """One problem in a study: where (a dotted study path) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


MISSING = "required field is missing"


class StudyError(ValueError):
    """A study (or an override of it) is invalid; holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"invalid study {source}" if source else "invalid study"
        lines = [f"{head}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class RunFolderError(RuntimeError):
    """The output folder cannot be used (exists without --force, or a resume does not match)."""


# Set by the `mcrisk` command: its errors name its flags; through the Python API they name arguments.
COMMAND_LINE = False
# The command line's flags in a message, and the Python arguments that do the same through the API
# (`api_wording`): the messages are written for the command, the commonest reader.
_API_WORDS = (
    ("pass --force", "pass overwrite=True"),
    ("with --force", "with overwrite=True"),
    ("--force", "overwrite=True"),
    ("(--out DIR)", "(out=DIR)"),
    ("--out", "out="),
    ("--resume", "resume=True"),
)


def api_wording(exc: RunFolderError) -> RunFolderError:
    """The same error with its command-line flags named as run_study's arguments."""
    text = str(exc)
    for flag, argument in _API_WORDS:
        text = text.replace(flag, argument)
    return type(exc)(text)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run. `resume_from`: the folder ``--resume`` continues, or None
    where the run stopped before its first checkpoint (its partial folder was removed: nothing
    to continue, and nothing in the way of running it again)."""

    def __init__(self, resume_from: Path | None):
        super().__init__(str(resume_from) if resume_from is not None else "")
        self.resume_from = resume_from


# --------------------------------------------------------------------------- pydantic errors as problems


_DIST_TAGS = {"fixed", "uniform", "loguniform", "triangular", "pert", "normal", "lognormal", "beta", "discrete"}


def _clean_loc(loc: tuple, user_key_last: bool = False) -> str:
    """Dotted path of a pydantic error location, without the wrappers and tags pydantic adds.

    `user_key_last`: the last element is a key the user wrote (an unknown field), kept as is
    even if it looks like a distribution tag or a wrapper name."""
    parts: list[str] = []
    for i, p in enumerate(loc):
        s = str(p)
        if user_key_last and i == len(loc) - 1:
            parts.append(s)
            continue
        if "[" in s and "]" in s and not s.isdigit():  # pydantic's function-after[...] wrappers
            continue
        if s in _DIST_TAGS and i > 0 and str(loc[i - 1]) != "systems":
            continue
        parts.append(s)
    return ".".join(parts)


def _allowed_here(loc: tuple, root: type[BaseModel]) -> list[str]:
    """Field names allowed beside an unknown key at `loc` (for 'did you mean')."""
    from pydantic import BaseModel

    model: Any = root
    for p in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            f = model.model_fields.get(str(p))
            if f is None:
                return []
            ann = f.annotation
            if getattr(ann, "__origin__", None) is dict:
                model = ("dict", typing.get_args(ann)[1])
            else:
                model = ann
        elif isinstance(model, tuple):
            model = model[1]
        else:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def _shown(value: Any, limit: int = 60) -> str:
    """repr of an offending value, cut short: a message must stay readable whatever the input."""
    # reprlib bounds the work too: a YAML alias bomb is never expanded into one huge string.
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def type_name(types: type | tuple[type, ...]) -> str:
    """A JSON type or types in words, for a message: 'a whole number or null'."""
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _message(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind == "missing":
        return MISSING
    if kind == "extra_forbidden":
        allowed = _allowed_here(err["loc"], root)
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown field{hint}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "union_tag_invalid":
        return f"unknown distribution {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "a distribution needs a 'dist' key (fixed, uniform, loguniform, triangular, pert, normal, lognormal, beta or discrete), or write a plain number"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {_shown(value)}"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"must be a finite number, got {_shown(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_shown(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {_shown(value)}"
    if kind in ("too_short", "too_long"):
        bound, n = ("at least", ctx.get("min_length")) if kind == "too_short" else ("at most", ctx.get("max_length"))
        return f"must have {bound} {n} {'entry' if n == 1 else 'entries'}, got {ctx.get('actual_length')}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list such as [1, 2], got {_shown(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {_shown(value)}"
    if kind == "model_attributes_type":  # a DIST given as something else than a number or a mapping
        return f"must be a number or a distribution such as {{dist: uniform, low: 1, high: 2}}, got {_shown(value)}"
    if kind in ("dict_type", "model_type"):
        return f"must be a mapping of fields, got {_shown(value)}"
    if kind in ("string_type",):
        return f"must be text, got {_shown(value)}"
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg


def problems_from(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """Turn pydantic's errors into problems with clean dotted paths; `root` is the validated model."""
    out = [Problem(_clean_loc(e["loc"], e["type"] == "extra_forbidden"), _message(e, root)) for e in exc.errors()]
    seen, unique = set(), []
    for p in out:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            unique.append(p)
    return unique
