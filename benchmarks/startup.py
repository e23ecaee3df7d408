"""What a process spends before its first computation: importing JAX and mcrisk, starting the
backend (on a GPU: the driver, the CUDA libraries, the memory pool), and the first small
program. One line of JSON per call; run it in fresh processes, with the environment to compare
(XLA_PYTHON_CLIENT_PREALLOCATE=false, say). With --early the backend starts in a thread right
after JAX is imported, while mcrisk is imported; with --early-alloc that thread also makes the
first array, which reserves the device's memory pool, as `mcrisk run` does (mcrisk.cli.app.main).

    python benchmarks/startup.py [--early | --early-alloc] [--exit] [--json out.json]

--exit also times JAX's clean-up at exit (the backend destroyed, its memory freed) after a
run's worth of device and pinned host memory.
"""

from __future__ import annotations

import json
import os
import sys
import time

t0 = time.perf_counter()
import jax  # noqa: E402

t_jax = time.perf_counter()
early = "--early" in sys.argv or "--early-alloc" in sys.argv
alloc = "--early-alloc" in sys.argv


def start() -> None:
    jax.devices()
    if alloc:  # and the first array, which reserves the device's memory pool (as mcrisk.cli.app does)
        import numpy as np

        jax.device_put(np.zeros((), np.float32)).block_until_ready()


if early:
    import threading

    starting = threading.Thread(target=start)
    starting.start()
import mcrisk  # noqa: E402,F401

t_mcrisk = time.perf_counter()
if early:
    starting.join()
devices = jax.devices()
t_backend = time.perf_counter()
jax.block_until_ready(jax.numpy.ones(1024) + 1)
t_first = time.perf_counter()
exit_s = None
if "--exit" in sys.argv:  # and the end: JAX's atexit clean-up (the backend destroyed) after a run's
    # worth of memory (a 2 GiB device array and three 0.64 GB blocks in pinned host memory, as a
    # run writing rows holds), which `mcrisk run` does on leaving (cli._leave)
    import jax._src.api as jax_api
    import numpy as np

    big = jax.block_until_ready(jax.numpy.zeros((1 << 29,), np.float32))
    memories = {m.kind for m in devices[0].addressable_memories()}
    if "pinned_host" in memories and devices[0].platform != "cpu":
        pinned = jax.sharding.SingleDeviceSharding(devices[0], memory_kind="pinned_host")
        held = [jax.block_until_ready(jax.device_put(big[: 160 << 20], pinned)) for _ in range(3)]
    t_exit = time.perf_counter()
    jax_api.clean_up()
    exit_s = time.perf_counter() - t_exit
record = {
    "exit_clean_up_s": exit_s,
    "import_jax_s": t_jax - t0,
    "import_mcrisk_s": t_mcrisk - t_jax,
    "backend_start_s": t_backend - t_mcrisk,
    "first_program_s": t_first - t_backend,
    "to_first_program_s": t_first - t0,
    "early": early,
    "early_alloc": alloc,
    "devices": [str(d) for d in devices],
    "jax": jax.__version__,
    "env": {k: v for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_", "TF_CPP"))},
}
print(json.dumps(record))
if "--json" in sys.argv:
    with open(sys.argv[sys.argv.index("--json") + 1], "a") as f:
        f.write(json.dumps(record) + "\n")
