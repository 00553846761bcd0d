"""The reacting surface of voxel images: voxel faces weighted by the estimated surface normal
(meshes.voxels.surface_normals, interface_area_um2) against closed-form areas, and the half
cell's interface integrals (fem.electrochem.halfcell.HalfCell.area_weight) against the
image count."""

from __future__ import annotations

import math

from mpi4py import MPI  # isort: split

import numpy as np
import pytest

from meshes.tags import Phase
from meshes.voxels import VoxelImage, interface_area_um2, surface_normals

COMM = MPI.COMM_WORLD


def _centres(shape: tuple[int, int, int]) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n) + 0.5 for n in shape], indexing="ij"), -1)


def _torus(tube: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A voxelized torus (a closed bent wire: tube radius ``tube`` voxels, ring radius
    3 tube + 4) in a random orientation and sub-voxel position; its true area."""
    ring = 3 * tube + 4
    n = int(2 * (ring + tube) + 6)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    y = (_centres((n, n, n)) - n / 2 - rng.uniform(-0.5, 0.5, 3)) @ rot
    inside = (np.hypot(y[..., 0], y[..., 1]) - ring) ** 2 + y[..., 2] ** 2 <= tube ** 2
    return np.where(inside, 1, 3).astype(np.uint8), 4 * math.pi ** 2 * ring * tube


def _sphere(radius: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    n = int(2 * radius + 6)
    x = _centres((n, n, n)) - n / 2 - rng.uniform(-0.5, 0.5, 3)
    inside = np.linalg.norm(x, axis=-1) <= radius
    return np.where(inside, 1, 3).astype(np.uint8), 4 * math.pi * radius ** 2


@pytest.mark.parametrize("shape", ["torus", "sphere"])
def test_weighted_voxel_faces_converge_to_the_true_area(shape: str) -> None:
    # The bare voxel faces stay about 1.5x the true area however fine the voxels (a
    # staircase: the mean of |n_x| + |n_y| + |n_z|); weighted by the estimated normal they
    # come within 2.5 % when the tube (a wire) is 2 voxels in radius (1.2-2.1 % over seeds
    # 3-5), within 0.5 % at 4 and 6.
    rng = np.random.default_rng(3)
    errors = []
    for size in (2.0, 4.0, 6.0):
        labels, true = (_torus(size, rng) if shape == "torus"
                        else _sphere(2 * size + 1, rng))
        h = 0.01  # um per voxel: areas scale with h^2
        raw = interface_area_um2(labels, h, [1], [3], weighted=False) / (true * h * h)
        weighted = interface_area_um2(labels, h, [1], [3]) / (true * h * h)
        assert 1.4 < raw < 1.6
        errors.append(abs(weighted - 1.0))
    assert errors[0] < 0.025
    assert max(errors[1:]) < 0.005


def test_normals_wrap_around_a_periodic_image() -> None:
    # periodic: the estimate is that of the torus x, y: shifting the image across the
    # periodic faces shifts the normals with it; without periodicity it does not
    rng = np.random.default_rng(7)
    labels, _ = _torus(2.0, rng)
    labels = labels[:, :, 4:-4]
    shift = labels.shape[0] // 3
    for periodic, same in ((True, True), (False, False)):
        a = np.roll(surface_normals(labels, [1], periodic=periodic), shift, axis=1)
        b = surface_normals(np.roll(labels, shift, axis=0), [1], periodic=periodic)
        assert np.allclose(a, b, atol=1e-6) == same


def _wire_column() -> VoxelImage:
    """A tilted wire (radius 0.06 um, 2.4 voxels) on the collector, in SPE, under a
    separator: 16 x 16 x 24 voxels of 25 nm."""
    n, nz, h = 16, 24, 0.025
    x = _centres((n, n, nz)) * h
    axis = np.array([0.3, 0.2, 1.0]) / math.sqrt(1.13)
    r = x - np.array([0.2, 0.2, 0.0])
    perp = r - (r @ axis)[..., None] * axis
    labels = np.full((n, n, nz), int(Phase.SPE), dtype=np.uint8)
    labels[(np.linalg.norm(perp, axis=-1) <= 0.06) & (x[..., 2] < 0.4)] = int(Phase.NANOWIRE)
    labels[:, :, 18:] = int(Phase.SEPARATOR)
    return VoxelImage(labels, h, (0.0, 0.0, 0.0), "gradient", (0.0, 18 * h))


def test_half_cell_reacts_through_the_weighted_area() -> None:
    # The interface integrals of the half cell weight each voxel face as the image count
    # does (the two agree to float32 rounding of the normals), and the weighted area is
    # near the wire's: lateral 2 pi r L plus the elliptic end 0.012 um2 (0.172 um2;
    # smoothing rounds the end's rim); without normals, the bare faces (0.244 um2).
    from fem.electrochem.halfcell import HalfCell
    from fem.electrochem.parameters import default_parameters
    from meshes.adapter import distribute_voxels

    image = _wire_column()
    ionic = [int(Phase.SPE), int(Phase.SEPARATOR)]
    length = 0.4 * math.sqrt(1.13)
    true = 2 * math.pi * 0.06 * length + math.pi * 0.06 ** 2 * math.sqrt(1.13)
    areas = {}
    for normals in (False, True):
        tm = distribute_voxels(COMM, image, normals=normals)
        assert (tm.surface_normals is not None) == normals
        cell = HalfCell(tm, default_parameters(), electronic="ideal")
        try:
            areas[normals] = cell.connected_interface_area_um2()
        finally:
            cell.free()
        counted = interface_area_um2(image.labels, image.voxel_um, [int(Phase.NANOWIRE)],
                                     ionic, weighted=normals)
        assert areas[normals] == pytest.approx(counted, rel=1e-8)
    assert areas[False] > 1.3 * true
    assert areas[True] == pytest.approx(true, rel=0.06)


def test_surface_normals_must_fit_the_mesh() -> None:
    from dataclasses import replace

    from fem.electrochem.halfcell import HalfCell
    from fem.electrochem.parameters import default_parameters
    from meshes.adapter import distribute_voxels

    tm = distribute_voxels(COMM, _wire_column(), normals=True)
    assert tm.surface_normals is not None
    bad = replace(tm, surface_normals=tm.surface_normals[:-1])
    with pytest.raises(ValueError, match="surface_normals: shape"):
        HalfCell(bad, default_parameters(), electronic="ideal")
    # normals estimated on a wrapped image belong to a periodic cell, and only to one
    params = default_parameters()
    width, depth = tm.width_um, tm.depth_um
    with pytest.raises(ValueError, match="surface normals did not wrap"):
        HalfCell(tm, params, electronic="ideal", periodic={0: width, 1: depth})
    wrapped = distribute_voxels(COMM, _wire_column(), normals=True, periodic=True)
    assert wrapped.surface_normals_periodic and not tm.surface_normals_periodic
    for sides in (None, {0: width}):
        with pytest.raises(ValueError, match="surface normals wrapped"):
            HalfCell(wrapped, params, electronic="ideal", periodic=sides)
    HalfCell(wrapped, params, electronic="ideal", periodic={0: width, 1: depth}).free()


@pytest.mark.parametrize("periodic", [False, True])
def test_normals_of_a_block_are_those_of_the_whole_image(periodic: bool) -> None:
    # every rank estimates the normals of its own cells from its block plus a margin: the
    # values are the whole image's, at the image's faces too (wrapped or extended)
    rng = np.random.default_rng(11)
    labels = rng.choice(np.array([1, 3], dtype=np.uint8), size=(13, 11, 17), p=[0.4, 0.6])
    whole = surface_normals(labels, [1], periodic=periodic)
    for box in (((0, 13), (0, 11), (0, 17)), ((0, 5), (3, 11), (9, 17)),
                ((4, 6), (0, 2), (7, 8))):
        part = surface_normals(labels, [1], periodic=periodic, box=box)
        ref = whole[:, box[0][0]:box[0][1], box[1][0]:box[1][1], box[2][0]:box[2][1]]
        assert part.shape == ref.shape
        assert np.allclose(part, ref, rtol=0, atol=1e-6)


def test_auto_weights_from_three_voxels_per_wire_diameter() -> None:
    # 'auto': bare faces below 3 voxels per diameter, weighted from 3 on (also where
    # 3 * voxel_um rounds above the diameter: 3 * 0.025 > 0.075 in floats)
    from cases.cycling import voxel_surface
    from meshes.spec import load_case

    for diameter, voxel, expected in ((0.075, 0.025, "weighted"), (0.3, 0.1, "weighted"),
                                      (0.1, 0.05, "faces"), (0.1, 0.034, "faces"),
                                      (0.1, 0.033, "weighted"), (0.1, 0.1, "faces")):
        for kind in ("gradient", "homogeneous"):
            case = load_case({"box": {"voxel_um": voxel},
                              kind: {"nanowire": {"diameter_um": diameter}}})
            assert voxel_surface(case, kind) == expected, (diameter, voxel, kind)
        fixed = load_case({"box": {"voxel_um": voxel},
                           "electrochemistry": {"voxel_surface": "faces"}})
        assert voxel_surface(fixed, "gradient") == "faces"
