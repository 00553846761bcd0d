"""rGO sheets in conforming boxes: flat discs placed so that they always mesh.

A sheet of the realization (:class:`meshes.realization.Sheets`) is a flat disc: radius R,
thickness 2 h, unit normal n. In a conforming box (:mod:`meshes.conforming`) it is a flat
OCC cylinder fragmented with the wires and the box, so every sheet/polymer and sheet/wire
interface is a mesh surface. Like the wires, a sheet must never be *nearly* tangent to
another surface (OCC then cuts slivers that no mesher resolves). The wires are designed
first (:func:`meshes.conforming.design_contacts`) and then held fixed; each sheet in turn is
moved by the smallest rigid shift, along its normal first and then also in its plane, after
which none of these configurations is left (``ov``, ``gap``: the wire design's
``min_overlap`` and ``min_gap``):

* **rim**: the two rim circles (the disc's edges) against each wire mantle: every local
  minimum along a circle of its distance to the wire's axis lies outside
  ``(r - ov, r + gap)`` (a mantle that grazes a rim cuts a sliver from the disc);
* **faces**: a wire nearly parallel to the sheet (``|e . n| < 0.2``, as for box faces) that
  does not cross a face plane over the disc keeps its axis' distance from that plane outside
  ``(r' - ov, r' + gap)``, ``r' = r sqrt(1 - (e . n)^2)`` the wire's half-width across the
  plane: it rests on the near face by at least ``ov`` or clears it by ``gap``, and it cuts
  through the far face by ``ov`` or stays ``gap`` short of it;
* **ends**: a wire end whose cap lies over the disc keeps its distance from each face plane
  outside ``(r' - ov, r' + gap)``; a wire end beside the rim, at the height of the disc,
  keeps its distance from the rim surface outside ``(r_c - ov, r_c + gap)``, ``r_c`` the
  cap's half-width across the rim; where a rim circle passes a wire's flat end face
  tangentially (an extremum of its distance to the end plane, over the face) it lies
  ``ov`` behind the face or ``gap`` in front of it;
* **box**: each rim circle keeps its distance to each box face outside ``(e - ov, e + gap)``
  (``e = R sqrt(1 - n_k^2)``, its half-extent across the face; checked where its extreme
  point lies on the face), and every local minimum of its distance to a box edge is at least
  ``gap``; a box edge nearly parallel to the sheet that does not cross a face plane over the
  disc keeps its signed distance from it outside ``(-ov, gap)``;
* **sheets**: two sheets keep at least ``gap`` apart (sheet/sheet contacts are not built).

Wire ends that were made by clipping to the box grown by the pad are not caps here (they lie
outside the box). Sheets that reach into the box are whole discs (OCC cuts them with the
box). With a coating (boxes in the polymer-lean zone) every rule holds for the sheet and its
coating shell against each wire and its shell. Scope
(:func:`meshes.conforming.check_conforming_scope`): insulating sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meshes.realization import Sheets

__all__ = ["SHEET_MAX_SHIFT", "SheetPieces", "SheetReport", "design_sheets", "sheets_near_box"]

#: points per rim circle for its distance functions (about 4 nm apart on a 1 um flake)
_RIM_POINTS = 720
#: |cos| of the angle between a line and the sheet normal below which the line runs along
#: the sheet (the box-face rules of meshes/conforming.py use the same 0.2)
_PARALLEL = 0.2
#: largest shift of a sheet, along its normal and in its plane (um)
SHEET_MAX_SHIFT = 0.15


@dataclass(frozen=True)
class SheetPieces:
    """Discs: centres (n, 3) um, unit normals (n, 3), radii (n,) um, half-thickness um, and
    the index of the realization sheet each comes from."""

    centers_um: np.ndarray
    normals: np.ndarray
    radii_um: np.ndarray
    half_thickness_um: float
    source: np.ndarray

    def __len__(self) -> int:
        return int(self.radii_um.shape[0])

    def as_sheets(self) -> Sheets:
        return Sheets(self.centers_um, self.normals, 2.0 * self.radii_um,
                      2.0 * self.half_thickness_um)


@dataclass(frozen=True)
class SheetReport:
    """What the sheet design did: the sheets that reach into the box, how many of the sheets
    near it it moved and how far, the sheet/wire contacts in the box (overlapping pairs),
    and the sheets that touch at least one wire there."""

    sheets_count: int
    moved_count: int
    max_shift_um: float
    wire_contacts_count: int
    touching_count: int


def sheets_near_box(sheets: Sheets, lo_um: np.ndarray, hi_um: np.ndarray, pad_um: float
                    ) -> SheetPieces:
    """The sheets whose bounding box comes within ``pad_um`` of the box ``[lo, hi]``."""
    n = np.asarray(sheets.normals, dtype=np.float64).reshape(-1, 3)
    c = np.asarray(sheets.centers_um, dtype=np.float64).reshape(-1, 3)
    radius = 0.5 * np.asarray(sheets.diameters_um, dtype=np.float64)
    h = 0.5 * float(sheets.thickness_um)
    extent = radius[:, None] * np.sqrt(np.clip(1.0 - n**2, 0.0, 1.0)) + h * np.abs(n)
    keep = np.all((c + extent > lo_um - pad_um) & (c - extent < hi_um + pad_um), axis=1)
    idx = np.nonzero(keep)[0]
    return SheetPieces(c[idx], n[idx], radius[idx], h, idx)


def _basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(n, u)


def _rims(c: np.ndarray, n: np.ndarray, radius: float, h: float) -> np.ndarray:
    """The two rim circles (2, K, 3): at +h and at -h along the normal."""
    u, v = _basis(n)
    th = np.linspace(0.0, 2.0 * np.pi, _RIM_POINTS, endpoint=False)
    ring = radius * (np.cos(th)[:, None] * u + np.sin(th)[:, None] * v)
    return np.stack([c + h * n + ring, c - h * n + ring])


def _to_segments(p: np.ndarray, a: np.ndarray, b: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points p (..., 3) to segments a -> b (m, 3): (m, ...) each, and the
    parameter of the closest point on the segment."""
    ab = b - a
    ll = np.maximum(np.einsum("mj,mj->m", ab, ab), 1e-300)
    rel = p[None, ...] - a.reshape((len(a),) + (1,) * (p.ndim - 1) + (3,))
    abx = ab.reshape((len(a),) + (1,) * (p.ndim - 1) + (3,))
    s = np.clip(np.sum(rel * abx, axis=-1) / ll.reshape((-1,) + (1,) * (p.ndim - 1)), 0.0, 1.0)
    d = np.linalg.norm(rel - s[..., None] * abx, axis=-1)
    return d, s


def _local_minima(d: np.ndarray) -> np.ndarray:
    """Local minima along the last (circular) axis."""
    return np.asarray((d <= np.roll(d, 1, axis=-1)) & (d <= np.roll(d, -1, axis=-1)))


def _footprint(a: np.ndarray, b: np.ndarray, c: np.ndarray, n: np.ndarray, radius: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For lines a -> b (m, 3): the parameter interval [s0, s1] of the part over the disc
    (lateral distance from its axis <= radius), and whether it is not empty."""
    za = (a - c) @ n
    dz = (b - a) @ n
    qa = (a - c) - za[:, None] * n
    qd = (b - a) - dz[:, None] * n
    A = np.einsum("mj,mj->m", qd, qd)
    B = 2.0 * np.einsum("mj,mj->m", qa, qd)
    C = np.einsum("mj,mj->m", qa, qa) - radius**2
    disc = B * B - 4.0 * A * C
    root = np.sqrt(np.maximum(disc, 0.0))
    flat = A < 1e-18
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = np.where(flat, np.where(C <= 0.0, 0.0, np.inf), (-B - root) / (2.0 * A))
        s1 = np.where(flat, np.where(C <= 0.0, 1.0, -np.inf), (-B + root) / (2.0 * A))
    s0 = np.maximum(np.where(~flat & (disc < 0.0), np.inf, s0), 0.0)
    s1 = np.minimum(np.where(~flat & (disc < 0.0), -np.inf, s1), 1.0)
    return s0, s1, s0 < s1


def _plane_band(a: np.ndarray, b: np.ndarray, c: np.ndarray, n: np.ndarray, radius: float,
                h: float, half: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Lines a -> b nearly parallel to the disc that do not cross one of its face planes over
    the disc, with the distance of the nearer point from that plane in
    ``(half + lo, half + hi)`` (signed: positive outside the disc on that side)."""
    s0, s1, over = _footprint(a, b, c, n, radius)
    s0, s1 = np.where(over, s0, 0.0), np.where(over, s1, 0.0)
    za = (a - c) @ n
    dz = (b - a) @ n
    bad = np.zeros(len(a), dtype=bool)
    for sigma in (1.0, -1.0):
        t0 = sigma * (za + s0 * dz) - h  # + outside the disc on side sigma
        t1 = sigma * (za + s1 * dz) - h
        crossing = t0 * t1 < 0.0
        near = np.where(np.abs(t0) < np.abs(t1), t0, t1)
        bad |= over & ~crossing & (near > half + lo) & (near < half + hi)
    return bad


def _wire_violations(c: np.ndarray, n: np.ndarray, radius: float, h: float, a: np.ndarray,
                     b: np.ndarray, r: np.ndarray, real_a: np.ndarray, real_b: np.ndarray,
                     ov: float, gap: float) -> np.ndarray:
    """Per wire: does it meet the sheet in a nearly tangent configuration (rules in the
    module docstring)?"""
    m = len(r)
    if m == 0:
        return np.zeros(0, dtype=bool)
    axis = b - a
    length = np.maximum(np.linalg.norm(axis, axis=1), 1e-300)
    e = axis / length[:, None]
    cn = e @ n
    rp = r * np.sqrt(np.clip(1.0 - cn**2, 0.0, 1.0))
    # rim circles against the mantles
    rims = _rims(c, n, radius, h)
    d, s = _to_segments(rims, a, b)  # (m, 2, K)
    cap = ((s <= 1e-9) & real_a[:, None, None]) | ((s >= 1.0 - 1e-9) & real_b[:, None, None])
    rr = r[:, None, None]
    bad = np.any(_local_minima(d) & ~cap & (d > rr - ov) & (d < rr + gap), axis=(1, 2))
    # rim circles against the flat end faces: where a circle comes to an extremum of its
    # signed distance to an end plane (+ beyond the wire) over the end face, it touches the
    # face tangentially
    for end, real, out in ((a, real_a, -e), (b, real_b, e)):
        rel = rims[None, ...] - end[:, None, None, :]  # (m, 2, K, 3)
        sd = np.einsum("mikj,mj->mik", rel, out)
        across = np.linalg.norm(rel - sd[..., None] * out[:, None, None, :], axis=-1)
        extremum = _local_minima(sd) | _local_minima(-sd)
        bad |= real & np.any(extremum & (across <= rr) & (sd > -ov) & (sd < gap), axis=(1, 2))
    # wires along the sheet against its face planes (outer and inner tangency)
    par = np.abs(cn) < _PARALLEL
    if np.any(par):
        bad[par] |= _plane_band(a[par], b[par], c, n, radius, h, rp[par], -ov, gap) \
            | _plane_band(a[par], b[par], c, n, radius, h, -rp[par], -gap, ov)
    # wire ends: caps over the disc against the face planes, caps beside the rim
    for end, real in ((a, real_a), (b, real_b)):
        rel = end - c
        z = rel @ n
        q = rel - z[:, None] * n
        rho = np.linalg.norm(q, axis=1)
        over = real & (rho <= radius + r)  # the end face reaches r from the axis
        for sigma in (1.0, -1.0):
            dist = np.abs(z - sigma * h)
            bad |= over & (dist > rp - ov) & (dist < rp + gap)
        radial = q / np.maximum(rho, 1e-300)[:, None]
        rc = r * np.sqrt(np.clip(1.0 - np.einsum("mj,mj->m", e, radial) ** 2, 0.0, 1.0))
        level = (z - rp < h) & (z + rp > -h)
        dist = np.abs(rho - radius)
        bad |= real & level & (dist > rc - ov) & (dist < rc + gap)
    return np.asarray(bad)


def _box_violations(c: np.ndarray, n: np.ndarray, radius: float, h: float, lo: np.ndarray,
                    hi: np.ndarray, edges: tuple[np.ndarray, np.ndarray], ov: float,
                    gap: float) -> int:
    """Nearly tangent configurations of the sheet with the box faces and edges."""
    count = 0
    for sigma in (1.0, -1.0):
        centre = c + sigma * h * n
        for k in range(3):
            norm = math.sqrt(max(1.0 - n[k] ** 2, 0.0))
            if norm > 1e-9:
                step = radius * (np.eye(3)[k] - n[k] * n) / norm
                extremes = [centre + step, centre - step]
            else:  # the circle lies in a plane parallel to the face
                extremes = [centre]
            others = [j for j in range(3) if j != k]
            for plane, sign in ((lo[k], 1.0), (hi[k], -1.0)):
                sd = [sign * (p[k] - plane) for p in extremes]
                q = int(np.argmin(np.abs(sd)))
                p = extremes[q]
                on_face = np.all((p[others] > lo[others] - gap) & (p[others] < hi[others] + gap))
                dc = abs(sign * (centre[k] - plane))
                e_k = radius * norm
                if on_face and e_k - ov < dc < e_k + gap:
                    count += 1
    p_e, q_e = edges
    rims = _rims(c, n, radius, h)
    d, _ = _to_segments(rims, p_e, q_e)  # (12, 2, K)
    count += int(np.count_nonzero(np.any(_local_minima(d) & (d < gap), axis=(1, 2))))
    dirs = (q_e - p_e) / np.linalg.norm(q_e - p_e, axis=1)[:, None]
    par = np.abs(dirs @ n) < _PARALLEL
    if np.any(par):
        zero = np.zeros(int(par.sum()))
        count += int(np.count_nonzero(_plane_band(p_e[par], q_e[par], c, n, radius, h, zero,
                                                  -ov, gap)))
    return count


def _disc_samples(c: np.ndarray, n: np.ndarray, radius: float, h: float,
                  spacing: float = 0.01) -> np.ndarray:
    """Points on the disc's surface about ``spacing`` apart: both faces and the rim."""
    u, v = _basis(n)
    pts = []
    for rho in np.linspace(0.0, radius, max(2, math.ceil(radius / spacing) + 1)):
        k = max(1, math.ceil(2.0 * math.pi * rho / spacing))
        th = np.linspace(0.0, 2.0 * math.pi, k, endpoint=False)
        ring = rho * (np.cos(th)[:, None] * u + np.sin(th)[:, None] * v)
        for z in ((-h, h) if rho < radius else (-h, 0.0, h)):
            pts.append(c + z * n + ring)
    return np.concatenate(pts)


def _disc_sdf(x: np.ndarray, c: np.ndarray, n: np.ndarray, radius: float, h: float
              ) -> np.ndarray:
    """Signed distance (negative inside) of points x (k, 3) to the disc."""
    rel = x - c
    z = rel @ n
    rho = np.linalg.norm(rel - z[:, None] * n, axis=1)
    dr, dz = rho - radius, np.abs(z) - h
    return np.asarray(np.sqrt(np.maximum(dr, 0.0) ** 2 + np.maximum(dz, 0.0) ** 2)
                      + np.minimum(np.maximum(dr, dz), 0.0))


def _sheets_apart(c: np.ndarray, n: np.ndarray, radius: float, h: float, samples: np.ndarray,
                  placed: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]], gap: float
                  ) -> bool:
    """Does the disc (surface ``samples``) keep ``gap`` from every placed one (each with its
    own samples; all of half-thickness h)?"""
    for c2, n2, r2, samples2 in placed:
        if np.linalg.norm(c - c2) > radius + r2 + 2.0 * h + gap:
            continue
        if _disc_sdf(samples, c2, n2, r2, h).min() < gap or \
                _disc_sdf(samples2, c, n, radius, h).min() < gap:
            return False
    return True


def _candidates(n: np.ndarray, step: float) -> np.ndarray:
    """Rigid shifts to try, smallest first: along the normal, then also in the plane."""
    k = int(SHEET_MAX_SHIFT / step)
    w = step * np.arange(-k, k + 1)
    along = w[np.argsort(np.abs(w), kind="stable")][:, None] * n
    u, v = _basis(n)
    g = np.arange(-4, 5) * (SHEET_MAX_SHIFT / 6.0)
    lateral = np.array([x * u + y * v for x in g for y in g if (x, y) != (0.0, 0.0)])
    both = (lateral[:, None, :] + along[None, :, :]).reshape(-1, 3)
    size = np.linalg.norm(both, axis=1)
    both = both[np.argsort(size, kind="stable")]
    return np.concatenate([along, both[np.sort(size) <= SHEET_MAX_SHIFT + 1e-12]])


def design_sheets(sheets: SheetPieces, a: np.ndarray, b: np.ndarray, r: np.ndarray,
                  real_a: np.ndarray, real_b: np.ndarray, *, lo_um: np.ndarray,
                  hi_um: np.ndarray, min_overlap_um: float, min_gap_um: float,
                  coat_um: float = 0.0) -> tuple[SheetPieces, SheetReport]:
    """Move each sheet by the smallest rigid shift (at most :data:`SHEET_MAX_SHIFT`) that
    leaves no nearly tangent configuration with the (fixed, designed) wires ``a -> b``
    (radii r), the box ``[lo, hi]`` and the sheets placed before it (module docstring).
    ``real_a``, ``real_b``: whether each wire end is the wire's own end (False: made by
    clipping to the grown box, outside the box; not a cap here). With ``coat_um > 0`` the
    coating shells are surfaces too (a wire's: radius ``r + coat_um``, each end ``coat_um``
    farther out; a sheet's: radius ``R + coat_um``, half-thickness ``h + coat_um``), and every
    rule holds for each pair of surfaces (sheet or its shell against wire or its shell), and
    the sheets' shells keep ``min_gap`` apart. Raises
    :class:`meshes.conforming.ConformingError` (imported here: that module imports this
    one) when a sheet has no such position, so the caller's ladder goes on."""
    from meshes.conforming import ConformingError, _box_edges

    ov, gap = min_overlap_um, min_gap_um
    h = sheets.half_thickness_um
    edges = _box_edges(lo_um, hi_um)
    coat = coat_um
    # the surfaces: wires (and their shells) against the sheet (and its shell)
    axis = b - a
    e = axis / np.maximum(np.linalg.norm(axis, axis=1), 1e-300)[:, None]
    wire_surfaces = [(a, b, r)] + ([(a - coat * e, b + coat * e, r + coat)] if coat > 0.0
                                   else [])
    disc_grow = [0.0] + ([coat] if coat > 0.0 else [])
    centres = sheets.centers_um.copy()
    placed: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]] = []
    shifts = np.zeros(len(sheets))
    contacts = 0
    touching = 0
    inside = 0
    step = 0.5 * min(ov, gap)
    for q in range(len(sheets)):
        c0, n, radius = sheets.centers_um[q], sheets.normals[q], float(sheets.radii_um[q])
        # the wires that can matter: axis within reach of the disc
        d_c, _ = _to_segments(c0[None, :], a, b)
        near = np.nonzero(d_c[:, 0] < radius + h + r + 4.0 * coat + gap + SHEET_MAX_SHIFT
                          + 0.05)[0]
        wa, wb, wr = a[near], b[near], r[near]
        near_surfaces = [(sa[near], sb[near], sr[near]) for sa, sb, sr in wire_surfaces]
        ra, rb = real_a[near], real_b[near]
        found = None
        # (the outermost surface, the shell with a coating, keeps the other sheets apart)
        base = _disc_samples(c0, n, radius + coat, h + coat)

        def meshable(c: np.ndarray, samples: np.ndarray, n: np.ndarray = n,
                     radius: float = radius, surfaces: list = near_surfaces,
                     ra: np.ndarray = ra, rb: np.ndarray = rb) -> bool:
            for g in disc_grow:
                for sa, sb, sr in surfaces:
                    if np.any(_wire_violations(c, n, radius + g, h + g, sa, sb, sr, ra, rb, ov,
                                               gap)):
                        return False
                if _box_violations(c, n, radius + g, h + g, lo_um, hi_um, edges, ov, gap):
                    return False
            return _sheets_apart(c, n, radius + coat, h + coat, samples, placed, gap)

        for delta in _candidates(n, step):
            if meshable(c0 + delta, base + delta):
                found, moved = c0 + delta, base + delta
                break
        if found is None:
            raise ConformingError(
                f"sheet design: rGO sheet {int(sheets.source[q])} has no meshable position "
                f"within {SHEET_MAX_SHIFT:g} um at min_overlap_um = {ov:g} and "
                f"min_gap_um = {gap:g}")
        centres[q] = found
        shifts[q] = float(np.linalg.norm(found - c0))
        placed.append((found, n, radius + coat, moved))
        own = _disc_samples(found, n, radius, h)
        inside += int(np.any(np.all((own >= lo_um) & (own <= hi_um), axis=1)))
        # contacts in the box: the wire's axis comes within r of the disc there (sampled
        # every ~5 nm)
        if len(near):
            k = np.linspace(0.0, 1.0, 200)
            axis_pts = (wa[:, None, :] + k[None, :, None] * (wb - wa)[:, None, :]).reshape(-1, 3)
            sdf = _disc_sdf(axis_pts, found, n, radius, h)
            in_box = np.all((axis_pts >= lo_um) & (axis_pts <= hi_um), axis=1)
            hit = ((sdf < np.repeat(wr, len(k))) & in_box).reshape(len(near), -1)
            touch = int(np.count_nonzero(hit.any(axis=1)))
            contacts += touch
            touching += int(touch > 0)
    designed = SheetPieces(centres, sheets.normals, sheets.radii_um, h, sheets.source)
    return designed, SheetReport(
        sheets_count=inside, moved_count=int(np.count_nonzero(shifts > 0.0)),
        max_shift_um=float(shifts.max(initial=0.0)), wire_contacts_count=contacts,
        touching_count=touching)
