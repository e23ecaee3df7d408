"""The IRR's Horner unroll: compile time against run time of the simulate stage.

On accelerators the IRR's Horner loop is unrolled over every month (mcrisk.engine.irr_unroll),
and the IRR is half of the simulate stage's run time and, by XLA's compile log, more than half
of its compile time, which is the longest of a cold run. This compiles the simulate stage of
one chunk (the default study, bands off, the month loop 4 months per step) with each unroll,
in one process after a warm-up compile, and times each on the same draws (median of --repeat).

    python benchmarks/irr_unroll.py --unroll 47 16 8 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp

import mcrisk
from kernels import timed  # noqa: E402  (benchmarks/ is the script's folder)
from mcrisk import engine
from mcrisk.engine import Sample, draw_inputs, draw_shocks, fixed_values, make_plan, simulate_months


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None)
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--unroll", type=int, nargs="+", default=[47, 16, 8, 4])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    st = mcrisk.load_study(args.study or mcrisk.default_study_path())
    C = args.chunk or engine.default_chunk_size()
    plan = replace(make_plan(st, scenarios=C, seed=st.simulation.seed, precision="float32", chunk_size=C), monthly=False)
    idx = jnp.arange(C, dtype=jnp.uint32)
    _, _, values = timed(lambda i: draw_inputs(plan, i), idx, repeat=1)  # (the process's first compile)
    _, _, shocks = timed(lambda i: draw_shocks(plan, i), idx, repeat=1)
    draw = Sample({**values, **jax.device_put(fixed_values(plan))}, shocks)
    real = engine.irr_unroll
    rows, ref = [], None
    try:
        for u in args.unroll:
            engine.irr_unroll = lambda months, u=u: min(u, max(1, months - 1))
            c, t, out = timed(lambda d: simulate_months(plan, d, C)[0], draw, repeat=args.repeat)
            same = None if ref is None else bool(jnp.array_equal(out["irr"], ref, equal_nan=True))
            ref = out["irr"] if ref is None else ref
            rows.append({"irr_unroll": u, "compile_s": c, "run_s": t, "irr_equal_to_first": same})
            print(f"IRR unroll {u:3d}: compile {c:6.2f} s, run {t * 1e3:8.2f} ms per chunk of {C:,}, "
                  f"IRRs equal to the first: {same}", flush=True)
    finally:
        engine.irr_unroll = real
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "jax": jax.__version__,
                                               "device": jax.devices()[0].device_kind, "chunk": C, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
