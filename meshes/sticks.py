"""2D random stick networks (nanowire membranes seen from above) and their percolation.

A nanowire membrane is modelled as a planar network of widthless sticks (straight segments).
Two sticks are electrically connected when the segments intersect (crossing, touching at an
end point, or overlapping when collinear). This module provides

* :func:`random_sticks`: a reproducible Poisson stick process in a rectangular box,
* :func:`intersecting_pairs` / :func:`stick_clusters`: exact segment-segment intersection
  (candidate pairs from a k-d tree on the stick centres, so the cost is O(n) at fixed reduced
  density) and the connected clusters, with the walls each cluster touches (open box) or the
  directions in which it wraps (periodic box),
* :func:`spanning_probability` and :func:`estimate_threshold`: Monte Carlo percolation
  analysis used to verify the generator against the 2D continuum threshold of widthless sticks
  of equal length L, ``N_c L^2 = 5.63726 +- 0.00002`` (N = number density of stick centres;
  J. Li and S.-L. Zhang, Phys. Rev. E 80, 040104(R) (2009)).

Lengths are in micrometres (um), densities in sticks per um^2, angles in radians unless the
name says ``_deg``. The percolation functions work in units of the stick length (L = 1 um), so
their densities are the reduced densities ``N L^2`` (dimensionless).

Threshold estimator
-------------------
:func:`estimate_threshold` adds sticks one by one (a canonical ensemble with k sticks placed
uniformly in the placement box of area A) and records, per sample, the smallest k at which a
cluster crosses the box (Kruskal: the minimax path between two virtual wall nodes in a minimum
spanning tree, edge weight = the number of sticks needed for that contact to exist). The
Poisson (grand-canonical) spanning probability at reduced density eta is then exact to compute
from these per-sample thresholds: ``P(eta) = mean_i Pr[Poisson(eta A / L^2) >= k_i]``. The
estimate is the eta at which P = 1/2 for the crossing criterion chosen; its standard error is
a bootstrap over the independent samples.

For an isotropic system in a square with open (free) boundaries, the probability of a
left-right crossing at the critical point tends to exactly 1/2 as the box grows (Cardy's
formula at aspect ratio 1; J. L. Cardy, J. Phys. A 25, L201 (1992)), so the "P = 1/2" point of
the ``"x"``, ``"y"`` or ``"average"`` criterion converges to N_c faster than the transition
width ``~ (box/L)^(-1/nu)``, nu = 4/3. The ``"either"`` and ``"both"`` criteria have crossing
probabilities at N_c that differ from 1/2, so their P = 1/2 points are biased by
``~ (box/L)^(-3/4)``; they are provided for completeness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree
from scipy.spatial import cKDTree

from meshes.threshold import parallel_map, poisson_threshold, seed_chunks

__all__ = [
    "NC_L2_LI_ZHANG_2009",
    "NC_L2_LI_ZHANG_2009_ERR",
    "Criterion",
    "StickClusters",
    "Sticks",
    "ThresholdEstimate",
    "estimate_threshold",
    "intersecting_pairs",
    "random_sticks",
    "spanning_probability",
    "stick_clusters",
    "threshold_from_counts",
]

#: 2D continuum percolation threshold of widthless equal-length sticks, N_c L^2, and its
#: standard error (J. Li and S.-L. Zhang, Phys. Rev. E 80, 040104(R) (2009)).
NC_L2_LI_ZHANG_2009 = 5.63726
NC_L2_LI_ZHANG_2009_ERR = 0.00002

#: Crossing criterion: ``"x"`` left-right, ``"y"`` bottom-top, ``"either"``/``"both"`` of
#: those, ``"average"`` the mean of the x and y probabilities (same limit as ``"x"`` for an
#: isotropic system in a square, with less variance).
Criterion = Literal["x", "y", "either", "both", "average"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: A stick length in um, or a (min, max) range of uniformly distributed lengths.
LengthSpec = float | tuple[float, float]

# Wall contact tolerance, relative to the larger box side: an end point within this distance
# of a wall touches it (the generator snaps clipped end points onto the walls exactly, so this
# only absorbs round-off in hand-made or transformed configurations).
_WALL_RTOL = 1e-9
# Reduced density of the first batch of sticks drawn per sample in estimate_threshold, and of
# each further batch when the box has not been crossed yet (well above N_c L^2 = 5.637, so a
# second batch is rarely needed for box/L >= 5).
_ETA_BATCH = 8.0
_ETA_EXTRA = 2.0


def _readonly(a: npt.ArrayLike, dtype: type, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    arr: np.ndarray = np.array(a, dtype=dtype, copy=True)
    if arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise ValueError(f"{name}: shape {arr.shape}, expected (n, *{shape_tail})")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Sticks:
    """A set of straight widthless sticks (segments) in the plane.

    Attributes
    ----------
    start_um, end_um
        float64, shape ``(n, 2)``: end points (x, y) in um. Read-only copies. For sticks from
        :func:`random_sticks` with ``margin=True`` these are the end points after clipping to
        the box.
    """

    start_um: FloatArray
    end_um: FloatArray

    def __post_init__(self) -> None:
        start = _readonly(self.start_um, np.float64, (2,), "start_um")
        end = _readonly(self.end_um, np.float64, (2,), "end_um")
        if start.shape != end.shape:
            raise ValueError(f"start_um {start.shape} and end_um {end.shape} differ in shape")
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(end))):
            raise ValueError("stick end points must be finite")
        object.__setattr__(self, "start_um", start)
        object.__setattr__(self, "end_um", end)

    def __len__(self) -> int:
        return int(self.start_um.shape[0])

    @property
    def n_sticks(self) -> int:
        """Number of sticks."""
        return len(self)

    @property
    def centers_um(self) -> FloatArray:
        """Mid points, shape ``(n, 2)``, um."""
        return 0.5 * (self.start_um + self.end_um)

    @property
    def lengths_um(self) -> FloatArray:
        """Lengths, shape ``(n,)``, um."""
        d = self.end_um - self.start_um
        return np.hypot(d[:, 0], d[:, 1])

    @property
    def angles_rad(self) -> FloatArray:
        """Orientation of each (undirected) stick w.r.t. +x, in ``(-pi/2, pi/2]``, rad."""
        d = self.end_um - self.start_um
        a = np.arctan2(d[:, 1], d[:, 0])
        a = np.where(a > 0.5 * np.pi, a - np.pi, a)
        return np.where(a <= -0.5 * np.pi, a + np.pi, a)


@dataclass(frozen=True, eq=False)
class StickClusters:
    """Connected clusters of intersecting sticks.

    Attributes
    ----------
    labels
        int64, shape ``(n_sticks,)``: cluster id of each stick, in ``[0, n_clusters)``.
    n_clusters
        Number of clusters (isolated sticks are clusters of size 1).
    pairs
        int64, shape ``(m, 2)``: the intersecting stick pairs ``(i, j)``, ``i < j``.
    touches_left, touches_right, touches_bottom, touches_top
        bool, shape ``(n_clusters,)``: the cluster reaches x <= 0, x >= W, y <= 0, y >= H
        (open box). All False for a periodic box, which has no walls.
    spanning_x, spanning_y
        bool, shape ``(n_clusters,)``: open box: the cluster touches both the left and right
        (bottom and top) walls. Periodic box: the cluster wraps around the torus in x (y),
        i.e. it contains a closed path of sticks with a non-zero winding number in x (y).
    periodic
        Whether the periodic (wrapping) criterion was used.
    """

    labels: IntArray
    n_clusters: int
    pairs: IntArray
    touches_left: BoolArray
    touches_right: BoolArray
    touches_bottom: BoolArray
    touches_top: BoolArray
    spanning_x: BoolArray
    spanning_y: BoolArray
    periodic: bool

    @property
    def spans_x(self) -> bool:
        """Some cluster connects x = 0 to x = W (or wraps in x, periodic box)."""
        return bool(np.any(self.spanning_x))

    @property
    def spans_y(self) -> bool:
        """Some cluster connects y = 0 to y = H (or wraps in y, periodic box)."""
        return bool(np.any(self.spanning_y))

    @property
    def cluster_sizes(self) -> IntArray:
        """Number of sticks in each cluster, shape ``(n_clusters,)``."""
        return np.bincount(self.labels, minlength=self.n_clusters).astype(np.int64)

    def spans(self, criterion: Criterion = "x") -> bool:
        """Whether the network crosses the box according to ``criterion``.

        ``"average"`` is not a property of one realization and is rejected here.
        """
        if criterion == "x":
            return self.spans_x
        if criterion == "y":
            return self.spans_y
        if criterion == "either":
            return self.spans_x or self.spans_y
        if criterion == "both":
            return self.spans_x and self.spans_y
        raise ValueError(f"criterion = {criterion!r}: expected 'x', 'y', 'either' or 'both'")


@dataclass(frozen=True, eq=False)
class ThresholdEstimate:
    """Monte Carlo estimate of the percolation threshold in a square box.

    Attributes
    ----------
    estimate
        Reduced density ``N L^2`` at which the (grand-canonical, Poisson) crossing probability
        of ``criterion`` equals 1/2.
    std_error
        Bootstrap standard error of ``estimate`` (resampling the independent samples).
    box_over_length
        Box side / stick length.
    n_samples
        Number of independent samples.
    criterion
        Crossing criterion used for ``estimate``.
    placement_area
        Area, in units of L^2, of the box in which stick centres are placed (the box enlarged
        by L/2 on every side), so that ``eta = k / placement_area`` for k sticks.
    sample_counts
        int64, shape ``(n_samples, 2)``: per sample, the number of sticks (in placement order)
        at which a cluster first crosses left-right (column 0) and bottom-top (column 1).
    sample_thresholds
        float64, shape ``(n_samples, 2)``: the same as reduced densities,
        ``sample_counts / placement_area``.
    mean_threshold, threshold_width
        Mean and standard deviation of the per-sample thresholds of ``criterion`` (both
        columns pooled for ``"average"``). The width shrinks as ``(box/L)^(-1/nu)``.
    reduced_densities, probabilities
        The crossing probability of ``criterion`` on a grid of reduced densities (raw data of
        the estimate; exact Poisson mixture of the per-sample thresholds).
    probability_std
        Bootstrap standard deviation of ``probabilities``.
    n_bootstrap
        Number of bootstrap resamples.
    """

    estimate: float
    std_error: float
    box_over_length: float
    n_samples: int
    criterion: str
    placement_area: float
    sample_counts: IntArray
    sample_thresholds: FloatArray
    mean_threshold: float
    threshold_width: float
    reduced_densities: FloatArray
    probabilities: FloatArray
    probability_std: FloatArray
    n_bootstrap: int


# --------------------------------------------------------------------------------------------
# generation


def _check_box(box_um: tuple[float, float]) -> tuple[float, float]:
    w, h = (float(v) for v in box_um)
    if not (w > 0.0 and h > 0.0 and math.isfinite(w) and math.isfinite(h)):
        raise ValueError(f"box_um = {box_um}: both sides must be finite and > 0")
    return w, h


def _clip_to_box(
    p: FloatArray, q: FloatArray, w: float, h: float
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Liang-Barsky clipping of segments p-q to [0, w] x [0, h].

    Returns the clipped end points (only for kept segments) and the keep mask. A segment is
    kept when a part of positive length lies in the closed box. End points cut by a wall are
    snapped onto that wall exactly.
    """
    d = q - p
    t0 = np.zeros(p.shape[0])
    t1 = np.ones(p.shape[0])
    keep = np.ones(p.shape[0], dtype=bool)
    for axis, hi in ((0, w), (1, h)):
        da = d[:, axis]
        pa = p[:, axis]
        moving = da != 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = np.where(moving, (0.0 - pa) / da, -np.inf)
            tb = np.where(moving, (hi - pa) / da, np.inf)
        t0 = np.maximum(t0, np.minimum(ta, tb))
        t1 = np.minimum(t1, np.maximum(ta, tb))
        keep &= moving | ((pa >= 0.0) & (pa <= hi))
    keep &= t1 > t0
    p, d, t0, t1 = p[keep], d[keep], t0[keep], t1[keep]
    a = p + t0[:, None] * d
    b = p + t1[:, None] * d
    for pt, t, edge in ((a, t0, 0.0), (b, t1, 1.0)):
        cut = t != edge  # this end point was moved onto a wall
        for axis, hi in ((0, w), (1, h)):
            c = pt[:, axis]
            tol = 1e-12 * max(w, h)
            c[cut & (np.abs(c) <= tol)] = 0.0
            c[cut & (np.abs(c - hi) <= tol)] = hi
            np.clip(c, 0.0, hi, out=c)
    return a, b, keep


def _draw_sticks(
    rng: np.random.Generator,
    n: int,
    lo: tuple[float, float],
    hi: tuple[float, float],
    length_um: LengthSpec,
    angle_spread_deg: float | None,
) -> tuple[FloatArray, FloatArray]:
    """n iid sticks, centres uniform in [lo, hi]; returns unclipped end points."""
    centers = rng.uniform(lo, hi, size=(n, 2))
    if angle_spread_deg is None:
        theta = rng.uniform(0.0, np.pi, size=n)
    else:
        theta = rng.normal(0.0, math.radians(angle_spread_deg), size=n)
    if isinstance(length_um, tuple):
        lengths = rng.uniform(length_um[0], length_um[1], size=n)
    else:
        lengths = np.full(n, float(length_um))
    half = 0.5 * lengths[:, None] * np.column_stack((np.cos(theta), np.sin(theta)))
    return centers - half, centers + half


def _check_length(length_um: LengthSpec) -> tuple[LengthSpec, float]:
    """Validated length spec and the largest possible length, um."""
    if isinstance(length_um, tuple):
        lo, hi = (float(v) for v in length_um)
        if not (0.0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"length_um = {length_um}: need 0 < min <= max < inf")
        return (lo, hi), hi
    length = float(length_um)
    if not (length > 0.0 and math.isfinite(length)):
        raise ValueError(f"length_um = {length_um}: must be finite and > 0")
    return length, length


def random_sticks(
    *,
    density_per_um2: float,
    length_um: LengthSpec,
    box_um: tuple[float, float],
    seed: int,
    angle_spread_deg: float | None = None,
    margin: bool = True,
) -> Sticks:
    """Poisson random sticks in the box ``[0, W] x [0, H]``.

    Stick centres form a homogeneous Poisson point process of intensity ``density_per_um2``;
    each stick independently gets a length and an orientation.

    Parameters
    ----------
    density_per_um2
        Number density N of stick centres, sticks per um^2 (``N L^2`` is the reduced density).
    length_um
        Stick length L, um; a ``(min, max)`` tuple draws lengths uniformly in that range.
    box_um
        Box size ``(W, H)``, um.
    seed
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same sticks.
    angle_spread_deg
        None: isotropic orientations (uniform in [0, pi)). Otherwise orientations are normal
        around 0 (the x axis) with this standard deviation, degrees.
    margin
        True (default): centres are placed in the box enlarged by ``L_max / 2`` on every side,
        every stick is clipped to the box and sticks that miss the box are dropped. The stick
        process seen inside the box is then the restriction of an infinite homogeneous process:
        the density of stick material is uniform up to the walls, and sticks entering through
        a wall are present (they reach the wall, which is what a crossing criterion needs).
        The number of returned sticks is Poisson with mean
        ``N (W H + E[L |sin theta|] W + E[L |cos theta|] H)``, i.e.
        ``N (W H + 2 L (W + H) / pi)`` for isotropic equal sticks.
        False: centres are placed in the box itself (Poisson number with mean ``N W H``) and
        sticks are not clipped, so they may stick out of the box, and the stick density near
        the walls is lower than inside (by up to one half within L/2 of a wall).

    Returns
    -------
    Sticks
        End points in um, in the order in which the sticks were drawn.
    """
    w, h = _check_box(box_um)
    length_spec, l_max = _check_length(length_um)
    density = float(density_per_um2)
    if not (density >= 0.0 and math.isfinite(density)):
        raise ValueError(f"density_per_um2 = {density_per_um2}: must be finite and >= 0")
    if angle_spread_deg is not None and not (angle_spread_deg >= 0.0):
        raise ValueError(f"angle_spread_deg = {angle_spread_deg}: must be >= 0 or None")
    rng = np.random.default_rng(seed)
    pad = 0.5 * l_max if margin else 0.0
    lo = (-pad, -pad)
    hi = (w + pad, h + pad)
    n = int(rng.poisson(density * (w + 2 * pad) * (h + 2 * pad)))
    p, q = _draw_sticks(rng, n, lo, hi, length_spec, angle_spread_deg)
    if margin:
        p, q, _ = _clip_to_box(p, q, w, h)
    return Sticks(start_um=p, end_um=q)


# --------------------------------------------------------------------------------------------
# intersections and clusters


def _segments_intersect(
    p1: FloatArray, q1: FloatArray, p2: FloatArray, q2: FloatArray
) -> BoolArray:
    """Closed-segment intersection test, vectorized over rows (CLRS orientation test).

    True for proper crossings, for an end point lying on the other segment (touching), and
    for collinear overlapping segments. The orientations are evaluated in float64, which is
    exact for the small integer and dyadic coordinates of hand-made tests.
    """
    r1 = q1 - p1
    r2 = q2 - p2

    def orient(r: FloatArray, a: FloatArray, c: FloatArray) -> FloatArray:
        v = c - a
        return np.sign(r[:, 0] * v[:, 1] - r[:, 1] * v[:, 0])

    def on_segment(a: FloatArray, b: FloatArray, c: FloatArray) -> BoolArray:
        return (
            (np.minimum(a[:, 0], b[:, 0]) <= c[:, 0]) & (c[:, 0] <= np.maximum(a[:, 0], b[:, 0]))
            & (np.minimum(a[:, 1], b[:, 1]) <= c[:, 1]) & (c[:, 1] <= np.maximum(a[:, 1], b[:, 1]))
        )

    d1 = orient(r1, p1, p2)
    d2 = orient(r1, p1, q2)
    d3 = orient(r2, p2, p1)
    d4 = orient(r2, p2, q1)
    hit = (d1 * d2 < 0) & (d3 * d4 < 0)
    hit |= (d1 == 0) & on_segment(p1, q1, p2)
    hit |= (d2 == 0) & on_segment(p1, q1, q2)
    hit |= (d3 == 0) & on_segment(p2, q2, p1)
    hit |= (d4 == 0) & on_segment(p2, q2, q1)
    return hit


def _pairs_and_shifts(
    start: FloatArray, end: FloatArray, box: tuple[float, float] | None, *, sort: bool = True
) -> tuple[IntArray, IntArray]:
    """Intersecting pairs (i < j) and, for a periodic box, the image shift of j seen from i.

    Candidates are the pairs whose mid points are at most ``l_i/2 + l_j/2 <= l_max`` apart
    (a necessary condition for intersection), found with a k-d tree (periodic distances when
    ``box`` is given). The shift ``s`` (integer, shape (m, 2)) is such that stick j translated
    by ``s * box`` intersects stick i.
    """
    n = start.shape[0]
    empty = np.zeros((0, 2), dtype=np.int64)
    if n == 0:
        return empty, empty
    d = end - start
    lengths = np.hypot(d[:, 0], d[:, 1])
    radius = float(lengths.max()) * (1.0 + 1e-9) + 1e-12
    if box is not None and radius >= 0.5 * min(box):
        raise ValueError("periodic box: the longest stick must be shorter than half the "
                         "smaller box side")
    if n < 2:
        return empty, empty
    centers = 0.5 * (start + end)
    if box is None:
        tree = cKDTree(centers)
    else:
        size = np.array(box)
        wrapped = np.mod(centers, size)
        wrapped[wrapped >= size] = 0.0  # mod of tiny negatives can round up to size
        tree = cKDTree(wrapped, boxsize=size)
    cand = tree.query_pairs(radius, output_type="ndarray").astype(np.int64)
    if cand.shape[0] == 0:
        return empty, empty
    i, j = cand[:, 0], cand[:, 1]
    if box is None:
        hit = _segments_intersect(start[i], end[i], start[j], end[j])
        shift = np.zeros((int(hit.sum()), 2), dtype=np.int64)
    else:
        size = np.array(box)
        s = -np.rint((centers[j] - centers[i]) / size)
        off = s * size
        hit = _segments_intersect(start[i], end[i], start[j] + off, end[j] + off)
        shift = s[hit].astype(np.int64)
    pairs = cand[hit]
    if not sort:
        return pairs, shift
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], shift[order]


def intersecting_pairs(
    sticks: Sticks, *, box_um: tuple[float, float] | None = None, periodic: bool = False
) -> IntArray:
    """All pairs of intersecting sticks.

    Parameters
    ----------
    sticks
        The sticks.
    box_um
        Box size ``(W, H)``, um; only needed when ``periodic``.
    periodic
        Also count intersections between a stick and the periodic images of the others (the
        longest stick must be shorter than half the smaller box side).

    Returns
    -------
    numpy.ndarray
        int64, shape ``(m, 2)``: pairs ``(i, j)`` with ``i < j``, sorted lexicographically.
        Touching (an end point on the other stick) and collinear overlap count as intersecting.
    """
    box = _periodic_box(box_um, periodic)
    return _pairs_and_shifts(sticks.start_um, sticks.end_um, box)[0]


def _periodic_box(box_um: tuple[float, float] | None, periodic: bool) -> tuple[float, float] | None:
    if not periodic:
        return None
    if box_um is None:
        raise ValueError("periodic = True needs box_um")
    return _check_box(box_um)


def _adjacency(n: int, pairs: IntArray, data: npt.ArrayLike | None = None) -> sp.csr_matrix:
    vals = np.ones(pairs.shape[0]) if data is None else np.asarray(data)
    return sp.csr_matrix((vals, (pairs[:, 0], pairs[:, 1])), shape=(n, n))


def _cluster_flags(labels: IntArray, n_clusters: int, stick_mask: BoolArray) -> BoolArray:
    flags = np.zeros(n_clusters, dtype=bool)
    flags[labels[stick_mask]] = True
    return flags


def _winding_flags(
    n: int, labels: IntArray, n_clusters: int, pairs: IntArray, shifts: IntArray
) -> tuple[BoolArray, BoolArray]:
    """Which clusters wrap in x and y on the torus.

    Every stick gets an unwrapped cell offset relative to a root of its cluster along a BFS
    spanning forest (computed by pointer jumping, so without a Python loop over sticks); a
    cluster wraps when some edge (i, j, s) is inconsistent with these offsets,
    ``off_i + s != off_j``, i.e. closes a loop of non-zero winding.
    """
    wraps_x = np.zeros(n_clusters, dtype=bool)
    wraps_y = np.zeros(n_clusters, dtype=bool)
    if pairs.shape[0] == 0:
        return wraps_x, wraps_y
    # Super root n joined to the first stick of every cluster: one BFS covers the forest.
    reps = np.unique(labels, return_index=True)[1]
    root = n
    ii = np.concatenate((pairs[:, 0], np.full(reps.size, root)))
    jj = np.concatenate((pairs[:, 1], reps))
    # Edge ids (1-based) signed by direction, to look tree edges up.
    eid = np.concatenate((np.arange(1, pairs.shape[0] + 1), np.zeros(reps.size, dtype=np.int64)))
    graph = sp.csr_matrix((np.ones(ii.size), (ii, jj)), shape=(n + 1, n + 1))
    _, pred = breadth_first_order(graph, root, directed=False, return_predecessors=True)
    lookup = sp.csr_matrix(
        (np.concatenate((eid, -eid)).astype(np.float64),
         (np.concatenate((ii, jj)), np.concatenate((jj, ii)))),
        shape=(n + 1, n + 1),
    )
    nodes = np.arange(n)
    parent = pred[:n].astype(np.int64)
    signed = np.asarray(lookup[parent, nodes]).ravel().astype(np.int64)
    # shift of node seen from its parent: +s_e if the edge is (parent, node), else -s_e
    step = np.zeros((n + 1, 2), dtype=np.int64)
    nz = signed != 0
    step[:n][nz] = np.sign(signed[nz])[:, None] * shifts[np.abs(signed[nz]) - 1]
    up = np.concatenate((parent, [root]))
    acc = step.copy()
    while np.any(up != root):
        acc = acc + acc[up] * (up != root)[:, None]
        up = np.where(up != root, up[up], root)
    off = acc[:n]
    bad = off[pairs[:, 0]] + shifts - off[pairs[:, 1]]
    wraps_x[labels[pairs[bad[:, 0] != 0, 0]]] = True
    wraps_y[labels[pairs[bad[:, 1] != 0, 0]]] = True
    return wraps_x, wraps_y


def stick_clusters(
    sticks: Sticks, *, box_um: tuple[float, float], periodic: bool = False
) -> StickClusters:
    """Clusters of intersecting sticks and the walls they reach (or the torus cycles they wrap).

    Parameters
    ----------
    sticks
        The sticks, normally from :func:`random_sticks` (clipped to the box for an open box;
        ``margin=False`` for a periodic one, where sticks may cross the box edges).
    box_um
        Box size ``(W, H)``, um.
    periodic
        False: open box; a stick touches the left wall when one of its end points has
        ``x <= 0`` (within a round-off tolerance of 1e-9 times the larger side), and likewise
        for the other walls; a cluster spans x when it touches both x walls.
        True: the box is a torus; stick centres are wrapped into the box, intersections with
        periodic images count, and a cluster spans x (y) when it wraps around the torus in x
        (y). The longest stick must be shorter than half the smaller box side.

    Returns
    -------
    StickClusters
    """
    w, h = _check_box(box_um)
    n = len(sticks)
    box = (w, h) if periodic else None
    pairs, shifts = _pairs_and_shifts(sticks.start_um, sticks.end_um, box)
    if n == 0:
        labels = np.zeros(0, dtype=np.int64)
        n_clusters = 0
    else:
        n_clusters, lab = connected_components(_adjacency(n, pairs), directed=False)
        labels = lab.astype(np.int64)
    no = np.zeros(n_clusters, dtype=bool)
    if periodic:
        wx, wy = _winding_flags(n, labels, n_clusters, pairs, shifts)
        return StickClusters(labels=labels, n_clusters=int(n_clusters), pairs=pairs,
                             touches_left=no, touches_right=no.copy(), touches_bottom=no.copy(),
                             touches_top=no.copy(), spanning_x=wx, spanning_y=wy, periodic=True)
    tol = _WALL_RTOL * max(w, h)
    xs = np.column_stack((sticks.start_um[:, 0], sticks.end_um[:, 0]))
    ys = np.column_stack((sticks.start_um[:, 1], sticks.end_um[:, 1]))
    left = _cluster_flags(labels, n_clusters, xs.min(axis=1) <= tol)
    right = _cluster_flags(labels, n_clusters, xs.max(axis=1) >= w - tol)
    bottom = _cluster_flags(labels, n_clusters, ys.min(axis=1) <= tol)
    top = _cluster_flags(labels, n_clusters, ys.max(axis=1) >= h - tol)
    return StickClusters(labels=labels, n_clusters=int(n_clusters), pairs=pairs,
                         touches_left=left, touches_right=right, touches_bottom=bottom,
                         touches_top=top, spanning_x=left & right, spanning_y=bottom & top,
                         periodic=False)


# --------------------------------------------------------------------------------------------
# percolation


def _seed_sequences(seed: int, n: int) -> list[np.random.SeedSequence]:
    return np.random.SeedSequence(seed).spawn(n)


def _spans_chunk(
    seqs: list[np.random.SeedSequence], eta: float, b: float
) -> list[tuple[bool, bool]]:
    out = []
    for s in seqs:
        # One integer seed per sample, derived from its spawned sequence (reproducible).
        seed = int(s.generate_state(1, dtype=np.uint64)[0])
        st = random_sticks(density_per_um2=eta, length_um=1.0, box_um=(b, b), seed=seed)
        cl = stick_clusters(st, box_um=(b, b))
        out.append((cl.spans_x, cl.spans_y))
    return out


def spanning_probability(
    *,
    reduced_density: float,
    box_over_length: float,
    n_samples: int,
    seed: int,
    criterion: Criterion = "x",
    workers: int = 1,
) -> float:
    """Fraction of realizations whose stick network crosses a square box.

    Each realization is :func:`random_sticks` with equal sticks of length L = 1 um, isotropic
    orientations, ``margin=True`` (uniform density up to the walls, sticks clipped to the
    box), Poisson number of sticks, analysed with :func:`stick_clusters` (open box).

    Parameters
    ----------
    reduced_density
        ``N L^2``, N = number density of stick centres.
    box_over_length
        Box side / L.
    n_samples
        Number of independent realizations (binomial standard error
        ``sqrt(P (1 - P) / n_samples)``).
    seed
        Master seed; sample i uses the i-th child of ``numpy.random.SeedSequence(seed)``, so
        the result does not depend on ``workers``.
    criterion
        ``"x"`` (left-right, default), ``"y"``, ``"either"``, ``"both"``, or ``"average"``
        (mean of the x and y fractions).
    workers
        Number of worker processes (1: run in this process). Workers are spawned, so scripts
        must guard their entry point with ``if __name__ == "__main__":``.

    Returns
    -------
    float
        The crossing fraction in [0, 1].
    """
    if n_samples < 1:
        raise ValueError(f"n_samples = {n_samples}: must be >= 1")
    b = float(box_over_length)
    if criterion not in ("x", "y", "either", "both", "average"):
        raise ValueError(f"criterion = {criterion!r}: expected x, y, either, both or average")
    chunks = seed_chunks(_seed_sequences(seed, n_samples), workers)
    res = parallel_map(_spans_chunk, [(c, float(reduced_density), b) for c in chunks], workers)
    flags = np.array([v for r in res for v in r], dtype=bool).reshape(n_samples, 2)
    if criterion == "x":
        hits = flags[:, 0]
    elif criterion == "y":
        hits = flags[:, 1]
    elif criterion == "either":
        hits = flags.any(axis=1)
    elif criterion == "both":
        hits = flags.all(axis=1)
    else:
        hits = flags
    return float(np.mean(hits))


def _minimax_crossing(
    n: int, pairs: IntArray, order: IntArray, wall_a: BoolArray, wall_b: BoolArray
) -> int | None:
    """Smallest k such that the first k sticks (by ``order``) connect wall a to wall b.

    Kruskal: the minimax path between two virtual wall nodes lies on a minimum spanning tree,
    with weight ``max(order_i, order_j) + 1`` for a stick contact and ``order_i + 1`` for a
    wall contact. Returns None when the walls are not connected at all.
    """
    a, b = n, n + 1
    ia = np.flatnonzero(wall_a)
    ib = np.flatnonzero(wall_b)
    if ia.size == 0 or ib.size == 0:
        return None
    rows = np.concatenate((pairs[:, 0], np.full(ia.size, a), np.full(ib.size, b)))
    cols = np.concatenate((pairs[:, 1], ia, ib))
    wts = np.concatenate((np.maximum(order[pairs[:, 0]], order[pairs[:, 1]]), order[ia],
                          order[ib])).astype(np.float64) + 1.0
    graph = sp.csr_matrix((wts, (rows, cols)), shape=(n + 2, n + 2))
    tree = minimum_spanning_tree(graph)
    tree = (tree + tree.T).tocsr()
    _, pred = breadth_first_order(tree, a, directed=True, return_predecessors=True)
    if pred[b] < 0:
        return None
    # Max weight on the tree path a -> b, by pointer jumping from every node towards a.
    m = n + 2
    parent = pred.astype(np.int64)
    reach = parent >= 0
    parent[~reach] = np.arange(m)[~reach]
    parent[a] = a
    nodes = np.flatnonzero(reach)
    wmax = np.zeros(m)
    wmax[nodes] = np.asarray(tree[parent[nodes], nodes]).ravel()
    while np.any(parent[nodes] != a):
        wmax = np.maximum(wmax, wmax[parent])
        parent = parent[parent]
    return round(float(wmax[b]))


def _critical_counts_one(seq: np.random.SeedSequence, b: float) -> tuple[int, int]:
    """Per-sample crossing counts (x, y) for equal sticks of length 1 in a b x b box."""
    rng = np.random.default_rng(seq)
    lo, hi = (-0.5, -0.5), (b + 0.5, b + 0.5)
    area = (b + 1.0) ** 2
    p = np.zeros((0, 2))
    q = np.zeros((0, 2))
    batch = math.ceil(_ETA_BATCH * area)
    for _ in range(50):
        pn, qn = _draw_sticks(rng, batch, lo, hi, 1.0, None)
        p = np.concatenate((p, pn))
        q = np.concatenate((q, qn))
        cp, cq, keep = _clip_to_box(p, q, b, b)
        order = np.flatnonzero(keep).astype(np.int64)  # placement order of the kept sticks
        pairs, _ = _pairs_and_shifts(cp, cq, None, sort=False)
        n = cp.shape[0]
        tol = _WALL_RTOL * b
        xmin = np.minimum(cp[:, 0], cq[:, 0])
        xmax = np.maximum(cp[:, 0], cq[:, 0])
        ymin = np.minimum(cp[:, 1], cq[:, 1])
        ymax = np.maximum(cp[:, 1], cq[:, 1])
        kx = _minimax_crossing(n, pairs, order, xmin <= tol, xmax >= b - tol)
        ky = _minimax_crossing(n, pairs, order, ymin <= tol, ymax >= b - tol)
        if kx is not None and ky is not None:
            return kx, ky
        batch = math.ceil(_ETA_EXTRA * area)
    raise RuntimeError("no crossing cluster after 50 batches of sticks")  # pragma: no cover


def _critical_counts_chunk(seqs: list[np.random.SeedSequence], b: float) -> list[tuple[int, int]]:
    return [_critical_counts_one(s, b) for s in seqs]


def _criterion_counts(counts: IntArray, criterion: str) -> IntArray:
    """Per-sample crossing counts for a criterion, shape (n, c) with c = 1 or 2 (pooled)."""
    if criterion == "x":
        return counts[:, :1]
    if criterion == "y":
        return counts[:, 1:]
    if criterion == "either":
        return counts.min(axis=1, keepdims=True)
    if criterion == "both":
        return counts.max(axis=1, keepdims=True)
    if criterion == "average":
        return counts
    raise ValueError(f"criterion = {criterion!r}: expected one of x, y, either, both, average")


def estimate_threshold(
    *,
    box_over_length: float,
    n_samples: int,
    seed: int,
    criterion: Criterion = "average",
    n_bootstrap: int = 400,
    workers: int = 1,
) -> ThresholdEstimate:
    """Estimate the stick percolation threshold ``N_c L^2`` in a square open box.

    Equal sticks (L = 1), isotropic, centres uniform in the box enlarged by L/2 on every side
    and clipped to the box (as :func:`random_sticks` with ``margin=True``). Per sample, sticks
    are added one at a time and the number at which a cluster first crosses left-right and
    bottom-top is found exactly (see the module docstring). The estimate is the reduced
    density where the Poisson-averaged crossing probability of ``criterion`` equals 1/2.

    Parameters
    ----------
    box_over_length
        Box side / L (>= 2).
    n_samples
        Number of independent samples (>= 10).
    seed
        Master seed; sample i uses the i-th child of ``numpy.random.SeedSequence(seed)``, so
        the result does not depend on ``workers``.
    criterion
        Crossing criterion; ``"average"`` (default) pools the x and y crossings, which have
        the same probability for an isotropic system in a square, for less variance.
    n_bootstrap
        Bootstrap resamples for the standard error.
    workers
        Number of worker processes (1: run in this process). Workers are spawned, so scripts
        must guard their entry point with ``if __name__ == "__main__":``.

    Returns
    -------
    ThresholdEstimate
    """
    b = float(box_over_length)
    if not (b >= 2.0 and math.isfinite(b)):
        raise ValueError(f"box_over_length = {box_over_length}: must be >= 2")
    if n_samples < 10:
        raise ValueError(f"n_samples = {n_samples}: must be >= 10")
    seqs = _seed_sequences(seed, n_samples + 1)
    boot_seq, seqs = seqs[0], seqs[1:]
    chunks = seed_chunks(seqs, workers)
    res = parallel_map(_critical_counts_chunk, [(c, b) for c in chunks], workers)
    counts = np.array([v for r in res for v in r], dtype=np.int64).reshape(n_samples, 2)
    return threshold_from_counts(counts, box_over_length=b, criterion=criterion,
                                 n_bootstrap=n_bootstrap, seed=boot_seq)


def threshold_from_counts(
    sample_counts: npt.ArrayLike,
    *,
    box_over_length: float,
    criterion: Criterion = "average",
    n_bootstrap: int = 400,
    seed: int | np.random.SeedSequence = 0,
) -> ThresholdEstimate:
    """Threshold estimate from per-sample crossing counts (e.g. for another criterion).

    Parameters
    ----------
    sample_counts
        int, shape ``(n_samples, 2)``: per sample, the number of sticks (placement order) at
        which a cluster first crosses left-right and bottom-top, as in
        :attr:`ThresholdEstimate.sample_counts`.
    box_over_length
        Box side / L of those samples (sets the placement area ``(box/L + 1)^2``).
    criterion
        Crossing criterion, see :data:`Criterion`.
    n_bootstrap
        Bootstrap resamples for the standard error (>= 2).
    seed
        Seed of the bootstrap resampling.

    Returns
    -------
    ThresholdEstimate
    """
    counts = np.array(sample_counts, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[1] != 2 or counts.shape[0] < 2:
        raise ValueError(f"sample_counts: shape {counts.shape}, expected (n >= 2, 2)")
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap = {n_bootstrap}: must be >= 2")
    b = float(box_over_length)
    n_samples = counts.shape[0]
    area = (b + 1.0) ** 2
    kc = _criterion_counts(counts, criterion)
    eta_all = kc.ravel() / area
    th = poisson_threshold(kc, area, n_bootstrap=n_bootstrap, seed=seed, grid_points=601)
    return ThresholdEstimate(
        estimate=th.density,
        std_error=th.std_error,
        box_over_length=b,
        n_samples=int(n_samples),
        criterion=str(criterion),
        placement_area=area,
        sample_counts=counts,
        sample_thresholds=counts / area,
        mean_threshold=float(eta_all.mean()),
        threshold_width=float(eta_all.std(ddof=1)),
        reduced_densities=th.grid,
        probabilities=th.probabilities,
        probability_std=th.probability_std,
        n_bootstrap=int(n_bootstrap),
    )


