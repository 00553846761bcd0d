"""Periodic boxes: the periodic image wraps the realization, the fill field wraps, and the
periodic solves (PETSc PtAP constraints) are exact relabelings of interior problems,
independent of where the periodic box is cut and of the rank count."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mpi4py import MPI  # isort: split

import dolfinx
import numpy as np
import pytest

from fem.conduction import DEFAULT_PETSC_OPTIONS, conductivity_tensor
from fem.electrochem.halfcell import HalfCell
from fem.electrochem.parameters import ModelUnits, default_parameters
from fem.parameters import default_conductivities
from fem.periodic import check_periods
from meshes.adapter import distribute_voxels
from meshes.fill import gaussian_field
from meshes.realization import (
    Realization,
    Sheets,
    Spheres,
    Wires,
    realize_gradient,
    realize_homogeneous,
)
from meshes.spec import CaseSpec, SpecError, load_case
from meshes.tags import Phase
from meshes.voxels import VoxelImage, periodic_caveat, voxelize, voxelize_case
from tests.conftest import REPO, mpi_results, run_cli

COMM = MPI.COMM_WORLD
SOLIDS = [int(Phase.NANOWIRE), int(Phase.RGO)]


def _image(labels: np.ndarray, h: float) -> VoxelImage:
    return VoxelImage(labels.astype(np.uint8), h, (0.0, 0.0, 0.0), "gradient",
                      (0.0, labels.shape[2] * h))


def _wrap_shift(real: Realization, dx: float, period: float) -> Realization:
    """The objects of the torus [0, period)^2 (anchors inside it) moved by dx in x on the
    torus: objects move with their anchors (a tape-cast wire with its agglomerate), and an
    anchor that leaves the period comes back one period lower."""
    ex = np.array([1.0, 0.0, 0.0])

    def moved(anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = np.all((anchors[:, :2] >= 0.0) & (anchors[:, :2] < period), axis=1)
        d = np.where(anchors[keep, 0] + dx >= period, dx - period, dx)
        return keep, d[:, None] * ex

    w, s, c = real.wires, real.sheets, real.spheres
    kw, dw = moved(w.anchors())
    ks, ds = moved(s.anchors())
    kc, dc = moved(c.centers_um)
    wires = Wires(w.centers_um[kw] + dw, w.axes[kw], w.lengths_um[kw], w.radii_um[kw],
                  anchors_um=w.anchors()[kw] + dw)
    sheets = Sheets(s.centers_um[ks] + ds, s.normals[ks], s.diameters_um[ks], s.thickness_um,
                    anchors_um=s.anchors()[ks] + ds)
    spheres = Spheres(c.centers_um[kc] + dc, c.radii_um[kc])
    return dataclasses.replace(real, wires=wires, sheets=sheets, spheres=spheres)


@pytest.mark.parametrize("kind", ["gradient", "homogeneous"])
def test_periodic_image_is_the_realization_on_a_torus(kind: str) -> None:
    """Moving every object by half the box on the torus rolls the periodic image by half
    the box, coating included: every periodic copy that reaches into the box is painted,
    tape-cast agglomerates move whole. The insulating image of the same move is not a roll
    (the check can fail)."""
    n, h = 20, 0.05
    size = n * h
    case = CaseSpec()
    if kind == "gradient":
        real = realize_gradient(case.gradient, (0.0, size, 0.0, size), seed=4)
        origin = (0.0, 0.0, 10.0)
    else:
        real = realize_homogeneous(case.homogeneous, (0.0, size, 0.0, size), seed=4)
        origin = (0.0, 0.0, 5.0)
    assert kind == "gradient" or not np.allclose(real.wires.anchors(), real.wires.centers_um)
    moved = _wrap_shift(real, 0.5 * size, size)
    # the coating is SPE, the rest of the pore void (share 0): a coating that did not wrap
    # would show at the faces
    kw = dict(coating_um=0.02, fill="share", spe_share=0.0)
    for periodic in (True, False):
        a = voxelize(real, origin, (n, n, n), h, periodic=periodic, **kw)
        b = voxelize(moved, origin, (n, n, n), h, periodic=periodic, **kw)
        assert 0.05 < np.isin(a.labels, [*SOLIDS, int(Phase.CARBON_BLACK)]).mean() < 0.7
        assert np.count_nonzero(a.labels == Phase.SPE) > 0
        assert np.array_equal(np.roll(a.labels, n // 2, axis=0), b.labels) == periodic


def test_periodic_image_has_no_seam() -> None:
    """Across the x and y faces of a periodic image, neighbouring voxels agree as often as
    inside the box (the coating and the fill wrap too); without periodicity they do not."""
    for sides, seam_is_interior in (("periodic", True), ("insulating", False)):
        case = load_case({"box": {"size_um": 2.0, "height_um": 1.0, "voxel_um": 0.05,
                                  "seed": 3, "sides": sides}})
        lab = voxelize_case(case, "homogeneous").labels
        inner = np.mean([np.mean(lab[i] == lab[i + 1]) for i in range(len(lab) - 1)])
        seam = np.mean(lab[-1] == lab[0])
        seam_y = np.mean(lab[:, -1] == lab[:, 0])
        assert (min(seam, seam_y) > inner - 0.05) == seam_is_interior, (seam, seam_y, inner)


def test_gaussian_field_wraps_on_periodic_axes_only() -> None:
    """Periodic in x and y: a point and its copies one period away get the same value, the
    faces x = 0 and x = L agree; z is not periodic (its faces differ)."""
    pts = np.random.default_rng(0).uniform(0.0, 1.0, size=(50, 3))
    ext = (2.0, 2.0, 2.0)

    def field(p: np.ndarray) -> np.ndarray:
        return gaussian_field(p, ext, 0.4, 5, periodic_axes=(0, 1))

    f = field(pts)
    assert 0.3 < np.std(f) < 2.0
    for shift in ([2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, -2.0, 0.0]):
        assert np.allclose(field(pts + shift), f, rtol=1e-12, atol=1e-12)
    face = pts * [0.0, 1.0, 1.0]
    assert np.allclose(field(face), field(face + np.array([2.0, 0.0, 0.0])), rtol=1e-12, atol=1e-12)
    bottom = pts * [1.0, 1.0, 0.0]
    assert not np.allclose(field(bottom), field(bottom + np.array([0.0, 0.0, 2.0])), atol=1e-3)


def test_gaussian_field_ignores_the_rounding_error_of_an_extent() -> None:
    """A 0.6 um box is 0.6 to a conforming mesh and 12 x 0.05 = 0.6000000000000001 um to
    its voxel image: both must get the same field (the grid of the rounded extent used to
    have one more plane, hence other noise: a different pore fill for the same box)."""
    pts = np.random.default_rng(1).uniform(0.0, 0.6, size=(200, 3))
    for axes in ((), (0, 1)):
        exact = gaussian_field(pts, (0.6, 0.6, 0.6), 0.3, 0, periodic_axes=axes)
        rounded = gaussian_field(pts, (12 * 0.05,) * 3, 0.3, 0, periodic_axes=axes)
        assert 12 * 0.05 != 0.6
        assert np.allclose(exact, rounded, rtol=0.0, atol=1e-12)
    # a truly larger extent is another grid (and field)
    assert not np.allclose(gaussian_field(pts, (0.7,) * 3, 0.3, 0),
                           gaussian_field(pts, (0.6,) * 3, 0.3, 0), atol=1e-3)


def _seam_rows(n: int = 12, ny: int = 6, nz: int = 2) -> np.ndarray:
    """Two rows of wire along x in the y rows ny-1 and 0 (neighbours only across the y
    seam), each broken by a gap at a different x: in-plane current must zigzag between the
    rows, which it can only do across the seam."""
    lab = np.full((n, ny, nz), Phase.SPE, dtype=np.uint8)
    lab[:, 0, :] = Phase.NANOWIRE
    lab[:, ny - 1, :] = Phase.NANOWIRE
    lab[3, 0, :] = Phase.SPE
    lab[8, ny - 1, :] = Phase.SPE
    return lab


def test_a_path_through_the_seam_equals_the_same_path_inside_the_box() -> None:
    """Periodic sigma_xx of rows that meet only across the y seam equals the insulating
    sigma_xx of the same image rolled by one row (the rows then meet inside the box): the
    two discrete problems are relabelings of each other, so they agree to round-off.
    Insulating sides see no path at all."""
    sigma = {int(Phase.NANOWIRE): 1.0}
    lab = _seam_rows()
    h = 0.1
    periodic = conductivity_tensor(distribute_voxels(COMM, _image(lab, h)), sigma,
                                   periodic=True)
    insulated = conductivity_tensor(distribute_voxels(COMM, _image(lab, h)), sigma)
    rolled = conductivity_tensor(distribute_voxels(COMM, _image(np.roll(lab, 1, axis=1), h)),
                                 sigma)
    assert insulated.percolates[0] is False and insulated.tensor_S_cm[0, 0] == 0.0
    assert periodic.percolates[0] and rolled.percolates[0]
    assert periodic.tensor_S_cm[0, 0] > 0.05
    assert periodic.tensor_S_cm[0, 0] == pytest.approx(rolled.tensor_S_cm[0, 0], rel=1e-10)
    # the current in y (row 1, column 0) crosses the seam: the same as inside the box
    assert periodic.tensor_S_cm[1, 0] == pytest.approx(rolled.tensor_S_cm[1, 0], rel=1e-8,
                                                       abs=1e-12)
    assert periodic.balance_rel < 1e-9
    assert periodic.connected_fraction[0] == pytest.approx(1.0)


def test_periodic_tensor_does_not_depend_on_where_the_box_is_cut() -> None:
    """A periodic RVE rolled in y: the columns driven in x (periodic in y) and z (periodic
    in x and y) are unchanged to round-off; with insulating sides they change."""
    case = load_case({"box": {"size_um": 1.0, "height_um": 1.0, "voxel_um": 0.05, "seed": 1,
                              "sides": "periodic"}})
    img = voxelize_case(case, "gradient")
    p = default_conductivities()
    out = {}
    for shift in (0, 7):
        tm = distribute_voxels(COMM, dataclasses.replace(
            img, labels=np.roll(img.labels, shift, axis=1)))
        for per in (True, False):
            out[shift, per] = [conductivity_tensor(tm, s, periodic=per,
                                                   petsc_options=DEFAULT_PETSC_OPTIONS)
                               for s in (p.electronic(), p.ionic())]
    for c in (0, 1):
        a, b = out[0, True][c].tensor_S_cm, out[7, True][c].tensor_S_cm
        for col in (0, 2):
            assert np.abs(a[:, col]).max() > 0.0
            assert np.allclose(a[:, col], b[:, col], rtol=1e-9, atol=1e-9 * np.abs(a).max())
    a, b = out[0, False][1].tensor_S_cm, out[7, False][1].tensor_S_cm
    assert not np.allclose(a[:, 0], b[:, 0], rtol=1e-4)


_MPI_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from mpi4py import MPI
from fem.conduction import DEFAULT_PETSC_OPTIONS, conductivity_tensor
from fem.electrochem.halfcell import HalfCell
from fem.electrochem.parameters import ModelUnits, default_parameters
from fem.parameters import default_conductivities
from fem.periodic import check_periods
from meshes.adapter import build_on_root, distribute_voxels
from meshes.spec import load_case
from meshes.voxels import voxelize_case
case = load_case({{"box": {{"size_um": 1.0, "height_um": 0.6, "voxel_um": 0.05, "seed": 2,
                            "sides": "periodic"}}}})
out = {{}}
for kind in ("gradient", "homogeneous"):
    tm = distribute_voxels(MPI.COMM_WORLD, build_on_root(MPI.COMM_WORLD,
                                                         lambda: voxelize_case(case, kind)))
    p = default_conductivities()
    out[kind] = [conductivity_tensor(tm, s, periodic=True,
                                     petsc_options=DEFAULT_PETSC_OPTIONS).tensor_S_cm.tolist()
                 for s in (p.electronic(), p.ionic())]
from fem.electrochem.halfcell import ITERATIVE_PETSC_OPTIONS, HalfCell
from fem.electrochem.parameters import default_parameters
from tests.test_periodic import _bar_column
for key, options in (("half_cell_V", None), ("half_cell_krylov_V", ITERATIVE_PETSC_OPTIONS)):
    cell = HalfCell(distribute_voxels(MPI.COMM_WORLD, _bar_column(0)), default_parameters(),
                    periodic={{0: 1.2, 1: 0.4}}, petsc_options=options and dict(options))
    cell.set_equilibrium(0.05)
    volts = []
    for dt in (1.0, 5.0, 20.0):
        cell.solve_step(dt, current=cell.current_for(300.0))
        cell.accept()
        volts.append(cell.cell_voltage_V)
    out[key] = volts
# a mesh whose x = 1 nodes are not the x = 0 nodes moved by 1: every rank raises one line
import dolfinx
import numpy as np
msh = dolfinx.mesh.create_unit_square(MPI.COMM_WORLD, 8, 8)
x = msh.geometry.x
x[np.isclose(x[:, 0], 1.0) & (x[:, 1] > 0.1) & (x[:, 1] < 0.9), 1] += 0.03
try:
    check_periods(msh, {{0: 1.0}})
    message = ""
except ValueError as e:
    message = str(e)
out["check_periods_raised_ranks"] = MPI.COMM_WORLD.allreduce(int(bool(message)))
out["check_periods_message"] = message
if MPI.COMM_WORLD.rank == 0:
    print("RESULT " + json.dumps(out))
"""


@pytest.mark.mpi
def test_two_ranks_give_the_one_rank_periodic_tensors_and_discharge(tmp_path: Path) -> None:
    script = tmp_path / "periodic_mpi.py"
    script.write_text(_MPI_SCRIPT.format(repo=str(REPO)))
    one, two = mpi_results(script)
    for kind in ("gradient", "homogeneous"):
        for k in (0, 1):
            a, b = np.array(one[kind][k]), np.array(two[kind][k])
            assert np.abs(a).max() > 0.0
            assert np.allclose(a, b, rtol=1e-8, atol=1e-10 * np.abs(a).max())
    assert np.allclose(one["half_cell_V"], two["half_cell_V"], rtol=0.0, atol=1e-10)
    # the field-split index sets of the periodic dofs on 2 ranks: Krylov = direct
    assert np.allclose(two["half_cell_krylov_V"], two["half_cell_V"], rtol=0.0, atol=1e-8)
    # a mesh that is not periodic is refused on every rank, in one line
    for res, ranks in ((one, 1), (two, 2)):
        assert res["check_periods_raised_ranks"] == ranks
        assert "no periodic partner" in res["check_periods_message"]
        assert "\n" not in res["check_periods_message"]


def test_periodic_caveat_names_the_objects_wider_than_the_box() -> None:
    narrow = load_case({"box": {"sides": "periodic", "size_um": 4.0}})
    text = periodic_caveat(narrow, "homogeneous")
    assert text is not None and "box.size_um = 4 um is below 10 um (the longest wire)" in text
    big = load_case({"box": {"sides": "periodic", "size_um": 4.0},
                     "homogeneous": {"agglomerate_radius_um": 6.0}})
    text = periodic_caveat(big, "homogeneous")
    assert text is not None and "below 12 um (the agglomerate diameter)" in text
    wide = load_case({"box": {"sides": "periodic", "size_um": 10.0, "height_um": 1.0,
                              "voxel_um": 0.1}})
    assert periodic_caveat(wide, "gradient") is None
    assert periodic_caveat(load_case({"box": {"size_um": 1.0}}), "gradient") is None


def test_bad_sides_and_meshes_that_are_not_periodic_are_one_line_errors() -> None:
    with pytest.raises(SpecError, match="sides"):
        load_case({"box": {"sides": "torus"}})
    # a mesh spanning [0, 1] whose nodes on x = 1 are not those on x = 0 moved by 1
    msh = dolfinx.mesh.create_unit_square(COMM, 4, 4)
    x = msh.geometry.x
    x[np.isclose(x[:, 0], 1.0) & (x[:, 1] > 0.1) & (x[:, 1] < 0.9), 1] += 0.05
    with pytest.raises(ValueError, match="no periodic partner") as info:
        check_periods(msh, {0: 1.0})
    assert "\n" not in str(info.value)
    check_periods(dolfinx.mesh.create_unit_square(COMM, 4, 4), {0: 1.0, 1: 1.0})


def test_rve_command_with_periodic_sides(tmp_path: Path) -> None:
    out = tmp_path / "res"
    proc = run_cli(["rve", "--cathode", "gradient", "--set", "box.sides=periodic",
                    "--set", "box.size_um=1", "--set", "box.height_um=1",
                    "--set", "box.voxel_um=0.05", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert "periodic" in summary["boundary_conditions"]
    assert summary["case"]["box"]["sides"] == "periodic"
    run = summary["gradient"][0]["runs"][0]
    # a 1 um torus is narrower than the 10 um wires: warned once, and kept in the summary
    said = proc.stdout + proc.stderr
    assert run["periodic_caveat"] and "box.size_um = 1 um is below 10 um" in said
    assert said.count("is below 10 um") == 1
    assert "1 seed(s), periodic sides" in proc.stdout
    assert run["electronic"]["sigma_xx_S_cm"] > 0.0
    assert run["ionic"]["sigma_zz_S_cm"] > 0.0


# --- the half cell on a periodic column ---------------------------------------------------------
def _bar_column(shift: int) -> VoxelImage:
    """A wire bar along x that crosses the x seam (x = 8..11, 0..3 of 12 voxels), joined to
    the collector by a pillar at x = 9; SPE around, separator on top. Rolled by ``shift`` in
    x. Across the seam only wire meets wire and electrolyte meets electrolyte (for shifts
    0 and 1), so the periodic problems of both shifts are relabelings of each other."""
    lab = np.full((12, 4, 8), Phase.SPE, dtype=np.uint8)
    lab[:, :, 6:] = Phase.SEPARATOR
    for i in (8, 9, 10, 11, 0, 1, 2, 3):
        lab[i, 1:3, 2:4] = Phase.NANOWIRE
    lab[9, 1:3, 0:2] = Phase.NANOWIRE
    return VoxelImage(np.roll(lab, shift, axis=0), 0.1, (0.0, 0.0, 0.0), "gradient",
                      (0.0, 0.6))


def _bar_discharge(shift: int, periodic: bool, options: dict[str, str] | None = None
                   ) -> tuple[HalfCell, list[tuple[float, float, float]]]:
    tm = distribute_voxels(COMM, _bar_column(shift))
    cell = HalfCell(tm, default_parameters(), petsc_options=options,
                    periodic={0: 1.2, 1: 0.4} if periodic else None)
    cell.set_equilibrium(0.05)
    current = cell.current_for(300.0)
    out = []
    for dt in (1.0, 2.0, 5.0, 10.0, 20.0):
        li0 = cell.li_in_solid()
        cell.solve_step(dt, current=current)
        charge = abs(cell.anode_current() + cell.interface_current()) / abs(current)
        # Li gained by the wire against the charge passed (model units)
        li = abs((cell.li_in_solid() - li0) * ModelUnits.faraday / (current * dt) - 1.0)
        cell.accept()
        out.append((cell.cell_voltage_V, charge, li))
    return cell, out


def test_periodic_half_cell_is_a_relabeling_and_conserves_charge_and_li() -> None:
    """The bar column and its roll by one voxel give the same discharge on a periodic box
    (to round-off), and conserve charge and Li every step to 1e-8; with insulating sides
    the seam cuts the bar into an unconnected piece and the voltage drops."""
    cell0, a = _bar_discharge(0, True)
    _, b = _bar_discharge(1, True)
    _, cut = _bar_discharge(0, False)
    assert cell0.particles.num_components == 1 and bool(cell0.particle_connected.all())
    assert cell0.connected_interface_facets_count == cell0.interface_facets_count
    for (va, qa, la), (vb, _, _) in zip(a, b, strict=True):
        assert va == pytest.approx(vb, abs=1e-10)
        assert qa < 1e-8 and la < 1e-8
    assert a[-1][0] < a[0][0] - 0.01  # the cell discharges: the test has teeth
    assert min(abs(x[0] - y[0]) for x, y in zip(a, cut, strict=True)) > 0.01


def test_periodic_half_cell_counts_the_interface_it_leaves_out() -> None:
    """Rolled by 4 voxels, the bar starts at the x seam: its 2 x 2 end facets meet the
    electrolyte across the seam, which the mesh has no facet for; the cell counts them."""
    assert HalfCell(distribute_voxels(COMM, _bar_column(0)), default_parameters(),
                    periodic={0: 1.2, 1: 0.4}).seam_interface_facets_count == 0
    cell = HalfCell(distribute_voxels(COMM, _bar_column(4)), default_parameters(),
                    periodic={0: 1.2, 1: 0.4})
    assert cell.seam_interface_facets_count == 4
    with pytest.raises(ValueError, match="periodic axis 2: the collector"):
        HalfCell(distribute_voxels(COMM, _bar_column(0)), default_parameters(),
                 periodic={2: 0.8})
    with pytest.raises(ValueError, match=r"periodic axis 0: period 1 um, but the mesh spans"):
        HalfCell(distribute_voxels(COMM, _bar_column(0)), default_parameters(),
                 periodic={0: 1.0})


def test_periodic_half_cell_with_the_iterative_solver() -> None:
    """The field-split Krylov solver (block index sets of the periodic dofs) gives the
    direct solver's voltages."""
    from fem.electrochem.halfcell import ITERATIVE_PETSC_OPTIONS

    _, direct = _bar_discharge(1, True)
    cell, krylov = _bar_discharge(1, True, dict(ITERATIVE_PETSC_OPTIONS))
    assert cell.linear_iterations > 0
    for (va, _, _), (vb, _, _) in zip(direct, krylov, strict=True):
        assert va == pytest.approx(vb, abs=1e-8)
