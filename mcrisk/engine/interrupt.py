"""Ctrl-C and SIGTERM during a run: a stop request that cannot be lost.

Python raises KeyboardInterrupt wherever the main thread is when the signal arrives. Inside a
garbage-collector callback or a ``__del__`` (JAX runs one at every collection) the exception
is printed as "Exception ignored in ..." and dropped, and the run would go on to the end. So
the CLI's handler also records the request, and the chunk loop checks it before each chunk
(:func:`check`): a stop is honoured within a chunk whatever the signal interrupted. The dropped
exception is not printed (its traceback would read as a crash): it is not lost.
"""

from __future__ import annotations

import signal
import sys
import threading

_REQUESTED = threading.Event()
_SIGNAL = [signal.SIGINT]  # the signal of the last stop request


def _handler(signum, frame) -> None:
    _SIGNAL[0] = signum
    _REQUESTED.set()
    raise KeyboardInterrupt


def exit_code() -> int:
    """The exit status of a run stopped by a signal, as shells report it: 128 + the signal's
    number (130 for Ctrl-C, 143 for SIGTERM, a scheduler's stop)."""
    return 128 + int(_SIGNAL[0])


def install() -> None:
    """Make SIGINT and SIGTERM stop the run (the CLI's ``main`` calls this; a library caller keeps
    its own handlers). SIGINT too where the parent ignores it (a background job, a pytest-xdist
    worker): an ignored SIGINT is inherited, and Python then installs no handler."""
    _REQUESTED.clear()
    _SIGNAL[0] = signal.SIGINT
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    if not getattr(sys.unraisablehook, "_mcrisk", False):
        previous = sys.unraisablehook

        def hook(unraisable) -> None:  # Python's report of an exception it dropped
            if not (
                unraisable.exc_type is not None
                and issubclass(unraisable.exc_type, KeyboardInterrupt)
                and _REQUESTED.is_set()
            ):
                previous(unraisable)

        hook._mcrisk = True  # type: ignore[attr-defined]
        sys.unraisablehook = hook


def requested() -> bool:
    return _REQUESTED.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested, even one whose exception was dropped."""
    if _REQUESTED.is_set():
        raise KeyboardInterrupt


def clear() -> None:
    """The stop was honoured (the run ended as interrupted): forget it."""
    _REQUESTED.clear()
