"""The chunk loop driven into a run folder: its rows to Parquet, a checkpoint at each flush point."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import pyarrow as pa

from mcrisk.engine.loop import ChunkLoop, Done, Flush, Progress, Resume, RowBlock
from mcrisk.engine.state import checkpoint_arrays
from mcrisk.io.checkpoint import save_checkpoint
from mcrisk.io.folder import SCENARIOS_DIR, RunFolder
from mcrisk.io.parquet import ScenarioWriter, part_scenarios
from mcrisk.workflows.progress_log import ProgressLog
from mcrisk.workflows.publish import versions


def checkpoint_meta(loop: ChunkLoop) -> dict:
    """What every checkpoint of the run records besides its position: the study, the options and
    the chunking that a resume must find again."""
    return {
        "study_sha256": loop.study.digest(),
        "options": loop.opts.record(),
        "chunk_size": loop.plan.chunk,
        "n_chunks": loop.n_chunks,
        "every": loop.every,
        "month_loop_unroll": loop.plan.unroll,
    }


def drive(
    loop: ChunkLoop,
    folder: RunFolder,
    resume: Resume | None = None,
    progress: Callable[[int, int], None] | None = None,
    parts: Mapping[str, dict] | None = None,
) -> Done:
    """Run `loop` (from `resume`, if given, whose checkpoint recorded the Parquet `parts` before it)
    into `folder`: each chunk's rows handed to a Parquet writer's threads, a checkpoint saved at
    each flush point once the rows before it are on disk, with the record (rows, bytes, SHA-256)
    of every part so far. Returns the loop's end (its summaries, manifest fields, the parts'
    records in ``extra["parts"]``, and diagnostics)."""
    times = loop.times
    writer = _writer(loop, folder, parts) if loop.fields is not None else None
    meta = checkpoint_meta(loop)
    log = ProgressLog(f"simulating {loop.study.name!r}")
    log.start(*_position(loop, resume))
    done = None
    for event in loop.events(resume, writer.blocks_held(loop.plan.chunk) if writer is not None else 0):
        if isinstance(event, RowBlock):  # waits only while the writer's threads have `threads` parts queued
            writer.put(event.chunk, event.start, event.valid, event.sel, event.block.get)
        elif isinstance(event, Flush):
            t0 = time.perf_counter()
            if writer is not None:
                writer.drain()
            save_checkpoint(
                folder.tmp,
                dict(
                    meta,
                    next_chunk=event.next_chunk,
                    stopped=event.stopped,
                    trace=event.trace,
                    parts=writer.written() if writer is not None else {},
                ),
                checkpoint_arrays(event.state),
            )
            times["write"] += time.perf_counter() - t0
        elif isinstance(event, Progress):
            log(event.done, event.total)
            if progress is not None:
                progress(event.done, event.total)
        elif isinstance(event, Done):
            done = event
    if writer is not None:
        writer.close()
        times["transfer"] += writer.wait_seconds  # the writer's threads waiting for the blocks' copies
        times["write"] += (
            writer.busy_seconds - writer.wait_seconds
        )  # encoding in the writer's threads, and handing parts over
    assert done is not None  # (the loop always ends with Done)
    done.extra["parts"] = writer.written() if writer is not None else {}
    return done


def _position(loop: ChunkLoop, resume: Resume | None) -> tuple[int, int]:
    """(scenarios done, total) of this process's slice of the run where the loop starts, as its
    Progress events count them."""
    (lo, hi), C, n = loop.chunks, loop.plan.chunk, loop.opts.scenarios
    start = resume.next_chunk if resume is not None else lo
    return min(n, start * C) - lo * C, min(n, hi * C) - lo * C


def _writer(loop: ChunkLoop, folder: RunFolder, parts: Mapping[str, dict] | None) -> ScenarioWriter:
    """The Parquet writer of the loop's rows, their file metadata naming the study, seed and scenario count."""
    opts, rows = loop.opts, loop.rows
    meta = {
        "mcrisk.study_sha256": loop.study.digest(),
        "mcrisk.seed": opts.seed,
        "mcrisk.version": versions()["mcrisk"],
        "mcrisk.scenarios": opts.scenarios,
    }
    return ScenarioWriter(
        folder.path(SCENARIOS_DIR),
        pa.schema(loop.fields),
        meta,
        lambda start, sel, host: rows.columns(start, sel, host),
        part_scenarios(len(loop.plan.row_systems)),
        loop.n_chunks,
        loop.plan.chunk,
        records=parts,
    )
