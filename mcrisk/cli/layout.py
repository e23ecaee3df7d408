"""Plain-text tables that fit the terminal's width: pipes and Slurm logs read at 80 columns.

A table is its key columns (the system, the stress), never cut, and its value columns. When a
table is wider than the width, its value columns are stacked: as many as fit beside the keys,
then the keys again with the next ones. A key value too long to leave room for any value
column is abbreviated the same way everywhere (``name~1``), with a legend line under the table.
Text (titles, notes) wraps at spaces only, so a path or a name is never broken inside a word.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

GAP = "  "
RULE = "─"
# A width that stacks nothing: `--wide` (a log read in an editor, not a terminal).
UNLIMITED = 1_000_000


def wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """`text` in lines of at most `width` characters, broken at spaces only (a word longer than
    the width stands on its own line); `first` and `rest` indent the first and the later lines."""
    return textwrap.wrap(
        text,
        width=max(width, 20),
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [""]


def _width(cells: Sequence[str]) -> int:
    return max((len(c) for c in cells), default=0)


def abbreviations(names: Sequence[str], limit: int) -> dict[str, str]:
    """Each name longer than `limit` -> a short form that is unique and says it is short: its
    first characters, ``~`` and a number (``gb200_nvl72_contracted`` -> ``gb200_n~1``)."""
    out, k = {}, 0
    for name in dict.fromkeys(names):
        if len(name) > limit:
            k += 1
            tail = f"~{k}"
            out[name] = name[: max(1, limit - len(tail))] + tail
    return out


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    keys: int = 1,
    title: str = "",
    left: Sequence[int] = (),
) -> list[str]:
    """The lines of a table no wider than `width` (see the module's note). `keys`: how many
    leading columns are keys; `left`: value columns aligned left (keys always are); a header
    may hold a newline for a second line."""
    rows = [list(r) for r in rows]
    legend: list[str] = []
    key_w = [_width([*headers[j].split("\n"), *(r[j] for r in rows)]) for j in range(keys)]
    value_w = [_width([*h.split("\n"), *(r[j] for r in rows)]) for j, h in enumerate(headers) if j >= keys]
    room = width - len(GAP) * keys - max(value_w, default=0)
    if keys and sum(key_w) + len(GAP) * (keys - 1) > room:  # abbreviate the longest key column
        j = max(range(keys), key=lambda i: key_w[i])
        limit = max(6, room - (sum(key_w) - key_w[j]) - len(GAP) * (keys - 1))
        short = abbreviations([r[j] for r in rows], limit)
        for r in rows:
            r[j] = short.get(r[j], r[j])
        legend = [line for name, s in short.items() for line in wrap(f"{s} = {name}", width, "", "    ")]
    lines = wrap(title, width) if title else []
    for block in _blocks(headers, rows, width, keys):
        lines += _render([headers[j] for j in block], [[r[j] for r in rows] for j in block], keys, left, block)
    return lines + legend


def _blocks(headers: Sequence[str], rows: list[list[str]], width: int, keys: int) -> list[list[int]]:
    """The column indices of each stacked block: the keys, then value columns while they fit."""
    w = [_width([*h.split("\n"), *(r[j] for r in rows)]) for j, h in enumerate(headers)]
    base = sum(w[:keys]) + len(GAP) * max(0, keys - 1)
    blocks: list[list[int]] = []
    current: list[int] = []
    used = base
    for j in range(keys, len(headers)):
        need = w[j] + (len(GAP) if (keys or current) else 0)
        if current and used + need > width:
            blocks.append(current)
            current, used = [], base
        current.append(j)
        used += need
    if current or not blocks:
        blocks.append(current)
    return [list(range(keys)) + b for b in blocks]


def _render(
    headers: list[str], columns: list[list[str]], keys: int, left: Sequence[int], index: list[int]
) -> list[str]:
    widths = [_width([*h.split("\n"), *col]) for h, col in zip(headers, columns, strict=True)]
    lefts = [i < keys or index[i] in left for i in range(len(headers))]
    head_lines = max(len(h.split("\n")) for h in headers)

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if lf else c.rjust(w) for c, w, lf in zip(cells, widths, lefts, strict=True)]
        return GAP.join(parts).rstrip()

    out = []
    for k in range(head_lines):  # a one-line header sits on the last header line
        out.append(line([_header_line(h, k, head_lines) for h in headers]))
    out.append(GAP.join(RULE * w for w in widths))
    out += [line([col[i] for col in columns]) for i in range(len(columns[0]) if columns else 0)]
    return out


def _header_line(header: str, k: int, n: int) -> str:
    parts = header.split("\n")
    pad = n - len(parts)
    return parts[k - pad] if k >= pad else ""
