"""The fused month-loop kernel (mcrisk.fused) against the lax.scan month loop, in Pallas' interpreter on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mcrisk import fused, load_study, run_study
from mcrisk.engine import METRICS, fixed_values, make_plan, sample, simulate

from .conftest import small_study

# float32 paths: the kernel and the scan compute the same functions, fused differently, so they
# round differently (cash flows are differences of revenue and opex, hence the absolute floor).
TOL = {"float32": dict(rtol=2e-5, atol=1e-3), "float64": dict(rtol=1e-11, atol=1e-6)}


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_fused_kernel_gives_the_scans_metrics(precision):
    n = fused.BLOCK  # one block: the interpreter's time is per block (the invariance test below runs several)
    study = load_study(small_study(scenarios=n))
    scan = make_plan(study, scenarios=n, seed=3, precision=precision, chunk_size=n, monthly=False)
    kern = make_plan(study, scenarios=n, seed=3, precision=precision, chunk_size=n, monthly=False, month_kernel="fused")
    draw = sample(scan, jnp.arange(n, dtype=jnp.uint32))
    draw = draw._replace(values={**draw.values, **fixed_values(scan)})
    a, b = simulate(scan, draw, n), simulate(kern, draw, n)
    for m in METRICS:
        x, y = np.asarray(a[m]), np.asarray(b[m])
        assert x.shape == y.shape == (2, n), m
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=m)
        np.testing.assert_array_equal(np.isinf(x), np.isinf(y), err_msg=m)
        ok = np.isfinite(x)
        np.testing.assert_allclose(y[ok], x[ok], **TOL[precision], err_msg=m)
    assert np.isfinite(np.asarray(a["irr"])).mean() > 0.5  # the comparison covers real IRRs


def test_fused_chunk_size_must_fit_its_blocks():
    plan = make_plan(load_study(small_study(scenarios=1000)), scenarios=1000, seed=3, precision="float32",
                     chunk_size=300, month_kernel="fused")
    assert plan.chunk % fused.BLOCK == 0 and plan.chunk >= 300
    with pytest.raises(ValueError, match="month_kernel"):
        make_plan(load_study(small_study()), scenarios=10, seed=3, precision="float32", chunk_size=None, month_kernel="cuda")


def test_fused_rows_do_not_depend_on_chunk_size_or_device_count(tmp_path):
    """Chunks of 256 on one device against chunks of 512 on four forced host devices (the kernel
    runs per device under shard_map, on 128 scenarios each): the same rows."""
    study = small_study(scenarios=600)
    one = run_study(study, out=tmp_path / "a", chunk_size=256, month_kernel="fused", stress=False, analyze=False)
    a = pq.read_table(one.folder / "scenarios.parquet").to_pandas().sort_values(["scenario", "system"]).reset_index(drop=True)
    assert json.loads((one.folder / "manifest.json").read_text())["month_kernel"] == "fused"
    (tmp_path / "s.json").write_text(json.dumps(study))
    script = textwrap.dedent(
        f"""
        import json, jax, mcrisk
        assert len(jax.devices()) == 4, jax.devices()
        mcrisk.run_study(json.load(open({str(tmp_path / 's.json')!r})), out={str(tmp_path / 'four')!r}, chunk_size=512,
                         month_kernel="fused", stress=False, analyze=False)
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    four = pq.read_table(tmp_path / "four" / "scenarios.parquet").to_pandas().sort_values(["scenario", "system"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, four)
