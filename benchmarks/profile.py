"""Where a run's device time goes, program by program and kernel by kernel (JAX's profiler).

Runs the default study (or --study) with summaries only, once untraced to compile and warm up,
then again under `jax.profiler.trace`, and reads the trace's Perfetto JSON: every device event
(a GPU kernel or copy; on a CPU, each XLA operation's thunk) summed by its program and name,
and the device's busy time against the run's wall time. Prints the programs and the costliest
kernels, and writes JSON.

    python benchmarks/profile.py --scenarios 1e7 --json out.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import jax

import mcrisk


def device_events(trace: dict) -> list[dict]:
    """The complete ('X') events on device tracks: a process named like /device:GPU:0 (or, for
    a CPU backend, the XLA thunks on the host's threads)."""
    names = {
        e["pid"]: e["args"]["name"]
        for e in trace["traceEvents"]
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    gpu = {pid for pid, n in names.items() if "/device:GPU" in n}
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X" and "dur" in e]
    if gpu:
        return [e for e in events if e["pid"] in gpu]
    return [e for e in events if "hlo_op" in e.get("args", {}) or "hlo_module" in e.get("args", {})]


def busy_seconds(events: list[dict]) -> float:
    """Seconds when at least one device event runs (overlapping events counted once)."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events)
    total, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total / 1e6


def time_stage_calls() -> dict[str, list[float]]:
    """Record every stage call's wall seconds by program name (mcrisk.engine.programs.Stage), first call
    included: the run's stage table sums them, this tells a fixed cost from a per-chunk one."""
    from mcrisk.engine import programs

    calls: dict[str, list[float]] = defaultdict(list)
    call = programs.Stage.__call__

    def timed_call(self, *a):
        t0 = time.perf_counter()
        out = call(self, *a)
        calls[self.jitted.__name__].append(time.perf_counter() - t0)
        return out

    programs.Stage.__call__ = timed_call
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None)
    ap.add_argument("--scenarios", type=float, default=1e7)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    study = args.study or str(mcrisk.default_study_path())
    n = int(args.scenarios)
    kw = dict(scenarios=n, write_scenarios=False, stress=False, analyze=False, force=True)
    with tempfile.TemporaryDirectory() as tmp:
        mcrisk.run_study(study, out=Path(tmp) / "warm", **kw)  # compiles every program
        stage_calls = time_stage_calls()
        t0 = time.perf_counter()
        options = jax.profiler.ProfileOptions()
        options.python_tracer_level = 0  # (Python's calls would fill the trace's million events)
        with jax.profiler.trace(Path(tmp) / "trace", create_perfetto_trace=True, profiler_options=options):
            result = mcrisk.run_study(study, out=Path(tmp) / "run", **kw)
        wall = time.perf_counter() - t0
        path = next((Path(tmp) / "trace").rglob("perfetto_trace.json.gz"))
        trace = json.loads(gzip.decompress(path.read_bytes()))
    events = device_events(trace)
    by_program: dict[str, float] = defaultdict(float)
    by_kernel: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for e in events:
        a = e.get("args", {})
        program = str(a.get("hlo_module") or a.get("long_name", "").split("(")[0] or "?")
        by_program[program] += e["dur"] / 1e6
        k = by_kernel[(program, e["name"])]
        k[0] += e["dur"] / 1e6
        k[1] += 1
    busy = busy_seconds(events)
    host_pids = {
        e["pid"]
        for e in trace["traceEvents"]
        if e.get("ph") == "M" and e.get("name") == "process_name" and "/host:" in e["args"]["name"]
    }
    host: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # the host's own spans (they nest: not additive)
    for e in trace["traceEvents"]:
        if e.get("ph") == "X" and "dur" in e and e["pid"] in host_pids and "hlo_op" not in e.get("args", {}):
            h = host[e["name"].split("(")[0][:60]]
            h[0] += e["dur"] / 1e6
            h[1] += 1
    stages = result.manifest["seconds"]
    print(
        f"{n:,} scenarios on {jax.devices()[0].device_kind}: wall {wall:.2f} s traced, device busy {busy:.2f} s, "
        f"{len(events):,} device events; the run's stages: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    )
    print(f"\n{'program':<40} {'device s':>9}")
    for p, s in sorted(by_program.items(), key=lambda kv: -kv[1]):
        print(f"{p[:40]:<40} {s:9.3f}")
    top = sorted(by_kernel.items(), key=lambda kv: -kv[1][0])[: args.top]
    print(f"\n{'program':<24} {'kernel':<48} {'calls':>6} {'s':>8} {'us/call':>9}")
    for (p, name), (s, calls) in top:
        print(f"{p[:24]:<24} {name[:48]:<48} {calls:6d} {s:8.3f} {s / calls * 1e6:9.1f}")
    print(f"\n{'stage program':<16} {'calls':>6} {'total s':>8} {'first ms':>9} {'others ms':>10}")
    for name, ts in stage_calls.items():
        rest = sum(ts[1:]) / max(1, len(ts) - 1) * 1e3
        print(f"{name:<16} {len(ts):6d} {sum(ts):8.3f} {ts[0] * 1e3:9.1f} {rest:10.1f}")
    print(f"\n{'host span (nested spans overlap)':<60} {'calls':>6} {'s':>8}")
    host_top = sorted(host.items(), key=lambda kv: -kv[1][0])[: args.top]
    for name, (sec, calls) in host_top:
        print(f"{name:<60} {calls:6d} {sec:8.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "jax": jax.__version__,
                    "device": jax.devices()[0].device_kind,
                    "scenarios": n,
                    "wall_traced_s": wall,
                    "device_busy_s": busy,
                    "stages_s": stages,
                    "programs_s": dict(sorted(by_program.items(), key=lambda kv: -kv[1])),
                    "kernels": [{"program": p, "name": name, "calls": c, "seconds": s} for (p, name), (s, c) in top],
                    "stage_calls_s": dict(stage_calls),
                    "host_spans": [{"name": name, "calls": c, "seconds": s} for name, (s, c) in host_top],
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
