"""`enable_float64`: JAX's float64 support, which the engine needs, switched on by its entry points."""

from __future__ import annotations

import jax


def enable_float64() -> None:
    """Switch on JAX's float64 support (``jax_enable_x64``) for the whole process.

    The engine needs it (running sums of money and the IRR's Newton steps are float64; paths
    run in the study's precision, float32 by default), and `run_study`, `merge_runs` and the
    ``mcrisk`` command call it before anything is traced. Importing mcrisk does not: the flag
    is global, and with it a program's own ``jnp.arange(3.0)`` becomes float64. JAX's scoped
    form (``with jax.enable_x64(True)``) is thread-local, and the engine compiles and moves
    results on threads of its own, so the whole process takes the setting. Idempotent.
    """
    jax.config.update("jax_enable_x64", True)
