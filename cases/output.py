"""Result folders: written atomically (a half-written run never looks complete), by rank 0."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mpi4py import MPI

__all__ = ["MARKER", "abandon_staging_folders", "atomic_result_dir", "capacity_text",
           "cathodefem_version",
           "check_result_folder", "clean_json", "incomplete_path", "previous_run", "provenance",
           "refuse_uncovered",
           "write_json"]

#: file that marks a folder as written by cathodefem: only such a folder (or an empty one) is
#: ever replaced by a new run
MARKER = ".cathodefem-result"


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


#: the command line recorded in provenance.json (set by ``cathodefem``; default sys.argv)
command_line: list[str] | None = None


def _git_commit() -> str | None:
    """The commit of a source checkout (``+dirty`` with uncommitted changes); None for an
    installed copy or without git."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def cathodefem_version() -> str | None:
    """The installed package's version (None when run from a source tree not installed)."""
    from importlib import metadata

    try:
        return metadata.version("cathodefem")
    except metadata.PackageNotFoundError:
        return None


def provenance(comm: MPI.Comm) -> dict[str, Any]:
    """What produced a result: versions of cathodefem and of the stack, the source commit,
    the command line, the number of ranks and the start time (UTC)."""
    import datetime
    import platform

    import dolfinx
    import gmsh
    from petsc4py import PETSc

    return {"cathodefem_version": cathodefem_version(), "git_commit": _git_commit(),
            "command_line": list(command_line if command_line is not None else sys.argv),
            "mpi_ranks": comm.size, "python": platform.python_version(),
            "dolfinx": dolfinx.__version__,
            "petsc": ".".join(str(v) for v in PETSc.Sys.getVersion()),
            "gmsh": gmsh.__version__, "host": platform.node(),
            "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def check_result_folder(final: Path) -> None:
    """Raise a one-line ``ValueError`` unless ``final`` can become a result folder: it does
    not exist, or it is an empty folder or one cathodefem wrote (it holds :data:`MARKER`),
    and it does not hold the working directory; its parent can be created and written.
    A run replaces its result folder as a whole, so anything else there would be lost."""
    where = f"--out {str(final)!r}"
    try:
        resolved = final.resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{where}: not a usable path ({e})") from None
    if resolved == cwd or resolved in cwd.parents or resolved.parent == resolved:
        raise ValueError(f"{where}: is the working directory, one above it or the root; the "
                         f"run replaces its result folder as a whole, choose a new folder")
    if final.exists() or final.is_symlink():
        if not final.is_dir() or final.is_symlink():
            raise ValueError(f"{where}: exists and is not a folder; choose another --out")
        try:
            entries = [e.name for e in os.scandir(final)]
        except OSError as e:
            raise ValueError(f"{where}: cannot be read ({e.strerror})") from None
        if entries and MARKER not in entries:
            raise ValueError(f"{where}: exists and holds files that cathodefem did not write "
                             f"(no {MARKER}); the run would replace it: choose another --out "
                             f"or remove the folder")
    parent = resolved.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{where}: cannot create {str(parent)!r} ({e.strerror})") from None
    try:  # what the run will do there first
        Path(tempfile.mkdtemp(prefix=f".{final.name}.check-", dir=parent)).rmdir()
    except OSError as e:
        raise ValueError(f"{where}: cannot write in {str(parent)!r} ({e.strerror})") from None


@contextmanager
def atomic_result_dir(final: Path, comm: MPI.Comm, *, keep_partial: bool = False
                      ) -> Iterator[Path]:
    """Yield a staging folder next to ``final``; on success it replaces ``final`` in one
    rename. On failure it is removed, or, with ``keep_partial`` and once the study has written
    a ``summary.json`` of what it finished, renamed to ``<final>.incomplete`` (replacing an
    older one), a name that never looks like a finished run. Collective: every rank gets the
    same path."""
    staging: str | None = None
    error = None
    if comm.rank == 0:
        try:
            check_result_folder(final)
            staging = tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent)
            (Path(staging) / MARKER).write_text("written by cathodefem\n")
            write_json(Path(staging) / "provenance.json", provenance(comm))
        except ValueError as e:
            error = str(e)
        except OSError as e:
            error = f"--out {str(final)!r}: cannot write there ({e.strerror})"
    staging, error = comm.bcast((staging, error), root=0)
    if error is not None:
        raise ValueError(error)
    path = Path(staging)
    ok = False
    if comm.rank == 0:
        _staging.append((path, final, keep_partial))
    try:
        yield path
        ok = True
    finally:
        oks = comm.allgather(ok)
        if comm.rank == 0:
            _staging.remove((path, final, keep_partial))
            if all(oks):
                ours = not final.exists() or (final / MARKER).exists() or (
                    final.is_dir() and not any(final.iterdir()))
                if ours:
                    if final.exists():
                        shutil.rmtree(final)
                    path.rename(final)
                else:  # something else was put there during the run: leave both
                    print(f"cathodefem: {final} was filled by something else during the run; "
                          f"the results stay in {path}", file=sys.stderr)
            else:
                _abandon(path, final, keep_partial)
        comm.barrier()


#: the staging folders of the runs in progress on this rank (rank 0), innermost last
_staging: list[tuple[Path, Path, bool]] = []


def _abandon(path: Path, final: Path, keep_partial: bool) -> Path | None:
    """A failed run's staging folder: kept as ``<final>.incomplete`` where ``keep_partial``
    and it holds a summary of what finished (returned), removed otherwise."""
    if keep_partial and (path / "summary.json").is_file():
        kept = incomplete_path(final)
        if kept.exists() and (kept / MARKER).exists():
            shutil.rmtree(kept)
        elif kept.exists():  # not ours: leave it, keep the staging folder's name
            kept = path
        path.rename(kept)
        return kept
    shutil.rmtree(path, ignore_errors=True)
    return None


def abandon_staging_folders() -> Path | None:
    """For a process about to end at once (an interrupt it cannot wait out): treat every
    run in progress as failed, innermost first; returns the outermost folder kept as
    ``.incomplete``, if any. Not collective (rank 0 holds the folders)."""
    kept = None
    while _staging:
        path, final, keep_partial = _staging.pop()
        kept = _abandon(path, final, keep_partial)
    return kept


def previous_run(folder: Path | None, case: Any, comm: MPI.Comm) -> dict[str, Any] | None:
    """The summary.json of the interrupted run kept in ``folder`` (``<out>.incomplete``),
    for ``--resume``; a one-line ValueError where it cannot be read or was a run of another
    case (naming the first key that differs). Keys the stored case lacks (written by a
    version before them) count as their defaults; where a new key's default changes what a
    run computes, the command checks that itself (``cases.cycling._check_same_box_mesh``).
    None without a folder. Collective."""
    if folder is None:
        return None
    from meshes.spec import SpecError, first_difference, load_case, spec_to_dict

    data, error = None, None
    if comm.rank == 0:
        path = folder / "summary.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            error = (f"--resume: cannot read {path} ({e}); remove {folder} and run without "
                     f"--resume to start afresh")
        else:
            stored = data.get("case") if isinstance(data, dict) else None
            if isinstance(stored, dict):
                try:  # the stored case with the defaults of keys added since
                    stored = clean_json(spec_to_dict(load_case(stored)))
                except (SpecError, ValueError, TypeError, KeyError, AttributeError):
                    pass  # compared as it is (and found to differ)
            differs = first_difference(stored, clean_json(spec_to_dict(case)))
            if differs is not None:
                error = (f"--resume: {folder} holds a run of another case ({differs} differs); "
                         f"resume with the case and --set values of the interrupted run, or "
                         f"remove that folder and run without --resume to start afresh")
    data, error = comm.bcast((data, error), root=0)
    if error is not None:
        raise ValueError(error)
    return data  # type: ignore[no-any-return]


def refuse_uncovered(folder: Path | None, left: Sequence[str]) -> None:
    """A resume must carry over everything the interrupted run finished: its folder is
    replaced by the new run's (or removed when that completes)."""
    if left:
        more = f" and {len(left) - 3} more" if len(left) > 3 else ""
        raise ValueError(f"--resume: {folder} also holds {', '.join(left[:3])}{more}, which "
                         f"this run would not carry over; resume with the cathodes, rates, "
                         f"seeds and depths of the interrupted run (or move the folder away "
                         f"to keep it, and start afresh)")


def capacity_text(q: float) -> str:
    """mAh/g with one decimal; a capacity below 1 but above 0 (a stalled run) with two
    significant digits, so that it does not read as 0.0."""
    return f"{q:.2g}" if 0.0 < abs(q) < 1.0 else f"{q:.1f}"
