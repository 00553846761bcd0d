"""The cycling and rate-capability commands at small size: outputs, status, bad input."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import mpiexec, run_cli

#: A thin gradient membrane (NW fraction as in the paper: loading scaled with thickness) with
#: a 2 um separator, coarse enough that a discharge takes seconds.
TINY = """
name = "tiny-ec"
[section]
width_um = 1.5
seed = 3
mesh_size_fine_um = 0.06
mesh_size_coarse_um = 0.5
separator_um = 2.0
[gradient]
thickness_um = 4.0
loading_mg_cm2 = 0.17647
lean_zone_um = 1.0
skin_thickness_um = 0.5
[homogeneous]
loading_mg_cm2 = 0.2
[electrochemistry]
electronic = "ideal"
[protocol]
initial_theta = 0.01
dtheta_max = 0.05
dt_max_s = 900.0
"""

CYCLE = TINY + """
[[protocol.step]]
kind = "cc"
current_mA_g = 300.0
until_voltage_V = 2.6
label = "discharge"
[[protocol.step]]
kind = "rest"
duration_s = 300.0
[[protocol.step]]
kind = "cc"
current_mA_g = -300.0
until_voltage_V = 3.4
label = "charge"
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd)


@pytest.fixture(scope="module")
def cycled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("cycle")
    case = tmp / "cycle.toml"
    case.write_text(CYCLE)
    out = tmp / "out"
    r = _run(["cycle", str(case), "--cathode", "gradient", "--out", str(out), "-q"], tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads((out / "summary.json").read_text())


def test_cycle_writes_records_fields_and_summary(cycled: tuple[Path, dict]) -> None:
    out, summary = cycled
    g = summary["gradient"]
    assert g["status"] == "completed"
    assert [s["stopped_by"] for s in g["steps"]] == ["cutoff", "duration", "cutoff"]
    assert g["steps"][0]["end_voltage_V"] == pytest.approx(2.6, abs=1e-4)
    assert g["steps"][2]["end_voltage_V"] == pytest.approx(3.4, abs=1e-4)
    assert g["steps"][0]["capacity_mAh_g"] > 10  # it did discharge
    assert g["max_charge_balance_rel"] < 1e-8 and g["max_li_balance_rel"] < 1e-8
    assert 0 < g["connected_interface_facets_count"] <= g["interface_facets_count"]
    # Every parameter in the summary has its source.
    assert all(len(v["source"]) > 10 for v in summary["parameters"].values())
    with (out / "gradient" / "cycling.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 5
    for col in ("time_s", "voltage_V", "current_mA_g", "capacity_mAh_g", "kinetic_cathode_V"):
        assert col in rows[0]
    for name in ("solid_lithium.bp", "solid_potential.bp", "electrolyte.bp"):
        assert (out / "gradient" / "fields" / name).is_dir()
    assert (out / "gradient" / "voltage.png").stat().st_size > 0
    assert (out / "gradient" / "particles.csv").stat().st_size > 0
    assert g["utilization"]["particles_count"] > 0


def test_rate_study_table_and_figures(tmp_path: Path) -> None:
    case = tmp_path / "rate.toml"
    case.write_text(TINY)
    out = tmp_path / "rate"
    r = _run(["rate", str(case), "--rates", "100,600", "--out", str(out), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    for name in ("rate_capability.csv", "rate_capability.png", "voltage_curves.png"):
        assert (out / name).stat().st_size > 0
    g = [x["capacity_mAh_g"] for x in s["gradient"]["rates"]]
    assert g[0] > 100 and g[1] <= g[0] + 1e-6  # a higher rate never gives more capacity
    for x in s["gradient"]["rates"]:
        b = x["overpotentials_at_half_capacity_V"]
        parts = [v for k, v in b.items() if k not in ("voltage_V", "capacity_mAh_g")]
        assert sum(parts) == pytest.approx(b["voltage_V"], abs=1e-9)
    # The printed table has both cathodes.
    assert "gradient" in r.stdout and "homogeneous" in r.stdout


def test_rate_ensemble_over_seeds(tmp_path: Path) -> None:
    # Two realizations (section.seed 3 and 4): each seed's whole study in seed<s>/, and the
    # ensemble's mean and Student-t 95 % CI of the capacity computed from those studies.
    case = tmp_path / "rate.toml"
    case.write_text(TINY)
    out = tmp_path / "ens"
    r = _run(["rate", str(case), "--rates", "300", "--seeds", "2", "--cathode", "gradient",
              "--out", str(out), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] is True and s["seeds"] == [3, 4]
    per = [json.loads((out / f"seed{k}" / "summary.json").read_text()) for k in (3, 4)]
    assert [p["case"]["section"]["seed"] for p in per] == [3, 4]
    # different realizations: different meshes
    assert (per[0]["gradient"]["interface_facets_count"]
            != per[1]["gradient"]["interface_facets_count"])
    caps = [p["gradient"]["rates"][0]["capacity_mAh_g"] for p in per]
    [row] = s["gradient"]["rates"]
    assert row["capacities_mAh_g"] == caps and min(caps) > 10
    mean = 0.5 * (caps[0] + caps[1])
    half = 12.706204736174698 * abs(caps[0] - caps[1]) / 2.0  # t(0.975, 1) * s / sqrt(2)
    assert row["capacity_mAh_g"] == pytest.approx(mean, rel=1e-12)
    assert row["capacity_ci95_mAh_g"] == pytest.approx([mean - half, mean + half], rel=1e-9)
    assert row["stopped_by"] == ["cutoff", "cutoff"]
    with (out / "rate_capability.csv").open() as f:
        [line] = list(csv.DictReader(f))
    assert float(line["capacity_mean_mAh_g"]) == pytest.approx(mean, rel=1e-12)
    assert line["seeds_count"] == "2" and line["blocked_count"] == "0"
    assert (out / "rate_capability.png").stat().st_size > 0
    assert "mean [95 % CI] of 2 seeds" in r.stdout
    r = _run(["rate", str(case), "--seeds", "0", "--out", str(tmp_path / "bad")], tmp_path)
    assert r.returncode == 2 and "--seeds 0: must be an integer >= 1" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()


def test_stalled_discharges_are_counted_and_named(tmp_path: Path) -> None:
    # Steps held below stall_dt_s (a tiny dtheta_max) stall both seeds' discharges after
    # stall_steps steps: the ensemble counts them, the CSV has them, the table names them.
    case = tmp_path / "rate.toml"
    case.write_text(TINY.replace("dtheta_max = 0.05", "dtheta_max = 1e-6\ndt_initial_s = 0.004\n"
                                 "stall_dt_s = 0.01\nstall_steps = 3"))
    out = tmp_path / "ens"
    r = _run(["rate", str(case), "--rates", "300", "--seeds", "2", "--cathode", "gradient",
              "--out", str(out), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    [row] = json.loads((out / "summary.json").read_text())["gradient"]["rates"]
    assert row["stopped_by"] == ["stalled", "stalled"] and row["stalled_count"] == 2
    assert row["failed_count"] == 0 and min(row["capacities_mAh_g"]) > 0
    with (out / "rate_capability.csv").open() as f:
        [line] = list(csv.DictReader(f))
    assert line["stalled_count"] == "2" and line["blocked_count"] == "0"
    assert "2 discharge(s) stalled above the cut-off" in r.stdout
    mean = row["capacity_mAh_g"]
    assert 0 < mean < 1 and f"{mean:.2g} [" in r.stdout  # not printed as 0.0
    assert "gradient 300 mA/g seed 3, gradient 300 mA/g seed 4" in r.stdout


@pytest.mark.parametrize(("extra", "message"), [
    ('[[protocol.step]]\nkind = "cc"\ncurrent_mA_g = 100.0\n',
     "needs until_voltage_V or duration_s"),
    ('[[protocol.step]]\nkind = "cc"\ncurrent_mA_g = 100.0\nuntil_voltage_V = 7.0\n',
     "until_voltage_V = 7.0, must be in [0.5, 5.0] V"),
    ("", "protocol: needs at least one step"),
])
def test_cycle_bad_protocol_is_one_line_and_leaves_no_folder(tmp_path: Path, extra: str,
                                                              message: str) -> None:
    case = tmp_path / "bad.toml"
    case.write_text(TINY + extra)
    out = tmp_path / "bad"
    r = _run(["cycle", str(case), "--out", str(out)], tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_rate_bad_rates_is_one_line(tmp_path: Path) -> None:
    case = tmp_path / "rate.toml"
    case.write_text(TINY)
    r = _run(["cycle", str(case), "--resume", "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and "--resume: no checkpoint in" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    for cmd in (["rate"], ["gitt", "--cathode", "gradient"]):
        r = _run([*cmd, str(case), "--resume", "--out", str(tmp_path / "o")], tmp_path)
        assert r.returncode == 2 and "--resume: no " in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    r = _run(["rate", str(case), "--rates", "300,300.0000001", "--out", str(tmp_path / "o")],
             tmp_path)
    assert r.returncode == 2 and "rates = 300, 300 mA/g: each rate once" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    assert not (tmp_path / "o.incomplete").exists()
    # A fresh run next to an interrupted one (kept checkpoint or .incomplete) would replace
    # it: refused; a resume of a complete run says so.
    (tmp_path / "c.checkpoint" / "gradient").mkdir(parents=True)
    (tmp_path / "r.incomplete").mkdir()
    (tmp_path / "r.incomplete" / "summary.json").write_text("{}")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "summary.json").write_text("{}")
    (tmp_path / "done" / ".cathodefem-result").write_text("")
    for args, message in (
            (["cycle", "--out", str(tmp_path / "c")], "holds the checkpoint of an interrupted "
                                                      "run: continue it with --resume"),
            (["gitt", "--out", str(tmp_path / "c")], "holds the checkpoint of an interrupted"),
            (["rate", "--out", str(tmp_path / "r")], "r.incomplete holds an interrupted run: "
                                                     "continue it with --resume, or remove"),
            (["rate", "--resume", "--out", str(tmp_path / "done")], "is complete: nothing to "
                                                                   "resume"),
            (["gitt", "--resume", "--out", str(tmp_path / "done")], "is complete: nothing to "
                                                                   "resume")):
        r = _run([args[0], str(case), *args[1:]], tmp_path)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    # A run killed outright (SIGKILL) leaves its staging folder: --resume says where it is.
    (tmp_path / ".k.partial-abc").mkdir()
    (tmp_path / ".k.partial-abc" / "summary.json").write_text("{}")
    r = _run(["rate", str(case), "--resume", "--out", str(tmp_path / "k")], tmp_path)
    assert r.returncode == 2 and "a run killed outright left" in r.stderr, r.stderr
    assert "rename it to" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _run(["rate", str(case), "--rates", "100,fast", "--out", str(tmp_path / "o")],
             tmp_path)
    assert r.returncode == 2
    assert "--rates '100,fast': expected numbers in mA/g" in r.stderr
    r = _run(["rate", str(case), "--rates", "-5", "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and "rates = [-5.0]" in r.stderr
    r = _run(["cycle", str(case), "--set", "electrochemistry.electronic=magic",
              "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and "electronic = 'magic'" in r.stderr
    # A bad protocol setting is caught before anything is built: no folder, not even an
    # .incomplete one.
    r = _run(["rate", str(case), "--set", "protocol.dtheta_max=5", "--out",
              str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and "protocol.dtheta_max = 5" in r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.incomplete").exists()


#: The TINY membrane as a 3D voxel column: 1 x 1 um, 0.1 um voxels, the whole 4 um cathode
#: under 1 um of separator (5000 hexahedra).
BOX = TINY.replace('electronic = "ideal"\n', 'electronic = "ideal"\ngeometry = "box"\n') + """
[box]
size_um = 1.0
height_um = 100.0
voxel_um = 0.1
separator_um = 1.0
seed = 3
[[protocol.step]]
kind = "cc"
current_mA_g = 300.0
duration_s = 120.0
"""


def test_cycle_on_a_3d_voxel_column_with_both_solvers(tmp_path: Path) -> None:
    # The same case on the 3D box with MUMPS and with the block-GAMG Krylov solver: the
    # same time steps and voltages (to the Newton tolerance), conserving charge and Li.
    results = {}
    for solver in ("direct", "iterative"):
        case = tmp_path / f"{solver}.toml"
        case.write_text(BOX.replace('geometry = "box"\n',
                                    f'geometry = "box"\nlinear_solver = "{solver}"\n'))
        out = tmp_path / solver
        r = _run(["cycle", str(case), "--cathode", "gradient", "--out", str(out), "-q"],
                 tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        g = json.loads((out / "summary.json").read_text())["gradient"]
        assert g["status"] == "completed"
        assert g["mesh"]["cells_count"] == 10 * 10 * 50
        assert g["active_mass_g"] > 0 and "active_mass_per_um_depth_g" not in g
        assert g["max_charge_balance_rel"] < 1e-8 and g["max_li_balance_rel"] < 1e-8
        with (out / "gradient" / "cycling.csv").open() as f:
            results[solver] = [(float(row["time_s"]), float(row["voltage_V"]))
                               for row in csv.DictReader(f)]
    direct, iterative = results["direct"], results["iterative"]
    assert len(direct) > 3 and len(direct) == len(iterative)
    for (t_d, v_d), (t_i, v_i) in zip(direct, iterative, strict=True):
        assert t_i == pytest.approx(t_d, rel=1e-12)
        assert v_i == pytest.approx(v_d, abs=1e-8)
    assert direct[-1][1] < direct[0][1] - 0.01  # it did discharge


def test_periodic_sides_need_a_box_geometry(tmp_path: Path) -> None:
    case = tmp_path / "tiny.toml"
    case.write_text(TINY)
    out = tmp_path / "o"
    r = _run(["rate", str(case), "--rates", "300", "--set", "box.sides=periodic", "--out",
              str(out)], tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "box.sides = 'periodic': applies to 3D columns only" in lines[0]
    assert not out.exists()


#: A 1 um membrane under 0.3 um of separator as a 0.5 x 0.5 um column: seed 5 meshes
#: conformingly at the first contact design (37 134 tetrahedra, 2 s); no lean zone and no
#: rGO (fill_min = 1: the lean zone's coating shells make conforming design slow).
CONFORMING = """
name = "conforming-column"
[box]
size_um = 0.5
height_um = 100.0
separator_um = 0.3
seed = 5
mesh = "conforming"
conforming_size_um = 0.05
[gradient]
thickness_um = 1.0
loading_mg_cm2 = 0.04412
rgo_wt_fraction = 0.0
skin_thickness_um = 0.2
lean_zone_um = 0.5
fill_min = 1.0
[gradient.nanowire]
diameter_um = 0.1
length_min_um = 5.0
length_max_um = 10.0
orientation = "in_plane"
[electrochemistry]
geometry = "box"
electronic = "ideal"
[protocol]
initial_theta = 0.01
dtheta_max = 0.05
dt_max_s = 900.0
[[protocol.step]]
kind = "cc"
current_mA_g = 300.0
duration_s = 60.0
"""


def test_cycle_on_a_conforming_column_on_1_and_2_ranks(tmp_path: Path) -> None:
    # box.mesh = 'conforming': the half cell on the tetrahedral column fitted to the designed
    # wires (meshes.conforming), the same steps and voltages on 1 and 2 ranks, charge and Li
    # conserved; its mesh report is the conforming box's. Compared with the voxel columns of
    # the same case (the realization's wires before the contact design moved some by up to
    # 68 nm): below.
    case = tmp_path / "conforming.toml"
    case.write_text(CONFORMING)
    runs = {}
    for ranks in (1, 2):
        out = tmp_path / f"n{ranks}"
        r = run_cli(["cycle", str(case), "--cathode", "gradient", "--out", str(out), "-q"],
                    tmp_path, ranks=ranks)
        assert r.returncode == 0, r.stderr[-3000:]
        g = json.loads((out / "summary.json").read_text())["gradient"]
        assert g["status"] == "completed"
        assert g["mesh"]["box_mesh"] == "conforming"
        assert isinstance(g["mesh"]["cells_count"], int) and g["mesh"]["cells_count"] > 1e4
        assert g["mesh"]["min_quality"] > 0.01
        assert g["mesh"]["phase_fractions"]["separator"] == pytest.approx(0.3 / 1.3)
        assert g["max_charge_balance_rel"] < 1e-8 and g["max_li_balance_rel"] < 1e-8
        with (out / "gradient" / "cycling.csv").open() as f:
            runs[ranks] = (g, list(csv.DictReader(f)))
    (g1, rows1), (g2, rows2) = runs[1], runs[2]
    assert len(rows1) == len(rows2) > 3
    for a, b in zip(rows1, rows2, strict=True):
        assert float(a["time_s"]) == pytest.approx(float(b["time_s"]), rel=1e-12)
        assert float(a["voltage_V"]) == pytest.approx(float(b["voltage_V"]), abs=1e-8)
    assert g1["connected_interface_area_um2"] == pytest.approx(
        g2["connected_interface_area_um2"], rel=1e-12)
    # The voxel column of the same realization (box.mesh = voxels, 25 nm: four voxels per
    # wire diameter) reacting through its bare faces has 1.34x the reacting surface per
    # active volume (faces step around the round wires; 1.32x on the designed wires,
    # benchmarks/bench_conforming_halfcell.py), so its kinetic loss is 15 mV smaller. With
    # voxel_surface 'auto' (weighted at 4 voxels per diameter) the faces are weighted by the
    # estimated surface normal: 0.88x, the loss within 6.3 mV, the Tafel shift
    # (2RT/F) ln(0.88) of the surface the image still lacks in the crevices at contacts.
    results = {}
    for surface in ("auto", "faces"):
        out = tmp_path / f"voxels-{surface}"
        r = run_cli(["cycle", str(case), "--cathode", "gradient", "--set", "box.mesh=voxels",
                     "--set", "box.voxel_um=0.025", "--set",
                     f"electrochemistry.voxel_surface={surface}", "--out", str(out), "-q"],
                    tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        gv = json.loads((out / "summary.json").read_text())["gradient"]
        assert gv["mesh"]["box_mesh"] == "voxels"
        assert gv["max_charge_balance_rel"] < 1e-8 and gv["max_li_balance_rel"] < 1e-8
        with (out / "gradient" / "cycling.csv").open() as f:
            first = next(iter(csv.DictReader(f)))
        results[gv["mesh"]["voxel_surface"]] = (
            gv["connected_interface_area_um2"] / gv["active_volume_um3"],
            float(first["kinetic_cathode_V"]))
    assert set(results) == {"weighted", "faces"}
    area_c = g1["connected_interface_area_um2"] / g1["active_volume_um3"]
    kinetic_c = float(rows1[0]["kinetic_cathode_V"])
    (area_f, kinetic_f), (area_w, kinetic_w) = results["faces"], results["weighted"]
    assert area_f > 1.25 * area_c
    assert 0.8 * area_c < area_w < area_c
    assert kinetic_f - kinetic_c > 0.010  # the bare faces understate the loss
    assert abs(kinetic_w - kinetic_c) < 0.5 * (kinetic_f - kinetic_c)


def test_a_resume_on_another_kind_of_column_is_refused(tmp_path: Path) -> None:
    # Before conforming half-cell columns, rate voxelized whatever box.mesh said: an
    # interrupted study of such a case holds voxel discharges under box.mesh = 'conforming'
    # and must not be continued on tetrahedra (single study and ensemble seeds). Before the
    # weighted voxel surface, voxel columns reacted through the bare faces (summaries
    # without mesh.voxel_surface): not to be continued with the weighted surface either.
    from mpi4py import MPI

    from cases.cycling import _check_same_box_mesh
    from meshes.spec import load_case, read_case_toml

    path = tmp_path / "c.toml"
    path.write_text(CONFORMING)
    case = load_case(read_case_toml(path))
    old = {"gradient": {"mesh": {"voxel_um": 0.1, "cells_count": 2600}}}
    new = {"gradient": {"mesh": {"box_mesh": "conforming"}}}
    with pytest.raises(ValueError, match=re.escape(
            "holds discharges solved on voxel columns with voxel_surface = 'faces', but "
            "box.mesh = 'conforming'")):
        _check_same_box_mesh(old, tmp_path, case, MPI.COMM_WORLD)
    _check_same_box_mesh(new, tmp_path, case, MPI.COMM_WORLD)
    (tmp_path / "seed6").mkdir()
    (tmp_path / "seed6" / "summary.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="solved on voxel columns"):
        _check_same_box_mesh({"seeds": [5, 6], **new}, tmp_path, case, MPI.COMM_WORLD)
    text = read_case_toml(path)

    def voxels(**ec: Any) -> Any:
        return load_case({**text, "box": {**text["box"], "mesh": "voxels", "voxel_um": 0.1},
                          "electrochemistry": {**text["electrochemistry"], **ec}})

    with pytest.raises(ValueError, match=re.escape(
            "solved on conforming columns, but box.mesh = 'voxels' and the gradient "
            "column's voxel surface 'faces' (electrochemistry.voxel_surface = 'auto')")):
        _check_same_box_mesh(new, tmp_path, voxels(), MPI.COMM_WORLD)
    # 'auto' on 100 nm voxels (one per wire diameter) is the bare faces, as before
    _check_same_box_mesh(old, tmp_path, voxels(), MPI.COMM_WORLD)
    with pytest.raises(ValueError, match=re.escape(
            "solved on voxel columns with voxel_surface = 'faces', but box.mesh = 'voxels' "
            "and the gradient column's voxel surface 'weighted' "
            "(electrochemistry.voxel_surface = 'weighted')")):
        _check_same_box_mesh(old, tmp_path, voxels(voxel_surface="weighted"), MPI.COMM_WORLD)
    fine = load_case({**text, "box": {**text["box"], "mesh": "voxels", "voxel_um": 0.025}})
    with pytest.raises(ValueError, match=re.escape(
            "the gradient column's voxel surface 'weighted' (electrochemistry.voxel_surface "
            "= 'auto')")):
        _check_same_box_mesh(old, tmp_path, fine, MPI.COMM_WORLD)
    weighted = {"gradient": {"mesh": {"voxel_um": 0.025, "voxel_surface": "weighted"}}}
    _check_same_box_mesh(weighted, tmp_path, fine, MPI.COMM_WORLD)
    (tmp_path / "seed6" / "summary.json").write_text(json.dumps(weighted))
    _check_same_box_mesh({"seeds": [5, 6], **weighted}, tmp_path, fine, MPI.COMM_WORLD)
    with pytest.raises(ValueError, match="solved on voxel columns with voxel_surface = "
                                         "'weighted', but"):
        _check_same_box_mesh({"seeds": [5, 6], **old}, tmp_path,
                             voxels(voxel_surface="faces"), MPI.COMM_WORLD)


def test_a_resume_of_a_summary_without_newer_keys_takes_their_defaults(tmp_path: Path) -> None:
    # An .incomplete summary written before electrochemistry.voxel_surface existed is the
    # same case (the key's default), not "another case"; a stored value that differs is.
    from mpi4py import MPI

    from cases.output import clean_json, previous_run
    from meshes.spec import load_case, read_case_toml, spec_to_dict

    path = tmp_path / "c.toml"
    path.write_text(CONFORMING)
    case = load_case(read_case_toml(path))
    stored = clean_json(spec_to_dict(case))
    del stored["electrochemistry"]["voxel_surface"]
    folder = tmp_path / "run.incomplete"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"case": stored}))
    assert previous_run(folder, case, MPI.COMM_WORLD) == {"case": stored}
    stored["electrochemistry"]["voxel_surface"] = "faces"
    (folder / "summary.json").write_text(json.dumps({"case": stored}))
    with pytest.raises(ValueError, match=re.escape(
            "another case (electrochemistry.voxel_surface differs)")):
        previous_run(folder, case, MPI.COMM_WORLD)


def test_conforming_columns_are_refused_where_they_cannot_be_built(tmp_path: Path) -> None:
    # box.mesh = 'conforming' on a 2D section, or for the tape-cast cathode (conforming boxes
    # are built for the membrane only): one line, exit 2, no folder; before, the setting was
    # ignored and the run went on with another mesh.
    for text, args, message in (
            (TINY, ["rate", "--rates", "300", "--set", "box.size_um=1", "--set",
                    "box.height_um=1"], "box.mesh = 'conforming': applies to 3D "
                                               "columns only"),
            (BOX, ["cycle", "--cathode", "homogeneous"], "conforming boxes (box.mesh = "
                                                         "'conforming') are built for the "
                                                         "gradient membrane only"),
            (BOX, ["gitt", "--cathode", "homogeneous"], "gradient membrane only")):
        case = tmp_path / "case.toml"
        case.write_text(text)
        out = tmp_path / "o"
        r = _run([args[0], str(case), *args[1:], "--set", "box.mesh=conforming", "--out",
                  str(out)], tmp_path)
        assert r.returncode == 2, r.stderr[-2000:]
        lines = [ln for ln in r.stderr.strip().splitlines() if ln]
        assert len(lines) == 1 and message in lines[0], r.stderr
        assert not out.exists() and not (tmp_path / "o.incomplete").exists()


def test_cycle_on_a_periodic_3d_voxel_column(tmp_path: Path) -> None:
    # box.sides = periodic: the column's microstructure and fields are periodic in x and y;
    # the run completes, conserves charge and Li, and differs from the insulating column.
    case = tmp_path / "box.toml"
    case.write_text(BOX)
    volts = {}
    for sides in ("periodic", "insulating"):
        out = tmp_path / sides
        r = _run(["cycle", str(case), "--cathode", "gradient", "--set", f"box.sides={sides}",
                  "--out", str(out), "-q"], tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        g = summary["gradient"]
        assert g["status"] == "completed"
        assert g["mesh"]["periodic_sides"] == (sides == "periodic")
        assert g["seam_interface_facets_count"] >= 0
        assert g["max_charge_balance_rel"] < 1e-8 and g["max_li_balance_rel"] < 1e-8
        with (out / "gradient" / "cycling.csv").open() as f:
            volts[sides] = [float(row["voltage_V"]) for row in csv.DictReader(f)]
    assert volts["periodic"][-1] < volts["periodic"][0] - 0.01
    assert abs(volts["periodic"][-1] - volts["insulating"][-1]) > 1e-4


@pytest.mark.parametrize(("setting", "message"), [
    ("box.height_um=3", "box.height_um = 3: must be >= the gradient cathode thickness 4 um"),
    ("box.separator_um=0", "box.separator_um = 0: must be > 0 um"),
    ("electrochemistry.linear_solver=cg", "linear_solver = 'cg'"),
    ("box.electronic_subdivisions=2", "box.electronic_subdivisions = 2: must be 1 for the "
     "half cell"),
])
def test_cycle_box_geometry_errors_are_one_line(tmp_path: Path, setting: str,
                                                 message: str) -> None:
    case = tmp_path / "box.toml"
    case.write_text(BOX)
    out = tmp_path / "o"
    r = _run(["cycle", str(case), "--cathode", "gradient", "--set", setting, "--out", str(out)],
             tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()


def test_interrupted_rate_study_keeps_finished_rates_as_incomplete(tmp_path: Path) -> None:
    # A rate study stopped after its first rate (here by an error raised from the progress
    # callback, as by Ctrl-C) leaves no result folder that looks complete, but keeps what it
    # finished in <out>.incomplete, marked "complete": false.
    import tomllib

    from mpi4py import MPI

    from cases.cycling import run_rate_study
    from cases.output import incomplete_path
    from meshes.spec import load_case

    case = load_case(tomllib.loads(TINY))
    out = tmp_path / "rate"

    def stop(kind: str, rate: float, capacity: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_rate_study(case, out, [300.0, 600.0], MPI.COMM_WORLD, kinds=("gradient",),
                       progress=False, on_rate=stop)
    assert not out.exists()
    kept = incomplete_path(out)
    s = json.loads((kept / "summary.json").read_text())
    assert s["complete"] is False
    [done] = s["gradient"]["rates"]
    assert done["rate_mA_g"] == 300.0 and done["capacity_mAh_g"] > 10
    assert (kept / "gradient" / "300mA_g" / "discharge.csv").stat().st_size > 0
    # A resume that would not carry over everything finished (here: only 600 mA/g) is
    # refused, as is one of another case, in one line; both keep what was kept.
    with pytest.raises(ValueError, match=r"also holds gradient 300 mA/g, which this run "
                                         r"would not carry over"):
        run_rate_study(case, out, [600.0], MPI.COMM_WORLD, kinds=("gradient",),
                       progress=False, resume_from=kept)
    other = load_case(tomllib.loads(TINY.replace("seed = 3", "seed = 5")))
    with pytest.raises(ValueError, match=r"holds a run of another case \(section.seed "
                                         r"differs\)"):
        run_rate_study(other, out, [300.0, 600.0], MPI.COMM_WORLD, kinds=("gradient",),
                       progress=False, resume_from=kept)
    assert (kept / "summary.json").is_file() and not out.exists()
    # A discharge whose CSV lost records is not taken over (it would run again).
    import shutil

    from cases.cycling import _finished_rates
    previous = json.loads((kept / "summary.json").read_text())
    assert [r for r, _ in _finished_rates(previous, kept, "gradient", [300.0, 600.0])] == [300.0]
    damaged = tmp_path / "damaged"
    shutil.copytree(kept, damaged)
    csv_file = damaged / "gradient" / "300mA_g" / "discharge.csv"
    csv_file.write_text("\n".join(csv_file.read_text().splitlines()[:-2]) + "\n")
    assert _finished_rates(previous, damaged, "gradient", [300.0, 600.0]) == []
    # The resume takes the finished 300 mA/g discharge over as it is and runs only 600 mA/g;
    # the result is complete, in the order of the rates, and the kept folder is gone.
    ran = []

    def counted(kind: str, rate: float, capacity: float) -> None:
        ran.append(rate)

    summary = run_rate_study(case, out, [300.0, 600.0], MPI.COMM_WORLD, kinds=("gradient",),
                             progress=False, resume_from=kept, on_rate=counted)
    assert summary["complete"] is True and not kept.exists()
    assert json.loads((out / "summary.json").read_text())["complete"] is True
    first, second = summary["gradient"]["rates"]
    assert first == done and second["rate_mA_g"] == 600.0
    assert 0 < second["capacity_mAh_g"] < first["capacity_mAh_g"]
    assert second["wall_time_s"] > 0 and summary["gradient"]["interface_facets_count"] > 0
    assert ran == [300.0, 600.0]  # 300 taken over (reported), 600 run
    assert (out / "gradient" / "300mA_g" / "discharge.csv").stat().st_size > 0
    assert (out / "voltage_curves.png").is_file() and (out / "rate_capability.csv").is_file()
    # A run that finishes writes the result folder, marked complete.
    summary = run_rate_study(case, out, [600.0], MPI.COMM_WORLD, kinds=("gradient",),
                             progress=False)
    assert summary["complete"] is True
    assert json.loads((out / "summary.json").read_text())["complete"] is True
    assert summary["gradient"]["rates"][0]["capacity_mAh_g"] == pytest.approx(
        second["capacity_mAh_g"], rel=1e-9)  # the resumed rate is the one run afresh


def test_blocked_column_ends_at_zero_capacity_without_petsc_warnings(tmp_path: Path) -> None:
    # Seed 3 of the 3D tape-cast column (cases/data/rate3d.toml) with resolved electronics:
    # the only wire faces the polymer connects to the separator (14, at the separator itself)
    # belong to wires not connected to the foil (fem.microstructure.wire_surface_report), so
    # no interface facet can pass current: the discharge ends at once ("blocked",
    # 0 mAh/g), the solver is never set up, and its options must not be reported as unused
    # by PETSc at exit.
    case = Path(__file__).resolve().parent.parent / "cases" / "data" / "rate3d.toml"
    out = tmp_path / "blocked"
    r = _run(["rate", str(case), "--rates", "300", "--cathode", "homogeneous",
              "--set", "box.seed=3", "--set", "electrochemistry.electronic=resolved",
              "--out", str(out), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    [row] = json.loads((out / "summary.json").read_text())["homogeneous"]["rates"]
    assert row["stopped_by"] == "blocked" and row["capacity_mAh_g"] == 0.0
    assert "options you set that were not used" not in r.stdout + r.stderr


def test_interrupted_ensemble_keeps_the_finished_rate_of_its_first_seed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An ensemble stopped in its first seed, after that seed's first rate: the result folder
    # is not written, and <out>.incomplete holds the ensemble summary (no seed done) and the
    # seed's finished rate in seed3.incomplete.
    import tomllib

    from mpi4py import MPI

    import cases.cycling as cycling
    from cases.output import incomplete_path
    from meshes.spec import load_case

    case = load_case(tomllib.loads(TINY))
    out = tmp_path / "ens"
    real_run_one = cycling._run_one
    calls = []

    def second_rate_interrupted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_one(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cycling, "_run_one", second_rate_interrupted)
    with pytest.raises(KeyboardInterrupt):
        cycling.run_rate_ensemble(case, out, [300.0, 600.0], 2, MPI.COMM_WORLD,
                                  kinds=("gradient",), progress=False)
    assert not out.exists()
    kept = incomplete_path(out)
    s = json.loads((kept / "summary.json").read_text())
    assert s["complete"] is False and s["seeds_done"] == [] and s["seeds"] == [3, 4]
    [done] = json.loads((kept / "seed3.incomplete" / "summary.json").read_text()
                        )["gradient"]["rates"]
    assert done["rate_mA_g"] == 300.0 and done["capacity_mAh_g"] > 10
    # A resume of other rates, or as a single study, is refused and keeps the folder.
    with pytest.raises(ValueError, match="holds an ensemble of other rates or seeds"):
        cycling.run_rate_ensemble(case, out, [300.0], 2, MPI.COMM_WORLD, kinds=("gradient",),
                                  progress=False, resume=True)
    with pytest.raises(ValueError, match="holds an ensemble of 2 seeds; resume with --seeds"):
        cycling.run_rate_study(case, out, [300.0, 600.0], MPI.COMM_WORLD,
                               kinds=("gradient",), progress=False, resume_from=kept)
    with pytest.raises(ValueError, match="also holds gradient 300 mA/g, which this run"):
        cycling.run_rate_ensemble(case, out, [300.0, 600.0], 2, MPI.COMM_WORLD,
                                  kinds=("homogeneous",), progress=False, resume=True)
    assert (kept / "seed3.incomplete" / "summary.json").is_file()
    # The resume takes seed 3's 300 mA/g over and runs the other three discharges.
    runs = []

    def counted(*args: object, **kwargs: object) -> object:
        runs.append(1)
        return real_run_one(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cycling, "_run_one", counted)
    summary = cycling.run_rate_ensemble(case, out, [300.0, 600.0], 2, MPI.COMM_WORLD,
                                        kinds=("gradient",), progress=False, resume=True)
    assert len(runs) == 3 and not kept.exists()
    assert summary["complete"] is True and summary["seeds_done"] == [3, 4]
    row = summary["gradient"]["rates"][0]
    assert row["capacities_mAh_g"][0] == done["capacity_mAh_g"]
    assert row["status"] == ["completed", "completed"]
    assert (out / "seed3" / "gradient" / "300mA_g" / "discharge.csv").is_file()
    # Bad input is refused before any folder, parents included.
    with pytest.raises(ValueError, match="rates"):
        cycling.run_rate_ensemble(case, tmp_path / "a" / "b" / "ens", [-1.0], 2,
                                  MPI.COMM_WORLD, kinds=("gradient",), progress=False)
    assert not (tmp_path / "a").exists()


def _signalled_cli(tmp_path: Path, args: list[str], *, at_record: int, signals: int = 1,
                   ranks: int = 1) -> subprocess.CompletedProcess[str]:
    """``cathodefem *args`` (in-process ``cases.cli.main``, under ``mpiexec -n ranks``) with
    ``signals`` SIGTERMs sent to rank 0 as its run records time step ``at_record``, before
    the record reaches the command."""
    script = tmp_path / "signalled.py"
    script.write_text(f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from mpi4py import MPI
import cases.cycling as cycling
from cases.cli import main

real = cycling.run_protocol

def signalled(cell, protocol, on_record=None, **kw):
    seen = []
    def rec(r):
        seen.append(r)
        if len(seen) == {at_record} and MPI.COMM_WORLD.rank == 0:
            for _ in range({signals}):
                os.kill(os.getpid(), signal.SIGTERM)
        if on_record is not None:
            on_record(r)
    return real(cell, protocol, on_record=rec, **kw)

cycling.run_protocol = signalled
sys.exit(main({args!r}))
""")
    cmd = [sys.executable, str(script)]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          check=False)


@pytest.mark.parametrize(("ranks", "signals", "kept_steps"), [(1, 1, 3), (2, 1, 3), (1, 2, 2)])
def test_interrupt_during_a_discharge_keeps_its_records(tmp_path: Path, ranks: int,
                                                         signals: int, kept_steps: int) -> None:
    # SIGTERM (a batch job's time limit; Ctrl-C takes the same path) sent to rank 0 in the
    # middle of a discharge, as the third time step is recorded: the run stops after that
    # step on every rank (on 2 ranks an immediate stop hung, one rank waiting in a collective
    # the other had left); a second signal stops at once, before the step is recorded. The
    # command exits with status 130; the result folder is not written, and <out>.incomplete
    # keeps the records of the interrupted discharge and its summary entry, marked
    # interrupted. The field files (ADIOS2) must be closed before the staging folder is
    # renamed, or ADIOS2 aborts the process at exit (status 134) writing into the vanished
    # folder.
    case = tmp_path / "rate.toml"
    case.write_text(TINY)
    out = tmp_path / "out"
    r = _signalled_cli(tmp_path, ["rate", str(case), "--rates", "300", "--cathode",
                                  "gradient", "--out", str(out), "-q"],
                       at_record=3, signals=signals, ranks=ranks)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "ADIOS2" not in r.stderr and "terminate called" not in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("stopping after this time step") == 1, r.stderr
    assert r.stderr.count("records of the interrupted one") == 1, r.stderr
    assert not out.exists()
    kept = out.with_name("out.incomplete")
    s = json.loads((kept / "summary.json").read_text())
    assert s["complete"] is False
    [row] = s["gradient"]["rates"]
    assert row["stopped_by"] == "interrupted" and row["time_steps_count"] == kept_steps
    with (kept / "gradient" / "300mA_g" / "discharge.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == kept_steps
    assert float(rows[-1]["capacity_mAh_g"]) == pytest.approx(row["capacity_mAh_g"])
    assert row["status"] == f"interrupted at t = {float(rows[-1]['time_s']):.6g} s"
    end = row["overpotentials_at_end_V"]
    assert end["voltage_V"] == pytest.approx(float(rows[-1]["voltage_V"]))


def test_a_signal_in_the_last_step_of_a_rate_stops_before_the_next(tmp_path: Path) -> None:
    # SIGTERM as the 300 mA/g discharge records its last step (the cut-off): that rate is
    # finished and kept, and the study stops before 600 mA/g starts (exit 130), as a batch
    # job's time limit asks. Before, the signal was acknowledged, then forgotten: every
    # remaining rate ran and the command exited 0.
    case = tmp_path / "rate.toml"
    case.write_text(TINY)
    r = _run(["rate", str(case), "--rates", "300", "--cathode", "gradient", "--out",
              str(tmp_path / "once"), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    [done] = json.loads((tmp_path / "once" / "summary.json").read_text())["gradient"]["rates"]
    last = done["time_steps_count"]
    out = tmp_path / "out"
    r = _signalled_cli(tmp_path, ["rate", str(case), "--rates", "300,600", "--cathode",
                                  "gradient", "--out", str(out), "-q"], at_record=last)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "continue with --resume" in r.stderr, r.stderr
    assert not out.exists()
    kept = json.loads((tmp_path / "out.incomplete" / "summary.json").read_text())
    first, second = kept["gradient"]["rates"]
    assert first["status"] == "completed" and first["time_steps_count"] == last
    assert second["stopped_by"] == "interrupted" and second["time_steps_count"] == 0


def test_interrupt_inside_a_petsc_callback_is_an_interrupt(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A signal that arrives while petsc4py runs a Python callback (a KSP monitor, a
    # preconditioner set-up) comes back from PETSc as a SystemError caused by the
    # KeyboardInterrupt: the command treats it as the interrupt it is (one line, status 130),
    # and any other SystemError still propagates.
    import cases.cli as cli

    def interrupted(args: object) -> int:
        raise SystemError("<built-in method solve> returned a result with an exception set"
                          ) from KeyboardInterrupt()

    monkeypatch.setattr(cli, "_run", interrupted)
    assert cli.main(["show-spec"]) == 130
    assert capsys.readouterr().err.strip() == "cathodefem: interrupted"

    def broken(args: object) -> int:
        raise SystemError("something else")

    monkeypatch.setattr(cli, "_run", broken)
    with pytest.raises(SystemError, match="something else"):
        cli.main(["show-spec"])


def test_second_signal_on_two_ranks_ends_the_job_at_once(tmp_path: Path) -> None:
    # On 2 ranks a second signal inside a time step cannot stop "at once" by raising on the
    # rank that got it (the other rank would wait for it in the step's next collective call):
    # it ends the whole job (MPI_Abort), with status 130 and one line of explanation, and
    # leaves neither a result folder nor one that looks finished.
    case = tmp_path / "rate.toml"
    case.write_text(TINY)
    out = tmp_path / "out"
    r = _signalled_cli(tmp_path, ["rate", str(case), "--rates", "300", "--cathode",
                                  "gradient", "--out", str(out), "-q"],
                       at_record=3, signals=2, ranks=2)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert r.stderr.count("ending all 2 ranks at once") == 1, r.stderr
    assert not out.exists()


def test_interrupt_while_gmsh_meshes_on_one_rank_ends_at_once(tmp_path: Path) -> None:
    # One rank: SIGTERM arrives while the second cathode's mesh is built, in compiled code
    # that does not see the signal (Gmsh, imitated by blocking the signal in the main
    # thread for two minutes). The run ends within seconds (status 130, one line), and the
    # first cathode's finished rate is kept in <out>.incomplete as after any interrupt; no
    # staging folder is left. Before, nothing happened until the build returned.
    case = tmp_path / "tiny.toml"
    case.write_text(TINY)
    script = tmp_path / "busy.py"
    script.write_text(f"""
import os, signal, sys, threading, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from mpi4py import MPI
import cases.study as study
from cases.cli import main

real = study.build_section

def busy(case, kind, *args, **kwargs):
    if kind == "gradient":
        return real(case, kind, *args, **kwargs)
    # the signal comes once the main thread is inside the "compiled" call (a Python handler
    # runs in the main thread at its next bytecode, whichever thread the signal reached)
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM, signal.SIGINT}})
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    time.sleep(120)

study.build_section = busy
sys.exit(main(["rate", {str(case)!r}, "--rates", "300", "--out", "out", "-q"]))
""")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=110, check=False)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted (SIGTERM) while a mesh was being built; ended " \
        "at once; the finished parts are in" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()
    kept = json.loads((tmp_path / "out.incomplete" / "summary.json").read_text())
    [done] = kept["gradient"]["rates"]
    assert done["status"] == "completed" and "homogeneous" not in kept
    assert not list(tmp_path.glob(".out.partial-*"))


def test_interrupt_while_rank_0_meshes_ends_every_rank(tmp_path: Path) -> None:
    # SIGTERM reaches both ranks (as from mpiexec on Ctrl-C, or a batch system) while rank 0
    # is inside compiled code that does not see the signal (Gmsh meshing, imitated here by
    # blocking the signal on rank 0 for two minutes) and rank 1 waits for its mesh. Rank 1
    # ends the whole job within seconds (status 130, one line); before, it left by itself
    # and mpiexec waited for rank 0, then for rank 1's collective partner, for ever.
    case = tmp_path / "tiny.toml"
    case.write_text(TINY)
    script = tmp_path / "busy.py"
    script.write_text(f"""
import os, signal, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from mpi4py import MPI
import cases.study as study
from cases.cli import main

pids = MPI.COMM_WORLD.allgather(os.getpid())

def busy(*args, **kwargs):
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM, signal.SIGINT}})
    # rank 1 has long passed cathodefem's start (its handlers) when rank 0 meshes; on a
    # loaded machine it may lag by a second, so the signal waits for it
    time.sleep(2)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    time.sleep(120)

study.build_section = busy
sys.exit(main(["solve", {str(case)!r}, "--cathode", "gradient", "--out", "out", "-q"]))
""")
    start = time.perf_counter()
    r = subprocess.run([mpiexec(), "-n", "2", sys.executable, str(script)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=100, check=False)
    assert time.perf_counter() - start < 60
    assert r.returncode == 130, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert r.stderr.count("interrupted (SIGTERM) outside a time step; ending all 2 ranks") == 1
    assert not (tmp_path / "out").exists()


def test_cycle_stopped_by_sigterm_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    # A cycle run with checkpoints every 2 steps gets SIGTERM (a batch job's time limit) at
    # its fifth time step: it stops after that step, exits 130 and says how to continue;
    # --resume then finishes from the checkpoint of step 4 and reproduces the records of the
    # run that was never stopped (same checkpoint cadence).
    case = tmp_path / "cycle.toml"
    case.write_text(CYCLE)
    full = tmp_path / "full"
    r = _run(["cycle", str(case), "--cathode", "gradient", "--checkpoint-every", "2",
              "--out", str(full), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    r = _signalled_cli(tmp_path, ["cycle", str(case), "--cathode", "gradient",
                                  "--checkpoint-every", "2", "--out", str(out), "-q"],
                       at_record=5)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "with --resume" in r.stderr, r.stderr
    assert not out.exists()
    r = _run(["cycle", str(case), "--cathode", "gradient", "--checkpoint-every", "2",
              "--resume", "--out", str(out), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    def records(folder: Path) -> list[dict[str, str]]:
        with (folder / "gradient" / "cycling.csv").open() as f:
            return list(csv.DictReader(f))

    a, b = records(full), records(out)
    assert len(a) > 10 and len(b) == len(a)
    for ra, rb in zip(a, b, strict=True):
        assert float(rb["time_s"]) == pytest.approx(float(ra["time_s"]), rel=1e-12)
        assert float(rb["voltage_V"]) == pytest.approx(float(ra["voltage_V"]), abs=1e-10)
    # The field files of the stopped piece (from 0 s to the step it stopped after, the
    # fifth) are in the result beside those of the resumed piece (fields/, from the
    # checkpoint of step 4 on), each with the three VTX series.
    stopped_at = float(a[4]["time_s"])
    piece = "fields_0-" + f"{stopped_at:.3f}".rstrip("0").rstrip(".") + "s"
    folders = sorted(f.name for f in (out / "gradient").glob("fields*"))
    assert folders == ["fields", piece], folders
    for name in folders:
        series = sorted(f.name for f in (out / "gradient" / name).glob("*.bp"))
        assert series == ["electrolyte.bp", "solid_lithium.bp", "solid_potential.bp"]
        assert (out / "gradient" / name / "electrolyte.bp" / "data.0").stat().st_size > 0
    assert sorted(f.name for f in (full / "gradient").glob("fields*")) == ["fields"]


def test_batch_progress_logs_every_ten_steps_and_after_five_quiet_minutes(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Off a terminal (a batch job) the progress is a log line every 10 time steps, and
    # after any step that ends 300 s or more of wall time after the last line.
    import logging

    from mpi4py import MPI

    from cases.cycling import _Progress
    from fem.electrochem.protocol import Record

    now = [0.0]
    monkeypatch.setattr(_Progress, "clock", staticmethod(lambda: now[0]))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    bar = _Progress(MPI.COMM_SELF, "run", True)
    rec = Record(step=0, label="cc", time_s=1.0, voltage_V=3.0, current_mA_g=300.0,
                 capacity_mAh_g=1.0, mean_theta=0.1, dt_s=1.0, newton_iterations=3,
                 charge_balance_rel=0.0, li_balance_rel=0.0)
    logged = []
    with caplog.at_level(logging.INFO, logger="cathodefem"):
        for k in range(1, 29):
            now[0] += 299.0 if k == 24 else 1.0  # step 24 ends 299 s after step 23
            n = len(caplog.records)
            bar.update(rec)
            if len(caplog.records) > n:
                logged.append(k)
    bar.close()
    # 10 and 20 by count; 24 ends 302 s after the line of step 20, the later ones do not
    assert logged == [10, 20, 24]
    assert "run: step 0 (cc)" in caplog.records[-1].getMessage()
