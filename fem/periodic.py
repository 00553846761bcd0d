"""Periodic constraints for scalar P1 (or any nodal) problems on box meshes, with PETSc only.

A box mesh whose faces x_k = 0 and x_k = L_k carry matching nodes (voxel meshes always do)
becomes periodic in axis k by identifying every dof on x_k = L_k with the dof at x_k = 0
(edges and corners: all copies of one point on the torus form one group, and the group's
smallest global index is its master). With the prolongation matrix P (full dofs x reduced
dofs, one entry 1 per row: a dof's own reduced index or its master's), the periodic problem
is

    P^T A P u_r = P^T b,    u = P u_r,

which is what multi-point-constraint libraries assemble; here it is a PETSc ``PtAP`` on the
matrix DOLFINx assembles, so no extra package is needed. Dirichlet rows are imposed on the
reduced system. Dofs are matched by coordinates, so the partition does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping

from mpi4py import MPI  # isort: split

import dolfinx
import numpy as np
import scipy.sparse as sp
from petsc4py import PETSc
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["PeriodicMap", "check_periods", "periodic_groups"]


def check_periods(msh: dolfinx.mesh.Mesh, periods: Mapping[int, float]) -> None:
    """Raise ValueError (one line) unless every periodic axis is a coordinate axis along
    which the mesh spans exactly [0, L], and every mesh node on a periodic face has its
    translate on the opposite face. Collective."""
    gdim = msh.geometry.dim
    x = msh.geometry.x
    for k, length in periods.items():
        if k not in range(gdim):
            raise ValueError(f"periodic axis {k!r}: must be one of {list(range(gdim))}")
        lo = msh.comm.allreduce(float(x[:, k].min(initial=np.inf)), op=MPI.MIN)
        hi = msh.comm.allreduce(float(x[:, k].max(initial=-np.inf)), op=MPI.MAX)
        tol = 1e-6 * max(abs(length), 1e-300)
        if abs(lo) > tol or abs(hi - length) > tol:
            raise ValueError(f"periodic axis {k}: period {length:g} um, but the mesh spans "
                             f"[{lo:g}, {hi:g}] um along it; must span [0, period]")
    # the faces must carry matching nodes (voxel meshes and periodic conforming boxes do)
    imap = msh.geometry.index_map()
    own = x[: imap.size_local]
    on = np.zeros(len(own), dtype=bool)
    tol = 1e-6 * max(abs(v) for v in periods.values())
    for k, length in periods.items():
        on |= (np.abs(own[:, k]) < tol) | (np.abs(own[:, k] - length) < tol)
    ids = imap.local_range[0] + np.nonzero(on)[0].astype(np.int64)
    periodic_groups(msh.comm, own[on], ids, periods, tol, require_partners=True)


def periodic_groups(comm: MPI.Comm, points: np.ndarray, ids: np.ndarray,
                    periods: Mapping[int, float], tol: float, require_partners: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Points on the faces x_k = 0 or L_k of the periodic axes k that are one point of the
    torus. ``points`` (n, 3) and ``ids`` (n,) int64 are this rank's (only points on those
    faces need be passed). Returns (slaves, masters): int64 id pairs, sorted by slave,
    identical on every rank; the master of a group is its smallest id. With
    ``require_partners`` a point without a periodic partner raises ValueError (one line; a
    mesh's own nodes must all have one, a subdomain's need not). Collective."""
    wrapped = np.array(points, dtype=np.float64, copy=True).reshape(-1, 3)
    for k, length in periods.items():
        wrapped[np.abs(wrapped[:, k] - length) < tol, k] = 0.0
    gathered = comm.gather((wrapped, np.asarray(ids, dtype=np.int64)), root=0)
    result: tuple[np.ndarray, np.ndarray] | ValueError | None = None
    if comm.rank == 0:
        assert gathered is not None
        pts = np.concatenate([g[0] for g in gathered])
        gid = np.concatenate([g[1] for g in gathered])
        # the same id may come from two ranks (a shared entity): keep one copy
        gid, first = np.unique(gid, return_index=True)
        pts = pts[first]
        pairs = cKDTree(pts).query_pairs(tol, output_type="ndarray") if len(pts) else \
            np.zeros((0, 2), dtype=np.int64)
        n = len(gid)
        graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        alone = int(np.count_nonzero(np.bincount(comp) == 1)) if n else 0
        if alone and require_partners:
            result = ValueError(f"periodic faces: {alone} points on them have no periodic "
                                f"partner within {tol:g} um; the mesh is not periodic (its "
                                f"faces x_k = 0 and L_k must carry matching nodes)")
        master = np.full(int(comp.max(initial=-1)) + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(master, comp, gid)
        m = master[comp]
        slave = gid != m
        order = np.argsort(gid[slave])
        if result is None:
            result = (gid[slave][order], m[slave][order])
    result = comm.bcast(result, root=0)
    if isinstance(result, ValueError):
        raise result
    slaves, masters = result
    return np.asarray(slaves, dtype=np.int64), np.asarray(masters, dtype=np.int64)


class PeriodicMap:
    """The prolongation P from periodic (reduced) dofs to the rows of a distributed vector.

    Built from the rows this rank owns: their coordinates and global indices (contiguous,
    from the rank's ownership start), in one or more *blocks* that are matched separately
    (two fields on the same nodes must not be identified with each other). ``periods`` maps
    axis -> period length L (the box spans [0, L] along that axis). Reduced dofs keep the
    order of the rows they come from, so a block's reduced dofs are contiguous per rank."""

    def __init__(self, comm: MPI.Intracomm, blocks: list[tuple[np.ndarray, np.ndarray]],
                 n_global: int, periods: Mapping[int, float], tol: float) -> None:
        slave_list, master_list = [], []
        gidx = np.concatenate([ids for _, ids in blocks]) if blocks else np.zeros(0, np.int64)
        for x, ids in blocks:
            on = np.zeros(len(ids), dtype=bool)
            for k, length in periods.items():
                on |= (np.abs(x[:, k]) < tol) | (np.abs(x[:, k] - length) < tol)
            s_k, m_k = periodic_groups(comm, x[on], ids[on], periods, tol)
            slave_list.append(s_k)
            master_list.append(m_k)
        slaves = np.concatenate(slave_list)
        masters = np.concatenate(master_list)
        order = np.argsort(slaves)
        slaves, masters = slaves[order], masters[order]
        n_own = len(gidx)
        is_slave = np.isin(gidx, slaves)
        n_red = int(np.count_nonzero(~is_slave))
        offset = comm.exscan(n_red, op=MPI.SUM)
        offset = 0 if comm.rank == 0 or offset is None else int(offset)
        red = np.full(n_own, -1, dtype=np.int64)
        red[~is_slave] = offset + np.arange(n_red, dtype=np.int64)
        # reduced index of every master, from its owner
        mine = np.isin(gidx, masters) & ~is_slave
        table = comm.allgather((gidx[mine], red[mine]))
        m_full = np.concatenate([t[0] for t in table])
        m_red = np.concatenate([t[1] for t in table])
        order = np.argsort(m_full)
        m_full, m_red = m_full[order], m_red[order]
        their_master = masters[np.searchsorted(slaves, gidx[is_slave])]
        red[is_slave] = m_red[np.searchsorted(m_full, their_master)]
        self.comm = comm
        self.n_owned = n_own
        self.is_slave = is_slave  #: per owned row
        self.reduced_of_owned = red  #: reduced global index of every owned row
        self.reduced_range = (offset, offset + n_red)
        self.slaves_count = int(comm.allreduce(int(is_slave.sum()), op=MPI.SUM))
        n_red_global = int(comm.allreduce(n_red, op=MPI.SUM))
        indptr = np.arange(n_own + 1, dtype=PETSc.IntType)
        self.P = PETSc.Mat().createAIJ(
            ((n_own, n_global), (n_red, n_red_global)),
            csr=(indptr, red.astype(PETSc.IntType),  # type: ignore[arg-type]
                 np.ones(n_own, dtype=PETSc.ScalarType)),
            comm=comm)  # type: ignore[arg-type]
        self.P.assemble()

    @classmethod
    def for_space(cls, space: dolfinx.fem.FunctionSpace, periods: Mapping[int, float],
                  tol: float) -> PeriodicMap:
        """Periodic map of a scalar space's dofs (the layout of its PETSc vectors)."""
        return cls.for_blocks([space], periods, tol)

    @classmethod
    def for_blocks(cls, spaces: list[dolfinx.fem.FunctionSpace], periods: Mapping[int, float],
                   tol: float) -> PeriodicMap:
        """Periodic map of the monolithic ("mpi") block layout of scalar spaces: per rank,
        the owned dofs of each space in turn (``dolfinx.fem.petsc.create_vector(spaces,
        kind="mpi")``)."""
        comm = spaces[0].mesh.comm
        sizes = []
        for space in spaces:
            if space.dofmap.index_map_bs != 1:
                raise ValueError("PeriodicMap: scalar spaces only")
            sizes.append(space.dofmap.index_map.size_local)
        n_local = int(sum(sizes))
        start = comm.exscan(n_local, op=MPI.SUM)
        start = 0 if comm.rank == 0 or start is None else int(start)
        blocks = []
        off = start
        for space, n in zip(spaces, sizes, strict=True):
            x = space.tabulate_dof_coordinates()[:n]
            blocks.append((x, off + np.arange(n, dtype=np.int64)))
            off += n
        n_global = int(comm.allreduce(n_local, op=MPI.SUM))
        return cls(comm, blocks, n_global, periods, tol)

    def reduced_rows(self, owned_local_dofs: np.ndarray) -> np.ndarray:
        """Reduced indices owned by this rank of the given owned local rows (a slave's
        master may be owned elsewhere: that rank passes it from its own copy)."""
        r = np.unique(self.reduced_of_owned[np.asarray(owned_local_dofs, dtype=np.int64)])
        lo, hi = self.reduced_range
        return r[(r >= lo) & (r < hi)].astype(PETSc.IntType)

    def destroy(self) -> None:
        self.P.destroy()
