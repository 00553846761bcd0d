"""Conforming tetrahedral meshes of 3D boxes of the gradient membrane (Gmsh, OCC kernel).

The box is cut from the same realization (spec + seed, window) as the voxel box of the
same ``[box]`` (:mod:`meshes.voxels`). Every wire is a flat-ended OCC cylinder; the
cylinders and the box are fragmented in one OCC call, so every wire/polymer interface and
every wire/wire contact is a surface shared by the cells on both sides. In a box that
reaches the polymer-lean zone (f < 1) the 20 nm SPE coating of every wire is a mesh surface
too (:func:`coating_shells`: a flat-ended cylinder of radius ``r + coating``, ``coating``
longer at each end), fragmented with the wires: there the coating decides which wire
surfaces the electrolyte reaches, and a coating made of whole cells would be as thick as
the cells (30 nm, not 20). The rest of the pore is SPE where Phi(g) < f(z) at the cell
centroid (the voxel image applies the same rule at voxel centres). Above the lean zone
(f = 1) coating and pore are both SPE and no shell is built (a cell there is labelled
coating when its centroid lies within the coating of a wire, which changes no property), and
the mesh conforms to every phase boundary.

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
With coating shells every pair of surfaces of two wires (wire or shell) obeys the rule, each
as a band of the one axis distance, so a single move leaves them all. Wires that run along
a box face obey the same rule with the face; a wire that *ends* near a
face is shortened or lengthened instead; a mantle that passes a box *edge* must cut it by
``min_overlap`` or clear it by ``min_gap`` (else it cuts a sliver of a few nm from the two
faces there). Pair shifts go along the common normal, half to each
wire, averaged over the pairs of a wire, and repeat in sweeps. The band widths are tried in a
fixed sequence (:data:`DESIGN_LADDER`) until the design converges and Gmsh meshes the result,
then again on wires jittered by a few nm (:data:`JITTER_SD`, seeded by the box seed), so the
same spec and seed give the same design (as long as Gmsh accepts the same attempt) and, in
one process, the same mesh (across processes Gmsh's mesh of some boxes varies by up to
about 4 cells in 1e4: not traced);
:class:`ConformingError` (one line) reports a box that none of them meshes with every cell
of quality >= :data:`MIN_QUALITY`. The shifts, the contacts and the wire clusters are
reported with the mesh.

rGO sheets
----------
The membrane's rGO flakes (20 nm thick discs) are flat OCC cylinders fragmented with the
wires (region 4; where a sheet and a wire overlap the piece is wire, as in the voxel
images). After the wires' design, each sheet is moved by the smallest rigid shift that
leaves it meshable against the wires, the box and the other sheets
(:mod:`meshes.sheet_design`); a sheet with no such position fails the attempt, and the
ladder goes on. In the polymer-lean zone each sheet has a coating shell (radius and
half-thickness grown by the coating, region 2) designed with it. Sheets are modelled with
insulating sides only (no periodic images of them); periodic boxes with rGO are refused in
one line, as are lean-zone boxes whose coating is too thin for shells.

Scope: the gradient membrane's wires, sheets and pore; a box that reaches into the SPE skin has the
wires cut flat on the composite layer's top plane (a mesh plane, designed like a box face),
the skin above it, and ``box.separator_um`` of separator on top when it reaches the
membrane's top face, as voxel boxes have. The tape-cast
cathode is voxel-only, and a spec that asks for it is refused with a one-line error: the
tape-cast agglomerates hold about 150 wire pieces per um3 (35 vol% of wire, about half the
volume inside an agglomerate), and the pairwise design left 80-416 bad configurations after
377-1341 sweeps on every 1 um box tried (seeds 0-4). The cost is the other limit: with 30
nm elements at the wires, 13 vol% of 100 nm wires take 2.5e5-3.5e5 tetrahedra per um3, so conforming
boxes are verification-sized (about 1 um); production 3D runs use voxel boxes.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
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
from scipy.spatial import cKDTree

from meshes.fill import gaussian_field, gradient_fill
from meshes.gmsh_session import initialize_gmsh
from meshes.realization import Sheets, Wires, realize_gradient
from meshes.rods import rod_contacts, segment_closest_points
from meshes.sheet_design import SheetPieces, SheetReport, design_sheets, sheets_near_box
from meshes.spec import CaseSpec, SpecError
from meshes.tags import Phase
from meshes.voxels import (
    VoxelImage,
    box_window,
    cathode_layers_um,
    lateral_shifts,
    voxelize,
)

__all__ = ["DESIGN_LADDER", "JITTER_ROUNDS", "JITTER_SD", "MIN_QUALITY", "PERIODIC_CLEARANCE",
           "SHELL_MIN", "STALL_SWEEPS", "ConformingBox",
           "ConformingError", "ContactReport", "WireSegments", "check_conforming_scope",
           "clip_wires", "coating_shells",
           "design_contacts", "design_contacts_periodic", "mesh_conforming_box", "tet_quality",
           "voxelize_designed"]


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
    #: overlapping wire pairs (distance of the axes below r_i + r_j where they come closest
    #: inside both wires; overlapping flat-ended surfaces where they come closest at an end;
    #: the design keeps every such overlap at least min_overlap deep). Periodic sides: each
    #: contact on the torus once
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
    #: pieces of wire in the box: the wires themselves with insulating sides, all their
    #: periodic images in the box with periodic sides
    images_count: int = 0


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


#: sampling of a wire's surface for the flat-end gap (:func:`_flat_end_gaps`): points around
#: the circumference, along the axis window, and rings on each end cap
_GAP_ANGLES = 32
_GAP_AXIAL = 32
_GAP_CAP_RINGS = (0.0, 0.25, 0.5, 0.75, 1.0)
_GAP_CHUNK = 256


def _signed_distance_to_cylinder(x: np.ndarray, a: np.ndarray, b: np.ndarray, r: np.ndarray
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (negative inside) of points ``x`` (m, k, 3) to the flat-ended
    cylinders ``a -> b`` (m, 3) of radii r (m,), and the outward unit normal of the nearest
    surface point (m, k, 3)."""
    axis = b - a
    h = np.linalg.norm(axis, axis=1)
    e = axis / h[:, None]
    rel = x - 0.5 * (a + b)[:, None, :]
    along = np.einsum("mkj,mj->mk", rel, e)
    perp = rel - along[..., None] * e[:, None, :]
    rad = np.linalg.norm(perp, axis=2)
    radial = perp / np.maximum(rad, 1e-300)[..., None]
    dr = rad - r[:, None]
    dz = np.abs(along) - 0.5 * h[:, None]
    outside = np.sqrt(np.maximum(dr, 0.0) ** 2 + np.maximum(dz, 0.0) ** 2)
    dist = outside + np.minimum(np.maximum(dr, dz), 0.0)
    # outside: from the nearest point of the solid; inside: the nearer face's normal
    cz = np.clip(along, -0.5 * h[:, None], 0.5 * h[:, None])
    cr = np.minimum(rad, r[:, None])
    near = cz[..., None] * e[:, None, :] + cr[..., None] * radial
    out_n = rel - near
    cap_n = np.sign(along)[..., None] * e[:, None, :]
    in_n = np.where((dr > dz)[..., None], radial, cap_n)
    normal = np.where((outside > 0.0)[..., None], out_n, in_n)
    normal /= np.maximum(np.linalg.norm(normal, axis=2), 1e-300)[..., None]
    return dist, normal


def _surface_samples(a: np.ndarray, b: np.ndarray, r: np.ndarray, s: np.ndarray,
                     window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points on the surfaces of the flat-ended cylinders ``a -> b`` (m, 3), radii r: the
    mantle within ``window`` (m,) of the axis point ``a + s (b - a)`` and both end caps;
    with a mask of the points to use (caps only where the window reaches them)."""
    axis = b - a
    h = np.linalg.norm(axis, axis=1)
    e = axis / h[:, None]
    helper = np.where((np.abs(e[:, 0]) < 0.9)[:, None], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    u = np.cross(e, helper)
    u /= np.linalg.norm(u, axis=1)[:, None]
    v = np.cross(e, u)
    th = np.linspace(0.0, 2.0 * np.pi, _GAP_ANGLES, endpoint=False)
    ring = np.cos(th)[None, :, None] * u[:, None, :] + np.sin(th)[None, :, None] * v[:, None, :]
    z_lo = np.maximum(0.0, s * h - window)
    z_hi = np.minimum(h, s * h + window)
    z = z_lo[:, None] + np.linspace(0.0, 1.0, _GAP_AXIAL)[None, :] * (z_hi - z_lo)[:, None]
    mantle = (a[:, None, None, :] + z[:, :, None, None] * e[:, None, None, :]
              + r[:, None, None, None] * ring[:, None, :, :]).reshape(len(a), -1, 3)
    caps = []
    masks = [np.ones(mantle.shape[:2], dtype=bool)]
    for end, reached in ((a, z_lo <= 0.0), (b, z_hi >= h)):
        for f in _GAP_CAP_RINGS:
            caps.append(end[:, None, :] + f * r[:, None, None] * ring)
            masks.append(np.repeat(reached[:, None], _GAP_ANGLES, axis=1))
    return np.concatenate([mantle, *caps], axis=1), np.concatenate(masks, axis=1)


def _flat_end_gaps(a: np.ndarray, b: np.ndarray, r: np.ndarray, i: np.ndarray,
                   j: np.ndarray, s: np.ndarray, t: np.ndarray, reach: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Surface gap of flat-ended wire pairs (i, j) whose axes come closest at an end (where
    the capsule distance of the axes is wrong: a cap only touches a mantle at an axis
    distance r_j, not r_i + r_j): the smallest signed distance of either surface to the other
    cylinder (negative: the depth one surface reaches into the other), from sampled surfaces,
    and the unit direction from i towards j along which the gap opens. ``reach``: how far
    beyond the wires' radii the gap matters."""
    if len(i) > _GAP_CHUNK:  # bounded memory: about 2800 points per wire and pair
        parts = [_flat_end_gaps(a, b, r, i[k:k + _GAP_CHUNK], j[k:k + _GAP_CHUNK],
                                s[k:k + _GAP_CHUNK], t[k:k + _GAP_CHUNK], reach)
                 for k in range(0, len(i), _GAP_CHUNK)]
        return (np.concatenate([g for g, _ in parts]),
                np.concatenate([u for _, u in parts]))
    window = 1.2 * (r[i] + r[j]) + reach
    best = np.full(len(i), np.inf)
    direction = np.zeros((len(i), 3))
    for p, q, along, sign in ((i, j, s, -1.0), (j, i, t, 1.0)):
        pts, use = _surface_samples(a[p], b[p], r[p], along, window)
        dist, normal = _signed_distance_to_cylinder(pts, a[q], b[q], r[q])
        dist = np.where(use, dist, np.inf)
        k = np.argmin(dist, axis=1)
        rows = np.arange(len(i))
        lower = dist[rows, k] < best
        best[lower] = dist[rows, k][lower]
        # the normal of q points towards p's surface: from j to i when p = i
        direction[lower] = sign * normal[rows, k][lower]
    return best, direction


@dataclass(frozen=True)
class _Images:
    """Wire pieces seen by the design: segments ``a -> b`` with radii ``r``, the wire
    (``owner``) each comes from, its lateral shift, and whether each end is the wire's own end
    (False: an end made by clipping to the grown box)."""

    a: np.ndarray
    b: np.ndarray
    r: np.ndarray
    owner: np.ndarray
    shift: np.ndarray
    real_a: np.ndarray
    real_b: np.ndarray


def coating_shells(seg: WireSegments, coat_um: float) -> WireSegments:
    """The SPE coating of the wires as flat-ended cylinders: radius ``r + coat_um``, each
    end moved out along the axis by ``coat_um`` (the offset surface of the wire with square
    instead of rounded rims)."""
    axis = seg.b_um - seg.a_um
    e = axis / np.maximum(np.linalg.norm(axis, axis=1), 1e-300)[:, None]
    return WireSegments(seg.a_um - coat_um * e, seg.b_um + coat_um * e,
                        seg.radii_um + coat_um, seg.source)


def _own_images(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> _Images:
    """Insulating sides: every wire is its own (already clipped) piece; views, not copies."""
    n = len(r)
    ones = np.ones(n, dtype=bool)
    return _Images(a, b, r, np.arange(n), np.zeros((n, 3)), ones, ones)


def _torus_images(a: np.ndarray, b: np.ndarray, r: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  pad_um: float) -> _Images:
    """Periodic sides: every lateral periodic image (period ``hi - lo`` in x and y) of the
    wires ``a -> b`` that comes within ``r + pad_um`` of the box, clipped to the box grown by
    ``r + pad_um`` (:func:`clip_wires`)."""
    grow = (r + pad_um)[:, None]
    shifts = lateral_shifts(np.minimum(a, b) - grow, np.maximum(a, b) + grow, lo, hi - lo)
    q = np.array([k for k, _ in shifts], dtype=np.int64)
    s = np.array([v for _, v in shifts], dtype=np.float64).reshape(-1, 3)
    a_s, b_s = a[q] + s, b[q] + s
    seg = clip_wires(WireSegments(a_s, b_s, r[q], q).as_wires(), lo, hi, pad_um)
    k = seg.source
    return _Images(seg.a_um, seg.b_um, seg.radii_um, q[k], s[k],
                   np.linalg.norm(seg.a_um - a_s[k], axis=1) < 1e-9,
                   np.linalg.norm(seg.b_um - b_s[k], axis=1) < 1e-9)


class _GapCache:
    """:func:`_flat_end_gaps` of the pairs of the sweeps, each computed again only when one
    of its two wires has moved (most wires stop moving after a few sweeps)."""

    def __init__(self, period: np.ndarray, reach: float, coat_um: float = 0.0) -> None:
        self.period = period
        self.reach = reach
        self.coat = coat_um
        self.values: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.seen: tuple[np.ndarray, np.ndarray] | None = None

    def get(self, im: _Images, i: np.ndarray, j: np.ndarray, s: np.ndarray, t: np.ndarray,
            a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaps (m, 1), or (m, 4) with coating shells: wire/wire, wire i/shell j, shell
        i/wire j, shell/shell, and the directions (from i to j, of the wires' gap) of the
        image pairs (i, j); ``a``, ``b``: the wires now (their changes since the last call
        expire the pairs they are in)."""
        if self.seen is not None:
            moved = set(np.nonzero(np.any(a != self.seen[0], axis=1)
                                   | np.any(b != self.seen[1], axis=1))[0].tolist())
            if moved:
                self.values = {k: v for k, v in self.values.items()
                               if k[0] not in moved and k[1] not in moved}
        self.seen = (a.copy(), b.copy())
        keys = [tuple(k) for k in _torus_pair_keys(np.column_stack([i, j]), im,
                                                   self.period).tolist()]
        # a key names its wires in increasing order: the direction flips with the pair
        flip = np.where(im.owner[i] > im.owner[j], -1.0, 1.0)
        todo = np.array([q for q, k in enumerate(keys) if k not in self.values], dtype=np.int64)
        if len(todo):
            g, u = _flat_end_gaps(im.a, im.b, im.r, i[todo], j[todo], s[todo], t[todo],
                                  self.reach)
            cols = [g]
            if self.coat > 0.0:
                # the shells: the same axes, ends moved out by the coating (parameters
                # mapped onto the longer segments), radii grown by it
                m = len(im.r)
                sh = coating_shells(WireSegments(im.a, im.b, im.r, im.owner), self.coat)
                aa, bb = np.concatenate([im.a, sh.a_um]), np.concatenate([im.b, sh.b_um])
                rr = np.concatenate([im.r, sh.radii_um])
                length = np.linalg.norm(im.b - im.a, axis=1)

                def on_shell(p: np.ndarray, x: np.ndarray) -> np.ndarray:
                    return np.asarray((x * length[p] + self.coat)
                                      / (length[p] + 2.0 * self.coat))

                it, jt, st, tt = i[todo], j[todo], s[todo], t[todo]
                for ii, jj, ss, ts in ((it, jt + m, st, on_shell(jt, tt)),
                                       (it + m, jt, on_shell(it, st), tt),
                                       (it + m, jt + m, on_shell(it, st), on_shell(jt, tt))):
                    cols.append(_flat_end_gaps(aa, bb, rr, ii, jj, ss, ts, self.reach)[0])
            gk = np.stack(cols, axis=1)
            for q, gq, uq in zip(todo, gk, u, strict=True):
                self.values[keys[q]] = (gq, uq * flip[q])
        gap = np.array([self.values[k][0] for k in keys]).reshape(len(keys), -1)
        direction = np.array([self.values[k][1] for k in keys]).reshape(-1, 3) * flip[:, None]
        return gap, direction


def _tangencies(ri: np.ndarray, rj: np.ndarray, coat_um: float) -> np.ndarray:
    """Axis distances at which the mantles of two parallel cylinders touch (m, k): outside
    ``r_i + r_j`` and inside ``|r_i - r_j|``; with coating shells of thickness ``coat_um``
    the same for every pair of surfaces (wire or shell) of the two wires."""
    if coat_um <= 0.0:
        return np.stack([ri + rj, np.abs(ri - rj)], axis=1)
    c = coat_um
    return np.stack([ri + rj, ri + rj + c, ri + rj + 2.0 * c, np.abs(ri - rj),
                     np.abs(ri + c - rj), np.abs(ri - rj - c)], axis=1)


def _at_an_end(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pairs whose axes come closest at an end of either segment (parameters s, t)."""
    eps = 1e-9
    return np.asarray((s <= eps) | (s >= 1.0 - eps) | (t <= eps) | (t >= 1.0 - eps))


def _torus_pair_keys(pairs: np.ndarray, im: _Images, period: np.ndarray) -> np.ndarray:
    """One key per image pair: (wire, wire, relative lattice shift), the same for the copies
    of one contact that the grown box holds on both sides of a periodic face."""
    i, j = pairs[:, 0], pairs[:, 1]
    oi, oj = im.owner[i], im.owner[j]
    rel = np.rint((im.shift[j, :2] - im.shift[i, :2]) / period[:2]).astype(np.int64)
    swap = oi > oj
    rel[swap] *= -1
    first, second = np.where(swap, oj, oi), np.where(swap, oi, oj)
    # a wire and its own image: (p, s) with (p, t) is (p, t) with (p, s)
    flip = (first == second) & ((rel[:, 0] < 0) | ((rel[:, 0] == 0) & (rel[:, 1] < 0)))
    rel[flip] *= -1
    return np.column_stack([first, second, rel])


def _unique_pairs(pairs: np.ndarray, im: _Images, period: np.ndarray,
                  d: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``pairs`` that are distinct contacts on the torus (of copies, the one of
    smallest segment distance ``d``: the copy whose closest points the clipping kept)."""
    order = np.argsort(d, kind="stable") if d is not None else np.arange(len(pairs))
    _, first = np.unique(_torus_pair_keys(pairs[order], im, period), axis=0,
                         return_index=True)
    return np.sort(order[first])


def design_contacts(seg: WireSegments, *, lo_um: np.ndarray, hi_um: np.ndarray,
                    min_overlap_um: float, min_gap_um: float, max_sweeps: int = 2000,
                    coat_um: float = 0.0) -> tuple[WireSegments, ContactReport]:
    """Shift (and at box faces shorten or lengthen) wires until every pair of wires and
    every wire/box-face configuration is meshable (see the module docstring). With
    ``coat_um > 0`` the coating shells (:func:`coating_shells`) are surfaces of the mesh
    too, and the rules hold for every pair of surfaces of two wires (wire or shell) and for
    every shell at the box faces and edges. Raises :class:`ConformingError` when
    ``max_sweeps`` sweeps, or :data:`STALL_SWEEPS` sweeps without progress, leave bad
    configurations."""
    a, b, report = _design(seg, lo_um, hi_um, min_overlap_um, min_gap_um, max_sweeps, None,
                           coat_um)
    return WireSegments(a, b, seg.radii_um, seg.source), report


def design_contacts_periodic(wires: WireSegments, *, lo_um: np.ndarray, hi_um: np.ndarray,
                             min_overlap_um: float, min_gap_um: float, pad_um: float,
                             max_sweeps: int = 2000, coat_um: float = 0.0
                             ) -> tuple[WireSegments, WireSegments, ContactReport]:
    """The contact design on the torus of a box with periodic x and y sides.

    ``wires``: whole wires (unclipped) whose centres lie in the box laterally. The rules of
    :func:`design_contacts` hold for every periodic image of them that reaches into the box
    (clipped to the box grown by ``r + pad_um``): a move of a wire moves all its images, an
    end trimmed in one image is trimmed in all. The wires must be shorter than the box by
    more than their diameter plus the bands (:func:`check_conforming_scope`): a wire never
    comes near its own image, which no shift could mend. Returns the designed wires
    (centres moved back into the box laterally: the same torus), their clipped images
    (``source``: the wire's index) and the report (``wires_count``: the wires;
    ``images_count``: the pieces in the box; contacts counted once per contact on the torus).
    """
    a, b, report = _design(wires, lo_um, hi_um, min_overlap_um, min_gap_um, max_sweeps,
                           pad_um, coat_um)
    period = hi_um - lo_um
    centre = 0.5 * (a + b)
    wrap = np.zeros_like(a)
    wrap[:, :2] = -np.floor((centre[:, :2] - lo_um[:2]) / period[:2]) * period[:2]
    a, b = a + wrap, b + wrap
    im = _torus_images(a, b, wires.radii_um, lo_um, hi_um, pad_um)
    images = WireSegments(im.a, im.b, im.r, im.owner)
    return WireSegments(a, b, wires.radii_um, wires.source), images, report


def _design(seg: WireSegments, lo_um: np.ndarray, hi_um: np.ndarray, min_overlap_um: float,
            min_gap_um: float, max_sweeps: int, pad_um: float | None, coat_um: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray, ContactReport]:
    """The sweeps of :func:`design_contacts` (``pad_um`` None: the segments are the clipped
    pieces themselves) and :func:`design_contacts_periodic` (the rules act on the periodic
    images of the wires, and their moves on the wires). With ``coat_um > 0`` the rules act
    on the coating shells too, as pieces of their wires (a shell's move moves its wire)."""
    if min_overlap_um <= 0.0 or min_gap_um <= 0.0:
        raise ValueError("min_overlap_um and min_gap_um must be > 0")
    periodic = pad_um is not None
    a, b, r = seg.a_um.copy(), seg.b_um.copy(), seg.radii_um
    period = hi_um - lo_um

    def images() -> _Images:
        if pad_um is None:
            return _own_images(a, b, r)
        return _torus_images(a, b, r, lo_um, hi_um, pad_um)

    n = len(r)
    gaps = _GapCache(period, min_gap_um + min(min_overlap_um, min_gap_um) + 2.0 * coat_um,
                     coat_um)
    shift_total = np.zeros((n, 3))
    trim_total = np.zeros(n)  # largest change of a wire end's position along its axis
    margin = 0.5 * min(min_overlap_um, min_gap_um)
    bad_count = 0
    sweeps = 0
    fewest, fewest_sweep = np.inf, 0
    for sweep in range(1, max_sweeps + 1):
        sweeps = sweep
        im = images()
        cur = WireSegments(im.a, im.b, im.r, im.owner)
        pairs = rod_contacts(cur.as_wires(coat_um + 0.5 * min_gap_um + margin))
        move = np.zeros((n, 3))
        count = np.zeros(n)
        bad_count = 0
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            ia, ib, ir = im.a, im.b, im.r
            d, s, t = segment_closest_points(ia[i], ib[i], ia[j], ib[j])
            if periodic:
                keep = _unique_pairs(pairs, im, period, d)
                i, j, d, s, t = i[keep], j[keep], d[keep], s[keep], t[keep]
            u = _unit_normal((ia[j] + t[:, None] * (ib[j] - ia[j]))
                             - (ia[i] + s[:, None] * (ib[i] - ia[i])), ib[i] - ia[i],
                             ib[j] - ia[j])
            T = _tangencies(ir[i], ir[j], coat_um)
            ends = np.nonzero(_at_an_end(s, t))[0]
            if len(ends):
                # flat caps: the surfaces' own gap, as an axis distance (no inner band); a
                # shell's gap g_k as a band of that distance (moved by the difference of the
                # gaps: to first order a step along u changes every gap alike)
                gap, u[ends] = gaps.get(im, i[ends], j[ends], s[ends], t[ends], a, b)
                d = d.copy()
                d[ends] = gap[:, 0] + T[ends, 0]
                T[ends, 1:] = -1.0
                if coat_um > 0.0:
                    T[ends, 1:4] = T[ends, :1] + gap[:, :1] - gap[:, 1:]
            bad, goal = _nearest_allowed(d, T - min_overlap_um, T + min_gap_um, margin)
            bad_count += int(bad.sum())
            oi, oj = im.owner[i], im.owner[j]
            two = bad & (oi != oj)  # (a wire is never near its own image: scope check)
            delta = 0.5 * (d[two] - goal[two])[:, None] * u[two]  # + moves i towards j
            np.add.at(move, oi[two], delta)
            np.add.at(move, oj[two], -delta)
            np.add.at(count, oi[two], 1)
            np.add.at(count, oj[two], 1)
        # average, not sum, the moves one wire gets from several pairs (a sum overshoots and
        # the sweeps oscillate)
        move /= np.maximum(count, 1.0)[:, None]
        a += move
        b += move
        shift_total += move
        # box faces are hard constraints: projected fully after the pair moves
        im = images()
        fa, fb = im.a, im.b  # the wires themselves with insulating sides (moved in place)
        if periodic:
            fa, fb = fa.copy(), fb.copy()
        face_move, face_bad, trim_img = _face_rules(
            fa, fb, im, lo_um, hi_um, min_overlap_um, min_gap_um, margin,
            lateral_caps=not periodic, coat_um=coat_um)
        bad_count += face_bad
        np.maximum.at(trim_total, im.owner, trim_img)
        if bad_count == 0:
            break
        if bad_count < fewest:
            fewest, fewest_sweep = bad_count, sweep
        elif sweep - fewest_sweep >= STALL_SWEEPS:
            break  # stalled: the bands cannot be met from here (the ladder goes on)
        if not periodic:
            a += face_move
            b += face_move
            shift_total += face_move
            continue
        # the images' changes back to their wires: an end trimmed in one image is trimmed
        # in all (the largest change, when two images saw it), shifts averaged per wire
        for img_end, new_end, real, end in ((im.a, fa, im.real_a, a), (im.b, fb, im.real_b, b)):
            change = np.where(real[:, None], new_end - img_end, 0.0)
            size = np.linalg.norm(change, axis=1)
            best = np.zeros(n)
            np.maximum.at(best, im.owner, size)
            done: set[int] = set()
            for q in np.nonzero((size > 0.0) & (size == best[im.owner]))[0]:
                if int(im.owner[q]) not in done:  # once per wire (two images may tie)
                    done.add(int(im.owner[q]))
                    end[im.owner[q]] += change[q]
        total = np.zeros((n, 3))
        hits = np.zeros((n, 3))
        np.add.at(total, im.owner, face_move)
        np.add.at(hits, im.owner, (face_move != 0.0).astype(np.float64))
        mean_move = total / np.maximum(hits, 1.0)
        a += mean_move
        b += mean_move
        shift_total += mean_move
    if bad_count:
        raise ConformingError(
            f"contact design: {bad_count} nearly tangent wire pairs or faces left after "
            f"{sweeps} sweeps; the wire density is too high for meshable contacts at "
            f"min_overlap_um = {min_overlap_um:g} and min_gap_um = {min_gap_um:g}")
    im = images()
    pairs = rod_contacts(WireSegments(im.a, im.b, im.r, im.owner).as_wires())
    if len(pairs):
        # capsules overlap where flat caps may not: a pair that meets at an end is a
        # contact only if the flat-ended surfaces overlap
        i, j = pairs[:, 0], pairs[:, 1]
        _, s, t = segment_closest_points(im.a[i], im.b[i], im.a[j], im.b[j])
        ends = np.nonzero(_at_an_end(s, t))[0]
        if len(ends):
            gap, _ = _flat_end_gaps(im.a, im.b, im.r, i[ends], j[ends], s[ends], t[ends], 0.0)
            pairs = np.delete(pairs, ends[gap >= 0.0], axis=0)
    if periodic and len(pairs):
        pairs = pairs[_unique_pairs(pairs, im, period)]
    wire_pairs = np.column_stack([im.owner[pairs[:, 0]], im.owner[pairs[:, 1]]]) \
        if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    moved = np.linalg.norm(shift_total, axis=1)
    if n:
        graph = sp.csr_matrix((np.ones(len(wire_pairs)), (wire_pairs[:, 0], wire_pairs[:, 1])),
                              shape=(n, n)) if len(wire_pairs) else sp.csr_matrix((n, n))
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
        min_overlap_um=min_overlap_um, min_gap_um=min_gap_um,
        images_count=len(im.r))
    return a, b, report


def _face_rules(a: np.ndarray, b: np.ndarray, im: _Images, lo_um: np.ndarray,
                hi_um: np.ndarray, min_overlap_um: float, min_gap_um: float, margin: float,
                lateral_caps: bool, coat_um: float = 0.0
                ) -> tuple[np.ndarray, int, np.ndarray]:
    """The box-face rules on the pieces ``a -> b`` (of ``im``; ends moved in place): returns
    the shifts of pieces that run along a face, the count of bad configurations and the
    largest trim per piece. Only a piece's own ends (``im.real_a``, ``im.real_b``) are cap
    ends; ``lateral_caps`` False skips the outside-cap rule at the x and y faces (periodic
    sides: an end just outside one face is inside, near the opposite one, in another image).
    With ``coat_um > 0`` every rule holds for the coating shell too (the same axis, radius
    ``r + coat_um``, ends ``coat_um`` farther out), and a move or trim satisfies both.
    """
    r = im.r
    m = len(r)
    move = np.zeros((m, 3))
    trim = np.zeros(m)
    bad_count = 0
    axis = b - a
    length = np.maximum(np.linalg.norm(axis, axis=1), 1e-300)
    e = axis / length[:, None]
    c = coat_um
    shells = c > 0.0
    for k in range(3):
        # an end (its cap) lies beside face k only where it is within r + min_gap of the
        # box along the two other axes; elsewhere its cap cannot touch that face
        others = [axis_m for axis_m in range(3) if axis_m != k]
        reach = (r + c + min_gap_um)[:, None]

        def beside(end: np.ndarray, others: list[int] = others,
                   reach: np.ndarray = reach) -> np.ndarray:
            return np.asarray(np.all((end[:, others] > lo_um[others] - reach)
                                     & (end[:, others] < hi_um[others] + reach), axis=1))

        # half-width of each cylinder (and shell) across a plane normal to k
        cos_k = np.abs(axis[:, k]) / length
        sin_k = np.sqrt(np.clip(1.0 - cos_k**2, 0.0, 1.0))
        rim = r * sin_k
        rim_s = (r + c) * sin_k
        for plane, sign in ((lo_um[k], 1.0), (hi_um[k], -1.0)):
            da, db = sign * (a[:, k] - plane), sign * (b[:, k] - plane)
            crossing = da * db < 0.0
            a_nearer = np.abs(da) < np.abs(db)
            near = np.where(a_nearer, da, db)  # signed, + inside
            near_real = np.where(a_nearer, im.real_a & beside(a), im.real_b & beside(b))
            dist = np.abs(near)

            def in_band(x: np.ndarray, half: np.ndarray) -> np.ndarray:
                return np.asarray((x > half - min_overlap_um) & (x < half + min_gap_um))

            wbad = in_band(dist, rim) & ~crossing
            lo_b, hi_b = [rim - min_overlap_um], [rim + min_gap_um]
            # the shell's ends: the wire's, moved out along the axis by the coating
            da_s = da - c * sign * e[:, k]
            db_s = db + c * sign * e[:, k]
            if shells:
                near_s = np.where(a_nearer, da_s, db_s)
                # (also where the shell crosses the face and the wire does not: its
                # outside cap near the face is then the wire's near end moved c along)
                wbad |= in_band(np.abs(near_s), rim_s) & ~crossing
                # its band as one of the wire's distance (a shift moves both alike)
                off = np.abs(near_s) - dist
                lo_b.append(rim_s - min_overlap_um - off)
                hi_b.append(rim_s + min_gap_um - off)
            _, goal = _nearest_allowed(dist, np.stack(lo_b, axis=1), np.stack(hi_b, axis=1),
                                       margin)
            # a wire that ends near the face (not parallel to it): move that end along the
            # axis, shortened to clear the face or lengthened to cross it, whichever is the
            # smaller change; a wire (nearly) parallel to the face: shift it. A clipped end
            # is no cap (the wire goes on outside the grown box), nor is an end that lies
            # away from the box along another axis.
            wbad &= near_real | (cos_k < 0.2)
            bad_count += int(wbad.sum())
            tilted = wbad & (cos_k >= 0.2)
            shift = wbad & ~tilted
            move[shift, k] += sign * np.sign(near[shift]) * (goal[shift] - dist[shift])
            for q in np.nonzero(tilted)[0]:
                a_end = abs(da[q]) < abs(db[q])
                end, other = (a, b) if a_end else (b, a)
                inward = (end[q] - other[q]) / length[q]  # unit, from the other end
                step_k = sign * inward[k]  # change of signed distance per unit length
                clear = rim[q] + 1.5 * min_gap_um  # cap clear of the face, inside
                beyond = -(rim[q] + 1.5 * min_gap_um)  # cap clear of it, outside
                if shells:  # the shell's end lies c farther along: near_s = near + c step
                    clear = max(clear, rim_s[q] + 1.5 * min_gap_um - c * step_k)
                    beyond = min(beyond, -(rim_s[q] + 1.5 * min_gap_um) - c * step_k)
                options = [(target - near[q]) / step_k for target in (clear, beyond)]
                options = [o for o in options if length[q] + o > 2.0 * min_gap_um]
                if options:
                    change = min(options, key=abs)
                    end[q] += change * inward
                    trim[q] = max(trim[q], abs(change))
            if k < 2 and not lateral_caps:
                continue
            # a wire that crosses the face: the cap of its outside end must clear the face
            # too (it lies outside, so lengthening that end is harmless); so must a crossing
            # shell's, whose end lies c farther out, where the wire's end is outside too (a
            # shell that crosses where its wire ends inside: the near-end rule above)
            crossing_s = da_s * db_s < 0.0
            for end, real, s_shell in ((a, im.real_a, -c * sign * e[:, k]),
                                       (b, im.real_b, c * sign * e[:, k])):
                s_end = sign * (end[:, k] - plane)  # + inside
                # the gap between the outside cap's rim and the face
                outs = [np.where(crossing & (s_end < 0.0), -s_end - rim, np.inf)]
                if shells:
                    outs.append(np.where(crossing_s & (s_end < 0.0),
                                         -(s_end + s_shell) - rim_s, np.inf))
                worst = np.minimum.reduce(outs)
                cbad = real & beside(end) & np.any(
                    [(o > -min_overlap_um) & (o < min_gap_um) for o in outs], axis=0)
                bad_count += int(cbad.sum())
                for q in np.nonzero(cbad)[0]:
                    other = b[q] if end is a else a[q]
                    outward = (end[q] - other) / length[q]
                    change = (1.5 * min_gap_um - worst[q]) / max(cos_k[q], 1e-6)
                    end[q] += change * outward  # outside the box: not a trim
    edge_move, edge_bad = _edge_rules(a, b, im, lo_um, hi_um, min_overlap_um, min_gap_um,
                                      margin, coat_um)
    return move + edge_move, bad_count + edge_bad, trim


def _box_edges(lo_um: np.ndarray, hi_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 12 edges of the box as segments ``p -> q`` (each (12, 3))."""
    p, q = [], []
    for k in range(3):
        i, j = [m for m in range(3) if m != k]
        for u in (lo_um[i], hi_um[i]):
            for v in (lo_um[j], hi_um[j]):
                start, end = np.empty(3), np.empty(3)
                start[[i, j]] = end[[i, j]] = u, v
                start[k], end[k] = lo_um[k], hi_um[k]
                p.append(start)
                q.append(end)
    return np.array(p), np.array(q)


def _edge_rules(a: np.ndarray, b: np.ndarray, im: _Images, lo_um: np.ndarray,
                hi_um: np.ndarray, min_overlap_um: float, min_gap_um: float, margin: float,
                coat_um: float = 0.0) -> tuple[np.ndarray, int]:
    """The box-edge rule: a mantle that passes an edge (or corner) of the box nearly
    tangentially cuts a sliver of a few nm from the two faces there, which no mesher can
    resolve. So the distance d of a piece's axis from each edge must lie outside the band
    ``(r - min_overlap, r + min_gap)``: the mantle cuts the edge by at least ``min_overlap`` or
    clears it by ``min_gap``. The rule holds where the closest point is on the mantle, not at
    a wire's own end (the face rules place flat caps).

    A bad piece moves along the common normal n of its worst edge, by the shortest step
    delta that leaves *every* edge's band: to first order an edge's distance changes by
    ``delta (u_e . n)``, exactly so for the parallel edges a long wire passes near both ends
    of (a diagonal wire near two opposite vertical edges, where one edge's nearest way out
    is the other's way in). The step also leaves the face bands of :func:`_face_rules` for a
    piece that runs along a face (their shift rule), so the two rules do not undo each
    other sweep after sweep. With ``coat_um > 0`` the coating shell (radius ``r + coat_um``,
    ends ``coat_um`` farther out) has the same bands, and the step leaves them too."""
    m = len(im.r)
    move = np.zeros((m, 3))
    if m == 0:
        return move, 0
    p, q = _box_edges(lo_um, hi_um)
    axis = b - a
    length = np.maximum(np.linalg.norm(axis, axis=1), 1e-300)
    # the surfaces: the wire and (with a coating) its shell, each with its own segment
    surfaces = [(a, b, im.r)]
    if coat_um > 0.0:
        sh = coating_shells(WireSegments(a, b, im.r, im.owner), coat_um)
        surfaces.append((sh.a_um, sh.b_um, sh.radii_um))
    n_e = len(p) * len(surfaces)
    d = np.empty((m, n_e))
    u = np.empty((m, n_e, 3))
    mantle = np.empty((m, n_e), dtype=bool)
    lo_band = np.empty((m, n_e))
    hi_band = np.empty((m, n_e))
    ones = np.ones((m, 1))
    col = 0
    for sa, sb, sr in surfaces:
        for e in range(len(p)):
            pe, qe = p[e] * ones, q[e] * ones
            d[:, col], s, t = segment_closest_points(sa, sb, pe, qe)
            mantle[:, col] = ((s > 1e-9) | ~im.real_a) & ((s < 1.0 - 1e-9) | ~im.real_b)
            u[:, col] = _unit_normal((sa + s[:, None] * (sb - sa))
                                     - (pe + t[:, None] * (qe - pe)), qe - pe, sb - sa)
            lo_band[:, col] = sr - min_overlap_um
            hi_band[:, col] = sr + min_gap_um
            col += 1
    bad = mantle & (d > lo_band) & (d < hi_band)
    # the face rule's shift bands (pieces nearly parallel to a face, not crossing it): the
    # distance of the nearer end from the face against the half-width E = r sin
    faces = []
    for k_ax in range(3):
        cos_k = np.abs(axis[:, k_ax]) / length
        sin_k = np.sqrt(np.clip(1.0 - cos_k**2, 0.0, 1.0))
        for plane, sign in ((lo_um[k_ax], 1.0), (hi_um[k_ax], -1.0)):
            da, db = sign * (a[:, k_ax] - plane), sign * (b[:, k_ax] - plane)
            a_nearer = np.abs(da) < np.abs(db)
            near = np.where(a_nearer, da, db)
            along = (cos_k < 0.2) & (da * db >= 0.0)
            for sa, sb, sr in surfaces:
                sda, sdb = sign * (sa[:, k_ax] - plane), sign * (sb[:, k_ax] - plane)
                # a surface's band as one of the wire's distance (a shift moves both alike)
                off = np.abs(np.where(a_nearer, sda, sdb)) - np.abs(near)
                faces.append((k_ax, sign, near, sr * sin_k - off, along))
    for k in np.nonzero(bad.any(axis=1))[0]:
        # the worst edge: deepest inside its band
        depth = np.where(bad[k], np.minimum(d[k] - lo_band[k], hi_band[k] - d[k]), -np.inf)
        n = u[k, int(np.argmax(depth))]
        # to first order a step delta n changes each distance by delta c: the bands in delta
        c = u[k] @ n
        use = mantle[k] & (np.abs(c) > 0.5)
        lo_d = list((lo_band[k] - d[k])[use] / c[use])
        hi_d = list((hi_band[k] - d[k])[use] / c[use])
        # with the face bands, so that the step does not undo what the face rule does (a wire
        # along a face near an edge would otherwise slide along the face, sweep after sweep)
        for k_ax, sign, near, rim, along in faces:
            c_f = float(np.sign(near[k]) * sign * n[k_ax])
            if along[k] and abs(c_f) > 0.5:
                dist = abs(float(near[k]))
                lo_d.append((rim[k] - min_overlap_um - dist) / c_f)
                hi_d.append((rim[k] + min_gap_um - dist) / c_f)
        ends = np.sort(np.stack([lo_d, hi_d], axis=1), axis=1)
        cand = np.concatenate([ends[:, 0] - margin, ends[:, 1] + margin])
        free = ~np.any((cand[:, None] > ends[None, :, 0]) & (cand[:, None] < ends[None, :, 1]),
                       axis=1)
        step = cand[free][np.argmin(np.abs(cand[free]))]
        move[k] = step * n
    return move, int(bad.sum())


def tet_quality(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Mean-ratio quality ``12 (3 |V|)^(2/3) / sum(edge^2)`` with the sign of the volume:
    1 for the regular tetrahedron, 0 flat, < 0 inverted."""
    p = points[cells]
    e = [p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0],
         p[:, 2] - p[:, 1], p[:, 3] - p[:, 1], p[:, 3] - p[:, 2]]
    vol = np.einsum("ij,ij->i", e[0], np.cross(e[1], e[2])) / 6.0
    s = sum(np.einsum("ij,ij->i", v, v) for v in e)
    return np.asarray(np.sign(vol) * 12.0 * np.cbrt(3.0 * np.abs(vol)) ** 2 / s)


#: coating shells are mesh surfaces (in boxes that reach the polymer-lean zone) only when
#: the coating is at least this fraction of the design size (the element size at the wires
#: by default); a thinner one is a cell label
SHELL_MIN = 0.5

#: band widths (min_overlap, min_gap) of the contact design as fractions of the element size
#: at the wires, tried in this order until the design converges and Gmsh meshes the box
DESIGN_LADDER: tuple[tuple[float, float], ...] = ((1 / 3, 1 / 2), (1 / 4, 2 / 5), (1 / 2, 3 / 4),
                                                  (2 / 3, 1.0), (1 / 5, 3 / 10),
                                                  (3 / 20, 1 / 4))
#: then, when no band width works (tiny pieces where three surfaces meet: two wires and a
#: third wire or a box face, which the pairwise rules do not see), the ladder is run again
#: on wires jittered by independent normal shifts of this standard deviation (fraction of
#: the element size), from a generator seeded by (box.seed, round): at most this many
#: rounds
JITTER_SD: float = 0.25
JITTER_ROUNDS: int = 4
#: the contact design gives up (and the ladder goes on) when this many sweeps have not
#: lowered the count of bad configurations below its lowest so far
STALL_SWEEPS: int = 300
#: periodic conforming boxes: the box must be wider than the longest wire by this many wire
#: diameters, so that no wire comes near its own periodic image (two diameters, plus the
#: contact design's bands and the largest diameters of the distribution)
PERIODIC_CLEARANCE: float = 4.0
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
    #: periodic x and y sides: the mesh's nodes on x = L (y = L) are those on x = 0 (y = 0)
    #: moved by L (Gmsh periodic surface meshes), and ``wires`` holds every image in the box
    periodic: bool = False
    #: periodic sides: the designed whole wires, centres in the box laterally (the torus)
    torus_wires: Wires | None = None
    #: the part of the box in the composite layer (box frame, um): the wires end at its top;
    #: above it lie the SPE skin and, on a box that reaches the separator-side face,
    #: ``separator_um`` of separator. None: the whole box
    composite_z_um: tuple[float, float] | None = None
    separator_um: float = 0.0
    #: the designed rGO sheets that reach into the box (realization frame), or None
    sheets: Sheets | None = None


def check_conforming_scope(case: CaseSpec, kind: str) -> None:
    """Raise :class:`ConformingError` (one line) when ``case.box`` of cathode ``kind``
    cannot be a conforming box; cheap, so callers run it before making any folder."""
    if kind != "gradient":
        raise ConformingError(f"cathode = {kind!r}: conforming boxes (box.mesh = "
                              f"'conforming') are built for the gradient membrane only "
                              f"(--cathode gradient): the tape-cast agglomerates hold about "
                              f"150 wire pieces per um3, too dense for contacts by design; "
                              f"use voxel boxes")
    g = case.gradient
    if g.rgo_wt_fraction > 0.0:
        origin, _, _ = box_window(case, kind)
        if case.box.sides == "periodic":
            raise ConformingError(
                f"gradient.rgo_wt_fraction = {g.rgo_wt_fraction:g} with box.sides = "
                f"'periodic': periodic conforming boxes do not model rGO sheets; must be 0 "
                f"(or use voxel boxes, or insulating sides)")
        if g.fill_min < 1.0 and origin[2] < g.lean_zone_um and \
                g.coating_thickness_um < SHELL_MIN * case.box.conforming_size_um:
            raise ConformingError(
                f"gradient.rgo_wt_fraction = {g.rgo_wt_fraction:g} in a box that reaches the "
                f"polymer-lean zone (box bottom at z = {origin[2]:g} um < "
                f"gradient.lean_zone_um = {g.lean_zone_um:g}) with a coating thinner than "
                f"{SHELL_MIN:g} x box.conforming_size_um (no coating shells): must be 0 there "
                f"(or use voxel boxes, a box higher up, or box.conforming_size_um <= "
                f"{g.coating_thickness_um / SHELL_MIN:g})")
    wires = case.gradient.nanowire
    if case.box.sides == "periodic" and \
            wires.length_max_um > case.box.size_um - PERIODIC_CLEARANCE * wires.diameter_um:
        raise ConformingError(
            f"box.sides = 'periodic' with box.mesh = 'conforming': wires up to "
            f"{wires.length_max_um:g} um long do not fit the {case.box.size_um:g} um box; "
            f"box.size_um must be >= gradient.nanowire.length_max_um + "
            f"{PERIODIC_CLEARANCE:g} x diameter_um = "
            f"{wires.length_max_um + PERIODIC_CLEARANCE * wires.diameter_um:g} um (on a "
            f"narrower torus a wire meets its own image; voxel boxes have no such limit)")


def mesh_conforming_box(case: CaseSpec, kind: str = "gradient", *,
                        size_fine_um: float | None = None, size_coarse_um: float = 0.1,
                        design_size_um: float | None = None, threads: int = 1,
                        only_attempt: int | None = None) -> ConformingBox:
    """Conforming tetrahedral mesh of ``case.box`` (its size, height, depth and seed).

    Elements of ``size_fine_um`` (default ``box.conforming_size_um``) on the wire surfaces
    grow to ``size_coarse_um`` in the pore. The contact design's bands scale with
    ``design_size_um`` (default: the element size), so the designed geometry depends on it;
    a mesh-convergence study keeps it fixed while ``size_fine_um`` shrinks. Raises
    :class:`ConformingError` (one line) when the box is out of scope or no attempt (every
    entry of :data:`DESIGN_LADDER`, then :data:`JITTER_ROUNDS` jittered rounds of it) gives
    a mesh whose cells all have quality >= :data:`MIN_QUALITY`. ``only_attempt`` (1, 2, ...
    in that order) tries that attempt alone: a convergence study meshes the design another
    size accepted (``stats["design_attempts"]``) at finer sizes, where an earlier attempt
    may mesh too and would be another geometry.
    """
    if size_fine_um is None:
        size_fine_um = case.box.conforming_size_um
    design = size_fine_um if design_size_um is None else design_size_um
    if not (0.0 < size_fine_um <= size_coarse_um) or design <= 0.0:
        raise ConformingError(f"size_fine_um = {size_fine_um:g}, size_coarse_um = "
                              f"{size_coarse_um:g}, design_size_um = {design:g}: must satisfy "
                              f"0 < fine <= coarse and design > 0")
    if only_attempt is not None and not 1 <= only_attempt <= len(DESIGN_LADDER) * (
            JITTER_ROUNDS + 1):
        raise ValueError(f"only_attempt = {only_attempt}: must be in 1.."
                         f"{len(DESIGN_LADDER) * (JITTER_ROUNDS + 1)}")
    check_conforming_scope(case, kind)
    origin, size, height = box_window(case, kind)
    lo = np.asarray(origin, dtype=np.float64)
    hi = lo + np.array([size, size, height])
    _, zc1, thickness = cathode_layers_um(case, kind)
    # the wires end at the top of the composite layer (a plane of the mesh when the box
    # reaches into the SPE skin above it); a separator layer is added on top of a box that
    # reaches the membrane's separator-side face, as on voxel boxes
    top = min(float(hi[2]), zc1)
    if hi[2] - top < 1e-9 * max(1.0, float(hi[2])):
        top = float(hi[2])  # the box ends on the composite layer's top (no skin in it)
    wires_hi = hi.copy()
    wires_hi[2] = top
    separator = case.box.separator_um if abs(hi[2] - thickness) <= 1e-6 * thickness else 0.0
    mesh_hi = hi + np.array([0.0, 0.0, separator])
    planes = tuple(sorted({z for z in (top, float(hi[2]))
                           if lo[2] + 1e-9 < z < mesh_hi[2] - 1e-9}))
    g = case.gradient
    real = realize_gradient(g, (0.0, size, 0.0, size), case.box.seed)
    periodic = case.box.sides == "periodic"
    t0 = time.perf_counter()
    # coating shells as mesh surfaces where the pore is not all SPE (the lean zone): there
    # the coating decides which wire surface the electrolyte reaches; above it coating and
    # pore are both SPE, and a shell would only add surfaces
    coat = g.coating_thickness_um if (g.fill_min < 1.0 and lo[2] < g.lean_zone_um
                                      and g.coating_thickness_um >= SHELL_MIN * design) \
        else 0.0
    # clipped ends lie the pad outside the box (their caps r + pad), and a clipped shell's
    # cap, c farther out but c wider, at least pad - c: at least c / 2 with this pad
    pad = max(design, 1.5 * coat)
    clipped = _torus_wires(real.wires, lo, wires_hi, pad) if periodic else \
        clip_wires(real.wires, lo, wires_hi, pad_um=pad)
    r_mean = float(clipped.radii_um.mean()) if len(clipped) else 0.05
    # rGO sheets (insulating sides: check_conforming_scope), placed after the wires'
    # design; the wires' own ends are caps, clipped ends are not
    sheets_in = sheets_near_box(real.sheets, lo, wires_hi, pad) \
        if g.rgo_wt_fraction > 0.0 and not periodic else None
    real_ends: tuple[np.ndarray, np.ndarray] = (np.ones(0, dtype=bool),) * 2
    if sheets_in is not None:
        w = real.wires
        src = clipped.source
        half = 0.5 * w.lengths_um[src, None] * w.axes[src]
        real_ends = (np.linalg.norm(clipped.a_um - (w.centers_um[src] - half), axis=1) < 1e-9,
                     np.linalg.norm(clipped.b_um - (w.centers_um[src] + half), axis=1) < 1e-9)
    sheets: SheetPieces | None = None
    sheet_report: SheetReport | None = None
    if sheets_in is not None and coat == 0.0 and g.fill_min < 1.0 and lo[2] < g.lean_zone_um:
        raise ConformingError(
            f"design size {design:g} um (design_size_um, else size_fine_um): in the "
            f"polymer-lean zone rGO sheets need coating shells, built only when the coating "
            f"is >= {SHELL_MIN:g} x the design size; must be <= "
            f"{g.coating_thickness_um / SHELL_MIN:g} um")
    # the spec's contact width between crossing cylinders (w = 2 sqrt(r p))
    spec_overlap = g.contact_width_um**2 / (4.0 * r_mean)
    failures = []
    attempts = 0
    jitter_um = 0.0
    meshed = None
    torus: WireSegments | None = None
    for round_ in range(JITTER_ROUNDS + 1):
        start = clipped
        if round_:
            rng = np.random.default_rng([case.box.seed, round_])
            shift = rng.normal(0.0, JITTER_SD * design, size=(len(clipped), 3))
            start = replace(clipped, a_um=clipped.a_um + shift, b_um=clipped.b_um + shift)
        for f_overlap, f_gap in DESIGN_LADDER:
            attempts += 1
            if only_attempt is not None and attempts != only_attempt:
                continue
            min_overlap = max(spec_overlap, f_overlap * design)
            min_gap = f_gap * design
            try:
                if periodic:
                    torus, seg, report = design_contacts_periodic(
                        start, lo_um=lo, hi_um=wires_hi, min_overlap_um=min_overlap,
                        min_gap_um=min_gap, pad_um=design, coat_um=coat)
                    shells = None
                    if coat > 0.0:
                        sh = coating_shells(torus, coat)
                        im = _torus_images(sh.a_um, sh.b_um, sh.radii_um, lo, wires_hi,
                                           design)
                        shells = WireSegments(im.a, im.b, im.r, im.owner)
                else:
                    seg, report = design_contacts(start, lo_um=lo, hi_um=wires_hi,
                                                  min_overlap_um=min_overlap,
                                                  min_gap_um=min_gap, coat_um=coat)
                    shells = coating_shells(seg, coat) if coat > 0.0 else None
                    if sheets_in is not None and len(sheets_in):
                        sheets, sheet_report = design_sheets(
                            sheets_in, seg.a_um, seg.b_um, seg.radii_um, *real_ends, lo_um=lo,
                            hi_um=wires_hi, min_overlap_um=min_overlap, min_gap_um=min_gap,
                            coat_um=coat)
                t_design = time.perf_counter() - t0
                meshed = _occ_mesh(lo, mesh_hi, seg, size_fine_um, size_coarse_um, threads,
                                   periodic=periodic, planes_z=planes,
                                   wire_top_z=top if top < mesh_hi[2] - 1e-9 else None,
                                   shells=shells, sheets=sheets, sheet_coat=coat)
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
            f"box.seed = {case.box.seed}: no meshable contact design in "
            f"{len(failures)} attempts (last: {failures[-1] if failures else 'none tried'}); "
            f"use voxel boxes, or another seed")
    points, cells, region, t_geo, t_mesh, n_vol = meshed
    neg = q < 0  # the quality of the accepted attempt, signed by the cell orientation
    cells[neg] = cells[neg][:, [0, 2, 1, 3]]  # positive orientation
    q = np.abs(q)
    designed = seg.as_wires()
    phase = np.where(region == 1, int(Phase.NANOWIRE), int(Phase.SPE)).astype(np.int32)
    phase[region == 4] = int(Phase.RGO)
    pore = np.nonzero(region == 3)[0]  # (region 2: the coating shells, SPE)
    if len(pore):
        z_cell = points[cells[pore], 2].mean(axis=1)
        phase[pore[z_cell > hi[2]]] = int(Phase.SEPARATOR)
        pore = pore[z_cell <= top]  # above: the SPE skin (and the separator)
    if len(pore):
        cen = points[cells[pore]].mean(axis=1)
        coated = np.zeros(len(pore), dtype=bool) if coat > 0.0 else \
            _within_coated_wire(designed, cen, g.coating_thickness_um)
        free = pore[~coated]
        if len(free):
            gfield = gaussian_field(cen[~coated], (size, size, height), g.fill_correlation_um,
                                    case.box.seed, origin_um=tuple(float(o) for o in lo),
                                    periodic_axes=(0, 1) if periodic else ())
            f = gradient_fill(cen[~coated, 2], lean_zone_um=g.lean_zone_um, fill_min=g.fill_min)
            phase[free[special.ndtr(gfield) >= f]] = int(Phase.VOID)
    height_total = height + separator
    vol = _volumes(points, cells)
    total = float(vol.sum())
    stats = {
        "cells_count": float(len(cells)), "vertices_count": float(len(points)),
        "volumes_count": float(n_vol), "design_attempts": float(attempts),
        "jitter_max_um": jitter_um, "coating_shells_um": coat,
        "min_quality": float(q.min(initial=1.0)),
        "quality_p001": float(np.percentile(q, 0.1)) if len(q) else 1.0,
        "quality_p01": float(np.percentile(q, 1)) if len(q) else 1.0,
        "mean_quality": float(q.mean()) if len(q) else 1.0,
        "cells_below_0.01_count": float(np.count_nonzero(q < 0.01)),
        "min_cell_volume_um3": float(vol.min(initial=np.inf)),
        "box_volume_error_rel": abs(total - size * size * height_total)
        / (size * size * height_total),
        "design_time_s": t_design, "design_size_um": design, "geometry_time_s": t_geo,
        "mesh_time_s": t_mesh,
        "size_fine_um": size_fine_um, "size_coarse_um": size_coarse_um,
    }
    for p in (Phase.NANOWIRE, Phase.RGO, Phase.SPE, Phase.VOID, Phase.SEPARATOR):
        stats[f"{p.label}_fraction"] = float(vol[phase == int(p)].sum()) / total
    stats["target_nanowire_fraction"] = real.target_fractions["nanowire"]
    if sheets_in is not None:
        stats["target_rgo_fraction"] = real.target_fractions["rgo"]
        rep_s = sheet_report or SheetReport(0, 0, 0.0, 0, 0)
        stats.update({"sheets_count": float(rep_s.sheets_count),
                      "sheets_moved_count": float(rep_s.moved_count),
                      "sheets_max_shift_um": rep_s.max_shift_um,
                      "sheet_wire_contacts_count": float(rep_s.wire_contacts_count),
                      "sheets_touching_wires_count": float(rep_s.touching_count)})
    return ConformingBox(points_um=points - lo, cells=cells, phase=phase, kind=kind,
                         size_um=size, height_um=height_total,
                         composite_z_um=(0.0, top - float(lo[2])), separator_um=separator,
                         origin_um=(float(lo[0]), float(lo[1]), float(lo[2])),
                         wires=designed, contacts=report, stats=stats, periodic=periodic,
                         torus_wires=torus.as_wires() if torus is not None else None,
                         sheets=sheets.as_sheets() if sheets is not None else None)


def _volumes(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    p = points[cells]
    return np.asarray(np.abs(np.einsum("ij,ij->i", p[:, 1] - p[:, 0],
                                       np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))) / 6.0)


def _torus_wires(wires: Wires, lo: np.ndarray, hi: np.ndarray, pad_um: float) -> WireSegments:
    """The whole wires of a periodic box: those whose anchor lies in the box laterally and
    that come within ``r + pad_um`` of its z range (``source``: realization index)."""
    anchors = wires.anchors()
    half = 0.5 * wires.lengths_um
    reach = half * np.abs(wires.axes[:, 2]) + wires.radii_um + pad_um
    z = wires.centers_um[:, 2]
    keep = np.nonzero(np.all((anchors[:, :2] >= lo[:2]) & (anchors[:, :2] < hi[:2]), axis=1)
                      & (z + reach > lo[2]) & (z - reach < hi[2]))[0]
    c, d = wires.centers_um[keep], wires.axes[keep]
    return WireSegments(c - half[keep, None] * d, c + half[keep, None] * d,
                        wires.radii_um[keep].copy(), keep)


def _occ_mesh(lo: np.ndarray, hi: np.ndarray, seg: WireSegments, fine: float, coarse: float,
              threads: int, periodic: bool = False, planes_z: tuple[float, ...] = (),
              wire_top_z: float | None = None, shells: WireSegments | None = None,
              sheets: SheetPieces | None = None, sheet_coat: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, int]:
    """Fragment the wire cylinders (region 1), the coating shells (``shells``: region 2
    where no wire is) and the box (region 3, pore) in one OCC call, keep the pieces inside
    the box and mesh them. The box is split into slabs at the
    heights ``planes_z`` (mesh planes), and the cylinders are cut flat at ``wire_top_z``.
    Returns points, cells, region per cell, geometry and mesh times and the volume count."""
    import gmsh

    t0 = time.perf_counter()
    initialize_gmsh()
    try:
        return _occ_mesh_in_session(gmsh, lo, hi, seg, fine, coarse, threads, t0, periodic,
                                    planes_z, wire_top_z, shells, sheets, sheet_coat)
    except ConformingError:
        raise
    except Exception as e:  # any Gmsh/OCC failure: one line, and the ladder goes on
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConformingError(f"gmsh: {first}") from None
    finally:
        gmsh.finalize()


def _occ_mesh_in_session(gmsh: Any, lo: np.ndarray, hi: np.ndarray, seg: WireSegments,
                         fine: float, coarse: float, threads: int, t0: float,
                         periodic: bool, planes_z: tuple[float, ...] = (),
                         wire_top_z: float | None = None,
                         shells: WireSegments | None = None,
                         sheets: SheetPieces | None = None, sheet_coat: float = 0.0
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, int]:
    """The body of :func:`_occ_mesh`, inside an initialised Gmsh session: regions 1 wire,
    2 coating shell (of a wire, or with ``sheet_coat > 0`` of a sheet: radius and
    half-thickness grown by it), 3 pore, 4 rGO sheet (a piece in a wire and a sheet is wire;
    in a sheet and a shell, sheet)."""
    gmsh.option.setNumber("General.Terminal", 1 if _verbose() else 0)
    gmsh.option.setNumber("General.NumThreads", max(1, threads))
    gmsh.model.add("conforming_box")
    occ = gmsh.model.occ
    inputs: list[tuple[int, int]] = []
    counts = []
    def discs(s: SheetPieces, grow: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = (s.half_thickness_um + grow) * s.normals  # flat cylinders along the normals
        return s.centers_um - h, s.centers_um + h, s.radii_um + grow

    empty = (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))
    shell_parts = [(shells.a_um, shells.b_um, shells.radii_um) if shells is not None
                   else empty]
    if sheets is not None and sheet_coat > 0.0:
        shell_parts.append(discs(sheets, sheet_coat))
    groups = [(seg.a_um, seg.b_um, seg.radii_um),
              tuple(np.concatenate([p[k] for p in shell_parts]) for k in range(3)),
              discs(sheets, 0.0) if sheets is not None else empty]
    for ca, cb, cr in groups:
        for k in range(len(cr)):
            cyl = (3, occ.addCylinder(*ca[k], *(cb[k] - ca[k]), cr[k]))
            if wire_top_z is not None and max(ca[k, 2], cb[k, 2]) + cr[k] > wire_top_z:
                # one cylinder at a time (OCC's Booleans of several overlapping arguments
                # are undefined): its part below the plane, if any
                below = occ.addBox(lo[0] - 1.0, lo[1] - 1.0, lo[2] - 1.0,
                                   hi[0] - lo[0] + 2.0, hi[1] - lo[1] + 2.0,
                                   wire_top_z - lo[2] + 1.0)
                cut, _ = occ.intersect([cyl], [(3, below)])
                inputs.extend(e for e in cut if e[0] == 3)
            else:
                inputs.append(cyl)
        counts.append(len(inputs))
    n_wires, n_shell, n_solid = counts
    levels = [float(lo[2]), *sorted(planes_z), float(hi[2])]
    for z0, z1 in itertools.pairwise(levels):
        inputs.append((3, occ.addBox(lo[0], lo[1], z0, hi[0] - lo[0], hi[1] - lo[1], z1 - z0)))
    _, out_map = occ.fragment(inputs[:1], inputs[1:])
    occ.synchronize()
    wire_pieces = {tag for children in out_map[:n_wires] for dim, tag in children if dim == 3}
    shell_pieces = {tag for children in out_map[n_wires:n_shell] for dim, tag in children
                    if dim == 3}
    sheet_pieces = {tag for children in out_map[n_shell:n_solid] for dim, tag in children
                    if dim == 3}
    # The pieces inside the box are exactly the box's children in the fragment (a test on
    # a piece's centre of mass is not enough: an outside piece can wrap around a box edge).
    inside = {tag for children in out_map[n_solid:] for dim, tag in children if dim == 3}
    keep = {tag: (1 if tag in wire_pieces else 4 if tag in sheet_pieces
                  else 2 if tag in shell_pieces else 3) for tag in inside}
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
    solid = [(3, t) for t, reg in keep.items() if reg in (1, 2, 4)]
    fine_pts = {p for p in gmsh.model.getBoundary(solid, combined=False, oriented=False,
                                                  recursive=True) if p[0] == 0}
    gmsh.model.mesh.setSize(gmsh.model.getEntities(0), coarse)
    gmsh.model.mesh.setSize(sorted(fine_pts), fine)
    gmsh.option.setNumber("Mesh.MeshSizeMin", 0.5 * fine)
    gmsh.option.setNumber("Mesh.MeshSizeMax", coarse)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 12)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 1)
    gmsh.option.setNumber("Mesh.Algorithm3D", 10)  # HXT
    if periodic:
        # Gmsh finds the translate of each node within this tolerance times the model's
        # size (read when the constraint is set); OCC's intersections of the wires with
        # opposite faces agree to only about 3e-8 um, and the default 1e-8 is too tight
        gmsh.option.setNumber("Geometry.Tolerance", 1e-7)
        _set_periodic_faces(gmsh, lo, hi)
    t1 = time.perf_counter()
    with _c_output_hidden():
        gmsh.model.mesh.generate(3)
    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    if len(node_tags) == 0:
        raise ConformingError("gmsh: no mesh nodes")
    index = np.full(int(node_tags.max()) + 1, -1, dtype=np.int64)
    index[node_tags.astype(np.int64)] = np.arange(len(node_tags))
    points = coords.reshape(-1, 3)
    if periodic:
        _check_periodic_nodes(points, lo, hi)
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


def _check_periodic_nodes(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Raise :class:`ConformingError` unless the mesh nodes on x = hi (y = hi) are those on
    x = lo (y = lo) moved by the period, one for one."""
    tol = 1e-7 * float((hi - lo).max())  # OCC places vertices to about 1e-10 um
    for k in (0, 1):
        on_lo = points[np.abs(points[:, k] - lo[k]) < tol]
        on_hi = points[np.abs(points[:, k] - hi[k]) < tol].copy()
        on_hi[:, k] -= hi[k] - lo[k]
        gap = cKDTree(on_lo).query(on_hi)[0] if len(on_lo) and len(on_hi) else np.zeros(0)
        if len(on_lo) != len(on_hi) or np.any(gap > tol):
            raise ConformingError(f"periodic faces: {len(on_lo)} and {len(on_hi)} mesh nodes "
                                  f"at x_{k} = lo and hi, {np.count_nonzero(gap > tol)} "
                                  f"without their translate")


def _set_periodic_faces(gmsh: Any, lo: np.ndarray, hi: np.ndarray) -> None:
    """Make the surface meshes on x = hi and y = hi translated copies of those on x = lo and
    y = lo. The fragments of a periodic geometry's opposite faces are translates of each other;
    they are paired by centre of mass and bounding box, and a face without its translate is a
    :class:`ConformingError` (the ladder goes on)."""
    occ = gmsh.model.occ
    size = hi - lo
    tol = 1e-5 * float(size.max())  # OCC's bounding boxes are about 2e-6 um loose
    for k in (0, 1):
        def on_plane(value: float, k: int = k) -> list[int]:
            a, b = lo - tol, hi + tol
            a[k], b[k] = value - tol, value + tol
            # a face whose bounding box is thin along k lies in the plane only if it is
            # normal to k (a tiny piece at a box edge is thin along both axes there)
            return [t for _, t in gmsh.model.getEntitiesInBoundingBox(*a, *b, 2)
                    if abs(_face_normal(gmsh, t)[k]) > 0.999]

        def signature(tag: int) -> np.ndarray:
            return np.concatenate([occ.getCenterOfMass(2, tag),
                                   gmsh.model.getBoundingBox(2, tag)])

        sources, targets = on_plane(lo[k]), on_plane(hi[k])
        if len(sources) != len(targets):
            raise ConformingError(f"periodic faces: {len(sources)} pieces at x_{k} = lo and "
                                  f"{len(targets)} at x_{k} = hi")
        move = np.zeros(9)
        move[[k, 3 + k, 6 + k]] = size[k]  # centre of mass and both bounding-box corners
        src = np.array([signature(t) for t in sources]).reshape(-1, 9) + move
        pairs = []
        for t in targets:
            gap = np.abs(src - signature(t)).max(axis=1)
            q = int(np.argmin(gap))
            if gap[q] > 10.0 * tol:
                raise ConformingError(f"periodic faces: face {t} at x_{k} = hi has no "
                                      f"translate at x_{k} = lo (off by {gap[q]:.2g} um)")
            pairs.append((t, sources[q]))
        if len({s for _, s in pairs}) != len(pairs):
            raise ConformingError(f"periodic faces: two faces at x_{k} = hi match one at lo")
        affine = np.eye(4)
        affine[k, 3] = size[k]
        gmsh.model.mesh.setPeriodic(2, [t for t, _ in pairs], [s for _, s in pairs],
                                    affine.ravel().tolist())


def _face_normal(gmsh: Any, tag: int) -> np.ndarray:
    """The unit normal of surface ``tag`` at the middle of its parameter range."""
    lo, hi = gmsh.model.getParametrizationBounds(2, tag)
    return np.asarray(gmsh.model.getNormal(tag, 0.5 * (np.asarray(lo) + np.asarray(hi))))


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


def _within_coated_wire(w: Wires, pts: np.ndarray, coating: float, extend: float = 0.0
                        ) -> np.ndarray:
    """Points inside a coated wire: a flat-ended cylinder of radius r + coating, ``extend``
    longer at each end (the wire itself included)."""
    out = np.zeros(len(pts), dtype=bool)
    for c, ax, ln, r in zip(w.centers_um, w.axes, w.lengths_um, w.radii_um, strict=True):
        rel = pts - c
        along = rel @ ax
        radial2 = np.einsum("ij,ij->i", rel, rel) - along**2
        out |= (np.abs(along) <= 0.5 * ln + extend) & (radial2 <= (r + coating) ** 2)
    return out


def voxelize_designed(box: ConformingBox, case: CaseSpec, voxel_um: float) -> VoxelImage:
    """The voxel image of the *same* geometry as a conforming box (its designed wires, the
    coating and fill rules at voxel centres), for voxel-vs-conforming comparisons."""
    g = case.gradient
    n = round(box.size_um / voxel_um)
    nz = round((box.height_um - box.separator_um) / voxel_um)  # the cathode part
    n_sep = round(box.separator_um / voxel_um)
    if abs(n * voxel_um - box.size_um) > 1e-6 * box.size_um or \
            abs((nz + n_sep) * voxel_um - box.height_um) > 1e-6 * box.height_um or \
            abs(n_sep * voxel_um - box.separator_um) > 1e-6 * box.height_um:
        raise ConformingError(f"voxel_um = {voxel_um:g}: must divide the box "
                              f"({box.size_um:g} x {box.height_um:g} um, separator "
                              f"{box.separator_um:g} um) into whole voxels")
    real = realize_gradient(g, (0.0, box.size_um, 0.0, box.size_um), case.box.seed)
    # periodic: the whole designed wires, which voxelize images on the torus itself
    real = replace(real, wires=box.torus_wires if box.torus_wires is not None else box.wires,
                   sheets=box.sheets if box.sheets is not None
                   else Sheets(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), 0.0))
    img = voxelize(real, box.origin_um, (n, n, nz), voxel_um, coating_um=0.0,
                   fill="gradient", fill_min=g.fill_min, lean_zone_um=g.lean_zone_um,
                   correlation_um=g.fill_correlation_um, seed=case.box.seed,
                   periodic=box.periodic)
    grid = [box.origin_um[k] + (np.arange(s) + 0.5) * voxel_um
            for k, s in enumerate((n, n, nz))]
    X, Y, Z = np.meshgrid(*grid, indexing="ij")
    centres = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)
    # as the box: its coating shells reach past the wire ends, the cell labels do not
    coated = _within_coated_wire(box.wires, centres, g.coating_thickness_um,
                                 box.stats.get("coating_shells_um", 0.0))
    if box.sheets is not None:  # flat cylinders along their normals, coated like the wires
        sh = box.sheets
        discs = Wires(sh.centers_um, sh.normals, np.full(len(sh.diameters_um), sh.thickness_um),
                      0.5 * sh.diameters_um)
        coated |= _within_coated_wire(discs, centres, g.coating_thickness_um,
                                      g.coating_thickness_um)
    coated = coated.reshape(n, n, nz)
    labels = img.labels.copy()
    labels[coated & (labels != int(Phase.NANOWIRE)) & (labels != int(Phase.RGO))] = \
        int(Phase.SPE)
    if n_sep:  # on top, as on voxel boxes
        layer = np.full((n, n, n_sep), int(Phase.SEPARATOR), dtype=labels.dtype)
        labels = np.concatenate([labels, layer], axis=2)
    return replace(img, labels=labels)
