"""Conforming triangle meshes of a 2D section with Gmsh (built-in kernel).

Why not OCC ``fragment``: fragmenting thousands of objects at once grows superlinearly in
time (each boolean re-intersects everything). Instead the planar partition is computed with
GEOS (shapely), whose noding and polygonization are O(n log n): every region boundary is noded
into one set of chains (maximal polylines between junctions), the chains become Gmsh polyline
curves shared by the faces on both sides (so the mesh conforms at every interface), and each
face of the partition becomes one plane surface labelled by the region that contains it.

Element size: ``size_fine_um`` within ``2 size_fine_um`` of any region boundary, growing
linearly to ``size_coarse_um`` away from it (Gmsh Distance + Threshold fields).
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

import numpy as np
import shapely

from meshes.gmsh_session import initialize_gmsh
from meshes.section import Region, Section

__all__ = ["TriMesh", "mesh_section", "triangle_quality"]


@dataclass(frozen=True)
class TriMesh:
    """A triangle mesh on rank 0: points (n, 2) um, cells (m, 3), region label per cell."""

    points_um: np.ndarray
    cells: np.ndarray
    region: np.ndarray
    n_faces: int
    n_absorbed: int  # faces below the mesh resolution merged into a neighbour
    n_curves: int
    min_quality: float  # min over triangles of 4 sqrt(3) area / sum(edge^2): 1 equilateral
    mesh_time_s: float


def triangle_quality(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """4 sqrt(3) |A| / (l1^2 + l2^2 + l3^2): 1 for equilateral, 0 for degenerate. (Gmsh
    orients each surface's triangles by its curve loop; overlaps are caught by area sums.)"""
    p = points[cells]
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    area = 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    e2 = (np.sum((p[:, 1] - p[:, 0]) ** 2, axis=1) + np.sum((p[:, 2] - p[:, 1]) ** 2, axis=1)
          + np.sum((p[:, 0] - p[:, 2]) ** 2, axis=1))
    return np.asarray(4.0 * np.sqrt(3.0) * area / e2)


def _classify(faces: np.ndarray, section: Section) -> np.ndarray:
    """Region of each face: the first region in priority order that contains it."""
    probe = shapely.point_on_surface(faces)
    label = np.zeros(len(faces), dtype=np.int32)
    for region in (*section.priority, Region.AL_FOIL, Region.SEPARATOR):
        geom = section.regions.get(region)
        if geom is None or geom.is_empty:
            continue
        tree = shapely.STRtree(shapely.get_parts(geom))
        hit = np.unique(tree.query(probe, predicate="within")[0])
        hit = hit[label[hit] == 0]
        label[hit] = int(region)
    z = shapely.get_coordinates(probe)[:, 1]
    z0, z1 = section.composite_z_um
    rest = label == 0
    label[rest & (z >= z0) & (z <= z1)] = int(Region.PORE)
    label[rest & (z > z1)] = int(Region.SKIN)
    label[rest & (z < z0)] = int(Region.AL_FOIL)
    return label


def _absorb_slivers(faces: np.ndarray, label: np.ndarray, min_width_um: float,
                    min_area_um2: float) -> tuple[np.ndarray, int]:
    """Relabel faces thinner than ``min_width_um`` (2 area / perimeter) or smaller than
    ``min_area_um2`` with the label of the neighbour sharing the longest boundary.

    Such faces are below the mesh resolution (near-tangent wires, a wire grazing the
    bottom face); left alone they force needle elements or make Gmsh fail.
    """
    area = shapely.area(faces)
    width = 2 * area / np.maximum(shapely.length(faces), 1e-300)
    small = np.nonzero((width < min_width_um) | (area < min_area_um2))[0]
    if len(small) == 0:
        return label, 0
    tree = shapely.STRtree(faces)
    label = label.copy()
    is_small = np.zeros(len(faces), dtype=bool)
    is_small[small] = True
    for i in small[np.argsort(area[small])]:
        nbrs = tree.query(faces[i], predicate="touches")
        nbrs = nbrs[nbrs != i]
        if len(nbrs) == 0:
            continue
        shared = shapely.length(shapely.intersection(faces[i].boundary,
                                                     shapely.boundary(faces[nbrs])))
        shared = np.where(is_small[nbrs], 0.5 * shared, shared)  # prefer resolved faces
        label[i] = label[nbrs[int(np.argmax(shared))]]
    return label, len(small)


def _node(lines: list[shapely.Geometry], spacing_um: float) -> shapely.Geometry:
    """Node all lines into one planar graph, then densify it to ``spacing_um``.

    Densifying after noding matters: lines that overlap (a region edge on the box edge)
    densified separately get vertices that differ in the last bit, i.e. near-zero segments.
    """
    return shapely.segmentize(shapely.union_all(lines), spacing_um)


def _partition(section: Section, *, spacing_um: float, tile_um: float,
               min_width_um: float, min_area_um2: float
               ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], int, np.ndarray]:
    """Faces (polygons), their region labels, the noded chains, and the absorbed-face count.

    Tile lines every ``tile_um`` split large faces (the pore space is one face with thousands
    of holes otherwise), which keeps Gmsh's per-surface work small and parallel.
    """
    w, t = section.width_um, section.thickness_um
    box = shapely.box(0.0, 0.0, w, t)
    extra = [box.boundary]
    extra += [shapely.LineString([(0.0, z), (w, z)]) for z in section.layer_z_um]
    extra += [shapely.LineString([(x, 0.0), (x, t)]) for x in np.arange(tile_um, w, tile_um)]
    extra += [shapely.LineString([(0.0, z), (w, z)]) for z in np.arange(tile_um, t, tile_um)]
    lines = extra + [g.boundary for g in section.regions.values() if not g.is_empty]
    noded = _node(lines, spacing_um)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    label = _classify(faces, section)
    label, n_small = _absorb_slivers(faces, label, min_width_um, min_area_um2)
    if n_small:
        # Dissolve the boundaries between faces that now share a label, and partition again.
        merged = [shapely.coverage_union_all(faces[label == lab]) for lab in np.unique(label)]
        lines = extra + [g.boundary for g in merged]
        noded = _node(lines, spacing_um)
        faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
        probe = shapely.point_on_surface(faces)
        new = np.zeros(len(faces), dtype=np.int32)
        for lab, g in zip(np.unique(label), merged, strict=True):
            tree = shapely.STRtree(shapely.get_parts(g))
            new[np.unique(tree.query(probe, predicate="within")[0])] = lab
        labels = np.unique(label)
        for i in np.nonzero(new == 0)[0]:  # probe moved off by snapping: largest overlap wins
            new[i] = labels[int(np.argmax(shapely.area(shapely.intersection(faces[i], merged))))]
        label = new
    chains = [shapely.get_coordinates(c) for c in shapely.get_parts(shapely.line_merge(noded))]
    # Material interfaces, the layer lines and the top and bottom faces (where electrodes
    # and surface probes sit) set the fine size; tile lines and the sides do not.
    faces_z = [shapely.LineString([(0.0, z), (w, z)]) for z in (0.0, *section.layer_z_um, t)]
    # (The separator's sides and top are not interfaces: its bottom is a layer line.)
    interface_lines = [shapely.segmentize(g.boundary, spacing_um)
                       for r, g in section.regions.items()
                       if not g.is_empty and r != Region.SEPARATOR]
    interface_lines += [shapely.segmentize(g, spacing_um) for g in faces_z]
    sizing = shapely.get_coordinates(interface_lines) if interface_lines else np.zeros((0, 2))
    return faces, label, chains, n_small, sizing


def mesh_section(section: Section, *, size_fine_um: float, size_coarse_um: float,
                 tile_um: float = 2.0, threads: int = 1) -> TriMesh:
    """Mesh the section; runs Gmsh in this process (call on one rank only)."""
    import gmsh

    t0 = time.perf_counter()
    faces, label, chains, n_small, sizing = _partition(
        section, spacing_um=4 * size_fine_um, tile_um=tile_um,
        min_width_um=0.2 * size_fine_um, min_area_um2=(0.5 * size_fine_um) ** 2)

    initialize_gmsh()
    try:
        gmsh.option.setNumber("General.Terminal",
                              int(os.environ.get("CATHODEFEM_GMSH_VERBOSE", "0")))
        gmsh.model.add("section")
        geo = gmsh.model.geo
        # Points are keyed on a 1e-7 um lattice: vertices closer than that are one point
        # computed twice (crossings of nearly parallel edges); kept apart, Gmsh would build
        # zero-area triangles between them. Segments that collapse are dropped below.
        point_id: dict[tuple[int, int], int] = {}
        line_id: dict[tuple[int, int], int] = {}

        def key(x: float, y: float) -> tuple[int, int]:
            return (round(x * 1e7), round(y * 1e7))

        def pid(xy: tuple[float, float]) -> int:
            k = key(*xy)
            tag = point_id.get(k)
            if tag is None:
                tag = geo.addPoint(xy[0], xy[1], 0.0, size_fine_um)
                point_id[k] = tag
            return tag

        # One straight Gmsh line per segment of the noded linework: every vertex is a mesh
        # node, so the 1D mesh is the planar graph itself and can never cross a neighbouring
        # curve (polyline curves drop corner vertices and then do, near touching wires).
        for coords in chains:
            ids = [pid((float(x), float(y))) for x, y in coords]
            for a, b in itertools.pairwise(ids):
                if a != b and (a, b) not in line_id:
                    tag = geo.addLine(a, b)
                    line_id[(a, b)] = tag
                    line_id[(b, a)] = -tag

        def loop(ring: shapely.LinearRing) -> int:
            ids = [point_id[key(x, y)] for x, y in ring.coords[:-1]]
            return geo.addCurveLoop([line_id[(a, b)] for a, b in
                                     zip(ids, ids[1:] + ids[:1], strict=True) if a != b])

        surface_region: dict[int, int] = {}
        for face, reg in zip(faces, label, strict=True):
            loops = [loop(face.exterior)] + [loop(r) for r in face.interiors]
            surface_region[geo.addPlaneSurface(loops)] = int(reg)
        geo.synchronize()
        for reg in np.unique(label):
            tags = [s for s, r in surface_region.items() if r == reg]
            gmsh.model.addPhysicalGroup(2, tags, tag=int(reg), name=Region(reg).name.lower())

        f_dist = gmsh.model.mesh.field.add("Distance")
        size_points = [point_id[k] for k in (key(x, y) for x, y in sizing) if k in point_id]
        if not size_points:  # no interfaces at all (empty section): uniform coarse mesh
            size_points = list(point_id.values())[:1]
        gmsh.model.mesh.field.setNumbers(f_dist, "PointsList", size_points)
        f_thr = gmsh.model.mesh.field.add("Threshold")
        gmsh.model.mesh.field.setNumber(f_thr, "InField", f_dist)
        gmsh.model.mesh.field.setNumber(f_thr, "SizeMin", size_fine_um)
        gmsh.model.mesh.field.setNumber(f_thr, "SizeMax", size_coarse_um)
        gmsh.model.mesh.field.setNumber(f_thr, "DistMin", 2 * size_fine_um)
        gmsh.model.mesh.field.setNumber(f_thr, "DistMax",
                                        2 * size_fine_um + (size_coarse_um - size_fine_um))
        gmsh.model.mesh.field.setAsBackgroundMesh(f_thr)
        for name, value in (("Mesh.MeshSizeFromPoints", 0), ("Mesh.MeshSizeFromCurvature", 0),
                            ("Mesh.MeshSizeExtendFromBoundary", 0), ("Mesh.Algorithm", 5),
                            ("Mesh.MaxNumThreads2D", threads), ("General.NumThreads", threads)):
            gmsh.option.setNumber(name, value)
        gmsh.model.mesh.generate(2)

        node_tags, xyz, _ = gmsh.model.mesh.getNodes()
        index = np.zeros(int(node_tags.max()) + 1, dtype=np.int64)
        index[node_tags.astype(np.int64)] = np.arange(len(node_tags))
        cells, regions = [], []
        for s, reg in surface_region.items():
            types, etags, enodes = gmsh.model.mesh.getElements(2, s)
            for ty, et, en in zip(types, etags, enodes, strict=True):
                if ty != 2:  # 3-node triangle
                    raise RuntimeError(f"unexpected Gmsh element type {ty} on surface {s}")
                cells.append(index[en.astype(np.int64)].reshape(-1, 3))
                regions.append(np.full(len(et), reg, dtype=np.int32))
        n_curves = len(gmsh.model.getEntities(1))
    finally:
        gmsh.finalize()

    cell_arr = np.concatenate(cells)
    quality = triangle_quality(xyz.reshape(-1, 3)[:, :2], cell_arr)
    used = np.unique(cell_arr)
    # Drop nodes not used by any triangle (Gmsh keeps geometry points of tiny curves).
    remap = np.full(len(node_tags), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return TriMesh(
        points_um=xyz.reshape(-1, 3)[used, :2].copy(),
        cells=remap[cell_arr],
        region=np.concatenate(regions),
        n_faces=len(faces),
        n_absorbed=n_small,
        n_curves=n_curves,
        min_quality=float(quality.min()) if len(quality) else 0.0,
        mesh_time_s=time.perf_counter() - t0,
    )
