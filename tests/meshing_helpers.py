"""Small test meshes as :class:`meshes.build.SectionMesh` objects (rank-0 triangle arrays).

Structured meshes are built with numpy (conforming to any grid line), curved inclusions with
Gmsh's OpenCASCADE kernel, random disk sections through the project's own Gmsh path
(:func:`meshes.section.assemble_section` + :func:`meshes.gmsh2d.mesh_section`).
Everything here runs on one process; :func:`meshes.adapter.distribute_section` distributes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import shapely

from meshes.build import SectionMesh

__all__ = [
    "annulus_sector_section",
    "coated_disk_section",
    "empty_section",
    "half_disk_section",
    "random_disk_section",
    "structured_section",
]

PhaseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _section(points: np.ndarray, cells: np.ndarray, phase: np.ndarray, width: float,
             thickness: float, composite_z: tuple[float, float] | None = None,
             layer_z: Sequence[float] = ()) -> SectionMesh:
    return SectionMesh(kind="test", points_um=np.ascontiguousarray(points, dtype=np.float64),
                       cells=np.ascontiguousarray(cells, dtype=np.int64),
                       phase=np.asarray(phase, dtype=np.int32), width_um=float(width),
                       thickness_um=float(thickness),
                       composite_z_um=composite_z or (0.0, float(thickness)),
                       layer_z_um=tuple(layer_z))


def structured_section(nx: int, nz: int, width: float, thickness: float, phase_of: PhaseFn,
                       *, z_lines: Sequence[float] | None = None,
                       composite_z: tuple[float, float] | None = None,
                       layer_z: Sequence[float] = ()) -> SectionMesh:
    """nx x nz rectangles, each split into two triangles along alternating diagonals.

    ``z_lines`` (increasing, from 0 to ``thickness``) replaces the uniform z spacing, so layer
    interfaces can be put exactly on element faces. ``phase_of(xc, zc)`` gives the phase of
    every triangle from its centroid.
    """
    xs = np.linspace(0.0, width, nx + 1)
    zs = np.linspace(0.0, thickness, nz + 1) if z_lines is None else np.asarray(z_lines, float)
    nz = len(zs) - 1
    xx, zz = np.meshgrid(xs, zs, indexing="xy")  # node (j, i) -> index j * (nx + 1) + i
    points = np.column_stack([xx.ravel(), zz.ravel()])
    i, j = np.meshgrid(np.arange(nx), np.arange(nz), indexing="xy")
    i, j = i.ravel(), j.ravel()
    v00 = j * (nx + 1) + i
    v10, v01, v11 = v00 + 1, v00 + nx + 1, v00 + nx + 2
    alt = (i + j) % 2 == 1  # alternate the diagonal: no preferred direction in the mesh
    t1 = np.where(alt[:, None], np.column_stack([v00, v10, v01]),
                  np.column_stack([v00, v10, v11]))
    t2 = np.where(alt[:, None], np.column_stack([v10, v11, v01]),
                  np.column_stack([v00, v11, v01]))
    cells = np.concatenate([t1, t2])
    centroid = points[cells].mean(axis=1)
    phase = phase_of(centroid[:, 0], centroid[:, 1])
    return _section(points, cells, phase, width, thickness, composite_z, layer_z)


def _gmsh_triangles(gmsh: object, surface_phase: dict[int, int]) -> tuple[np.ndarray, ...]:
    """Nodes and 3-node triangles of the given surfaces, with their phase, unused nodes dropped."""
    model = gmsh.model  # type: ignore[attr-defined]
    node_tags, xyz, _ = model.mesh.getNodes()
    index = np.zeros(int(node_tags.max()) + 1, dtype=np.int64)
    index[node_tags.astype(np.int64)] = np.arange(len(node_tags))
    cells, phases = [], []
    for s, ph in surface_phase.items():
        types, _, enodes = model.mesh.getElements(2, s)
        for ty, en in zip(types, enodes, strict=True):
            assert ty == 2, f"unexpected Gmsh element type {ty}"
            tri = index[en.astype(np.int64)].reshape(-1, 3)
            cells.append(tri)
            phases.append(np.full(len(tri), ph, dtype=np.int32))
    cell_arr = np.concatenate(cells)
    used = np.unique(cell_arr)
    remap = np.full(len(node_tags), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    points = xyz.reshape(-1, 3)[used, :2].copy()
    return points, remap[cell_arr], np.concatenate(phases)


def _gmsh_fragment_mesh(build: Callable[[object], dict[int, int]], size: float
                        ) -> tuple[np.ndarray, ...]:
    import gmsh

    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("test")
        surface_phase = build(gmsh)
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.option.setNumber("Mesh.MeshSizeMin", 0.5 * size)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.Algorithm", 6)
        gmsh.option.setNumber("General.NumThreads", 1)
        gmsh.model.mesh.generate(2)
        return _gmsh_triangles(gmsh, surface_phase)
    finally:
        gmsh.finalize()


def coated_disk_section(side: float, a: float, b: float, size: float, *,
                        phases: tuple[int, int, int] = (1, 2, 3)) -> SectionMesh:
    """Square [0, side]^2 with a centred disk of radius ``a`` (phase ``phases[0]``) in a shell
    to radius ``b`` (``phases[1]``), in a matrix (``phases[2]``): Gmsh OCC fragment."""

    def build(gmsh: object) -> dict[int, int]:
        occ = gmsh.model.occ  # type: ignore[attr-defined]
        c = 0.5 * side
        square = occ.addRectangle(0.0, 0.0, 0.0, side, side)
        core = occ.addDisk(c, c, 0.0, a, a)
        shell = occ.addDisk(c, c, 0.0, b, b)
        _, pieces = occ.fragment([(2, square)], [(2, core), (2, shell)])
        occ.synchronize()
        in_core = {t for _, t in pieces[1]}
        in_shell = {t for _, t in pieces[2]}
        out = {}
        for _, t in pieces[0]:
            out[t] = phases[0] if t in in_core else phases[1] if t in in_shell else phases[2]
        return out

    points, cells, phase = _gmsh_fragment_mesh(build, size)
    return _section(points, cells, phase, side, side)


def annulus_sector_section(side: float, radii: Sequence[float], size: float, *,
                           phases: Sequence[int], outside: int) -> SectionMesh:
    """Square [0, side]^2 cut by quarter circles about the origin of the given (increasing)
    radii; the ring between radii[k] and radii[k+1] gets ``phases[k]``, the rest ``outside``."""

    def build(gmsh: object) -> dict[int, int]:
        occ = gmsh.model.occ  # type: ignore[attr-defined]
        square = occ.addRectangle(0.0, 0.0, 0.0, side, side)
        disks = [occ.addDisk(0.0, 0.0, 0.0, r, r) for r in radii]
        _, pieces = occ.fragment([(2, square)], [(2, d) for d in disks])
        inside = [{t for _, t in p} for p in pieces[1:]]
        keep = {t for _, t in pieces[0]}
        drop = [(2, t) for s in inside for t in s if t not in keep]
        occ.remove(sorted(set(drop)), recursive=True)
        occ.synchronize()
        out = {}
        for t in keep:
            n_in = sum(t in s for s in inside)  # number of disks containing the piece
            k = len(radii) - n_in  # piece lies between radii[k-1] and radii[k]
            out[t] = phases[k - 1] if 1 <= k < len(radii) else outside
        return out

    points, cells, phase = _gmsh_fragment_mesh(build, size)
    return _section(points, cells, phase, side, side)


def _project_mesh(objects: dict[int, list[shapely.Geometry]], width: float, thickness: float,
                  size: float, region_phase: dict[int, int]) -> SectionMesh:
    """Mesh region polygons with the project's path (shapely noding + Gmsh built-in kernel)."""
    from meshes.gmsh2d import mesh_section
    from meshes.section import Region, assemble_section

    grid = 0.05 * size
    section = assemble_section(
        width_um=width, thickness_um=thickness, composite_z_um=(0.0, thickness),
        layer_z_um=(), objects={Region(k): v for k, v in objects.items()},
        coating_thickness_um=0.0, contact_width_um=0.0, grid_um=grid, foil=False)
    tri = mesh_section(section, size_fine_um=size, size_coarse_um=2 * size,
                       tile_um=max(width, thickness))
    phase = np.array([region_phase[int(r)] for r in tri.region], dtype=np.int32)
    return _section(tri.points_um, tri.cells, phase, section.width_um, section.thickness_um)


def random_disk_section(width: float, thickness: float, radius: float, n_disks: int,
                        size: float, seed: int, *, n_void: int = 0) -> SectionMesh:
    """Random (overlapping) disks of phase 1 in a phase-3 matrix, optionally with ``n_void``
    further disks of non-conducting phase 4 (placed after, below the phase-1 disks in
    priority); meshed with the project's Gmsh path."""
    from meshes.section import Region

    rng = np.random.default_rng(seed)
    centres = rng.uniform([0.0, 0.0], [width, thickness], size=(n_disks + n_void, 2))
    disks = list(shapely.buffer(shapely.points(centres), radius, quad_segs=8))
    objects = {int(Region.NANOWIRE): disks[:n_disks]}
    if n_void:
        objects[int(Region.RGO)] = disks[n_disks:]
    region_phase = {int(Region.NANOWIRE): 1, int(Region.RGO): 4, int(Region.PORE): 3}
    return _project_mesh(objects, width, thickness, size, region_phase)


def empty_section(width: float, thickness: float, size: float) -> SectionMesh:
    """A section with no objects (one phase, 3): the project's uniform-mesh path."""
    from meshes.section import Region

    return _project_mesh({}, width, thickness, size, {int(Region.PORE): 3})


def half_disk_section(width: float, height: float, radius: float, size: float, *,
                      inner: int = 1, outer: int = 3) -> SectionMesh:
    """Rectangle [0, width] x [0, height] with the half disk of ``radius`` centred on the bottom
    edge at x = width / 2 (phase ``inner``), the rest phase ``outer``: Gmsh OCC fragment.
    Mirror symmetry about z = 0 makes a no-flux bottom face exact for a full disk."""

    def build(gmsh: object) -> dict[int, int]:
        occ = gmsh.model.occ  # type: ignore[attr-defined]
        rect = occ.addRectangle(0.0, 0.0, 0.0, width, height)
        disk = occ.addDisk(0.5 * width, 0.0, 0.0, radius, radius)
        _, pieces = occ.fragment([(2, rect)], [(2, disk)])
        in_rect = {t for _, t in pieces[0]}
        in_disk = {t for _, t in pieces[1]}
        occ.remove([(2, t) for t in in_disk - in_rect], recursive=True)
        occ.synchronize()
        return {t: inner if t in in_disk else outer for t in in_rect}

    points, cells, phase = _gmsh_fragment_mesh(build, size)
    return _section(points, cells, phase, width, height)
