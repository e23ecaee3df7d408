"""The compiled programs of a run: each stage jitted, compiled once per process, timed per call.

Compiling is the largest fixed cost of a run on a GPU host. On an H200 with 16 host cores the
four stages of the default study took 7.1 s to compile one after another and 2.4 s at once in
four threads (``benchmarks/kernels.py``): XLA leaves most cores idle while it compiles one
program. So a run lowers its stages from abstract arguments (shapes and dtypes, known before
any scenario is drawn), compiles them at once in threads (:func:`compile_all`), and each stage
waits for its own program on its first call. Programs are kept per process, keyed by their
HLO, so a stress or a sweep point that differs from its base only in values (fixed values,
distribution parameters, the copula factor: arguments, not constants) reuses them, as does a
run of another size in the same chunk shape (the scenario count is an argument too, and a run
smaller than a chunk takes a power-of-two chunk: :func:`mcrisk.engine.plan.small_run_chunk`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from mcrisk.engine.timings import Timings

_LOCK = threading.Lock()
_EXECUTABLES: OrderedDict[str, Any] = OrderedDict()  # key -> compiled program, most recent last
_EXECUTABLES_KEPT = 16
# Prepared programs a stage used on its first call, and those it could not use (its arguments
# differed from the abstract ones it was prepared with, so it compiled again): tests check the
# second stays 0.
STATS = {"prepared_used": 0, "prepared_missed": 0}
# Compiles submitted by compile_all and not yet started or collected (see cancel_pending).
_QUEUED: set[Future] = set()


def signature(args: Any) -> str:
    """The tree structure, shapes, dtypes and weak types of `args` (arrays or ShapeDtypeStructs):
    what a compiled program must be called with."""
    leaves, tree = jax.tree.flatten(args)

    def one(a: Any) -> str:
        a = a if hasattr(a, "dtype") else np.asarray(a)
        return f"{tuple(a.shape)}:{np.dtype(a.dtype)}:{int(bool(getattr(a, 'weak_type', False)))}"

    return f"{tree}|{';'.join(one(a) for a in leaves)}"


def compiler_options() -> dict[str, Any]:
    """XLA options every stage is compiled with, by backend.

    GPUs: matrix products go to cuBLAS, not to Triton kernels generated for them. The stages
    have two small products (the copula's factor, and the IRR's present values at its grid of
    rates), and for each XLA generates and autotunes Triton kernels while it compiles. On an
    H200 (a cold run of 1e8 scenarios, JAX's compile log) that made the simulate stage, the
    longest compile, take 2.68 s, against 1.51 s with cuBLAS, for the same run time (the
    simulate stage 1.05 s and 1.06 s over 1e8 scenarios); see benchmarks/RESULTS.md."""
    if jax.default_backend() == "gpu":
        return {"xla_gpu_enable_triton_gemm": False}
    return {}


def compile_lowered(lowered: Any, args: Any) -> Any:
    """Compile a lowered stage (with :func:`compiler_options`), or reuse the program of an identical
    one compiled earlier in this process. The key holds the arguments' signature too: XLA drops
    unused arguments from the text."""
    options = compiler_options()
    key = hashlib.sha256(f"{jax.local_devices()}|{signature(args)}|{options}|{lowered.as_text()}".encode()).hexdigest()
    with _LOCK:
        if key in _EXECUTABLES:
            _EXECUTABLES.move_to_end(key)
            return _EXECUTABLES[key]
    compiled = lowered.compile(compiler_options=options or None)  # outside the lock: several stages compile at once
    with _LOCK:
        _EXECUTABLES[key] = compiled
        while len(_EXECUTABLES) > _EXECUTABLES_KEPT:
            _EXECUTABLES.popitem(last=False)
    return compiled


class Stage:
    """A jitted stage, compiled before or on its first call (compile time booked apart) and timed per call."""

    def __init__(
        self,
        fn: Callable,
        name: str,
        times: Timings | dict[str, float],
        donate: int | None = None,
        out_shardings: Any = None,
        label: str | None = None,
    ):
        """`name`: the stage its time is booked to (``times[name] += seconds``); `label`: the program's own name (in compile
        logs, profiles and XLA dumps: jit(simulate), not jit(<lambda>)), `name` by default."""
        kw: dict[str, Any] = {}
        if donate is not None:
            kw["donate_argnums"] = donate
        if out_shardings is not None:
            kw["out_shardings"] = out_shardings

        def program(*args: Any) -> Any:  # the caller's function keeps its own name
            return fn(*args)

        program.__name__ = program.__qualname__ = label or name
        self.jitted = jax.jit(program, **kw)
        self.name, self.times = name, times
        self.compiled: Any = None
        self.pending: tuple[str, Future] | None = None

    def abstract(self, *args: Any) -> Any:
        """The abstract outputs for these (abstract) arguments, without compiling."""
        return jax.eval_shape(self.jitted, *args)

    def prepare(self, pool: ThreadPoolExecutor, *args: Any) -> None:
        """Lower now for these (abstract) arguments and compile in `pool`."""
        lowered = self.jitted.lower(*args)
        future = pool.submit(compile_lowered, lowered, args)
        with _LOCK:
            _QUEUED.add(future)
        future.add_done_callback(_forget)
        self.pending = (signature(args), future)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            t0 = time.perf_counter()
            matches = self.pending is not None and self.pending[0] == signature(args)
            if matches and not self.pending[1].cancelled():
                self.compiled = self.pending[1].result()
                STATS["prepared_used"] += 1
            else:  # (a program cancelled by cancel_pending is compiled here, as if never prepared)
                STATS["prepared_missed"] += self.pending is not None and not matches
                self.compiled = compile_lowered(self.jitted.lower(*args), args)
            self.pending = None
            self.times["compile"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        out = jax.block_until_ready(self.compiled(*args))
        self.times[self.name] += time.perf_counter() - t0
        return out


def _forget(future: Future) -> None:
    with _LOCK:
        _QUEUED.discard(future)


def cancel_pending() -> int:
    """Cancel the compiles that compile_all queued and no thread has started; return how many.

    For a run that fails or is interrupted: the process would otherwise wait at exit until
    every queued program had compiled (8 s after Ctrl-C on 2 cores, for programs the run will
    never call). Compiles already running cannot be stopped (the CLI does not wait for them:
    ``cli.app._leave``). A stage whose program was cancelled compiles it on its first call."""
    with _LOCK:
        queued = list(_QUEUED)
    return sum(f.cancel() for f in queued)


def compile_all(plans: Sequence[tuple[Stage, tuple]], times: Timings | dict[str, float]) -> None:
    """Lower every (stage, abstract arguments) now and compile them at once in threads; each
    stage collects its program on its first call. Lowering is booked as compile time here, the
    wait for the programs on each stage's first call."""
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(len(plans), os.cpu_count() or 1)), thread_name_prefix="mcrisk-compile"
    )
    try:
        for stage, args in plans:
            stage.prepare(pool, *args)
    finally:
        pool.shutdown(wait=False)  # the threads end when their programs are compiled
    times["compile"] += time.perf_counter() - t0
