"""The only bridge from :mod:`meshes` to DOLFINx: distribute a rank-0 section mesh.

Gmsh and the geometry run on rank 0; the triangle arrays are handed to
``dolfinx.mesh.create_mesh`` with ``GhostMode.shared_facet`` (interface facets on process
boundaries need both cells locally, see shared/notes). Phase tags follow each cell through the
partition by its original input index, and facet tags are computed on every rank from the
geometry and the phases on both sides of each facet, so they are correct on any partition.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from mpi4py import MPI  # isort: split

import basix.ufl
import dolfinx
import dolfinx.mesh
import numpy as np

from meshes.build import SectionMesh
from meshes.conforming import ConformingBox
from meshes.tags import ELECTRONIC_PHASES, Facet, Phase
from meshes.voxels import VoxelImage, surface_normals

__all__ = [
    "TaggedMesh",
    "build_on_root",
    "building",
    "distribute_conforming",
    "distribute_electronic_voxels",
    "distribute_section",
    "distribute_voxels",
    "electronic_cells",
    "end_if_still_building",
    "facet_tags_from_phases",
]


@dataclass(frozen=True)
class TaggedMesh:
    """A distributed tagged mesh (coordinates in um) and its layer structure."""

    mesh: dolfinx.mesh.Mesh
    phase: np.ndarray  # phase tag of every local cell (owned + ghost)
    cell_tags: dolfinx.mesh.MeshTags
    facet_tags: dolfinx.mesh.MeshTags
    kind: str
    width_um: float
    thickness_um: float
    composite_z_um: tuple[float, float]
    layer_z_um: tuple[float, ...]
    #: extent in y (3D boxes; 0 for 2D sections)
    depth_um: float = 0.0
    #: z of the mesh's z = 0 in the realization's frame (3D boxes cut at a depth)
    z_offset_um: float = 0.0
    #: voxel meshes built with ``normals=True``: the estimated outward surface direction of
    #: the active phase (:func:`meshes.voxels.surface_normals`) at every local cell, (n, 3);
    #: the half cell weights each interface face by it (``fem.electrochem.halfcell``)
    surface_normals: np.ndarray | None = None
    #: the image wrapped in x and y when ``surface_normals`` were estimated (a half cell on
    #: the mesh must then be periodic in x and y, and not otherwise)
    surface_normals_periodic: bool = False

    @property
    def comm(self) -> MPI.Comm:
        return self.mesh.comm


def _on(x: np.ndarray, value: float, tol: float) -> np.ndarray:
    return np.asarray(np.abs(x - value) < tol)


def facet_tags_from_phases(msh: dolfinx.mesh.Mesh, phase: np.ndarray, width_um: float,
                           thickness_um: float, depth_um: float | None = None
                           ) -> dolfinx.mesh.MeshTags:
    """Outer boundaries by position; interfaces by the phases of the two adjacent cells.

    z (through the thickness) is the last coordinate: (x, z) in 2D, (x, y, z) in 3D, where
    ``depth_um`` is the extent in y (front y = 0, back y = depth).
    """
    tdim = msh.topology.dim
    fdim = tdim - 1
    msh.topology.create_connectivity(fdim, tdim)
    tol = 1e-7 * max(width_um, thickness_um, depth_um or 0.0)
    found: dict[Facet, np.ndarray] = {}
    z = tdim - 1
    sides = {Facet.BOTTOM: (z, 0.0), Facet.TOP: (z, thickness_um),
             Facet.LEFT: (0, 0.0), Facet.RIGHT: (0, width_um)}
    if tdim == 3:
        if depth_um is None:
            raise ValueError("a 3D mesh needs depth_um (its extent in y)")
        sides.update({Facet.FRONT: (1, 0.0), Facet.BACK: (1, depth_um)})
    for tag, (axis, value) in sides.items():
        found[tag] = dolfinx.mesh.locate_entities_boundary(
            msh, fdim, lambda x, a=axis, v=value: _on(x[a], v, tol))
    f2c = msh.topology.connectivity(fdim, tdim)
    n_facets = msh.topology.index_map(fdim).size_local + msh.topology.index_map(fdim).num_ghosts
    offsets = f2c.offsets
    interior = np.nonzero(np.diff(offsets) == 2)[0].astype(np.int32)
    c0 = f2c.array[offsets[interior]]
    c1 = f2c.array[offsets[interior] + 1]
    p0, p1 = phase[c0], phase[c1]
    electronic = np.isin(p0, ELECTRONIC_PHASES) & np.isin(p1, ELECTRONIC_PHASES) & (p0 != p1)
    ionic = np.array([Phase.SPE, Phase.SEPARATOR])

    def pair(a: int, b: np.ndarray | int) -> np.ndarray:
        return ((p0 == a) & np.isin(p1, b)) | ((p1 == a) & np.isin(p0, b))

    found[Facet.ACTIVE_ELECTROLYTE] = interior[pair(Phase.NANOWIRE, ionic)]
    found[Facet.ELECTRONIC_CONTACT] = interior[electronic & ~pair(Phase.AL_FOIL, np.arange(8))]
    # a wire touching the separator is an active/electrolyte facet (it reacts), not a
    # cathode/separator one
    found[Facet.CATHODE_SEPARATOR] = interior[
        pair(Phase.SEPARATOR, np.setdiff1d(np.arange(1, 8), [Phase.SEPARATOR, Phase.NANOWIRE]))]
    found[Facet.CATHODE_COLLECTOR] = interior[
        pair(Phase.AL_FOIL, np.setdiff1d(np.arange(1, 8), [Phase.AL_FOIL]))]
    values = np.full(n_facets, -1, dtype=np.int32)
    for tag, facets in found.items():
        values[facets] = int(tag)
    idx = np.nonzero(values >= 0)[0].astype(np.int32)
    return dolfinx.mesh.meshtags(msh, fdim, idx, values[idx])


#: the build running now on this rank (its number), None outside builds: Gmsh and the
#: geometry are compiled code that sees a signal only when it returns (cases.cli's watchdog)
_building: list[int | None] = [None]
_builds = itertools.count(1)
_build_lock = threading.Lock()


def building() -> int | None:
    """The number of the :func:`build_on_root` build running on this rank, or None."""
    return _building[0]


def end_if_still_building(build: int, end: Callable[[], None]) -> None:
    """Call ``end`` (which ends the process, it does not return) if build number ``build``
    is still running; the build cannot finish meanwhile (it waits for the same lock), so
    the main thread cannot clean up its folders while ``end`` does."""
    with _build_lock:
        if _building[0] == build:
            end()


def build_on_root[T](comm: MPI.Comm, build: Callable[[], T], root: int = 0) -> T | None:
    """Run ``build`` (Gmsh, geometry) on ``root``; the other ranks wait *sleeping*.

    A plain blocking MPI call busy-polls a core on the waiting ranks, which steals the
    cores Gmsh's threads run on (measured: meshing 3x slower on 2 ranks of a 2-core machine).
    Errors raised on root reach every rank as the same exception type and message.
    """
    result: T | None = None
    error: BaseException | None = None
    if comm.rank == root:
        outer = _building[0]
        _building[0] = next(_builds)
        try:
            result = build()
        except BaseException as e:  # re-raised on every rank below
            error = e
        finally:
            with _build_lock:
                _building[0] = outer
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.02)
    failure = comm.bcast(None if error is None else (type(error), str(error)), root=root)
    if failure is not None:
        if error is not None:
            raise error
        kind, message = failure
        if issubclass(kind, KeyboardInterrupt):
            raise KeyboardInterrupt
        raise kind(message) if issubclass(kind, ValueError) else RuntimeError(message)
    return result


def distribute_section(comm: MPI.Comm, section: SectionMesh | None, root: int = 0
                       ) -> TaggedMesh:
    """Create the distributed mesh from the section built on ``root`` (None elsewhere)."""
    meta = None
    if comm.rank == root:
        assert section is not None
        meta = (section.kind, section.width_um, section.thickness_um, section.composite_z_um,
                section.layer_z_um)
    kind, width, thickness, zc, layers = comm.bcast(meta, root=root)
    msh, phase, cell_tags = _distribute_cells(
        comm, None if section is None else (section.cells, section.points_um, section.phase),
        "triangle", 2, root)
    facet_tags = facet_tags_from_phases(msh, phase, width, thickness)
    facet_tags.name = "facets"
    return TaggedMesh(mesh=msh, phase=phase, cell_tags=cell_tags, facet_tags=facet_tags,
                      kind=kind, width_um=width, thickness_um=thickness,
                      composite_z_um=tuple(zc), layer_z_um=tuple(layers))


def _image_meta(comm: MPI.Comm, image: VoxelImage | None, root: int
                ) -> tuple[str, tuple[int, int, int], float, tuple[float, float, float],
                           tuple[float, float]]:
    """(kind, shape, voxel_um, origin_um, composite_z_um) of the image on ``root``, on every
    rank."""
    meta = None
    if comm.rank == root:
        assert image is not None
        meta = (image.kind, image.labels.shape, image.voxel_um, image.origin_um,
                image.composite_z_um)
    return comm.bcast(meta, root=root)  # type: ignore[no-any-return]


def _voxel_box(msh: dolfinx.mesh.Mesh, phase: np.ndarray, cell_tags: dolfinx.mesh.MeshTags,
               kind: str, size: list[float], origin: tuple[float, float, float],
               comp: tuple[float, float]) -> TaggedMesh:
    """The TaggedMesh of a voxel box mesh (box frame, extent ``size``)."""
    facet_tags = facet_tags_from_phases(msh, phase, size[0], size[2], depth_um=size[1])
    facet_tags.name = "facets"
    return TaggedMesh(mesh=msh, phase=phase, cell_tags=cell_tags, facet_tags=facet_tags,
                      kind=kind, width_um=size[0], thickness_um=size[2],
                      composite_z_um=(comp[0], comp[1]), layer_z_um=(), depth_um=size[1],
                      z_offset_um=float(origin[2]))


def distribute_voxels(comm: MPI.Comm, image: VoxelImage | None, root: int = 0, *,
                      normals: bool = False, periodic: bool = False) -> TaggedMesh:
    """Hexahedral mesh of a phase image built on ``root`` (None elsewhere): one cell per voxel,
    coordinates in the box's own frame ([0, size] in x, y, z; ``z_offset_um`` records where
    it sits in the cathode). Every rank receives the label image (uint8) and tags its cells
    by their midpoints, so the tags are independent of the partition.

    ``normals``: also estimate the active phase's surface direction at every cell
    (``TaggedMesh.surface_normals``; ``periodic``: the image wraps in x and y), on every
    rank from the whole image, so that it does not depend on the partition either."""
    kind, shape, h, origin, comp = _image_meta(comm, image, root)
    labels = comm.bcast(image.labels if comm.rank == root and image is not None else None,
                        root=root)
    size = [n * h for n in shape]
    msh = dolfinx.mesh.create_box(
        comm, [np.zeros(3), np.array(size)], list(shape), dolfinx.mesh.CellType.hexahedron,
        ghost_mode=dolfinx.mesh.GhostMode.shared_facet)
    tdim = msh.topology.dim
    n_local = msh.topology.index_map(tdim).size_local + msh.topology.index_map(tdim).num_ghosts
    x = msh.geometry.x[msh.geometry.dofmaps[0][:n_local]].mean(axis=1)
    idx = [np.clip(np.floor(x[:, k] / h).astype(np.int64), 0, shape[k] - 1) for k in range(3)]
    phase = labels[idx[0], idx[1], idx[2]].astype(np.int32)
    cell_tags = dolfinx.mesh.meshtags(msh, tdim, np.arange(n_local, dtype=np.int32), phase)
    cell_tags.name = "phase"
    tm = _voxel_box(msh, phase, cell_tags, kind, size, origin, comp)
    if normals:
        # the block of this rank's cells only (the values are those of the whole image)
        box = tuple((int(i.min(initial=0)), int(i.max(initial=0)) + 1) for i in idx)
        field = surface_normals(labels, [int(Phase.NANOWIRE)], periodic=periodic, box=box)
        tm = replace(tm, surface_normals=np.ascontiguousarray(
            field[:, idx[0] - box[0][0], idx[1] - box[1][0], idx[2] - box[2][0]].T,
            dtype=np.float64), surface_normals_periodic=bool(periodic))
    return tm


#: a hexahedron's corners in DOLFINx's (tensor-product) order, as voxel-index offsets
_HEX_CORNERS = np.array([(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0),
                         (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)], dtype=np.int64)
_VERTICES = {"triangle": 3, "tetrahedron": 4, "hexahedron": 8}


def _voxel_cells(labels: np.ndarray, keep: np.ndarray, h: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hexahedra of the voxels where ``keep``: (cells (n, 8), points (m, 3) um, phase (n,)),
    neighbouring voxels sharing their corner points (numbered in grid order)."""
    nx, ny, nz = labels.shape
    idx = np.column_stack(np.nonzero(keep)).astype(np.int64)
    stride = np.array([(ny + 1) * (nz + 1), nz + 1, 1], dtype=np.int64)
    corners = (idx[:, None, :] + _HEX_CORNERS[None, :, :]) @ stride
    used = np.zeros((nx + 1) * (ny + 1) * (nz + 1), dtype=bool)
    used[corners.ravel()] = True
    vertex = np.nonzero(used)[0]
    number = np.cumsum(used, dtype=np.int64) - 1
    ijk = np.column_stack([vertex // stride[0], (vertex // stride[1]) % (ny + 1),
                           vertex % stride[1]])
    phase = labels[idx[:, 0], idx[:, 1], idx[:, 2]]
    return number[corners], ijk.astype(np.float64) * h, phase


def electronic_cells(image: VoxelImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cells, points, phase) of the hexahedra of :func:`distribute_electronic_voxels`:
    the voxels of the electronic phases and every voxel of the box's six boundary layers."""
    keep = np.isin(image.labels, ELECTRONIC_PHASES)
    for axis in range(3):
        keep[(slice(None),) * axis + (0,)] = True
        keep[(slice(None),) * axis + (-1,)] = True
    return _voxel_cells(image.labels, keep, image.voxel_um)


def distribute_electronic_voxels(comm: MPI.Comm, image: VoxelImage | None, root: int = 0
                                 ) -> TaggedMesh:
    """Hexahedral mesh of the electronic voxels of a phase image built on ``root`` (None
    elsewhere), for electronic solves on fine voxels: one cell per voxel of an electronic
    phase, plus every voxel of the box's six boundary layers (so every face carries mesh
    facets for electrodes, and the lateral faces matching nodes for periodic solves). Its
    extent and frame are the whole box's, as with :func:`distribute_voxels`; the other
    phases' voxels are absent, so only the electronic phases may be solved on it."""
    kind, shape, h, origin, comp = _image_meta(comm, image, root)
    arrays = build_on_root(comm, lambda: electronic_cells(image), root)  # type: ignore[arg-type]
    msh, phase, cell_tags = _distribute_cells(comm, arrays, "hexahedron", 3, root)
    size = [n * h for n in shape]
    return _voxel_box(msh, phase, cell_tags, kind, size, origin, comp)


def distribute_conforming(comm: MPI.Comm, box: ConformingBox | None, root: int = 0
                          ) -> TaggedMesh:
    """Create the distributed tetrahedral mesh of a conforming box built on ``root`` (None
    elsewhere); coordinates in the box's own frame, phases follow each cell through the
    partition by its original index, as for 2D sections."""
    meta = None
    if comm.rank == root:
        assert box is not None
        meta = (box.kind, box.size_um, box.height_um, box.origin_um,
                box.composite_z_um or (0.0, box.height_um))
    kind, size, height, origin, composite = comm.bcast(meta, root=root)
    msh, phase, cell_tags = _distribute_cells(
        comm, None if box is None else (box.cells, box.points_um, box.phase), "tetrahedron", 3,
        root)
    facet_tags = facet_tags_from_phases(msh, phase, size, height, depth_um=size)
    facet_tags.name = "facets"
    return TaggedMesh(mesh=msh, phase=phase, cell_tags=cell_tags, facet_tags=facet_tags,
                      kind=kind, width_um=size, thickness_um=height,
                      composite_z_um=composite, layer_z_um=(), depth_um=size,
                      z_offset_um=float(origin[2]))


def _distribute_cells(comm: MPI.Comm, arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                      cell: str, gdim: int, root: int
                      ) -> tuple[dolfinx.mesh.Mesh, np.ndarray, dolfinx.mesh.MeshTags]:
    """Distribute (cells, points, phase per cell) held by ``root`` (None elsewhere): the
    mesh, the phase of every local cell (owned and ghost) and the phase cell tags. Phases
    follow the cells through the partition by their original input index."""
    if comm.rank == root:
        assert arrays is not None
        cells = arrays[0].astype(np.int64)
        x = arrays[1]
        phase_all = arrays[2].astype(np.int32)
    else:
        cells = np.zeros((0, _VERTICES[cell]), dtype=np.int64)
        x = np.zeros((0, gdim), dtype=np.float64)
        phase_all = None
    element = basix.ufl.element("Lagrange", cell, 1, shape=(gdim,))
    partitioner = dolfinx.mesh.create_cell_partitioner(  # type: ignore[call-arg]
        dolfinx.mesh.GhostMode.shared_facet, 2)
    msh = dolfinx.mesh.create_mesh(comm, cells, element, x,  # type: ignore[arg-type]
                                   partitioner=partitioner)
    # Every rank needs the phases of its owned and ghost cells; the array is small (int32 per
    # cell), so broadcasting it is simpler and cheaper than a targeted scatter.
    phase_all = comm.bcast(phase_all, root=root)
    original = np.asarray(msh.topology.original_cell_index, dtype=np.int64)
    phase = phase_all[original]
    tdim = msh.topology.dim
    n_local = msh.topology.index_map(tdim).size_local + msh.topology.index_map(tdim).num_ghosts
    if len(phase) != n_local:
        raise RuntimeError("original_cell_index does not cover the ghost cells")
    cell_tags = dolfinx.mesh.meshtags(msh, tdim, np.arange(n_local, dtype=np.int32), phase)
    cell_tags.name = "phase"
    return msh, phase, cell_tags
