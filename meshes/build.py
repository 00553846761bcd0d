"""Spec -> tagged 2D section mesh: the one entry point of :mod:`meshes` for the solvers.

Runs on one process (Gmsh is serial); :mod:`meshes.adapter` distributes the result.
The result's ``phase`` array holds the final phase tag of every triangle (MODEL.md tags),
after the pore space has been split into SPE and void by the fill field.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely

from meshes.fill import gaussian_field, gradient_fill, label_pore_cells
from meshes.gmsh2d import TriMesh, mesh_section
from meshes.realization import realize_gradient, realize_homogeneous
from meshes.section import Region, Section, add_separator, assemble_section, cut_realization
from meshes.spec import CaseSpec, SpecError, derive_gradient, derive_homogeneous
from meshes.tags import Phase
from meshes.voxels import BoxFill, box_section_source

__all__ = ["KINDS", "SectionMesh", "build_section"]

KINDS = ("gradient", "homogeneous")


@dataclass(frozen=True)
class SectionMesh:
    """A tagged triangle mesh of one cathode section (um), with build statistics."""

    kind: str
    points_um: np.ndarray
    cells: np.ndarray
    phase: np.ndarray
    width_um: float
    thickness_um: float
    composite_z_um: tuple[float, float]
    layer_z_um: tuple[float, ...]
    stats: dict[str, float] = field(default_factory=dict)

    def cell_areas_um2(self) -> np.ndarray:
        p = self.points_um[self.cells]
        d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        return 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])

    def area_fractions(self, z_range_um: tuple[float, float] | None = None) -> dict[str, float]:
        """Area fraction of each phase (within a z range of cell centroids, if given)."""
        a = self.cell_areas_um2()
        keep = np.ones(len(a), dtype=bool)
        if z_range_um is not None:
            zc = self.points_um[self.cells][:, :, 1].mean(axis=1)
            keep = (zc >= z_range_um[0]) & (zc <= z_range_um[1])
        total = float(a[keep].sum())
        return {p.label: float(a[keep & (self.phase == p)].sum()) / total for p in Phase}


def _sticks_section(case: CaseSpec, kind: str) -> Section:
    """2D stick-network analogue: wires as strips of the true diameter lying in the plane."""
    from meshes.sticks import random_sticks

    sec = case.section
    seed = sec.seed
    if kind == "gradient":
        g = case.gradient
        nw, phi = g.nanowire, derive_gradient(g).nanowire_volume_fraction_composite
        z0, z1 = 0.0, g.thickness_um - g.skin_thickness_um
        thickness, coating, contact = g.thickness_um, g.coating_thickness_um, g.contact_width_um
        layers: tuple[float, ...] = (z1,) if g.skin_thickness_um > 0 else ()
        cb_phi, cb_d = 0.0, 0.0
        rgo_phi = derive_gradient(g).rgo_volume_fraction_composite
        sheet, sheet_t = g.rgo_sheet_size_um, g.rgo_sheet_thickness_um
    else:
        h = case.homogeneous
        d = derive_homogeneous(h)
        nw, phi = h.nanowire, d.nanowire_volume_fraction
        z0, z1 = h.al_foil_thickness_um, h.al_foil_thickness_um + d.thickness_um
        thickness, coating, contact = z1, h.spe_film_thickness_um, h.contact_width_um
        layers = (z0,)
        cb_phi, cb_d = d.carbon_black_volume_fraction, h.carbon_black_aggregate_diameter_um
        rgo_phi = d.rgo_volume_fraction
        sheet, sheet_t = h.rgo_sheet_size_um, h.rgo_sheet_thickness_um
    box = (sec.width_um, z1 - z0)
    spread = None if nw.orientation == "isotropic" else nw.tilt_sd_deg
    mean_len = 0.5 * (nw.length_min_um + nw.length_max_um)
    # Boolean model in 2D: covered fraction 1 - exp(-n a), a = d L the strip area.
    density = -math.log1p(-phi) / (nw.diameter_um * mean_len)
    wires = random_sticks(density_per_um2=density, length_um=(nw.length_min_um, nw.length_max_um),
                          box_um=box, seed=seed, angle_spread_deg=spread)
    objects: dict[Region, list[shapely.Geometry]] = {}

    def strips(st: object, width: float) -> list[shapely.Geometry]:
        lines = shapely.linestrings(np.stack([st.start_um, st.end_um], axis=1)  # type: ignore[attr-defined]
                                    + np.array([0.0, z0]))
        return list(shapely.buffer(lines, 0.5 * width, cap_style="flat"))

    objects[Region.NANOWIRE] = strips(wires, nw.diameter_um)
    flakes = random_sticks(density_per_um2=-math.log1p(-rgo_phi) / (sheet * sheet_t),
                           length_um=sheet, box_um=box, seed=seed + 100003,
                           angle_spread_deg=spread)
    objects[Region.RGO] = strips(flakes, sheet_t)
    if cb_phi > 0:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
        n = rng.poisson(-math.log1p(-cb_phi) / (math.pi * cb_d**2 / 4) * box[0] * box[1])
        centers = rng.uniform([0.0, z0], [box[0], z1], size=(n, 2))
        objects[Region.CARBON_BLACK] = list(shapely.buffer(shapely.points(centers), cb_d / 2,
                                                           quad_segs=6))
    return assemble_section(
        width_um=sec.width_um, thickness_um=thickness, composite_z_um=(z0, z1),
        layer_z_um=layers, objects=objects, coating_thickness_um=coating,
        contact_width_um=contact, grid_um=_grid(case), foil=kind == "homogeneous")


#: relative tolerance of the realised nanowire area fraction against the derived target
CALIBRATION_TOL = 0.02


def _calibrated(make: Callable[[float, bool], Section], target: float, max_iter: int = 5
                ) -> tuple[Section, dict[str, float]]:
    """Section whose nanowire area fraction (composite layer) matches the derived volume
    fraction (Delesse: the area fraction of a section estimates the volume fraction).

    The Boolean-model density n = -ln(1 - phi) / v is exact only for independent, unclipped
    objects; clustering (tape-cast agglomerates), clipping at the layer faces and the contact
    closing shift the realised fraction by 5-20 %. The wire density is rescaled (first step by
    the Boolean relation, then secant steps) until the section matches within CALIBRATION_TOL;
    realizations are nested in the density (more wires, the others unchanged), so the
    fraction is monotone and the update converges unless one object is a large share of a
    small section: then the closest trial is kept, and both numbers are reported. The first
    trial skips the SPE shell (``make(factor, False)``): the nanowire region does not depend
    on it.
    """
    factor = 1.0
    history: list[tuple[float, float]] = []
    best: tuple[float, float, float, Section | None] | None = None
    for iteration in range(max_iter):
        full = iteration > 0
        trial = make(factor, full)
        z0, z1 = trial.composite_z_um
        got = trial.regions[Region.NANOWIRE].area / (trial.width_um * (z1 - z0))
        err = abs(got / target - 1.0)
        if best is None or err < best[0]:
            best = (err, got, factor, trial if full else None)
        if err <= CALIBRATION_TOL or not 0.0 < got < 1.0:
            break
        history.append((factor, got))
        (f0, g0), (f1, g1) = history[-2] if len(history) > 1 else (0.0, 0.0), history[-1]
        boolean = f1 * math.log1p(-target) / math.log1p(-g1)
        # Secant on the monotone fraction(factor) once two trials exist; Boolean step first.
        secant = f1 + (target - g1) * (f1 - f0) / (g1 - g0) if len(history) > 1 and g1 != g0 \
            else boolean
        factor = secant if secant > 0 else boolean
    assert best is not None
    _, got, factor, section = best
    return (section if section is not None else make(factor, True)), {
        "nanowire_area_fraction_target": target,
        "nanowire_area_fraction_realized": got,
        "nanowire_density_factor": factor}


def _grid(case: CaseSpec) -> float:
    # Snapping grid: outlines deviate from the exact cut by at most 2 grid = 0.1 x fine size.
    return 0.05 * case.section.mesh_size_fine_um


def _areas_um2(tri: TriMesh, mask: np.ndarray) -> np.ndarray:
    p = tri.points_um[tri.cells[mask]]
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return np.asarray(0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]))


def _pore_fill(case: CaseSpec, kind: str, section: Section, tri: TriMesh, centroids: np.ndarray,
               pore: np.ndarray, box_fill: BoxFill | None) -> np.ndarray:
    """True where a pore triangle (centroids (n, 2), x and z) is SPE."""
    sec = case.section
    if box_fill is not None:
        # the box's own rule on the plane y = y0: the section and the box's voxel image
        # split the pore alike wherever they share it
        y0 = sec.plane_y_fraction * case.box.size_um
        return box_fill.spe(np.column_stack([centroids[:, 0], np.full(len(centroids), y0),
                                             centroids[:, 1]]))
    area = None
    if kind == "gradient":
        g = case.gradient
        corr = g.fill_correlation_um
        fill: np.ndarray | float = gradient_fill(centroids[:, 1],
                                                 lean_zone_um=g.lean_zone_um,
                                                 fill_min=g.fill_min)
    else:
        h = case.homogeneous
        d = derive_homogeneous(h)
        corr = h.peo_cluster_correlation_um
        share = d.spe_volume_fraction / (d.spe_volume_fraction + d.void_volume_fraction)
        area = _areas_um2(tri, pore)
        # the wetting film (the coating region, SPE) is part of the SPE share of the pore
        film = float(_areas_um2(tri, tri.region == Region.COATING).sum())
        rest = float(area.sum())
        fill = share if film == 0.0 else (share * (rest + film) - film) / rest if rest > 0 \
            else 0.0
        if fill < 0.0:
            raise SpecError(
                f"homogeneous.spe_film_thickness_um = {h.spe_film_thickness_um:g}: the film "
                f"takes {film / (rest + film):.2f} of the pore of this section, more than the "
                f"SPE share {share:.2f}; must be thinner")
    # The field lives on the cathode box (without the separator): the same microstructure
    # with and without a separator layer.
    cathode_box = (section.width_um, section.thickness_um - section.separator_um)
    gfield = gaussian_field(centroids, cathode_box, corr, sec.seed)
    return label_pore_cells(gfield, fill, area)


def _box_section(case: CaseSpec, kind: str) -> tuple[Section, BoxFill, dict[str, float]]:
    """The plane y = ``section.plane_y_fraction`` x ``box.size_um`` of the full-thickness box
    of ``case.box`` (its realization, periodic sides on the torus, uncalibrated) and the fill
    rule of the box's voxel image."""
    real, rule = box_section_source(case, kind)
    if kind == "gradient":
        coating, contact = case.gradient.coating_thickness_um, case.gradient.contact_width_um
    else:
        coating, contact = (case.homogeneous.spe_film_thickness_um,
                            case.homogeneous.contact_width_um)
    section = cut_realization(real, y_um=case.section.plane_y_fraction * case.box.size_um,
                              coating_thickness_um=coating, contact_width_um=contact,
                              grid_um=_grid(case))
    z0, z1 = section.composite_z_um
    got = section.regions[Region.NANOWIRE].area / (section.width_um * (z1 - z0))
    target = real.target_fractions["nanowire"]
    return section, rule, {"nanowire_area_fraction_target": target,
                           "nanowire_area_fraction_realized": got,
                           "nanowire_density_factor": 1.0}


def build_section(case: CaseSpec, kind: str, *, threads: int = 1) -> SectionMesh:
    """Build the tagged section mesh of one cathode (``kind`` in :data:`KINDS`).

    ``threads > 1`` lets Gmsh mesh surfaces in parallel: about 15 % faster, but on busy cores
    the mesh can differ by a few triangles from run to run; the cases use 1."""
    if kind not in KINDS:
        raise ValueError(f"kind = {kind!r}: must be one of {list(KINDS)}")
    sec = case.section
    film = case.homogeneous.spe_film_thickness_um
    if kind == "homogeneous" and 0.0 < film < 0.5 * sec.mesh_size_fine_um:
        # thinner pieces of the film would be merged into their neighbours as slivers
        raise SpecError(f"section.mesh_size_fine_um = {sec.mesh_size_fine_um:g}: must be <= "
                        f"{2 * film:g} (2 x homogeneous.spe_film_thickness_um) to resolve "
                        f"the wetting film")
    t0 = time.perf_counter()
    window = (0.0, sec.width_um, 0.0, 0.0)
    calibration: dict[str, float] = {}
    box_fill: BoxFill | None = None
    if sec.method == "sticks":
        section = _sticks_section(case, kind)
    elif sec.method == "box":
        section, box_fill, calibration = _box_section(case, kind)
    elif kind == "gradient":
        g = case.gradient
        section, calibration = _calibrated(
            lambda f, full: cut_realization(
                realize_gradient(g, window, sec.seed, f), y_um=0.0,
                coating_thickness_um=g.coating_thickness_um if full else 0.0,
                contact_width_um=g.contact_width_um, grid_um=_grid(case)),
            derive_gradient(g).nanowire_volume_fraction_composite)
    else:
        h = case.homogeneous
        section, calibration = _calibrated(
            lambda f, full: cut_realization(
                realize_homogeneous(h, window, sec.seed, f), y_um=0.0,
                coating_thickness_um=h.spe_film_thickness_um if full else 0.0,
                contact_width_um=h.contact_width_um, grid_um=_grid(case)),
            derive_homogeneous(h).nanowire_volume_fraction)
    section = add_separator(section, sec.separator_um)
    t_geom = time.perf_counter() - t0
    tri = mesh_section(section, size_fine_um=sec.mesh_size_fine_um,
                       size_coarse_um=sec.mesh_size_coarse_um,
                       threads=threads)

    centroids = tri.points_um[tri.cells].mean(axis=1)
    phase = np.empty(len(tri.cells), dtype=np.int32)
    direct = {Region.NANOWIRE: Phase.NANOWIRE, Region.RGO: Phase.RGO,
              Region.CARBON_BLACK: Phase.CARBON_BLACK, Region.AL_FOIL: Phase.AL_FOIL,
              Region.COATING: Phase.SPE, Region.SKIN: Phase.SPE,
              Region.SEPARATOR: Phase.SEPARATOR}
    for region, ph in direct.items():
        phase[tri.region == region] = ph
    pore = tri.region == Region.PORE
    spe = _pore_fill(case, kind, section, tri, centroids[pore], pore, box_fill)
    phase[np.nonzero(pore)[0]] = np.where(spe, Phase.SPE, Phase.VOID)

    stats = {"geometry_time_s": t_geom, "mesh_time_s": tri.mesh_time_s,
             "cells_count": float(len(tri.cells)), "vertices_count": float(len(tri.points_um)),
             "faces_count": float(tri.n_faces), "curves_count": float(tri.n_curves),
             "absorbed_faces_count": float(tri.n_absorbed),
             "min_quality_factor": tri.min_quality}
    stats.update({f"{k}_sections_count": float(v) for k, v in section.n_objects.items()})
    stats.update(calibration)
    return SectionMesh(kind=kind, points_um=tri.points_um, cells=tri.cells, phase=phase,
                       width_um=section.width_um, thickness_um=section.thickness_um,
                       composite_z_um=section.composite_z_um, layer_z_um=section.layer_z_um,
                       stats=stats)
