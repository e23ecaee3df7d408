"""What every command of the CLI shares: the error console, how a user error is shown, counts,
--set values and the report."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from mcrisk.cli.terminal import out_console
from mcrisk.errors import Problem, RunFolderError, StudyError
from mcrisk.workflows.progress_log import INTERVAL_ENV

err_console = Console(stderr=True, soft_wrap=True)


class Precision(StrEnum):
    """--precision: the floating-point type of the simulated paths (`--help` lists the choices)."""

    float32 = "float32"
    float64 = "float64"


def precision_value(p: Precision | None) -> str | None:
    return p.value if p is not None else None


EXIT_INVALID = 2
# The options of a run (mcrisk.engine.options.RunOptions) that the library names by their keyword
# (chunk_size) and the commands by their flag (--chunk-size).
OPTION_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in (
        "scenarios",
        "seed",
        "chunk_size",
        "precision",
        "checkpoint_every",
        "shard",
        "columns",
        "sample_fraction",
        "monthly_scenarios",
        "target_mcse",
    )
}


def fail(exc: Exception) -> None:
    """Show a user error (invalid study, refused folder) without a traceback; exit 2. The options
    of a run are named by their flags."""
    from rich.markup import escape  # a message quotes paths and values, which may hold [tags]

    if isinstance(exc, StudyError):
        where = f" {escape(exc.source)}" if exc.source else ""
        err_console.print(
            f"[bold red]error:[/] invalid study{where} ({len(exc.problems)} problem(s)):", highlight=False
        )
        for p in exc.problems:
            if exc.source == "options":
                p = Problem(OPTION_FLAGS.get(p.path, p.path), p.message)
            err_console.print(f"  {p}", highlight=False, markup=False)
    elif isinstance(exc, OSError):  # a full disk, a read-only folder: the reason, the file and what was kept
        where = f" ({exc.filename})" if exc.filename else ""
        notes = "".join(f"; {n}" for n in getattr(exc, "__notes__", ()))
        err_console.print(f"[bold red]error:[/] {escape(f'{exc.strerror or exc}{where}{notes}')}", highlight=False)
    else:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


def warn(problems) -> None:
    """Plausibility warnings (Problems, or the manifest's {path, message} records) on stderr, in yellow."""
    from rich.markup import escape

    for p in problems:
        path, message = (p["path"], p["message"]) if isinstance(p, dict) else (p.path, p.message)
        err_console.print(f"[yellow]warning:[/] {escape(path)}: {escape(message)}", highlight=False)


def count(text: str) -> int:
    """A count as 200000, 200_000 or 2e5: scenario counts are written in powers of ten (1e8)."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        x = float(text.strip().replace("_", ""))
    except ValueError:
        raise typer.BadParameter(f"must be a whole number (200000, 200_000 or 2e5), got {text!r}") from None
    if not x.is_integer():
        raise typer.BadParameter(f"must be a whole number, got {text!r}")
    return int(x)


def parse_sets(items: list[str] | None, many: bool = False) -> dict | list | None:
    """--set PATH=VALUE options: {path: value} (run), or [(path, [values])] with `many` (sweep)."""
    if not items:
        return None
    from mcrisk.study.variants import check_unique, parse_assignment

    try:
        pairs = [parse_assignment(x, many=many) for x in items]
        check_unique([p for p, _ in pairs])
    except StudyError as exc:
        fail(exc)
    if many:
        return pairs
    return {path: values[0] for path, values in pairs}


class Paper(StrEnum):
    """The paper sizes of report.pdf (--paper)."""

    a4 = "a4"
    letter = "letter"


def write_report(run_dir: Path, quiet: bool, pdf: bool = False, paper: str = "a4") -> None:
    """report.html into `run_dir`, and with `pdf` report.pdf printed on `paper` by Chromium."""
    try:
        from mcrisk.report.page import write_report
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    from mcrisk.report.pdf import BrowserMissing, write_pdf

    try:
        path = write_report(run_dir)
        paths = [path, write_pdf(path, paper=paper)] if pdf else [path]
    except (RunFolderError, OSError, BrowserMissing) as exc:
        fail(exc)
    if not quiet:
        for path in paths:
            out_console.print(f"wrote {path}", highlight=False)


# The progress lines of a batch job (stderr not a terminal): what `logging` shows of the logger "mcrisk".
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def log_interval_option():
    """--log-interval SECONDS (or MCRISK_LOG_INTERVAL), for the commands that log progress."""
    return typer.Option(
        None,
        "--log-interval",
        metavar="SECONDS",
        min=0.1,
        envvar=INTERVAL_ENV,
        help="Seconds between progress lines when stderr is not a terminal (batch jobs, CI); default 10.",
    )


class _Stderr(logging.StreamHandler):
    """A handler that writes to sys.stderr as it is when a line is logged (a test's runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextmanager
def batch_log(quiet: bool, interval: float | None) -> Iterator[None]:
    """While a command runs: the library's progress lines on stderr (timestamped, through logging)
    where stderr is not a terminal (a terminal shows the progress bar), unless `quiet`; every
    `interval` seconds (else MCRISK_LOG_INTERVAL's, else 10)."""
    before = os.environ.get(INTERVAL_ENV)
    if interval is not None:  # (the library reads it where each pass starts)
        os.environ[INTERVAL_ENV] = repr(float(interval))
    logger = logging.getLogger("mcrisk")
    handler, level = None, logger.level
    if not quiet and not err_console.is_terminal:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)
        if before is None:
            os.environ.pop(INTERVAL_ENV, None)
        else:
            os.environ[INTERVAL_ENV] = before
