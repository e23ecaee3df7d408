"""A process's place in a cluster: which slice of a run it takes under `jax.distributed`
(`mcrisk run --shard auto`). Light to import: the CLI reads it before the engine is loaded."""

from __future__ import annotations

import os

from mcrisk.errors import Problem, StudyError

# Where a launcher gives no cluster JAX detects on its own (Slurm, Open MPI and TPU pods it does).
COORDINATOR_ENV = ("MCRISK_COORDINATOR", "MCRISK_NUM_PROCESSES", "MCRISK_PROCESS_ID")


def distributed_shard() -> tuple[int, int]:
    """(this process's index, the process count) under ``jax.distributed``, initialized here:
    from MCRISK_COORDINATOR (host:port), MCRISK_NUM_PROCESSES and MCRISK_PROCESS_ID where set,
    else from the cluster JAX detects. Each process then runs its own slice on its own devices
    (`--shard auto`); no data crosses between processes until `mcrisk merge`. Must run before
    any JAX computation in the process."""
    import jax

    env = {k: os.environ[k] for k in COORDINATOR_ENV if os.environ.get(k)}
    try:
        if env:
            if len(env) != len(COORDINATOR_ENV):
                raise ValueError(f"set all of {', '.join(COORDINATOR_ENV)} or none")
            jax.distributed.initialize(
                coordinator_address=env["MCRISK_COORDINATOR"],
                num_processes=int(env["MCRISK_NUM_PROCESSES"]),
                process_id=int(env["MCRISK_PROCESS_ID"]),
            )
        else:
            jax.distributed.initialize()
    except Exception as exc:  # JAX raises ValueError/RuntimeError with its own message
        raise StudyError(
            [
                Problem(
                    "--shard",
                    f"auto needs a cluster jax.distributed can join (Slurm, Open MPI, "
                    f"or {', '.join(COORDINATOR_ENV)}): {exc}",
                )
            ],
            "options",
        ) from None
    return jax.process_index(), jax.process_count()
