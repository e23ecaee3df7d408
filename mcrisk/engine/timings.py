"""Where a run's time went, by stage: the manifest's ``seconds``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass
class Timings:
    """Seconds spent per stage of a run. The compiled stages book their calls by stage name
    (``times[stage] += seconds``, as :class:`mcrisk.engine.programs.Stage` does); `stress` and
    `analyze` stay None for a run that had none."""

    plan: float = 0.0
    compile: float = 0.0
    sample: float = 0.0
    simulate: float = 0.0
    summarize: float = 0.0
    transfer: float = 0.0
    write: float = 0.0
    stress: float | None = None
    analyze: float | None = None

    def __getitem__(self, stage: str) -> float:
        if stage not in _NAMES:
            raise KeyError(stage)
        return getattr(self, stage) or 0.0

    def __setitem__(self, stage: str, seconds: float) -> None:
        if stage not in _NAMES:
            raise KeyError(stage)
        setattr(self, stage, seconds)

    def seconds(self) -> dict[str, float]:
        """The stages that ran, in order, as the manifest records them (before rounding)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def summed(cls, records: list[Mapping[str, float]]) -> Timings:
        """The stage times of several runs (the manifests' ``seconds`` of a run's shards), added up;
        the stages of the first record only, without its total."""
        out = cls()
        for name in records[0] if records else ():
            if name in _NAMES:
                out[name] = sum(r.get(name, 0.0) for r in records)
        return out


_NAMES = frozenset(f.name for f in fields(Timings))
