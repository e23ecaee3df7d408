"""The report's sections on the reverse stress test and the most likely loss scenario
(reverse_stress.csv, design_point.csv) and on the Greeks (greeks.csv), of ``mcrisk greeks`` or
``mcrisk run --greeks``."""

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
        ["system", "beta", "Phi(-beta)", "MC P(loss)", "the inputs that moved most (value at the point)"],
        rows,
        "num2",
        long=(4,),
    )


def _missing(run: dict, files: str, what: str) -> str:
    """The note of a run without `files`: the command that writes them into this run folder."""
    m, f = run["manifest"], run["folder"]
    return mu.note(
        f"This run has no {files}: run  mcrisk greeks {f / 'study.yaml'} --out {f} -n {m.get('scenarios')} "
        f"--seed {m.get('seed')} --force  (or run the study with mcrisk run --greeks) to see {what}."
    )


def reverse_stress(run: dict) -> str:
    """Which inputs set the losing scenarios apart, and the most likely loss scenario (design point)."""
    rs, dp = _read(run, "reverse_stress.csv"), _read(run, "design_point.csv")
    if (rs is None or rs.empty) and (dp is None or dp.empty):
        return _missing(run, "reverse_stress.csv or design_point.csv", "which inputs set the losing scenarios apart")
    parts = []
    if rs is not None and not rs.empty:
        top = rs[(rs["region"] == "npv_below_0") & (rs["rank"] <= 4)]
        first = top[top["rank"] == 1]
        if len(first):
            said = "; ".join(
                f"{r['system']}: {r['input']} (median {r['inside_median']:.4g} in losses, "
                f"{r['outside_median']:.4g} otherwise)"
                for r in first.to_dict("records")
            )
            parts.append(mu.means(f"What this means: the input that most sets a loss apart, per system: {said}."))
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
        parts.append(
            mu.table(
                ["system", "P(loss)", "input", "median if loss", "median otherwise", "shift (sd)"],
                rows,
                "num2",
                long=(2,),
            )
        )
    if dp is not None and not dp.empty:
        parts.append(
            mu.note(
                "The most likely loss scenario (FORM design point, the monthly shocks at 0): the point nearest the median inputs, in standard units, where NPV = 0; beta its distance."
            )
        )
        parts.append(_design(dp))
    return "".join(parts)


def greeks(run: dict) -> str:
    """What one step of each input's parameters is worth in mean NPV (greeks.csv), the top 3 per system."""
    g = _read(run, "greeks.csv")
    if g is None or g.empty:
        return _missing(run, "greeks.csv", "what one step of each input is worth")
    ok = g[g["method"] != "not differentiable"]
    if ok.empty:
        return mu.note(str(g["note"].iloc[0]) if "note" in g else "No input of this study is differentiable.")
    ok = (
        ok.reindex(ok["d_mean_per_step"].abs().sort_values(ascending=False).index).groupby("system", sort=False).head(3)
    )
    rows = [[r["system"], r["reading"], f"{r['d_mean_se'] * r['step']:.3g}"] for r in ok.to_dict("records")]
    top = ok.groupby("system", sort=False).head(1)
    said = "; ".join(f"{r['system']}: {r['reading']}" for r in top.to_dict("records"))
    return (
        mu.means(f"What this means: the small change worth most to each system's mean NPV is {said}.")
        + mu.note(
            "Pathwise sensitivities (greeks.csv): what one step of a parameter, in its own unit, is worth in mean NPV."
        )
        + mu.table(["system", "step and its effect", "standard error"], rows, long=(1,))
    )
