"""Percolation report of a tagged section: which material is connected to what.

- Electronic network: components of {nanowire, rGO, carbon black, Al} (facet-connected)
  touching the current-collector face z = 0 (the Al foil, or the bottom face of the
  freestanding membrane, where the metal spacer presses).
- Ionic network: components of {SPE, separator} touching the separator-side face z = T.
- A nanowire particle (component of the nanowire phase alone) is ion-accessible when one of
  its facets borders SPE that belongs to the separator-connected ionic network.
- Active material is *dead* when it is not electronically connected to the collector or its
  particle is not ion-accessible: it cannot take part in the reaction.

Fractions are area fractions in 2D (volume in 3D), computed on owned cells and reduced over
ranks, so they do not depend on the partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from mpi4py import MPI  # isort: split

import dolfinx
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fem.percolation import cell_components, components_touching, local_cell_sizes
from meshes.adapter import TaggedMesh
from meshes.tags import ELECTRONIC_PHASES, IONIC_PHASES, Phase
from meshes.voxels import face_cosines, face_pairs, surface_normals

__all__ = ["DepthProfile", "PercolationReport", "image_percolation", "percolation_report",
           "wire_surface_report"]


@dataclass(frozen=True)
class PercolationReport:
    electronic_connected_fraction: float  # of all electronic-phase area, to the collector
    nanowire_electronic_connected_fraction: float
    ionic_connected_fraction: float  # of all SPE area, to the separator face
    nanowire_ion_accessible_fraction: float
    active_fraction: float  # nanowire area both electronically and ionically connected
    dead_active_fraction: float  # 1 - active_fraction
    n_nanowire_particles_count: int
    n_electronic_clusters_count: int
    n_ionic_clusters_count: int
    depth_profile: DepthProfile


@dataclass(frozen=True)
class DepthProfile:
    """The same fractions per depth bin (cell centroids binned in z): where along the
    thickness the networks reach. NaN where a bin holds none of the phase."""

    z_um: np.ndarray  # bin centres
    nanowire_electronic_connected_fraction: np.ndarray
    nanowire_ion_accessible_fraction: np.ndarray
    spe_connected_fraction: np.ndarray
    active_fraction: np.ndarray


def percolation_report(tm: TaggedMesh, bin_um: float = 1.0,
                       periodic: Mapping[int, float] | None = None) -> PercolationReport:
    """Connectivity of the phases of a section or box (see :class:`PercolationReport`).
    ``periodic``: axis -> period of a box periodic in x and/or y; clusters then connect
    across those faces (a wire's contact with the electrolyte is still found on interior
    facets only)."""
    msh = tm.mesh
    comm = msh.comm
    tdim, fdim = msh.topology.dim, msh.topology.dim - 1
    n_owned = msh.topology.index_map(tdim).size_local
    area = local_cell_sizes(msh)
    tol = 1e-6 * tm.thickness_um

    def total(mask: np.ndarray) -> float:
        return float(comm.allreduce(float(area[:n_owned][mask[:n_owned]].sum()), op=MPI.SUM))

    z = tdim - 1  # through the thickness: last coordinate
    bottom = dolfinx.mesh.locate_entities_boundary(msh, fdim, lambda x: np.abs(x[z]) < tol)
    top = dolfinx.mesh.locate_entities_boundary(
        msh, fdim, lambda x: np.abs(x[z] - tm.thickness_um) < tol)
    el = cell_components(msh, tm.phase, [int(p) for p in ELECTRONIC_PHASES], periodic)
    el_ok = np.isin(el.labels, components_touching(msh, el, bottom)) & (el.labels >= 0)
    ion = cell_components(msh, tm.phase, [int(p) for p in IONIC_PHASES], periodic)
    ion_ok = np.isin(ion.labels, components_touching(msh, ion, top)) & (ion.labels >= 0)
    nw = cell_components(msh, tm.phase, [int(Phase.NANOWIRE)], periodic)

    # Interior facets between a nanowire cell and a separator-connected SPE cell.
    msh.topology.create_connectivity(fdim, tdim)
    f2c = msh.topology.connectivity(fdim, tdim)
    offsets = f2c.offsets
    interior = np.nonzero(np.diff(offsets) == 2)[0]
    c0 = f2c.array[offsets[interior]]
    c1 = f2c.array[offsets[interior] + 1]
    is_nw = tm.phase == Phase.NANOWIRE
    hits = np.concatenate([nw.labels[c0[is_nw[c0] & ion_ok[c1]]],
                           nw.labels[c1[is_nw[c1] & ion_ok[c0]]]])
    gathered = comm.allgather(np.unique(hits))
    accessible_ids = np.unique(np.concatenate(gathered)) if gathered else np.zeros(0)
    nw_access = is_nw & np.isin(nw.labels, accessible_ids)

    is_el = np.isin(tm.phase, ELECTRONIC_PHASES)
    is_ion = np.isin(tm.phase, IONIC_PHASES)
    a_el, a_ion, a_nw = total(is_el), total(is_ion), total(is_nw)

    def frac(num: float, den: float) -> float:
        return num / den if den > 0 else 0.0

    active = frac(total(is_nw & el_ok & nw_access), a_nw)
    profile = _depth_profile(msh, area, tm.thickness_um, bin_um, is_nw, is_ion, el_ok, nw_access,
                             ion_ok)
    return PercolationReport(
        electronic_connected_fraction=frac(total(el_ok), a_el),
        nanowire_electronic_connected_fraction=frac(total(is_nw & el_ok), a_nw),
        ionic_connected_fraction=frac(total(is_ion & ion_ok), a_ion),
        nanowire_ion_accessible_fraction=frac(total(nw_access), a_nw),
        active_fraction=active,
        dead_active_fraction=1.0 - active if a_nw > 0 else 0.0,
        n_nanowire_particles_count=nw.num_components,
        n_electronic_clusters_count=el.num_components,
        n_ionic_clusters_count=ion.num_components,
        depth_profile=profile,
    )


def _depth_profile(msh: dolfinx.mesh.Mesh, area: np.ndarray, thickness_um: float,
                   bin_um: float, is_nw: np.ndarray, is_ion: np.ndarray, el_ok: np.ndarray,
                   nw_access: np.ndarray, ion_ok: np.ndarray) -> DepthProfile:
    n_owned = msh.topology.index_map(msh.topology.dim).size_local
    z = msh.geometry.x[msh.geometry.dofmaps[0][:n_owned]].mean(axis=1)[:, msh.topology.dim - 1]
    n_bins = max(1, round(thickness_um / bin_um))
    edges = np.linspace(0.0, thickness_um, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, n_bins - 1)
    a = area[:n_owned]

    def binned(mask: np.ndarray) -> np.ndarray:
        local = np.bincount(idx, weights=np.where(mask[:n_owned], a, 0.0), minlength=n_bins)
        return np.asarray(msh.comm.allreduce(local, op=MPI.SUM))

    nw, spe = binned(is_nw), binned(is_ion)
    with np.errstate(invalid="ignore", divide="ignore"):
        return DepthProfile(
            z_um=0.5 * (edges[1:] + edges[:-1]),
            nanowire_electronic_connected_fraction=binned(is_nw & el_ok) / nw,
            nanowire_ion_accessible_fraction=binned(nw_access) / nw,
            spe_connected_fraction=binned(is_ion & ion_ok) / spe,
            active_fraction=binned(is_nw & el_ok & nw_access) / nw,
        )


def _image_components(mask: np.ndarray, periodic: bool) -> tuple[np.ndarray, int]:
    """Face-connected components of a 3D mask (labels 1..n, 0 outside), joined across the
    x and y faces when ``periodic``: the cells of a voxel mesh and their shared facets."""
    labels, n = ndimage.label(mask)
    if not periodic or n == 0:
        return labels, n
    a = np.concatenate([labels[0].ravel(), labels[:, 0].ravel()])
    b = np.concatenate([labels[-1].ravel(), labels[:, -1].ravel()])
    tie = (a > 0) & (b > 0)
    graph = coo_matrix((np.ones(int(tie.sum())), (a[tie], b[tie])), shape=(n + 1, n + 1))
    count, merged = connected_components(graph, directed=False)
    # renumber the merged components 1..m (0 stays outside)
    keep = np.unique(merged[1:])
    new = np.zeros(count, dtype=np.int64)
    new[keep] = np.arange(1, len(keep) + 1)
    lut = new[merged]
    lut[0] = 0
    return lut[labels], len(keep)


def _nonzero_ids(values: np.ndarray) -> np.ndarray:
    ids = np.unique(values)
    return ids[ids != 0]


class _ImageReach(NamedTuple):
    is_el: np.ndarray  # electronic voxels
    is_ion: np.ndarray  # ionic voxels
    is_nw: np.ndarray  # nanowire voxels
    el_ok: np.ndarray  # electronic voxels whose component reaches the bottom (collector) layer
    ion_ok: np.ndarray  # ionic voxels whose component reaches the top (separator) layer
    n_el: int  # electronic components
    n_ion: int  # ionic components


def _image_reach(labels: np.ndarray, periodic: bool) -> _ImageReach:
    """The phase masks of a 3D image and which electronic and ionic voxels reach their side."""
    if labels.ndim != 3:
        raise ValueError(f"labels: a 3D image expected, got shape {labels.shape}")
    is_el = np.isin(labels, [int(p) for p in ELECTRONIC_PHASES])
    is_ion = np.isin(labels, [int(p) for p in IONIC_PHASES])
    el, n_el = _image_components(is_el, periodic)
    el_ok = np.isin(el, _nonzero_ids(el[:, :, 0])) & is_el
    del el
    ion, n_ion = _image_components(is_ion, periodic)
    ion_ok = np.isin(ion, _nonzero_ids(ion[:, :, -1])) & is_ion
    return _ImageReach(is_el, is_ion, labels == int(Phase.NANOWIRE), el_ok, ion_ok,
                       int(n_el), int(n_ion))


def image_percolation(labels: np.ndarray, periodic: bool = False) -> dict[str, float]:
    """:func:`percolation_report` of a voxel image's hexahedral mesh, computed on the image
    (no mesh): the same components (voxels sharing a face; across the x and y faces too when
    ``periodic``), the collector side the bottom voxel layer, the separator side the top one,
    and ion access through faces inside the image. Cheap enough for images far finer than a
    mesh could be (a few seconds for 1e7 voxels on one process). Without the depth profile.
    """
    r = _image_reach(labels, periodic)
    is_el, is_ion, is_nw, el_ok, ion_ok = r.is_el, r.is_ion, r.is_nw, r.el_ok, r.ion_ok
    nw, n_nw = _image_components(is_nw, periodic)
    hits: list[np.ndarray] = []
    for _, a, b in face_pairs():
        w = nw[a]
        hits.append(w[(w > 0) & ion_ok[b]])
    access = is_nw & np.isin(nw, _nonzero_ids(np.concatenate(hits)))
    n_el_cells, n_ion_cells, n_nw_cells = is_el.sum(), is_ion.sum(), is_nw.sum()

    def frac(num: int, den: int) -> float:
        return float(num) / float(den) if den > 0 else 0.0

    active = frac(int(np.count_nonzero(access & el_ok)), int(n_nw_cells))
    return {
        "electronic_connected_fraction": frac(int(el_ok.sum()), int(n_el_cells)),
        "nanowire_electronic_connected_fraction": frac(int((el_ok & is_nw).sum()),
                                                       int(n_nw_cells)),
        "ionic_connected_fraction": frac(int(ion_ok.sum()), int(n_ion_cells)),
        "nanowire_ion_accessible_fraction": frac(int(access.sum()), int(n_nw_cells)),
        "active_fraction": active,
        "dead_active_fraction": 1.0 - active if n_nw_cells > 0 else 0.0,
        "n_nanowire_particles_count": int(n_nw),
        "n_electronic_clusters_count": r.n_el,
        "n_ionic_clusters_count": r.n_ion,
    }


def wire_surface_report(labels: np.ndarray, periodic: bool = False,
                        voxel_um: float | None = None, *,
                        slab_layers: int = 64) -> dict[str, float]:
    """How much of the wire surface of a voxel image can react, counted in voxel faces.

    The faces between a nanowire voxel and a voxel of another phase (inside the image; a
    periodic seam is not a face, as in the half cell) are the wire surface. Of those:

    - ``wire_electrolyte_faces_count``: the other voxel is ionic (SPE or separator): the
      half cell's interface facets (:class:`fem.electrochem.halfcell.HalfCell`
      ``interface_facets_count`` on the image's hexahedral mesh);
    - ``wire_electrolyte_connected_faces_count``: and the ionic voxel belongs to a component
      that reaches the top (separator) layer: the half cell's
      ``connected_interface_facets_count`` with ``electronic="ideal"``;
    - ``wire_electrolyte_active_faces_count``: and the wire voxel's electronic component
      reaches the bottom (collector) layer: the same count with ``electronic="resolved"``.

    The ``*_ratio`` keys divide by the wire surface; unlike the per-particle fractions of
    :func:`image_percolation` they do not count a cluster of touching wires as reached
    whole when the polymer touches it anywhere, so they can be compared across voxel sizes
    (the staircase surface of a voxelized wire is larger than the wire's; the ratios divide
    that out to first order).

    With ``voxel_um``, the same four surfaces as areas (``wire_surface_area_um2``,
    ``wire_electrolyte_area_um2``, ``..._connected_area_um2``, ``..._active_area_um2``):
    every face weighted by the cosine between its normal and the wire surface normal
    estimated from the image (:func:`meshes.voxels.face_area_weights`), so that they stand
    for the round surface, not its staircase; the connected and active areas are those the
    half cell reacts through with ``electrochemistry.voxel_surface = "weighted"``
    (``HalfCell.connected_interface_area_um2``, ideal and resolved). The normals are
    estimated ``slab_layers`` z-layers at a time (:func:`meshes.voxels.surface_normals`
    with ``box``), so their memory is that of a slab, not of the image; the result does not
    depend on it."""
    r = _image_reach(labels, periodic)
    is_ion, is_nw, el_ok, ion_ok = r.is_ion, r.is_nw, r.el_ok, r.ion_ok
    counts = np.zeros(4, dtype=np.int64)
    areas = np.zeros(4)
    nz = labels.shape[2]
    # Slabs of whole z-layers: the normals (12 bytes per voxel and the Gaussian's work
    # arrays) are estimated for one slab and the layer on either side at a time; a face
    # belongs to the slab of its wire voxel. The same faces and values as the whole image.
    if isinstance(slab_layers, bool) or not isinstance(slab_layers, int | np.integer) \
            or slab_layers < 1:
        raise ValueError(f"slab_layers = {slab_layers!r}: must be an integer >= 1")
    step = int(slab_layers)
    for z0 in range(0, nz, step):
        z1 = min(z0 + step, nz)
        e0, e1 = max(z0 - 1, 0), min(z1 + 1, nz)
        ext = (slice(None), slice(None), slice(e0, e1))
        normals = (None if voxel_um is None else surface_normals(
            labels, [int(Phase.NANOWIRE)], periodic=periodic,
            box=((0, labels.shape[0]), (0, labels.shape[1]), (e0, e1))))
        nw_s, ion_s, ion_ok_s, el_ok_s = is_nw[ext], is_ion[ext], ion_ok[ext], el_ok[ext]
        for axis, a, b in face_pairs():
            # a wire voxel of this slab, its neighbour b of another phase (the z index of
            # x[a] starts at a[2].start: face_pairs slices start at None, 0 or 1)
            layer = e0 + (a[2].start or 0) + np.arange(nw_s[a].shape[2])
            own = ((layer >= z0) & (layer < z1))[None, None, :]
            wire = nw_s[a] & ~nw_s[b] & own
            ion_b = wire & ion_s[b]
            conn = ion_b & ion_ok_s[b]
            masks = (wire, ion_b, conn, conn & el_ok_s[a])
            counts += [np.count_nonzero(m) for m in masks]
            if normals is not None:
                # only at the wire faces (every mask is a part of them)
                weight = face_cosines(0.5 * (normals[(slice(None), *a)][:, wire]
                                             + normals[(slice(None), *b)][:, wire]), axis)
                areas += [float(weight[m[wire]].sum()) for m in masks]
    surface, ion_faces, connected, active = (int(c) for c in counts)

    def ratio(num: int) -> float:
        return num / surface if surface > 0 else 0.0

    report: dict[str, float] = {
        "wire_surface_faces_count": surface,
        "wire_electrolyte_faces_count": ion_faces,
        "wire_electrolyte_connected_faces_count": connected,
        "wire_electrolyte_active_faces_count": active,
        "wire_surface_electrolyte_ratio": ratio(ion_faces),
        "wire_surface_connected_ratio": ratio(connected),
        "wire_surface_active_ratio": ratio(active),
    }
    if voxel_um is not None:
        names = ("wire_surface", "wire_electrolyte", "wire_electrolyte_connected",
                 "wire_electrolyte_active")
        report.update({f"{n}_area_um2": float(v) * voxel_um ** 2
                       for n, v in zip(names, areas, strict=True)})
    return report
