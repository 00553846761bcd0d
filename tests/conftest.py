"""Shared fixtures: small cases that run in seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# mpi4py must load libmpi before any dolfinx import.
from mpi4py import MPI  # noqa: F401  # isort: split

REPO = Path(__file__).resolve().parents[1]

#: A small but complete study: thin cathodes (loading scaled with thickness so the volume
#: fractions stay those of the paper) and a narrow section.
SMALL = {
    "name": "small",
    "section": {"width_um": 2.0, "seed": 3, "mesh_size_fine_um": 0.05},
    "gradient": {"thickness_um": 8.0, "loading_mg_cm2": 1.5 * 8 / 34, "lean_zone_um": 1.5,
                 "skin_thickness_um": 0.5},
    "homogeneous": {"loading_mg_cm2": 0.35},
}


def mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found next to the interpreter or on PATH")
    return found


def mpi_results(script: Path, ranks: tuple[int, ...] = (1, 2)) -> list[Any]:
    """Run ``script`` under mpiexec with each rank count; each run must exit 0 and print one
    line ``RESULT <json>`` on rank 0. Returns the decoded results, one per rank count."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO),
                                                        os.environ.get("PYTHONPATH", "")]))
    results = []
    for n in ranks:
        proc = subprocess.run([mpiexec(), "-n", str(n), sys.executable, str(script)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-4000:]
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
    return results


def cathodefem() -> list[str]:
    return [sys.executable, "-m", "cases.cli"]


def run_cli(args: list[str], cwd: Path, *, ranks: int = 1, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
    """``cathodefem *args`` in ``cwd`` (under ``mpiexec -n ranks`` when ranks > 1), with the
    repository on PYTHONPATH; output captured, never raises on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = cathodefem() if ranks == 1 else [mpiexec(), "-n", str(ranks), *cathodefem()]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout, check=False)


@pytest.fixture
def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e
