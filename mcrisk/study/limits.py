"""The size limits of a study, checked as it is read, before anything is built from it.

A study is a few kilobytes of YAML; what is far beyond that is a mistake or an attack, and is
refused by name (a StudyError) rather than left to exhaust the recursion limit, the memory, the
file system's name length or a 64-bit column: see docs/study.md, "Limits".
"""

from __future__ import annotations

import yaml

from mcrisk.errors import Problem, StudyError

MAX_BYTES = 1 << 20  # a study file (or --set value): 1 MiB
MAX_DEPTH = 32  # mappings and lists inside one another
MAX_STRING = 10_000  # characters of any text (a description)
MAX_KEY = 100  # characters of a mapping key (a system or stress name: stress names name folders)
MAX_NAME = 100  # characters of the study's name (the default run folder's name)
MAX_INT = 2**63 - 1  # whole numbers lie in [-MAX_INT, MAX_INT] (a 64-bit column)


def check_text(text: str, source: str) -> None:
    """StudyError if YAML `text` is over the size, nesting or text-length limits; read as events
    (no recursion, no tree built), so that it costs little whatever the text holds."""
    if len(text) > MAX_BYTES:
        raise StudyError(
            [Problem("", f"the study is {len(text):,} characters; at most {MAX_BYTES:,} are read")], source
        )
    stack: list[bool | None] = []  # per open node: a mapping's "next child is a key", None for a list
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                _node_starts(stack)
                stack.append(True if isinstance(event, yaml.MappingStartEvent) else None)
                if len(stack) > MAX_DEPTH:
                    raise _problem(event, f"nested more than {MAX_DEPTH} levels deep (mappings and lists)", source)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
            elif isinstance(event, yaml.AliasEvent):
                _node_starts(stack)
            elif isinstance(event, yaml.ScalarEvent):
                is_key = _node_starts(stack)
                limit = MAX_KEY if is_key else MAX_STRING
                if len(event.value) > limit:
                    what = "a key (a name)" if is_key else "a text"
                    raise _problem(event, f"{what} of {len(event.value):,} characters; at most {limit:,}", source)
    except yaml.YAMLError:
        return  # (the loader names the syntax error)


def _node_starts(stack: list[bool | None]) -> bool:
    """Whether the node that starts now is a key of the innermost mapping (which then expects the other)."""
    if not stack or stack[-1] is None:
        return False
    is_key = stack[-1]
    stack[-1] = not is_key
    return bool(is_key)


def _problem(event: yaml.Event, what: str, source: str) -> StudyError:
    mark = event.start_mark
    return StudyError([Problem("", f"{what}, at line {mark.line + 1}, column {mark.column + 1}")], source)


def int_problem(value: object) -> str | None:
    """Why a whole number of a study is out of range (None if it is not)."""
    if isinstance(value, float) and value.is_integer() and abs(value) > MAX_INT:
        return f"must be a whole number within ±{MAX_INT:,} (2^63 - 1), got {value:g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return f"must be a whole number within ±{MAX_INT:,} (2^63 - 1), got a number of {len(str(abs(value)))} digits"
    return None
