"""Contact resistance between conducting phases (fem.conduction, ``contact_resistance_ohm_cm2``).

References independent of the code: the series resistance of a laminate with a resistive
interface (exact for P1/Q1 on meshes that follow the layers), the parallel (arithmetic) mean
along the layers (no current crosses the interface), the potential jump R_c x j, Rayleigh's
monotonicity (a larger resistance never conducts more; the limits are perfect contacts and
the phase cut off), and the same problem on 1 and 2 ranks.

Units: lengths in um, conductivities in S/cm, R_c in ohm cm2, currents in A/cm of depth (2D).
"""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path

from mpi4py import MPI  # isort: split

import numpy as np
import pytest
from conftest import mpi_results, run_cli
from meshing_helpers import random_disk_section, structured_section

from fem.conduction import conductivity_tensor, effective_conductivity, solve_conduction
from meshes.adapter import distribute_section, distribute_voxels
from meshes.spec import SpecError, load_case
from meshes.tags import Phase
from meshes.voxels import VoxelImage

COMM = MPI.COMM_WORLD
NW, RGO = int(Phase.NANOWIRE), int(Phase.RGO)
SIGMA = {NW: 1e-3, RGO: 24.2}  # S/cm: the project's wire and rGO values


def _series_sigma(lengths_um: tuple[float, float], sigmas: tuple[float, float],
                  r_c: float) -> float:
    """Effective conductivity (S/cm) of two layers in series with a contact between them."""
    l1, l2 = (1e-4 * v for v in lengths_um)  # cm
    return (l1 + l2) / (l1 / sigmas[0] + l2 / sigmas[1] + r_c)


def _bilayer() -> object:
    section = structured_section(6, 8, 1.5, 1.0, lambda x, z: np.where(z < 0.5, NW, RGO)
                                 ) if COMM.rank == 0 else None
    return distribute_section(COMM, section)


@pytest.mark.parametrize("r_c", [1e-6, 1e-3, 1e-1])
def test_bilayer_through_the_contact_is_the_series_resistance(r_c: float) -> None:
    """Wire layer below, rGO layer above, 1 V across: I = V W / (L1/s1 + L2/s2 + R_c) to
    round-off (P1 reproduces the piecewise-linear exact field), current balanced, and the
    potential (a DG1 field) jumps at the contact by exactly R_c x j."""
    tm = _bilayer()
    sol = solve_conduction(tm, SIGMA, lambda x: np.isclose(x[1], 1.0),
                           lambda x: np.isclose(x[1], 0.0), keep_solution=True,
                           contact_resistance_ohm_cm2=r_c)
    sigma = _series_sigma((0.5, 0.5), (SIGMA[NW], SIGMA[RGO]), r_c)
    width_cm = 1.5e-4
    assert sol.current_high == pytest.approx(sigma * width_cm / 1e-4, rel=1e-9)
    assert sol.balance_rel < 1e-9
    # the two potentials at the contact plane: j L1 / s1 on the wire side, 1 - j L2 / s2 on
    # the rGO side (j = sigma x 1 V / 1 um, A/cm2)
    j = sigma / 1e-4
    u = sol.potential
    assert u is not None
    x = u.function_space.tabulate_dof_coordinates()
    n = u.function_space.dofmap.index_map.size_local
    at = np.isclose(x[:n, 1], 0.5)
    values = np.concatenate(COMM.allgather(u.x.array[:n][at]))
    expected = np.array([j * 0.5e-4 / SIGMA[NW], 1.0 - j * 0.5e-4 / SIGMA[RGO]])
    low = values[values < values.mean()]
    high = values[values >= values.mean()]
    assert np.allclose(low, expected[0], rtol=1e-9, atol=1e-12)
    assert np.allclose(high, expected[1], rtol=1e-9, atol=1e-12)
    assert expected[1] - expected[0] == pytest.approx(j * r_c, rel=1e-9)


def test_bilayer_along_the_contact_is_unchanged() -> None:
    """Electrodes on x = 0 and x = W: the current runs along the layers and never crosses
    the contact, so sigma_x is the arithmetic mean whatever R_c (up to round-off)."""
    tm = _bilayer()
    for r_c in (0.0, 1e-3, 10.0):
        r = effective_conductivity(tm, SIGMA, direction="x", z_window_um=(0.0, 1.0),
                                   contact_resistance_ohm_cm2=r_c)
        assert r.sigma_eff_S_cm == pytest.approx(0.5 * (SIGMA[NW] + SIGMA[RGO]), rel=1e-9)


def _laminate_image() -> VoxelImage:
    labels = np.full((4, 3, 8), RGO, dtype=np.uint8)
    labels[:, :, :5] = NW  # 5 wire voxels below, 3 rGO voxels above (0.1 um each)
    return VoxelImage(labels, 0.1, (0.0, 0.0, 0.0), "gradient", (0.0, 0.8))


def test_laminate_tensor_with_contacts_is_exact_and_keeps_the_geometric_factors() -> None:
    """3D voxel laminate: sigma_zz the series value with R_c, sigma_xx = sigma_yy the
    arithmetic mean, off-diagonals zero; the transport factors (a property of the geometry,
    from the unit-conductivity solve with perfect contacts) equal those without contacts."""
    image = _laminate_image() if COMM.rank == 0 else None
    tm = distribute_voxels(COMM, image)
    r_c = 2e-3
    with_c = conductivity_tensor(tm, SIGMA, contact_resistance_ohm_cm2=r_c)
    without = conductivity_tensor(tm, SIGMA)
    s = with_c.tensor_S_cm
    mean = (5 * SIGMA[NW] + 3 * SIGMA[RGO]) / 8
    assert s[0, 0] == pytest.approx(mean, rel=1e-9)
    assert s[1, 1] == pytest.approx(mean, rel=1e-9)
    assert s[2, 2] == pytest.approx(_series_sigma((0.5, 0.3), (SIGMA[NW], SIGMA[RGO]), r_c),
                                    rel=1e-9)
    assert without.tensor_S_cm[2, 2] == pytest.approx(
        _series_sigma((0.5, 0.3), (SIGMA[NW], SIGMA[RGO]), 0.0), rel=1e-9)
    off = s - np.diag(np.diag(s))
    assert np.abs(off).max() < 1e-9 * np.abs(s).max()
    assert with_c.transport_factor == pytest.approx(without.transport_factor, rel=1e-9)
    assert with_c.balance_rel < 1e-9


def _disks() -> object:
    # wire-phase disks (10 S/cm) in an rGO-phase matrix (1 S/cm) that percolates alone
    section = random_disk_section(3.0, 3.0, 0.3, 14, 0.08, 4) if COMM.rank == 0 else None
    return distribute_section(COMM, section)


def test_contact_resistance_is_monotone_between_its_two_limits() -> None:
    """Rayleigh: raising R_c can only lower the conductance; R_c -> 0 gives the continuous
    solve, R_c -> infinity the matrix with the disks cut off (holes), a lower bound for
    every R_c. The disks are 3.3x above the matrix's sigma: perfect contacts gain, cut
    contacts lose against the matrix alone."""
    tm = _disks()
    sigma = {1: 10.0, 3: 1.0}
    perfect = effective_conductivity(tm, sigma, direction="z").sigma_eff_S_cm
    holes = effective_conductivity(tm, {3: 1.0}, direction="z").sigma_eff_S_cm
    assert perfect > 1.2 * holes  # the disks matter
    values = [effective_conductivity(tm, sigma, direction="z",
                                     contact_resistance_ohm_cm2=r).sigma_eff_S_cm
              for r in (1e-10, 1e-6, 1e-5, 1e-4, 1e-3, 1e2)]
    assert values[0] == pytest.approx(perfect, rel=1e-5)
    assert all(a > b for a, b in itertools.pairwise(values))
    assert all(holes <= v <= perfect * (1 + 1e-9) for v in values)
    assert values[-1] == pytest.approx(holes, rel=1e-3)


def test_one_and_two_ranks_agree_with_contacts(tmp_path: Path) -> None:
    script = tmp_path / "contacts.py"
    script.write_text(textwrap.dedent(f"""
        import sys, json
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from mpi4py import MPI
        import numpy as np
        from meshing_helpers import random_disk_section
        from fem.conduction import conductivity_tensor, effective_conductivity
        from meshes.adapter import distribute_section, distribute_voxels
        from meshes.voxels import VoxelImage
        comm = MPI.COMM_WORLD
        sec = random_disk_section(3.0, 3.0, 0.3, 14, 0.08, 4) if comm.rank == 0 else None
        tm = distribute_section(comm, sec)
        r2 = effective_conductivity(tm, {{1: 10.0, 3: 1.0}}, direction="z",
                                    contact_resistance_ohm_cm2=1e-4)
        rng = np.random.default_rng(3)
        labels = np.where(rng.random((8, 8, 8)) < 0.45, 1, 2).astype(np.uint8)
        img = VoxelImage(labels, 0.1, (0.0, 0.0, 0.0), "gradient", (0.0, 0.8))
        tm3 = distribute_voxels(comm, img if comm.rank == 0 else None)
        t = conductivity_tensor(tm3, {{1: 1e-3, 2: 24.2}}, contact_resistance_ohm_cm2=1e-3)
        if comm.rank == 0:
            print("RESULT " + json.dumps([r2.sigma_eff_S_cm, r2.balance_rel,
                                          t.tensor_S_cm.ravel().tolist(), t.balance_rel]))
    """))
    one, two = mpi_results(script)
    assert one[1] < 1e-8 and two[1] < 1e-8 and one[3] < 1e-8 and two[3] < 1e-8
    assert two[0] == pytest.approx(one[0], rel=1e-9)
    scale = max(abs(v) for v in one[2])
    assert np.allclose(two[2], one[2], rtol=1e-8, atol=1e-10 * scale)
    assert one[2][8] > 0.0  # sigma_zz: the random image percolates


@pytest.mark.parametrize("value", [-1e-3, float("nan"), float("inf"), True, "1e-3"])
def test_bad_contact_resistance_is_a_one_line_error(value: object) -> None:
    tm = _bilayer()
    with pytest.raises(ValueError, match=r"^contact_resistance_ohm_cm2 = .*must be a finite "
                                         r"number >= 0 ohm cm2") as err:
        solve_conduction(tm, SIGMA, lambda x: np.isclose(x[1], 1.0),
                         lambda x: np.isclose(x[1], 0.0),
                         contact_resistance_ohm_cm2=value)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_contact_resistance_in_the_case_file() -> None:
    case = load_case({"conduction": {"contact_resistance_ohm_cm2": "0.5 mohm*cm**2"}})
    assert case.conduction.contact_resistance_ohm_cm2 == pytest.approx(5e-4)
    for bad, field in (({"conduction": {"contact_resistance_ohm_cm2": -1}},
                        "conduction.contact_resistance_ohm_cm2 = -1: must be in [0, 1000] "
                        "ohm cm2"),
                       ({"conduction": {"contact_resistance_ohm_cm2": 1e-3},
                         "box": {"sides": "periodic"}},
                        "conduction.contact_resistance_ohm_cm2 = 0.001: must be 0 with "
                        "box.sides = 'periodic'")):
        with pytest.raises(SpecError) as err:
            load_case(bad)
        assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_rve_command_with_contact_resistance(tmp_path: Path) -> None:
    """End to end on a 1 um tape-cast box (wires and carbon black): the contact resistance
    lowers the electronic conductivities, leaves the ionic ones and the geometry's
    tortuosity factors as they are, and is recorded with the case; a bad value is one line
    and leaves no results."""
    common = ["rve", "--cathode", "homogeneous", "--set", "box.size_um=1", "--set",
              "box.height_um=1", "--set", "box.voxel_um=0.05"]
    runs = {}
    for r_c in (0.0, 0.01):
        out = tmp_path / f"r{r_c}"
        proc = run_cli([*common, "--set", f"conduction.contact_resistance_ohm_cm2={r_c}",
                        "--out", str(out)], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[r_c] = json.loads((out / "summary.json").read_text())
    base, cut = (runs[r]["homogeneous"][0]["runs"][0] for r in (0.0, 0.01))
    assert runs[0.01]["case"]["conduction"]["contact_resistance_ohm_cm2"] == 0.01
    assert cut["electronic"]["contact_resistance_ohm_cm2"] == 0.01
    assert base["electronic"]["contact_resistance_ohm_cm2"] == 0.0
    for axis in "xyz":
        key = f"sigma_{axis}{axis}_S_cm"
        assert cut["ionic"][key] == base["ionic"][key]
        assert 0.0 < cut["electronic"][key] < base["electronic"][key]
        assert cut["electronic"]["tortuosity_factor"] == pytest.approx(
            base["electronic"]["tortuosity_factor"], rel=1e-6)
    out = tmp_path / "bad"
    proc = run_cli([*common, "--set", "conduction.contact_resistance_ohm_cm2=-2", "--out",
                    str(out)], tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "conduction.contact_resistance_ohm_cm2 = -2" in lines[0]
    assert not out.exists()


def test_section_study_applies_contacts_to_the_electronic_network_only() -> None:
    """The 2D study (``solve_section``) on a small tape-cast section (wires, rGO, carbon
    black): with a contact resistance the electronic conductivities fall, their transport
    factors (geometry) and every ionic number stay, and the surface I-V keeps perfect
    contacts (documented)."""
    from conftest import SMALL

    from cases.study import solve_section
    from meshes.build import build_section

    case = load_case(SMALL)
    section = build_section(case, "homogeneous") if COMM.rank == 0 else None
    tm = distribute_section(COMM, section)
    base, _ = solve_section(tm)
    cut, _ = solve_section(tm, contact_resistance_ohm_cm2=0.01)
    # this 2 um section conducts electrons along x (through carbon black and wires), not z
    assert base["electronic"]["x"]["percolates"]
    for direction in ("z", "x"):
        b, c = base["electronic"][direction], cut["electronic"][direction]
        assert c["percolates"] == b["percolates"]
        if b["percolates"]:
            assert 0.0 < c["sigma_eff_S_cm"] < b["sigma_eff_S_cm"]
        assert c["transport_factor"] == pytest.approx(b["transport_factor"], rel=1e-9)
        assert cut["ionic"][direction] == pytest.approx(
            {k: v for k, v in base["ionic"][direction].items() if k != "solve_time_s"}
            | {"solve_time_s": cut["ionic"][direction]["solve_time_s"]}, rel=1e-12)
    assert cut["surface_iv"] == base["surface_iv"]


def test_iterative_contact_solve_equals_the_direct_one() -> None:
    """CG + GAMG (with :data:`fem.conduction.CONTACT_GAMG_OPTIONS`) on a random three-phase
    voxel image (wire, rGO, carbon black, 1e4 conductivity contrast) gives the MUMPS tensor."""
    from fem.conduction import ITERATIVE_PETSC_OPTIONS

    rng = np.random.default_rng(11)
    labels = rng.choice([NW, RGO, int(Phase.CARBON_BLACK)], size=(10, 10, 10),
                        p=[0.5, 0.25, 0.25]).astype(np.uint8)
    image = VoxelImage(labels, 0.1, (0.0, 0.0, 0.0), "homogeneous", (0.0, 1.0))
    tm = distribute_voxels(COMM, image if COMM.rank == 0 else None)
    sigma = {NW: 1e-3, RGO: 24.2, int(Phase.CARBON_BLACK): 10.0}
    direct = conductivity_tensor(tm, sigma, contact_resistance_ohm_cm2=1e-3)
    krylov = conductivity_tensor(tm, sigma, contact_resistance_ohm_cm2=1e-3,
                                 petsc_options=ITERATIVE_PETSC_OPTIONS)
    assert np.diag(direct.tensor_S_cm).min() > 0.0
    assert np.allclose(krylov.tensor_S_cm, direct.tensor_S_cm, rtol=1e-6,
                       atol=1e-8 * np.abs(direct.tensor_S_cm).max())
    # ... and the Krylov numbers are Krylov's, not those of the direct fallback
    for k in range(3):
        sol = solve_conduction(tm, sigma, lambda x, k=k: np.isclose(x[k], 1.0),
                               lambda x, k=k: np.isclose(x[k], 0.0),
                               petsc_options=ITERATIVE_PETSC_OPTIONS,
                               contact_resistance_ohm_cm2=1e-3)
        assert sol.linear_solver == "iterative"


def test_contact_groups_decide_which_contacts_resist() -> None:
    """Wire | rGO | carbon black layers in z: with every phase its own group both contacts
    resist (two R_c in series), with rGO and carbon black one group (``contacts = "wires"``
    in a case file) only the wire's contact does (one R_c); exact on the voxel mesh."""
    cb = int(Phase.CARBON_BLACK)
    labels = np.full((3, 3, 9), cb, dtype=np.uint8)
    labels[:, :, :3] = NW
    labels[:, :, 3:6] = RGO
    image = VoxelImage(labels, 0.1, (0.0, 0.0, 0.0), "homogeneous", (0.0, 0.9))
    tm = distribute_voxels(COMM, image if COMM.rank == 0 else None)
    sigma = {NW: 1e-3, RGO: 24.2, cb: 10.0}
    r_c = 5e-3
    bulk = sum(0.3e-4 / s for s in sigma.values())  # ohm cm2
    each = conductivity_tensor(tm, sigma, contact_resistance_ohm_cm2=r_c)
    wires = load_case({"conduction": {"contact_resistance_ohm_cm2": r_c,
                                      "contacts": "wires"}}).conduction
    grouped = conductivity_tensor(tm, sigma, contact_resistance_ohm_cm2=r_c,
                                  contact_groups=wires.contact_groups())
    assert each.tensor_S_cm[2, 2] == pytest.approx(0.9e-4 / (bulk + 2 * r_c), rel=1e-9)
    assert grouped.tensor_S_cm[2, 2] == pytest.approx(0.9e-4 / (bulk + r_c), rel=1e-9)
    with pytest.raises(ValueError, match=r"^contact_groups = .*phase 2 is in two groups$"):
        conductivity_tensor(tm, sigma, contact_resistance_ohm_cm2=r_c,
                            contact_groups=[[NW, RGO], [RGO, cb]])
    with pytest.raises(SpecError, match=r"^conduction.contacts = 'pairs': must be one of"):
        load_case({"conduction": {"contacts": "pairs"}})


def test_compare_with_contacts_writes_the_jumping_potential(tmp_path: Path) -> None:
    """``cathodefem compare`` with a contact resistance: the case records it, and the
    electronic potential, which jumps at the contacts (DG1), is written as VTX (XDMF holds
    node fields only: writing it there failed before)."""
    from conftest import SMALL

    data = {**SMALL, "conduction": {"contact_resistance_ohm_cm2": 1e-3, "contacts": "wires"}}
    lines = []
    for table, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{table}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        else:
            lines.insert(0, f"{table} = {json.dumps(values)}")
    (tmp_path / "case.toml").write_text("\n".join(lines) + "\n")
    out = tmp_path / "res"
    proc = run_cli(["compare", "case.toml", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spec"]["conduction"] == {"contact_resistance_ohm_cm2": 1e-3,
                                             "contacts": "wires"}
    fields = sorted(p.name for p in (out / "homogeneous").glob("electronic_potential_*"))
    assert "electronic_potential_x_V.bp" in fields
    assert not any(name.endswith(".xdmf") for name in fields)
