"""`mcrisk sweep`: every point of a grid of study variants run on the base study's draws, side by side in sweep.csv."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcrisk.engine.options import check_counts
from mcrisk.engine.plan import make_plan
from mcrisk.errors import RunFolderError
from mcrisk.io.folder import RunFolder
from mcrisk.io.jsonfiles import write_json
from mcrisk.study import variants as ov
from mcrisk.study.schema import Study, default_study_path, load_study
from mcrisk.workflows.progress_log import LOG
from mcrisk.workflows.run import run_study
from mcrisk.workflows.stress import STAT_COLUMNS, key_stats

if TYPE_CHECKING:
    import pandas as pd


def _cell(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else json.dumps(v)


def run_sweep(
    study: str | Path | Mapping | Study | None,
    assignments: Sequence[tuple[str, Sequence[Any]]],
    *,
    out: str | Path | None = None,
    scenarios: int | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
    precision: str | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    point_done: Callable[[int, int, Mapping], None] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Run every point of the grid of `assignments` ((path, values) pairs) with common random
    numbers; write `sweep.csv` (and each point's tables under `points/NNN/`) into one folder."""
    import pandas as pd

    t0 = time.perf_counter()
    source = default_study_path() if study is None else study
    base = load_study(source)
    raw = ov.raw_study(source)
    if not assignments:
        raise RunFolderError("a sweep needs at least one --set PATH=V1,V2,...")
    check_counts(scenarios=scenarios, seed=seed, chunk_size=chunk_size, precision=precision)
    points = ov.grid(assignments)
    variants = [ov.apply(raw, p, label="--set") for p in points]  # every point valid before any runs
    sim = base.simulation
    n, s = scenarios or sim.scenarios, sim.seed if seed is None else seed
    prec = precision or sim.precision
    dims = make_plan(base, scenarios=n, seed=s, precision=prec, chunk_size=chunk_size, monthly=False).dims
    folder = RunFolder(Path(out) if out is not None else Path("outputs") / f"{base.name}-sweep", force=force)
    try:
        folder.write_study(base.to_yaml())
        rows = []
        for k, (point, variant) in enumerate(zip(points, variants)):
            LOG.info("sweep point %d of %d: %s", k + 1, len(points), ov.describe(point))
            result = run_study(
                variant,
                out=folder.path(f"points/{k:03d}"),
                scenarios=n,
                seed=s,
                chunk_size=chunk_size,
                precision=prec,
                write_scenarios=False,
                monthly=False,
                sampler_dims=dims,
                progress=progress,
            )
            stats = key_stats(result.summary, result.risk)
            for path, value in point.items():
                stats[path] = _cell(value)
            stats["point"] = k
            rows.append(stats)
            if point_done is not None:
                point_done(k, len(points), point)
        paths = [p for p, _ in assignments]
        table = pd.concat(rows, ignore_index=True)[["point", *paths, "system", *STAT_COLUMNS]]
        table.to_csv(folder.path("sweep.csv"), index=False)
        write_json(
            folder.path("manifest.json"),
            {
                "study": base.name,
                "study_sha256": base.digest(),
                "seed": s,
                "scenarios": n,
                "precision": prec,
                "grid": [{"path": p, "values": [_cell(v) for v in vals]} for p, vals in assignments],
                "points": [
                    {"point": k, "overrides": ov.describe(p), "folder": f"points/{k:03d}"} for k, p in enumerate(points)
                ],
                "outputs": {"sweep": "sweep.csv", "study": "study.yaml"},
                "seconds": {"total": round(time.perf_counter() - t0, 4)},
            },
        )
        return folder.publish(), table
    except BaseException:
        folder.discard()
        raise
