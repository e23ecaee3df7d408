"""mcrisk: Monte Carlo risk for the economics of AI inference at datacenter scale.

Importing mcrisk changes no setting of JAX. The engine needs JAX's float64 support
(``jax_enable_x64``): `run_study`, `merge_runs` and the ``mcrisk`` command switch it on for
the process (`enable_float64`); code that calls the engine's stages itself calls
`enable_float64()` first. Paths still run in the study's precision (float32 by default), and
running sums of money are float64.
"""

from mcrisk.errors import Problem, RunFolderError, RunInterrupted, StudyError

# The rest of the API is imported on first use (PEP 562): `import mcrisk.cli.app` then costs JAX and
# little else, and the command can start the accelerator while it imports the engine (cli.main).
_LAZY = {
    "enable_float64": "_x64",
    "merge_runs": "workflows.merge",
    "METRICS": "model.metrics",
    "RunResult": "workflows.run",
    "run_study": "workflows.run",
    "Study": "study.schema",
    "default_study_path": "study.schema",
    "load_study": "study.schema",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


try:
    from importlib.metadata import version as _version

    __version__ = _version("mcrisk")
except Exception:  # not installed (e.g. run from a source tree)
    __version__ = "0+unknown"

__all__ = [
    "METRICS",
    "Problem",
    "RunFolderError",
    "RunInterrupted",
    "RunResult",
    "Study",
    "StudyError",
    "default_study_path",
    "enable_float64",
    "load_study",
    "merge_runs",
    "run_study",
    "__version__",
]
