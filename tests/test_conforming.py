"""Conforming tetrahedral boxes of the gradient membrane (meshes/conforming.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI  # isort: split

from fem.conduction import ITERATIVE_PETSC_OPTIONS, conductivity_tensor
from fem.parameters import default_conductivities
from meshes.adapter import build_on_root, distribute_conforming, distribute_voxels
from meshes.conforming import (
    MIN_QUALITY,
    ConformingError,
    WireSegments,
    clip_wires,
    design_contacts,
    mesh_conforming_box,
    voxelize_designed,
)
from meshes.rods import segment_closest_points
from meshes.spec import load_case
from meshes.tags import Phase
from tests.conftest import REPO, mpi_results

COMM = MPI.COMM_WORLD

#: a 0.6 um box at mid-depth of the default membrane, without rGO (voxel-only)
SMALL_BOX = {"box": {"size_um": 0.6, "height_um": 0.6, "seed": 0},
             "gradient": {"rgo_wt_fraction": 0.0}}


@pytest.fixture(scope="module")
def small_box():  # type: ignore[no-untyped-def]
    case = load_case(SMALL_BOX)
    return case, build_on_root(COMM, lambda: mesh_conforming_box(case))


def test_box_mesh_is_valid_fills_the_box_and_matches_the_voxel_geometry(small_box) -> None:
    case, box = small_box
    if COMM.rank != 0:
        return
    s = box.stats
    # every cell positively oriented, the box filled exactly, the phases where they belong
    assert s["min_quality"] >= MIN_QUALITY and s["min_cell_volume_um3"] > 0.0
    assert s["box_volume_error_rel"] < 1e-9
    assert set(np.unique(box.phase)) == {int(Phase.NANOWIRE), int(Phase.SPE)}  # f = 1 here
    assert box.points_um.min() > -1e-12 and box.points_um.max() < 0.6 + 1e-12
    # the wires are polygons inscribed in their circles (>= 10 sides at 30 nm elements on
    # 100 nm wires): their volume is below the exact one by at most 1 - sin(2 pi/10) 10/(2 pi)
    # = 6.5 %; the 12.5 nm voxel image of the same wires samples the exact volume
    image = voxelize_designed(box, case, 0.0125)
    exact = float(np.mean(image.labels == int(Phase.NANOWIRE)))
    assert 0.0 < 1.0 - s["nanowire_fraction"] / exact < 0.065
    assert box.contacts.wires_count > 5 and box.contacts.contacts_count > 0


def test_designed_contacts_and_faces_are_either_wide_or_apart(small_box) -> None:
    _, box = small_box
    if COMM.rank != 0:
        return
    rep = box.contacts
    w = box.wires
    a = w.centers_um - 0.5 * w.lengths_um[:, None] * w.axes
    b = w.centers_um + 0.5 * w.lengths_um[:, None] * w.axes
    i, j = np.triu_indices(len(w.radii_um), 1)
    d, _, _ = segment_closest_points(a[i], b[i], a[j], b[j])
    r = w.radii_um
    for tangency in (r[i] + r[j], np.abs(r[i] - r[j])):
        near = (d > tangency - rep.min_overlap_um) & (d < tangency + rep.min_gap_um)
        assert not np.any(near)
    # every wire surface and its end caps clear each box face or cross it by min_overlap
    lo = np.asarray(box.origin_um)
    hi = lo + np.array([box.size_um, box.size_um, box.height_um])
    length = np.linalg.norm(b - a, axis=1)
    checked = 0
    for k in range(3):
        rim = r * np.sqrt(np.clip(1 - ((b - a)[:, k] / length) ** 2, 0, 1))
        for plane, sign in ((lo[k], 1.0), (hi[k], -1.0)):
            da, db = sign * (a[:, k] - plane), sign * (b[:, k] - plane)
            crossing = da * db < 0
            dist = np.minimum(np.abs(da), np.abs(db))
            near = ~crossing & (dist > rim - rep.min_overlap_um) & (dist < rim + rep.min_gap_um)
            assert not np.any(near)
            for s_end in (da, db):
                gap = -s_end - rim  # outside end of a crossing wire: its cap to the face
                near = crossing & (s_end < 0) & (gap > -rep.min_overlap_um) & (
                    gap < rep.min_gap_um)
                assert not np.any(near)
            checked += int(np.count_nonzero(crossing))
    assert checked > len(r)  # most wires cross some face
    assert 0.0 < rep.max_shift_um < 0.1  # small shifts: under one wire diameter


def test_same_spec_and_seed_give_the_same_mesh(small_box) -> None:
    case, box = small_box
    again = build_on_root(COMM, lambda: mesh_conforming_box(case))
    if COMM.rank == 0:
        assert np.array_equal(box.cells, again.cells)
        assert np.array_equal(box.points_um, again.points_um)
        assert np.array_equal(box.phase, again.phase)


def test_voxel_tensors_approach_the_conforming_tensors(small_box) -> None:
    # The same designed wires on voxels of 50 and 12.5 nm: the electronic conductivity along
    # the wires that span the box approaches the conforming value as the voxels shrink, and
    # the ionic conductivities agree within the conforming mesh's own geometric error.
    case, box = small_box
    params = default_conductivities()
    tm = distribute_conforming(COMM, box)
    conf_e = conductivity_tensor(tm, params.electronic(), petsc_options=ITERATIVE_PETSC_OPTIONS)
    conf_i = conductivity_tensor(tm, params.ionic(), petsc_options=ITERATIVE_PETSC_OPTIONS)
    err_e, err_i = [], []
    for h in (0.05, 0.0125):
        image = build_on_root(COMM, lambda h=h: voxelize_designed(box, case, h))
        tv = distribute_voxels(COMM, image)
        e = conductivity_tensor(tv, params.electronic(), petsc_options=ITERATIVE_PETSC_OPTIONS)
        i = conductivity_tensor(tv, params.ionic(), petsc_options=ITERATIVE_PETSC_OPTIONS)
        k = int(np.argmax(np.diag(conf_e.tensor_S_cm)))  # the direction the wires span
        err_e.append(abs(e.tensor_S_cm[k, k] / conf_e.tensor_S_cm[k, k] - 1.0))
        err_i.append(np.max(np.abs(np.diag(i.tensor_S_cm) / np.diag(conf_i.tensor_S_cm) - 1)))
    assert conf_e.tensor_S_cm.max() > 0.0
    assert err_e[1] < err_e[0] and err_e[1] < 0.02
    assert err_i[1] < 0.05


def test_design_that_cannot_converge_is_a_one_line_error() -> None:
    # three parallel wires whose spacing sits in the forbidden band of each pair
    a = np.array([[0.0, 0.5, 0.5], [0.0, 0.6, 0.5], [0.0, 0.7, 0.5]])
    b = a + np.array([1.0, 0.0, 0.0])
    seg = WireSegments(a, b, np.full(3, 0.05), np.arange(3))
    lo, hi = np.zeros(3), np.ones(3)
    with pytest.raises(ConformingError, match="nearly tangent") as info:
        design_contacts(seg, lo_um=lo, hi_um=hi, min_overlap_um=0.01, min_gap_um=0.015,
                        max_sweeps=1)
    assert "\n" not in str(info.value)
    _, rep = design_contacts(seg, lo_um=lo, hi_um=hi, min_overlap_um=0.01,
                                    min_gap_um=0.015)
    assert rep.sweeps > 1 and rep.moved_count >= 2


@pytest.mark.parametrize(("data", "kind", "message"), [
    ({}, "gradient", r"gradient.rgo_wt_fraction = 0.025: conforming boxes do not model rGO"),
    ({"gradient": {"rgo_wt_fraction": 0.0}}, "homogeneous", "gradient membrane only"),
    ({"gradient": {"rgo_wt_fraction": 0.0},
      "box": {"size_um": 1.0, "height_um": 2.0, "z_center_fraction": 1.0}}, "gradient",
     "leaves the composite layer"),
])
def test_out_of_scope_boxes_are_refused_in_one_line(data: dict, kind: str, message: str
                                                    ) -> None:
    case = load_case(data)
    with pytest.raises(ConformingError, match=message) as info:
        mesh_conforming_box(case, kind)
    assert "\n" not in str(info.value)


def test_clipped_wires_end_outside_the_box() -> None:
    from meshes.realization import Wires

    w = Wires(np.array([[0.5, 0.5, 0.5]]), np.array([[1.0, 0.0, 0.0]]), np.array([3.0]),
              np.array([0.05]))
    seg = clip_wires(w, np.zeros(3), np.ones(3), pad_um=0.02)
    assert seg.a_um[0][0] == pytest.approx(-0.07) and seg.b_um[0][0] == pytest.approx(1.07)


_MPI_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from mpi4py import MPI
import numpy as np
from fem.conduction import ITERATIVE_PETSC_OPTIONS, conductivity_tensor
from fem.parameters import default_conductivities
from meshes.adapter import build_on_root, distribute_conforming
from meshes.conforming import mesh_conforming_box
from meshes.spec import load_case
case = load_case({case!r})
box = build_on_root(MPI.COMM_WORLD, lambda: mesh_conforming_box(case))
tm = distribute_conforming(MPI.COMM_WORLD, box)
p = default_conductivities()
out = [conductivity_tensor(tm, s, petsc_options=ITERATIVE_PETSC_OPTIONS).tensor_S_cm.tolist()
       for s in (p.electronic(), p.ionic())]
if MPI.COMM_WORLD.rank == 0:
    print("RESULT " + json.dumps(out))
"""


@pytest.mark.mpi
def test_two_ranks_give_the_one_rank_tensors(tmp_path: Path) -> None:
    script = tmp_path / "conforming_mpi.py"
    script.write_text(_MPI_SCRIPT.format(repo=str(REPO), case=SMALL_BOX))
    one, two = mpi_results(script)
    for a, b in zip(one, two, strict=True):
        a, b = np.array(a), np.array(b)
        assert np.abs(a).max() > 0.0
        # iterative solves: agreement to the solver tolerance, relative to the largest entry
        assert np.allclose(a, b, rtol=1e-8, atol=1e-8 * np.abs(a).max())
