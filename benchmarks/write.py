"""What writing the scenarios costs `mcrisk run`, against a plain multi-threaded pyarrow write.

For one study at N scenarios (default: the embedded default study, 1e7 scenarios):

1. `mcrisk run --no-scenarios`, and `mcrisk run` writing every scenario row; the difference of
   their wall times is what writing costs the run end to end (row assembly, device-to-host
   copies, Parquet encoding and I/O, minus what overlaps the simulation).
2. The same rows, read back into one in-memory Arrow table, written by pyarrow alone: the
   table cut into one slice per thread, each slice written to its own file by its own thread
   (pyarrow releases the GIL while encoding), same compression (snappy).

Prints a table and writes JSON (outputs/bench/write-<time>.json). Each mcrisk run is a
fresh process; the pyarrow baseline runs in this one.

    python benchmarks/write.py                 # 1e7 scenarios
    python benchmarks/write.py --scenarios 1e6 --threads 2 4
    python benchmarks/write.py --part-rows 262144 1048576   # Parquet parts of each size
    python benchmarks/write.py --repeat 3                   # the median of 3 pairs of runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from bench import HERE, run_one  # noqa: E402  (benchmarks/ is the script's folder)

from mcrisk.io.parquet import PART_ROWS, writer_threads  # noqa: E402


def pyarrow_write(
    table: pa.Table, folder: Path, threads: int, rows_per_file: int | None = None, statistics: bool | list[str] = True
) -> float:
    """Seconds to write `table` as `threads` files, one slice per thread; or, with `rows_per_file`,
    as files of that many rows shared out among `threads` threads (the shape of mcrisk's parts)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = table.num_rows
    files = threads if rows_per_file is None else -(-n // rows_per_file)
    bounds = [n * k // files for k in range(files + 1)]

    def write(k: int) -> None:
        pq.write_table(
            table.slice(bounds[k], bounds[k + 1] - bounds[k]),
            folder / f"part-{k:05d}.parquet",
            compression="snappy",
            use_dictionary=["system"],
            write_statistics=statistics,
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(files)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None, help="study YAML (default: the embedded default study)")
    ap.add_argument("--scenarios", type=float, default=1e7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument(
        "--part-rows",
        type=int,
        nargs="+",
        default=[None],
        help="rows per Parquet part, one run writing rows for each (default: mcrisk's)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="pairs of runs (without, then with rows) whose median difference is the cost of writing",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n = int(args.scenarios)
    study = args.study
    if study is None:
        from mcrisk.study.schema import default_study_path

        study = str(default_study_path())

    with tempfile.TemporaryDirectory(
        dir=HERE.parent / "outputs" if (HERE.parent / "outputs").is_dir() else None
    ) as tmp:
        # Pairs of fresh processes, without rows then with them (mcrisk's parts): a run's wall time
        # varies by a few tenths of a second, so the cost of writing is the median difference.
        pairs = []
        for r in range(max(1, args.repeat)):
            without = run_one(study, n, write=False, chunk=None, precision=None)
            with_rows = run_one(
                study,
                n,
                write=True,
                chunk=None,
                precision=None,
                keep=Path(tmp) / f"pair{r}",
                part_rows=args.part_rows[0],
            )
            if r:
                shutil.rmtree(Path(tmp) / f"pair{r}")  # the first pair's rows are kept for pyarrow
            pairs.append((without, with_rows))
        middle = sorted(range(len(pairs)), key=lambda r: pairs[r][1]["wall_s"] - pairs[r][0]["wall_s"])[len(pairs) // 2]
        summaries, written = pairs[middle]
        by_part = {args.part_rows[0] or PART_ROWS: written}
        for k, part_rows in enumerate(args.part_rows[1:], start=1):  # other part sizes: one run each
            by_part[part_rows or PART_ROWS] = run_one(
                study, n, write=True, chunk=None, precision=None, keep=Path(tmp) / f"run{k}", part_rows=part_rows
            )
            shutil.rmtree(Path(tmp) / f"run{k}")
        parts = Path(tmp) / "pair0" / "scenarios.parquet"
        table = pq.read_table(parts)
        rows, cols, nbytes = table.num_rows, table.num_columns, table.nbytes
        baseline = {}
        for t in args.threads:
            out = Path(tmp) / f"pyarrow-{t}"
            baseline[t] = pyarrow_write(table, out, t)
            shutil.rmtree(out)
        # Where a gap to pyarrow comes from: the same table cut as mcrisk cuts it (its parts, its
        # writer threads), and with statistics for the scenario and system columns only.
        variants = {}
        t = writer_threads()
        for name, kw in (
            ("parts", dict(rows_per_file=PART_ROWS)),
            ("parts_index_statistics", dict(rows_per_file=PART_ROWS, statistics=["scenario", "system"])),
            ("files_index_statistics", dict(statistics=["scenario", "system"])),
        ):
            out = Path(tmp) / f"pyarrow-{name}"
            variants[name] = {
                "threads": t if "rows_per_file" in kw else max(args.threads),
                "seconds": pyarrow_write(table, out, t if "rows_per_file" in kw else max(args.threads), **kw),
            }
            shutil.rmtree(out)
        del table
    extra = written["wall_s"] - summaries["wall_s"]
    best = min(baseline.values())
    result = {
        "scenarios": n,
        "rows": rows,
        "columns": cols,
        "table_gib": nbytes / 2**30,
        "mcrisk_wall_s": {"no_scenarios": summaries["wall_s"], "with_scenarios": written["wall_s"]},
        "mcrisk_write_cost_s": extra,
        "pairs_wall_s": [
            {"no_scenarios": a["wall_s"], "with_scenarios": b["wall_s"], "difference": b["wall_s"] - a["wall_s"]}
            for a, b in pairs
        ],
        "mcrisk_write_stage_s": written["stages_s"]["write"],
        "mcrisk_transfer_stage_s": written["stages_s"]["transfer"],
        "pyarrow_write_s": {str(t): s for t, s in baseline.items()},
        "ratio_to_best_pyarrow": extra / best,
        "pyarrow_variants": variants,
        # against pyarrow with mcrisk's own write options (statistics for the index columns only)
        "ratio_to_pyarrow_same_options": extra / min(v["seconds"] for k, v in variants.items() if "index" in k),
        "by_part_rows": {
            str(p): {
                "with_scenarios_wall_s": w["wall_s"],
                "write_cost_s": w["wall_s"] - summaries["wall_s"],
                "ratio_to_best_pyarrow": (w["wall_s"] - summaries["wall_s"]) / best,
                "write_stage_s": w["stages_s"]["write"],
                "transfer_stage_s": w["stages_s"]["transfer"],
                "peak_rss_mib": w["peak_rss_mib"],
            }
            for p, w in by_part.items()
        },
        "peak_rss_mib": {"no_scenarios": summaries["peak_rss_mib"], "with_scenarios": written["peak_rss_mib"]},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "backend": written["backend"],
    }
    print(f"{n:.0e} scenarios: {rows:,} rows x {cols} columns ({nbytes / 2**30:.2f} GiB in Arrow)")
    print(f"{'':40s} {'seconds':>8s}")
    print(f"{'mcrisk run --no-scenarios (wall)':40s} {summaries['wall_s']:8.1f}")
    print(f"{'mcrisk run, every row to Parquet (wall)':40s} {written['wall_s']:8.1f}")
    print(
        f"{'  what writing adds to the run':40s} {extra:8.1f}"
        + (
            f"  (median of {len(pairs)} pairs: " + ", ".join(f"{b['wall_s'] - a['wall_s']:.2f}" for a, b in pairs) + ")"
            if len(pairs) > 1
            else ""
        )
    )
    for t, s in baseline.items():
        print(f"{f'pyarrow alone, {t} thread(s), {t} file(s)':40s} {s:8.1f}")
    labels = {
        "parts": "parts of {:,} rows",
        "parts_index_statistics": "parts of {:,} rows, index statistics only",
        "files_index_statistics": "one file per thread, index statistics only",
    }
    for name, v in variants.items():
        print(
            f"{'pyarrow alone, ' + labels[name].format(PART_ROWS) + ', ' + str(v['threads']) + ' threads':64s} {v['seconds']:8.1f}"
        )
    print(
        f"ratio (what writing adds / best pyarrow): {extra / best:.2f}; "
        f"to pyarrow with mcrisk's options (index statistics only): {result['ratio_to_pyarrow_same_options']:.2f}"
    )
    if len(by_part) > 1:
        for p, w in by_part.items():
            cost = w["wall_s"] - summaries["wall_s"]
            print(
                f"{f'  parts of {p:,} rows: writing adds':40s} {cost:8.1f}  (ratio {cost / best:.2f}, "
                f"peak RSS {w['peak_rss_mib'] / 1024:.1f} GiB)"
            )
    path = (
        Path(args.json)
        if args.json
        else HERE.parent / "outputs" / "bench" / f"write-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
