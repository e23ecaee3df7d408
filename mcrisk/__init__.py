"""mcrisk: Monte Carlo risk for the economics of AI inference at datacenter scale.

Importing mcrisk switches on JAX's float64 support (``jax_enable_x64``): paths still run in
the study's precision (float32 by default), and running sums of money are float64.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from .errors import Problem, RunFolderError, RunInterrupted, StudyError  # noqa: E402
from .merge import merge_runs  # noqa: E402
from .metrics import METRICS  # noqa: E402
from .run import RunResult, run_study  # noqa: E402
from .study import Study, default_study_path, load_study  # noqa: E402

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
