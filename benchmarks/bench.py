"""Throughput of `mcrisk run` on a study at several scenario counts: a table on stdout, JSON on disk.

Each size runs in its own process so that its peak RSS is its own. Reports scenario-months per
second end to end (compile included) and the seconds of each stage (compile, sample, simulate,
summarize, transfer, write) from the run's manifest.

    python benchmarks/bench.py                       # default study at 1e4, 1e5, 1e6
    python benchmarks/bench.py --sizes 1e7 1e8 --no-scenarios
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("compile", "sample", "simulate", "summarize", "transfer", "write")

CHILD = """
import json, resource, sys, time
import mcrisk
args = json.loads(sys.argv[1])
if args.get("part_rows"):  # benchmarks/write.py --part-rows: Parquet parts of another size
    import mcrisk.io.parquet
    mcrisk.io.parquet.PART_ROWS = args["part_rows"]
t0 = time.perf_counter()
# The engine alone: the run's own sensitivity/comparison analysis (a fixed cost of its first
# 65,536 scenarios) and the study's stress tests (each a run of its own) are left out.
r = mcrisk.run_study(args["study"], out=args["out"], scenarios=args["n"], force=True, analyze=False, stress=False,
                     write_scenarios=args["write"], chunk_size=args["chunk"], precision=args["precision"])
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "manifest": r.manifest,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_one(
    study: str,
    n: int,
    write: bool,
    chunk: int | None,
    precision: str | None,
    keep: Path | None = None,
    part_rows: int | None = None,
) -> dict:
    """One run in a fresh process; its folder is deleted afterwards unless `keep` names where to
    put it. `part_rows`: rows per Parquet part, if not mcrisk's (storage.PART_ROWS)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep if keep is not None else Path(tmp) / "run"
        args = dict(
            study=study, out=str(folder), n=n, write=write, chunk=chunk, precision=precision, part_rows=part_rows
        )
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"run of {n} scenarios failed:\n{proc.stderr}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    m = out["manifest"]
    secs = m["seconds"]
    months = m["horizon_months"]
    return {
        "scenarios": n,
        "systems": len(m["systems"]),
        "months": months,
        "write_scenarios": write,
        "chunk_size": m["chunk_size"],
        "wall_s": out["wall"],
        "scenario_months_per_s": n * months / out["wall"],
        "scenario_months_per_s_excl_compile": n * months / max(out["wall"] - secs["compile"], 1e-9),
        "simulate_scenario_months_per_s": n * months / max(secs["simulate"], 1e-9),
        "stages_s": {k: secs.get(k, 0.0) for k in STAGES},
        "peak_rss_mib": out["peak_rss_mib"],
        "output_mib": size / 2**20,
        "backend": m["backend"],
        "devices": m["devices"],
    }


def numpy_baseline(study: str, n: int) -> float:
    """Seconds for the plain vectorized NumPy model (mcrisk.reference) on the same study and N."""
    code = f"""
import time, numpy as np, mcrisk
from mcrisk.engine.plan import make_plan
from mcrisk.reference import system_metrics
st = mcrisk.load_study({study!r}); T = st.simulation.horizon_months
plan = make_plan(st, scenarios={n}, seed=st.simulation.seed, precision="float64", chunk_size=None)
rng = np.random.default_rng(0)
t0 = time.perf_counter()
vals = {{i.path: (np.full({n}, plan.fixed[i.path]) if i.path in plan.fixed else
        np.asarray(i.dist.quantile(rng.uniform(size={n})))) for i in plan.inputs}}
eps = {{k: rng.standard_normal(({n}, T)) for k in ("eps_price", "eps_elec", "eps_util")}}
market = {{k: v for k, v in vals.items() if not k.startswith("systems.")}}
for s, spec in st.systems.items():
    own = {{i.field: vals[i.path] for i in plan.inputs if i.system == s}}
    own.update(units=spec.units, gpus_per_unit=spec.gpus_per_unit, depreciation_years=spec.depreciation_years)
    system_metrics(market, own, T, **eps)
print(time.perf_counter() - t0)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"numpy baseline failed:\n{proc.stderr}")
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None, help="study YAML (default: the embedded default study)")
    ap.add_argument("--sizes", nargs="+", default=["1e4", "1e5", "1e6"])
    ap.add_argument("--no-scenarios", action="store_true", help="summaries only (no Parquet)")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--precision", default=None)
    ap.add_argument("--numpy-up-to", type=float, default=1e5, help="run the NumPy baseline up to this N")
    ap.add_argument("--json", default=None, help="where to write the JSON (default outputs/bench/bench-<time>.json)")
    args = ap.parse_args()

    import mcrisk

    study = args.study or str(mcrisk.default_study_path())
    results = []
    for size in args.sizes:
        n = int(float(size))
        r = run_one(study, n, not args.no_scenarios, args.chunk_size, args.precision)
        if n <= args.numpy_up_to:
            r["numpy_s"] = numpy_baseline(study, n)
            r["speedup_vs_numpy"] = r["numpy_s"] / r["wall_s"]
        results.append(r)
        print_row(r, header=len(results) == 1)

    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "study": study,
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    path = (
        Path(args.json)
        if args.json
        else HERE.parent / "outputs" / "bench" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {path}")


def print_row(r: dict, header: bool) -> None:
    cols = [
        "scenarios",
        "wall s",
        "scen-months/s",
        "sim scen-months/s",
        *[f"{s} %" for s in STAGES],
        "peak RSS MiB",
        "numpy s",
        "x numpy",
    ]
    if header:
        print(" | ".join(f"{c:>14}" for c in cols))
    total = sum(r["stages_s"].values()) or 1.0
    cells = [
        f"{r['scenarios']:.0e}",
        f"{r['wall_s']:.2f}",
        f"{r['scenario_months_per_s']:.3g}",
        f"{r['simulate_scenario_months_per_s']:.3g}",
        *[f"{100 * r['stages_s'][s] / total:.0f}" for s in STAGES],
        f"{r['peak_rss_mib']:.0f}",
        f"{r.get('numpy_s', float('nan')):.2f}",
        f"{r.get('speedup_vs_numpy', float('nan')):.1f}",
    ]
    print(" | ".join(f"{c:>14}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
