"""3D random slender rods (nanowires as soft-core spherocylinders) and their percolation.

A wire of :class:`meshes.realization.Wires` is modelled here as a *capsule* (spherocylinder):
the set of points within distance r of its core segment. **Convention**: ``lengths_um`` is the
length L of the core segment (the cylindrical part); the total tip-to-tip length is
``L + D`` with D = 2 r. The aspect ratio is L / D (core length over diameter), the convention of
Onsager's excluded volume and of Balberg et al. (1984) used for the reference values below.

Two capsules overlap when the minimal distance between their core segments is smaller than
``r_i + r_j`` (:func:`segment_distances`, exact and vectorised; parallel segments included).
Objects are soft-core (interpenetrable, a Boolean model), as in
:mod:`meshes.realization`.

This module provides

* :func:`segment_distances`: exact minimal distance between pairs of 3D segments,
* :func:`rod_contacts` / :func:`rod_clusters`: overlapping capsule pairs (candidates from a
  k-d tree on points along the rod axes, then the exact test) and connected clusters, with the
  faces x = 0, x = W they touch (open box) or the directions in which they wrap (periodic box),
* :func:`estimate_threshold`: Monte Carlo estimate of the critical density of monodisperse,
  isotropic soft-core spherocylinders in a periodic cube (wrapping criterion), reported as
  the reduced density ``eta_c = n_c V``, the volume fraction ``phi_c = 1 - exp(-n_c V)`` and
  the reduced excluded volume ``n_c <V_ex>``.

Reference values (used by ``tests/test_rods.py``)
-------------------------------------------------
* Orientation-averaged excluded volume of two isotropic spherocylinders of core length L and
  diameter D (L. Onsager, Ann. N. Y. Acad. Sci. 51, 627 (1949)):
  ``<V_ex> = (4/3) pi D^3 + 2 pi D^2 L + (pi/2) D L^2`` (:func:`excluded_volume`).
* Slender limit: ``n_c <V_ex> ~ 1.4`` for L/D >> 1 (I. Balberg, C. H. Anderson, S. Alexander,
  N. Wagner, Phys. Rev. B 30, 3933 (1984)).
* Sphere limit L = 0: overlapping spheres percolate at ``phi_c = 0.2895 +- 0.0005``
  (M. D. Rintoul and S. Torquato, J. Phys. A 30, L585 (1997)), i.e.
  ``eta_c = -ln(1 - phi_c) = 0.3418`` and ``n_c (4/3) pi D^3 = 8 eta_c = 2.734``.

Threshold estimator
-------------------
Rods are placed one by one (canonical ensemble, k rods uniform in a periodic cube of side W
with isotropic axes); per sample, the smallest k at which some cluster wraps around the torus
in x (y, z) is found by bisection on k (wrapping is monotone in k; all contacts of the final
configuration are computed once and filtered by placement order). The grand-canonical
(Poisson) wrapping probability at number density n is then exact to compute from these counts,
``P(n) = mean_i Pr[Poisson(n W^3) >= k_i]``; the estimate is the n with P = 1/2 (the x, y and
z counts pooled for ``"average"``), with a bootstrap standard error over the samples. The P = 1/2
point of a wrapping probability approaches n_c with a finite-size shift of order
``(W / (L + D))^(-1/nu)`` (nu ~ 0.88 in 3D); the tests state the allowance they use.

Lengths are in um. The percolation functions work in units of the total rod length
``L + D = 1`` (so a sphere of diameter 1 for L/D = 0); densities there are per unit volume in
those units, and the reported quantities are dimensionless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.spatial import cKDTree

from meshes.realization import Wires
from meshes.threshold import parallel_map, poisson_threshold, seed_chunks

__all__ = [
    "ETA_C_SPHERES",
    "NC_VEX_SLENDER_BALBERG_1984",
    "PHI_C_SPHERES_RINTOUL_TORQUATO_1997",
    "PHI_C_SPHERES_RINTOUL_TORQUATO_1997_ERR",
    "RodClusters",
    "RodThresholdEstimate",
    "WrapCriterion",
    "estimate_threshold",
    "excluded_volume",
    "random_rods",
    "rod_clusters",
    "rod_contacts",
    "rod_volume",
    "segment_closest_points",
    "segment_distances",
    "threshold_from_counts",
]

#: Critical volume fraction of overlapping (soft-core) spheres and its error
#: (M. D. Rintoul and S. Torquato, J. Phys. A 30, L585 (1997)).
PHI_C_SPHERES_RINTOUL_TORQUATO_1997 = 0.2895
PHI_C_SPHERES_RINTOUL_TORQUATO_1997_ERR = 0.0005
#: The same as a reduced density ``n_c (pi/6) D^3 = -ln(1 - phi_c)`` (= 0.3418).
ETA_C_SPHERES = -math.log1p(-PHI_C_SPHERES_RINTOUL_TORQUATO_1997)
#: Slender-rod limit of the critical reduced excluded volume ``n_c <V_ex>`` (I. Balberg,
#: C. H. Anderson, S. Alexander, N. Wagner, Phys. Rev. B 30, 3933 (1984)); approximate.
NC_VEX_SLENDER_BALBERG_1984 = 1.4

#: ``"x"``, ``"y"``, ``"z"``: wrapping in that direction; ``"any"``: in some direction;
#: ``"average"``: the mean of the x, y and z probabilities (equal for an isotropic system).
WrapCriterion = Literal["x", "y", "z", "any", "average"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Relative tolerance below which two segments are treated as parallel (|d1 x d2|^2 relative to
# |d1|^2 |d2|^2) and a segment as a point (|d|^2 relative to the largest squared length).
_PARALLEL_RTOL = 1e-12
# First batch of rods per sample in estimate_threshold, as a multiple of a rough guess of the
# critical count, and each further batch when the cube has not wrapped in all 3 directions.
_BATCH = 1.45
_EXTRA = 0.25
# At most this many axis points per rod for the candidate search (k-d tree).
_MAX_SUB = 12


def excluded_volume(length: float, diameter: float) -> float:
    """Orientation-averaged excluded volume of two isotropic spherocylinders (Onsager 1949).

    ``(4/3) pi D^3 + 2 pi D^2 L + (pi/2) D L^2`` with L the core length and D the diameter
    (same length unit in and volume unit out).
    """
    el, d = float(length), float(diameter)
    return 4.0 / 3.0 * math.pi * d**3 + 2.0 * math.pi * d**2 * el + 0.5 * math.pi * d * el**2


def rod_volume(length: float, diameter: float) -> float:
    """Volume of one spherocylinder of core length L and diameter D: ``pi D^2 L/4 + pi D^3/6``."""
    el, d = float(length), float(diameter)
    return 0.25 * math.pi * d**2 * el + math.pi * d**3 / 6.0


# --------------------------------------------------------------------------------------------
# geometry


def segment_distances(
    p1: npt.ArrayLike, q1: npt.ArrayLike, p2: npt.ArrayLike, q2: npt.ArrayLike
) -> FloatArray:
    """Minimal Euclidean distance between segments ``p1-q1`` and ``p2-q2``, row by row.

    Exact (up to round-off) for all configurations: skew, intersecting, parallel or collinear
    segments, and degenerate (zero-length) segments, which are points. Inputs have shape
    ``(m, 3)`` (any common dimension works); the result has shape ``(m,)``, same unit.
    See :func:`segment_closest_points` for the method.
    """
    return segment_closest_points(p1, q1, p2, q2)[0]


def segment_closest_points(
    p1: npt.ArrayLike, q1: npt.ArrayLike, p2: npt.ArrayLike, q2: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Minimal distance between segments ``p1-q1`` and ``p2-q2`` and where it is attained.

    Returns ``(dist, s, t)``: the closest points are ``p1 + s (q1 - p1)`` and
    ``p2 + t (q2 - p2)``, s and t in [0, 1] (one minimiser where it is not unique).

    The squared distance ``|p1 + s d1 - p2 - t d2|^2`` is minimised over the unit square
    (s, t): the unconstrained minimiser of s is clamped to [0, 1], t is then optimal for that
    s and clamped, and s is re-optimised for a clamped t (convex problem; for parallel
    segments any s is a line minimiser and s = 0 is used before that correction). The result
    is the minimum of that candidate and the four end point-to-segment distances (the
    minimum on the border of the square), which keeps nearly parallel pairs accurate.
    """
    p1a = np.asarray(p1, dtype=np.float64)
    p2a = np.asarray(p2, dtype=np.float64)
    d1 = np.asarray(q1, dtype=np.float64) - p1a
    d2 = np.asarray(q2, dtype=np.float64) - p2a
    r = p1a - p2a
    a = np.einsum("ij,ij->i", d1, d1)
    e = np.einsum("ij,ij->i", d2, d2)
    b = np.einsum("ij,ij->i", d1, d2)
    c = np.einsum("ij,ij->i", d1, r)
    f = np.einsum("ij,ij->i", d2, r)
    scale = max(float(a.max(initial=0.0)), float(e.max(initial=0.0)), 1e-300)
    pt1 = a <= _PARALLEL_RTOL * scale
    pt2 = e <= _PARALLEL_RTOL * scale
    a_s = np.where(pt1, 1.0, a)
    e_s = np.where(pt2, 1.0, e)
    denom = a * e - b * b
    parallel = denom <= _PARALLEL_RTOL * a_s * e_s
    s = np.where(parallel, 0.0, np.clip((b * f - c * e) / np.where(parallel, 1.0, denom), 0, 1))
    s = np.where(pt1, 0.0, s)
    t = (b * s + f) / e_s
    # t outside [0, 1]: clamp it and re-optimise s for the clamped t
    t_c = np.clip(t, 0.0, 1.0)
    s = np.where(t_c != t, np.clip((b * t_c - c) / a_s, 0.0, 1.0), s)
    t = t_c
    s = np.where(pt1, 0.0, s)
    t = np.where(pt2, 0.0, t)
    t = np.where(pt1 & ~pt2, np.clip(f / e_s, 0.0, 1.0), t)
    s = np.where(pt2 & ~pt1, np.clip(-c / a_s, 0.0, 1.0), s)
    diff = r + s[:, None] * d1 - t[:, None] * d2
    best = np.einsum("ij,ij->i", diff, diff)
    # Every candidate is the distance of a pair of points of the two segments, so the minimum
    # over candidates is never below the true distance. The four end point-segment distances
    # cover minima on the border of the (s, t) square exactly, which makes (nearly) parallel
    # segments robust to the ill-conditioned interior solve.
    ones = np.ones_like(a)
    zeros = np.zeros_like(a)
    for pt, a0, dd, dd2, own, first in ((p1a, p2a, d2, e, zeros, True),
                                        (p1a + d1, p2a, d2, e, ones, True),
                                        (p2a, p1a, d1, a, zeros, False),
                                        (p2a + d2, p1a, d1, a, ones, False)):
        u = np.clip(np.einsum("ij,ij->i", pt - a0, dd) / np.maximum(dd2, 1e-300), 0.0, 1.0)
        w = pt - a0 - u[:, None] * dd
        cand = np.einsum("ij,ij->i", w, w)
        better = cand < best
        best = np.where(better, cand, best)
        if first:  # end of segment 1 (s fixed) against segment 2 (t = u)
            s, t = np.where(better, own, s), np.where(better, u, t)
        else:
            s, t = np.where(better, u, s), np.where(better, own, t)
    return np.sqrt(best), s, t


def _ends(wires: Wires) -> tuple[FloatArray, FloatArray]:
    c = np.asarray(wires.centers_um, dtype=np.float64).reshape(-1, 3)
    ax = np.asarray(wires.axes, dtype=np.float64).reshape(-1, 3)
    half = 0.5 * np.asarray(wires.lengths_um, dtype=np.float64).reshape(-1)[:, None] * ax
    return c - half, c + half


def _check_box(box_um: npt.ArrayLike) -> FloatArray:
    box = np.asarray(box_um, dtype=np.float64).reshape(-1)
    if box.shape != (3,) or not (np.all(box > 0.0) and np.all(np.isfinite(box))):
        raise ValueError(f"box_um = {box_um!r}: need 3 finite sides > 0")
    return box


def _contacts_and_shifts(
    wires: Wires, box: FloatArray | None
) -> tuple[IntArray, IntArray]:
    """Overlapping capsule pairs (i < j, sorted) and, periodic box, the image shift of j.

    Candidates: every rod is represented by ``m`` points evenly spaced on its axis (m chosen
    so that the spacing is about 2 D, at most ``_MAX_SUB``); two capsules can only overlap if
    some pair of their points is at most ``l_max/m + 2 r_max`` apart. Shift s (integer, (k, 3))
    is such that rod j translated by ``s * box`` overlaps rod i (minimum image).
    """
    empty = np.zeros((0, 2), dtype=np.int64)
    empty3 = np.zeros((0, 3), dtype=np.int64)
    centers = np.asarray(wires.centers_um, dtype=np.float64).reshape(-1, 3)
    n = centers.shape[0]
    lengths = np.asarray(wires.lengths_um, dtype=np.float64).reshape(-1)
    radii = np.asarray(wires.radii_um, dtype=np.float64).reshape(-1)
    if lengths.shape != (n,) or radii.shape != (n,):
        raise ValueError("wires: centers, lengths and radii differ in length")
    if n and (np.any(lengths < 0.0) or np.any(radii < 0.0)):
        raise ValueError("wires: lengths and radii must be >= 0")
    if n < 2:
        if box is not None and n and float(lengths.max() + 2 * radii.max()) >= 0.5 * box.min():
            raise ValueError("periodic box: rods (L + D) must be shorter than half the box")
        return empty, empty3
    lmax, rmax = float(lengths.max()), float(radii.max())
    if box is not None and lmax + 2.0 * rmax >= 0.5 * float(box.min()):
        raise ValueError("periodic box: rods (L + D) must be shorter than half the box")
    m = int(min(_MAX_SUB, max(1, math.ceil(lmax / max(4.0 * rmax, 1e-300)))))
    axes = np.asarray(wires.axes, dtype=np.float64).reshape(-1, 3)
    frac = (np.arange(m) + 0.5) / m - 0.5  # (m,)
    pts = centers[:, None, :] + frac[None, :, None] * (lengths[:, None] * axes)[:, None, :]
    pts = pts.reshape(-1, 3)
    owner = np.repeat(np.arange(n, dtype=np.int64), m)
    radius = lmax / m + 2.0 * rmax
    radius = radius * (1.0 + 1e-9) + 1e-12
    if box is None:
        tree = cKDTree(pts)
    else:
        wrapped = np.mod(pts, box)
        wrapped[wrapped >= box] = 0.0
        tree = cKDTree(wrapped, boxsize=box)
    cand = tree.query_pairs(radius, output_type="ndarray").astype(np.int64)
    i = owner[cand[:, 0]]
    j = owner[cand[:, 1]]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keep = lo != hi
    key = np.unique(lo[keep] * n + hi[keep])
    i, j = key // n, key % n
    if i.size == 0:
        return empty, empty3
    start, end = _ends(wires)
    if box is None:
        shift = np.zeros((i.size, 3))
    else:
        shift = -np.rint((centers[j] - centers[i]) / box)
    off = shift * (box if box is not None else 1.0)
    dist = segment_distances(start[i], end[i], start[j] + off, end[j] + off)
    hit = dist < radii[i] + radii[j]
    pairs = np.column_stack((i[hit], j[hit])).astype(np.int64)
    return pairs, shift[hit].astype(np.int64)


def rod_contacts(
    wires: Wires, box_um: npt.ArrayLike | None = None, periodic: bool = False
) -> IntArray:
    """All pairs of overlapping capsules (soft-core spherocylinders).

    Parameters
    ----------
    wires
        The rods: centres (n, 3) um, unit axes (n, 3), **core** lengths L (n,) um, radii
        (n,) um. A capsule is its core segment dilated by its radius (total length L + 2r).
    box_um
        Box ``(Wx, Wy, Wz)``, um; only used (and required) when ``periodic``.
    periodic
        Also count overlaps with periodic images (minimum image; every rod must satisfy
        ``L + D < min(box) / 2``).

    Returns
    -------
    numpy.ndarray
        int64, shape ``(m, 2)``: pairs ``(i, j)``, ``i < j``, sorted lexicographically, whose
        core segments are closer than ``r_i + r_j``.
    """
    box = None
    if periodic:
        if box_um is None:
            raise ValueError("periodic = True needs box_um")
        box = _check_box(box_um)
    return _contacts_and_shifts(wires, box)[0]


# --------------------------------------------------------------------------------------------
# clusters


@dataclass(frozen=True, eq=False)
class RodClusters:
    """Connected clusters of overlapping capsules.

    Attributes
    ----------
    labels
        int64, shape ``(n_rods,)``: cluster id of each rod, in ``[0, n_clusters)``.
    n_clusters
        Number of clusters (isolated rods are clusters of size 1).
    pairs
        int64, shape ``(m, 2)``: the overlapping pairs ``(i, j)``, ``i < j``.
    touches_x0, touches_x1
        bool, shape ``(n_clusters,)``: open box: the cluster reaches the face x = 0 (some
        capsule has ``min x <= 0``) or x = W (``max x >= W``). All False for a periodic box.
    spanning
        bool, shape ``(n_clusters,)``: open box: touches both x faces; periodic box: wraps
        around the torus in x.
    wraps
        bool, shape ``(n_clusters, 3)``: periodic box: the cluster contains a closed path of
        overlapping rods with non-zero winding number in x, y, z. All False for an open box.
    periodic
        Whether the box is periodic.
    """

    labels: IntArray
    n_clusters: int
    pairs: IntArray
    touches_x0: BoolArray
    touches_x1: BoolArray
    spanning: BoolArray
    wraps: BoolArray
    periodic: bool

    @property
    def spans(self) -> bool:
        """Some cluster connects x = 0 to x = W (periodic box: wraps in x)."""
        return bool(np.any(self.spanning))

    @property
    def cluster_sizes(self) -> IntArray:
        """Number of rods per cluster, shape ``(n_clusters,)``."""
        return np.bincount(self.labels, minlength=self.n_clusters).astype(np.int64)


def _labels(n: int, pairs: IntArray) -> tuple[int, IntArray]:
    if n == 0:
        return 0, np.zeros(0, dtype=np.int64)
    adj = sp.csr_matrix((np.ones(pairs.shape[0]), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    k, lab = connected_components(adj, directed=False)
    return int(k), lab.astype(np.int64)


def _wrap_flags(
    n: int, labels: IntArray, n_clusters: int, pairs: IntArray, shifts: IntArray
) -> BoolArray:
    """(n_clusters, dim) flags: the cluster wraps around the torus in that direction.

    A BFS forest (one super root linked to one rod per cluster) gives every rod an unwrapped
    cell offset, accumulated from the edge shifts along the tree by pointer jumping (no Python
    loop over rods or pairs). An edge (i, j, s) closes a loop of non-zero winding exactly when
    ``off_i + s != off_j``.
    """
    dim = shifts.shape[1] if shifts.ndim == 2 else 3
    out = np.zeros((n_clusters, dim), dtype=bool)
    if pairs.shape[0] == 0:
        return out
    reps = np.unique(labels, return_index=True)[1]
    root = n
    rows = np.concatenate((pairs[:, 0], np.full(reps.size, root)))
    cols = np.concatenate((pairs[:, 1], reps))
    graph = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n + 1, n + 1))
    _, pred = breadth_first_order(graph, root, directed=False, return_predecessors=True)
    parent = pred[:n].astype(np.int64)
    nodes = np.arange(n, dtype=np.int64)
    # the tree edge (parent, node), looked up among the sorted pair keys
    keys = pairs[:, 0] * (n + 1) + pairs[:, 1]
    order = np.argsort(keys)
    lo = np.minimum(parent, nodes)
    hi = np.maximum(parent, nodes)
    inner = parent != root
    pos = np.searchsorted(keys[order], lo * (n + 1) + hi)
    pos = np.minimum(pos, keys.size - 1)
    edge = order[pos]
    step = np.zeros((n + 1, dim), dtype=np.int64)
    sign = np.where(parent < nodes, 1, -1)  # +s if the edge is (parent, node)
    step[:n][inner] = sign[inner, None] * shifts[edge[inner]]
    up = np.concatenate((np.where(inner, parent, root), [root]))
    acc = step
    active = up != root
    while np.any(active):
        acc = acc + acc[up] * active[:, None]
        up = np.where(active, up[up], root)
        active = up != root
    off = acc[:n]
    bad = off[pairs[:, 0]] + shifts - off[pairs[:, 1]] != 0
    for axis in range(dim):
        out[labels[pairs[bad[:, axis], 0]], axis] = True
    return out


def rod_clusters(
    wires: Wires, box_um: npt.ArrayLike, periodic: bool = False
) -> RodClusters:
    """Clusters of overlapping capsules and the x faces they reach (or the cycles they wrap).

    Parameters
    ----------
    wires
        The rods (core lengths L, radii r, um; see :func:`rod_contacts`).
    box_um
        Box ``(Wx, Wy, Wz)``, um, with a corner at the origin.
    periodic
        False: open box; a cluster spans when it touches both faces x = 0 and x = Wx (a capsule
        touches x = 0 when ``min(x of end points) - r <= 0``; rods are not clipped, so a
        generator should place centres such that the density is uniform up to the faces).
        True: the box is a 3-torus; rods may cross the box faces, overlaps with images count,
        and ``spanning`` is wrapping in x (``wraps`` gives all three directions).

    Returns
    -------
    RodClusters
    """
    box = _check_box(box_um)
    n = int(np.asarray(wires.centers_um).reshape(-1, 3).shape[0])
    pairs, shifts = _contacts_and_shifts(wires, box if periodic else None)
    n_clusters, labels = _labels(n, pairs)
    no = np.zeros(n_clusters, dtype=bool)
    if periodic:
        wraps = _wrap_flags(n, labels, n_clusters, pairs, shifts)
        return RodClusters(labels=labels, n_clusters=n_clusters, pairs=pairs, touches_x0=no,
                           touches_x1=no.copy(), spanning=wraps[:, 0].copy(), wraps=wraps,
                           periodic=True)
    start, end = _ends(wires)
    r = np.asarray(wires.radii_um, dtype=np.float64).reshape(-1)
    xmin = np.minimum(start[:, 0], end[:, 0]) - r
    xmax = np.maximum(start[:, 0], end[:, 0]) + r
    t0 = np.zeros(n_clusters, dtype=bool)
    t1 = np.zeros(n_clusters, dtype=bool)
    t0[labels[xmin <= 0.0]] = True
    t1[labels[xmax >= box[0]]] = True
    return RodClusters(labels=labels, n_clusters=n_clusters, pairs=pairs, touches_x0=t0,
                       touches_x1=t1, spanning=t0 & t1,
                       wraps=np.zeros((n_clusters, 3), dtype=bool), periodic=False)


# --------------------------------------------------------------------------------------------
# generation


def random_rods(
    *, n_rods: int, aspect_ratio: float, box_side: float, seed: int | np.random.SeedSequence
) -> Wires:
    """``n_rods`` equal isotropic spherocylinders, centres uniform in ``[0, box_side)^3``.

    Units of the total length: ``L + D = 1`` with ``L / D = aspect_ratio`` (core length over
    diameter), so ``D = 1 / (1 + aspect_ratio)``. For a periodic box (rods may cross faces).
    """
    a = float(aspect_ratio)
    if not (a >= 0.0 and math.isfinite(a)):
        raise ValueError(f"aspect_ratio = {aspect_ratio}: must be finite and >= 0")
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0.0, float(box_side), size=(int(n_rods), 3))
    return _wires(centers, _isotropic(rng, int(n_rods)), a)


def _isotropic(rng: np.random.Generator, n: int) -> FloatArray:
    v = rng.normal(size=(n, 3))
    norm = np.linalg.norm(v, axis=1)
    norm[norm == 0.0] = 1.0
    return v / norm[:, None]


def _wires(centers: FloatArray, axes: FloatArray, aspect: float) -> Wires:
    n = centers.shape[0]
    d = 1.0 / (1.0 + aspect)
    return Wires(centers_um=centers, axes=axes, lengths_um=np.full(n, aspect * d),
                 radii_um=np.full(n, 0.5 * d))


# --------------------------------------------------------------------------------------------
# threshold


@dataclass(frozen=True, eq=False)
class RodThresholdEstimate:
    """Monte Carlo estimate of the percolation threshold of soft-core spherocylinders.

    Lengths in units of the total rod length ``L + D = 1``.

    Attributes
    ----------
    aspect_ratio
        L / D (core length over diameter).
    box_over_length
        Side of the periodic cube / (L + D).
    n_samples, criterion, n_bootstrap
        Number of independent samples, wrapping criterion, bootstrap resamples.
    density, density_std_error
        Critical number density n_c (rods per (L + D)^3) where the Poisson-averaged wrapping
        probability of ``criterion`` is 1/2, and its bootstrap standard error.
    eta_c, phi_c, nc_vex
        The same as reduced density ``n_c V`` (V = :func:`rod_volume`), covered volume
        fraction ``1 - exp(-n_c V)`` and reduced excluded volume ``n_c <V_ex>``
        (:func:`excluded_volume`); ``*_std_error`` their standard errors (propagated).
    rod_volume, excluded_volume
        V and <V_ex> in units of (L + D)^3.
    sample_counts
        int64, shape ``(n_samples, 3)``: per sample, the number of rods (placement order) at
        which some cluster first wraps in x, y, z.
    densities, probabilities, probability_std
        The wrapping probability curve (Poisson mixture of the counts) and its bootstrap sd.
    """

    aspect_ratio: float
    box_over_length: float
    n_samples: int
    criterion: str
    n_bootstrap: int
    density: float
    density_std_error: float
    eta_c: float
    eta_c_std_error: float
    phi_c: float
    phi_c_std_error: float
    nc_vex: float
    nc_vex_std_error: float
    rod_volume: float
    excluded_volume: float
    sample_counts: IntArray
    densities: FloatArray
    probabilities: FloatArray
    probability_std: FloatArray


def _guess_nc_vex(aspect: float) -> float:
    """Rough a priori n_c <V_ex>: 2.73 for spheres, towards ~1.4 for slender rods."""
    return 1.4 + 1.4 / (1.0 + 0.3 * aspect)


def _wrapping_at(k: int, pairs: IntArray, shifts: IntArray) -> BoolArray:
    """Whether the first k rods (placement order) wrap in x, y, z (shape (3,))."""
    sel = pairs[:, 1] < k  # pairs have i < j
    p, s = pairs[sel], shifts[sel]
    n_clusters, labels = _labels(k, p)
    return np.asarray(_wrap_flags(k, labels, n_clusters, p, s).any(axis=0))


def _critical_counts_one(
    seq: np.random.SeedSequence, aspect: float, b: float
) -> tuple[int, int, int]:
    rng = np.random.default_rng(seq)
    d = 1.0 / (1.0 + aspect)
    vex = excluded_volume(aspect * d, d)
    guess = _guess_nc_vex(aspect) / vex * b**3
    box = np.full(3, b)
    centers = np.zeros((0, 3))
    axes = np.zeros((0, 3))
    batch = math.ceil(_BATCH * guess)
    for _ in range(40):
        centers = np.concatenate((centers, rng.uniform(0.0, b, size=(batch, 3))))
        axes = np.concatenate((axes, _isotropic(rng, batch)))
        batch = math.ceil(_EXTRA * guess)
        n = centers.shape[0]
        pairs, shifts = _contacts_and_shifts(_wires(centers, axes, aspect), box)
        if not np.all(_wrapping_at(n, pairs, shifts)):
            continue
        lo = np.zeros(3, dtype=np.int64)  # largest k known not to wrap, per direction
        hi = np.full(3, n, dtype=np.int64)  # smallest k known to wrap
        while np.any(hi - lo > 1):
            axis = int(np.argmax(hi - lo))
            mid = int((lo[axis] + hi[axis]) // 2)
            w = _wrapping_at(mid, pairs, shifts)
            # wrapping is monotone in k: one evaluation narrows every direction
            hi = np.where(w, np.minimum(hi, mid), hi)
            lo = np.where(w, lo, np.maximum(lo, mid))
        return int(hi[0]), int(hi[1]), int(hi[2])
    raise RuntimeError("no wrapping cluster after 40 batches of rods")  # pragma: no cover


def _critical_counts_chunk(
    seqs: list[np.random.SeedSequence], aspect: float, b: float
) -> list[tuple[int, int, int]]:
    return [_critical_counts_one(s, aspect, b) for s in seqs]


def _criterion_counts(counts: IntArray, criterion: str) -> IntArray:
    if criterion in ("x", "y", "z"):
        return counts[:, "xyz".index(criterion)][:, None]
    if criterion == "any":
        return counts.min(axis=1)[:, None]
    if criterion == "average":
        return counts
    raise ValueError(f"criterion = {criterion!r}: expected x, y, z, any or average")


def estimate_threshold(
    *,
    aspect_ratio: float,
    box_over_length: float,
    n_samples: int,
    seed: int,
    criterion: WrapCriterion = "any",
    n_bootstrap: int = 400,
    workers: int = 1,
) -> RodThresholdEstimate:
    """Critical density of monodisperse isotropic soft-core spherocylinders (periodic cube).

    Parameters
    ----------
    aspect_ratio
        L / D, core length over diameter (0: spheres of diameter D).
    box_over_length
        Cube side / (L + D); must exceed 2 (minimum image).
    n_samples
        Independent samples (>= 10). Sample i uses the i-th child of
        ``numpy.random.SeedSequence(seed)``, so the result does not depend on ``workers``.
    criterion
        Wrapping criterion (:data:`WrapCriterion`); ``"average"`` pools x, y and z.
    n_bootstrap
        Bootstrap resamples of the samples for the standard error (>= 2).
    workers
        Worker processes (spawned; guard scripts with ``if __name__ == "__main__":``).

    Returns
    -------
    RodThresholdEstimate
    """
    a = float(aspect_ratio)
    b = float(box_over_length)
    if not (a >= 0.0 and math.isfinite(a)):
        raise ValueError(f"aspect_ratio = {aspect_ratio}: must be finite and >= 0")
    if not (b > 2.0 and math.isfinite(b)):
        raise ValueError(f"box_over_length = {box_over_length}: must be > 2")
    if n_samples < 10:
        raise ValueError(f"n_samples = {n_samples}: must be >= 10")
    seqs = np.random.SeedSequence(seed).spawn(n_samples + 1)
    boot_seq, seqs = seqs[0], seqs[1:]
    res = parallel_map(_critical_counts_chunk,
                       [(c, a, b) for c in seed_chunks(seqs, workers)], workers)
    counts = np.array([v for r in res for v in r], dtype=np.int64).reshape(n_samples, 3)
    return threshold_from_counts(counts, aspect_ratio=a, box_over_length=b, criterion=criterion,
                                 n_bootstrap=n_bootstrap, seed=boot_seq)


def threshold_from_counts(
    sample_counts: npt.ArrayLike,
    *,
    aspect_ratio: float,
    box_over_length: float,
    criterion: WrapCriterion = "any",
    n_bootstrap: int = 400,
    seed: int | np.random.SeedSequence = 0,
) -> RodThresholdEstimate:
    """Threshold estimate from per-sample wrapping counts (e.g. for another criterion).

    Parameters
    ----------
    sample_counts
        int, shape ``(n_samples, 3)``: per sample, the number of rods (placement order) at
        which some cluster first wraps in x, y, z (:attr:`RodThresholdEstimate.sample_counts`).
    aspect_ratio, box_over_length
        L / D and cube side / (L + D) of those samples.
    criterion
        Wrapping criterion, see :data:`WrapCriterion`.
    n_bootstrap
        Bootstrap resamples for the standard error (>= 2).
    seed
        Seed of the bootstrap resampling.

    Returns
    -------
    RodThresholdEstimate
    """
    counts = np.array(sample_counts, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[1] != 3 or counts.shape[0] < 2:
        raise ValueError(f"sample_counts: shape {counts.shape}, expected (n >= 2, 3)")
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap = {n_bootstrap}: must be >= 2")
    a = float(aspect_ratio)
    b = float(box_over_length)
    n_samples = counts.shape[0]
    kc = _criterion_counts(counts, criterion)
    vol = b**3

    th = poisson_threshold(kc, vol, n_bootstrap=n_bootstrap, seed=seed)
    density, dens_err = th.density, th.std_error
    d = 1.0 / (1.0 + a)
    v, vex = rod_volume(a * d, d), excluded_volume(a * d, d)
    eta = density * v
    return RodThresholdEstimate(
        aspect_ratio=a, box_over_length=b, n_samples=int(n_samples), criterion=str(criterion),
        n_bootstrap=int(n_bootstrap), density=density, density_std_error=dens_err,
        eta_c=eta, eta_c_std_error=dens_err * v,
        phi_c=-math.expm1(-eta), phi_c_std_error=math.exp(-eta) * dens_err * v,
        nc_vex=density * vex, nc_vex_std_error=dens_err * vex,
        rod_volume=v, excluded_volume=vex, sample_counts=counts,
        densities=th.grid, probabilities=th.probabilities, probability_std=th.probability_std,
    )
