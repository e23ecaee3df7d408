"""What a process spends before its first computation: importing JAX and mcrisk, starting the
backend (on a GPU: the driver, the CUDA libraries, the memory pool), and the first small
program. One line of JSON per call; run it in fresh processes, with the environment to compare
(XLA_PYTHON_CLIENT_PREALLOCATE=false, say). With --early the backend starts in a thread right
after JAX is imported, while mcrisk is imported; with --early-alloc that thread also makes the
first array, which reserves the device's memory pool, as `mcrisk run` does (mcrisk.cli.main).

    python benchmarks/startup.py [--early | --early-alloc] [--json out.json]
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
    if alloc:  # and the first array, which reserves the device's memory pool (as mcrisk.cli does)
        import numpy as np

        jax.device_put(np.zeros((), np.float32)).block_until_ready()


if early:
    import threading

    starting = threading.Thread(target=start)
    starting.start()
import mcrisk  # noqa: E402,F401
import mcrisk.cli  # noqa: E402,F401
import mcrisk.run  # noqa: E402,F401  (the engine, as a run imports it)

t_mcrisk = time.perf_counter()
if early:
    starting.join()
devices = jax.devices()
t_backend = time.perf_counter()
jax.block_until_ready(jax.numpy.ones(1024) + 1)
t_first = time.perf_counter()
record = {
    "import_jax_s": t_jax - t0, "import_mcrisk_s": t_mcrisk - t_jax, "backend_start_s": t_backend - t_mcrisk,
    "first_program_s": t_first - t_backend, "to_first_program_s": t_first - t0, "early": early, "early_alloc": alloc, "devices": [str(d) for d in devices], "jax": jax.__version__,
    "env": {k: v for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_", "TF_CPP"))},
}
print(json.dumps(record))
if "--json" in sys.argv:
    with open(sys.argv[sys.argv.index("--json") + 1], "a") as f:
        f.write(json.dumps(record) + "\n")
