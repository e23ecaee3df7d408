"""An independent float64 NumPy implementation of the economics model (MODEL.md), written from the contract alone.

It checks the JAX engine row by row and is the plain NumPy baseline of the benchmarks; it imports
nothing from the rest of mcrisk. ``api`` holds the public functions, the other modules their parts:
``inputs`` (keys, defaults), ``market`` (paths, generations), ``flows`` (one system's monthly lines),
``finance`` (tax, debt, payback, DSCR), ``metrics``, ``portfolio`` and ``irr``.
"""

from .api import *  # noqa: F403
from .api import __all__, _payback  # noqa: F401
