"""The report's section on the reverse stress test, the most likely loss scenario and the Greeks
(reverse_stress.csv, design_point.csv and greeks.csv of ``mcrisk run --greeks``)."""

from __future__ import annotations

import pandas as pd

from mcrisk.report import markup as mu


def _read(run: dict, name: str) -> pd.DataFrame | None:
    path = run["folder"] / name
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def _design(dp: pd.DataFrame) -> str:
    rows = []
    for system, part in dp.groupby("system", sort=False):
        first = part.iloc[0]
        if isinstance(first["note"], str) and first["note"]:
            rows.append([system, "n/a", "n/a", mu.fmt("p_loss", first["mc_p_loss"]), first["note"]])
            continue
        moves = "; ".join(
            f"{r['input']} {r['value']:.4g} (median {r['median']:.4g})" for _, r in part.head(4).iterrows()
        )
        rows.append([system, f"{first['beta']:.2f}", mu.fmt("p_loss", first["form_p_loss"]),
                     mu.fmt("p_loss", first["mc_p_loss"]), moves])  # fmt: skip
    return mu.table(
        ["system", "beta", "Phi(-beta)", "MC P(loss)", "the inputs that moved most (value at the point)"], rows
    )


def section(run: dict) -> str:
    rs, dp, g = _read(run, "reverse_stress.csv"), _read(run, "design_point.csv"), _read(run, "greeks.csv")
    if rs is None and g is None:
        return mu.note(
            "This run has no reverse_stress.csv or greeks.csv: run mcrisk run --greeks (or mcrisk greeks) "
            "to see which inputs set the losing scenarios apart and what one step of each input is worth."
        )
    parts = []
    if rs is not None and not rs.empty:
        top = rs[(rs["region"] == "npv_below_0") & (rs["rank"] <= 4)]
        rows = [
            [r["system"], mu.fmt("p_loss", r["share_inside"]), r["input"], f"{r['inside_median']:.4g}",
             f"{r['outside_median']:.4g}", f"{r['shift_sd']:+.2f}"]
            for r in top.to_dict("records")
        ]  # fmt: skip
        parts.append(
            mu.note(
                "Scenarios with NPV < 0 against the rest: each input's median inside and outside, and the shift in sd of the input's own distribution (ranked)."
            )
        )
        parts.append(mu.table(["system", "P(loss)", "input", "median if loss", "median otherwise", "shift (sd)"], rows))
    if dp is not None and not dp.empty:
        parts.append(
            mu.note(
                "The most likely loss scenario (FORM design point, the monthly shocks at 0): the point nearest the median inputs, in standard units, where NPV = 0; beta its distance."
            )
        )
        parts.append(_design(dp))
    if g is not None and not g.empty:
        ok = g[g["method"] != "not differentiable"]
        ok = (
            ok.reindex(ok["d_mean_per_step"].abs().sort_values(ascending=False).index)
            .groupby("system", sort=False)
            .head(3)
        )
        rows = [[r["system"], r["reading"], f"{r['d_mean_se'] * r['step']:.3g}"] for r in ok.to_dict("records")]
        parts.append(
            mu.note(
                "Pathwise sensitivities (greeks.csv): what one step of a parameter, in its own unit, is worth in mean NPV."
            )
        )
        parts.append(mu.table(["system", "step and its effect", "standard error"], rows))
    return "".join(parts)
