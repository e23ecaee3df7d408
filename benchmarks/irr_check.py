"""The engine's IRRs against an exhaustive float64 scan of NPV over the whole rate range.

For every scenario and system of a study, NPV is evaluated at 20,001 annual rates evenly spaced
in log(1 + a) over [-0.99, 100] from the engine's own monthly cash flows, and the engine's IRR
is checked against the model's rule (MODEL.md): no rate above it with NPV >= 0 (a root missed),
+inf only where NPV(100) > 0, -inf only where NPV < 0 at every rate; and, for finite IRRs,
how far it sits from the root: |NPV / dNPV/dlog(1 + a)| at the engine's rate. Exits 1 if any
check fails.

    python benchmarks/irr_check.py configs/default.yaml --scenarios 20000 --months 48 120 240
"""

from __future__ import annotations

import argparse
import json
import sys

import jax.numpy as jnp
import numpy as np

import mcrisk  # noqa: F401  (float64 on)
from mcrisk.engine import plan as engine
from mcrisk.study import yaml12
from mcrisk.study.schema import load_study

RATES = 20_001


def flows(study: dict, n: int, seed: int, precision: str):
    """The engine's IRRs and the cash flows, capex and residual they came from: (T, S, n), (S, n)."""
    plan = engine.make_plan(load_study(study), scenarios=n, seed=seed, precision=precision, chunk_size=n, monthly=False)
    draw = engine.sample(plan, jnp.arange(n, dtype=jnp.uint32))
    draw = draw._replace(values={**draw.values, **engine.fixed_values(plan)})
    out = engine.simulate(plan, draw, n)
    (_, _, sp, _), _, ys = engine._month_loop(plan, draw, n, flows=True, bands=False)
    capex = np.asarray(out["capex_usd"])
    return (
        np.asarray(out["irr"]),
        np.asarray(ys[0], np.float64),
        capex,
        capex * np.broadcast_to(np.asarray(sp.residual, np.float64), capex.shape),
    )


def check(irr, cf, capex, residual) -> dict:
    T, S, n = cf.shape
    a = np.expm1(np.linspace(np.log(0.01), np.log(101.0), RATES))
    a[0], a[-1] = -0.99, 100.0
    powers = ((1 + a) ** (-1 / 12))[:, None] ** np.arange(1, T + 1)[None, :]  # (rates, T)
    t = np.arange(1, T + 1)
    missed, far, worst, examples = 0, 0, 0.0, []
    for s in range(S):
        npv = powers @ cf[:, s, :] + residual[s][None, :] * powers[:, -1:] - capex[s][None, :]  # (rates, n)
        for j in range(n):
            e, f = irr[s, j], npv[:, j]
            if np.isnan(e):
                continue
            if np.isposinf(e):
                bad = not f[-1] > 0
            elif np.isneginf(e):
                bad = bool((f >= 0).any())
            else:
                # (1e-7 in log(1 + a): near a = -0.99 over 240 months NPV sums terms of 1e37, and
                # the scan's own rounding can put NPV >= 0 that close above a root)
                bad = bool((f[np.log1p(a) > np.log1p(e) + 1e-7] >= 0).any())
            if bad:
                missed += 1
                if len(examples) < 5:
                    nonneg = np.flatnonzero(f >= 0)
                    examples.append(
                        {
                            "system": s,
                            "scenario": j,
                            "engine": float(e),
                            "highest_nonneg_rate": float(a[nonneg[-1]]) if nonneg.size else None,
                        }
                    )
                continue
            if np.isfinite(e):
                z = (1 + e) ** (-1 / 12)
                flow = cf[:, s, j].copy()
                flow[-1] += residual[s, j]
                slope = np.sum(flow * z**t * (-t / 12))
                err = abs((np.sum(flow * z**t) - capex[s, j]) / slope) if slope else np.inf
                worst = max(worst, err)
                far += err > 1e-8
    return {
        "rows": int(irr.size),
        "missed": missed,
        "off_by_over_1e-8": int(far),
        "worst_log_rate_error": worst,
        "examples": examples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study")
    ap.add_argument("--scenarios", type=int, default=2000)
    ap.add_argument("--months", type=int, nargs="+", default=[48])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--precision", default="float64", choices=["float32", "float64"])
    ap.add_argument("--json")
    args = ap.parse_args()
    results = []
    for T in args.months:
        study = yaml12.load(open(args.study).read())  # YAML 1.2, as mcrisk reads studies (3.0e6 is a number)
        study["simulation"]["horizon_months"] = T
        r = {
            "months": T,
            "scenarios": args.scenarios,
            **check(*flows(study, args.scenarios, args.seed, args.precision)),
        }
        results.append(r)
        print(
            f"{T:>4} months: {r['rows']:,} rows, {r['missed']} roots missed, {r['off_by_over_1e-8']} off by > 1e-8 "
            f"in log(1 + a) (worst {r['worst_log_rate_error']:.2g})",
            flush=True,
        )
    if args.json:
        json.dump(
            {"study": args.study, "precision": args.precision, "seed": args.seed, "results": results},
            open(args.json, "w"),
            indent=1,
        )
    sys.exit(1 if any(r["missed"] or r["off_by_over_1e-8"] for r in results) else 0)


if __name__ == "__main__":
    main()
