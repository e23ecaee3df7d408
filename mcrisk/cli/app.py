"""The `mcrisk` command: a thin typer shell over the library (`run_study`, `load_study`).

The commands live in :mod:`mcrisk.cli.run_cmd`, :mod:`mcrisk.cli.commands` and
:mod:`mcrisk.cli.data_cmd`; this module makes the typer app of them and the process's entry
point, :func:`main`. Importing them imports no JAX, pandas or pyarrow (each command imports its
workflow when it runs), so that `mcrisk --help`, `mcrisk COMMAND --help` and `--version` answer
at once; tests/test_cli_batch.py holds them to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

import mcrisk.errors as errors
from mcrisk.cli import commands
from mcrisk.cli.common import err_console
from mcrisk.cli.data_cmd import export, query
from mcrisk.cli.greeks_cmd import greeks
from mcrisk.cli.run_cmd import run
from mcrisk.engine import interrupt
from mcrisk.engine.cluster import COORDINATOR_ENV

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Monte Carlo risk for the economics of AI inference: a study file in, scenario economics and risk tables out.",
)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("mcrisk")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = "0+unknown"
        print(f"mcrisk {number}")
        raise typer.Exit()


@app.callback()
def _command_line(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
    wide: bool = typer.Option(
        False,
        "--wide",
        help="Print each table row on one line whatever the terminal's width (for logs); "
        "by default tables fit the width (COLUMNS, else 80 off a terminal).",
    ),
) -> None:
    """Errors raised while a command runs name its flags (--force), not run_study's arguments."""
    from mcrisk.cli.terminal import set_wide

    set_wide(wide)
    errors.COMMAND_LINE = True
    ctx.call_on_close(lambda: setattr(errors, "COMMAND_LINE", False))


app.command()(run)
app.command()(commands.merge)
app.command()(commands.validate)
app.command("catalog")(commands.catalog_command)
app.command()(commands.claims)
app.command()(commands.sweep)
app.command()(commands.analyze)
app.command("report")(commands.report_command)
app.command()(commands.verify)
app.command()(greeks)
app.command()(query)
app.command()(export)


def _compilation_cache() -> None:
    """Keep compiled XLA programs between runs (same study shape -> no recompiling).

    MCRISK_CACHE_DIR chooses the folder (default ~/.cache/mcrisk/xla); 'off' disables it.
    """
    import os

    where = os.environ.get("MCRISK_CACHE_DIR", str(Path.home() / ".cache" / "mcrisk" / "xla"))
    if where.lower() in ("off", "0", "none", ""):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _leave(code: int) -> None:
    """End the process now: the atexit handlers run (JAX's, a jax.distributed shutdown) and the
    output is flushed; the interpreter's teardown is skipped.

    That teardown took about 1 s after every command on 2 cores (every module, XLA's client and
    its thread pools destroyed; a short run took 8.95 s from start to exit, now 8.14 s), and after
    Ctrl-C it waited for a compile still running, which XLA cannot stop (8 s on 2 cores). Every
    file a command writes is complete before the command returns, and a run folder is kept safe
    against SIGKILL (checkpoints are written whole, then renamed), so against this too."""
    import atexit
    import os

    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or debugger writes its results after the program returns
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (mcrisk ... | head)
            pass
    os._exit(code)


# Commands that simulate, and so start the accelerator (cli.main starts it early for them), and
# those that run the engine's programs, for which main switches on JAX's float64 first.
SIMULATING = ("run", "claims", "sweep", "greeks")
ENGINE = (*SIMULATING, "merge")


def _start_backend_early(argv: list[str]) -> None:
    """Start JAX's backend in a thread while the command imports the engine and reads its study.

    On a GPU host the start (the driver, the CUDA libraries, the device memory pool) takes
    seconds, and it runs outside the interpreter lock, so the imports, the study's validation and
    the run folder's checks go on beside it. JAX reserves the pool (75% of the card's memory) on
    the first array, not when the backend starts, so the thread makes one: on an H200 the
    reservation took 1.2-2.8 s, which the run's first arrays had waited for. Only for commands
    that simulate (others never touch the device), and never under `--shard auto`, whose
    jax.distributed must be set up before the backend starts. A start that fails fails again,
    with its message, where the run needs it."""
    import os
    import threading

    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in SIMULATING or "auto" in argv or "--shard=auto" in argv:
        return
    if any(os.environ.get(k) for k in COORDINATOR_ENV):  # set for --shard auto's jax.distributed
        return

    def start() -> None:
        import jax

        try:
            jax.devices()
            if jax.default_backend() != "cpu":  # the device's memory pool is reserved on its first array
                import numpy as np

                jax.device_put(np.zeros((), np.float32)).block_until_ready()
        except Exception:  # reported by the run itself
            pass

    threading.Thread(target=start, name="mcrisk-backend", daemon=True).start()


def _needs_engine(argv: list[str]) -> bool:
    """Whether the command line runs a command that simulates or merges (`mcrisk --help`,
    `mcrisk COMMAND --help`, `--version` and the commands that only read files never import JAX)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in ENGINE and not any(a in ("--help", "--version") for a in argv)


def main() -> None:
    argv = sys.argv[1:]
    if _needs_engine(argv):
        from mcrisk._x64 import enable_float64

        enable_float64()
        _compilation_cache()
        _start_backend_early(argv)
    # SIGTERM (a batch scheduler's stop) ends a run like Ctrl-C: the partial folder stays for --resume.
    interrupt.install()
    try:
        app()
        code = 0
    except KeyboardInterrupt:  # outside a command (typer makes one inside a command exit 130)
        err_console.print("interrupted")
        code = interrupt.exit_code()
    except SystemExit as exc:  # how typer ends every command
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    _leave(code)


if __name__ == "__main__":
    main()
