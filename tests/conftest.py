"""Shared fixtures: small studies and a CLI runner."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

# The CLI's rich consoles read the width from COLUMNS: a fixed, wide one keeps table cells on one
# line whatever runs the tests (a terminal, CI, pytest-xdist workers).
os.environ["COLUMNS"] = "200"

import mcrisk  # noqa: E402

mcrisk.enable_float64()  # before any test builds arrays

# --------------------------------------------------------------------------- one XLA cache per session
# Many tests compile the same programs (the same study shapes, in several files and in the CLI's
# subprocesses). One disk cache for the whole session, shared by the xdist workers and every
# `mcrisk` subprocess (through MCRISK_CACHE_DIR), compiles each once; it is removed at the end.
# Tests that check caching itself, or run without it, set MCRISK_CACHE_DIR themselves.
_CACHE_KEY = "mcrisk_xla_cache"
_CACHE_STASH = pytest.StashKey[str]()


def pytest_configure(config):
    import shutil
    import tempfile

    import jax

    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:  # the controller, or a run without xdist: it owns the folder
        where = tempfile.mkdtemp(prefix="mcrisk-test-xla-")
        config.add_cleanup(lambda: shutil.rmtree(where, ignore_errors=True))
    else:
        where = workerinput[_CACHE_KEY]
    config.stash[_CACHE_STASH] = where
    os.environ["MCRISK_CACHE_DIR"] = where
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # xdist: hand the controller's folder to each worker
    node.workerinput[_CACHE_KEY] = node.config.stash[_CACHE_STASH]


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def small_study(**simulation) -> dict:
    """A 2-system study with uncertain static inputs and volatile market paths, 500 scenarios."""
    study = {
        "name": "small",
        "simulation": {"scenarios": 500, "horizon_months": 24, "seed": 3, **simulation},
        "market": {
            "token_price": {
                "initial_usd_per_mtok": {"dist": "lognormal", "p5": 0.5, "p95": 2.5},
                "annual_decline": {"dist": "pert", "low": 0.2, "mode": 0.5, "high": 0.8},
                "volatility": 0.2,
            },
            "demand": {
                "utilization": {"dist": "beta", "mean": 0.6, "sd": 0.15},
                "ramp_months": {"dist": "uniform", "low": 0, "high": 6},
                "persistence": 0.7,
                "volatility": 0.4,
            },
            "electricity": {
                "usd_per_kwh": {"dist": "triangular", "low": 0.05, "mode": 0.08, "high": 0.15},
                "volatility": 0.25,
                "mean_reversion": 1.5,
            },
        },
        "facility": {
            "pue": {"dist": "uniform", "low": 1.1, "high": 1.5},
            "colocation_usd_per_kw_month": {"dist": "normal", "mean": 190, "sd": 20, "low": 120},
        },
        "finance": {"discount_rate": {"dist": "triangular", "low": 0.06, "mode": 0.1, "high": 0.15}},
        "systems": {
            "rack": {
                "units": 2,
                "gpus_per_unit": 72,
                "capex_usd": {"dist": "triangular", "low": 3.0e6, "mode": 3.4e6, "high": 4.0e6},
                "it_power_kw": {"dist": "uniform", "low": 120, "high": 140},
                "throughput_tokens_per_s_per_gpu": {"dist": "lognormal", "median": 6000, "sigma": 0.4},
                "efficiency": {"dist": "uniform", "low": 0.6, "high": 0.9},
                "availability": {"dist": "beta", "mean": 0.97, "sd": 0.015},
                "price_multiplier": {"dist": "discrete", "values": [0.9, 1.0, 1.2], "weights": [1, 2, 1]},
                "software_speedup": {
                    "ceiling": {"dist": "loguniform", "low": 1.1, "high": 3.0},
                    "time_constant_months": {"dist": "uniform", "low": 2, "high": 9},
                },
                "maintenance_fraction_per_year": 0.02,
                "license_usd_per_gpu_year": {"dist": "uniform", "low": 0, "high": 2000},
                "residual_value_fraction": {"dist": "uniform", "low": 0.0, "high": 0.15},
                "depreciation_years": 4,
            },
            "server": {
                "gpus_per_unit": 8,
                "capex_usd": {"dist": "triangular", "low": 350000, "mode": 400000, "high": 500000},
                "it_power_kw": 14.3,
                "idle_power_fraction": {"dist": "uniform", "low": 0.2, "high": 0.4},
                "throughput_tokens_per_s_per_gpu": {"dist": "lognormal", "p5": 900, "p95": 3000},
                "software_speedup": {"ceiling": 1.5, "time_constant_months": 4},
                "residual_value_fraction": 0.05,
                "depreciation_years": 3,
            },
        },
        "correlations": [
            ["market.token_price.initial_usd_per_mtok", "market.demand.utilization", -0.3],
            ["systems.rack.throughput_tokens_per_s_per_gpu", "systems.server.throughput_tokens_per_s_per_gpu", 0.6],
        ],
    }
    return copy.deepcopy(study)


def still_paths(study: dict) -> dict:
    """The same study with zero path volatility: each row is then a function of its drawn inputs."""
    study = copy.deepcopy(study)
    study["market"]["token_price"]["volatility"] = 0
    study["market"]["demand"]["volatility"] = 0
    study["market"]["electricity"]["volatility"] = 0
    return study


def write_study(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.fixture
def study_dict() -> dict:
    return small_study()


# --------------------------------------------------------------------------- every published folder verifies
@pytest.fixture(autouse=True)
def _published_folders_verify(monkeypatch):
    """Every run folder a test publishes in-process (a run, a resume, a merge, a stress, a sweep's
    point, a claim's run) is checked with `mcrisk verify` as it is published: the folder is what
    its manifest records. (A test may damage it afterwards: that is what it then checks.)"""
    import json

    from mcrisk.io.folder import RunFolder

    real = RunFolder.publish

    def publish(self):
        path = real(self)
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            return path
        if isinstance(manifest, dict) and "options" in manifest:  # a run's (not a sweep's) manifest
            from mcrisk.io.verify import verify_run

            problems = verify_run(path)
            assert not problems, f"the published folder {path} does not verify: {problems}"
        return path

    monkeypatch.setattr(RunFolder, "publish", publish)
