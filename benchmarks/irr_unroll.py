"""How the IRR evaluates NPV: compile time against run time of the simulate stage.

The IRR is half of the simulate stage's run time on a GPU and, by XLA's compile log, more than
half of its compile time, which is the longest of a cold run. Its Newton steps evaluate NPV
by Horner's rule, some months per pass, or by Estrin's scheme, every month in one pass, the
peak search then by Horner 8 months a pass (mcrisk.model.metrics.irr; accelerators take Estrin,
mcrisk.engine.plan.irr_unroll); 'estrin-all' puts the search on Estrin too (fewer kernels, the tree
compiled into the program four times). This compiles the simulate stage of one chunk (the default study,
bands off, the month loop as the engine runs it) with each, in one process after a warm-up
compile, and times each on the same draws (median of --repeat). Horner's IRRs are the same
whatever its unroll; Estrin's differ from them by float64 rounding (the largest difference in
log(1 + a) is printed).

    python benchmarks/irr_unroll.py --unroll estrin estrin-all 47 16 8 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
from kernels import timed  # noqa: E402  (benchmarks/ is the script's folder)

import mcrisk
from mcrisk.engine import plan as engine
from mcrisk.engine.plan import Sample, draw_inputs, draw_shocks, fixed_values, make_plan, simulate_months
from mcrisk.model import metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None)
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument(
        "--unroll",
        nargs="+",
        default=["estrin", "estrin-all", "47", "16", "8", "4"],
        help="Horner's months per pass, 'estrin' (the Newton steps), or 'estrin-all' (the search too)",
    )
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    st = mcrisk.load_study(args.study or mcrisk.default_study_path())
    C = args.chunk or engine.default_chunk_size()
    plan = replace(
        make_plan(st, scenarios=C, seed=st.simulation.seed, precision="float32", chunk_size=C), monthly=False
    )
    idx = jnp.arange(C, dtype=jnp.uint32)
    _, _, values = timed(lambda i: draw_inputs(plan, i), idx, repeat=1)  # (the process's first compile)
    _, _, shocks = timed(lambda i: draw_shocks(plan, i), idx, repeat=1)
    draw = Sample({**values, **jax.device_put(fixed_values(plan))}, shocks)
    real, search_unroll = engine.irr_unroll, metrics.SEARCH_UNROLL
    rows, ref = [], None
    try:
        for name in args.unroll:
            u = None if name.startswith("estrin") else int(name)
            engine.irr_unroll = lambda months, u=u: None if u is None else min(u, max(1, months - 1))
            metrics.SEARCH_UNROLL = None if name == "estrin-all" else search_unroll  # (None: the search by Estrin too)
            c, t, out = timed(lambda d: simulate_months(plan, d, C)[0], draw, repeat=args.repeat)
            same = None if ref is None else bool(jnp.array_equal(out["irr"], ref, equal_nan=True))
            gap = None
            if ref is not None:
                both = jnp.isfinite(out["irr"]) & jnp.isfinite(ref)
                gap = float(jnp.max(jnp.where(both, jnp.abs(jnp.log1p(out["irr"]) - jnp.log1p(ref)), 0.0)))
            ref = out["irr"] if ref is None else ref
            rows.append(
                {
                    "irr_unroll": name,
                    "compile_s": c,
                    "run_s": t,
                    "irr_equal_to_first": same,
                    "max_log1p_difference_to_first": gap,
                }
            )
            how = {"estrin": "Estrin (the search by Horner)", "estrin-all": "Estrin (the search too)"}.get(
                name, f"Horner, {u} months a pass"
            )
            print(
                f"IRR NPV by {how}: compile {c:6.2f} s, "
                f"run {t * 1e3:8.2f} ms per chunk of {C:,}, IRRs equal to the first: {same} "
                f"(largest difference in log(1 + a): {gap})",
                flush=True,
            )
    finally:
        engine.irr_unroll, metrics.SEARCH_UNROLL = real, search_unroll
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "jax": jax.__version__,
                    "device": jax.devices()[0].device_kind,
                    "chunk": C,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
