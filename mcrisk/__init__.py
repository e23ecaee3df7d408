"""mcrisk: Monte Carlo risk for the economics of AI inference at datacenter scale.

Importing mcrisk changes no setting of JAX. The engine needs JAX's float64 support
(``jax_enable_x64``): `run_study`, `merge_runs` and the ``mcrisk`` command switch it on for
the process (`enable_float64`); code that calls the engine's stages itself calls
`enable_float64()` first. Paths still run in the study's precision (float32 by default), and
running sums of money are float64.
"""

import logging as _logging

from mcrisk.errors import Problem, RunFolderError, RunInterrupted, StudyError

# The library logs (progress of long runs at INFO, on the logger "mcrisk") and leaves the
# output to the application: the mcrisk command installs a handler, a notebook may.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

# The rest of the API is imported on first use (PEP 562): `import mcrisk.cli.app` then imports no
# JAX (`mcrisk --help` stays quick), and a command that simulates can start the accelerator while
# it imports the engine (cli.main); `open_run` reads a run folder without JAX.
_LAZY = {
    "enable_float64": "_x64",
    "merge_runs": "workflows.merge",
    "open_run": "workflows.opened",
    "Run": "workflows.opened",
    "Certainty": "workflows.opened",
    "METRICS": "model.metrics",
    "RunResult": "workflows.run",
    "run_study": "workflows.run",
    "Study": "study.schema",
    "default_study_path": "study.schema",
    "load_study": "study.schema",
}


def __getattr__(name: str):
    if name == "__version__":  # (read on first use: importlib.metadata is slow to import)
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("mcrisk")
        except PackageNotFoundError:  # not installed (e.g. run from a source tree)
            value = "0+unknown"
        globals()[name] = value
        return value
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


__all__ = [
    "Certainty",
    "METRICS",
    "Problem",
    "RunFolderError",
    "Run",
    "RunInterrupted",
    "RunResult",
    "Study",
    "StudyError",
    "default_study_path",
    "enable_float64",
    "load_study",
    "merge_runs",
    "open_run",
    "run_study",
    "__version__",
]
