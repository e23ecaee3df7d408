"""The Python API as a notebook uses it: importing mcrisk changes nothing in JAX, the default
study loads without a path, a cell that runs again replaces its folder, errors name arguments."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import mcrisk
from mcrisk.errors import RunFolderError

from .conftest import small_study


def test_import_leaves_jax_in_float32_in_a_fresh_process():
    code = textwrap.dedent(
        """
        import jax.numpy as jnp
        mine = jnp.arange(3.0)  # a notebook's own array, made before mcrisk is imported
        import mcrisk
        from mcrisk import load_study, run_study, Study, RunResult  # the lazy API, resolved
        assert jnp.arange(3.0).dtype == jnp.float32, jnp.arange(3.0).dtype
        assert (mine * 2).dtype == jnp.float32
        assert load_study().name  # validating a study needs no float64 either
        assert jnp.arange(3.0).dtype == jnp.float32
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_load_study_without_a_path_is_the_default_study():
    assert mcrisk.load_study().digest() == mcrisk.load_study(mcrisk.default_study_path()).digest()


def test_a_cell_run_again_replaces_its_folder_and_errors_name_arguments(tmp_path):
    study = small_study(scenarios=64)
    first = mcrisk.run_study(study, out=tmp_path / "run", analyze=False, stress=False)
    with pytest.raises(RunFolderError) as e:
        mcrisk.run_study(study, out=tmp_path / "run", analyze=False, stress=False)
    assert "overwrite=True" in str(e.value) and "--force" not in str(e.value)
    again = mcrisk.run_study(study, out=tmp_path / "run", seed=9, overwrite=True, analyze=False, stress=False)
    assert again.folder == first.folder and again.manifest["seed"] == 9
