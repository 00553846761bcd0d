"""2D (x, z) sections: polygons of each phase, from a plane cut of a 3D realization or from a
2D stick-network analogue.

The plane y = y_cut cuts a cylinder in an ellipse clipped by the two end-cap planes (a stripe
when the wire lies almost in the plane), a flake in a thin rectangle and a sphere in a disc.
With u = (x - c_x, z - c_z), the in-plane axis direction a = (d_x, d_z) (|a| = alpha) and
b = d_y, the cut of the infinite cylinder of radius r is

    n^2 + b^2 (s - s0)^2 <= r^2,   s = u . a/alpha,  n = u . a_perp,  s0 = -c_y alpha / b,

and the end caps restrict the axial coordinate alpha s - c_y b to [-L/2, L/2].

Morphology (contacts always mesh): the solid union is *closed* (dilate then erode by half the
minimum contact width), so contacts narrower than ``contact_width_um`` are widened to it and
gaps narrower than it are bridged; all coordinates are snapped to a grid far below the mesh
size, so no sliver edges reach Gmsh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from meshes.realization import Realization, Sheets, Spheres, Wires
from meshes.tags import Phase

__all__ = [
    "Region", "Section", "add_separator", "assemble_section", "cut_realization"]

#: points per half ellipse outline; 2 x 12 = 24-gon for a full cross-section
_HALF_POINTS = 12


class Region(IntEnum):
    """Labels of the conforming partition, before the pore space is split by the fill field."""

    NANOWIRE = int(Phase.NANOWIRE)
    RGO = int(Phase.RGO)
    CARBON_BLACK = int(Phase.CARBON_BLACK)
    AL_FOIL = int(Phase.AL_FOIL)
    COATING = 103  # SPE shell around the solids (always SPE)
    PORE = 104  # remaining space in the composite layer: SPE or void by the fill field
    SKIN = 105  # pure-SPE layer on top (gradient membrane)
    SEPARATOR = int(Phase.SEPARATOR)  # solid-electrolyte separator layer above the cathode


@dataclass(frozen=True)
class Section:
    """Region geometries of a (x, z) section of [0, width] x [0, thickness] (um).

    The geometries may overlap; a point belongs to the first region of ``priority`` that
    contains it, and to PORE (inside the composite layer) or SKIN/AL_FOIL (outside) otherwise.
    """

    width_um: float
    thickness_um: float
    regions: dict[Region, BaseGeometry]
    composite_z_um: tuple[float, float]
    layer_z_um: tuple[float, ...]
    n_objects: dict[str, int]
    #: thickness of the separator layer on top (0: none); thickness_um includes it
    separator_um: float = 0.0

    #: classification order: solids first, then the coating shell
    priority: tuple[Region, ...] = (Region.NANOWIRE, Region.RGO, Region.CARBON_BLACK,
                                    Region.COATING)


def _wire_cuts(w: Wires, y: float) -> list[np.ndarray]:
    c = w.centers_um.copy()
    c[:, 1] -= y
    d = w.axes
    r = w.radii_um
    half = 0.5 * w.lengths_um
    b = d[:, 1]
    alpha = np.hypot(d[:, 0], d[:, 2])
    # Quick reject: the cylinder's extent in y.
    extent = half * np.abs(b) + r * alpha
    keep = np.abs(c[:, 1]) < extent
    out: list[np.ndarray] = []
    idx = np.nonzero(keep)[0]
    if len(idx) == 0:
        return out
    c, d, r, half, b, alpha = c[idx], d[idx], r[idx], half[idx], b[idx], alpha[idx]
    b_eff = np.where(np.abs(b) < 1e-6, np.where(b < 0, -1e-6, 1e-6), b)
    perp = alpha < 1e-9
    safe_alpha = np.where(perp, 1.0, alpha)
    ahat = np.where(perp[:, None], np.array([1.0, 0.0]),
                    np.stack([d[:, 0], d[:, 2]], axis=1) / safe_alpha[:, None])
    nhat = np.stack([-ahat[:, 1], ahat[:, 0]], axis=1)
    s0 = np.where(perp, 0.0, -c[:, 1] * alpha / b_eff)
    big_a = r / np.abs(b_eff)
    # End caps: alpha s - c_y b in [-half, half].
    s_lo = np.where(perp, -np.inf, (-half + c[:, 1] * b) / safe_alpha)
    s_hi = np.where(perp, np.inf, (half + c[:, 1] * b) / safe_alpha)
    cap_ok = ~perp | (np.abs(c[:, 1] * b) <= half)
    cos_lo = np.clip((s_lo - s0) / big_a, -1.0, 1.0)
    cos_hi = np.clip((s_hi - s0) / big_a, -1.0, 1.0)
    th_a = np.arccos(cos_hi)  # smaller angle <-> larger s
    th_b = np.arccos(cos_lo)
    ok = cap_ok & (th_b - th_a > 1e-9)
    t = np.linspace(0.0, 1.0, _HALF_POINTS)
    for i in np.nonzero(ok)[0]:
        th = th_a[i] + (th_b[i] - th_a[i]) * t
        s = s0[i] + big_a[i] * np.cos(th)
        n = r[i] * np.sin(th)
        ss = np.concatenate([s, s[::-1]])
        nn = np.concatenate([n, -n[::-1]])
        xy = (np.array([c[i, 0], c[i, 2]]) + ss[:, None] * ahat[i] + nn[:, None] * nhat[i])
        out.append(xy)
    return out


def _sheet_cuts(sh: Sheets, y: float) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for c0, m, dia in zip(sh.centers_um, sh.normals, sh.diameters_um, strict=True):
        c = c0.copy()
        c[1] -= y
        g = np.array([0.0, 1.0, 0.0]) - m[1] * m
        gn = np.linalg.norm(g)
        if gn < 1e-6:
            continue  # flake parallel to the cut plane: measure zero
        dist = abs(c[1]) / gn
        if dist >= 0.5 * dia:
            continue
        p = c - (c[1] / gn) * (g / gn)
        e = np.cross(m, g / gn)
        e2 = np.array([e[0], e[2]])
        e2 /= np.linalg.norm(e2)
        mxz = math.hypot(m[0], m[2])
        if mxz < 1e-6:
            continue
        h = math.sqrt((0.5 * dia) ** 2 - dist**2)
        wdt = 0.5 * sh.thickness_um / mxz
        nrm = np.array([-e2[1], e2[0]])
        ctr = np.array([p[0], p[2]])
        out.append(np.array([ctr - h * e2 - wdt * nrm, ctr + h * e2 - wdt * nrm,
                             ctr + h * e2 + wdt * nrm, ctr - h * e2 + wdt * nrm]))
    return out


def _sphere_cuts(sp: Spheres, y: float) -> list[BaseGeometry]:
    dy = sp.centers_um[:, 1] - y
    rr = sp.radii_um**2 - dy**2
    keep = rr > 0
    pts = shapely.points(sp.centers_um[keep][:, [0, 2]])
    return list(shapely.buffer(pts, np.sqrt(rr[keep]), quad_segs=6))


def _closed_union(polys: list[BaseGeometry], grow: float, close: float) -> BaseGeometry:
    """Union of the polygons dilated by ``grow``, morphologically closed with radius ``close``.

    Dilation distributes over union, so dilating each small polygon and uniting them equals
    dilating the union, at a fraction of the cost; only the final erosion is global.
    """
    if not polys:
        return shapely.Polygon()
    arr = np.asarray(polys, dtype=object)
    arr = np.where(shapely.is_valid(arr), arr, shapely.make_valid(arr))
    if grow + close > 0:
        arr = shapely.buffer(arr, grow + close, quad_segs=3)
    u = shapely.union_all(arr)
    if close > 0:
        u = u.buffer(-close, quad_segs=3)
    return u


def _finish(g: BaseGeometry, clip: BaseGeometry, grid: float) -> BaseGeometry:
    """Clip, simplify (deviation <= 2 grid), and snap to the grid (no sliver edges)."""
    g = g.intersection(clip)
    g = shapely.simplify(g, 2 * grid)
    g = shapely.set_precision(g, grid)
    return shapely.make_valid(g) if not g.is_valid else g


def cut_realization(real: Realization, *, y_um: float, coating_thickness_um: float,
                    contact_width_um: float, grid_um: float) -> Section:
    """Cut the realization with the plane y = y_um into region geometries."""
    x0 = real.window_um[0]
    shift = np.array([x0, 0.0])
    wires = [shapely.Polygon(p - shift) for p in _wire_cuts(real.wires, y_um)]
    sheets = [shapely.Polygon(p - shift) for p in _sheet_cuts(real.sheets, y_um)]
    spheres = [shapely.affinity.translate(g, -x0, 0.0)
               for g in _sphere_cuts(real.spheres, y_um)]
    return assemble_section(
        width_um=real.window_um[1] - x0, thickness_um=real.thickness_um,
        composite_z_um=real.composite_z_um, layer_z_um=real.layer_z_um,
        objects={Region.NANOWIRE: wires, Region.RGO: sheets, Region.CARBON_BLACK: spheres},
        coating_thickness_um=coating_thickness_um, contact_width_um=contact_width_um,
        grid_um=grid_um, foil=real.kind == "homogeneous",
    )


def assemble_section(*, width_um: float, thickness_um: float, composite_z_um: tuple[float, float],
                     layer_z_um: tuple[float, ...], objects: dict[Region, list[BaseGeometry]],
                     coating_thickness_um: float, contact_width_um: float, grid_um: float,
                     foil: bool) -> Section:
    """Unite each kind of object (closed by half the contact width) and grow the SPE shell.

    Outer dimensions and layer levels are rounded to the snapping grid (a change below
    ``grid_um``), so that snapped region edges coincide exactly with the box and layer lines.
    """

    def snap(v: float) -> float:
        # GEOS's own rounding (x * scale rounded, / scale), so box and region edges agree
        # to the last bit; round(v / grid) * grid can differ by one ulp.
        return float(shapely.get_coordinates(shapely.set_precision(shapely.Point(v, v),
                                                                   grid_um))[0, 0])

    width_um, thickness_um = snap(width_um), snap(thickness_um)
    z0, z1 = snap(composite_z_um[0]), snap(composite_z_um[1])
    composite_z_um = (z0, z1)
    layer_z_um = tuple(snap(z) for z in layer_z_um)
    composite = shapely.box(0.0, z0, width_um, z1)
    half = 0.5 * contact_width_um
    regions: dict[Region, BaseGeometry] = {}
    for region, polys in objects.items():
        regions[region] = _finish(_closed_union(polys, 0.0, half), composite, grid_um)
    if coating_thickness_um > 0:
        every = [p for polys in objects.values() for p in polys]
        shell = _closed_union(every, coating_thickness_um, half)
        regions[Region.COATING] = _finish(shell, composite, grid_um)
    if foil and z0 > 0:
        regions[Region.AL_FOIL] = shapely.box(0.0, 0.0, width_um, z0)
    return Section(width_um=width_um, thickness_um=thickness_um, regions=regions,
                   composite_z_um=composite_z_um, layer_z_um=layer_z_um,
                   n_objects={r.name.lower(): len(p) for r, p in objects.items()})


def add_separator(section: Section, thickness_um: float) -> Section:
    """The same section with a separator layer of ``thickness_um`` on top of the cathode.

    The cathode's top face becomes a layer line (the cathode/separator interface) and the
    section's top face the separator/anode face.
    """
    if thickness_um <= 0:
        return section
    t = section.thickness_um
    regions = dict(section.regions)
    regions[Region.SEPARATOR] = shapely.box(0.0, t, section.width_um, t + thickness_um)
    return replace(section, thickness_um=t + thickness_um, regions=regions,
                   layer_z_um=(*section.layer_z_um, t),
                   separator_um=section.separator_um + thickness_um)
