"""Phase-label images (voxels) of a 3D box cut from a realization.

The realization of the box's window (spec + seed, :mod:`meshes.realization`) is sampled at
voxel centres: a voxel takes the phase of the object that contains its centre
(nanowire before rGO before carbon black), the layer it lies in outside the composite layer
(Al foil below, SPE skin above), and otherwise it is pore. The pore is split like the 2D
sections (:mod:`meshes.fill`):

* coating (gradient membrane): pore voxels within ``coating_thickness_um`` of a solid, and
  at least the pore voxels sharing a face with a solid, are SPE, so every wire is coated at
  any resolution;
* the rest is SPE where Phi(g) < f: f(z) of the gradient membrane, or the tape-cast cathode's
  SPE share of the pore space (quantile threshold: the realised share is exact);
  g a unit-variance Gaussian random field with the spec's correlation length, sampled on
  the box (:class:`BoxFill`).

A 2D section with ``section.method = "box"`` (:func:`box_section_source`) is a plane of the
box: the same realization and the same fill rule, so it agrees with the image wherever they
meet. Other 2D sections are realizations of their own window (and calibrated in density).

Centre sampling converges to the exact geometry as the voxel size drops; objects thinner than
a voxel (rGO sheets of 20 nm at 25 nm voxels) are partly lost, which is why the realised
phase fractions are reported with every image. Image axes are (x, y, z), z through the
thickness; ``origin_um`` is the position of the box corner in the realization's frame.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage, special

from meshes.fill import gaussian_field, gradient_fill
from meshes.realization import (
    Realization,
    Sheets,
    Spheres,
    Wires,
    realize_gradient,
    realize_homogeneous,
)
from meshes.spec import BoxSpec, CaseSpec, SpecError, derive_homogeneous
from meshes.tags import ELECTRONIC_PHASES, Phase

__all__ = [
    "MAX_ELECTRONIC_VOXELS",
    "MAX_PERCOLATION_VOXELS",
    "NORMAL_FLOOR",
    "NORMAL_SIGMA_VOXELS",
    "BoxFill",
    "VoxelImage",
    "box_section_source",
    "box_window",
    "cathode_layers_um",
    "check_electronic_image",
    "electronic_image",
    "face_area_weights",
    "face_cosines",
    "face_pairs",
    "film_caveat",
    "fine_phase_image",
    "fine_phase_image_voxels",
    "interface_area_um2",
    "interface_faces",
    "lateral_shifts",
    "periodic_caveat",
    "periodic_images",
    "sheet_caveat",
    "surface_normals",
    "voxelize",
    "voxelize_case",
    "write_image",
]

#: wires are sampled in pieces of at most this many radii (keeps every bounding box small)
_PIECE_RADII = 8.0


@dataclass(frozen=True)
class VoxelImage:
    """Phase tags (uint8, shape (nx, ny, nz)) on voxels of edge ``voxel_um``; the box corner
    sits at ``origin_um`` in the realization's frame (um)."""

    labels: np.ndarray
    voxel_um: float
    origin_um: tuple[float, float, float]
    kind: str
    #: composite layer (where the solids are) in the box's own frame, z from 0: the voxel
    #: planes that bound the voxels whose centres lie in it
    composite_z_um: tuple[float, float]
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def size_um(self) -> tuple[float, float, float]:
        nx, ny, nz = self.labels.shape
        return (nx * self.voxel_um, ny * self.voxel_um, nz * self.voxel_um)

    def fractions(self) -> dict[str, float]:
        counts = np.bincount(self.labels.ravel(), minlength=8) / self.labels.size
        return {p.label: float(counts[int(p)]) for p in Phase}

    def subdivided(self, k: int) -> VoxelImage:
        """The same phase geometry on voxels of edge ``voxel_um / k`` (every voxel split into
        k^3): a mesh refinement at fixed geometry, for solver studies."""
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"k = {k!r}: must be an integer >= 1")
        labels = self.labels
        for axis in range(3):
            labels = np.repeat(labels, k, axis=axis)
        return replace(self, labels=labels, voxel_um=self.voxel_um / k)


def _centres(n: int, origin: float, h: float) -> np.ndarray:
    return origin + (np.arange(n) + 0.5) * h


def _index_range(lo: float, hi: float, origin: float, h: float, n: int) -> tuple[int, int]:
    i0 = max(0, math.floor((lo - origin) / h - 0.5))
    i1 = min(n, math.ceil((hi - origin) / h + 0.5))
    return i0, i1


def _paint_cylinders(mask: np.ndarray, origin: np.ndarray, h: float, centers: np.ndarray,
                     axes: np.ndarray, lengths: np.ndarray, radii: np.ndarray) -> None:
    """Set voxels whose centre lies in a flat-ended cylinder (centre, unit axis, length,
    radius); each cylinder is visited in axial pieces so the bounding boxes stay small."""
    shape = np.array(mask.shape)
    lo_box = origin
    hi_box = origin + shape * h
    for c, a, length, r in zip(centers, axes, lengths, radii, strict=True):
        half = 0.5 * length
        n_piece = max(1, math.ceil(length / (_PIECE_RADII * r)))
        bounds = np.linspace(-half, half, n_piece + 1)
        for t0, t1 in itertools.pairwise(bounds):
            p0, p1 = c + t0 * a, c + t1 * a
            lo = np.minimum(p0, p1) - r
            hi = np.maximum(p0, p1) + r
            if np.any(hi < lo_box) or np.any(lo > hi_box):
                continue
            rng = [_index_range(lo[k], hi[k], origin[k], h, shape[k]) for k in range(3)]
            if any(i1 <= i0 for i0, i1 in rng):
                continue
            xs = [_centres(shape[k], origin[k], h)[rng[k][0]:rng[k][1]] for k in range(3)]
            gx, gy, gz = np.meshgrid(*xs, indexing="ij")
            d = np.stack([gx - c[0], gy - c[1], gz - c[2]], axis=-1)
            t = d @ a
            radial2 = np.einsum("...k,...k->...", d, d) - t * t
            # the piece owns t in [t0, t1) (the last piece also its end)
            inside = (radial2 <= r * r) & (t >= t0) & ((t < t1) | (t1 >= half) & (t <= t1))
            sub = mask[rng[0][0]:rng[0][1], rng[1][0]:rng[1][1], rng[2][0]:rng[2][1]]
            sub |= inside


def _paint_discs(mask: np.ndarray, origin: np.ndarray, h: float, centers: np.ndarray,
                 normals: np.ndarray, diameters: np.ndarray, thickness: float) -> None:
    _paint_cylinders(mask, origin, h, centers, normals, np.full(len(centers), thickness),
                     0.5 * diameters)


def _paint_spheres(mask: np.ndarray, origin: np.ndarray, h: float, centers: np.ndarray,
                   radii: np.ndarray) -> None:
    shape = np.array(mask.shape)
    for c, r in zip(centers, radii, strict=True):
        rng = [_index_range(c[k] - r, c[k] + r, origin[k], h, shape[k]) for k in range(3)]
        if any(i1 <= i0 for i0, i1 in rng):
            continue
        xs = [_centres(shape[k], origin[k], h)[rng[k][0]:rng[k][1]] - c[k] for k in range(3)]
        gx, gy, gz = np.meshgrid(*xs, indexing="ij")
        mask[rng[0][0]:rng[0][1], rng[1][0]:rng[1][1], rng[2][0]:rng[2][1]] |= (
            gx * gx + gy * gy + gz * gz <= r * r)


def lateral_shifts(lo: np.ndarray, hi: np.ndarray, origin: np.ndarray, period: np.ndarray
                    ) -> list[tuple[int, np.ndarray]]:
    """(object index, lateral shift) of every periodic image of the objects with bounding
    boxes [lo, hi] (n, 3) that reaches into the box ``origin + [0, period]`` in x and y."""
    out: list[tuple[int, np.ndarray]] = []
    for q in range(len(lo)):
        ranges = [range(math.ceil((origin[k] - hi[q, k]) / period[k]),
                        math.floor((origin[k] + period[k] - lo[q, k]) / period[k]) + 1)
                  for k in range(2)]
        out.extend((q, np.array([i * period[0], j * period[1], 0.0]))
                   for i in ranges[0] for j in ranges[1])
    return out


def periodic_images(real: Realization, origin_um: np.ndarray, period_um: np.ndarray
                    ) -> Realization:
    """The realization on a torus in x and y: the objects whose anchor (own centre, or the
    centre of their agglomerate) lies in the box ``origin + [0, period)`` laterally, with
    every lateral periodic image of them that reaches into the box. The object density is
    unchanged (the realization is stationary), and the box's phase image is periodic."""
    lo_b, per = np.asarray(origin_um, dtype=np.float64), np.asarray(period_um, dtype=np.float64)

    def kept(anchors: np.ndarray) -> np.ndarray:
        rel = anchors[:, :2] - lo_b[:2]
        return np.nonzero(np.all((rel >= 0.0) & (rel < per[:2]), axis=1))[0]

    w = real.wires
    k = kept(w.anchors())
    ext = 0.5 * w.lengths_um[k, None] * np.abs(w.axes[k]) + w.radii_um[k, None]
    img = lateral_shifts(w.centers_um[k] - ext, w.centers_um[k] + ext, lo_b, per)
    idx = np.array([k[q] for q, _ in img], dtype=np.int64)
    shift = np.array([s for _, s in img]).reshape(-1, 3)
    wires = Wires(w.centers_um[idx] + shift, w.axes[idx], w.lengths_um[idx], w.radii_um[idx])
    s = real.sheets
    k = kept(s.anchors())
    ext = np.repeat((0.5 * s.diameters_um[k] + s.thickness_um)[:, None], 3, axis=1)
    img = lateral_shifts(s.centers_um[k] - ext, s.centers_um[k] + ext, lo_b, per)
    idx = np.array([k[q] for q, _ in img], dtype=np.int64)
    shift = np.array([v for _, v in img]).reshape(-1, 3)
    sheets = Sheets(s.centers_um[idx] + shift, s.normals[idx], s.diameters_um[idx],
                    s.thickness_um)
    c = real.spheres
    k = kept(c.centers_um)
    ext = np.repeat(c.radii_um[k, None], 3, axis=1)
    img = lateral_shifts(c.centers_um[k] - ext, c.centers_um[k] + ext, lo_b, per)
    idx = np.array([k[q] for q, _ in img], dtype=np.int64)
    shift = np.array([v for _, v in img]).reshape(-1, 3)
    spheres = Spheres(c.centers_um[idx] + shift, c.radii_um[idx])
    return replace(real, wires=wires, sheets=sheets, spheres=spheres)


def _solid_labels(real: Realization, origin: np.ndarray, shape: tuple[int, int, int],
                  h: float, z_layer_um: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The solids of a box sampled at voxel centres (nanowire before rGO before carbon
    black, in the composite layer only), Al foil (tape-cast) or SPE below the composite
    layer, SPE skin above it; the rest is VOID. ``z_layer_um`` (one per z layer; default
    the voxel centres) places each layer in or outside the composite layer. Returns
    (labels, pore mask of the composite layer, per z layer: whether it lies in the
    composite layer)."""
    labels = np.full(shape, int(Phase.VOID), dtype=np.uint8)
    z = _centres(shape[2], origin[2], h) if z_layer_um is None else z_layer_um
    zc0, zc1 = real.composite_z_um
    in_composite = (z >= zc0) & (z <= zc1)
    pore = np.ones(shape, dtype=bool)
    pore[:, :, ~in_composite] = False
    w, s, c = real.wires, real.sheets, real.spheres
    painters = (
        (Phase.NANOWIRE, lambda m: _paint_cylinders(m, origin, h, w.centers_um, w.axes,
                                                    w.lengths_um, w.radii_um)),
        (Phase.RGO, lambda m: _paint_discs(m, origin, h, s.centers_um, s.normals,
                                           s.diameters_um, s.thickness_um)),
        (Phase.CARBON_BLACK, lambda m: _paint_spheres(m, origin, h, c.centers_um,
                                                      c.radii_um)))
    for phase, paint in painters:  # priority order: first wins
        mask = np.zeros(shape, dtype=bool)
        paint(mask)
        mask &= pore
        labels[mask] = int(phase)
        pore &= ~mask
    labels[:, :, z < zc0] = int(Phase.AL_FOIL) if real.kind == "homogeneous" else int(Phase.SPE)
    labels[:, :, z > zc1] = int(Phase.SPE)
    return labels, pore, in_composite


class FilmTooThickError(ValueError):
    """The coating of a "share" image takes more of the pore than the SPE share."""

    def __init__(self, coated_fraction: float, share: float) -> None:
        super().__init__(f"the coating takes {coated_fraction:.2f} of the pore, more than the "
                         f"SPE share {share:.2f}")
        self.coated_fraction = coated_fraction
        self.share = share


@dataclass(frozen=True)
class BoxFill:
    """How the pore of a box image (outside the coating) is split into SPE and void, as a
    function of position in the realization's frame: SPE where Phi(g) < f(z) (``fill`` =
    "gradient") or where g <= ``threshold`` (``fill`` = "share": the image's quantile, so
    the image holds exactly its SPE share), g the box's Gaussian field. A 2D section cut
    from the box's realization (``section.method = "box"``) applies the same rule, so the
    section and the image agree on every pore point they share."""

    fill: str
    origin_um: tuple[float, float, float]
    extent_um: tuple[float, float, float]
    correlation_um: float
    seed: int
    periodic: bool
    fill_min: float = 1.0
    lean_zone_um: float = 0.0
    threshold: float = math.inf

    def field(self, points_um: np.ndarray) -> np.ndarray:
        """The unit-variance Gaussian field g at ``points_um`` (n, 3)."""
        return gaussian_field(points_um, self.extent_um, self.correlation_um, self.seed,
                              origin_um=self.origin_um,
                              periodic_axes=(0, 1) if self.periodic else ())

    def spe(self, points_um: np.ndarray) -> np.ndarray:
        """True where a pore point (n, 3) outside the coating is SPE."""
        g = self.field(points_um)
        if self.fill == "gradient":
            return np.asarray(special.ndtr(g) < gradient_fill(
                points_um[:, 2], lean_zone_um=self.lean_zone_um, fill_min=self.fill_min))
        return np.asarray(g <= self.threshold)


def voxelize(real: Realization, origin_um: tuple[float, float, float],
             shape: tuple[int, int, int], voxel_um: float, *, coating_um: float,
             fill: str, fill_min: float = 1.0, lean_zone_um: float = 0.0,
             spe_share: float = 1.0, correlation_um: float = 1.0, seed: int = 0,
             periodic: bool = False) -> VoxelImage:
    """Phase image of the box ``origin + [0, shape * voxel]`` (um) of a realization.

    ``fill``: "gradient" (f(z) from ``fill_min`` and ``lean_zone_um``, z in the
    realization's frame) or "share" (SPE share ``spe_share`` of the pore space).
    ``periodic``: the image is periodic in x and y (:func:`periodic_images`; the coating and
    the fill field wrap around too), for periodic boundary conditions.
    With "share", a coating that takes more of the pore than ``spe_share`` is kept whole and
    the rest of the pore is void (``spe_share = 0``: coating only); cases raise instead
    (:func:`voxelize_case`).
    """
    return _voxelize(real, origin_um, shape, voxel_um, coating_um=coating_um, fill=fill,
                     fill_min=fill_min, lean_zone_um=lean_zone_um, spe_share=spe_share,
                     correlation_um=correlation_um, seed=seed, periodic=periodic)[0]


def _voxelize(real: Realization, origin_um: tuple[float, float, float],
              shape: tuple[int, int, int], voxel_um: float, *, coating_um: float,
              fill: str, fill_min: float, lean_zone_um: float, spe_share: float,
              correlation_um: float, seed: int, periodic: bool, strict_share: bool = False
              ) -> tuple[VoxelImage, BoxFill, Realization]:
    """:func:`voxelize`, and its fill rule and (periodic: on the torus) realization.

    ``strict_share``: raise :class:`FilmTooThickError` when the coating alone exceeds
    ``spe_share`` (a film taken from the SPE share cannot be larger than the share)."""
    if fill not in ("gradient", "share"):
        raise ValueError(f"fill = {fill!r}: must be 'gradient' or 'share'")
    origin = np.asarray(origin_um, dtype=np.float64)
    h = float(voxel_um)
    if periodic:
        real = periodic_images(real, origin, np.array(shape, dtype=np.float64) * h)
    rule = BoxFill(fill=fill, origin_um=(float(origin[0]), float(origin[1]), float(origin[2])),
                   extent_um=(float(shape[0] * h), float(shape[1] * h), float(shape[2] * h)),
                   correlation_um=correlation_um, seed=seed, periodic=periodic,
                   fill_min=fill_min, lean_zone_um=lean_zone_um)
    labels, pore, in_composite = _solid_labels(real, origin, shape, h)
    solid_any = (labels != int(Phase.VOID)) & in_composite[None, None, :]
    spe = np.zeros(shape, dtype=bool)
    if coating_um > 0.0 and solid_any.any():
        # periodic: the solids across the x and y faces coat the voxels at the faces too
        pad = math.ceil(coating_um / h) + 1 if periodic else 0
        wrapped = np.pad(solid_any, ((pad, pad), (pad, pad), (0, 0)), mode="wrap")
        near = ndimage.distance_transform_edt(~wrapped, sampling=h) <= coating_um
        near |= ndimage.binary_dilation(wrapped)  # at least one voxel: every face coated
        spe |= near[pad:near.shape[0] - pad, pad:near.shape[1] - pad] & pore
    rest = pore & ~spe
    idx = np.nonzero(rest)
    if len(idx[0]):
        pts = np.column_stack([origin[k] + (idx[k] + 0.5) * h for k in range(3)])
        if fill == "gradient":
            filled = rule.spe(pts)
        else:
            # the SPE share of the *whole* pore space (coating included) is the spec's
            g = rule.field(pts)
            n_target = round(spe_share * pore.sum()) - int(spe.sum())
            if n_target < 0 and strict_share:
                raise FilmTooThickError(float(spe.sum()) / float(pore.sum()), spe_share)
            order = np.argsort(g)
            n = min(max(0, n_target), len(g))
            filled = np.zeros(len(g), dtype=bool)
            filled[order[:n]] = True
            # the same split as a threshold on g, for points off the voxel centres
            rule = replace(rule, threshold=math.inf if n == len(g)
                           else float(g[order[n - 1]]) if n > 0 else -math.inf)
        spe[idx[0][filled], idx[1][filled], idx[2][filled]] = True
    elif fill == "share":
        rule = replace(rule, threshold=math.inf if spe_share > 0.0 else -math.inf)
    labels[spe] = int(Phase.SPE)
    # the composite layer of the *image*: the voxel planes between which the voxel centres
    # lie in it (so that electrodes placed on its faces lie on mesh facets)
    layers = np.nonzero(in_composite)[0]
    comp = ((layers[0] * h, (layers[-1] + 1) * h) if len(layers) else (0.0, 0.0))
    image = VoxelImage(labels=labels, voxel_um=h,
                       origin_um=(float(origin[0]), float(origin[1]), float(origin[2])),
                       kind=real.kind, composite_z_um=(float(comp[0]), float(comp[1])))
    return image, rule, real


def cathode_layers_um(case: CaseSpec, kind: str) -> tuple[float, float, float]:
    """Composite layer (z0, z1) and total thickness of one cathode, um (z = 0 at the
    collector side; the tape-cast cathode includes its modelled Al foil)."""
    if kind == "gradient":
        g = case.gradient
        return 0.0, g.thickness_um - g.skin_thickness_um, g.thickness_um
    h = case.homogeneous
    zc0 = h.al_foil_thickness_um
    zc1 = zc0 + derive_homogeneous(h).thickness_um
    return zc0, zc1, zc1


def box_window(case: CaseSpec, kind: str) -> tuple[tuple[float, float, float], float, float]:
    """Box corner (realization frame), lateral size and height (um) of ``case.box`` for one
    cathode: the box is centred at ``z_center_fraction`` of the composite layer and clipped
    to the cathode's thickness."""
    box = case.box
    zc0, zc1, thickness = cathode_layers_um(case, kind)
    height = min(box.height_um, thickness)
    zc = zc0 + box.z_center_fraction * (zc1 - zc0)
    z0 = min(max(0.0, zc - 0.5 * height), thickness - height)
    return (0.0, 0.0, z0), box.size_um, height


def film_caveat(case: CaseSpec, kind: str) -> str | None:
    """A warning when the tape-cast wetting film of a voxel box is one voxel thick.

    The film is every pore voxel whose centre lies within the film thickness of a solid
    voxel's centre, and at least the solid's face neighbours. Below sqrt(2) voxels it is
    only those face neighbours: where a voxelized surface steps, two of them touch along an
    edge, not a face, so the film does not connect along the surface (measured on the
    1 x 1 um tape-cast column of cases/data/rate3d.toml, seed 1, 12.5 nm voxels: 0.09 of
    the film voxels reach the separator through faces with a 10 nm film, 0.998 with a 20 nm
    film, 0.999 for both through edges). None without a film, for the membrane or when the
    film is at least sqrt(2) voxels."""
    film = case.homogeneous.spe_film_thickness_um
    h = case.box.voxel_um
    if kind != "homogeneous" or film <= 0.0 or film >= math.sqrt(2.0) * h:
        return None
    coarsest = math.floor(film / math.sqrt(2.0) * 1e5) / 1e5  # rounded down: clears this
    return (f"homogeneous.spe_film_thickness_um = {film:g} is below sqrt(2) x box.voxel_um "
            f"= {math.sqrt(2.0) * h:.3g} um: the film is one voxel thick, its voxels touch "
            f"only along edges where a voxelized surface steps, and the polymer film does "
            f"not connect along the surface as a real film does (use box.voxel_um <= "
            f"{coarsest:g} or a film of at least {math.sqrt(2.0) * h:.3g} um)")


def periodic_caveat(case: CaseSpec, kind: str) -> str | None:
    """A warning when a periodic box (``box.sides = "periodic"``) is narrower than the
    largest object it wraps: the longest wire, the rGO flakes and, in the tape-cast
    cathode, the agglomerate diameter. On such a torus a wire meets its own images and
    each agglomerate repeats every period, so the box holds layers of agglomerates rather
    than the random medium (measured on the 1 um tape-cast columns of
    cases/data/rate3d.toml: the solid fraction of 0.5 um slabs varies 2.2x more along z
    than in the insulating column). None when the box is wide enough or not periodic."""
    if case.box.sides != "periodic":
        return None
    if kind == "gradient":
        g = case.gradient
        sizes = {"the longest wire": g.nanowire.length_max_um,
                 "the rGO flake size": g.rgo_sheet_size_um if g.rgo_wt_fraction > 0 else 0.0}
    else:
        h = case.homogeneous
        sizes = {"the longest wire": h.nanowire.length_max_um,
                 "the agglomerate diameter": 2.0 * h.agglomerate_radius_um,
                 "the rGO flake size": h.rgo_sheet_size_um if h.rgo_wt_fraction > 0 else 0.0}
    what, need = max(sizes.items(), key=lambda item: item[1])
    if case.box.size_um >= need:
        return None
    return (f"box.size_um = {case.box.size_um:g} um is below {need:g} um ({what}): on a "
            f"periodic box such objects meet their own images and repeat every "
            f"{case.box.size_um:g} um, so the {kind} box is a periodic medium, not a sample "
            f"of the random one (use box.size_um >= {need:g} or box.sides = 'insulating')")




def sheet_caveat(case: CaseSpec, kind: str) -> str | None:
    """A warning when a voxel box's rGO flakes are too thin for its voxels: sampled at
    voxel centres they break into pieces that do not touch by faces (1 um membrane boxes,
    seeds 5, 8, 9: 5, 4 and 20 pieces at 0.05 um, one piece each at 0.0125 um), so the
    electronic paths the flakes carry are lost. None for conforming boxes, no rGO, or fine
    enough voxels."""
    spec = case.gradient if kind == "gradient" else case.homogeneous
    if case.box.mesh != "voxels" or spec.rgo_wt_fraction <= 0.0:
        return None
    # a slab of thickness t normal to n sampled at voxel centres is face-connected when
    # h (|n_x| + |n_y| + |n_z|) <= t: for the membrane's flakes (normal within two tilt
    # standard deviations of z, any azimuth) h <= t / (cos 2s + sqrt(2) sin 2s), for the
    # tape-cast cathode's isotropic ones h <= t / sqrt(3)
    if kind == "gradient":
        tilt = math.radians(min(2.0 * case.gradient.nanowire.tilt_sd_deg, 90.0))
        fraction = 1.0 / (math.cos(tilt) + math.sqrt(2.0) * math.sin(tilt))
        fraction = max(fraction, 1.0 / math.sqrt(3.0))
    else:
        fraction = 1.0 / math.sqrt(3.0)
    limit = fraction * spec.rgo_sheet_thickness_um
    k = case.box.electronic_subdivisions
    h = case.box.voxel_um / k
    if h <= limit:
        return None
    need = math.ceil(case.box.voxel_um / limit)
    what = (f"box.voxel_um = {h:g} um" if k == 1 else
            f"box.voxel_um / box.electronic_subdivisions = {h:g} um")
    coarsest = math.floor(8 * limit * 1e4) / 1e4  # rounded down: following it clears this
    remedy = (f"box.electronic_subdivisions >= {need} (the electronic solves on finer voxels)"
              if need <= 8 else f"box.voxel_um <= {coarsest:g} with "
              f"box.electronic_subdivisions = 8")
    return (f"{what} is above {limit:.3g} um for the "
            f"{spec.rgo_sheet_thickness_um:g} um rGO flakes of the {kind} cathode: sampled at "
            f"voxel centres they fall into pieces, and the electronic conductivity misses "
            f"the paths they carry (1 um membrane boxes at 0.05 um: mean sigma_yy 30 % below "
            f"0.0125 um voxels); use {remedy} or box.mesh = 'conforming' for electronic "
            f"numbers with rGO")


def _box_shape(case: CaseSpec, kind: str) -> tuple[tuple[float, float, float],
                                                    tuple[int, int, int]]:
    """Box corner (realization frame, um) and voxel counts of ``case.box`` for one cathode
    (before the separator layer)."""
    box: BoxSpec = case.box
    origin, size, height = box_window(case, kind)
    h = box.voxel_um
    shape = (max(1, round(size / h)), max(1, round(size / h)), max(1, round(height / h)))
    thickness = cathode_layers_um(case, kind)[2]
    if box.height_um >= thickness:
        # full thickness: whole voxels ending at the top face (the bottom voxel layer may
        # reach below z = 0 by less than half a voxel; its centre is inside the cathode)
        origin = (origin[0], origin[1], thickness - shape[2] * h)
    elif abs(shape[2] * h - height) > 1e-6 * height:
        raise SpecError(f"box.voxel_um = {h:g}: must divide the box height {height:g} um "
                        f"into whole voxels")
    if abs(shape[0] * h - size) > 1e-9 * size:
        raise SpecError(f"box.voxel_um = {h:g}: must divide box.size_um = {size:g} into "
                        f"whole voxels")
    return origin, shape


#: the most voxels of an image of the electronic solids (uint8 labels, a few bool masks)
MAX_ELECTRONIC_VOXELS = 2.0e8


def check_electronic_image(case: CaseSpec, kind: str) -> None:
    """Raise SpecError (one line) unless the image of :func:`electronic_image` is within
    :data:`MAX_ELECTRONIC_VOXELS` (cheap: no realization is drawn)."""
    k = case.box.electronic_subdivisions
    if k == 1 or case.box.mesh != "voxels":
        return
    _, shape = _box_shape(case, kind)
    n_sep = round(case.box.separator_um / case.box.voxel_um)
    count = float(shape[0] * shape[1] * (shape[2] + n_sep)) * k**3
    if count > MAX_ELECTRONIC_VOXELS:
        raise SpecError(f"box.electronic_subdivisions = {k}: gives {count:.3g} voxels of "
                        f"{case.box.voxel_um / k:g} um for the {kind} box; must give <= "
                        f"{MAX_ELECTRONIC_VOXELS:.0e} (lower it or shrink the box)")


#: the most voxels of the whole finer phase image that the rve's percolation report is
#: computed on (about 100 bytes per voxel on rank 0: 6.4e7 is the default 5 um box at
#: 12.5 nm, about 6 GB)
MAX_PERCOLATION_VOXELS = 6.4e7

#: the finest voxel a box may have (``box.voxel_um``'s lower bound)
_MIN_VOXEL_UM = 0.005


def _fine_case(case: CaseSpec) -> CaseSpec:
    box = case.box
    return replace(case, box=replace(box, voxel_um=box.voxel_um / box.electronic_subdivisions,
                                     electronic_subdivisions=1))


def fine_phase_image_voxels(case: CaseSpec, kind: str) -> float:
    """Voxel count of :func:`fine_phase_image` (inf when its voxel would be finer than
    ``box.voxel_um`` allows); cheap, no realization is drawn."""
    k = case.box.electronic_subdivisions
    if case.box.voxel_um / k < _MIN_VOXEL_UM * (1 - 1e-12):
        return math.inf
    _, shape = _box_shape(case, kind)
    n_sep = round(case.box.separator_um / case.box.voxel_um)
    return float(shape[0] * shape[1] * (shape[2] + n_sep)) * k**3


def fine_phase_image(case: CaseSpec, kind: str) -> VoxelImage:
    """The whole phase image of ``case.box`` on voxels ``box.electronic_subdivisions`` times
    finer (:func:`voxelize_case` of that voxel size: the same realization, fill field and
    separator layer), for reports that need every phase at the finer resolution."""
    return voxelize_case(_fine_case(case), kind)


def _case_box(case: CaseSpec, kind: str) -> tuple[Realization, tuple[float, float, float],
                                                  tuple[int, int, int]]:
    """The realization, box corner (realization frame, um) and voxel counts of
    ``case.box`` for one cathode (``kind`` gradient or homogeneous)."""
    box: BoxSpec = case.box
    origin, shape = _box_shape(case, kind)
    size = box_window(case, kind)[1]
    window = (0.0, size, 0.0, size)
    if kind == "gradient":
        real = realize_gradient(case.gradient, window, box.seed)
    elif kind == "homogeneous":
        real = realize_homogeneous(case.homogeneous, window, box.seed)
    else:
        raise ValueError(f"kind = {kind!r}: must be 'gradient' or 'homogeneous'")
    return real, origin, shape


def _with_separator(case: CaseSpec, kind: str, img: VoxelImage, coarse_h: float
                    ) -> VoxelImage:
    """``img`` with ``case.box.separator_um`` of separator on top (whole voxels of the
    coarse image ``coarse_h``) when the box reaches the cathode's separator-side face."""
    h = img.voxel_um
    thickness = cathode_layers_um(case, kind)[2]
    top = img.origin_um[2] + img.labels.shape[2] * h
    n_sep = round(case.box.separator_um / coarse_h) * round(coarse_h / h)
    if n_sep and abs(top - thickness) <= 1e-6 * thickness:
        layer = np.full((*img.labels.shape[:2], n_sep), int(Phase.SEPARATOR), dtype=np.uint8)
        img = VoxelImage(np.concatenate([img.labels, layer], axis=2), h, img.origin_um,
                         img.kind, img.composite_z_um)
    return img


def electronic_image(case: CaseSpec, kind: str) -> VoxelImage:
    """The solids of ``case.box`` on voxels ``box.electronic_subdivisions`` times finer
    than ``box.voxel_um`` (nested in the phase image's voxels; same realization, same box,
    same separator layer): nanowires, rGO, carbon black, Al foil, and SPE outside the
    composite layer; the pore is VOID (no coating, no fill: the electronic solves do not
    see them). Only the electronic conductivity is solved on it (rve: a mesh of its
    electronic voxels), so thin solids such as the 20 nm rGO flakes stay whole where the
    phase image's voxels would break them."""
    check_electronic_image(case, kind)
    k = case.box.electronic_subdivisions
    real, origin, shape = _case_box(case, kind)
    h = case.box.voxel_um / k
    fine = (shape[0] * k, shape[1] * k, shape[2] * k)
    o = np.asarray(origin, dtype=np.float64)
    if case.box.sides == "periodic":
        # the period of the phase image, so that the same objects wrap
        real = periodic_images(real, o, np.array(shape, dtype=np.float64) * case.box.voxel_um)
    # every fine layer lies in or outside the composite layer as its phase-image voxel does
    # (a full-thickness box may start below z = 0 by less than half a phase-image voxel)
    z_layer = np.repeat(_centres(shape[2], o[2], case.box.voxel_um), k)
    labels, _, in_composite = _solid_labels(real, o, fine, h, z_layer)
    layers = np.nonzero(in_composite)[0]
    comp = ((layers[0] * h, (layers[-1] + 1) * h) if len(layers) else (0.0, 0.0))
    img = VoxelImage(labels, h, (float(o[0]), float(o[1]), float(o[2])), real.kind,
                     (float(comp[0]), float(comp[1])))
    img = _with_separator(case, kind, img, case.box.voxel_um)
    stats = {f"{name}_fraction": v for name, v in img.fractions().items()}
    stats.update({"voxels_count": float(img.labels.size),
                  "electronic_fraction": float(np.isin(img.labels, ELECTRONIC_PHASES).mean())})
    return replace(img, stats=stats)


def _case_image(case: CaseSpec, kind: str) -> tuple[VoxelImage, BoxFill, Realization]:
    """The phase image of ``case.box`` for one cathode before its separator layer, its fill
    rule and its realization (periodic sides: on the torus)."""
    box: BoxSpec = case.box
    real, origin, shape = _case_box(case, kind)
    h = box.voxel_um
    if kind == "gradient":
        g = case.gradient
        return _voxelize(real, origin, shape, h, coating_um=g.coating_thickness_um,
                         fill="gradient", fill_min=g.fill_min, lean_zone_um=g.lean_zone_um,
                         spe_share=1.0, correlation_um=g.fill_correlation_um, seed=box.seed,
                         periodic=box.sides == "periodic")
    hs = case.homogeneous
    d = derive_homogeneous(hs)
    try:
        return _voxelize(real, origin, shape, h, coating_um=hs.spe_film_thickness_um,
                         fill="share", fill_min=1.0, lean_zone_um=0.0,
                         spe_share=d.spe_volume_fraction
                         / (d.spe_volume_fraction + d.void_volume_fraction),
                         correlation_um=hs.peo_cluster_correlation_um, seed=box.seed,
                         periodic=box.sides == "periodic", strict_share=True)
    except FilmTooThickError as e:
        raise SpecError(
            f"homogeneous.spe_film_thickness_um = {hs.spe_film_thickness_um:g}: at "
            f"box.voxel_um = {h:g} the film (at least one voxel) takes "
            f"{e.coated_fraction:.2f} of the pore, more than the SPE share {e.share:.2f}; "
            f"use finer voxels or a thinner film") from None


def box_section_source(case: CaseSpec, kind: str) -> tuple[Realization, BoxFill]:
    """The realization of ``case.box`` (periodic sides: on the torus) and the fill rule of
    its phase image, for 2D sections cut from the box (``section.method = "box"``)."""
    _, rule, real = _case_image(case, kind)
    return real, rule


def voxelize_case(case: CaseSpec, kind: str) -> VoxelImage:
    """The voxel image of ``case.box`` for one cathode (``kind`` gradient or homogeneous)."""
    h = case.box.voxel_um
    img, _, real = _case_image(case, kind)
    img = _with_separator(case, kind, img, h)
    fr = img.fractions()
    zc0, zc1 = img.composite_z_um
    comp = img.labels[:, :, round(zc0 / h):round(zc1 / h)]
    n = max(1, comp.size)
    stats = {f"{p.label}_fraction": fr[p.label] for p in Phase}
    stats.update({"composite_nanowire_fraction": float(np.count_nonzero(comp == 1)) / n,
                  "voxels_count": float(img.labels.size),
                  "electronic_fraction": float(np.isin(img.labels, ELECTRONIC_PHASES).mean()),
                  "target_nanowire_fraction": real.target_fractions["nanowire"]})
    return VoxelImage(img.labels, img.voxel_um, img.origin_um, img.kind, img.composite_z_um,
                      stats)


def write_image(image: VoxelImage, path: str | Path) -> list[Path]:
    """Write ``<path>.tif`` (uint8 labels, z-stack of (y, x) pages, voxel size in um in the
    ImageJ metadata) and ``<path>.npy`` ((x, y, z) array). Returns the paths written."""
    import tifffile

    base = Path(path)
    npy = base.with_suffix(".npy")
    tif = base.with_suffix(".tif")
    np.save(npy, image.labels)
    stack = np.ascontiguousarray(np.transpose(image.labels, (2, 1, 0)))  # (z, y, x)
    res = 1.0 / image.voxel_um
    tifffile.imwrite(tif, stack, imagej=True, resolution=(res, res),
                     metadata={"spacing": image.voxel_um, "unit": "um", "axes": "ZYX"})
    return [tif, npy]


#: width (voxels) of the Gaussian whose derivative estimates the surface normal of a phase:
#: the face-weighted area of a round wire (a torus in random orientations) is 1.2-2.2 %
#: low at a tube radius of 2 voxels and within 0.5 % from 4 voxels on, where the bare voxel
#: faces give about 1.5x (tests/test_voxel_surface.py); thinner wires are oriented poorly
#: (1-6 % low at a radius of 1 voxel, 8-34 % at 0.5)
NORMAL_SIGMA_VOXELS = 1.5
#: below this length (per voxel) the estimated normal counts as vanishing (weight 1); at a
#: resolved surface it is about 0.2
NORMAL_FLOOR = 1e-4


def surface_normals(labels: np.ndarray, phases: list[int] | tuple[int, ...], *,
                    periodic: bool = False, sigma_voxels: float = NORMAL_SIGMA_VOXELS,
                    box: tuple[tuple[int, int], ...] | None = None) -> np.ndarray:
    """Outward surface direction of the region ``labels in phases`` at every voxel centre,
    array (3, nx, ny, nz) float32, not normalized: minus the gradient of the region's
    indicator smoothed by a Gaussian of ``sigma_voxels`` (per voxel). ``periodic``: the image
    wraps in x and y (otherwise the edge voxels extend outwards). Where a voxel face
    separates the region from the rest, the mean of the two voxels' values points along the
    estimated normal of the true surface there.

    ``box``: only the voxels with index ``lo <= i < hi`` per axis (``((lo, hi),) * 3``), the
    same values as the whole image's, from that block and a margin of the Gaussian's reach
    (memory of the block, not of the image: every rank of a distributed mesh asks for its
    own cells)."""
    shape = labels.shape
    box = box if box is not None else tuple((0, n) for n in shape)
    reach = int(4.0 * sigma_voxels + 0.5) + 1  # scipy's kernel radius (truncate = 4) + 1
    index = []
    for axis, (lo, hi) in enumerate(box):
        i = np.arange(lo - reach, hi + reach)
        index.append(i % shape[axis] if periodic and axis < 2
                     else np.clip(i, 0, shape[axis] - 1))
    block = np.isin(labels[np.ix_(*index)], phases).astype(np.float32)
    inner = tuple(slice(reach, reach + hi - lo) for lo, hi in box)
    out = np.empty((3, *(hi - lo for lo, hi in box)), dtype=np.float32)
    for axis in range(3):
        order = [1 if k == axis else 0 for k in range(3)]
        out[axis] = ndimage.gaussian_filter(block, sigma_voxels, order=order,
                                            mode="nearest")[inner]
    out *= -1.0
    return out


def face_pairs() -> list[tuple[int, tuple[slice, ...], tuple[slice, ...]]]:
    """(axis, a, b) index pairs of face-neighbour voxels inside a 3D image, each face both
    ways round: ``x[a][i]`` and ``x[b][i]`` share a face normal to ``axis`` (never across a
    periodic seam); b lies at index + 1 along ``axis`` in the first pair of each axis, at
    index - 1 in the second."""
    pairs = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        pairs += [(axis, tuple(lo), tuple(hi)), (axis, tuple(hi), tuple(lo))]
    return pairs


def interface_faces(labels: np.ndarray, phases_a: list[int] | tuple[int, ...],
                    phases_b: list[int] | tuple[int, ...]
                    ) -> list[tuple[int, int, np.ndarray]]:
    """The voxel faces between a voxel of ``phases_a`` and a face neighbour of
    ``phases_b`` (inside the image: no wrap), as (axis, side, indices (n, 3) of the a-voxel):
    side +1 when the b-voxel lies at index + 1 along ``axis``, -1 at index - 1."""
    a_mask = np.isin(labels, phases_a)
    b_mask = np.isin(labels, phases_b)
    out = []
    for axis, a, b in face_pairs():
        side = 1 if a[axis].start in (None, 0) else -1
        idx = np.argwhere(a_mask[a] & b_mask[b])
        if side == -1:
            idx[:, axis] += 1
        out.append((axis, side, idx))
    return out


def face_area_weights(normals: np.ndarray, axis: int, side: int, idx: np.ndarray
                      ) -> np.ndarray:
    """|cos| of the angle between each face's normal (``axis``) and the estimated surface
    normal there (the mean of :func:`surface_normals` over the face's two voxels); 1 where
    the estimate vanishes (a feature too thin to orient)."""
    other = idx.copy()
    other[:, axis] += side
    return face_cosines(0.5 * (normals[:, idx[:, 0], idx[:, 1], idx[:, 2]]
                               + normals[:, other[:, 0], other[:, 1], other[:, 2]]), axis)


def face_cosines(mean: np.ndarray, axis: int) -> np.ndarray:
    """|cos| between the axis ``axis`` and the directions ``mean`` (3, ...): the weights of
    faces normal to ``axis`` whose estimated surface normal is ``mean``; 1 where its length
    is below ``NORMAL_FLOOR``."""
    mean = np.asarray(mean, dtype=np.float64)
    size = np.sqrt((mean ** 2).sum(axis=0))
    return np.where(size > NORMAL_FLOOR, np.abs(mean[axis]) / np.maximum(size, NORMAL_FLOOR),
                    1.0)


def interface_area_um2(labels: np.ndarray, voxel_um: float,
                       phases_a: list[int] | tuple[int, ...],
                       phases_b: list[int] | tuple[int, ...], *,
                       weighted: bool = True, periodic: bool = False) -> float:
    """Area (um2) of the surface between two groups of phases on an image: the voxel faces
    between them, each weighted (``weighted``) by the cosine between its normal and the
    region's estimated surface normal (:func:`surface_normals` of ``phases_a``).

    The voxel faces of a surface step around it: their area tends to
    (|n_x| + |n_y| + |n_z|) times the true area (1.27x a round wire along an axis, about 1.5x
    for random orientations), however small the voxels. The faces normal to axis k cover
    the surface's projection on the plane normal to k once, so weighting each by |n_k|
    recovers the area as the voxels shrink (the face-based estimators of digital geometry,
    e.g. Windreich, Kiryati, Lohmann, Pattern Recognit. 36 (2003) 2531,
    doi:10.1016/S0031-3203(03)00173-0). Faces across a periodic seam are not counted."""
    faces = interface_faces(labels, phases_a, phases_b)
    if not weighted:
        return float(sum(len(idx) for _, _, idx in faces)) * voxel_um ** 2
    normals = surface_normals(labels, phases_a, periodic=periodic)
    total = sum(float(face_area_weights(normals, axis, side, idx).sum())
                for axis, side, idx in faces)
    return total * voxel_um ** 2
