"""benchmarks/traffic.py's accounting of kernels and bytes in an optimized HLO module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp

_spec = importlib.util.spec_from_file_location(
    "traffic", Path(__file__).resolve().parents[1] / "benchmarks" / "traffic.py"
)
traffic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(traffic)

# A loop of 10 steps over f32[100, 1000]: each step slices one row of `xs` (4,000 bytes), adds it
# to the carry f32[1000] (4,000 bytes read, 4,000 written) and writes the sum into row i of the
# output in place (4,000 bytes); then one kernel outside the loop reads the carry and writes f64[1000].
MODULE = """
HloModule m, is_scheduled=true

%fused_step (param_0: f32[1000], param_1: f32[100,1000], param_2: s32[]) -> f32[1000] {
  %param_0 = f32[1000]{0} parameter(0)
  %param_1 = f32[100,1000]{1,0} parameter(1)
  %param_2 = s32[] parameter(2)
  %c0 = s32[] constant(0)
  %ds = f32[1,1000]{1,0} dynamic-slice(%param_1, %param_2, %c0), dynamic_slice_sizes={1,1000}
  %row = f32[1000]{0} bitcast(%ds)
  ROOT %add = f32[1000]{0} add(%param_0, %row)
}

%fused_store (param_0.1: f32[100,1000], param_1.1: f32[1000], param_2.1: s32[]) -> f32[100,1000] {
  %param_0.1 = f32[100,1000]{1,0} parameter(0)
  %param_1.1 = f32[1000]{0} parameter(1)
  %param_2.1 = s32[] parameter(2)
  %b = f32[1,1000]{1,0} bitcast(%param_1.1)
  %c0.1 = s32[] constant(0)
  ROOT %dus = f32[100,1000]{1,0} dynamic-update-slice(%param_0.1, %b, %param_2.1, %c0.1)
}

%body (p: (s32[], f32[1000], f32[100,1000], f32[100,1000])) -> (s32[], f32[1000], f32[100,1000], f32[100,1000]) {
  %p = (s32[], f32[1000]{0}, f32[100,1000]{1,0}, f32[100,1000]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %acc = f32[1000]{0} get-tuple-element(%p), index=1
  %xs = f32[100,1000]{1,0} get-tuple-element(%p), index=2
  %ys = f32[100,1000]{1,0} get-tuple-element(%p), index=3
  %step = f32[1000]{0} fusion(%acc, %xs, %i), kind=kLoop, calls=%fused_step
  %store = f32[100,1000]{1,0} fusion(%ys, %step, %i), kind=kLoop, calls=%fused_store
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  ROOT %t = (s32[], f32[1000]{0}, f32[100,1000]{1,0}, f32[100,1000]{1,0}) tuple(%next, %step, %xs, %store)
}

%cond (q: (s32[], f32[1000], f32[100,1000], f32[100,1000])) -> pred[] {
  %q = (s32[], f32[1000]{0}, f32[100,1000]{1,0}, f32[100,1000]{1,0}) parameter(0)
  %j = s32[] get-tuple-element(%q), index=0
  %ten = s32[] constant(10)
  ROOT %lt = pred[] compare(%j, %ten), direction=LT
}

%fused_widen (param_0.2: f32[1000]) -> f64[1000] {
  %param_0.2 = f32[1000]{0} parameter(0)
  ROOT %cv = f64[1000]{0} convert(%param_0.2)
}

ENTRY %main (a: f32[1000], xs: f32[100,1000], ys: f32[100,1000]) -> f64[1000] {
  %a = f32[1000]{0} parameter(0)
  %xs.1 = f32[100,1000]{1,0} parameter(1)
  %ys.1 = f32[100,1000]{1,0} parameter(2)
  %zero = s32[] constant(0)
  %init = (s32[], f32[1000]{0}, f32[100,1000]{1,0}, f32[100,1000]{1,0}) tuple(%zero, %a, %xs.1, %ys.1)
  %w = (s32[], f32[1000]{0}, f32[100,1000]{1,0}, f32[100,1000]{1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"10"}}
  %out = f32[1000]{0} get-tuple-element(%w), index=1
  ROOT %wide = f64[1000]{0} fusion(%out), kind=kLoop, calls=%fused_widen
}
"""


def test_counts_loop_kernels_times_their_trips_and_slices_as_slices():
    acc = traffic.account(MODULE)
    # per step: fused_step reads 4,000 (carry) + 4,000 (one row, not the 400,000 of xs) + 4 (the
    # index), writes 4,000; fused_store writes 4,000 in place (not the 400,000 of ys) and reads its
    # update (4,000) and index (4); the counter's add is a kernel of 12 bytes.
    per_step = (4_000 + 4_000 + 4 + 4_000) + (4_000 + 4 + 4_000) + 12
    assert acc["bytes"] == 10 * per_step + (4_000 + 8_000)
    assert acc["launches"] == 10 * 3 + 1
    by_name = {k: (b, c) for k, _, b, c, _ in acc["kernels"]}
    assert by_name["step"] == (12_004, 10) and by_name["wide"] == (12_000, 1)


def test_nbytes_of_arrays_and_tuples():
    assert traffic.nbytes("f32[3,4]{1,0}") == 48
    assert traffic.nbytes("(f64[10]{0}, pred[8]{0}, s32[])") == 80 + 8 + 4


def test_accounts_a_module_jax_compiled_here():
    """The parser reads what XLA prints for this machine's backend (a loop over 48 months)."""

    def f(x):
        return jax.lax.scan(lambda c, _: (c * 1.5 + 1.0, c), x, None, length=48)

    text = jax.jit(f).lower(jnp.ones((4096,), jnp.float32)).compile().as_text()
    acc = traffic.account(text)
    # at least the 48 months' carry: read and written once per month (16 KiB each way)
    assert acc["bytes"] >= 48 * 2 * 4096 * 4
    assert acc["launches"] >= 48


def test_parts_follow_the_named_scopes_of_the_code():
    """Kernels are booked to the part of the simulate stage whose jax.named_scope made them (the
    IRR's scopes nest inside a scope of their own name), the rest to 'other'."""

    def f(x):
        with jax.named_scope("month_loop"):
            y = jax.lax.scan(lambda c, _: (jnp.sin(c) * 1.5 + 1.0, c), x, None, length=48)[0]
        with jax.named_scope("irr_newton"):
            y = jax.lax.fori_loop(0, 5, lambda _, z: jnp.cos(z) * y + 0.5, y)
        return jnp.exp(y).astype(jnp.float64) if jax.config.jax_enable_x64 else jnp.exp(y)

    acc = traffic.account(jax.jit(f).lower(jnp.ones((4096,), jnp.float32)).compile().as_text())
    parts = acc["parts"]
    assert parts["month_loop"]["launches"] >= 48 and parts["irr_newton"]["launches"] >= 5
    assert sum(v["bytes"] for v in parts.values()) == acc["bytes"]
    assert sum(v["launches"] for v in parts.values()) == acc["launches"]
    assert traffic.part_of('metadata={op_name="jit(f)/irr_newton/while/body/mul"}') == "irr_newton"
    assert traffic.part_of('metadata={op_name="jit(f)/month_loop_x/add"}') == "other"
