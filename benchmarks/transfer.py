"""How fast a block of scenario rows reaches the host, by each way JAX offers.

A run that writes its scenario rows assembles each chunk's float columns on the device into a
block per dtype (mcrisk.engine.rows.ScenarioRows: the storage dtype's, and float64 for the amounts
of money) and moves them to the host (mcrisk.engine.rows.HostBlock). This times that move alone,
for one float32 block of `--columns` columns of a chunk of the given scenarios, each way on fresh
device arrays (a block already moved is cached by JAX):

* `np.asarray`: JAX's ordinary copy into a new NumPy array;
* `copy_to_host_async`, then `np.asarray`;
* `device_put` into pinned host memory, then `np.asarray` (zero-copy if JAX says so);

and, for scale, a host memcpy of the same bytes into fresh and into reused memory. Prints a
table and writes JSON.

    python benchmarks/transfer.py --scenarios 1048576 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import SingleDeviceSharding


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=1 << 20, help="scenarios of the chunk (rows: 3 per scenario)")
    ap.add_argument("--columns", type=int, default=51, help="float32 columns of the block (the default study's)")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--pool-blocks", type=int, default=6, help="pinned blocks held at once, to time the pool's growth")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    dev = jax.devices()[0]
    shape = (args.columns, 3 * args.scenarios)
    nbytes = int(np.prod(shape)) * 4
    kinds = [m.kind for m in dev.addressable_memories()]
    make = jax.jit(lambda k: jax.random.uniform(k, shape, jnp.float32))

    def fresh(i: int) -> jax.Array:
        return jax.block_until_ready(make(jax.random.key(i)))

    def plain(x):
        return np.asarray(x)

    def asynchronous(x):
        x.copy_to_host_async()
        return np.asarray(x)

    pinned_sharding = SingleDeviceSharding(dev, memory_kind="pinned_host") if "pinned_host" in kinds else None

    def pinned(x):
        return np.asarray(jax.device_put(x, pinned_sharding))

    ways = {"np.asarray": plain, "copy_to_host_async + np.asarray": asynchronous}
    if pinned_sharding is not None and dev.platform != "cpu":
        ways["device_put(pinned_host) + np.asarray"] = pinned
    rows = []
    check = np.asarray(fresh(0))
    for name, way in ways.items():
        times = []
        for r in range(args.repeat):
            x = fresh(r)
            t0 = time.perf_counter()
            h = way(x)
            times.append(time.perf_counter() - t0)
            if r == 0:
                assert np.array_equal(h, check), name
            del x, h
        t = statistics.median(times)
        rows.append({"way": name, "seconds": t, "gb_per_s": nbytes / t / 1e9, "all_s": times})
    src = np.asarray(check)
    for name, reuse in (("host memcpy into fresh memory", False), ("host memcpy into reused memory", True)):
        dst = np.empty_like(src) if reuse else None
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            if reuse:
                np.copyto(dst, src)
            else:
                dst2 = src.copy()
                del dst2
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        rows.append({"way": name, "seconds": t, "gb_per_s": nbytes / t / 1e9, "all_s": times})
    # JAX's pool of pinned host memory: blocks held at once (as the writer's queue holds several
    # chunks' blocks), each allocated while the others live; then freed, and as many again. The
    # first round grows the pool, the second reuses it (if the pool keeps what is freed).
    pool = None
    if pinned_sharding is not None and dev.platform != "cpu":
        x = fresh(11)
        pool = {}
        for round_ in ("grow", "reuse"):
            held, times = [], []
            for _ in range(args.pool_blocks):
                t0 = time.perf_counter()
                held.append(jax.block_until_ready(jax.device_put(x, pinned_sharding)))
                times.append(time.perf_counter() - t0)
            pool[round_] = times
            del held
        del x
    zero_copy = None
    if pinned_sharding is not None:
        y = jax.device_put(fresh(9), pinned_sharding)
        zero_copy = not y._single_device_array_to_np_array_did_copy()[1]
    print(
        f"{shape[0]} x {shape[1]:,} float32 = {nbytes / 1e9:.2f} GB on {dev.device_kind}; memory kinds {kinds}; "
        f"pinned block read in place: {zero_copy}"
    )
    for r in rows:
        print(f"{r['way']:<40} {r['seconds'] * 1e3:9.1f} ms {r['gb_per_s']:8.2f} GB/s")
    if pool is not None:
        for round_, times in pool.items():
            print(
                f"pinned pool, {args.pool_blocks} blocks held at once ({round_}): ms each "
                + " ".join(f"{t * 1e3:.0f}" for t in times)
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "jax": jax.__version__,
                    "device": str(dev),
                    "device_kind": dev.device_kind,
                    "host": platform.platform(),
                    "shape": shape,
                    "bytes": nbytes,
                    "memory_kinds": kinds,
                    "pinned_zero_copy": zero_copy,
                    "rows": rows,
                    "pinned_pool_s": pool,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
