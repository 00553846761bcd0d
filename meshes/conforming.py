"""Conforming tetrahedral meshes of 3D boxes of the gradient membrane (Gmsh, OCC kernel).

The box is cut from the same realization (spec + seed) as the voxel boxes
(:mod:`meshes.voxels`) and the 2D sections. Every wire is a flat-ended OCC cylinder; the
cylinders and the box are fragmented in one OCC call, so every wire/polymer interface and
every wire/wire contact is a surface shared by the cells on both sides. The 20 nm SPE coating
and the SPE/void split of the pore are *cell labels*, not mesh surfaces: a cell is coating SPE
when its centroid lies within ``coating_thickness_um`` of a wire surface, and otherwise SPE
where Phi(g) < f(z) at its centroid (the voxel image applies the same rules at voxel
centres). In a box inside the fully filled part of the membrane (f = 1, everything above the
lean zone) both are SPE, so the mesh is conforming to every phase boundary there.

Contacts by design
------------------
The realization is a Boolean model: wires interpenetrate, and the overlap *is* the contact.
Some of the many pairs in a box are always nearly tangent (overlap depth or gap far below the
element size); OCC then makes sliver faces and the volume mesher fails or leaves flat cells.
:func:`design_contacts` removes every such configuration *before* any OCC call, by small
rigid shifts of the wires: for each pair with tangency distance T (``r_i + r_j`` outside,
``|r_i - r_j|`` inside), the distance d of the two axes must lie outside the band
``(T - min_overlap, T + min_gap)``: the cylinders either cross by at least ``min_overlap``
(a contact patch about ``2 sqrt(r min_overlap)`` wide) or keep at least ``min_gap`` apart.
Wires that run along a box face obey the same rule with the face; a wire that *ends* near a
face is shortened or lengthened instead. Pair shifts go along the common normal, half to each
wire, averaged over the pairs of a wire, and repeat in sweeps. The band widths are tried in a
fixed sequence (:data:`DESIGN_LADDER`) until the design converges and Gmsh meshes the result,
then again on wires jittered by a few nm (:data:`JITTER_SD`, seeded by the box seed), so the
same spec and seed always give the same mesh; :class:`ConformingError` (one line) reports a
box that none of them meshes with every cell of quality >= :data:`MIN_QUALITY`. The shifts,
the contacts and the wire clusters are reported with the mesh.

Scope: the gradient membrane's wires and pore inside its composite layer. rGO sheets (20 nm
discs) and the tape-cast cathode's carbon-black aggregates are voxel-only, and a spec that
has them is refused with a one-line error. The cost is the other limit: with 30 nm elements
at the wires, 13 vol% of 100 nm wires take 2.5e5-3.5e5 tetrahedra per um3, so conforming
boxes are verification-sized (about 1 um); production 3D runs use voxel boxes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import special
from scipy.sparse.csgraph import connected_components

from meshes.fill import gaussian_field, gradient_fill
from meshes.realization import Wires, realize_gradient
from meshes.rods import rod_contacts, segment_closest_points
from meshes.spec import CaseSpec, SpecError
from meshes.tags import Phase
from meshes.voxels import VoxelImage, box_window, cathode_layers_um, voxelize

__all__ = ["DESIGN_LADDER", "JITTER_ROUNDS", "JITTER_SD", "MIN_QUALITY", "ConformingBox",
           "ConformingError",
           "ContactReport", "WireSegments", "check_conforming_scope", "clip_wires",
           "design_contacts", "mesh_conforming_box", "tet_quality", "voxelize_designed"]


class ConformingError(SpecError):
    """The box cannot be meshed conformingly at the asked settings (one line, names why)."""


@dataclass(frozen=True)
class WireSegments:
    """Wire axes as segments ``a_um -> b_um`` (n, 3), radii (n,) um, and the index of the
    realization wire each segment comes from."""

    a_um: np.ndarray
    b_um: np.ndarray
    radii_um: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return int(self.radii_um.shape[0])

    def as_wires(self, extra_radius_um: float = 0.0) -> Wires:
        d = self.b_um - self.a_um
        length = np.linalg.norm(d, axis=1)
        axes = d / np.maximum(length, 1e-300)[:, None]
        return Wires(0.5 * (self.a_um + self.b_um), axes, length,
                     self.radii_um + extra_radius_um)


def clip_wires(wires: Wires, lo_um: np.ndarray, hi_um: np.ndarray, pad_um: float
               ) -> WireSegments:
    """The parts of the wire axes inside the box ``[lo, hi]`` grown by ``r + pad_um``.

    With ``pad_um > 0`` every kept end cap that was cut lies outside the box, so the box faces
    cut the cylinders' mantles only; caps of wires that end inside the box are kept.
    """
    c, d = wires.centers_um, wires.axes
    r = wires.radii_um
    half = 0.5 * wires.lengths_um
    t_lo, t_hi = -half.copy(), half.copy()
    grow = r + pad_um
    for k in range(3):
        dk = d[:, k]
        flat = np.abs(dk) < 1e-12
        safe = np.where(flat, 1.0, dk)
        t1 = (lo_um[k] - grow - c[:, k]) / safe
        t2 = (hi_um[k] + grow - c[:, k]) / safe
        inside = (c[:, k] >= lo_um[k] - grow) & (c[:, k] <= hi_um[k] + grow)
        lo_k = np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
        hi_k = np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
        t_lo, t_hi = np.maximum(t_lo, lo_k), np.minimum(t_hi, hi_k)
    keep = np.nonzero(t_hi > t_lo)[0]
    return WireSegments(c[keep] + t_lo[keep, None] * d[keep], c[keep] + t_hi[keep, None] * d[keep],
                        r[keep].copy(), keep)


@dataclass(frozen=True)
class ContactReport:
    """What :func:`design_contacts` did and the wire network it left."""

    wires_count: int
    #: overlapping wire pairs (capsule distance of the axes below r_i + r_j; the design keeps
    #: every such overlap at least min_overlap deep)
    contacts_count: int
    contacts_per_wire: float
    moved_count: int  #: wires shifted
    max_shift_um: float
    mean_shift_um: float  #: over the moved wires
    sweeps: int
    clusters_count: int  #: connected wire networks (through contacts)
    largest_cluster_fraction: float  #: share of the wires in the largest network
    min_overlap_um: float
    min_gap_um: float
    #: wires whose end inside the box was moved along the axis at a box face (shortened or
    #: lengthened; ends outside the box lengthened to clear a face are not counted)
    trimmed_count: int = 0
    max_trim_um: float = 0.0


def _unit_normal(u: np.ndarray, axis_i: np.ndarray, axis_j: np.ndarray) -> np.ndarray:
    """Normalise u row-wise; rows of (near) zero length (intersecting axes) get the common
    normal of the two axes, or a direction normal to axis_i where they are parallel."""
    norm = np.linalg.norm(u, axis=1)
    small = norm < 1e-9
    if np.any(small):
        u = u.copy()
        trial = np.cross(axis_i[small], axis_j[small])
        bad = np.linalg.norm(trial, axis=1) < 1e-6 * np.linalg.norm(axis_i[small], axis=1)
        trial[bad] = np.cross(axis_i[small][bad], np.array([0.0, 0.0, 1.0]))
        worse = np.linalg.norm(trial, axis=1) < 1e-12
        trial[worse] = np.cross(axis_i[small][worse], np.array([1.0, 0.0, 0.0]))
        u[small] = trial
        norm = np.linalg.norm(u, axis=1)
    return np.asarray(u / norm[:, None])


def _nearest_allowed(d: np.ndarray, bands_lo: np.ndarray, bands_hi: np.ndarray,
                     margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether d lies in one of the bands (lo, hi) (shape (m, k)), and the nearest
    distance >= 0 outside every band, moved ``margin`` past the band edge it leaves by."""
    bad = np.any((d[:, None] > bands_lo) & (d[:, None] < bands_hi), axis=1)
    cand = np.concatenate([d[:, None], bands_lo - margin, bands_hi + margin], axis=1)
    cand = np.where(cand < 0.0, np.inf, cand)
    ok = ~np.any((cand[:, :, None] > bands_lo[:, None, :] - 0.5 * margin)
                 & (cand[:, :, None] < bands_hi[:, None, :] + 0.5 * margin), axis=2)
    ok[:, 0] = ~bad  # d itself: only if it is outside every band (no margin needed)
    cost = np.where(ok & np.isfinite(cand), np.abs(cand - d[:, None]), np.inf)
    goal = cand[np.arange(len(d)), np.argmin(cost, axis=1)]
    return bad, goal


def design_contacts(seg: WireSegments, *, lo_um: np.ndarray, hi_um: np.ndarray,
                    min_overlap_um: float, min_gap_um: float, max_sweeps: int = 2000
                    ) -> tuple[WireSegments, ContactReport]:
    """Shift (and at box faces shorten or lengthen) wires until every pair of wires and
    every wire/box-face configuration is meshable (see the module docstring). Raises
    :class:`ConformingError` when ``max_sweeps`` sweeps leave bad configurations."""
    if min_overlap_um <= 0.0 or min_gap_um <= 0.0:
        raise ValueError("min_overlap_um and min_gap_um must be > 0")
    a, b, r = seg.a_um.copy(), seg.b_um.copy(), seg.radii_um
    n = len(r)
    shift_total = np.zeros((n, 3))
    trim_total = np.zeros(n)  # largest change of a wire end's position along its axis
    margin = 0.5 * min(min_overlap_um, min_gap_um)
    bad_count = 0
    sweeps = 0
    for sweep in range(1, max_sweeps + 1):
        sweeps = sweep
        cur = WireSegments(a, b, r, seg.source)
        pairs = rod_contacts(cur.as_wires(0.5 * min_gap_um + margin))
        move = np.zeros((n, 3))
        count = np.zeros(n)
        bad_count = 0
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            d, s, t = segment_closest_points(a[i], b[i], a[j], b[j])
            u = _unit_normal((a[j] + t[:, None] * (b[j] - a[j]))
                             - (a[i] + s[:, None] * (b[i] - a[i])), b[i] - a[i],
                             b[j] - a[j])
            T = np.stack([r[i] + r[j], np.abs(r[i] - r[j])], axis=1)
            bad, goal = _nearest_allowed(d, T - min_overlap_um, T + min_gap_um, margin)
            bad_count += int(bad.sum())
            delta = 0.5 * (d[bad] - goal[bad])[:, None] * u[bad]  # + moves i towards j
            np.add.at(move, i[bad], delta)
            np.add.at(move, j[bad], -delta)
            np.add.at(count, i[bad], 1)
            np.add.at(count, j[bad], 1)
        # average, not sum, the moves one wire gets from several pairs (a sum overshoots and
        # the sweeps oscillate)
        move /= np.maximum(count, 1.0)[:, None]
        a += move
        b += move
        shift_total += move
        # box faces are hard constraints: projected fully after the pair moves
        move = np.zeros((n, 3))
        trim = trim_total
        axis = b - a
        length = np.maximum(np.linalg.norm(axis, axis=1), 1e-300)
        for k in range(3):
            # half-width of each cylinder across a plane normal to k
            sin_k = np.sqrt(np.clip(1.0 - (axis[:, k] / length) ** 2, 0.0, 1.0))
            for plane, sign in ((lo_um[k], 1.0), (hi_um[k], -1.0)):
                da, db = sign * (a[:, k] - plane), sign * (b[:, k] - plane)
                crossing = da * db < 0.0
                near = np.where(np.abs(da) < np.abs(db), da, db)  # signed, + inside
                E = (r * sin_k)[:, None]
                dist = np.abs(near)
                wbad, goal = _nearest_allowed(dist, E - min_overlap_um, E + min_gap_um,
                                              margin)
                wbad &= ~crossing
                bad_count += int(wbad.sum())
                # a wire that ends near the face (not parallel to it): move that end along
                # the axis, shortened to clear the face or lengthened to cross it, whichever
                # is the smaller change; a wire (nearly) parallel to the face: shift it
                cos_k = np.abs(axis[:, k]) / length
                tilted = wbad & (cos_k >= 0.2)
                shift = wbad & ~tilted
                move[shift, k] += sign * np.sign(near[shift]) * (goal[shift] - dist[shift])
                rim = r * sin_k
                for q in np.nonzero(tilted)[0]:
                    a_end = abs(da[q]) < abs(db[q])
                    end, other = (a, b) if a_end else (b, a)
                    inward = (end[q] - other[q]) / length[q]  # unit, from the other end
                    step_k = sign * inward[k]  # change of signed distance per unit length
                    clear = rim[q] + 1.5 * min_gap_um  # cap clear of the face, inside
                    beyond = -(rim[q] + 1.5 * min_gap_um)  # cap clear of it, outside
                    options = [(c - near[q]) / step_k for c in (clear, beyond)]
                    options = [o for o in options if length[q] + o > 2.0 * min_gap_um]
                    if options:
                        change = min(options, key=abs)
                        end[q] += change * inward
                        trim[q] = max(trim[q], abs(change))
                # a wire that crosses the face: the cap of its outside end must clear the
                # face too (it lies outside, so lengthening that end is harmless)
                for end in (a, b):
                    s_end = sign * (end[:, k] - plane)  # + inside
                    rim_out = -s_end - rim  # gap between the outside cap's rim and the face
                    cbad = crossing & (s_end < 0.0) & (rim_out > -min_overlap_um) \
                        & (rim_out < min_gap_um)
                    bad_count += int(cbad.sum())
                    for q in np.nonzero(cbad)[0]:
                        other = b[q] if end is a else a[q]
                        outward = (end[q] - other) / length[q]
                        change = (1.5 * min_gap_um - rim_out[q]) / max(cos_k[q], 1e-6)
                        end[q] += change * outward  # outside the box: not a trim
        if bad_count == 0:
            break
        a += move
        b += move
        shift_total += move
    else:
        raise ConformingError(
            f"contact design: {bad_count} nearly tangent wire pairs or faces left after "
            f"{max_sweeps} sweeps; the wire density is too high for meshable contacts at "
            f"min_overlap_um = {min_overlap_um:g} and min_gap_um = {min_gap_um:g}")
    out = WireSegments(a, b, r, seg.source)
    pairs = rod_contacts(out.as_wires())
    moved = np.linalg.norm(shift_total, axis=1)
    if n:
        graph = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                              shape=(n, n)) if len(pairs) else sp.csr_matrix((n, n))
        n_comp, labels = connected_components(graph, directed=False)
        largest = float(np.bincount(labels).max()) / n
    else:
        n_comp, largest = 0, 0.0
    report = ContactReport(
        wires_count=n, contacts_count=len(pairs),
        contacts_per_wire=2.0 * len(pairs) / n if n else 0.0,
        moved_count=int(np.count_nonzero(moved > 0.0)),
        max_shift_um=float(moved.max(initial=0.0)),
        trimmed_count=int(np.count_nonzero(trim_total > 0.0)),
        max_trim_um=float(trim_total.max(initial=0.0)),
        mean_shift_um=float(moved[moved > 0].mean()) if np.any(moved > 0) else 0.0,
        sweeps=sweeps, clusters_count=int(n_comp), largest_cluster_fraction=largest,
        min_overlap_um=min_overlap_um, min_gap_um=min_gap_um)
    return out, report


def tet_quality(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Mean-ratio quality ``12 (3 |V|)^(2/3) / sum(edge^2)`` with the sign of the volume:
    1 for the regular tetrahedron, 0 flat, < 0 inverted."""
    p = points[cells]
    e = [p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0],
         p[:, 2] - p[:, 1], p[:, 3] - p[:, 1], p[:, 3] - p[:, 2]]
    vol = np.einsum("ij,ij->i", e[0], np.cross(e[1], e[2])) / 6.0
    s = sum(np.einsum("ij,ij->i", v, v) for v in e)
    return np.asarray(np.sign(vol) * 12.0 * np.cbrt(3.0 * np.abs(vol)) ** 2 / s)


#: band widths (min_overlap, min_gap) of the contact design as fractions of the element size
#: at the wires, tried in this order until the design converges and Gmsh meshes the box
DESIGN_LADDER: tuple[tuple[float, float], ...] = ((1 / 3, 1 / 2), (1 / 4, 2 / 5), (1 / 2, 3 / 4),
                                                  (2 / 3, 1.0), (1 / 5, 3 / 10),
                                                  (3 / 20, 1 / 4))
#: then, when no band width works (tiny pieces where wires pass near a box edge or corner,
#: which the pair and face rules do not see), the ladder is run again on wires jittered by
#: independent normal shifts of this standard deviation (fraction of the element size),
#: from a generator seeded by (box.seed, round): at most this many rounds
JITTER_SD: float = 0.25
JITTER_ROUNDS: int = 3
#: an attempt whose mesh has a cell of lower quality (mean ratio, 1 for the regular
#: tetrahedron) counts as failed: such slivers sit in the polymer wedge where two wire
#: surfaces meet at a small angle, and narrower bands or a jitter avoid them
MIN_QUALITY: float = 1e-3


@dataclass(frozen=True)
class ConformingBox:
    """A conforming tetrahedral mesh of a box on one process, in the box's own frame
    (x, y in [0, size], z in [0, height], um); ``origin_um`` is the box corner in the
    realization's frame. ``phase`` per cell (:class:`meshes.tags.Phase`)."""

    points_um: np.ndarray
    cells: np.ndarray
    phase: np.ndarray
    kind: str
    size_um: float
    height_um: float
    origin_um: tuple[float, float, float]
    wires: Wires  #: the designed wires clipped to the box (realization frame)
    contacts: ContactReport
    stats: dict[str, float] = field(default_factory=dict)


def check_conforming_scope(case: CaseSpec, kind: str) -> None:
    """Raise :class:`ConformingError` (one line) when ``case.box`` of cathode ``kind``
    cannot be a conforming box; cheap, so callers run it before making any folder."""
    if kind != "gradient":
        raise ConformingError(f"cathode = {kind!r}: conforming boxes (box.mesh = "
                              f"'conforming') are built for the gradient membrane only "
                              f"(--cathode gradient); carbon-black aggregates and rGO discs "
                              f"are voxel-only")
    if case.gradient.rgo_wt_fraction > 0.0:
        raise ConformingError(
            f"gradient.rgo_wt_fraction = {case.gradient.rgo_wt_fraction:g}: conforming "
            f"boxes do not model rGO sheets; must be 0 (voxel boxes model them)")
    (_, _, z0), _, height = box_window(case, kind)
    zc0, zc1, _ = cathode_layers_um(case, kind)
    if z0 < zc0 - 1e-9 or z0 + height > zc1 + 1e-9:
        raise ConformingError(
            f"box: z from {z0:g} to {z0 + height:g} um leaves the composite layer "
            f"[{zc0:g}, {zc1:g}] um; conforming boxes must lie inside it (move "
            f"box.z_center_fraction or lower box.height_um)")


def mesh_conforming_box(case: CaseSpec, kind: str = "gradient", *,
                        size_fine_um: float | None = None, size_coarse_um: float = 0.1,
                        design_size_um: float | None = None, threads: int = 1
                        ) -> ConformingBox:
    """Conforming tetrahedral mesh of ``case.box`` (its size, height, depth and seed).

    Elements of ``size_fine_um`` (default ``box.conforming_size_um``) on the wire surfaces
    grow to ``size_coarse_um`` in the pore. The contact design's bands scale with
    ``design_size_um`` (default: the element size), so the designed geometry depends on it;
    a mesh-convergence study keeps it fixed while ``size_fine_um`` shrinks. Raises
    :class:`ConformingError` (one line) when the box is out of scope or no attempt (every
    entry of :data:`DESIGN_LADDER`, then :data:`JITTER_ROUNDS` jittered rounds of it) gives
    a mesh whose cells all have quality >= :data:`MIN_QUALITY`.
    """
    if size_fine_um is None:
        size_fine_um = case.box.conforming_size_um
    design = size_fine_um if design_size_um is None else design_size_um
    if not (0.0 < size_fine_um <= size_coarse_um) or design <= 0.0:
        raise ConformingError(f"size_fine_um = {size_fine_um:g}, size_coarse_um = "
                              f"{size_coarse_um:g}, design_size_um = {design:g}: must satisfy "
                              f"0 < fine <= coarse and design > 0")
    check_conforming_scope(case, kind)
    origin, size, height = box_window(case, kind)
    lo = np.asarray(origin, dtype=np.float64)
    hi = lo + np.array([size, size, height])
    g = case.gradient
    real = realize_gradient(g, (0.0, size, 0.0, size), case.box.seed)
    t0 = time.perf_counter()
    clipped = clip_wires(real.wires, lo, hi, pad_um=design)
    r_mean = float(clipped.radii_um.mean()) if len(clipped) else 0.05
    # the spec's contact width between crossing cylinders (w = 2 sqrt(r p))
    spec_overlap = g.contact_width_um**2 / (4.0 * r_mean)
    failures = []
    attempts = 0
    jitter_um = 0.0
    meshed = None
    for round_ in range(JITTER_ROUNDS + 1):
        start = clipped
        if round_:
            rng = np.random.default_rng([case.box.seed, round_])
            shift = rng.normal(0.0, JITTER_SD * design, size=(len(clipped), 3))
            start = replace(clipped, a_um=clipped.a_um + shift, b_um=clipped.b_um + shift)
        for f_overlap, f_gap in DESIGN_LADDER:
            attempts += 1
            min_overlap = max(spec_overlap, f_overlap * design)
            min_gap = f_gap * design
            try:
                seg, report = design_contacts(start, lo_um=lo, hi_um=hi,
                                              min_overlap_um=min_overlap, min_gap_um=min_gap)
                t_design = time.perf_counter() - t0
                meshed = _occ_mesh(lo, hi, seg, size_fine_um, size_coarse_um, threads)
                q = tet_quality(meshed[0], meshed[1])
                q_min = float(np.abs(q).min(initial=1.0))
                if q_min < MIN_QUALITY:
                    meshed = None
                    raise ConformingError(f"minimum element quality {q_min:.2g} < "
                                          f"{MIN_QUALITY:g}")
                break
            except ConformingError as e:
                failures.append(str(e))
        if meshed is not None:
            jitter_um = (float(np.linalg.norm(start.a_um - clipped.a_um, axis=1).max(initial=0))
                         if round_ else 0.0)
            break
    if meshed is None:
        raise ConformingError(
            f"box.seed = {case.box.seed}: no meshable contact design in {attempts} attempts "
            f"(last: {failures[-1]}); use voxel boxes, or another seed")
    points, cells, region, t_geo, t_mesh, n_vol = meshed
    neg = q < 0  # the quality of the accepted attempt, signed by the cell orientation
    cells[neg] = cells[neg][:, [0, 2, 1, 3]]  # positive orientation
    q = np.abs(q)
    designed = seg.as_wires()
    phase = np.where(region == 1, int(Phase.NANOWIRE), int(Phase.SPE)).astype(np.int32)
    pore = np.nonzero(region != 1)[0]
    if len(pore):
        cen = points[cells[pore]].mean(axis=1)
        coated = _within_coated_wire(designed, cen, g.coating_thickness_um)
        free = pore[~coated]
        if len(free):
            gfield = gaussian_field(cen[~coated], (size, size, height), g.fill_correlation_um,
                                    case.box.seed, origin_um=tuple(float(o) for o in lo))
            f = gradient_fill(cen[~coated, 2], lean_zone_um=g.lean_zone_um, fill_min=g.fill_min)
            phase[free[special.ndtr(gfield) >= f]] = int(Phase.VOID)
    vol = _volumes(points, cells)
    total = float(vol.sum())
    stats = {
        "cells_count": float(len(cells)), "vertices_count": float(len(points)),
        "volumes_count": float(n_vol), "design_attempts": float(attempts),
        "jitter_max_um": jitter_um,
        "min_quality": float(q.min(initial=1.0)),
        "quality_p001": float(np.percentile(q, 0.1)) if len(q) else 1.0,
        "quality_p01": float(np.percentile(q, 1)) if len(q) else 1.0,
        "mean_quality": float(q.mean()) if len(q) else 1.0,
        "cells_below_0.01_count": float(np.count_nonzero(q < 0.01)),
        "min_cell_volume_um3": float(vol.min(initial=np.inf)),
        "box_volume_error_rel": abs(total - size * size * height) / (size * size * height),
        "design_time_s": t_design, "design_size_um": design, "geometry_time_s": t_geo,
        "mesh_time_s": t_mesh,
        "size_fine_um": size_fine_um, "size_coarse_um": size_coarse_um,
    }
    for p in (Phase.NANOWIRE, Phase.SPE, Phase.VOID):
        stats[f"{p.label}_fraction"] = float(vol[phase == int(p)].sum()) / total
    stats["target_nanowire_fraction"] = real.target_fractions["nanowire"]
    return ConformingBox(points_um=points - lo, cells=cells, phase=phase, kind=kind,
                         size_um=size, height_um=height,
                         origin_um=(float(lo[0]), float(lo[1]), float(lo[2])),
                         wires=designed, contacts=report, stats=stats)


def _volumes(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    p = points[cells]
    return np.asarray(np.abs(np.einsum("ij,ij->i", p[:, 1] - p[:, 0],
                                       np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))) / 6.0)


def _occ_mesh(lo: np.ndarray, hi: np.ndarray, seg: WireSegments, fine: float, coarse: float,
              threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, int]:
    """Fragment the wire cylinders (region 1) and the box (region 3, pore) in one OCC call,
    keep the pieces inside the box and mesh them. Returns points, cells, region per cell,
    geometry and mesh times and the volume count."""
    import gmsh

    t0 = time.perf_counter()
    gmsh.initialize(interruptible=False)
    try:
        return _occ_mesh_in_session(gmsh, lo, hi, seg, fine, coarse, threads, t0)
    except ConformingError:
        raise
    except Exception as e:  # any Gmsh/OCC failure: one line, and the ladder goes on
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConformingError(f"gmsh: {first}") from None
    finally:
        gmsh.finalize()


def _occ_mesh_in_session(gmsh: Any, lo: np.ndarray, hi: np.ndarray, seg: WireSegments,
                         fine: float, coarse: float, threads: int, t0: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, int]:
    """The body of :func:`_occ_mesh`, inside an initialised Gmsh session."""
    gmsh.option.setNumber("General.Terminal", 1 if _verbose() else 0)
    gmsh.option.setNumber("General.NumThreads", max(1, threads))
    gmsh.model.add("conforming_box")
    occ = gmsh.model.occ
    inputs = [(3, occ.addCylinder(*seg.a_um[k], *(seg.b_um[k] - seg.a_um[k]),
                                  seg.radii_um[k])) for k in range(len(seg))]
    inputs.append((3, occ.addBox(*lo, *(hi - lo))))
    _, out_map = occ.fragment(inputs[:1], inputs[1:])
    occ.synchronize()
    wire_pieces = {tag for children in out_map[:-1] for dim, tag in children if dim == 3}
    # The pieces inside the box are exactly the box's children in the fragment (a test on
    # a piece's centre of mass is not enough: an outside piece can wrap around a box edge).
    inside = {tag for dim, tag in out_map[-1] if dim == 3}
    keep = {tag: (1 if tag in wire_pieces else 3) for tag in inside}
    outside = [(3, tag) for dim, tag in gmsh.model.getEntities(3) if tag not in inside]
    # non-recursive removal: the recursive one costs O(n^2) in OCC's bookkeeping; then
    # the surfaces, curves and points of the removed pieces that no kept piece uses
    occ.remove(outside, recursive=False)
    occ.synchronize()
    kept = [(3, t) for t in keep]
    bound = set(gmsh.model.getBoundary(kept, combined=False, oriented=False))
    bound |= set(gmsh.model.getBoundary(sorted(bound), combined=False, oriented=False))
    bound |= set(gmsh.model.getBoundary(sorted(bound), combined=False, oriented=False))
    orphans = [e for dim in (2, 1, 0) for e in gmsh.model.getEntities(dim)
               if e not in bound]
    if orphans:
        occ.remove(orphans, recursive=False)
        occ.synchronize()
    solid = [(3, t) for t, reg in keep.items() if reg == 1]
    fine_pts = {p for p in gmsh.model.getBoundary(solid, combined=False, oriented=False,
                                                  recursive=True) if p[0] == 0}
    gmsh.model.mesh.setSize(gmsh.model.getEntities(0), coarse)
    gmsh.model.mesh.setSize(sorted(fine_pts), fine)
    gmsh.option.setNumber("Mesh.MeshSizeMin", 0.5 * fine)
    gmsh.option.setNumber("Mesh.MeshSizeMax", coarse)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 12)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 1)
    gmsh.option.setNumber("Mesh.Algorithm3D", 10)  # HXT
    t1 = time.perf_counter()
    with _c_output_hidden():
        gmsh.model.mesh.generate(3)
    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    if len(node_tags) == 0:
        raise ConformingError("gmsh: no mesh nodes")
    index = np.full(int(node_tags.max()) + 1, -1, dtype=np.int64)
    index[node_tags.astype(np.int64)] = np.arange(len(node_tags))
    points = coords.reshape(-1, 3)
    cells_list, region_list = [], []
    for tag, reg in keep.items():
        types, _, conn = gmsh.model.mesh.getElements(3, tag)
        n_here = 0
        for etype, c in zip(types, conn, strict=True):
            if etype != 4:
                raise ConformingError(f"gmsh: volume {tag} has element type {etype}, "
                                      f"expected tetrahedra")
            cells_list.append(index[c.astype(np.int64)].reshape(-1, 4))
            region_list.append(np.full(len(cells_list[-1]), reg, dtype=np.int32))
            n_here += len(cells_list[-1])
        if n_here == 0:
            raise ConformingError(f"gmsh: volume {tag} was not meshed")
    t2 = time.perf_counter()
    cells = np.concatenate(cells_list)
    region = np.concatenate(region_list)
    used = np.unique(cells)
    remap = np.full(len(points), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return (np.ascontiguousarray(points[used]), remap[cells], region, t1 - t0, t2 - t1,
            len(keep))


@contextlib.contextmanager
def _c_output_hidden() -> Iterator[None]:
    """Hide what C code prints on the process's stdout and stderr (HXT reports the surface
    meshes it rejects there, which a failed attempt of the design ladder would leave on the
    user's terminal); ``GMSH_VERBOSE=1`` shows it."""
    if _verbose():
        yield
        return
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    libc.fflush(None)
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        libc.fflush(None)  # what C code buffered goes to /dev/null, not after the restore
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _verbose() -> bool:
    """``GMSH_VERBOSE`` set to anything but empty or 0 shows Gmsh's log and messages."""
    return os.environ.get("GMSH_VERBOSE", "0").strip() not in ("", "0")


def _within_coated_wire(w: Wires, pts: np.ndarray, coating: float) -> np.ndarray:
    """Points inside a coated wire: a flat-ended cylinder of radius r + coating (the wire
    itself included)."""
    out = np.zeros(len(pts), dtype=bool)
    for c, ax, ln, r in zip(w.centers_um, w.axes, w.lengths_um, w.radii_um, strict=True):
        rel = pts - c
        along = rel @ ax
        radial2 = np.einsum("ij,ij->i", rel, rel) - along**2
        out |= (np.abs(along) <= 0.5 * ln) & (radial2 <= (r + coating) ** 2)
    return out


def voxelize_designed(box: ConformingBox, case: CaseSpec, voxel_um: float) -> VoxelImage:
    """The voxel image of the *same* geometry as a conforming box (its designed wires, the
    coating and fill rules at voxel centres), for voxel-vs-conforming comparisons."""
    g = case.gradient
    n = round(box.size_um / voxel_um)
    nz = round(box.height_um / voxel_um)
    if abs(n * voxel_um - box.size_um) > 1e-6 * box.size_um or \
            abs(nz * voxel_um - box.height_um) > 1e-6 * box.height_um:
        raise ConformingError(f"voxel_um = {voxel_um:g}: must divide the box "
                              f"({box.size_um:g} x {box.height_um:g} um) into whole voxels")
    real = realize_gradient(g, (0.0, box.size_um, 0.0, box.size_um), case.box.seed)
    real = replace(real, wires=box.wires)
    img = voxelize(real, box.origin_um, (n, n, nz), voxel_um, coating_um=0.0,
                   fill="gradient", fill_min=g.fill_min, lean_zone_um=g.lean_zone_um,
                   correlation_um=g.fill_correlation_um, seed=case.box.seed)
    grid = [box.origin_um[k] + (np.arange(s) + 0.5) * voxel_um
            for k, s in enumerate((n, n, nz))]
    X, Y, Z = np.meshgrid(*grid, indexing="ij")
    centres = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)
    coated = _within_coated_wire(box.wires, centres, g.coating_thickness_um).reshape(n, n, nz)
    labels = img.labels.copy()
    labels[coated & (labels != int(Phase.NANOWIRE))] = int(Phase.SPE)
    return replace(img, labels=labels)
