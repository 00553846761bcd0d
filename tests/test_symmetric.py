"""Li | SSE | Li: the finite-element symmetric cell against its closed-form solution, salt
conservation, rank independence and the command line."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fem.electrochem.parameters import default_parameters
from fem.electrochem.symmetric import (
    SymmetricCell,
    steady_polarization_V,
    transient_polarization_V,
)
from tests.conftest import run_cli

PARAMS = default_parameters(323.15)
I_A_M2 = 0.2e-3 / 1.13e-4  # the paper's 0.2 mA on a 12 mm disc


def test_steady_polarization_equals_the_closed_form() -> None:
    # At steady state the salt profile is linear (exact in P1) and the current uniform: the
    # voltage and each of its parts equal the closed form to the floor of the smoothed
    # concentration in the exchange current (relative 3e-7 at c0), on any mesh.
    ref = steady_polarization_V(PARAMS, 100.0, I_A_M2)
    for cells in (4, 50):
        cell = SymmetricCell(PARAMS, 100.0, cells)
        for _ in range(3):
            st = cell.step(1e6, I_A_M2)  # 3000 relaxation times per step
        for key in ("voltage_V", "kinetic_bottom_V", "electrolyte_ohmic_V",
                    "electrolyte_concentration_V", "kinetic_top_V"):
            assert getattr(st, key) == pytest.approx(ref[key], abs=1e-8), key
        assert st.c_bottom_mol_m3 == pytest.approx(ref["c_bottom_mol_m3"], rel=1e-9)
        assert st.c_top_mol_m3 == pytest.approx(ref["c_top_mol_m3"], rel=1e-9)
    # The parts are those of an independent estimate: ohmic i L / kappa, and the salt
    # difference (1 - t+) i L / (F D) across the separator.
    kappa_S_m = PARAMS.separator.conductivity.value * PARAMS.arrhenius(PARAMS.separator) * 100
    assert -ref["electrolyte_ohmic_V"] == pytest.approx(I_A_M2 * 100e-6 / kappa_S_m, rel=1e-12)
    d_m2_s = PARAMS.separator.diffusivity.value * PARAMS.arrhenius(PARAMS.separator) * 1e-4
    dc = (1 - 0.2) * I_A_M2 * 100e-6 / (96485.33212 * d_m2_s)
    assert ref["c_bottom_mol_m3"] - ref["c_top_mol_m3"] == pytest.approx(dc, rel=1e-12)


def test_transient_converges_at_first_order_in_time_to_the_series_solution() -> None:
    # Backward Euler against the Fourier-series salt profile after 300 s (about one
    # relaxation time): the voltage error halves with the step (observed order 1).
    t_end = 300.0
    ref = transient_polarization_V(PARAMS, 100.0, I_A_M2, t_end)["voltage_V"]
    errors = []
    for steps in (5, 10, 20):
        cell = SymmetricCell(PARAMS, 100.0, 400)
        for _ in range(steps):
            st = cell.step(t_end / steps, I_A_M2)
        errors.append(abs(st.voltage_V - ref))
    rates = [math.log2(errors[k] / errors[k + 1]) for k in range(2)]
    assert all(0.9 < r < 1.1 for r in rates), (errors, rates)
    assert errors[-1] < 1e-4  # V, against a polarization of 35 mV


def test_salt_is_conserved_and_the_reversed_current_mirrors_the_polarization() -> None:
    cell = SymmetricCell(PARAMS, 100.0, 100)
    salt0 = cell.salt_mol_m2()
    forward = [cell.step(120.0, I_A_M2) for _ in range(40)]
    assert abs(cell.salt_mol_m2() / salt0 - 1) < 1e-12
    cell.set_rest()
    backward = [cell.step(120.0, -I_A_M2) for _ in range(40)]
    assert abs(cell.salt_mol_m2() / salt0 - 1) < 1e-12
    for f, b in zip(forward, backward, strict=True):
        assert f.voltage_V < 0 < b.voltage_V
        # mirror images to the Newton tolerance
        assert b.voltage_V == pytest.approx(-f.voltage_V, abs=1e-8)
        assert b.c_top_mol_m3 == pytest.approx(f.c_bottom_mol_m3, rel=1e-9)


def test_a_current_above_the_limiting_current_stops_with_the_state_kept() -> None:
    # Twice the limiting current 2 F D c0 / ((1 - t+) L): the salt runs out at the plating
    # electrode within the first relaxation time; the step is refused, the state kept.
    d_m2_s = PARAMS.separator.diffusivity.value * PARAMS.arrhenius(PARAMS.separator) * 1e-4
    tp = PARAMS.separator.transference.value
    i_lim = 2 * 96485.33212 * d_m2_s * PARAMS.salt_concentration.value / ((1 - tp) * 100e-6)
    cell = SymmetricCell(PARAMS, 100.0, 100)
    states = []
    with pytest.raises(RuntimeError, match="above the limiting current"):
        for _ in range(200):
            states.append(cell.step(10.0, 2 * i_lim))
    assert states and states[-1].c_top_mol_m3 > 0  # the last accepted state is physical
    assert cell.time_s == pytest.approx(10.0 * len(states))
    with pytest.raises(ValueError, match="depletes the salt"):
        steady_polarization_V(PARAMS, 100.0, 2 * i_lim)


def test_bad_cell_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="thickness_um = 0: must be > 0 um"):
        SymmetricCell(PARAMS, 0.0)
    with pytest.raises(ValueError, match="cells = 1: must be an integer >= 2"):
        SymmetricCell(PARAMS, 100.0, 1)


def _run(args: list[str], cwd: Path, ranks: int = 1) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, ranks=ranks, timeout=300)


@pytest.mark.mpi
def test_symmetric_command_writes_the_cycle_and_two_ranks_agree(tmp_path: Path) -> None:
    short = ["--set", "symmetric.cycles=2", "--set", "symmetric.steps_per_half_cycle=20",
             "--set", "symmetric.cells=120"]
    results = {}
    for ranks in (1, 2):
        out = tmp_path / f"n{ranks}"
        r = _run(["symmetric", *short, "--out", str(out)], tmp_path, ranks)
        assert r.returncode == 0, r.stderr[-3000:]
        results[ranks] = json.loads((out / "summary.json").read_text())
        with (out / "symmetric.csv").open() as f:
            results[ranks]["rows"] = list(csv.DictReader(f))
        assert (out / "symmetric.png").stat().st_size > 0
    one, two = results[1], results[2]
    assert len(one["rows"]) == 2 * 2 * 20
    assert [h["polarization_mV"] for h in one["half_cycles"]] == pytest.approx(
        [h["polarization_mV"] for h in two["half_cycles"]], abs=1e-9)
    # One hour per direction is 12 relaxation times tau = L^2 / (pi^2 D): each half cycle
    # ends at the steady state, up to what 20 backward-Euler steps leave of the reversal
    # transient, (1 + dt / tau)^-20 = 6e-5 of the salt polarization swing (2 x 11 mV).
    steady = one["steady_polarization_mV"]["voltage_mV"]
    tau = one["derived"]["salt_relaxation_time_s"]
    left = (1 + 180.0 / tau) ** -20 * 2 * one["steady_polarization_mV"][
        "electrolyte_concentration_mV"]
    assert abs(one["final_polarization_mV"] - steady) < left
    assert one["max_salt_balance_rel"] < 1e-12
    assert one["paper"]["value_mV"] == 50.0
    assert all(len(v["source"]) > 10 for v in one["parameters"].values())
    volts = np.array([float(row["voltage_mV"]) for row in one["rows"]])
    assert volts[:20].max() < 0 < volts[20:40].min()  # the current reverses each hour
    assert "paper Fig. S6" in _run(["symmetric", *short, "--out", str(tmp_path / "again")],
                                   tmp_path).stdout


@pytest.mark.parametrize(("setting", "message"), [
    ("symmetric.current_mA=50", "symmetric.current_mA = 50: above the limiting current"),
    ("symmetric.current_mA=0", "symmetric.current_mA = 0"),
    ("symmetric.cycles=0", "symmetric.cycles = 0"),
    ("symmetric.electrode_area_cm2=-1", "symmetric.electrode_area_cm2 = -1"),
    # a case's [parameters] table (fem.electrochem.parameters.OVERRIDABLE)
    ("parameters.spe.diffusivity.value=-1",
     "parameters.spe.diffusivity: expected a table with 'value' and 'source'"),
    ("parameters.density_g_cm3.value=3", "parameters.density_g_cm3: not a parameter a case "
     "can set; allowed: ['alpha_anodic'"),
])
def test_symmetric_bad_input_is_one_line_and_leaves_no_folder(tmp_path: Path, setting: str,
                                                              message: str) -> None:
    out = tmp_path / "out"
    r = _run(["symmetric", "--set", setting, "--out", str(out)], tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()


def test_case_parameters_reach_the_model_with_their_source(tmp_path: Path) -> None:
    # A case's [parameters] table replaces values of the shared set for that run: halving
    # the separator conductivity doubles the ohmic part of the steady polarization (closed
    # form, i L / kappa) and leaves the salt part; a quantity string is converted (1e-12
    # m^2/s = 1e-8 cm2/s, the default separator diffusivity: the concentration part is
    # unchanged); summary.json records the value with "CASE: <source>".
    short = ["--set", "symmetric.cycles=1", "--set", "symmetric.steps_per_half_cycle=4",
             "--set", "symmetric.cells=20"]
    base = tmp_path / "base"
    r = _run(["symmetric", *short, "--out", str(base)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    sigma = default_parameters().separator.conductivity.value
    case = tmp_path / "case.toml"
    case.write_text(f"""
[parameters.separator.conductivity]
value = {sigma / 2!r}
source = "sensitivity: half the default"
[parameters.separator.diffusivity]
value = "1e-12 m^2/s"
source = "the default, in SI units"
""")
    half = tmp_path / "half"
    r = _run(["symmetric", str(case), *short, "--out", str(half)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (json.loads((d / "summary.json").read_text()) for d in (base, half))
    sa, sb = a["steady_polarization_mV"], b["steady_polarization_mV"]
    assert sb["electrolyte_ohmic_mV"] == pytest.approx(2 * sa["electrolyte_ohmic_mV"],
                                                       rel=1e-12)
    assert sb["electrolyte_concentration_mV"] == pytest.approx(
        sa["electrolyte_concentration_mV"], rel=1e-12)
    p = b["parameters"]["separator.conductivity"]
    assert p["value"] == sigma / 2 and p["source"] == "CASE: sensitivity: half the default"
    assert b["parameters"]["separator.diffusivity"]["value"] == pytest.approx(1e-8, rel=1e-12)
    assert a["parameters"]["separator.conductivity"]["value"] == sigma


def test_case_parameter_values_are_checked() -> None:
    from meshes.spec import SpecError

    p = default_parameters()

    def entry(value: object) -> dict[str, object]:
        return {"spe": {"transference": {"value": value, "source": "x"}}}

    assert p.with_overrides(entry(0.4)).spe.transference.value == 0.4
    assert p.spe.transference.value == 0.2  # the shared set is not changed
    for bad, why in ((1.0, r"must be in \(0, 1\) 1"), ("0.3 m", "wrong unit"),
                     (True, r"must be in \(0, 1\) 1"), (float("nan"), r"must be in")):
        with pytest.raises(SpecError, match=f"parameters.spe.transference.value = .*{why}"):
            p.with_overrides(entry(bad))
    with pytest.raises(SpecError, match="source: must name where the value comes from"):
        p.with_overrides({"solid_diffusivity": {"value": 1e-10, "source": " "}})
    with pytest.raises(SpecError, match=r"parameters\.spe: expected a table"):
        p.with_overrides({"spe": 3})
    d = p.with_overrides({"solid_diffusivity": {"value": "1e-15 m^2/s", "source": "x"}})
    assert d.solid_diffusivity.value == pytest.approx(1e-11, rel=1e-12)
    assert d.solid_diffusivity.unit == "cm2/s" and d.solid_diffusivity.source == "CASE: x"
