"""Progress of a long pass over the scenarios as log lines, for batch jobs (Slurm, nohup, CI).

The library logs on the logger ``mcrisk`` at INFO and installs no handler (a NullHandler only):
the ``mcrisk`` command shows the lines on stderr when stderr is not a terminal (a terminal gets
the progress bar), and a program sees them once it configures logging, e.g.
``logging.basicConfig(level=logging.INFO)``. A pass logs where it starts (0%, or where a resumed
run continues), then at most once every `interval` seconds (``MCRISK_LOG_INTERVAL``, default
10) as chunks finish, and where it ends (100%): the share done, scenarios done of the total,
scenarios per second and the time left (ETA).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable

LOG = logging.getLogger("mcrisk")
INTERVAL_ENV = "MCRISK_LOG_INTERVAL"
DEFAULT_INTERVAL = 10.0


def log_interval() -> float:
    """Seconds between progress lines: MCRISK_LOG_INTERVAL, else 10 (with a warning naming the
    variable where it is not a number of seconds > 0: a run is not refused over its logging)."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        warnings.warn(
            f"{INTERVAL_ENV} must be a number of seconds > 0, got {text!r}: progress is logged every "
            f"{DEFAULT_INTERVAL:g} s",
            RuntimeWarning,
            stacklevel=2,
        )
        return DEFAULT_INTERVAL
    return value


def duration(seconds: float) -> str:
    """A duration as 45 s, 12 min 5 s or 3 h 20 min."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class ProgressLog:
    """The progress lines of one pass called `what` ("simulating 'study'", "gradients"): call
    :meth:`start` where it starts, then the instance with (done, total) after each chunk.

    The rate counts from the first chunk that finished (the time before it is mostly spent
    compiling). `clock` and `interval` are for tests."""

    def __init__(
        self,
        what: str,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = LOG,
    ):
        self.what, self.clock, self.logger = what, clock, logger
        self.interval = log_interval() if interval is None else interval
        self.t0 = self.last = self.t_first = math.nan
        self.done0 = self.done_first = 0

    def start(self, done: int, total: int) -> None:
        self.t0 = self.last = self.clock()
        self.done0 = done
        self.t_first = math.nan
        if self.logger.isEnabledFor(logging.INFO):
            where = "starting" if done == 0 else "resuming"
            self.logger.info("%s: %s, %s", self.what, where, self._count(done, total))

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if math.isnan(self.t0):
            self.start(0, total)
        if math.isnan(self.t_first):
            self.t_first, self.done_first = now, done
        finished = done >= total
        if not self.logger.isEnabledFor(logging.INFO) or (not finished and now - self.last < self.interval):
            return
        self.last = now
        rate = self.rate(done, now)
        if finished:
            if not math.isfinite(rate) and now > self.t0:  # one chunk: its time is all there is
                rate = (done - self.done0) / (now - self.t0)
            speed = f", {rate:,.0f} scenarios/s" if math.isfinite(rate) else ""
            self.logger.info("%s: %s in %s%s", self.what, self._count(done, total), duration(now - self.t0), speed)
        elif math.isfinite(rate) and rate > 0:
            eta = duration((total - done) / rate)
            self.logger.info("%s: %s, %s scenarios/s, ETA %s", self.what, self._count(done, total), f"{rate:,.0f}", eta)
        else:  # the first chunk: its time is mostly compiling, no measure of the rate
            self.logger.info(
                "%s: %s, first chunk after %s", self.what, self._count(done, total), duration(now - self.t0)
            )

    def rate(self, done: int, now: float) -> float:
        """Scenarios per second since the first chunk finished (the time before it is mostly spent
        compiling); NaN until a second one has."""
        if now > self.t_first and done > self.done_first:
            return (done - self.done_first) / (now - self.t_first)
        return math.nan

    @staticmethod
    def _count(done: int, total: int) -> str:
        share = done / total if total else 1.0
        return f"{math.floor(share * 100):.0f}% ({done:,}/{total:,} scenarios)"
