"""Checkpoints: a run's host-side summaries at a chunk boundary, as an .npz archive and the JSON
that names it (written last, so that a checkpoint is complete or absent)."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mcrisk.io import atomic
from mcrisk.io.folder import CHECKPOINT_DIR
from mcrisk.io.jsonfiles import write_json
from mcrisk.io.readers import damaged, field_problems, read_json, reading


def save_checkpoint(folder: Path, meta: dict, arrays: Mapping[str, np.ndarray], name: str = CHECKPOINT_DIR) -> None:
    """Arrays first, then the JSON that names them: a checkpoint is complete or absent."""
    d = folder / name
    d.mkdir(exist_ok=True)
    name = f"state-{meta['next_chunk']:06d}.npz"
    with atomic.atomic_path(d / name) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    write_json(d / "checkpoint.json", dict(meta, arrays=name))
    for old in d.glob("state-*.npz"):
        if old.name != name:
            old.unlink()


def load_checkpoint(folder: Path, name: str = CHECKPOINT_DIR) -> tuple[dict, dict[str, np.ndarray]]:
    """A checkpoint's JSON and arrays; RunFolderError naming the file (in `folder`) that is damaged."""
    d = folder / name
    meta = read_json(d / "checkpoint.json", folder)
    problems = field_problems(meta, ("arrays", "next_chunk"), {"arrays": str, "next_chunk": int})
    if problems:
        raise damaged(d / "checkpoint.json", "; ".join(problems), folder)
    path = d / meta["arrays"]
    with reading(path, folder), open(path, "rb") as f:
        if not zipfile.is_zipfile(f):  # (np.load would take it for a pickle)
            raise damaged(path, "not an .npz archive", folder)
        f.seek(0)
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
    return meta, arrays
