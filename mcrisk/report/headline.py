"""The report's headline, decision first: per system and the portfolio, NPV P50 and P5, P(loss),
CVaR 95, median IRR and payback and the first-year calibration line, then the sentence naming the
best system and by how much it beats the next. The numbers are those the terminal prints after
`mcrisk run` (mcrisk.stats.headline, written by mcrisk.stats.formats)."""

from __future__ import annotations

from mcrisk.report import markup as mu
from mcrisk.stats.headline import best_sentence, calibration_text, headline_cells, headline_table, why_no_comparison

HEADERS = [
    "system",
    "NPV P50",
    "NPV P5",
    "P(loss)",
    "CVaR 95",
    "IRR P50",
    "payback P50",
    "first-year revenue per GPU-hour vs the rental market",
]


def headline(run: dict) -> str:
    """The run's facts, the headline table, the best-system sentence and how to read them."""
    m, st = run["manifest"], run["study"]
    facts = (
        f"{m.get('scenarios', 0):,} scenarios, seed {m.get('seed')}, a horizon of {m.get('horizon_months')} months, "
        f"{len(run['systems'])} system{'s' if len(run['systems']) != 1 else ''}: {', '.join(run['systems'])}."
    )
    out = [f"<p>{mu.esc(facts)}</p>"]
    if st.get("description"):
        out.append(f'<p class="desc">{mu.esc(" ".join(str(st["description"]).split()))}</p>')
    table = headline_table(run["summary"], run["risk"], run.get("calibration"))
    rows = [[*headline_cells(r), calibration_text(r) or "-"] for r in table.to_dict("records")]
    out.append(mu.table(HEADERS, rows, "headline"))
    comp = run.get("comparison")
    missing = "" if comp is not None else why_no_comparison({**m, "folder": str(run["folder"])})
    sentence = best_sentence(table, comp, missing)
    if sentence:
        out.append(f'<p class="best">{mu.esc(sentence)}</p>')
    out.append(
        mu.note(
            "NPV in dollars at the study's discount rate. P(loss) = P(NPV < 0). CVaR 95: the mean NPV of the worst "
            "5% of scenarios. IRR and payback: their medians over the scenarios; payback is the months until the "
            f"cash flows repay the capex, never where the median scenario does not within the "
            f"{m.get('horizon_months')} months. The revenue per dollar of capex (the vendors' ROI multiple, "
            "before any cost) is in the summary table."
        )
    )
    return "".join(out)
