"""The Greeks against finite differences with common random numbers, and their cost against a run.

    python benchmarks/greeks.py --scenarios 200000            # the check of issue 27 (default study)
    python benchmarks/greeks.py --scenarios 65536 --cost      # seconds: greeks vs a plain run

The check: for each parameter of the initial token price, the systems' capex and the
utilization, the pathwise d mean / d theta and the kernel d P5 / d theta of greeks.csv against
(stat(theta + h) - stat(theta - h)) / 2h on the same draws (h = 1% of theta for the mean, 2% for
P5; P5 by its Harrell-Davis estimate, whose difference is far less noisy than the plain
empirical quantile's, printed beside it). The cost: a plain
run (``run_study``, no stresses, no analysis, no Parquet rows) and ``run_greeks`` (no design
point) of the same N, each in this process after one warm-up run of each, of the same size, and with a
warm compilation cache (so no compile is timed), each twice.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

import mcrisk

# The steps of the differences, as shares of the parameter: the mean's at the first (its CRN
# difference is smooth in h), the P5's at the second (an empirical quantile's difference is noisy
# at small steps: it moves with the few order statistics that swap places; the first is printed
# beside it to show that noise).
STEPS = (0.01, 0.02)
CHECKED = (
    "market.token_price.initial_usd_per_mtok",
    "market.demand.utilization",
    "systems.gb200_nvl72.capex_usd",
    "systems.b200_hgx.capex_usd",
    "systems.h200_hgx.capex_usd",
)


def check(study: str, n: int) -> list[dict]:
    from mcrisk.engine import greeks as eg
    from mcrisk.engine.plan import make_plan
    from mcrisk.stats import greeks as sg
    from mcrisk.study.schema import load_study
    from mcrisk.workflows import greeks as wg

    st = load_study(study)
    plan = eg.gradient_plan(
        make_plan(st, scenarios=n, seed=st.simulation.seed, precision="float64", chunk_size=wg.greeks_chunk(),
                  monthly=False)
    )  # fmt: skip
    tgts = tuple(eg.targets(plan))
    progs = eg.Programs(plan, "npv_usd", tgts)
    m, _ = wg.forward_pass(progs, n, 0)
    rows = eg.row_names(plan, m.shape[0])
    centers = {k: np.array([sg.quantile(r, a) for r in m]) for k, a in sg.LEVELS.items()}
    est = wg.gradient_pass(progs, n, sg.Sums(centers, np.array([sg.bandwidth(r) for r in m]))).result()
    out = []
    for k, t in enumerate(tgts):
        if t.path not in CHECKED:
            continue
        fd = {}
        for rel in STEPS:
            h = rel * abs(t.value)
            up, down = (wg.moved_metric(progs, st, t.path, t.param, t.value + s * h, n) for s in (1, -1))
            fd[rel] = (
                (up.mean(1) - down.mean(1)) / (2 * h),
                (sg.harrell_davis(up, 0.05) - sg.harrell_davis(down, 0.05)) / (2 * h),
                (np.quantile(up, 0.05, 1) - np.quantile(down, 0.05, 1)) / (2 * h),
            )
        for r, row in enumerate(rows):
            if t.system not in (None, row) and row != "portfolio":
                continue
            e = {key: float(v[k, r]) for key, v in est.items()}
            fd_mean, fd_p5 = fd[STEPS[0]][0][r], fd[STEPS[1]][1][r]
            out.append(
                dict(
                    system=row, input=t.path, parameter=t.param, d_mean=e["d_mean"], d_mean_se=e["d_mean_se"],
                    fd_mean=fd_mean, mean_within_3se=abs(e["d_mean"] - fd_mean) <= 3 * e["d_mean_se"],
                    d_p5=e["d_p5"], d_p5_se=e["d_p5_se"], fd_p5=fd_p5, fd_p5_other_step=fd[STEPS[0]][1][r],
                    fd_p5_empirical=fd[STEPS[1]][2][r],
                    p5_rel_error=abs(e["d_p5"] - fd_p5) / abs(fd_p5) if fd_p5 else np.nan,
                )
            )  # fmt: skip
    return out


def cost(study: str, n: int) -> dict:
    import jax

    from mcrisk.workflows.greeks import run_greeks

    secs: dict[str, list] = {"run": [], "greeks": [], "greeks_forward_pass": [], "greeks_gradient_pass": []}
    with tempfile.TemporaryDirectory() as tmp:
        # A warm compilation cache, as the mcrisk command keeps one: run_greeks builds its programs
        # anew on each call, and loads them from the cache (a run reuses its own within a process).
        jax.config.update("jax_compilation_cache_dir", f"{tmp}/xla")
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        kw = dict(force=True, write_scenarios=False, analyze=False, stress=False, monthly=False)
        mcrisk.run_study(study, out=f"{tmp}/r", scenarios=n, **kw)  # warm-ups of the same size
        run_greeks(study, out=f"{tmp}/g", scenarios=n, force=True, design=False)  # (its chunk: the same programs)
        for _ in range(2):
            t = time.perf_counter()
            mcrisk.run_study(study, out=f"{tmp}/r", scenarios=n, **kw)
            secs["run"].append(time.perf_counter() - t)
            t = time.perf_counter()
            res = run_greeks(study, out=f"{tmp}/g", scenarios=n, force=True, design=False)
            secs["greeks"].append(time.perf_counter() - t)
            secs["greeks_gradient_pass"].append(res.seconds["gradients"])
            secs["greeks_forward_pass"].append(res.seconds["forward"])
    secs["ratio"] = [g / r for g, r in zip(secs["greeks"], secs["run"])]
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="configs/default.yaml")
    ap.add_argument("--scenarios", type=float, default=200_000)
    ap.add_argument("--cost", action="store_true", help="time greeks against a plain run instead")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    mcrisk.enable_float64()
    n = int(a.scenarios)
    result = cost(a.study, n) if a.cost else check(a.study, n)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    if a.cost:
        print(json.dumps(result, indent=1))
        return
    for r in result:
        print(
            f"{r['system']:12} {r['input'][-40:]:40} {r['parameter']:5} mean {r['d_mean']:+.4e} fd {r['fd_mean']:+.4e} "
            f"({'ok' if r['mean_within_3se'] else 'FAIL'} 3se={3 * r['d_mean_se']:.2e})  P5 {r['d_p5']:+.4e} fd "
            f"{r['fd_p5']:+.4e} rel {r['p5_rel_error']:.3f} (at 1%: {r['fd_p5_other_step']:+.4e}; plain quantile's: {r['fd_p5_empirical']:+.4e})"
        )


if __name__ == "__main__":
    main()
