"""The report an investment committee reads: report.html with its figures, made from a finished run folder."""

import importlib.util

if importlib.util.find_spec("matplotlib") is None:  # an optional dependency since ArviZ 1.x no longer needs it
    raise ModuleNotFoundError(
        "the report draws its figures with matplotlib, which is not installed: pip install 'mcrisk[report]'",
        name="matplotlib",
    )
