"""3D random realizations of both cathodes: wires, rGO sheets and carbon-black spheres.

One realization (spec + seed + window) is the single source of geometry: 2D sections are cut
from it (:mod:`meshes.section`), and later 3D boxes and voxel images use the same objects.

Placement is a Boolean model: objects may interpenetrate, which is how touching wires and
sheets are represented (the contact is the overlap). The number density is set so that the
*union* of the objects has the target volume fraction phi: for a Boolean model the covered
fraction is 1 - exp(-n v), hence n = -ln(1 - phi) / E[v] (Chiu, Stoyan, Kendall, Mecke,
Stochastic Geometry and its Applications, 3rd ed., Wiley 2013, ch. 3).

Coordinates in um; z is through the thickness (z = 0 at the current-collector side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from meshes.spec import (
    GradientSpec,
    HomogeneousSpec,
    NanowireSpec,
    derive_gradient,
    derive_homogeneous,
)

__all__ = [
    "Realization",
    "Sheets",
    "Spheres",
    "Wires",
    "realize_gradient",
    "realize_homogeneous",
]


@dataclass(frozen=True)
class Wires:
    """Cylinders: centre (n, 3) um, unit axis (n, 3), length (n,) um, radius (n,) um."""

    centers_um: np.ndarray
    axes: np.ndarray
    lengths_um: np.ndarray
    radii_um: np.ndarray
    #: (n, 3) point that places each wire in a periodic box (its agglomerate's centre, so a
    #: periodic box keeps whole agglomerates); None: the wire's own centre
    anchors_um: np.ndarray | None = None

    def anchors(self) -> np.ndarray:
        return self.centers_um if self.anchors_um is None else self.anchors_um


@dataclass(frozen=True)
class Sheets:
    """Thin discs (rGO flakes): centre (n, 3), unit normal (n, 3), diameter (n,), thickness."""

    centers_um: np.ndarray
    normals: np.ndarray
    diameters_um: np.ndarray
    thickness_um: float
    #: as :attr:`Wires.anchors_um`
    anchors_um: np.ndarray | None = None

    def anchors(self) -> np.ndarray:
        return self.centers_um if self.anchors_um is None else self.anchors_um


@dataclass(frozen=True)
class Spheres:
    """Carbon-black aggregates: centre (n, 3) um, radius (n,) um."""

    centers_um: np.ndarray
    radii_um: np.ndarray


@dataclass(frozen=True)
class Realization:
    """All solid objects of one cathode realization and its layer structure along z.

    ``window_um`` = (x0, x1, y0, y1) is the lateral window the realization is valid in
    (objects were generated in an enlarged window so that density is uniform up to its edge).
    ``composite_z_um`` = (z0, z1) bounds the solid objects; ``thickness_um`` is the full
    height of the structure (including skin and foil layers).
    """

    kind: str
    window_um: tuple[float, float, float, float]
    composite_z_um: tuple[float, float]
    thickness_um: float
    wires: Wires
    sheets: Sheets
    spheres: Spheres
    #: z levels of layer boundaries inside (0, thickness): skin bottom, foil top
    layer_z_um: tuple[float, ...]
    #: target volume fractions of the composite layer, for reports
    target_fractions: dict[str, float]


def _empty_sheets(t: float) -> Sheets:
    return Sheets(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), t)


def _diameters(rng: np.random.Generator, nw: NanowireSpec, n: int) -> np.ndarray:
    if nw.diameter_cv == 0.0:
        return np.full(n, nw.diameter_um)
    s2 = math.log1p(nw.diameter_cv**2)
    return rng.lognormal(math.log(nw.diameter_um) - s2 / 2, math.sqrt(s2), n)


def _mean_wire_volume_um3(nw: NanowireSpec) -> float:
    mean_d2 = nw.diameter_um**2 * (1.0 + nw.diameter_cv**2)
    return math.pi / 4 * mean_d2 * 0.5 * (nw.length_min_um + nw.length_max_um)


def _axes(rng: np.random.Generator, orientation: str, tilt_sd_deg: float, n: int) -> np.ndarray:
    if orientation == "isotropic":
        v = rng.normal(size=(n, 3))
        return v / np.linalg.norm(v, axis=1)[:, None]
    tilt = np.deg2rad(tilt_sd_deg) * rng.normal(size=n)
    if orientation == "in_plane":
        azimuth = rng.uniform(0.0, 2 * math.pi, n)
    else:  # aligned with x, spread in azimuth and tilt
        azimuth = np.deg2rad(tilt_sd_deg) * rng.normal(size=n)
    return np.stack([np.cos(tilt) * np.cos(azimuth), np.cos(tilt) * np.sin(azimuth),
                     np.sin(tilt)], axis=1)


def _uniform_points(rng: np.random.Generator, n: int, lo: np.ndarray, hi: np.ndarray
                    ) -> np.ndarray:
    return lo + (hi - lo) * rng.uniform(size=(n, 3))


def _boolean_count(rng: np.random.Generator, phi: float, mean_volume: float,
                   volume: float) -> int:
    if phi <= 0.0:
        return 0
    return int(rng.poisson(-math.log1p(-phi) / mean_volume * volume))


def _stream(seed: int, kind: int, attribute: int) -> np.random.Generator:
    """One generator per (realization kind, attribute): each attribute array is filled in
    order, so the first n objects do not change when more are drawn (nested realizations:
    a higher density only adds objects)."""
    return np.random.default_rng(np.random.SeedSequence([seed, kind, attribute]))


def _nested_count(seed: int, kind: int, mean: float) -> int:
    """Poisson count by inversion of one fixed uniform: monotone in ``mean``."""
    u = _stream(seed, kind, 0).uniform()
    return int(stats.poisson.ppf(u, mean)) if mean > 0 else 0


def _wires(seed: int, kind: int, nw: NanowireSpec, centers: np.ndarray) -> Wires:
    n = len(centers)
    if nw.orientation == "isotropic":
        v = _stream(seed, kind, 11).normal(size=(n, 3))
        axes = v / np.linalg.norm(v, axis=1)[:, None]
    else:
        tilt = np.deg2rad(nw.tilt_sd_deg) * _stream(seed, kind, 12).normal(size=n)
        if nw.orientation == "in_plane":
            azimuth = _stream(seed, kind, 13).uniform(0.0, 2 * math.pi, n)
        else:  # aligned with x, spread in azimuth and tilt
            azimuth = np.deg2rad(nw.tilt_sd_deg) * _stream(seed, kind, 13).normal(size=n)
        axes = np.stack([np.cos(tilt) * np.cos(azimuth), np.cos(tilt) * np.sin(azimuth),
                         np.sin(tilt)], axis=1)
    return Wires(
        centers_um=centers,
        axes=axes,
        lengths_um=_stream(seed, kind, 14).uniform(nw.length_min_um, nw.length_max_um, n),
        radii_um=0.5 * _diameters(_stream(seed, kind, 15), nw, n),
    )


def _sheets(rng: np.random.Generator, phi: float, size_um: float, thickness_um: float,
            lo: np.ndarray, hi: np.ndarray, orientation: str, tilt_sd_deg: float) -> Sheets:
    volume = float(np.prod(hi - lo))
    n = _boolean_count(rng, phi, math.pi / 4 * size_um**2 * thickness_um, volume)
    centers = _uniform_points(rng, n, lo, hi)
    if orientation == "isotropic":
        normals = _axes(rng, "isotropic", 0.0, n)
    else:  # flakes lie in the membrane plane: normal near z
        tilt = np.deg2rad(tilt_sd_deg) * rng.normal(size=n)
        az = rng.uniform(0.0, 2 * math.pi, n)
        normals = np.stack([np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az),
                            np.cos(tilt)], axis=1)
    return Sheets(centers, normals, np.full(n, size_um), thickness_um)


def _enlarged(window: tuple[float, float, float, float], margin: float, z0: float, z1: float
              ) -> tuple[np.ndarray, np.ndarray]:
    x0, x1, y0, y1 = window
    return (np.array([x0 - margin, y0 - margin, z0]), np.array([x1 + margin, y1 + margin, z1]))


def realize_gradient(spec: GradientSpec, window_um: tuple[float, float, float, float],
                     seed: int, density_factor: float = 1.0) -> Realization:
    """Gradient NW membrane: in-plane random wires and flat rGO flakes below the SPE skin.

    ``density_factor`` scales the wire number density; realizations are nested in it (see
    :func:`meshes.build.build_section`, which calibrates the realised volume fraction)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    d = derive_gradient(spec)
    z1 = spec.thickness_um - spec.skin_thickness_um
    margin = 0.5 * spec.nanowire.length_max_um
    lo, hi = _enlarged(window_um, margin, 0.0, z1)
    mean = (-math.log1p(-d.nanowire_volume_fraction_composite)
            / _mean_wire_volume_um3(spec.nanowire) * float(np.prod(hi - lo)) * density_factor)
    n = _nested_count(seed, 1, mean)
    wires = _wires(seed, 1, spec.nanowire, _uniform_points(_stream(seed, 1, 10), n, lo, hi))
    lo_s, hi_s = _enlarged(window_um, 0.5 * spec.rgo_sheet_size_um, 0.0, z1)
    sheets = _sheets(rng, d.rgo_volume_fraction_composite, spec.rgo_sheet_size_um,
                     spec.rgo_sheet_thickness_um, lo_s, hi_s, "in_plane",
                     spec.nanowire.tilt_sd_deg)
    layers = (z1,) if spec.skin_thickness_um > 0 else ()
    return Realization(
        kind="gradient", window_um=window_um, composite_z_um=(0.0, z1),
        thickness_um=spec.thickness_um, wires=wires, sheets=sheets,
        spheres=Spheres(np.zeros((0, 3)), np.zeros(0)), layer_z_um=layers,
        target_fractions={"nanowire": d.nanowire_volume_fraction_composite,
                          "rgo": d.rgo_volume_fraction_composite},
    )


def realize_homogeneous(spec: HomogeneousSpec, window_um: tuple[float, float, float, float],
                        seed: int, density_factor: float = 1.0) -> Realization:
    """Tape-cast cathode: NW/rGO agglomerates (Thomas cluster process of wires and flakes),
    carbon-black aggregates (Boolean spheres), on an Al foil slab. Nested in
    ``density_factor`` (more agglomerates, the existing ones unchanged)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    d = derive_homogeneous(spec)
    z0 = spec.al_foil_thickness_um
    z1 = z0 + d.thickness_um
    nw = spec.nanowire
    margin = 0.5 * nw.length_max_um + 2 * spec.agglomerate_radius_um
    lo, hi = _enlarged(window_um, margin, z0, z1)
    volume = float(np.prod(hi - lo))
    v_wire = _mean_wire_volume_um3(nw)
    n_wires_mean = -math.log1p(-d.nanowire_volume_fraction) / v_wire * volume * density_factor
    # About half the agglomerate volume is wire (loose random packing of rods).
    per_cluster = max(1.0, 0.5 * (4 / 3) * math.pi * spec.agglomerate_radius_um**3 / v_wire)
    n_parents = _nested_count(seed, 2, n_wires_mean / per_cluster)
    parents = _uniform_points(_stream(seed, 2, 1), n_parents, lo, hi)
    counts = _stream(seed, 2, 2).poisson(per_cluster, n_parents)
    sigma = 0.5 * spec.agglomerate_radius_um
    centers = np.repeat(parents, counts, axis=0)
    centers = centers + sigma * _stream(seed, 2, 3).normal(size=centers.shape)
    wires = replace(_wires(seed, 2, nw, centers), anchors_um=np.repeat(parents, counts, axis=0))
    # rGO flakes sit in the agglomerates (the composite was made before casting).
    n_sheets = _boolean_count(rng, d.rgo_volume_fraction, math.pi / 4 * spec.rgo_sheet_size_um**2
                              * spec.rgo_sheet_thickness_um, volume)
    if len(parents):
        hosts = parents[rng.integers(0, len(parents), n_sheets)]
    else:
        hosts = np.zeros((0, 3))
    sheet_centers = hosts + sigma * rng.normal(size=hosts.shape)
    sheets = Sheets(sheet_centers, _axes(rng, "isotropic", 0.0, n_sheets),
                    np.full(n_sheets, spec.rgo_sheet_size_um), spec.rgo_sheet_thickness_um,
                    anchors_um=hosts)
    r_cb = 0.5 * spec.carbon_black_aggregate_diameter_um
    lo_c, hi_c = _enlarged(window_um, r_cb, z0, z1)
    n_cb = _boolean_count(rng, d.carbon_black_volume_fraction, 4 / 3 * math.pi * r_cb**3,
                          float(np.prod(hi_c - lo_c)))
    spheres = Spheres(_uniform_points(rng, n_cb, lo_c, hi_c), np.full(n_cb, r_cb))
    return Realization(
        kind="homogeneous", window_um=window_um, composite_z_um=(z0, z1), thickness_um=z1,
        wires=wires, sheets=sheets, spheres=spheres, layer_z_um=(z0,),
        target_fractions={"nanowire": d.nanowire_volume_fraction,
                          "rgo": d.rgo_volume_fraction,
                          "carbon_black": d.carbon_black_volume_fraction,
                          "spe": d.spe_volume_fraction, "void": d.void_volume_fraction},
    )
