"""mcrisk: Monte Carlo risk for the economics of AI inference at datacenter scale.

Importing mcrisk switches on JAX's float64 support (``jax_enable_x64``): paths still run in
the study's precision (float32 by default), and running sums of money are float64.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from mcrisk.errors import Problem, RunFolderError, RunInterrupted, StudyError  # noqa: E402

# The rest of the API is imported on first use (PEP 562): `import mcrisk.cli.app` then costs JAX and
# little else, and the command can start the accelerator while it imports the engine (cli.main).
_LAZY = {
    "merge_runs": "workflows.merge", "METRICS": "model.metrics", "RunResult": "workflows.run",
    "run_study": "workflows.run", "Study": "study.schema", "default_study_path": "study.schema",
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
    "load_study",
    "merge_runs",
    "run_study",
    "__version__",
]
