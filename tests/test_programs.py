"""The run's compiled programs: prepared at once in threads, and not waited for when a run stops."""

from __future__ import annotations

import threading

import jax.numpy as jnp
import pytest

from mcrisk.engine import programs
from mcrisk.engine.programs import Stage, cancel_pending, compile_all


def test_a_stopped_run_cancels_the_compiles_not_started_and_its_stages_still_work(monkeypatch):
    release = threading.Event()
    real = programs.compile_lowered
    started = []

    def slow(lowered, args):  # the first compile holds the only thread until released
        started.append(1)
        release.wait(30)
        return real(lowered, args)

    monkeypatch.setattr(programs, "compile_lowered", slow)
    monkeypatch.setattr(programs.os, "cpu_count", lambda: 1)
    times = {"compile": 0.0, "sample": 0.0}
    stages = [Stage(lambda x, k=k: x * k + 1, "sample", times, label=f"stage{k}") for k in range(3)]
    x = jnp.arange(4.0)
    compile_all([(s, (x,)) for s in stages], times)
    try:
        assert cancel_pending() == 2  # the two queued behind the running one
        assert started and not stages[0].pending[1].cancelled()  # the running compile cannot be stopped
        assert all(s.pending[1].cancelled() for s in stages[1:])
    finally:
        release.set()
    stages[0].pending[1].result(timeout=30)
    missed = programs.STATS["prepared_missed"]
    for k, s in enumerate(stages):  # cancelled programs are compiled on first call
        assert s(x).tolist() == pytest.approx((x * k + 1).tolist())
    assert programs.STATS["prepared_missed"] == missed  # a cancelled program is not a mismatch
    assert cancel_pending() == 0


def test_stages_compile_with_the_backends_options_and_keep_a_program_per_options(monkeypatch):
    """Every stage is compiled with programs.compiler_options() (none on CPUs; on GPUs, matrix
    products on cuBLAS): the options reach XLA (an unknown one is refused), they give the same
    numbers, and programs compiled with other options are not reused for them."""
    assert programs.compiler_options() == {}  # (the test suite runs on CPUs)
    times = {"compile": 0.0, "simulate": 0.0}
    a, b = jnp.arange(12.0).reshape(3, 4), jnp.arange(20.0).reshape(4, 5)
    plain = Stage(lambda x, y: x @ y, "simulate", times, label="plain")(a, b)
    seen = []
    monkeypatch.setattr(programs, "compiler_options", lambda: seen.append(1) or {"xla_gpu_enable_triton_gemm": False})
    cublas = Stage(lambda x, y: x @ y, "simulate", times, label="plain")(a, b)
    assert seen and (cublas == plain).all()
    monkeypatch.setattr(programs, "compiler_options", lambda: {"xla_no_such_option": 1})
    with pytest.raises(Exception, match="xla_no_such_option"):
        Stage(lambda x, y: x @ y, "simulate", times, label="plain")(a, b)


def test_a_run_starts_compiling_before_it_places_any_array(monkeypatch, tmp_path):
    """On a GPU the run's first array waits for JAX to reserve the device's memory pool, so a run
    lowers its stages and starts their compiles first (the reservation then goes on beside the
    lowering: 1.1-1.9 s of plan stage became 0.4-0.55 s on an H200). Arrays made while tracing
    (abstract) do not count."""
    import jax

    from mcrisk import run_study
    from mcrisk.engine import loop as chunks

    from .conftest import small_study

    events = []
    real_put, real_compile_all = jax.device_put, chunks.compile_all

    def put(*args, **kw):
        out = real_put(*args, **kw)
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(out)):
            events.append("array")
        return out

    def compile_all(*args, **kw):
        events.append("compile")
        return real_compile_all(*args, **kw)

    monkeypatch.setattr(jax, "device_put", put)
    monkeypatch.setattr(chunks, "compile_all", compile_all)
    run_study(small_study(scenarios=600), out=tmp_path / "r", stress=False, analyze=False)
    assert "compile" in events and "array" in events
    assert events.index("compile") < events.index("array"), events[:5]
