"""Solver inputs at the edges: zero conductivities, bad windows (found in review)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from fem.conduction import effective_conductivity
from meshes.adapter import TaggedMesh, distribute_section
from tests.meshing_helpers import structured_section


@pytest.fixture(scope="module")
def quarter() -> TaggedMesh:
    """Unit square, phase 1 for x < 0.25, phase 4 elsewhere."""
    s = structured_section(20, 20, 1.0, 1.0, lambda x, z: np.where(x < 0.25, 1, 4))
    return distribute_section(MPI.COMM_WORLD, s if MPI.COMM_WORLD.rank == 0 else None)


def test_zero_conductivity_phase_is_absent(quarter: TaggedMesh) -> None:
    r = effective_conductivity(quarter, {1: 1.0, 4: 0.0}, direction="z")
    assert r.percolates and r.sigma_eff_S_cm == pytest.approx(0.25, rel=1e-12)


def test_all_zero_conductivity_does_not_percolate(quarter: TaggedMesh) -> None:
    r = effective_conductivity(quarter, {1: 0.0}, direction="z")
    assert not r.percolates and r.sigma_eff_S_cm == 0.0


def test_negative_conductivity_rejected(quarter: TaggedMesh) -> None:
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        effective_conductivity(quarter, {1: -1.0}, direction="z")


def test_window_off_mesh_lines_raises(quarter: TaggedMesh) -> None:
    with pytest.raises(ValueError, match="no mesh facet lies on it"):
        effective_conductivity(quarter, {1: 1.0}, direction="z", z_window_um=(0.0, 0.503))
