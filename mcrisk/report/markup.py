"""The HTML pieces of the report page: escaped text, notes, tables, embedded figures, and the
format of a value in a table."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from mcrisk.io import atomic
from mcrisk.report import figures as fg


def fmt(metric: str, x: float) -> str:
    """A value of `metric` for a table: $ with k/M/B, percentages, multiples, months."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if not math.isfinite(x):
        return "never" if "payback" in metric and x > 0 else ("+inf" if x > 0 else "-inf")
    if "per_mtok" in metric:
        return f"${x:.3g}"
    if metric.endswith("_usd"):
        return fg.money(x)
    if metric in ("operating_margin", "irr", "net_roi", "mean_utilization") or metric.startswith("p_"):
        return f"{x:.1%}"
    if metric == "roi_multiple":
        return f"{x:.2f}x"
    if "payback" in metric:
        return f"{x:.0f} mo"
    if abs(x) >= 1e3:
        return fg.money(x).replace("$", "")
    return f"{x:.4g}"


def esc(x) -> str:
    """`x` as HTML text."""
    return html.escape(str(x))


def note(text: str) -> str:
    """A one-paragraph note (what is missing, how to read a table)."""
    return f'<p class="note">{esc(text)}</p>'


def means(text: str) -> str:
    """A section's one-line reading: what its numbers mean for the decision."""
    return f'<p class="means">{esc(text)}</p>'


def table(headers: list[str] | None, rows: list[list], cls: str = "", long: tuple[int, ...] = ()) -> str:
    """A table of escaped cells; `headers` None: no header row. The columns numbered in `long` hold
    free text (overrides, commands) that may break anywhere, so the table fits its page."""
    head = "" if headers is None else "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>"
    body = "".join(
        "<tr>" + "".join(f'<td class="long">{esc(c)}</td>' if i in long else f"<td>{esc(c)}</td>"
                         for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )  # fmt: skip
    return f'<div class="scroll"><table class="{cls}">{head}<tbody>{body}</tbody></table></div>'


def _write_atomic(path: Path, data: bytes) -> None:
    atomic.write_bytes(path, data)


class Figures:
    """Saves each figure as figures/NAME.png and returns it as an embedded <figure>."""

    def __init__(self, folder: Path):
        self.folder, self.written = folder, []
        folder.mkdir(exist_ok=True)

    def __call__(self, fig, name: str, alt: str, caption: str) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fg.DPI, facecolor="white", metadata={"Software": None})
        data = buf.getvalue()
        _write_atomic(self.folder / f"{name}.png", data)
        self.written.append(name)
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'
