"""How long `mcrisk --help` (and other quick commands) take from start to exit, in fresh
processes, against a bare `python -c pass`. With several source trees (--tree, e.g. the main
checkout and a branch's worktree) the calls alternate between them, so that a machine whose
load changes treats each alike; `python -m mcrisk` imports the tree it is run from.

    python benchmarks/cli_help.py [--tree DIR ...] [--repeat 15] [--json out.json] [-- ARGS]

ARGS default to --help. One line per tree: the median and the fastest of the calls, seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, help="source tree to run mcrisk from (repeatable)")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path)
    parser.add_argument("args", nargs="*", default=["--help"])
    opts = parser.parse_args()
    trees = opts.tree or [Path(__file__).resolve().parents[1]]
    runs: dict[str, list[float]] = {"python -c pass": [], **{str(t): [] for t in trees}}
    for _ in range(opts.repeat):
        runs["python -c pass"].append(timed([sys.executable, "-c", "pass"], trees[0]))
        for t in trees:
            runs[str(t)].append(timed([sys.executable, "-m", "mcrisk", *opts.args], t))
    out = {
        "args": opts.args,
        "python": sys.version.split()[0],
        "results": {k: {"median_s": statistics.median(v), "min_s": min(v), "calls": len(v)} for k, v in runs.items()},
    }
    for k, r in out["results"].items():
        print(f"{k}: median {r['median_s']:.3f} s, fastest {r['min_s']:.3f} s ({r['calls']} calls)")
    if opts.json:
        opts.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
