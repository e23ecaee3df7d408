"""Each stage of one chunk, timed alone on the device: where the time of a run goes.

For the default study (or --study), one chunk of C scenarios: the sample stage (inputs and
shocks), the simulate stage with several month-loop unrolls, with and without the monthly bands,
and with the IRR solve left out (to see its share), and the reduce stage, in each of several
device layouts of its quantile sketches (mcrisk.stats.reduce.Layout), and in parts. Each variant is
compiled once, run `--repeat` times on the same draws, and its median reported as
scenario-months per second (C x months / seconds). A device-to-device copy gives the memory
bandwidth ceiling of the card the numbers came from.

    python benchmarks/kernels.py --chunk 1048576 --unroll 1 2 4 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp

import mcrisk
from mcrisk.engine import plan as engine
from mcrisk.engine import reduction
from mcrisk.engine.plan import METRICS, Sample, draw_inputs, draw_shocks, fixed_values, make_plan, simulate_months
from mcrisk.engine.reduction import reduce_chunk, reduce_init
from mcrisk.model import metrics as metrics_mod
from mcrisk.stats import reduce as red


def timed(fn, *args, repeat: int, carry: bool = False) -> tuple[float, float, object]:
    """(compile seconds, median run seconds, last output) of jax.jit(fn)(*args). `carry`: the
    first argument is an accumulator, donated and replaced by the output on each call, as a run
    folds its chunks into the running summaries (updated in place, not copied)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0 if carry else ()).lower(*args).compile()
    t_compile = time.perf_counter() - t0
    if carry:
        args = (jax.tree.map(jnp.copy, args[0]), *args[1:])  # the caller's accumulator stays usable
    out = jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(repeat):
        if carry:
            args = (out, *args[1:])
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return t_compile, statistics.median(runs), out


def copy_bandwidth(gib: float = 2.0, repeat: int = 5) -> float:
    """Bytes read plus written per second by a large device-to-device elementwise pass."""
    x = jnp.ones((int(gib * 2**30) // 4,), jnp.float32) * 1.5
    _, t, _ = timed(lambda a: a * 2.0 + 1.0, x, repeat=repeat)
    return 2 * x.nbytes / t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None)
    ap.add_argument("--chunk", type=int, default=None, help="scenarios per chunk (default: the engine's)")
    ap.add_argument("--unroll", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    st = mcrisk.load_study(args.study or mcrisk.default_study_path())
    C = args.chunk or engine.default_chunk_size()
    plan = make_plan(st, scenarios=C, seed=st.simulation.seed, precision="float32", chunk_size=C)
    T, S = plan.months, len(plan.systems)
    sm = C * T  # scenario-months per chunk
    idx = jnp.arange(C, dtype=jnp.uint32)
    rows = []

    def row(stage: str, variant: str, compile_s: float, run_s: float) -> None:
        rows.append(
            {
                "stage": stage,
                "variant": variant,
                "compile_s": compile_s,
                "run_s": run_s,
                "scenario_months_per_s": sm / run_s,
            }
        )
        print(
            f"{stage:>9} | {variant:<28} | compile {compile_s:6.2f} s | run {run_s * 1e3:9.2f} ms | "
            f"{sm / run_s:9.3g} scenario-months/s",
            flush=True,
        )

    c, t, values = timed(lambda i: draw_inputs(plan, i), idx, repeat=args.repeat)
    row("sample", "static inputs", c, t)
    c, t, shocks = timed(lambda i: draw_shocks(plan, i), idx, repeat=args.repeat)
    row("sample", f"monthly shocks ({sum(s is not None for s in shocks)} x {T})", c, t)
    draw = Sample({**values, **jax.device_put(fixed_values(plan))}, shocks)
    del values

    out = bands = None
    for monthly in (True, False):
        for u in args.unroll:
            p = replace(plan, unroll=u, monthly=monthly)
            c, t, res = timed(lambda d, p=p: simulate_months(p, d, C), draw, repeat=args.repeat)
            row("simulate", f"unroll {u}, bands {'on' if monthly else 'off'}", c, t)
            if monthly and u == args.unroll[0]:
                out, bands = res
            del res
    real_irr = metrics_mod.irr
    try:  # the IRR solve's share: the same stage with IRR replaced by a constant
        metrics_mod.irr = lambda capex, cf, residual, **kw: jnp.zeros_like(capex)
        p = replace(plan, unroll=args.unroll[0], monthly=False)
        c, t, _ = timed(lambda d: simulate_months(p, d, C), draw, repeat=args.repeat)
        row("simulate", f"unroll {args.unroll[0]}, bands off, no IRR", c, t)
    finally:
        metrics_mod.irr = real_irr

    mask = jnp.ones((C,), bool)
    acc = reduce_init(plan)

    def lay(lo: red.Layout) -> str:
        order = f"{lo.interleave} scen. per series in turn" if lo.interleave else "series after series"
        return f"{lo.copies} cop{'y' if lo.copies == 1 else 'ies'}, {order}"

    c, t, _ = timed(
        lambda a, o, b, m: reduce_chunk(plan, a, o, m, b), acc, out, bands, mask, repeat=args.repeat, carry=True
    )
    row("summarize", f"metrics + monthly sketches ({lay(plan.sketch_layout)})", c, t)
    # The sketches' device layouts (mcrisk.stats.reduce.Layout: copies of each histogram, and how the
    # scatter's atomic additions are ordered): the same counts, in different times on a GPU.
    layouts = dict.fromkeys(
        [
            plan.sketch_layout,
            red.Layout(1, 0),
            red.Layout(1, 32),
            red.Layout(8, 0),
            red.Layout(8, 1),
            red.Layout(8, 32),
            red.Layout(32, 32),
        ]
    )
    for lo in layouts:
        p = replace(plan, monthly=False, sketch_layout=lo)
        a0 = reduce_init(p)._replace(monthly=None)
        c, t, _ = timed(lambda a, o, m, p=p: reduce_chunk(p, a, o, m), a0, out, mask, repeat=args.repeat, carry=True)
        row("summarize", f"metrics only, {lay(lo)}", c, t)
        del a0
    for lo in (red.Layout(1, 0), plan.sketch_layout):  # the monthly bands: 336 series, coarser bins
        p = replace(plan, sketch_layout=lo)
        a0 = reduce_init(p)
        c, t, _ = timed(
            lambda a, b, m, p=p: reduction.reduce_bands(p, a, b, m), a0, bands, mask, repeat=args.repeat, carry=True
        )
        row("summarize", f"monthly bands only, {lay(lo)}", c, t)
        del a0
    # ... and its parts, to tell where its time goes: the metrics stacked into (H, n) series
    # (materialized), their moments, their sketch bins, and the histogram's scatter-add alone.
    H, spec = plan.n_series, plan.sketch
    c, t, x = timed(lambda o: jnp.stack([o[m] for m in METRICS]).reshape(H, -1), out, repeat=args.repeat)
    row("summarize", "part: stack into (H, n)", c, t)
    c, t, _ = timed(
        lambda x: (x.sum(axis=1), jnp.where(jnp.isfinite(x), x, 0.0).min(axis=1), (x * x).sum(axis=1)),
        x,
        repeat=args.repeat,
    )
    row("summarize", "part: series sums", c, t)
    c, t, flat = timed(
        lambda x: red.bin_index(x, spec) + (jnp.arange(H, dtype=jnp.int32) * spec.n_bins)[:, None],
        x,
        repeat=args.repeat,
    )
    row("summarize", "part: sketch bins", c, t)
    hist = red.init_state(H, spec).hist
    c, t, _ = timed(
        lambda h, f: h.reshape(-1).at[f.reshape(-1)].add(1, mode="promise_in_bounds").reshape(h.shape),
        hist,
        flat,
        repeat=args.repeat,
        carry=True,
    )
    row("summarize", "part: scatter-add (1 copy, series after series)", c, t)
    del x, flat

    # Compiling the four stages one after another, and at once in four threads (fresh functions
    # each time, so that nothing comes from a cache): does XLA leave cores idle while compiling?
    for how in ("one after another", "in 4 threads"):
        lowered = [
            jax.jit(lambda i: draw_inputs(plan, i)).lower(idx),
            jax.jit(lambda i: draw_shocks(plan, i)).lower(idx),
            jax.jit(lambda d: simulate_months(plan, d, C)).lower(draw),
            jax.jit(lambda a, o, b, m: reduce_chunk(plan, a, o, m, b)).lower(acc, out, bands, mask),
        ]
        t0 = time.perf_counter()
        if how == "in 4 threads":
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda low: low.compile(), lowered))
        else:
            [low.compile() for low in lowered]
        wall = time.perf_counter() - t0
        rows.append(
            {"stage": "compile", "variant": how, "compile_s": wall, "run_s": None, "scenario_months_per_s": None}
        )
        print(f"  compile | 4 stages {how:<19} | {wall:6.2f} s", flush=True)

    bw = copy_bandwidth()
    print(f"device-to-device copy: {bw / 1e12:.2f} TB/s (bytes read + written)")
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "host": platform.platform(),
        "chunk": C,
        "months": T,
        "systems": S,
        "copy_bytes_per_s": bw,
        "rows": rows,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
