"""GITT (paper Fig. 3h-i): the pulse/rest protocol, the analysis by Eq. 2, and its
verification: on a planar slab, where Eq. 2 is exact in the short-time limit, the virtual
GITT recovers the input solid diffusivity; beyond that limit it saturates at (V/S)^2 / tau,
whatever the diffusivity."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

import numpy as np
import pytest

from fem.electrochem.gitt import (
    analyse_gitt,
    gitt_diffusivity_cm2_s,
    gitt_protocol,
    solid_diffusion_number,
)
from fem.electrochem.halfcell import HalfCell
from fem.electrochem.parameters import Parameter
from fem.electrochem.protocol import Protocol, ProtocolError, Record, Step, run_protocol
from meshes.adapter import TaggedMesh
from meshes.tags import Phase
from tests.conftest import run_cli
from tests.meshing_helpers import structured_section
from tests.test_electrochem import _params, _tagged

COMM = MPI.COMM_WORLD
REPO = Path(__file__).resolve().parents[1]
SLAB_UM = 0.5  # active slab on the collector, under 1.5 um of polymer


def _graded(length: float, h0: float, growth: float = 1.15) -> np.ndarray:
    """Offsets 0 ... length with the first cell h0, growing geometrically."""
    xs, h = [0.0], h0
    while xs[-1] + h < length:
        xs.append(xs[-1] + h)
        h *= growth
    xs.append(length)
    return np.asarray(xs)


@pytest.fixture(scope="module")
def slab() -> TaggedMesh:
    # 1D in effect: one column of triangles, z graded to 2 nm at the slab's surface (the
    # diffusion length of the shortest pulse below is 25 nm).
    below = SLAB_UM - _graded(SLAB_UM, 0.002)[::-1]
    above = SLAB_UM + _graded(2.0 - SLAB_UM, 0.002)
    z = np.unique(np.r_[below, above])
    sec = structured_section(1, len(z) - 1, 0.2, 2.0, lambda x, zz: np.where(
        zz < SLAB_UM, int(Phase.NANOWIRE), int(Phase.SPE)), z_lines=z)
    return _tagged(sec if COMM.rank == 0 else None)


def _slab_gitt(tm: TaggedMesh, d_s_cm2_s: float, tau_s: float, current_mA_g: float = 5.0,
               pulse_steps: int = 80) -> list:
    # Fast electrolyte and fast kinetics: the slab's solid diffusion is the only transient.
    p = _params(sigma_nw_S_cm=10.0, kappa_spe_S_cm=10.0, d_e_cm2_s=1e-4, d_s_cm2_s=d_s_cm2_s)
    p = replace(p, exchange_current_cathode=Parameter(value=10.0, unit="A/m2", source="test"))
    cell = HalfCell(tm, p)
    volume, area = cell.active_volume_um3(), cell.connected_interface_area_um2()
    # V/S of the slab from the cell's own volume, cross-section and connected interface
    assert volume / cell.cross_section_um2() == pytest.approx(SLAB_UM, rel=1e-12)
    assert volume / area == pytest.approx(SLAB_UM, rel=1e-12)
    rest = 3 * SLAB_UM**2 / (d_s_cm2_s * 1e8)  # three diffusion times: rested
    proto = gitt_protocol(current_mA_g=current_mA_g, pulse_s=tau_s, rest_s=max(rest, 50 * tau_s),
                          cutoff_V=1.5, max_pulses=2, initial_theta=0.3,
                          first_dt_s=1e-6 * tau_s, pulse_steps=pulse_steps, dt_min_s=1e-9,
                          dt_initial_s=1e-6 * tau_s, dt_max_s=500.0, stall_steps=0)
    try:
        res = run_protocol(cell, proto)
    finally:
        cell.free()
    pulses = analyse_gitt(res.records, res.stopped_by, proto, float(p.ocv(0.3)),
                          active_volume_per_area_um=volume / cell.cross_section_um2(),
                          active_volume_per_interface_um=volume / area)
    assert len(pulses) == 2
    return pulses


@pytest.mark.parametrize("tau_s", [100.0, 25.0, 6.25])
def test_gitt_on_a_planar_slab_recovers_the_solid_diffusivity(slab: TaggedMesh,
                                                               tau_s: float) -> None:
    # L^2 / D = 2500 s: tau D / L^2 = 0.04, 0.01, 0.0025, where Eq. 2 (semi-infinite
    # diffusion into the slab) holds. Measured: D / D_s = 0.996, 1.000, 1.002.
    d_s = 1e-12
    for p in _slab_gitt(slab, d_s, tau_s):
        assert p.d_geometric_cm2_s == pytest.approx(d_s, rel=0.01)
        assert p.tau_s == pytest.approx(tau_s, rel=1e-9)
        # the transient dominates the steady change: the short-time regime, with teeth
        # (sqrt(pi tau D) / (2 L) = 0.18, 0.09, 0.04: Eq. 2 read backwards)
        assert p.de_s_de_t_ratio == pytest.approx(
            math.sqrt(math.pi * tau_s * d_s * 1e8) / (2 * SLAB_UM), rel=0.01)
        assert 0 < p.ir_drop_V < 1e-3  # fast kinetics and electrolyte


def test_gitt_of_a_fast_solid_saturates_at_the_body_size_over_tau(slab: TaggedMesh) -> None:
    # tau D / L^2 = 40 and 400: the slab is uniform but for the steady offset of its surface
    # over its mean, J L / (3 D), during the pulse, so dE_t / dE_s = 1 + L^2 / (3 D tau) and
    # Eq. 2 gives 4 L^2 / (pi tau) / (1 + L^2 / (3 D tau))^2: nearly 4 L^2 / (pi tau) whatever D
    # is (what happens to 100 nm wires and 10 min pulses).
    tau = 100.0
    ceiling = 4.0 / (math.pi * tau) * (SLAB_UM * 1e-4) ** 2
    estimates = []
    for d in (1e-9, 1e-8):
        p = _slab_gitt(slab, d, tau, pulse_steps=20)[1]
        d_um2_s = d * 1e8
        assert p.d_geometric_cm2_s == pytest.approx(
            ceiling / (1 + SLAB_UM**2 / (3 * d_um2_s * tau)) ** 2, rel=0.01)
        assert p.de_s_de_t_ratio > 0.99  # it says so itself
        estimates.append(p.d_geometric_cm2_s)
    # ten times the diffusivity, 1.6 % more apparent diffusivity
    assert estimates[1] / estimates[0] == pytest.approx(1.0, abs=0.02)


def _rec(step: int, t: float, v: float, dt: float, q: float) -> Record:
    return Record(step=step, label="", time_s=t, voltage_V=v, current_mA_g=0.0,
                  capacity_mAh_g=q, mean_theta=0.1 + q / 1000, dt_s=dt, newton_iterations=1,
                  charge_balance_rel=0.0, li_balance_rel=0.0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_eq2_on_given_voltages(sign: float) -> None:
    # Two pulses of 60 s written out by hand (discharge, and charge with mirrored voltages).
    proto = gitt_protocol(current_mA_g=sign * 10.0, pulse_s=60.0, rest_s=600.0,
                          cutoff_V=1.5 if sign > 0 else 4.5, max_pulses=3, initial_theta=0.5,
                          first_dt_s=0.01)
    v0 = 3.0
    dv = [0.0, -0.050, -0.058, -0.008, -0.060, -0.070, -0.017, -0.1]
    volts = [v0 + sign * d for d in dv]
    recs = [_rec(0, 0.01, volts[1], 0.01, 1), _rec(0, 30, volts[1] - sign * 0.004, 29.99, 2),
            _rec(0, 60, volts[2], 30, 3), _rec(1, 660, volts[3], 600, 3),
            _rec(2, 660.01, volts[4], 0.01, 4), _rec(2, 720, volts[5], 59.99, 5),
            _rec(3, 1320, volts[6], 600, 5), _rec(4, 1330, volts[7], 10, 6)]
    stopped = ["duration", "duration", "duration", "duration", "cutoff"]
    pulses = analyse_gitt(recs, stopped, proto, v0, active_volume_per_area_um=4.0,
                          active_volume_per_interface_um=0.025)
    assert len(pulses) == 2  # the third pulse reached the cut-off: left out
    p1, p2 = pulses
    assert p1.ir_drop_V == pytest.approx(0.050)
    assert p1.de_t_V == pytest.approx(0.008)
    assert p1.de_s_V == pytest.approx(0.008)
    assert p1.polarization_V == pytest.approx(0.050)
    assert p2.rest_voltage_before_V == pytest.approx(volts[3])
    assert p2.de_s_V == pytest.approx(0.009) and p2.de_t_V == pytest.approx(0.010)
    assert p2.first_dt_s == 0.01 and p2.tau_s == pytest.approx(60.0)
    expected = 4 / (math.pi * 60.0) * (4e-4) ** 2 * (0.009 / 0.010) ** 2
    assert p2.d_geometric_cm2_s == pytest.approx(expected, rel=1e-12)
    assert gitt_diffusivity_cm2_s(60.0, 4.0, 0.009, 0.010) == pytest.approx(expected)
    assert p2.d_interface_cm2_s == pytest.approx(expected * (0.025 / 4.0) ** 2, rel=1e-12)
    assert p1.de_s_de_t_ratio == pytest.approx(1.0) and p2.de_s_de_t_ratio == pytest.approx(0.9)
    assert p2.capacity_mAh_g == 5 and p2.pulse == 2
    # a rested voltage that rose over a discharge pulse (dE_s < 0): no diffusivity
    recs[3] = _rec(1, 660, v0 + sign * 0.001, 600, 3)
    q = analyse_gitt(recs, stopped, proto, v0, active_volume_per_area_um=4.0,
                     active_volume_per_interface_um=0.025)[0]
    assert q.de_s_V < 0 and q.d_geometric_cm2_s is None and q.de_s_de_t_ratio is None


def test_gitt_runs_to_the_cutoff_with_short_first_steps(slab: TaggedMesh,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    p = _params(d_s_cm2_s=1e-11)
    cell = HalfCell(slab, p)
    # large pulses: a handful reach the cut-off
    proto = gitt_protocol(current_mA_g=1000.0, pulse_s=60.0, rest_s=120.0, cutoff_V=2.0,
                          max_pulses=50, initial_theta=0.3, first_dt_s=1e-3, pulse_steps=10,
                          dt_max_s=60.0)
    try:
        res = run_protocol(cell, proto)
    finally:
        cell.free()
    assert res.stopped_by[-1] == "cutoff" and len(res.stopped_by) < len(proto.steps)
    assert len(res.stopped_by) % 2 == 1  # ended on a pulse
    last = [r for r in res.records if r.step == len(res.stopped_by) - 1]
    # located at the cut-off, or a pulse whose IR drop alone crosses it (its first record)
    assert last[-1].voltage_V <= 2.0 + proto.cutoff_tol_V
    assert last[-1].voltage_V == pytest.approx(2.0, abs=2 * proto.cutoff_tol_V) \
        or len(last) == 1
    for k in range(len(res.stopped_by) - 1):  # (the last one was cut at the cut-off)
        recs = [r for r in res.records if r.step == k]
        assert recs[0].dt_s == pytest.approx(1e-3)  # every pulse and rest starts short
        if k % 2 == 0:
            assert max(r.dt_s for r in recs) <= 6.0 + 1e-9  # pulse_s / pulse_steps
    pulses = analyse_gitt(res.records, res.stopped_by, proto, float(p.ocv(0.3)),
                          active_volume_per_area_um=SLAB_UM, active_volume_per_interface_um=None)
    assert len(pulses) == len(res.stopped_by) // 2 >= 3
    assert all(q.d_interface_cm2_s is None and q.d_geometric_cm2_s > 0 for q in pulses)
    caps = [q.capacity_mAh_g for q in pulses]
    assert np.allclose(np.diff(caps), 1000.0 * 60 / 3600, rtol=1e-9)

    # The running report of `cathodefem gitt` (one line per pulse once its rest has ended)
    # gives the pulses of the analysis; fed from a resume in the middle of pulse 1 or 2
    # (their first records ran before the resume), it starts at the next pulse.
    from cases.gitt import _PulseLog

    def report(records: list[Record]) -> list[str]:
        caplog.clear()
        feed = _PulseLog("slab", proto, float(p.ocv(0.3)), SLAB_UM, None, COMM)
        with caplog.at_level("INFO", logger="cathodefem"):
            for r in records:
                feed(r)
        return [m for m in caplog.messages if m.startswith("[slab] pulse ")]

    lines = report(res.records) if COMM.rank == 0 else []
    if COMM.rank == 0:
        assert len(lines) == len(pulses)
        for line, q in zip(lines, pulses, strict=True):
            assert line.startswith(f"[slab] pulse {q.pulse}: {q.capacity_mAh_g:.2f} mAh/g, "
                                   f"rested {q.rest_voltage_after_V:.4f} V, IR drop "
                                   f"{q.ir_drop_V * 1e3:.1f} mV")
            assert line.endswith(f"D (geometric area) {q.d_geometric_cm2_s:.3g} cm2/s")
        for k in (0, 2):
            start = [i for i, r in enumerate(res.records) if r.step == k][2]
            resumed = report(res.records[start:])
            assert [ln.split(":")[0] for ln in resumed] == [
                f"[slab] pulse {q.pulse}" for q in pulses[k // 2 + 1:]]


@pytest.mark.parametrize(("step", "message"), [
    ({"kind": "rest", "duration_s": 1, "dt_initial_s": -1.0}, "dt_initial_s = -1.0, must be in"),
    ({"kind": "rest", "duration_s": 1, "dt_max_s": 0.0}, "dt_max_s = 0.0, must be in"),
    ({"kind": "rest", "duration_s": 1, "end_at_cutoff": True},
     "end_at_cutoff needs a cc step with until_voltage_V"),
    ({"kind": "cc", "current_mA_g": 1, "duration_s": 1, "end_at_cutoff": 1},
     "end_at_cutoff = 1, must be true or false"),
])
def test_step_input_errors_are_one_line(step: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(")):
        Step(**step)
    with pytest.raises(ProtocolError, match="max_pulses = 0"):
        gitt_protocol(current_mA_g=10.0, pulse_s=60.0, rest_s=60.0, cutoff_V=1.5,
                      max_pulses=0, initial_theta=0.1)
    assert isinstance(gitt_protocol(current_mA_g=10.0, pulse_s=60.0, rest_s=60.0,
                                    cutoff_V=1.5, max_pulses=1, initial_theta=0.1), Protocol)


#: the tiny 2D sections of the cycling tests (a 4 um membrane and its tape-cast counterpart),
#: three large pulses: a run that ends by max_pulses, and one whose first pulse reaches 1.5 V
TINY_GITT = ["--set", "gitt.current_mA_g=300", "--set", "gitt.pulse_s=300", "--set",
             "gitt.rest_s=600", "--set", "gitt.max_pulses=3", "--set", "gitt.pulse_steps=5",
             "--set", "gitt.first_dt_s=0.01"]


def test_gitt_command_writes_pulses_and_the_figure(tmp_path: Path) -> None:
    from tests.test_cycling_cli import TINY

    case = tmp_path / "gitt.toml"
    case.write_text(TINY)
    out = tmp_path / "res"
    r = run_cli(["gitt", str(case), *TINY_GITT, "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["paper"]["gradient"]["capacity_mAh_g"] == 290.0
    assert summary["initial_voltage_V"] == pytest.approx(3.7194, abs=1e-3)  # OCV at 0.01
    g = summary["gradient"]
    assert g["status"] == "completed" and not g["reached_cutoff"]
    assert g["ended_by"] == "duration"
    assert "gitt.max_pulses = 3 ran out before the cut-off" in r.stdout
    assert g["pulses_count"] == 3
    assert g["capacity_mAh_g"] == pytest.approx(3 * 300 * 300 / 3600, rel=1e-9)
    assert g["max_li_balance_rel"] < 1e-8 and g["max_charge_balance_rel"] < 1e-8
    for p in g["pulses"]:
        # Eq. 2 from the pulse's own voltages and the cell's active volume per area
        assert p["d_geometric_cm2_s"] == pytest.approx(gitt_diffusivity_cm2_s(
            p["tau_s"], g["active_volume_per_area_um"], p["de_s_V"], p["de_t_V"]), rel=1e-12)
        assert p["ir_drop_V"] > 0 and p["de_t_V"] > 0 and p["de_s_V"] > 0
        assert p["first_dt_s"] == pytest.approx(0.01) and p["tau_s"] == pytest.approx(300)
        assert p["rest_voltage_after_V"] > p["pulse_end_voltage_V"]  # relaxes upwards
        assert 0 <= p["rest_end_slope_V_s"] < 1e-4  # still rising, slowly, after 600 s
    # V/S of the wires: the connected interface is the wire surface, r/2 = 25 nm for a
    # wire cut across (longer for one cut along its axis)
    assert 0.02 < g["active_volume_per_interface_um"] < 0.2
    rows = (out / "gradient" / "gitt_pulses.csv").read_text().splitlines()
    assert rows[0].startswith("pulse,capacity_mAh_g") and len(rows) == 4
    assert (out / "gradient" / "gitt.csv").stat().st_size > 1000
    # the tape-cast section's first pulse reaches the cut-off: no complete pulse
    h = summary["homogeneous"]
    assert h["status"] == "completed" and h["reached_cutoff"] and h["pulses_count"] == 0
    assert h["ended_by"] == "cutoff"
    assert 0 < h["capacity_mAh_g"] < 300 * 300 / 3600
    assert h["end_voltage_V"] == pytest.approx(1.5, abs=1e-3)
    assert (out / "gitt.png").stat().st_size > 10_000
    assert "D, geometric area, median [cm2/s]" in r.stdout
    # the running report: one line per pulse, the last one too (its rest ended the run)
    reported = [ln for ln in r.stdout.splitlines() if ln.startswith("[gradient] pulse ")]
    assert [ln.split(":")[0] for ln in reported] == [f"[gradient] pulse {k}" for k in (1, 2, 3)]
    assert not any(ln.startswith("[homogeneous] pulse ") for ln in r.stdout.splitlines())

    # `cathodefem plot gitt`: one figure of several runs' folders (here the same run twice,
    # told apart by their labels); a folder that is no gitt result, a figure name without a
    # known suffix and a wrong number of labels are one line each.
    fig = tmp_path / "both.png"
    r = run_cli(["plot", "gitt", str(out), str(out), "--labels", "A,B", "--out", str(fig)],
                tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 curves (gradient, A; homogeneous, A; gradient, B; homogeneous, B)" in r.stdout
    assert fig.stat().st_size > 10_000
    from cases.gitt import plot_gitt_runs

    (tmp_path / "other").mkdir()
    (tmp_path / "a_folder.png").mkdir()
    (tmp_path / "other" / "summary.json").write_text(json.dumps({"case": {}, "gradient": {}}))
    for folders, path, labels, message in (
            ([tmp_path], fig, None, "no summary.json (not a finished cathodefem gitt"),
            ([tmp_path / "other"], fig, None, "not a cathodefem gitt result"),
            ([out], tmp_path / "fig.txt", None, "must end in .png, .pdf, .svg"),
            ([out, out], fig, ["A"], "--labels: 1 given for 2 folders"),
            ([out, out], fig, ["A", " A"], "every label must be non-empty and different"),
            ([out], tmp_path / "a_folder.png", None, "is a folder; give the figure's")):
        with pytest.raises(ValueError, match=re.escape(message)):
            plot_gitt_runs(folders, path, labels)
    r = run_cli(["plot", "gitt", str(tmp_path), "--out", str(fig)], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "no summary.json" in r.stderr, r.stderr


def test_gitt_two_ranks_give_the_one_rank_pulses(tmp_path: Path) -> None:
    from tests.test_cycling_cli import TINY

    case = tmp_path / "gitt.toml"
    case.write_text(TINY)
    got = []
    for ranks in (1, 2):
        out = tmp_path / f"res{ranks}"
        r = run_cli(["gitt", str(case), "--cathode", "gradient", *TINY_GITT, "--set",
                     "gitt.max_pulses=2", "--out", str(out), "-q"], tmp_path, ranks=ranks)
        assert r.returncode == 0, r.stderr[-3000:]
        got.append(json.loads((out / "summary.json").read_text())["gradient"]["pulses"])
    assert len(got[0]) == len(got[1]) == 2
    for a, b in zip(*got, strict=True):
        assert b["de_t_V"] == pytest.approx(a["de_t_V"], rel=1e-6)
        assert b["de_s_V"] == pytest.approx(a["de_s_V"], rel=1e-6)
        assert b["d_geometric_cm2_s"] == pytest.approx(a["d_geometric_cm2_s"], rel=1e-5)


@pytest.mark.parametrize("ranks", [1, 2])
def test_gitt_stopped_by_sigterm_resumes_to_the_uninterrupted_pulses(tmp_path: Path,
                                                                    ranks: int) -> None:
    # The paper's 10 mA/g titration runs for hours: a batch job's time limit (SIGTERM) stops
    # it after a time step, --resume continues from the last checkpoint, and the pulses and
    # records are those of the run that was never stopped, on 1 and on 2 ranks (each rank
    # its own state files). A resume with other settings is refused in one line, leaving
    # the checkpoint for the right ones.
    from tests.test_cycling_cli import TINY, _signalled_cli

    case = tmp_path / "gitt.toml"
    case.write_text(TINY)
    args = ["gitt", str(case), "--cathode", "gradient", *TINY_GITT, "--set",
            "gitt.max_pulses=2", "--checkpoint-every", "5", "-q"]
    full, out = tmp_path / "full", tmp_path / "out"
    r = run_cli([*args, "--out", str(full)], tmp_path, ranks=ranks)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "full.checkpoint").exists()  # removed when the run completed
    r = _signalled_cli(tmp_path, [*args, "--out", str(out)], at_record=23, ranks=ranks)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "with --resume" in r.stderr, r.stderr
    assert not out.exists()
    states = sorted(p.name for p in (tmp_path / "out.checkpoint" / "gradient").glob("*.npz"))
    assert states == [f"state_rank{k}_of{ranks}_at20.npz" for k in range(ranks)]
    r = run_cli([*args, "--set", "gitt.rest_s=700", "--resume", "--out", str(out)], tmp_path,
                ranks=ranks)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "other settings (protocol.steps.1.duration_s differs)" in r.stderr, r.stderr
    assert not out.exists() and (tmp_path / "out.checkpoint").is_dir()
    r = run_cli([*args, "--resume", "--out", str(out)], tmp_path, ranks=ranks)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "out.checkpoint").exists()

    def summary(folder: Path) -> dict[str, Any]:
        return json.loads((folder / "summary.json").read_text())["gradient"]

    a, b = summary(full), summary(out)
    assert a["time_steps_count"] == b["time_steps_count"] > 23 and a["pulses_count"] == 2
    for pa, pb in zip(a["pulses"], b["pulses"], strict=True):
        assert pb["de_s_V"] == pytest.approx(pa["de_s_V"], rel=1e-9)
        assert pb["de_t_V"] == pytest.approx(pa["de_t_V"], rel=1e-9)
    rows = [(full / "gradient" / "gitt.csv").read_text().splitlines(),
            (out / "gradient" / "gitt.csv").read_text().splitlines()]
    assert len(rows[0]) == len(rows[1])


def test_a_completed_run_removes_only_its_own_checkpoints(tmp_path: Path) -> None:
    # gitt/cycle --resume --cathode homogeneous after a run of both cathodes was stopped:
    # the gradient's checkpoint (hours of titration) must survive the homogeneous one's end.
    from cases.cycling import checkpoint_folder, drop_checkpoints_when_completed

    out = tmp_path / "res"
    for kind in ("gradient", "homogeneous"):
        (checkpoint_folder(out) / kind).mkdir(parents=True)
        (checkpoint_folder(out) / kind / "run.json").write_text("{}")
    drop_checkpoints_when_completed(out, {"homogeneous": "completed"}, COMM)
    assert (checkpoint_folder(out) / "gradient" / "run.json").is_file()
    assert not (checkpoint_folder(out) / "homogeneous").exists()
    drop_checkpoints_when_completed(out, {"gradient": "stopped: Newton failed"}, COMM)
    assert (checkpoint_folder(out) / "gradient" / "run.json").is_file()
    drop_checkpoints_when_completed(out, {"gradient": "blocked"}, COMM)
    assert not checkpoint_folder(out).exists()


def test_a_cutoff_crossed_by_the_ir_drop_alone_ends_on_the_shortest_step(
        slab: TaggedMesh) -> None:
    # 2.76 V at rest, a 0.1 V cut-off margin and a kinetic drop of about 0.2 V: no step length
    # ends on the cut-off; the run ends on one step of dt_min_s, below it
    cell = HalfCell(slab, _params())
    proto = gitt_protocol(current_mA_g=2000.0, pulse_s=60.0, rest_s=60.0, cutoff_V=2.66,
                          max_pulses=3, initial_theta=0.3, first_dt_s=1e-3, dt_min_s=1e-5)
    try:
        res = run_protocol(cell, proto)
    finally:
        cell.free()
    assert res.stopped_by == ["cutoff"]
    assert len(res.records) == 1
    assert res.records[0].dt_s == pytest.approx(1e-5)
    assert res.records[0].voltage_V < 2.66 - 0.05


def test_a_stalled_pulse_ends_the_protocol(slab: TaggedMesh) -> None:
    # steps held below stall_dt_s by a tiny dtheta_max: the pulse stalls, and a pulse that
    # ends the protocol at its cut-off also ends it when it stalls
    proto = Protocol(steps=(Step(kind="cc", current_mA_g=300.0, until_voltage_V=1.5,
                                 duration_s=0.1, end_at_cutoff=True),
                            Step(kind="rest", duration_s=0.01)),
                     dt_initial_s=0.004, dt_max_s=0.02, dtheta_max=1e-6, stall_dt_s=0.01,
                     stall_steps=6)
    cell = HalfCell(slab, _params())
    try:
        res = run_protocol(cell, proto)
    finally:
        cell.free()
    assert res.stopped_by == ["stalled"] and len(res.records) == 6


@pytest.mark.parametrize(("setting", "message"), [
    ("gitt.pulse_s=0", "gitt.pulse_s = 0: must be in"),
    ("gitt.current_mA_g=-10", "gitt.current_mA_g = -10: must be in"),
    ("gitt.max_pulses=0", "gitt.max_pulses = 0: must be in"),
    ("gitt.first_dt_s=100", "gitt.first_dt_s = 100: must be <= 1/10 of pulse_s and rest_s"),
    ("gitt.cutoff_V=3.9", "gitt.cutoff_V = 3.9: must be below the open-circuit voltage"),
    ("gitt.first_dt_s=1e-7", "gitt.first_dt_s = 1e-07: must be >= protocol.dt_min_s = 1e-06"),
    ("protocol.dtheta_max=5", "protocol.dtheta_max = 5"),
    ("protocol.typo=1", "protocol.typo: unknown key"),
    ("protocol.dt_min_s='fast'", "dt_min_s"),
])
def test_gitt_bad_input_is_one_line(tmp_path: Path, setting: str, message: str) -> None:
    from tests.test_cycling_cli import TINY

    case = tmp_path / "gitt.toml"
    case.write_text(TINY)
    out = tmp_path / "res"
    r = run_cli(["gitt", str(case), "--set", setting, "--out", str(out)], tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists() and not (tmp_path / "res.incomplete").exists()


def test_gitt_protocol_of_a_case_without_a_protocol_table() -> None:
    # the packaged default case has no [protocol]: the GITT starts at the default 0.01
    from cases.cli import load_case_with_overrides
    from cases.gitt import gitt_case_protocol

    proto = gitt_case_protocol(load_case_with_overrides(None, []))
    assert proto.initial_theta == 0.01 and len(proto.steps) == 800
    assert proto.steps[0].end_at_cutoff and proto.steps[0].dt_max_s == pytest.approx(30.0)
    assert proto.steps[1].kind == "rest" and proto.steps[1].dt_initial_s == pytest.approx(1e-3)


def test_gitt_reports_a_blocked_column(tmp_path: Path) -> None:
    # Seed 3 of the 3D tape-cast column with resolved electronics passes no current
    # (tests/test_cycling_cli.py): blocked, no pulse, exit status 0, and it says so.
    out = tmp_path / "blocked"
    r = run_cli(["gitt", str(REPO / "cases" / "data" / "rate3d.toml"), "--cathode",
                 "homogeneous", "--set", "box.seed=3", "--set",
                 "electrochemistry.electronic=resolved", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    h = json.loads((out / "summary.json").read_text())["homogeneous"]
    assert h["status"] == "blocked" and h["connected_interface_facets_count"] == 0
    assert h["pulses_count"] == 0 and h["capacity_mAh_g"] == 0 and not h["reached_cutoff"]
    assert "blocked" in r.stdout


@pytest.fixture(scope="module")
def wire() -> TaggedMesh:
    # half a wire of radius 0.25 um on the collector (mirror symmetry: a full wire) in polymer
    from tests.meshing_helpers import half_disk_section

    return _tagged(half_disk_section(1.0, 1.0, 0.25, 0.03) if COMM.rank == 0 else None)


def test_gitt_of_a_single_wire_saturates_at_its_radius_over_tau(wire: TaggedMesh) -> None:
    # tau D / R^2 = 16 and 160: the wire is uniform but for the steady offset J R / (4 D) of its
    # surface over its mean, so with S the wire surface (V/S = R/2) Eq. 2 gives
    # R^2 / (pi tau) / (1 + R^2 / (8 D tau))^2: the bound the membrane's 100 nm wires sit at.
    radius, tau = 0.25, 100.0
    estimates = []
    for d in (1e-10, 1e-9):
        p = _params(sigma_nw_S_cm=10.0, kappa_spe_S_cm=10.0, d_e_cm2_s=1e-4, d_s_cm2_s=d)
        p = replace(p, exchange_current_cathode=Parameter(value=10.0, unit="A/m2",
                                                          source="test"))
        cell = HalfCell(wire, p)
        volume, area = cell.active_volume_um3(), cell.connected_interface_area_um2()
        proto = gitt_protocol(current_mA_g=20.0, pulse_s=tau, rest_s=300.0, cutoff_V=1.5,
                              max_pulses=2, initial_theta=0.3, first_dt_s=1e-6 * tau,
                              pulse_steps=20, dt_min_s=1e-9, dt_initial_s=1e-4,
                              stall_steps=0)
        try:
            res = run_protocol(cell, proto)
        finally:
            cell.free()
        # the polygonal half circle: V/S = R/2 to the mesh's chord error
        assert volume / area == pytest.approx(radius / 2, rel=0.01)
        q = analyse_gitt(res.records, res.stopped_by, proto, float(p.ocv(0.3)),
                         active_volume_per_area_um=volume / 1.0,
                         active_volume_per_interface_um=volume / area)[1]
        d_um2_s = d * 1e8
        bound = (radius * 1e-4) ** 2 / (math.pi * tau) / (
            1 + radius**2 / (8 * d_um2_s * tau)) ** 2
        # measured: 0.9967 of it for both, the square of the chord error of V/S (0.9983)
        assert q.d_interface_cm2_s == pytest.approx(bound, rel=0.02)
        assert q.de_s_de_t_ratio > 0.99
        assert solid_diffusion_number(tau, d, volume / area) > 10
        estimates.append(q.d_interface_cm2_s)
    assert estimates[1] / estimates[0] == pytest.approx(1.0, abs=0.02)
