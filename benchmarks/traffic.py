"""Memory traffic of the simulate stage as compiled for a GPU, with or without one attached.

On a GPU the simulate stage is bound by memory traffic, not arithmetic: every kernel reads its
operands from device memory and writes its results back. This script compiles the stage for
a GPU and reads the optimized program XLA produced (its HLO): it counts the kernels one chunk
launches (loops multiplied by their trip counts) and the bytes each reads and writes, and
predicts scenario-months per second as bandwidth / bytes per scenario-month.

With no GPU attached it compiles for an H100 all the same ("deviceless" compilation: needs
``pip install "jax[cuda12]"`` of the installed JAX's version; ``JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1``
is set here so that the plugin loads with no driver), from the device description in
``benchmarks/h100.txtpb``. So a change to the simulate stage can be judged on a CPU-only machine.

The bytes a program moves are a floor on its time, not a forecast: a kernel bound by latency
runs below the predicted rate (a month loop fused into one Pallas kernel moved 52 bytes per
scenario-month, and ran at a tenth of its predicted rate on an H200).

How far to trust it: for the month-loop variants measured on an H200 (docs/performance.md), the
bytes counted here / 3.0 TB/s came within 15% of the measured time. The count takes every operand as read once from device memory,
except where a fused kernel only slices it, and a dynamic-update-slice as writing only its
update (in place). It ignores the L2 cache and kernel launch latency (about 3 us each).

    python benchmarks/traffic.py                       # the default study, month-loop unroll 4
    python benchmarks/traffic.py --unroll 1 4 8 --top 12 --json out.json
    python benchmarks/traffic.py --stages              # also compile every stage of a run, timed
    python benchmarks/traffic.py --parts               # bytes by part: month loop, the IRR's grid, Newton steps, ...

With ``--stages`` it also compiles each program of a run for that GPU, one after another, and
reports its compile time, kernels and bytes per chunk: compiling is the largest fixed cost of a
GPU run, and XLA's GPU compiler (its fusion pass, LLVM, ptxas) runs on the host, so the times
taken here track it on a CPU-only machine (this 2-core host is slower than a GPU server's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")

DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}
_ARRAY = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*?) ([\w\-]+)\((.*?)\)(, .*)?$")
_HEADER = re.compile(r"^(ENTRY )?%([\w.\-]+) .*\{\s*$")
# Instructions that launch no kernel of their own.
NO_KERNEL = {
    "parameter",
    "get-tuple-element",
    "tuple",
    "bitcast",
    "constant",
    "after-all",
    "partition-id",
    "replica-id",
    "opt-barrier",
    "copy-start",
    "copy-done",
    "add-dependency",
}
H200_BANDWIDTH = 3.0e12  # bytes/s: counted bytes / this matched the measured times within 15% (see docstring)


def nbytes(shape: str) -> int:
    """Bytes of an HLO shape string (an array or a tuple of arrays)."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        total += n * DTYPE_BYTES[dtype]
    return total


def parse(text: str) -> dict[str, list[tuple[str, str, str, list[str], str]]]:
    """Computations of an HLO module's text: name -> [(name, shape, opcode, operands, attributes)]."""
    comps: dict[str, list] = {}
    current = None
    for line in text.splitlines():
        head = _HEADER.match(line)
        if head:
            current = comps.setdefault(head.group(2), [])
            if head.group(1):
                comps["__entry__"] = current
            continue
        m = _INSTR.match(line) if current is not None else None
        if m:
            name, shape, op, operands, attrs = m.groups()
            current.append((name, shape, op, re.findall(r"%([\w.\-]+)", operands), attrs or ""))
    return comps


def fusion_bytes(comps: dict, fused: str) -> int:
    """Bytes a fused kernel moves: each parameter read once, or only the slices taken of it; the
    root written, a dynamic-update-slice only its update (in place, so its target is not read)."""
    body = comps[fused]
    shape = {n: s for n, s, *_ in body}
    users = defaultdict(list)
    for _, s, op, ops, _ in body:
        for o in ops:
            users[o].append((s, op, ops))
    moved = 0
    for n, s, op, _, _ in body:
        if op != "parameter":
            continue
        us = users[n]
        if us and all(u_op == "dynamic-update-slice" and u_ops[0] == n for _, u_op, u_ops in us):
            continue
        if us and all(u_op in ("dynamic-slice", "slice") and u_ops[0] == n for _, u_op, u_ops in us):
            moved += sum(nbytes(u_s) for u_s, _, _ in us)
        else:
            moved += nbytes(s)
    by_name = {n: (s, op, ops) for n, s, op, ops, _ in body}

    def written(name: str) -> int:
        s, op, ops = by_name[name]
        if op == "dynamic-update-slice":
            return nbytes(shape[ops[1]])
        if op == "tuple":
            return sum(written(o) for o in ops)
        if op == "bitcast" and ops[0] in by_name:
            return written(ops[0])
        return nbytes(s)

    return moved + written(body[-1][0])


# Parts of the simulate stage, by the named scopes mcrisk's code puts them in (jax.named_scope),
# as they appear in each kernel's op_name: the first that matches names the part.
PARTS = ("month_loop", "irr_search", "irr_newton", "irr_bracket", "irr_grid")


def part_of(attrs: str) -> str:
    """The part of the simulate stage a kernel belongs to (see PARTS), from its op_name; 'other' if none."""
    name = re.search(r'op_name="([^"]*)"', attrs)
    return next((p for p in PARTS if name and f"/{p}/" in f"/{name.group(1)}/"), "other")


def kernels(comps: dict, comp: str = "__entry__") -> list[tuple[str, str, int, int, str]]:
    """(kernel name, opcode, bytes per launch, launches, part) of one run of `comp`, loops unrolled
    by their trip counts."""
    shape = {n: s for n, s, *_ in comps[comp]}
    out = []
    for n, s, op, ops, attrs in comps[comp]:
        if op == "while":
            # A loop with no known trip count (the IRR's search over the few rows that need it)
            # runs once in a chunk that has such rows: counted once.
            known = re.search(r'"known_trip_count":\{"n":"(\d+)"', attrs)
            trip = int(known.group(1)) if known else 1
            body = re.search(r"body=%([\w.\-]+)", attrs).group(1)
            out += [(k, o, b, c * trip, part) for k, o, b, c, part in kernels(comps, body)]
        elif op in ("conditional", "call"):  # the costliest branch
            branches = [
                kernels(comps, c) for c in re.findall(r"(?:branch_computations=\{|to_apply=|calls=)%([\w.\-]+)", attrs)
            ]
            out += max(branches, key=lambda ks: sum(k[2] * k[3] for k in ks), default=[])
        elif op not in NO_KERNEL:
            if op == "fusion":
                b = fusion_bytes(comps, re.search(r"calls=%([\w.\-]+)", attrs).group(1))
            elif op == "dynamic-update-slice":
                b = 2 * nbytes(shape.get(ops[1], ""))
            else:
                b = sum(nbytes(shape.get(o, "")) for o in ops) + nbytes(s)
            out.append((n, op, b, 1, part_of(attrs)))
    return out


def account(text: str) -> dict:
    """Kernel launches and bytes moved by one run of an optimized HLO module, in all and by part."""
    ks = kernels(parse(text))
    parts: dict[str, dict[str, int]] = {}
    for _, _, b, c, part in ks:
        row = parts.setdefault(part, {"launches": 0, "bytes": 0})
        row["launches"] += c
        row["bytes"] += b * c
    return {
        "launches": sum(k[3] for k in ks),
        "bytes": sum(k[2] * k[3] for k in ks),
        "kernels": sorted(ks, key=lambda k: -k[2] * k[3]),
        "parts": parts,
    }


def gpu_mesh(target: Path):
    """A one-device mesh of the attached GPU, or of a compile-only GPU described by `target`."""
    import jax
    import numpy as np
    from jax.experimental import topologies
    from jax.sharding import Mesh

    if jax.default_backend() == "gpu":
        return Mesh(np.array(jax.devices()[:1]), ("scenarios",)), str(jax.devices()[0].device_kind)
    try:
        topo = topologies.get_topology_desc("", "cuda", topology="1x1x1", target_config=target.read_text())
    except Exception as e:  # noqa: BLE001
        sys.exit(
            f'cannot compile for a GPU here ({e}); install the CUDA plugin: pip install "jax[cuda12]=={jax.__version__}"'
        )
    return Mesh(
        np.array(topo.devices), ("scenarios",)
    ), f"{topo.devices[0].device_kind} (no GPU attached: compiled only)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None)
    ap.add_argument("--chunk", type=int, default=1 << 20, help="scenarios per chunk (default 2^20, the GPU default)")
    ap.add_argument("--unroll", type=int, nargs="+", default=[4], help="month-loop unrolls to compile")
    ap.add_argument(
        "--bands",
        choices=("on", "off", "both"),
        default="off",
        help="with the monthly band outputs (runs compute them apart, in the first chunks only)",
    )
    ap.add_argument("--target", type=Path, default=Path(__file__).with_name("h100.txtpb"))
    ap.add_argument("--bandwidth", type=float, default=H200_BANDWIDTH, help="bytes/s for the predicted rate")
    ap.add_argument("--top", type=int, default=0, help="list the N kernels that move the most bytes (first variant)")
    ap.add_argument(
        "--parts",
        action="store_true",
        help="bytes by part: the month loop, the IRR's grid, bracket, search, Newton steps",
    )
    ap.add_argument("--dump", type=Path, default=None, help="write each variant's optimized HLO into this folder")
    ap.add_argument("--stages", action="store_true", help="also compile every stage of a run, timed")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    import mcrisk
    from mcrisk.engine import plan as engine
    from mcrisk.engine import reduction

    mesh, kind = gpu_mesh(args.target)
    engine.on_accelerator = lambda: True  # the stage as a GPU run builds it (e.g. the IRR's unroll)
    study = mcrisk.load_study(args.study or mcrisk.default_study_path())
    C = args.chunk
    base = engine.make_plan(study, scenarios=C, seed=study.simulation.seed, precision="float32", chunk_size=C)
    base = replace(base, mesh=mesh)
    T = base.months
    cols = NamedSharding(mesh, PartitionSpec("scenarios"))
    rep = NamedSharding(mesh, PartitionSpec())
    idx = jax.ShapeDtypeStruct((C,), jnp.uint32)
    on = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)  # noqa: E731
    values = {k: on(v, cols) for k, v in jax.eval_shape(lambda i: engine.draw_inputs(base, i), idx).items()}
    values |= {
        k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype, sharding=rep)
        for k, v in engine.fixed_values(base).items()
    }
    shocks = engine.Shocks(
        *(
            None if s is None else on(s, NamedSharding(mesh, PartitionSpec(None, "scenarios")))
            for s in jax.eval_shape(lambda i: engine.draw_shocks(base, i), idx)
        )
    )
    draw = engine.Sample(values, shocks)

    print(
        f"simulate stage of {study.name or 'the study'}: {C:,} scenarios x {T} months x {len(base.systems)} systems, "
        f"for {kind}; predicted at {args.bandwidth / 1e12:.1f} TB/s"
    )
    print(
        f"{'variant':<28} | {'compile s':>9} | {'kernels':>7} | {'GB moved':>8} | {'B/scen-month':>12} | {'predicted scen-months/s':>23}"
    )
    rows = []
    bands = {"on": (True,), "off": (False,), "both": (True, False)}[args.bands]
    for monthly, u in [(m, u) for m in bands for u in args.unroll]:
        plan = replace(base, unroll=u, monthly=monthly)
        t0 = time.perf_counter()
        compiled = (
            jax.jit(
                lambda d, p=plan: engine.simulate_months(p, d, C),
                out_shardings=NamedSharding(mesh, PartitionSpec(None, "scenarios")),
            )
            .lower(draw)
            .compile()
        )
        compile_s = time.perf_counter() - t0
        text = compiled.as_text()
        variant = f"scan, unroll {u}, bands {'on' if monthly else 'off'}"
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            (args.dump / f"simulate-{variant.replace(', ', '-').replace(' ', '')}.hlo").write_text(text)
        acc = account(text)
        per_sm = acc["bytes"] / (C * T)
        rows.append(
            {
                "variant": variant,
                "unroll": u,
                "bands": monthly,
                "compile_s": compile_s,
                "launches": acc["launches"],
                "bytes": acc["bytes"],
                "bytes_per_scenario_month": per_sm,
                "predicted_scenario_months_per_s": args.bandwidth / per_sm,
                "parts": {p: dict(v, bytes_per_scenario_month=v["bytes"] / (C * T)) for p, v in acc["parts"].items()},
                "top": [
                    {"kernel": k, "op": o, "bytes": b, "launches": c, "part": part}
                    for k, o, b, c, part in acc["kernels"][: max(args.top, 20)]
                ],
            }
        )
        print(
            f"{variant:<28} | {compile_s:9.1f} | {acc['launches']:7d} | {acc['bytes'] / 1e9:8.2f} | {per_sm:12.0f} | "
            f"{args.bandwidth / per_sm:23.3g}",
            flush=True,
        )
    stages = []
    if args.stages:
        from mcrisk.sampling.uniforms import root_key, shock_normals

        by_cols = NamedSharding(mesh, PartitionSpec(None, "scenarios"))
        dists = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=rep), engine.sample_values(base)
        )
        sid = jax.ShapeDtypeStruct((), jnp.uint32, sharding=rep)
        idx_c, mask = (jax.ShapeDtypeStruct((C,), dt, sharding=cols) for dt in (jnp.uint32, jnp.bool_))
        acc = jax.tree.map(lambda a: on(a, rep), reduction.reduce_init(base))
        out = {k: on(v, by_cols) for k, v in jax.eval_shape(lambda d: engine.simulate(base, d, C), draw).items()}
        programs = {  # as chunks.execute builds them (the index, transfer and retention programs are small)
            "sample: inputs": (lambda i, v: engine.draw_inputs(base, i, v), (idx_c, dists)),
            "sample: shocks": (
                lambda i, k: shock_normals(root_key(base.seed), i, k, T, base.dtype, time_major=True),
                (idx_c, sid),
            ),
            "simulate": (lambda d: engine.simulate(base, d, C), (draw,)),
            "summarize: metrics": (
                lambda a, o, m: reduction.reduce_chunk(replace(base, monthly=False), a, o, m),
                (acc._replace(monthly=None), out, mask),
            ),
            "summarize: bands": (
                lambda a, d, m: reduction.reduce_bands(base, a, engine.monthly_values(base, d, C), m),
                (acc, draw, mask),
            ),
        }
        print(f"\n{'program of a run':<28} | {'compile s':>9} | {'kernels':>7} | {'GB moved':>8}")
        for name, (fn, fargs) in programs.items():
            t0 = time.perf_counter()
            text = jax.jit(fn).lower(*fargs).compile().as_text()
            compile_s = time.perf_counter() - t0
            acc_s = account(text)
            stages.append(
                {"program": name, "compile_s": compile_s, "launches": acc_s["launches"], "bytes": acc_s["bytes"]}
            )
            print(f"{name:<28} | {compile_s:9.1f} | {acc_s['launches']:7d} | {acc_s['bytes'] / 1e9:8.2f}", flush=True)
    if args.parts:
        for row in rows:
            print(
                f"\nparts of '{row['variant']}' (by the named scopes of mcrisk's code; the IRR's search runs once a chunk):"
            )
            print(f"  {'part':<12} | {'kernels':>7} | {'GB moved':>8} | {'B/scen-month':>12} | {'share':>5}")
            for part, v in sorted(row["parts"].items(), key=lambda kv: -kv[1]["bytes"]):
                print(
                    f"  {part:<12} | {v['launches']:7d} | {v['bytes'] / 1e9:8.2f} | {v['bytes_per_scenario_month']:12.0f} | "
                    f"{v['bytes'] / row['bytes']:5.0%}"
                )
    if args.top:
        print(f"\nthe {args.top} kernels of '{rows[0]['variant']}' that move the most bytes:")
        for k in rows[0]["top"][: args.top]:
            print(
                f"  {k['bytes'] * k['launches'] / 1e9:7.2f} GB  {k['launches']:4d} x  {k['op']:<20} {k['part']:<12} {k['kernel']}"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "jax": jax.__version__,
                    "target": kind,
                    "chunk": C,
                    "months": T,
                    "systems": len(base.systems),
                    "bandwidth": args.bandwidth,
                    "rows": rows,
                    "stages": stages,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
