"""`run_study` end to end: the worked checks, an independent float64 model, invariances, the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mcrisk import METRICS, run_study
from mcrisk.errors import RunFolderError
from mcrisk.reference import MARKET_KEYS, SYSTEM_KEYS, system_metrics
from mcrisk.sampling.uniforms import root_key, shock_normals, stream_id
from mcrisk.study.columns import column_name

from .conftest import CONFIGS, small_study, still_paths


def rows(result) -> pd.DataFrame:
    return pq.read_table(result.folder / "scenarios.parquet").to_pandas()


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float = 0.0) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    atol = np.broadcast_to(atol, a.shape)
    same_special = (np.isnan(a) == np.isnan(b)).all() and (np.isinf(a) == np.isinf(b)).all()
    fin = np.isfinite(a) & np.isfinite(b)
    signs = (np.sign(a[np.isinf(a)]) == np.sign(b[np.isinf(b)])).all()
    return bool(same_special and signs and np.allclose(a[fin], b[fin], rtol=rtol, atol=atol[fin]))


# --------------------------------------------------------------------------- MODEL.md worked checks


def test_seed_claims_worked_checks(tmp_path):
    result = run_study(CONFIGS / "seed_claims.yaml", out=tmp_path / "run", scenarios=100, precision="float64")
    df = rows(result)
    gb = df[df.system == "gb200"]
    b200 = df[df.system == "b200"]
    assert np.allclose(gb.tokens, 72 * 10_000 * 36 * 2_629_800, rtol=1e-12)
    assert np.allclose(gb.revenue_usd, 74_980_857.6, rtol=1e-12)
    assert (gb.roi_multiple.round(3) == 14.996).all()
    assert (b200.cost_per_mtok_usd.round(5) == 0.01923).all()
    # the same in the default float32 precision
    result32 = run_study(CONFIGS / "seed_claims.yaml", out=tmp_path / "run32", scenarios=100)
    df32 = rows(result32)
    assert (df32[df32.system == "gb200"].roi_multiple.round(3) == 14.996).all()
    assert (df32[df32.system == "b200"].cost_per_mtok_usd.round(5) == 0.01923).all()


def test_two_cents_is_the_same_over_36_and_48_months(tmp_path):
    for months in (36, 48):
        study = {
            "name": f"b200-{months}",
            "simulation": {"horizon_months": months},
            "market": {
                "token_price": {"initial_usd_per_mtok": 1.0},
                "demand": {"utilization": 1.0},
                "electricity": {"usd_per_kwh": 0.08},
            },
            "facility": {"pue": 1.3, "colocation_usd_per_kw_month": 190},
            "systems": {
                "b200": {
                    "gpus_per_unit": 8,
                    "capex_usd": 400000,
                    "it_power_kw": 14.3,
                    "throughput_tokens_per_s_per_gpu": 30000,
                    "depreciation_years": 4,
                }
            },
        }
        result = run_study(study, out=tmp_path / str(months), scenarios=10, precision="float64")
        df = rows(result)
        assert np.allclose(df.tokens / months, 6.31152e11, rtol=1e-12)
        assert np.allclose(df.energy_usd / months, 14.3 * 1.3 * 730.5 * 0.08, rtol=1e-12)  # 1,086.40
        assert round(float(df.energy_usd.iloc[0]) / months, 2) == 1086.40
        assert np.allclose(df.colocation_usd / months, 2717.00, rtol=1e-12)
        assert (df.cost_per_mtok_usd.round(5) == 0.01923).all()


# --------------------------------------------------------------------------- independent float64 model


def _reference(df: pd.DataFrame, system: str, months: int, eps=None) -> dict[str, np.ndarray]:
    sub = df[df.system == system].sort_values("scenario")
    market = {k: sub[column_name(k)].to_numpy(np.float64) for k in MARKET_KEYS}
    own = {k: sub[column_name(f"system.{k}")].to_numpy(np.float64) for k in SYSTEM_KEYS}
    kw = {}
    if eps is not None:
        idx = sub.scenario.to_numpy()
        kw = {name: e[idx] for name, e in eps.items()}
    return sub, system_metrics(market, own, months, **kw)


@pytest.mark.parametrize("precision, rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_every_metric_matches_an_independent_float64_model(tmp_path, precision, rtol):
    study = still_paths(small_study(scenarios=400))
    result = run_study(study, out=tmp_path / "run", precision=precision)
    df = rows(result)
    months = study["simulation"]["horizon_months"]
    for system in study["systems"]:
        sub, ref = _reference(df, system, months)
        # Differences of money (profit, NPV) are compared relative to the money they net out.
        money = np.abs(ref["revenue_usd"]) + np.abs(ref["capex_usd"])
        for m in METRICS:
            tol = max(rtol, 1e-7) if m == "irr" else rtol
            atol = tol * money if m.endswith("_usd") else tol
            assert _close(sub[m].to_numpy(), ref[m], rtol=tol, atol=atol), m


def test_volatile_paths_match_the_reference_given_the_same_shocks(tmp_path):
    study = small_study(scenarios=300)
    result = run_study(study, out=tmp_path / "run", precision="float64")
    df = rows(result)
    months, seed, n = study["simulation"]["horizon_months"], study["simulation"]["seed"], 300
    idx = np.arange(n, dtype=np.uint32)
    eps = {
        key: np.asarray(shock_normals(root_key(seed), idx, stream_id(name), months, np.float64))
        for key, name in (
            ("eps_price", "market.token_price.shock"),
            ("eps_elec", "market.electricity.shock"),
            ("eps_util", "market.demand.shock"),
        )
    }
    for system in study["systems"]:
        sub, ref = _reference(df, system, months, eps)
        for m in METRICS:
            assert _close(sub[m].to_numpy(), ref[m], rtol=1e-8, atol=1e-7), m


# --------------------------------------------------------------------------- invariances


def test_rows_do_not_depend_on_chunk_size(tmp_path):
    study = small_study(scenarios=2500)
    a = rows(run_study(study, out=tmp_path / "a", chunk_size=1000))
    b = rows(run_study(study, out=tmp_path / "b", chunk_size=65536))
    pd.testing.assert_frame_equal(a, b)


def test_chunks_written_in_several_parts_give_the_same_rows(tmp_path, monkeypatch):
    """A chunk's rows are cut into Parquet parts of whole scenarios by offset in the chunk (so a
    resumed run writes the same parts), written by several threads: the folder reads back as the
    same table, in scenario order, with every row or a subsample."""
    from mcrisk.io import parquet as storage

    study = small_study(scenarios=2500)
    kw = dict(chunk_size=1000, stress=False, analyze=False)
    whole = rows(run_study(study, out=tmp_path / "a", **kw))
    sub = rows(run_study(study, out=tmp_path / "b", sample_fraction=0.3, **kw))
    monkeypatch.setattr(storage, "PART_ROWS", 600)  # 300 scenarios of 2 systems per part
    parts = run_study(study, out=tmp_path / "c", **kw)
    names = sorted(p.name for p in (parts.folder / "scenarios.parquet").glob("*.parquet"))
    assert names == [f"part-{c:06d}-{k:03d}.parquet" for c, n_parts in ((0, 4), (1, 4), (2, 2)) for k in range(n_parts)]
    assert pq.ParquetFile(parts.folder / "scenarios.parquet" / names[3]).metadata.num_rows == 2 * 100
    # Each part's statistics give its scenario range (and systems), so a reader finds a scenario
    # without reading other parts; the metrics and inputs carry none (storage.STATISTICS_COLUMNS).
    first = 0
    for name in names:
        meta = pq.ParquetFile(parts.folder / "scenarios.parquet" / name).metadata
        stats = {meta.schema.column(i).name: meta.row_group(0).column(i).statistics for i in range(meta.num_columns)}
        with_stats = {k for k, v in stats.items() if v is not None and v.has_min_max}
        assert with_stats == {"scenario", "system"}, name
        assert (stats["scenario"].min, stats["scenario"].max) == (first, first + meta.num_rows // 2 - 1)
        first += meta.num_rows // 2
    pd.testing.assert_frame_equal(rows(parts), whole)
    pd.testing.assert_frame_equal(rows(run_study(study, out=tmp_path / "d", sample_fraction=0.3, **kw)), sub)


def test_part_names_sort_in_scenario_order_however_many_there_are(tmp_path):
    """Chunk and part numbers get as many digits as the run needs (12,345,678 chunks: 8;
    1,001 parts of a chunk: 4), so the folder reads back in scenario order."""
    import pyarrow as pa

    from mcrisk.io.parquet import ScenarioWriter

    w = ScenarioWriter(
        tmp_path / "p",
        pa.schema([pa.field("scenario", pa.int64())]),
        {},
        lambda start, sel, host: {"scenario": start + sel},
        per_part=1,
        chunks=12_345_678,
        chunk_size=1001,
        threads=2,
    )
    for chunk in (9, 10, 12_345_677):  # the last chunk of the run holds 12 scenarios
        w.put(chunk, chunk * 1001, 12, np.arange(12), None)
    w.close()
    names = sorted(p.name for p in (tmp_path / "p").glob("*.parquet"))
    assert names[0] == "part-00000009-0000.parquet" and len(names) == 36
    scen = pq.read_table(tmp_path / "p").column("scenario").to_numpy()
    assert len(scen) == 36 and (np.diff(scen) > 0).all()


def test_a_row_block_reaches_the_host_whole_by_either_copy():
    """HostBlock: JAX's ordinary copy, or one transfer into pinned host memory (what a GPU run
    uses; CPUs accept the memory kind too, so the path runs here), read once by many parts."""
    import threading

    import jax.numpy as jnp

    from mcrisk.engine.rows import HostBlock

    x = jnp.arange(3 * 4096, dtype=jnp.float32).reshape(3, 4096) * 0.5
    for pinned in (None, x.sharding.with_memory_kind("pinned_host")):
        block = HostBlock(x, pinned)
        seen = []
        threads = [threading.Thread(target=lambda b=block, out=seen: out.append(b.get())) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 4 and all(s is seen[0] for s in seen)
        np.testing.assert_array_equal(seen[0], np.asarray(x))


def test_every_stage_is_compiled_ahead_and_used(tmp_path):
    """The stages compile at once from abstract arguments before the first chunk; a stage whose
    real arguments differed would compile again on its first call (a silent cost): none may."""
    from mcrisk.engine import programs

    before = dict(programs.STATS)
    result = run_study(
        small_study(scenarios=700),
        out=tmp_path / "r",
        chunk_size=256,
        sample_fraction=0.5,
        diagnostic_draws=300,
        stress=False,
    )
    used = programs.STATS["prepared_used"] - before["prepared_used"]
    assert programs.STATS["prepared_missed"] == before["prepared_missed"]
    # index, inputs, simulate, reduce, Parquet rows, retained draws, subsample (+ shocks if any)
    assert used >= 7
    assert result.manifest["seconds"]["compile"] > 0


def test_pinned_memory_reserved_ahead_is_given_back(monkeypatch):
    """storage.reserve_pinned holds `count` row blocks in the given memory at once, then lets them
    go (on a GPU: JAX's pinned pool grown before the writer needs it; on CPUs runs never call it)."""
    import gc
    import weakref

    import jax
    from jax.sharding import SingleDeviceSharding

    from mcrisk.engine.rows import reserve_pinned

    made = []
    real = jax.device_put

    def spy(x, where=None, **kw):
        out = real(x, where, **kw)
        made.extend(weakref.ref(a) for a in jax.tree.leaves(out))
        return out

    where = SingleDeviceSharding(jax.devices()[0])
    monkeypatch.setattr(jax, "device_put", spy)
    assert reserve_pinned([((3, 64), np.float32), ((2, 64), np.float64)], where, where, 4) is None
    monkeypatch.undo()
    gc.collect()
    assert len(made) == 8 and all(r() is None for r in made)  # 4 chunks' pairs of blocks


def test_rows_do_not_depend_on_the_order_of_systems(tmp_path):
    study = small_study()
    flipped = small_study()
    flipped["systems"] = dict(reversed(list(study["systems"].items())))
    key = ["scenario", "system"]
    a = rows(run_study(study, out=tmp_path / "a"))
    b = rows(run_study(flipped, out=tmp_path / "b"))
    a["system"], b["system"] = a.system.astype(str), b.system.astype(str)
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


SUMMARY_FILES = ("summary.csv", "risk.csv", "breakeven.csv", "monthly.parquet")


def _summaries(folder) -> dict[str, pd.DataFrame]:
    return {
        f: pd.read_parquet(folder / f) if f.endswith(".parquet") else pd.read_csv(folder / f) for f in SUMMARY_FILES
    }


def test_summaries_do_not_depend_on_the_sketch_layout(tmp_path, monkeypatch):
    """CPUs keep one histogram per sketch, filled series after series; accelerators 8 copies, filled 32
    scenarios of each series in turn (engine.default_sketch_layout). Every summary, percentile band and
    tail count is the same either way, to the bit."""
    from mcrisk.engine import plan as engine
    from mcrisk.stats import reduce as red

    study = small_study(scenarios=1500)
    kw = dict(chunk_size=512, stress=False, write_scenarios=False)
    got = {}
    for layout in (red.Layout(copies=1, interleave=0), red.Layout(copies=8, interleave=32)):
        monkeypatch.setattr(engine, "default_sketch_layout", lambda layout=layout: layout)
        got[layout] = _summaries(run_study(study, out=tmp_path / f"{layout.copies}", **kw).folder)
    one, eight = got.values()
    for name, frame in one.items():
        pd.testing.assert_frame_equal(eight[name], frame, check_exact=True, obj=name)


def test_rows_do_not_depend_on_device_count(tmp_path):
    study_path = tmp_path / "s.json"
    study_path.write_text(json.dumps(small_study(scenarios=1000)))
    one = rows(run_study(json.loads(study_path.read_text()), out=tmp_path / "one", chunk_size=512))
    # The four devices keep the sketches in the accelerators' layout (8 copies each, filled 32
    # scenarios of each series in turn), each device adding its own scenarios to its own copies.
    script = textwrap.dedent(
        f"""
        import json, jax, mcrisk
        from mcrisk.engine import plan as engine, programs
        from mcrisk.stats import reduce as red
        assert len(jax.devices()) == 4, jax.devices()
        engine.default_sketch_layout = lambda: red.Layout(copies=8, interleave=32)
        mcrisk.run_study(json.load(open({str(study_path)!r})), out={str(tmp_path / "four")!r}, chunk_size=512)
        # compiled ahead from sharded abstract arguments, and each program used as compiled
        assert programs.STATS["prepared_used"] >= 5 and programs.STATS["prepared_missed"] == 0, programs.STATS
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    four = pq.read_table(tmp_path / "four" / "scenarios.parquet").to_pandas()
    pd.testing.assert_frame_equal(one, four)
    # percentiles and counts to the bit; means and spreads to float64 rounding (the devices sum apart)
    for name, frame in _summaries(tmp_path / "one").items():
        pd.testing.assert_frame_equal(
            _summaries(tmp_path / "four")[name], frame, check_exact=False, rtol=1e-12, obj=name
        )
    manifest = json.loads((tmp_path / "four" / "manifest.json").read_text())
    assert len(manifest["devices"]) == 4


@pytest.mark.parametrize("sampler", ["sobol", "lhs"])
def test_quasi_random_samplers_run_and_are_chunk_invariant(tmp_path, sampler):
    study = small_study(scenarios=1024, sampler=sampler)
    a = rows(run_study(study, out=tmp_path / "a", chunk_size=256))
    b = rows(run_study(study, out=tmp_path / "b", chunk_size=1024))
    pd.testing.assert_frame_equal(a, b)
    # stratified: each decile of a uniformly distributed input holds a tenth of the scenarios
    pue = a[a.system == "rack"]["facility__pue"].to_numpy()
    counts = np.histogram(pue, bins=np.linspace(1.1, 1.5, 11))[0]
    assert np.abs(counts - 102.4).max() <= 3


def test_common_random_numbers_market_inputs_shared_by_systems(tmp_path):
    df = rows(run_study(small_study(), out=tmp_path / "run"))
    market_cols = [c for c in df.columns if c.startswith(("market__", "facility__", "finance__"))]
    assert market_cols
    assert (df.groupby("scenario")[market_cols + ["mean_utilization"]].nunique() == 1).all().all()
    assert df.groupby("system", observed=True).size().tolist() == [500, 500]


def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    study = small_study(scenarios=200)
    a = rows(run_study(study, out=tmp_path / "a"))
    b = rows(run_study(study, out=tmp_path / "b"))
    c = rows(run_study(study, out=tmp_path / "c", seed=4))
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.npv_usd, c.npv_usd)


# --------------------------------------------------------------------------- the run folder


def check_summary_nc(path, df: pd.DataFrame) -> None:
    """summary.nc: the first scenarios' metrics and drawn inputs in a `scenario_draws` group, with
    units, compressed, opened by ArviZ of either major version (0.2x: InferenceData, 1.x: DataTree)."""
    import arviz as az
    import xarray as xr

    with xr.open_dataset(path, group="scenario_draws", engine="h5netcdf") as draws:
        assert draws.sizes["chain"] == 4 and draws["npv_usd"].dims == ("chain", "draw", "system")
        assert draws["npv_usd"].attrs["units"] == "USD" and draws["irr"].attrs["units"] == "1 per year"
        assert draws["npv_usd"].encoding["zlib"] and draws["npv_usd"].encoding["shuffle"]
        # the drawn inputs beside the metrics, the same draws as the rows of the same scenarios
        n = draws.sizes["chain"] * draws.sizes["draw"]
        rows = df[df.scenario < n].set_index(["system", "scenario"]).sort_index()
        scenario = draws["scenario"].values.ravel()
        for s, system in enumerate(draws["system"].values):
            for name in ("npv_usd", "system.capex_usd", "market.token_price.initial_usd_per_mtok"):
                got = draws[name].values if draws[name].ndim == 2 else draws[name].values[..., s]
                want = rows.loc[system].loc[scenario, column_name(name)].to_numpy(np.float64)
                # (money is float64 in both, the engine's own numbers; the inputs are the run's float32 draws)
                np.testing.assert_array_equal(got.ravel().astype(np.float64), want)
        assert draws["market.token_price.initial_usd_per_mtok"].attrs["units"] == "USD per million tokens"
    idata = az.from_netcdf(path)
    assert "npv_usd" in idata["scenario_draws"]


def test_run_folder_contents(tmp_path):
    result = run_study(small_study(scenarios=3000), out=tmp_path / "run", chunk_size=1024)
    folder = result.folder
    for name in ("summary.csv", "risk.csv", "summary.nc", "study.yaml", "manifest.json"):
        assert (folder / name).is_file(), name
    parts = sorted((folder / "scenarios.parquet").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-000000-000.parquet", "part-000001-000.parquet", "part-000002-000.parquet"]
    assert not list(tmp_path.glob(".run.partial*"))
    table = pq.read_table(folder / "scenarios.parquet")
    meta = table.schema.metadata
    assert meta[b"mcrisk.seed"] == b"3" and len(meta[b"mcrisk.study_sha256"]) == 64
    assert table.num_rows == 6000
    df = table.to_pandas()

    summary = pd.read_csv(folder / "summary.csv")
    need = [
        "system",
        "metric",
        "mean",
        "sd",
        "p1",
        "p5",
        "p10",
        "p50",
        "p90",
        "p95",
        "p99",
        "mcse_mean",
        "mcse_p5",
        "ess",
    ]
    assert set(need) <= set(summary.columns)
    assert len(summary) == 2 * len(METRICS)
    npv = summary[(summary.system == "rack") & (summary.metric == "npv_usd")].iloc[0]
    x = df[df.system == "rack"].npv_usd.to_numpy(np.float64)
    assert np.isclose(npv["mean"], x.mean(), rtol=1e-6)
    assert np.isclose(npv["sd"], x.std(ddof=1), rtol=1e-5)
    for p in (1, 5, 50, 95, 99):
        exact = np.quantile(x, p / 100, method="inverted_cdf")
        assert abs(npv[f"p{p}"] - exact) <= 1e-3 * abs(exact) + 1e-6, p
    # iid draws: ESS near N, MCSE of the mean near sd / sqrt(N)
    assert 0.5 * 3000 < npv["ess"] < 2 * 3000
    assert np.isclose(npv["mcse_mean"], npv["sd"] / np.sqrt(npv["ess"]))

    risk = pd.read_csv(folder / "risk.csv")
    need = [
        "system",
        "p_loss",
        "var95_usd",
        "cvar95_usd",
        "var99_usd",
        "cvar99_usd",
        "p_payback_within_horizon",
        "median_payback_months",
        "p_roi_multiple_ge_15",
    ]
    assert set(need) <= set(risk.columns)
    r = risk[risk.system == "rack"].iloc[0]
    assert r.p_loss == pytest.approx((x < 0).mean(), abs=1e-12)
    tail = np.sort(x)[: int(np.ceil(0.05 * len(x)))]
    assert r.cvar95_usd == pytest.approx(-tail.mean(), rel=2e-3)
    assert r.cvar95_usd >= r.var95_usd

    check_summary_nc(folder / "summary.nc", df)

    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("seed", "study_sha256", "versions", "devices", "precision", "chunk_size", "scenarios", "seconds"):
        assert key in manifest, key
    for pkg in ("mcrisk", "jax", "numpy", "arviz", "pyarrow"):
        assert pkg in manifest["versions"]
    for stage in ("compile", "sample", "simulate", "summarize", "write"):
        assert stage in manifest["seconds"]


def test_existing_folder_is_refused_without_force(tmp_path):
    study = small_study(scenarios=50)
    first = run_study(study, out=tmp_path / "run")
    stamp = (first.folder / "manifest.json").read_text()
    with pytest.raises(RunFolderError, match="pass overwrite=True to replace it") as e:
        run_study(study, out=tmp_path / "run", seed=9)
    assert "--force" not in str(e.value)  # the command's flag, not a Python argument
    assert (first.folder / "manifest.json").read_text() == stamp
    run_study(study, out=tmp_path / "run", seed=9, overwrite=True)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["seed"] == 9


def test_no_scenarios_writes_summaries_only(tmp_path):
    result = run_study(small_study(scenarios=300), out=tmp_path / "run", write_scenarios=False)
    assert not (result.folder / "scenarios.parquet").exists()
    assert (result.folder / "summary.csv").is_file() and (result.folder / "risk.csv").is_file()


def test_default_study_runs_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_study(scenarios=2000, stress=False, analyze=False)
    assert result.folder.resolve() == (tmp_path / "outputs" / "ai-fleet-2026").resolve()
    assert set(result.risk.system) == {"gb200_nvl72", "b200_hgx", "h200_hgx", "portfolio"}


def test_a_subset_of_columns_and_scenarios_can_be_written(tmp_path):
    study = small_study(scenarios=3000)
    full = run_study(study, out=tmp_path / "full", chunk_size=1024)
    part = run_study(
        study, out=tmp_path / "part", chunk_size=700, columns=["npv_usd", "facility.pue"], sample_fraction=0.1
    )
    a, b = rows(full), rows(part)
    assert list(b.columns) == ["scenario", "system", "npv_usd", "facility__pue"]
    assert 0.07 < b.scenario.nunique() / 3000 < 0.13
    merged = b.merge(a, on=["scenario", "system"], suffixes=("", "_full"))
    assert len(merged) == len(b)
    assert (merged.npv_usd == merged.npv_usd_full).all()
    # the summaries still cover every scenario
    pd.testing.assert_frame_equal(full.risk, part.risk)
    # the in-run analysis ranks the one input kept, over the scenarios written, and says how many
    outputs = part.manifest["outputs"]
    assert outputs["sensitivity"] == "sensitivity.csv" and outputs["comparison"] == "comparison.csv"
    assert "analysis_skipped" not in outputs and outputs["analysis_scenarios"] == b.scenario.nunique()
    assert set(pd.read_csv(part.folder / "sensitivity.csv").input) == {"facility.pue"}
