"""JSON files a run writes (manifests, checkpoints), written atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mcrisk.io import atomic


def write_json(path: Path, obj: Any, *, strict: bool = False) -> None:
    """Write JSON atomically and durably (`mcrisk.io.atomic`). `strict`: a number that is
    not finite is written as null, since JSON has none (Python writes Infinity and NaN, which it
    reads back, but jq and JavaScript refuse): for the manifests users read; a checkpoint, read by
    mcrisk alone, keeps them exactly."""
    text = json.dumps(
        _finite_or_null(obj) if strict else obj, indent=2, sort_keys=False, default=_json_default, allow_nan=not strict
    )
    atomic.write_text(path, text + "\n")


def _finite_or_null(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: _finite_or_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_null(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite_or_null(x.tolist())
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
