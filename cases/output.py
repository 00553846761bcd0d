"""Result folders: written atomically (a half-written run never looks complete), by rank 0."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mpi4py import MPI

__all__ = ["atomic_result_dir", "clean_json", "incomplete_path", "write_json"]


def clean_json(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, inf/nan to None (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(clean_json(data), indent=2, sort_keys=False) + "\n")


def incomplete_path(final: Path) -> Path:
    """Where ``atomic_result_dir(final, keep_partial=True)`` keeps an unfinished run."""
    return final.with_name(final.name + ".incomplete")


@contextmanager
def atomic_result_dir(final: Path, comm: MPI.Comm, *, keep_partial: bool = False
                      ) -> Iterator[Path]:
    """Yield a staging folder next to ``final``; on success it replaces ``final`` in one
    rename. On failure it is removed, or, with ``keep_partial`` and once the study has written
    a ``summary.json`` of what it finished, renamed to ``<final>.incomplete`` (replacing an
    older one), a name that never looks like a finished run. Collective: every rank gets the
    same path."""
    staging = None
    if comm.rank == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent)
    path = Path(comm.bcast(staging, root=0))
    ok = False
    try:
        yield path
        ok = True
    finally:
        oks = comm.allgather(ok)
        if comm.rank == 0:
            if all(oks):
                if final.exists():
                    shutil.rmtree(final)
                path.rename(final)
            elif keep_partial and (path / "summary.json").is_file():
                kept = incomplete_path(final)
                if kept.exists():
                    shutil.rmtree(kept)
                path.rename(kept)
            else:
                shutil.rmtree(path, ignore_errors=True)
        comm.barrier()
