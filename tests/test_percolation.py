"""Tests for fem.percolation: facet-connected components against an independent grid reference.

The meshes are dolfinx unit squares/cubes of n^d grid squares/cubes, each split into simplices
(or kept as quads). A phase pattern is defined per grid square, so the expected components are
those of the grid with face (4- / 6-) connectivity, which scipy.ndimage.label computes without
any mesh: cells that only touch at a vertex or an edge must stay apart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# mpi4py loads libmpi; the dolfinx extension modules need it already loaded.
from mpi4py import MPI  # isort: split

import numpy as np
import numpy.typing as npt
import pytest
from dolfinx.mesh import (
    CellType,
    GhostMode,
    Mesh,
    compute_midpoints,
    create_unit_cube,
    create_unit_square,
    locate_entities_boundary,
)
from scipy import ndimage

from fem.percolation import (
    Components,
    cell_components,
    component_measures,
    components_touching,
)

REPO = Path(__file__).resolve().parents[1]
CONDUCTORS = (1, 2, 5, 7)


def _square_mesh(n: int, cell_type: CellType = CellType.triangle) -> Mesh:
    return create_unit_square(MPI.COMM_WORLD, n, n, cell_type, ghost_mode=GhostMode.shared_facet)


def _cube_mesh(n: int) -> Mesh:
    return create_unit_cube(
        MPI.COMM_WORLD, n, n, n, CellType.tetrahedron, ghost_mode=GhostMode.shared_facet
    )


def _grid_index(msh: Mesh, n: int) -> tuple[npt.NDArray[np.int64], ...]:
    """Grid square/cube (i, j[, k]) that contains each local cell, from its midpoint."""
    tdim = msh.topology.dim
    imap = msh.topology.index_map(tdim)
    cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
    mid = compute_midpoints(msh, tdim, cells)[:, :tdim]
    ijk = np.clip(np.floor(mid * n).astype(np.int64), 0, n - 1)
    return tuple(ijk[:, d] for d in range(tdim))


def _reference(in_set: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], int]:
    """Face-connected grid components (ids 1..num, 0 outside) by scipy.ndimage."""
    labels, num = ndimage.label(in_set)  # default structure = face neighbours only
    return labels.astype(np.int64), int(num)


def _check_against_grid(
    msh: Mesh, grid_phase: npt.NDArray[np.int64], phases: tuple[int, ...]
) -> tuple[Components, dict[int, int]]:
    """Run cell_components on the mesh and compare it with the grid reference.

    Returns the components and the map (our id -> reference id), which the test checks is a
    bijection, so that callers can translate reference facts into our numbering.
    """
    n = grid_phase.shape[0]
    index = _grid_index(msh, n)
    cell_phase = grid_phase[index]
    comps = cell_components(msh, cell_phase, phases)
    ref_labels, ref_num = _reference(np.isin(grid_phase, phases))
    ref_cell = ref_labels[index]

    assert comps.labels.dtype == np.int64
    assert comps.num_components == ref_num
    np.testing.assert_array_equal(comps.labels >= 0, ref_cell > 0)

    pairs = np.unique(np.column_stack([comps.labels, ref_cell])[ref_cell > 0], axis=0)
    # One pair per component, and each side used once: the two partitions coincide.
    assert pairs.shape[0] == ref_num
    assert np.unique(pairs[:, 0]).size == ref_num
    assert np.unique(pairs[:, 1]).size == ref_num
    assert set(pairs[:, 0].tolist()) == set(range(ref_num))
    ours_to_ref = {int(a): int(b) for a, b in pairs}

    measures = component_measures(msh, comps)
    ref_area = np.bincount(ref_labels.ravel(), minlength=ref_num + 1) / grid_phase.size
    expected = np.array([ref_area[ours_to_ref[c]] for c in range(ref_num)])
    np.testing.assert_allclose(measures, expected, rtol=1e-12, atol=1e-14)

    # Canonical numbering: ids follow the smallest original cell index of each component.
    original = np.asarray(msh.topology.original_cell_index)
    first = np.full(ref_num, np.iinfo(np.int64).max)
    hit = comps.labels >= 0
    np.minimum.at(first, comps.labels[hit], original[hit])
    assert np.all(np.diff(first) > 0)
    return comps, ours_to_ref


def _stripes(n: int) -> npt.NDArray[np.int64]:
    """Horizontal conductor stripes two squares thick, separated by two electrolyte rows."""
    rows = np.where((np.arange(n) // 2) % 2 == 0, 1, 3)
    return np.tile(rows, (n, 1))  # grid[i, j]: i along x, j along y


def _checkerboard(n: int) -> npt.NDArray[np.int64]:
    i, j = np.indices((n, n))
    return np.where((i + j) % 2 == 0, 2, 3)


def _serpentine(n: int) -> npt.NDArray[np.int64]:
    """One conductor path sweeping the square row by row, joined alternately at the ends."""
    grid = np.full((n, n), 3)
    grid[:, 0::2] = 5
    for j in range(1, n, 2):
        grid[n - 1 if (j // 2) % 2 == 0 else 0, j] = 5
    return grid


def _random_phases(n: int, dim: int, seed: int) -> npt.NDArray[np.int64]:
    return np.random.default_rng(seed).integers(1, 8, size=(n,) * dim)


def _boundary_facets(msh: Mesh, axis: int, value: float) -> npt.NDArray[np.int32]:
    tdim = msh.topology.dim
    return locate_entities_boundary(msh, tdim - 1, lambda x: np.isclose(x[axis], value))


def test_stripes_three_components_all_spanning() -> None:
    n = 12
    msh = _square_mesh(n)
    comps, _ = _check_against_grid(msh, _stripes(n), CONDUCTORS)
    assert comps.num_components == 3
    np.testing.assert_allclose(component_measures(msh, comps), np.full(3, 2 / n))
    left = components_touching(msh, comps, _boundary_facets(msh, 0, 0.0))
    right = components_touching(msh, comps, _boundary_facets(msh, 0, 1.0))
    bottom = components_touching(msh, comps, _boundary_facets(msh, 1, 0.0))
    np.testing.assert_array_equal(left, [0, 1, 2])
    np.testing.assert_array_equal(right, [0, 1, 2])
    assert bottom.size == 1  # only the first stripe lies on y = 0


def test_checkerboard_vertex_contacts_do_not_connect() -> None:
    n = 8
    msh = _square_mesh(n)
    comps, _ = _check_against_grid(msh, _checkerboard(n), (2,))
    assert comps.num_components == n * n // 2
    np.testing.assert_allclose(component_measures(msh, comps), 1 / n**2)


def test_serpentine_is_one_component_and_gaps_are_separate() -> None:
    n = 16
    grid = _serpentine(n)
    msh = _square_mesh(n)
    path, _ = _check_against_grid(msh, grid, (5,))
    assert path.num_components == 1
    np.testing.assert_allclose(component_measures(msh, path), [np.count_nonzero(grid == 5) / n**2])
    gaps, _ = _check_against_grid(msh, grid, (3,))
    assert gaps.num_components == n // 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_multiphase_pattern_2d(seed: int) -> None:
    n = 20
    grid = _random_phases(n, 2, seed)
    msh = _square_mesh(n)
    comps, ours_to_ref = _check_against_grid(msh, grid, CONDUCTORS)
    assert comps.num_components > 5  # the pattern is not trivially connected

    ref_labels, _ = _reference(np.isin(grid, CONDUCTORS))
    for axis in (0, 1):
        lo = components_touching(msh, comps, _boundary_facets(msh, axis, 0.0))
        hi = components_touching(msh, comps, _boundary_facets(msh, axis, 1.0))
        ref_lo = set(np.take(ref_labels, 0, axis=axis).tolist()) - {0}
        ref_hi = set(np.take(ref_labels, n - 1, axis=axis).tolist()) - {0}
        assert {ours_to_ref[c] for c in lo.tolist()} == ref_lo
        assert {ours_to_ref[c] for c in hi.tolist()} == ref_hi
        assert np.all(np.diff(lo) > 0)


def test_quadrilaterals_use_form_volumes() -> None:
    n = 10
    msh = _square_mesh(n, CellType.quadrilateral)
    _check_against_grid(msh, _random_phases(n, 2, 7), CONDUCTORS)


def test_tetrahedra_random_pattern_3d() -> None:
    n = 6
    grid = _random_phases(n, 3, 3)
    msh = _cube_mesh(n)
    comps, ours_to_ref = _check_against_grid(msh, grid, CONDUCTORS)
    ref_labels, _ = _reference(np.isin(grid, CONDUCTORS))
    front = components_touching(msh, comps, _boundary_facets(msh, 2, 0.0))
    back = components_touching(msh, comps, _boundary_facets(msh, 2, 1.0))
    assert {ours_to_ref[c] for c in front.tolist()} == set(ref_labels[:, :, 0].ravel()) - {0}
    assert {ours_to_ref[c] for c in back.tolist()} == set(ref_labels[:, :, -1].ravel()) - {0}


def test_tetrahedra_edge_and_vertex_contacts_do_not_connect() -> None:
    n = 3
    grid = np.full((n, n, n), 3)
    grid[0, 0, 0] = grid[1, 1, 0] = 1  # cubes sharing one edge
    grid[2, 2, 1] = 1  # touches (1, 1, 0) at one vertex only
    grid[2, 0, 2] = grid[2, 1, 2] = 1  # two cubes sharing a face
    msh = _cube_mesh(n)
    comps, _ = _check_against_grid(msh, grid, (1,))
    assert comps.num_components == 4
    np.testing.assert_allclose(np.sort(component_measures(msh, comps)), [1, 1, 1, 2] / np.array(27))


def test_empty_set_and_empty_facets() -> None:
    msh = _square_mesh(4)
    phase = np.full(msh.topology.index_map(2).size_local + msh.topology.index_map(2).num_ghosts, 3)
    comps = cell_components(msh, phase, (1,))
    assert comps.num_components == 0
    assert np.all(comps.labels == -1)
    assert component_measures(msh, comps).shape == (0,)
    assert components_touching(msh, comps, np.array([], dtype=np.int32)).size == 0


def test_rejects_short_phase_array() -> None:
    msh = _square_mesh(4)
    with pytest.raises(ValueError, match="one tag per local cell"):
        cell_components(msh, np.ones(3, dtype=np.int32), (1,))


# Runs under 1..N ranks and prints, on rank 0, results keyed by original cell index so that
# runs on different partitions can be compared entry by entry.
_MPI_SCRIPT = """
import json
from mpi4py import MPI  # isort: split
import numpy as np
import dolfinx.la
from dolfinx.mesh import (CellType, GhostMode, compute_midpoints, create_unit_cube,
                          create_unit_square, locate_entities_boundary)
from fem.percolation import cell_components, component_measures, components_touching

comm = MPI.COMM_WORLD
out = {}
# The cube uses a sparser set: 4 of 7 phases percolate completely in 3D.
for name, n, phases in (("square", 24, (1, 2, 5, 7)), ("cube", 6, (1, 2))):
    if name == "square":
        msh = create_unit_square(comm, n, n, CellType.triangle,
                                 ghost_mode=GhostMode.shared_facet)
    else:
        msh = create_unit_cube(comm, n, n, n, CellType.tetrahedron,
                               ghost_mode=GhostMode.shared_facet)
    tdim = msh.topology.dim
    imap = msh.topology.index_map(tdim)
    owned, local = imap.size_local, imap.size_local + imap.num_ghosts
    grid = np.random.default_rng(11).integers(1, 8, size=(n,) * tdim)
    mid = compute_midpoints(msh, tdim, np.arange(local, dtype=np.int32))[:, :tdim]
    ijk = np.clip(np.floor(mid * n).astype(np.int64), 0, n - 1)
    phase = grid[tuple(ijk.T)]
    phase[owned:] = 0  # ghost tags must be taken from the owning rank, not from here
    comps = cell_components(msh, phase, phases)
    measures = component_measures(msh, comps)
    left = locate_entities_boundary(msh, tdim - 1, lambda x: np.isclose(x[0], 0.0))
    right = locate_entities_boundary(msh, tdim - 1, lambda x: np.isclose(x[0], 1.0))
    touch_l = components_touching(msh, comps, left)
    touch_r = components_touching(msh, comps, right)

    vec = dolfinx.la.vector(imap, dtype=np.int64)
    vec.array[:owned] = comps.labels[:owned]
    vec.scatter_forward()
    ghosts_ok = bool(np.array_equal(vec.array[owned:local], comps.labels[owned:local]))
    mine = (comps.num_components, touch_l.tolist(), touch_r.tolist(), measures.round(12).tolist())
    agree = all(m == mine for m in comm.allgather(mine))

    orig = np.asarray(msh.topology.original_cell_index[:owned])
    pieces = comm.gather((orig, comps.labels[:owned]), root=0)
    if comm.rank == 0:
        o = np.concatenate([p[0] for p in pieces])
        lab = np.concatenate([p[1] for p in pieces])
        out[name] = {
            "labels": lab[np.argsort(o)].tolist(),
            "num_components": comps.num_components,
            "measures": measures.tolist(),
            "left": touch_l.tolist(),
            "right": touch_r.tolist(),
        }
    out[name + "_consistent"] = comm.allreduce(ghosts_ok and agree, op=MPI.LAND)
if comm.rank == 0:
    print("RESULT " + json.dumps(out))
"""


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _run_script(script: Path, ranks: int) -> dict[str, object]:
    launcher = _mpiexec()
    if launcher is None:
        pytest.fail("mpiexec not found next to the interpreter or on PATH")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [launcher, "-n", str(ranks), sys.executable, str(script)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result: dict[str, object] = json.loads(line.removeprefix("RESULT "))
    return result


@pytest.mark.mpi
def test_parallel_matches_serial(tmp_path: Path) -> None:
    script = tmp_path / "percolation_mpi.py"
    script.write_text(_MPI_SCRIPT)
    serial = _run_script(script, 1)
    for ranks in (2, 3):
        parallel = _run_script(script, ranks)
        for name in ("square", "cube"):
            assert parallel[f"{name}_consistent"] is True
            ser, par = serial[name], parallel[name]
            assert isinstance(ser, dict) and isinstance(par, dict)
            assert ser["num_components"] > 3
            assert par["num_components"] == ser["num_components"]
            assert par["labels"] == ser["labels"]
            assert par["left"] == ser["left"]
            assert par["right"] == ser["right"]
            np.testing.assert_allclose(par["measures"], ser["measures"], rtol=1e-12)
