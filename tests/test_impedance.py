"""Verification of the virtual impedance spectroscopy (fem.electrochem.impedance, cathodefem eis).

Independent reference: the exact small-signal impedance of a planar cell (active slab on the
collector, polymer electrolyte, Li anode), written here from the linearised 1D equations in SI
units: solid diffusion in the slab (reflecting at the collector), Butler-Volmer charge transfer
and a double layer at both interfaces, concentrated-solution salt transport between them.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from mpi4py import MPI  # isort: split

import numpy as np
import pytest

from fem.electrochem.halfcell import HalfCell
from fem.electrochem.impedance import fit_circuit, impedance_spectrum, log_frequencies
from fem.electrochem.parameters import FARADAY_C_MOL, CellParameters, default_parameters
from fem.parameters import Conductivities, Parameter
from meshes.adapter import TaggedMesh, distribute_section
from meshes.tags import Phase
from tests.conftest import run_cli
from tests.meshing_helpers import structured_section
from tests.test_cycling_cli import BOX as CYCLING_BOX

COMM = MPI.COMM_WORLD
REPO = Path(__file__).resolve().parents[1]
LS_UM, LE_UM = 0.5, 1.5  # active slab and electrolyte thickness
THETA = 0.3


def _params() -> CellParameters:
    """The default set with a poorly conducting active slab (1e-6 S/cm), so that the
    electronic resistance is part of the spectrum."""
    p = default_parameters()
    e = dict(p.conductivities.electronic_S_cm)
    e[Phase.NANOWIRE] = Parameter(value=1e-6, unit="S/cm", source="test")
    return replace(p, conductivities=Conductivities(
        electronic_S_cm=e, ionic_S_cm=dict(p.conductivities.ionic_S_cm)))


def _planar(n: int) -> TaggedMesh:
    z = np.concatenate([np.linspace(0.0, LS_UM, 16 * n + 1),
                        np.linspace(LS_UM, LS_UM + LE_UM, 12 * n + 1)[1:]])
    sec = structured_section(2, len(z) - 1, 0.5, LS_UM + LE_UM, lambda x, zc: np.where(
        zc < LS_UM, int(Phase.NANOWIRE), int(Phase.SPE)), z_lines=z)
    return distribute_section(COMM, sec if COMM.rank == 0 else None)


def _exact(p: CellParameters, freqs: np.ndarray, *, c_dl: float | None = None,
           salt: bool = True, solid: bool = True) -> np.ndarray:
    """Area-specific impedance (ohm m2) of the planar cell, SI units. ``salt=False`` or
    ``solid=False`` drop that diffusion (the controls of the test)."""
    vt = p.thermal_voltage_V
    f_c = FARADAY_C_MOL
    cdl = p.double_layer_capacitance.value if c_dl is None else c_dl
    d_s = p.solid_diffusivity.value * 1e-4
    c_max = p.c_max_mol_m3
    h = 1e-6
    du_dc = (float(p.ocv(THETA + h)) - float(p.ocv(THETA - h))) / (2 * h) / c_max
    i0_c = p.exchange_current_cathode.value * math.sqrt(THETA * (1 - THETA)) / 0.5
    r_c = vt / (i0_c * (p.alpha_anodic.value + p.alpha_cathodic.value))
    r_a = vt / p.exchange_current_anode.value  # alpha 1/2 + 1/2
    sigma = p.conductivities.electronic()[Phase.NANOWIRE] * 100.0
    kappa = p.spe.conductivity.value * 100.0
    d_e = p.spe.diffusivity.value * 1e-4
    tp, tf = p.spe.transference.value, p.spe.thermodynamic_factor.value
    c0 = p.salt_concentration.value
    ls, le = LS_UM * 1e-6, LE_UM * 1e-6
    g = 2 * vt * (1 - tp) * tf / c0 if salt else 0.0
    out = []
    for f in freqs:
        s = 2j * math.pi * f
        ks, ke = np.sqrt(s / d_s), np.sqrt(s / d_e)
        ps_l = ls / sigma  # unit discharge current through the slab
        # unknowns: i_n, phi_e(L), c_s(L), P, Q, phi_e(top), i_a, phi_a, with the salt
        # c_e(y) = P exp(-ke y) + Q exp(-ke (le - y)), y from the slab's face
        a = np.zeros((8, 8), dtype=complex)
        b = np.zeros(8, dtype=complex)
        a[0, 0], a[0, 1], b[0] = 1, -cdl * s, -1 - cdl * s * ps_l  # i_n + i_dl = -1
        a[1, 0], a[1, 1], a[1, 2], b[1] = r_c, 1, du_dc, ps_l  # linear Butler-Volmer
        a[2, 2] = 1  # Li flux i_n / F out of the slab
        a[2, 0] = 1 / (np.tanh(ks * ls) * f_c * d_s * ks) if solid else 1 / (f_c * s * ls)
        e = np.exp(-ke * le)
        if salt:
            a[3, 3], a[3, 4], a[3, 0] = -ke, ke * e, (1 - tp) / (f_c * d_e)
            a[4, 3], a[4, 4], a[4, 6] = -ke * e, ke, -(1 - tp) / (f_c * d_e)
        else:
            a[3, 3], a[4, 4] = 1, 1
        # electrolyte: uniform current -1; ohmic and diffusion potential
        a[5, 5], a[5, 1], a[5, 3], a[5, 4], b[5] = 1, -1, -g * (e - 1), -g * (1 - e), le / kappa
        a[6, 6], a[6, 7], a[6, 5] = r_a, -1, 1  # Li anode, linear Butler-Volmer
        a[7, 6], a[7, 7], a[7, 5], b[7] = 1, cdl * s, -cdl * s, 1  # anode current = 1
        out.append(np.linalg.solve(a, b)[7])
    return np.array(out)


@pytest.fixture(scope="module")
def planar_spectra() -> dict[int, np.ndarray]:
    p = _params()
    freqs = np.array([10.0, 1.0, 0.1, 0.01, 0.001, 1e7])
    return {n: impedance_spectrum(HalfCell(_planar(n), p), THETA, freqs).z_ohm_m2
            for n in (1, 2, 4)}


def test_planar_impedance_matches_the_exact_spectrum_at_second_order(
        planar_spectra: dict[int, np.ndarray]) -> None:
    p = _params()
    freqs = np.array([10.0, 1.0, 0.1, 0.01, 0.001])
    exact = _exact(p, freqs)
    err = {n: float(np.max(np.abs(z[:5] - exact) / np.abs(exact)))
           for n, z in planar_spectra.items()}
    # P1: second order under refinement (measured 1.3e-4, 2.6e-5, 6.3e-6)
    assert math.log2(err[1] / err[2]) > 1.8 and math.log2(err[2] / err[4]) > 1.8
    assert err[4] < 2e-5
    # The comparison sees each part of the model: the exact spectrum without the double
    # layer, without salt diffusion or with instant solid diffusion is far off.
    for variant in (_exact(p, freqs, c_dl=0.0), _exact(p, freqs, salt=False),
                    _exact(p, freqs, solid=False)):
        off = np.max(np.abs(planar_spectra[4][:5] - variant) / np.abs(variant))
        assert off > 100 * err[4]
    # The closed forms of the linearised kinetics: the whole 0.5 um interface connected.
    spec = impedance_spectrum(HalfCell(_planar(1), p), THETA, [1.0])
    i0_c = p.exchange_current_cathode.value * math.sqrt(THETA * (1 - THETA)) / 0.5
    assert spec.connected_interface_area_um2 == pytest.approx(0.5, rel=1e-12)
    assert spec.anode_area_um2 == pytest.approx(0.5, rel=1e-12)
    assert spec.kinetic_cathode_ohm_m2 == pytest.approx(p.thermal_voltage_V / i0_c, rel=1e-12)
    # At high frequency the double layers short the interfaces: the bulk resistance.
    r_bulk = (LS_UM * 1e-6 / (1e-6 * 100) + LE_UM * 1e-6 / (p.spe.conductivity.value * 100))
    assert planar_spectra[4][5].real == pytest.approx(r_bulk, rel=1e-5)


def test_equivalent_circuit_fit_recovers_the_planar_resistances(
        planar_spectra: dict[int, np.ndarray]) -> None:
    p = _params()
    freqs = log_frequencies(0.01, 1e6, 5)
    z = impedance_spectrum(HalfCell(_planar(2), p), THETA, freqs).z_ohm(1.0)  # ohm, 1 cm2
    fit = fit_circuit(freqs, z)
    assert fit is not None
    r_bulk = (LS_UM * 1e-6 / (1e-6 * 100) + LE_UM * 1e-6 / (p.spe.conductivity.value * 100))
    i0_c = p.exchange_current_cathode.value * math.sqrt(THETA * (1 - THETA)) / 0.5
    r_ct = p.thermal_voltage_V / i0_c
    assert fit.value("R0") == pytest.approx(r_bulk * 1e4, rel=0.02)
    arcs = fit.arcs()
    cathode = max(arcs, key=lambda a: a["resistance_ohm"])
    assert cathode["resistance_ohm"] == pytest.approx(r_ct * 1e4, rel=0.02)
    c_dl = p.double_layer_capacitance.value * 1e-4  # F on 1 cm2
    # an ideal double layer: the CPE comes out as that capacitor
    assert cathode["cpe_n"] > 0.98
    assert cathode["cpe_Q_F_s_n_minus_1"] == pytest.approx(c_dl, rel=0.1)
    # the Li anode's arc (0.2 % of the cathode's, a shoulder in -Im Z) is found too
    anode = min(arcs, key=lambda a: a["resistance_ohm"])
    assert anode["resistance_ohm"] == pytest.approx(p.thermal_voltage_V
                                                    / p.exchange_current_anode.value * 1e4,
                                                    rel=0.05)
    assert fit.max_misfit_rel < 0.05


_MPI_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from mpi4py import MPI
import numpy as np
from tests.test_impedance import _params, _planar, THETA
from fem.electrochem.halfcell import HalfCell
from fem.electrochem.impedance import impedance_spectrum
z = impedance_spectrum(HalfCell(_planar(1), _params()), THETA, [1e3, 1.0, 1e-3]).z_ohm_m2
if MPI.COMM_WORLD.rank == 0:
    print("RESULT " + json.dumps([[v.real, v.imag] for v in z]))
"""


@pytest.mark.mpi
def test_two_ranks_give_the_one_rank_spectrum(tmp_path: Path) -> None:
    from tests.conftest import mpi_results

    script = tmp_path / "eis_mpi.py"
    script.write_text(_MPI_SCRIPT.format(repo=str(REPO)))
    one, two = (np.array(r) for r in mpi_results(script))
    assert np.allclose(one, two, rtol=1e-10, atol=0.0)


def test_bad_frequencies_are_clear_errors() -> None:
    cell = HalfCell(_planar(1), _params())
    for bad in ([], [0.0, 1.0], [float("nan")], [-1.0]):
        with pytest.raises(ValueError, match="frequency_Hz: must be a non-empty list"):
            impedance_spectrum(cell, THETA, bad)
    with pytest.raises(ValueError, match="f_min_Hz = 10"):
        log_frequencies(10.0, 1.0, 5)


#: the 1 x 1 um voxel column of the cycling tests (a thin gradient membrane and its tape-cast
#: counterpart, 1 um of separator), two frequencies per decade
BOX = CYCLING_BOX + "[eis]\nf_min_Hz = 0.1\nf_max_Hz = 1e5\npoints_per_decade = 2\n"


def test_eis_command_writes_spectra_fits_and_the_nyquist_plot(tmp_path: Path) -> None:
    case = tmp_path / "eis.toml"
    case.write_text(BOX)
    out = tmp_path / "res"
    r = run_cli(["eis", str(case), "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert 0.1 < summary["theta"] < 0.2  # 3.2 V on the model's OCV
    assert summary["paper_charge_transfer_ohm"]["gradient"] == 125.0
    for kind in ("gradient", "homogeneous"):
        e = summary[kind]
        if e["status"] == "blocked":
            assert e["connected_interface_facets_count"] == 0
            continue
        assert e["status"] == "completed"
        f = np.array(e["frequency_Hz"])
        assert len(f) == 13 and f[0] == 1e5 and f[-1] == pytest.approx(0.1)
        z = np.array(e["z_real_ohm"]) + 1j * np.array(e["z_imag_ohm"])
        assert np.all(np.isfinite(z)) and np.all(z.real > 0) and np.all(z.imag < 0)
        assert e["bulk_resistance_ohm"] > 0 and e["charge_transfer_resistance_ohm"] > 0
        assert 0 < e["connected_interface_area_um2"] and e["kinetic_cathode_closed_form_ohm"] > 0
        assert e["cross_section_um2"] == pytest.approx(1.0)  # the 1 x 1 um column
        assert e["high_frequency_resistance_ohm"] == pytest.approx(z[0].real)
        arcs = e["fit"]["arcs"]
        assert e["cathode_arc_ohm"] + e["anode_arc_ohm"] == pytest.approx(
            e["charge_transfer_resistance_ohm"])
        assert {a["interface"] for a in arcs} <= {"cathode", "anode", "other"}
        # the anode's closed form: RT / (F i0_Li) on the electrode area
        assert e["kinetic_anode_closed_form_ohm"] == pytest.approx(
            0.025693 / 5.0 / 1.13e-4, rel=1e-3)
        rows = (out / kind / "impedance.csv").read_text().splitlines()
        assert rows[0].startswith("frequency_Hz,z_real_ohm") and len(rows) == 14
    assert summary["gradient"]["status"] == "completed"
    assert (out / "nyquist.png").stat().st_size > 10_000
    assert "R_ct = cathode + anode arcs" in r.stdout


@pytest.mark.parametrize(("setting", "message"), [
    ("eis.voltage_V=4.5", "eis.voltage_V = 4.5: must be in"),
    ("eis.f_min_Hz=0", "eis.f_min_Hz = 0: must be in"),
    ("eis.f_max_Hz=0.01", "eis.f_max_Hz = 0.01: must be > f_min_Hz = 0.1"),
    ("eis.points_per_decade=0", "eis.points_per_decade = 0: must be in"),
    ("box.height_um=3", "box.height_um = 3: must be >= the gradient cathode thickness"),
])
def test_eis_bad_input_is_one_line(tmp_path: Path, setting: str, message: str) -> None:
    case = tmp_path / "eis.toml"
    case.write_text(BOX)
    out = tmp_path / "res"
    r = run_cli(["eis", str(case), "--set", setting, "--out", str(out)], tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()


def test_eis_runs_on_2d_sections_and_reports_a_blocked_column(tmp_path: Path) -> None:
    # The tiny 2D gradient section of the cycling tests gives a spectrum (per um of depth).
    from tests.test_cycling_cli import TINY

    case = tmp_path / "eis.toml"
    case.write_text(TINY + "[eis]\nf_min_Hz = 1\nf_max_Hz = 1e4\npoints_per_decade = 1\n")
    out = tmp_path / "res"
    r = run_cli(["eis", str(case), "--cathode", "gradient", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    g = json.loads((out / "summary.json").read_text())["gradient"]
    assert g["status"] == "completed" and len(g["frequency_Hz"]) == 5
    assert "active_mass_per_um_depth_g" in g
    assert g["cross_section_um2"] == pytest.approx(1.5)  # the section's width (per um depth)
    # Seed 3 of the 3D tape-cast column with resolved electronics passes no current
    # (tests/test_cycling_cli.py): blocked, no spectrum, and it says so.
    out = tmp_path / "blocked"
    r = run_cli(["eis", str(REPO / "cases" / "data" / "rate3d.toml"), "--cathode",
                 "homogeneous", "--set", "box.seed=3", "--set", "eis.points_per_decade=1",
                 "--set", "electrochemistry.electronic=resolved",
                 "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    h = json.loads((out / "summary.json").read_text())["homogeneous"]
    assert h["status"] == "blocked" and h["connected_interface_facets_count"] == 0
    assert "frequency_Hz" not in h and not (out / "homogeneous" / "impedance.csv").exists()
    assert "blocked" in r.stdout


def _stepped(top_void: bool) -> TaggedMesh:
    """A planar cell whose active slab has a 0.25 um step (interface 0.75 um on a 0.5 um
    cross-section); ``top_void``: the top row is void over x > 0.25 (anode 0.25 um)."""
    def phase(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.where((z < 0.5) | ((x > 0.25) & (z < 0.75)), int(Phase.NANOWIRE),
                       int(Phase.SPE))
        if top_void:
            out = np.where((z > 1.875) & (x > 0.25), int(Phase.VOID), out)
        return out

    sec = structured_section(2, 16, 0.5, 2.0, phase, z_lines=np.linspace(0.0, 2.0, 17))
    return distribute_section(COMM, sec if COMM.rank == 0 else None)


def test_closed_forms_use_the_interface_and_anode_per_unit_cross_section() -> None:
    p = _params()
    vt = p.thermal_voltage_V
    i0_c = p.exchange_current_cathode.value * math.sqrt(THETA * (1 - THETA)) / 0.5
    for top_void, anode in ((False, 0.5), (True, 0.25)):
        spec = impedance_spectrum(HalfCell(_stepped(top_void), p), THETA, [1.0])
        assert spec.cross_section_um2 == pytest.approx(0.5, rel=1e-12)
        assert spec.anode_area_um2 == pytest.approx(anode, rel=1e-12)
        assert spec.connected_interface_area_um2 == pytest.approx(0.75, rel=1e-12)
        assert spec.kinetic_cathode_ohm_m2 == pytest.approx(vt / i0_c * 0.5 / 0.75, rel=1e-12)
        assert spec.kinetic_anode_ohm_m2 == pytest.approx(
            vt / p.exchange_current_anode.value * 0.5 / anode, rel=1e-12)
        # the arcs peak where the closed forms say, whatever the areas
        assert spec.kinetic_cathode_frequency_Hz == pytest.approx(
            i0_c / (2 * math.pi * vt * p.double_layer_capacitance.value), rel=1e-12)
    # The spectrum itself is per unit cross-section: on the cell with the partial anode its
    # cathode arc is the closed form (per cross-section), not that per anode area (2x).
    freqs = log_frequencies(0.01, 1e6, 5)
    spec = impedance_spectrum(HalfCell(_stepped(True), p), THETA, freqs)
    fit = fit_circuit(freqs, spec.z_ohm(1.0))
    assert fit is not None
    cathode = max(fit.arcs(), key=lambda a: a["resistance_ohm"])
    assert cathode["resistance_ohm"] == pytest.approx(spec.kinetic_cathode_ohm_m2 * 1e4,
                                                      rel=0.01)


def test_periodic_cell_gives_the_spectrum_of_the_insulating_one() -> None:
    # A planar cell is uniform in x: periodic sides change nothing.
    p = _params()
    freqs = [1e3, 1.0, 1e-3]
    plain = impedance_spectrum(HalfCell(_planar(1), p), THETA, freqs).z_ohm_m2
    cell = HalfCell(_planar(1), p, periodic={0: 0.5})
    assert cell._pmap is not None  # the periodic solve path is the one taken
    periodic = impedance_spectrum(cell, THETA, freqs).z_ohm_m2
    assert np.allclose(periodic, plain, rtol=1e-8, atol=0.0)


def test_circuit_fit_of_an_exact_circuit_and_of_a_spectrum_without_arcs() -> None:
    f = log_frequencies(0.01, 1e5, 8)
    w = 2j * np.pi * f
    z = 10.0 + 100.0 / (1.0 + w * 100.0 * 1e-3) + 1000.0 / (1.0 + w * 1000.0 * 0.1)
    fit = fit_circuit(f, z)
    assert fit is not None and fit.max_misfit_rel < 1e-3
    arcs = fit.arcs()
    assert [round(a["resistance_ohm"]) for a in arcs] == [100, 1000]
    assert fit.value("R0") == pytest.approx(10.0, rel=1e-3)
    # a flat (purely resistive) spectrum has no arc to fit: no circuit, not noise arcs
    assert fit_circuit(f, np.full(len(f), 5.0 + 0j)) is None


def test_eis_reports_a_failed_solve_and_keeps_going(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A linear solve that fails (MUMPS out of memory, a singular block) is reported in the
    # summary as "failed: ...", with no spectrum; the other cathode still runs; exit status 1.
    import cases.eis
    from cases.cli import main
    from fem.electrochem.impedance import ImpedanceSolveError
    from tests.test_cycling_cli import TINY

    real = cases.eis.impedance_spectrum
    calls = {"failed": 0, "real": 0}

    def failing(cell, theta, freqs):  # type: ignore[no-untyped-def]
        if calls["failed"] == 0:  # the first cathode only
            calls["failed"] += 1
            raise ImpedanceSolveError("impedance solve failed at 1 Hz (-11)")
        calls["real"] += 1
        return real(cell, theta, freqs)

    monkeypatch.setattr(cases.eis, "impedance_spectrum", failing)
    path = tmp_path / "eis.toml"
    path.write_text(TINY + "[eis]\nf_min_Hz = 1\nf_max_Hz = 1e3\npoints_per_decade = 1\n")
    out = tmp_path / "res"
    assert main(["eis", str(path), "--out", str(out), "-q"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gradient"]["status"] == "failed: impedance solve failed at 1 Hz (-11)"
    assert "frequency_Hz" not in summary["gradient"]
    assert summary["homogeneous"]["status"] == "completed" and calls["real"] == 1
    assert len(summary["homogeneous"]["frequency_Hz"]) == 4
