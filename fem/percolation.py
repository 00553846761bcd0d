"""Parallel connected components (percolation clusters) of phase sets on a distributed mesh.

Two cells belong to the same component when they both carry a phase of the requested set and
share a facet (an edge in 2D, a face in 3D); cells touching only at a vertex (or, in 3D, an
edge) are *not* connected, because no current can cross a zero-measure contact in the FE model.

The computation works on meshes distributed with ``GhostMode.shared_facet``:

1. each rank labels the components of its local cells (owned + ghost) with scipy,
2. the local ids are made globally unique by an exclusive scan over ranks,
3. every ghost cell ties the ghost holder's local component to the owner's one,
4. rank 0 merges these (few) ties and numbers the merged components canonically, by the
   smallest original (input) cell index they contain, so ids do not depend on the partition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import factorial

# mpi4py loads libmpi; the dolfinx extension modules need it already loaded.
from mpi4py import MPI  # isort: split

import dolfinx
import dolfinx.fem
import dolfinx.la
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import ufl
from scipy.sparse.csgraph import connected_components

__all__ = [
    "Components",
    "cell_components",
    "cell_measures",
    "component_measures",
    "components_touching",
    "local_cell_sizes",
    "seam_pairs_count",
]

_SIMPLICES = (
    dolfinx.mesh.CellType.interval,
    dolfinx.mesh.CellType.triangle,
    dolfinx.mesh.CellType.tetrahedron,
)


@dataclass(frozen=True, eq=False)
class Components:
    """Connected components of a phase set, globally numbered.

    Attributes
    ----------
    labels
        int64, shape ``(num_owned + num_ghost,)`` local cells: global component id in
        ``[0, num_components)`` for cells whose phase is in the set, ``-1`` otherwise.
        Ghost cells carry the same id as on their owning rank. Ids are ordered by the
        smallest original (input) cell index of each component, hence independent of the
        number of ranks and of the partition. Read-only.
    num_components
        Global number of components (identical on every rank).
    """

    labels: npt.NDArray[np.int64]
    num_components: int


def _num_local_cells(msh: dolfinx.mesh.Mesh) -> tuple[int, int]:
    """Number of owned cells and of owned + ghost cells on this rank."""
    imap = msh.topology.index_map(msh.topology.dim)
    return imap.size_local, imap.size_local + imap.num_ghosts


def _owner_values(msh: dolfinx.mesh.Mesh, owned: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Extend per-owned-cell integer rows (shape ``(num_owned, k)``) to ghost cells.

    The ghost rows are copied from the owning rank (forward scatter over the cell index map),
    so both ranks that hold a cell see the owner's values.
    """
    imap = msh.topology.index_map(msh.topology.dim)
    num_owned, num_local = _num_local_cells(msh)
    bs = owned.shape[1]
    vec = dolfinx.la.vector(imap, bs=bs, dtype=np.int64)
    vec.array[: num_owned * bs] = owned.reshape(-1)
    vec.scatter_forward()
    return np.asarray(vec.array[: num_local * bs], dtype=np.int64).reshape(num_local, bs)


def _facet_cell_pairs(msh: dolfinx.mesh.Mesh) -> npt.NDArray[np.int32]:
    """Local cell pairs ``(n, 2)`` that share a facet (interior facets of the local mesh)."""
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    offsets = np.asarray(f2c.offsets)
    links = np.asarray(f2c.array)
    start = offsets[:-1][np.diff(offsets) == 2]
    return np.column_stack([links[start], links[start + 1]]).astype(np.int32, copy=False)


def _local_components(
    in_set: npt.NDArray[np.bool_], pairs: npt.NDArray[np.int32]
) -> tuple[int, npt.NDArray[np.int64]]:
    """Components of the cells flagged ``in_set`` linked by ``pairs``.

    Returns the number of local components and a per-cell label (``-1`` outside the set).
    """
    labels = np.full(in_set.shape[0], -1, dtype=np.int64)
    cells = np.flatnonzero(in_set)
    if cells.size == 0:
        return 0, labels
    # Compress to the in-set cells so out-of-set cells do not count as components.
    compact = np.full(in_set.shape[0], -1, dtype=np.int64)
    compact[cells] = np.arange(cells.size)
    keep = in_set[pairs[:, 0]] & in_set[pairs[:, 1]]
    rows = compact[pairs[keep, 0]]
    cols = compact[pairs[keep, 1]]
    graph = sp.coo_matrix(
        (np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(cells.size, cells.size)
    )
    num, comp = connected_components(graph, directed=False)
    labels[cells] = comp
    return int(num), labels


def _merge_on_root(
    comm: MPI.Comm,
    num_local: int,
    offset: int,
    ties: npt.NDArray[np.int64],
    local_min: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], int]:
    """Merge provisional global components on rank 0 and number them canonically.

    Parameters
    ----------
    comm
        Communicator of the mesh.
    num_local, offset
        This rank's provisional ids are ``offset + [0, num_local)``.
    ties
        ``(n, 2)`` provisional ids known to be the same component.
    local_min
        Smallest original cell index of each of this rank's provisional components.

    Returns
    -------
    final
        Canonical id for each of this rank's provisional components.
    num_components
        Global number of merged components.
    """
    all_ties = comm.gather(ties, root=0)
    all_mins = comm.gather(local_min, root=0)
    all_counts = comm.gather((offset, num_local), root=0)
    chunks: list[npt.NDArray[np.int64]] | None = None
    num_components = 0
    if comm.rank == 0:
        assert all_ties is not None and all_mins is not None and all_counts is not None
        edges = np.concatenate([t.reshape(-1, 2) for t in all_ties])
        mins = np.concatenate(all_mins)
        total = mins.size
        graph = sp.coo_matrix(
            (np.ones(edges.shape[0], dtype=np.int8), (edges[:, 0], edges[:, 1])),
            shape=(total, total),
        )
        num_components, merged = connected_components(graph, directed=False)
        comp_min = np.full(num_components, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(comp_min, merged, mins)
        # Rank of each merged component's smallest input cell: a partition-free numbering.
        canonical = np.empty(num_components, dtype=np.int64)
        canonical[np.argsort(comp_min, kind="stable")] = np.arange(num_components)
        final_all = canonical[merged]
        chunks = [final_all[o : o + n] for o, n in all_counts]
    final = comm.scatter(chunks, root=0)
    num_components = comm.bcast(int(num_components), root=0)
    return np.asarray(final, dtype=np.int64), num_components


def _seam_pairs(msh: dolfinx.mesh.Mesh, values: npt.NDArray[np.int64],
                periods: Mapping[int, float]) -> npt.NDArray[np.int64] | None:
    """On rank 0, ``values`` (one per local cell) of the two cells on either side of every
    facet pair matched across the periodic faces x_k = 0 and x_k = L_k (the same facet on
    the torus; matched by midpoints); None on the other ranks. Collective."""
    from fem.periodic import periodic_groups

    tdim = msh.topology.dim
    fdim = tdim - 1
    tol = 1e-6 * max(periods.values())

    def on_faces(x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape[1], dtype=bool)
        for k, length in periods.items():
            out |= (np.abs(x[k]) < tol) | (np.abs(x[k] - length) < tol)
        return out

    facets = dolfinx.mesh.locate_entities_boundary(msh, fdim, on_faces).astype(np.int32)
    cells = _facet_cells(msh, facets)  # one cell per boundary facet
    mid = dolfinx.mesh.compute_midpoints(msh, fdim, facets)
    counts = msh.comm.allgather(len(mid))
    ids = np.arange(len(mid), dtype=np.int64) + int(sum(counts[: msh.comm.rank]))
    slaves, masters = periodic_groups(msh.comm, mid, ids, periods, tol)
    gathered = msh.comm.gather(np.asarray(values)[cells].astype(np.int64), root=0)
    if msh.comm.rank != 0:
        return None
    assert gathered is not None
    every = np.concatenate(gathered)
    return np.column_stack([every[slaves], every[masters]])


def _periodic_ties(msh: dolfinx.mesh.Mesh, provisional: npt.NDArray[np.int64],
                   periods: Mapping[int, float]) -> npt.NDArray[np.int64]:
    """Ties (provisional id pairs) between in-set cells that share a facet across the
    periodic faces of a box mesh; all of them on rank 0 (each tie once), none elsewhere."""
    pairs = _seam_pairs(msh, provisional, periods)
    if pairs is None:
        return np.zeros((0, 2), dtype=np.int64)
    return pairs[np.all(pairs >= 0, axis=1)]


def seam_pairs_count(msh: dolfinx.mesh.Mesh, cell_phase: npt.ArrayLike,
                     periods: Mapping[int, float], a: Sequence[int], b: Sequence[int]) -> int:
    """Number of facet pairs across the periodic faces with a cell of a phase in ``a`` on one
    side and one of ``b`` on the other (e.g. wire against electrolyte: an interface that a
    periodic box has on the torus but not as a mesh facet). Collective."""
    pairs = _seam_pairs(msh, np.asarray(cell_phase, dtype=np.int64), periods)
    count = 0
    if pairs is not None:
        ia, ib = np.isin(pairs, np.asarray(a)), np.isin(pairs, np.asarray(b))
        count = int(np.count_nonzero((ia[:, 0] & ib[:, 1]) | (ib[:, 0] & ia[:, 1])))
    return int(msh.comm.bcast(count, root=0))


def cell_components(
    msh: dolfinx.mesh.Mesh, cell_phase: npt.ArrayLike, phases: Sequence[int],
    periodic: Mapping[int, float] | None = None,
) -> Components:
    """Facet-connected components of the cells whose phase is in ``phases``.

    Parameters
    ----------
    msh
        Distributed mesh, created with ``GhostMode.shared_facet`` when run on several ranks
        (otherwise connections across process boundaries are missed).
    cell_phase
        Integer phase tag (dimensionless, e.g. :class:`meshes.tags.Phase`) of every local
        cell, owned then ghost: length ``num_owned + num_ghost``. Only the owned entries are
        read; ghost cells take the owner's tag.
    phases
        Phase tags forming the conducting set, e.g. the electronic conductors.
    periodic
        Axis -> period length L of a box mesh spanning [0, L] on that axis: cells that share
        a facet across the faces x_k = 0 and x_k = L (the same facet on the torus) are
        connected too.

    Returns
    -------
    Components
        Global, partition-independent component ids per local cell and their number.
    """
    phase = np.asarray(cell_phase).astype(np.int64, copy=False)
    num_owned, num_local = _num_local_cells(msh)
    if phase.ndim != 1 or phase.shape[0] < num_local:
        raise ValueError(
            f"cell_phase needs one tag per local cell ({num_local}), got shape {phase.shape}"
        )
    original = np.asarray(msh.topology.original_cell_index, dtype=np.int64)
    # Ghost phases and input indices come from the owner so both holders of a cell agree.
    owned_rows = np.column_stack([phase[:num_owned], original[:num_owned]])
    rows = _owner_values(msh, owned_rows)
    in_set = np.isin(rows[:, 0], np.asarray(list(phases), dtype=np.int64))

    num_mine, local = _local_components(in_set, _facet_cell_pairs(msh))
    comm = msh.comm
    offset = comm.exscan(num_mine, op=MPI.SUM)
    offset = 0 if comm.rank == 0 or offset is None else int(offset)
    provisional = np.where(local >= 0, local + offset, -1)

    # A ghost cell lies in one component on its owner and in another here: tie them.
    from_owner = _owner_values(msh, provisional[:num_owned, None])[:, 0]
    ghost = np.arange(num_owned, num_local)
    both = (provisional[ghost] >= 0) & (from_owner[ghost] >= 0)
    ties = np.column_stack([provisional[ghost][both], from_owner[ghost][both]])
    if periodic:
        ties = np.concatenate([ties.astype(np.int64).reshape(-1, 2),
                               _periodic_ties(msh, provisional, periodic)])

    local_min = np.full(num_mine, np.iinfo(np.int64).max, dtype=np.int64)
    cells = np.flatnonzero(local >= 0)
    np.minimum.at(local_min, local[cells], rows[cells, 1])

    final, num_components = _merge_on_root(comm, num_mine, offset, ties, local_min)
    labels = np.full(num_local, -1, dtype=np.int64)
    labels[cells] = final[local[cells]]
    labels.setflags(write=False)
    return Components(labels=labels, num_components=num_components)


def _facet_cells(msh: dolfinx.mesh.Mesh, facets: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """All local cells adjacent to the given local facets (with repeats)."""
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    offsets = np.asarray(f2c.offsets)
    links = np.asarray(f2c.array)
    start = offsets[facets]
    count = offsets[facets + 1] - start
    # Position of each link inside its facet's slice, vectorised over all facets.
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return links[np.repeat(start, count) + within]


def components_touching(
    msh: dolfinx.mesh.Mesh, comps: Components, facets: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Global ids of the components with a cell adjacent to any of ``facets``.

    Parameters
    ----------
    msh
        The mesh ``comps`` was computed on.
    comps
        Result of :func:`cell_components`.
    facets
        Local facet indices on this rank (may be empty), e.g. from
        :func:`dolfinx.mesh.locate_entities_boundary`.

    Returns
    -------
    numpy.ndarray
        Sorted unique component ids (int64), identical on every rank.
    """
    local_facets = np.asarray(facets, dtype=np.int32).reshape(-1)
    cells = _facet_cells(msh, local_facets)
    mine = np.unique(comps.labels[cells])
    mine = mine[mine >= 0]
    gathered = msh.comm.allgather(mine)
    return np.unique(np.concatenate([np.asarray(g, dtype=np.int64) for g in gathered]))


def _simplex_volumes(
    msh: dolfinx.mesh.Mesh, cells: npt.NDArray[np.int32]
) -> npt.NDArray[np.float64]:
    """Measure of affine simplices from their vertex coordinates (Gram determinant)."""
    tdim = msh.topology.dim
    nodes = msh.geometry.dofmaps[0][cells, : tdim + 1]
    x = np.asarray(msh.geometry.x, dtype=np.float64)[nodes]
    edges = x[:, 1:, :] - x[:, :1, :]
    # sqrt(det(J J^T)) also covers manifolds (gdim > tdim).
    gram = np.einsum("cik,cjk->cij", edges, edges)
    return np.sqrt(np.clip(np.linalg.det(gram), 0.0, None)) / factorial(tdim)


def _form_volumes(msh: dolfinx.mesh.Mesh, cells: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
    """Measure of owned cells of any type/degree by assembling a DG0 indicator form."""
    space = dolfinx.fem.functionspace(msh, ("DG", 0))
    form = dolfinx.fem.form(ufl.TestFunction(space) * ufl.dx, dtype=msh.geometry.x.dtype)
    vec = dolfinx.fem.assemble_vector(form)
    # Cell integrals run over owned cells only, so owned entries are complete without a scatter.
    dofs = space.dofmap.list[cells, 0]
    return np.asarray(vec.array[dofs], dtype=np.float64)


def cell_measures(msh: dolfinx.mesh.Mesh, cells: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
    """Area (2D) / volume (3D) of the given local cells, in mesh length units^tdim."""
    affine = msh.geometry.cmaps[0].degree == 1
    if affine and msh.topology.cell_type in _SIMPLICES:
        return _simplex_volumes(msh, cells)
    return _form_volumes(msh, cells)


def component_measures(msh: dolfinx.mesh.Mesh, comps: Components) -> npt.NDArray[np.float64]:
    """Area (2D) or volume (3D) of every component.

    Parameters
    ----------
    msh
        The mesh ``comps`` was computed on.
    comps
        Result of :func:`cell_components`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(num_components,)``, in mesh length units to the power ``tdim``;
        summed over owned cells and reduced over ranks, so each cell counts once.
    """
    num_owned, _ = _num_local_cells(msh)
    cells = np.arange(num_owned, dtype=np.int32)
    volume = cell_measures(msh, cells)
    owned = comps.labels[:num_owned]
    hit = owned >= 0
    local = np.bincount(owned[hit], weights=volume[hit], minlength=comps.num_components)
    total = np.zeros(comps.num_components, dtype=np.float64)
    msh.comm.Allreduce(local.astype(np.float64), total, op=MPI.SUM)
    return total


def local_cell_sizes(msh: dolfinx.mesh.Mesh) -> np.ndarray:
    """Area (2D) or volume (3D) of every local cell (um^tdim). Triangles and tetrahedra by
    the cross product / determinant of their edges (the same rounding on every partition);
    other cells (voxel hexahedra) by an assembled indicator (owned entries exact)."""
    tdim = msh.topology.dim
    if msh.topology.cell_type == dolfinx.mesh.CellType.triangle:
        p = msh.geometry.x[msh.geometry.dofmaps[0]]
        d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        return np.asarray(0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]))
    if msh.topology.cell_type == dolfinx.mesh.CellType.tetrahedron:
        p = msh.geometry.x[msh.geometry.dofmaps[0]]
        return np.asarray(np.abs(np.linalg.det(p[:, 1:] - p[:, :1])) / 6.0)
    n = msh.topology.index_map(tdim).size_local + msh.topology.index_map(tdim).num_ghosts
    return cell_measures(msh, np.arange(n, dtype=np.int32))
