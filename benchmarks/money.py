"""What float64 money columns cost the Parquet rows: the same rows encoded with the amounts of
money (mcrisk.engine.rows.is_money) in float64, as mcrisk writes them, and cast to float32, on
one thread with mcrisk's options (snappy, index statistics only, parts of 262,144 rows).

Runs the default study (or the run folder given) and prints the encoding time (min and median of
7 alternating repeats, robust to a loaded machine) and the bytes of each.

    python benchmarks/money.py                      # the default study at 200,000 scenarios
    python benchmarks/money.py --scenarios 1e6
    python benchmarks/money.py --run outputs/default   # the rows of a run already written
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import mcrisk
from mcrisk.engine.rows import is_money
from mcrisk.io.parquet import PART_ROWS, STATISTICS_COLUMNS


def encode(table: pa.Table) -> tuple[float, int]:
    buf = io.BytesIO()
    t0 = time.perf_counter()
    pq.write_table(
        table,
        buf,
        compression="snappy",
        use_dictionary=["system"],
        write_statistics=STATISTICS_COLUMNS,
        row_group_size=PART_ROWS,
    )
    return time.perf_counter() - t0, buf.tell()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=float, default=2e5)
    ap.add_argument("--run", type=Path, default=None, help="a run folder whose rows to encode")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.run
        if folder is None:
            folder = Path(tmp) / "run"
            mcrisk.run_study(None, out=folder, scenarios=int(args.scenarios), analyze=False, stress=False)
        as_written = pq.read_table(folder / "scenarios.parquet")
    money = [f.name for f in as_written.schema if is_money(f.name) and pa.types.is_float64(f.type)]
    as_float32 = as_written
    for m in money:
        i = as_float32.schema.get_field_index(m)
        as_float32 = as_float32.set_column(i, pa.field(m, pa.float32()), pc.cast(as_float32.column(m), pa.float32()))
    times: dict[str, list[tuple[float, int]]] = {"money float32": [], "money float64": []}
    for _ in range(args.repeat):
        for label, table in (("money float32", as_float32), ("money float64", as_written)):
            times[label].append(encode(table))
    print(f"{as_written.num_rows:,} rows x {as_written.num_columns} columns, {len(money)} of them money")
    for label, table in (("money float32", as_float32), ("money float64", as_written)):
        s = sorted(t for t, _ in times[label])
        print(
            f"{label}: encode min {s[0]:.3f} s, median {s[len(s) // 2]:.3f} s; "
            f"Parquet {times[label][0][1] / 1e6:.1f} MB, Arrow {table.nbytes / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main()
