"""A run's typed options, timings and the chunk loop's events, apart from any run folder."""

from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.engine.loop import ChunkLoop, Done, Flush, Progress, Resume, RowBlock
from mcrisk.engine.options import DIAGNOSTIC_DRAWS, OPTIONAL, RECORDED, RunOptions
from mcrisk.engine.plan import MONTHLY_SCENARIOS
from mcrisk.engine.state import HostSummaries
from mcrisk.engine.timings import Timings
from mcrisk.errors import StudyError
from mcrisk.study.schema import study_from_dict

from .conftest import small_study


def test_options_take_the_studys_simulation_section_and_record_what_they_hold():
    st = study_from_dict(small_study(scenarios=700))
    opts = RunOptions.for_study(st, seed=5, shard=[1, 2], columns=["npv_usd"], overrides={"facility.pue": 1.3})
    assert (opts.scenarios, opts.seed, opts.precision) == (700, 5, st.simulation.precision)
    assert opts.shard == (1, 2) and opts.columns == ("npv_usd",) and opts.shard_index == (1, 2)
    record = opts.record()
    assert list(record) == [*RECORDED, *OPTIONAL]  # the manifest's order
    assert (
        record["shard"] == [1, 2] and record["columns"] == ["npv_usd"] and record["overrides"] == {"facility.pue": 1.3}
    )
    assert RunOptions.record_problems(record) == []
    assert RunOptions.from_record(record) == opts


def test_a_record_of_an_older_run_reads_back_with_the_defaults_of_its_time():
    old = {
        "scenarios": 100,
        "seed": 1,
        "precision": "float32",
        "chunk_size": None,
        "write_scenarios": True,
        "diagnostic_draws": 16,
        "checkpoint_every": None,
    }
    opts = RunOptions.from_record(old)
    assert opts.monthly_scenarios is None  # those runs kept bands over every scenario
    assert opts.monthly and opts.stress and opts.analyze and opts.shard is None and opts.diagnostic_draws == 16
    assert RunOptions(scenarios=1, seed=0, precision="float64").monthly_scenarios == MONTHLY_SCENARIOS
    assert RunOptions(scenarios=1, seed=0, precision="float64").diagnostic_draws == DIAGNOSTIC_DRAWS


def test_every_bad_option_is_named_by_its_argument_at_once():
    with pytest.raises(StudyError) as e:
        RunOptions(scenarios=0, seed=-1, precision="half", chunk_size=2**27, checkpoint_every=0, shard=(2, 2))
    assert [p.path for p in e.value.problems] == [
        "shard",
        "scenarios",
        "seed",
        "chunk_size",
        "checkpoint_every",
        "precision",
    ]
    assert "scenarios: must be between 1 and 4294967295, got 0" in str(e.value)
    with pytest.raises(StudyError, match="scenarios: must be between 1") as e:
        RunOptions(scenarios="100", seed=0, precision="float32")  # not a whole number: refused, not a TypeError
    with pytest.raises(StudyError, match=r"sample_fraction: must be in \(0, 1\], got 2"):
        RunOptions(scenarios=10, seed=0, precision="float32", sample_fraction=2)
    with pytest.raises(StudyError, match="target_mcse: cannot be combined with shard"):
        RunOptions(scenarios=10, seed=0, precision="float32", target_mcse="npv_usd:p5:1000", shard=(0, 2))
    with pytest.raises(StudyError, match="target_mcse: expected METRIC:STAT:VALUE"):
        RunOptions(scenarios=10, seed=0, precision="float32", target_mcse="npv_usd")
    st = study_from_dict(small_study())
    with pytest.raises(StudyError, match="columns: unknown column 'npv'; did you mean 'npv_usd'"):
        RunOptions.for_study(st, columns=["npv"])


def test_a_recorded_options_object_is_checked_by_json_type():
    bad = {
        "scenarios": "many",
        "seed": 1,
        "precision": "float32",
        "chunk_size": None,
        "write_scenarios": 1,
        "diagnostic_draws": 16,
        "shard": ["a", "b"],
        "colour": 1,
    }
    problems = RunOptions.record_problems(bad)
    assert problems == [
        "no field 'options.checkpoint_every'",
        "'options.scenarios' must be a whole number, got 'many'",
        "'options.write_scenarios' must be true or false, got 1",
        "'options.shard' must be a list of whole numbers, got ['a', 'b']",
        "'options.colour': not an option of this version of mcrisk run",
    ]
    with pytest.raises(ValueError, match="options.scenarios"):
        RunOptions.from_record(bad)


def test_the_cli_names_a_bad_option_by_its_flag(tmp_path):
    result = CliRunner().invoke(app, ["run", "--sample-fraction", "2", "--out", str(tmp_path / "r")])
    text = " ".join((result.stdout + (result.stderr or "")).split())
    assert result.exit_code == 2, text
    assert "--sample-fraction: must be in (0, 1], got 2.0" in text and "Traceback" not in text
    assert not (tmp_path / "r").exists()


def test_timings_book_stages_by_name_and_record_those_that_ran():
    t = Timings()
    t["compile"] += 1.5
    t["stress"] = 2.0
    assert list(t.seconds()) == ["plan", "compile", "sample", "simulate", "summarize", "transfer", "write", "stress"]
    with pytest.raises(KeyError):
        t["nap"] += 1
    summed = Timings.summed([{"plan": 1.0, "write": 2.0, "total": 9.0}, {"plan": 0.5, "write": 1.0, "total": 3.0}])
    assert (summed.plan, summed.write, summed.analyze) == (1.5, 3.0, None)


def test_the_chunk_loop_yields_rows_flushes_and_progress_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    st = study_from_dict(small_study(scenarios=600))
    opts = RunOptions.for_study(st, chunk_size=256, checkpoint_every=2, diagnostic_draws=100, stress=False)
    loop = ChunkLoop(st, opts, Timings())
    assert (loop.n_chunks, loop.every, loop.chunks) == (3, 2, (0, 3))
    events = list(loop.events())
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RowBlock", "Progress", "RowBlock", "Flush", "Progress", "RowBlock", "Flush", "Progress", "Done"]
    assert [e.next_chunk for e in events if isinstance(e, Flush)] == [2, 3]
    assert [(e.done, e.total) for e in events if isinstance(e, Progress)] == [(256, 600), (512, 600), (600, 600)]
    rows = [e for e in events if isinstance(e, RowBlock)]
    assert [(r.chunk, r.start, r.valid) for r in rows] == [(0, 0, 256), (1, 256, 256), (2, 512, 88)]
    block = rows[2].block.get()
    assert [b.shape for b in block] == [(len(names), 256 * len(loop.plan.systems)) for _, names in loop.rows.groups]
    assert [b.dtype for b in block] == [np.float64, np.float32]  # the money metrics, then the rest (a float32 run)
    done = events[-1]
    assert isinstance(done, Done) and done.extra["scenarios_run"] == 600 and done.state.retained.shape[1] == 100
    m = done.state.host.moments
    assert (np.asarray(m.count) + np.asarray(m.nan) == 600).all()
    assert os.listdir(tmp_path) == []

    # From a flush point on, the rest of the chunks give the same summaries.
    again = ChunkLoop(st, opts, Timings())
    first = next(e for e in again.events() if isinstance(e, Flush))
    saved = HostSummaries(first.state.host, first.state.tails.copy(), first.state.retained.copy(), first.state.monthly)
    resumed = list(ChunkLoop(st, opts, Timings()).events(Resume(saved, first.next_chunk)))
    assert [type(e).__name__ for e in resumed] == ["RowBlock", "Flush", "Progress", "Done"]
    assert resumed[-1].extra["resumed_from_chunk"] == 2
    np.testing.assert_array_equal(resumed[-1].state.tails, done.state.tails)
    np.testing.assert_array_equal(resumed[-1].state.host.hist, done.state.host.hist)
