"""Benchmark: a full 2D galvanostatic discharge of the half cell, on 1 and 2 ranks.

    python benchmarks/bench_echem.py                  # rate.toml gradient section, 100 mA/g
    python benchmarks/bench_echem.py --quick          # a 1.5 x 4 um section, for a smoke run
    python benchmarks/bench_echem.py --cathode homogeneous --rate 300
    python benchmarks/bench_echem.py --refinement --ranks 1   # 3D solver study, 3 meshes
    python benchmarks/bench_echem.py --box --rate 300   # 3D column of rate3d.toml, 1 and 2 ranks
    python benchmarks/bench_echem.py --profile --cathode homogeneous --rate 300 --size-um 2

Prints a table and writes benchmarks/out/bench_echem.json. Measured per rank count: mesh size
and unknowns, time steps, Newton iterations, linear solves (one per iteration, plus one per
Jacobian assembly for the border of the galvanostatic system), Jacobian assemblies (= LU
factorisations, MUMPS), time per step and in total (mesh excluded), and the delivered capacity
(which must not depend on the rank count). Target (issue 4): one 2D full discharge at 100 mA/g
in <= 2 min on 2 cores. ``--refinement`` instead counts the Krylov iterations of the block-GAMG
solver (and times it against MUMPS) on one 3D voxel half cell meshed at three refinements of
the same geometry, and writes benchmarks/out/bench_echem_refinement.json. ``--box`` runs the
full discharge on the 3D voxel column of ``cases/data/rate3d.toml`` (block-GAMG Krylov
solver, equipotential electronic network; target: a 3D discharge in <= 30 min) and writes
benchmarks/out/bench_echem_box.json. ``--profile`` splits the wall time of the first time
steps of a wider rate3d.toml column into Jacobian assembly, residual assembly,
preconditioner setup (GAMG hierarchies), Krylov iterations and the rest, and writes
benchmarks/out/bench_echem_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out"
TARGET_S = 120.0
TARGET_BOX_S = 1800.0
QUICK = {
    "section": {"width_um": 1.5, "seed": 3, "mesh_size_fine_um": 0.06, "separator_um": 2.0},
    "gradient": {"thickness_um": 4.0, "loading_mg_cm2": 1.5 * 4 / 34, "lean_zone_um": 1.0,
                 "skin_thickness_um": 0.5},
    "homogeneous": {"loading_mg_cm2": 0.2},
    "protocol": {"dtheta_max": 0.02, "dt_max_s": 900.0},
}


#: Solver study (--refinement): a 1 x 1 um voxel column of the QUICK gradient membrane
#: (4 um of cathode under 1 um of separator), imaged at 0.1 um and meshed with every voxel
#: split into k^3 hexahedra: the same geometry on h = 0.1, 0.05, 0.033 um.
REFINE_BOX = {"size_um": 1.0, "height_um": 100.0, "voxel_um": 0.1, "separator_um": 1.0,
              "seed": 3}
REFINE_LEVELS = (1, 2, 3)


def refinement_worker(args: argparse.Namespace) -> None:
    from fem.electrochem.halfcell import ITERATIVE_PETSC_OPTIONS, HalfCell
    from fem.electrochem.parameters import default_parameters
    from fem.electrochem.protocol import Protocol, Step, run_protocol
    from meshes.adapter import build_on_root, distribute_voxels
    from meshes.spec import load_case
    from meshes.voxels import voxelize_case

    comm = MPI.COMM_WORLD
    case = load_case({**QUICK, "box": REFINE_BOX})
    proto = Protocol(steps=(Step(kind="cc", current_mA_g=300.0, duration_s=10.0),),
                     initial_theta=0.05)
    rows = []
    for k in REFINE_LEVELS:
        image = build_on_root(comm, lambda k=k: voxelize_case(case, args.cathode).subdivided(k))
        tm = distribute_voxels(comm, image)
        solvers = ["iterative"] + (["direct"] if k <= args.direct_max_level else [])
        for solver in solvers:
            options = ITERATIVE_PETSC_OPTIONS if solver == "iterative" else None
            cell = HalfCell(tm, default_parameters(), electronic="ideal",
                            petsc_options=options)
            comm.barrier()
            t0 = time.perf_counter()
            res = run_protocol(cell, proto)
            wall = time.perf_counter() - t0
            rows.append({
                "level": k, "voxel_um": REFINE_BOX["voxel_um"] / k, "solver": solver,
                "cells_count": tm.mesh.topology.index_map(3).size_global,
                "dofs_count": sum(V.dofmap.index_map.size_global for V in cell.spaces),
                "time_steps_count": len(res.records),
                "newton_iterations_count": sum(r.newton_iterations for r in res.records),
                "linear_solves_count": cell.linear_solves,
                "krylov_iterations_mean": (cell.linear_iterations / cell.linear_solves
                                           if solver == "iterative" else 0.0),
                "krylov_iterations_max": (cell.linear_iterations_max
                                          if solver == "iterative" else 0),
                "wall_s": wall, "s_per_solve": wall / max(cell.linear_solves, 1),
                "voltage_V": res.records[-1].voltage_V,
            })
    if comm.rank == 0:
        print("RESULT " + json.dumps(rows))


def refinement_table(rows: list[dict]) -> None:
    print(f"\n{'h um':>6} {'solver':>9} {'cells':>7} {'dofs':>8} {'steps':>5} {'solves':>6} "
          f"{'its/solve':>9} {'max its':>7} {'s/solve':>7} {'total s':>7} {'V':>12}")
    for r in rows:
        print(f"{r['voxel_um']:>6.3f} {r['solver']:>9} {r['cells_count']:>7} "
              f"{r['dofs_count']:>8} {r['time_steps_count']:>5} {r['linear_solves_count']:>6} "
              f"{r['krylov_iterations_mean']:>9.1f} {r['krylov_iterations_max']:>7} "
              f"{r['s_per_solve']:>7.3f} {r['wall_s']:>7.1f} {r['voltage_V']:>12.9f}")


def profile_worker(args: argparse.Namespace) -> None:
    """The first ``args.steps`` time steps (1, 2, 4, ... s) of a galvanostatic discharge of
    a rate3d.toml column of ``args.size_um`` width: where the time of a step goes."""
    from petsc4py import PETSc

    from fem.electrochem.halfcell import ITERATIVE_PETSC_OPTIONS, HalfCell
    from fem.electrochem.parameters import default_parameters
    from meshes.adapter import build_on_root, distribute_voxels
    from meshes.spec import load_case, read_case_toml
    from meshes.voxels import voxelize_case

    comm = MPI.COMM_WORLD
    data = read_case_toml(ROOT / "cases" / "data" / "rate3d.toml")
    data["box"] = {**data["box"], "size_um": args.size_um, "seed": args.seed}
    case = load_case(data)
    image = build_on_root(comm, lambda: voxelize_case(case, args.cathode))
    tm = distribute_voxels(comm, image)
    cell = HalfCell(tm, default_parameters(), electronic=case.electrochemistry.electronic,
                    petsc_options=ITERATIVE_PETSC_OPTIONS)
    if not cell.can_pass_current:
        if comm.rank == 0:
            print("RESULT " + json.dumps({"blocked": True}))
        return
    PETSc.Log.begin()
    krylov = PETSc.Log.Event("KSPSolve")
    cell.set_equilibrium(case.protocol["initial_theta"])
    current = cell.current_for(args.rate)
    comm.barrier()
    t0 = time.perf_counter()
    dt, newton = 1.0, 0
    for _ in range(args.steps):
        newton += cell.solve_step(dt, current=current).newton_iterations
        cell.accept()
        dt *= 2.0
    total = time.perf_counter() - t0

    def slowest(value: float) -> float:
        return float(comm.allreduce(value, op=MPI.MAX))

    t = {k: slowest(v) for k, v in cell.timing_s.items()}
    krylov_s = slowest(krylov.getPerfInfo()["time"])
    row = {
        "ranks": comm.size, "cathode": args.cathode, "size_um": args.size_um,
        "seed": args.seed, "rate_mA_g": args.rate,
        "cells_count": tm.mesh.topology.index_map(tm.mesh.topology.dim).size_global,
        "dofs_count": sum(V.dofmap.index_map.size_global for V in cell.spaces),
        "connected_interface_facets_count": cell.connected_interface_facets_count,
        "time_steps_count": args.steps, "newton_iterations_count": newton,
        "jacobian_assemblies_count": cell.jacobian_assemblies,
        "linear_solves_count": cell.linear_solves,
        "krylov_iterations_count": cell.linear_iterations,
        "total_s": total,
        "jacobian_assembly_s": t["jacobian_assembly"],
        "residual_assembly_s": t["residual_assembly"],
        "preconditioner_setup_s": t["linear_solve"] - krylov_s,
        "krylov_s": krylov_s,
        "voltage_V": cell.cell_voltage_V,
    }
    row["other_s"] = total - sum(row[k] for k in ("jacobian_assembly_s",
                                                  "residual_assembly_s",
                                                  "preconditioner_setup_s", "krylov_s"))
    if comm.rank == 0:
        print("RESULT " + json.dumps(row))


def profile_table(rows: list[dict]) -> None:
    print(f"\n{'ranks':>5} {'cells':>7} {'dofs':>8} {'Newton':>6} {'J asm':>5} "
          f"{'its':>5} {'total s':>8} {'J asm s':>8} {'F asm s':>8} {'PC set s':>8} "
          f"{'Krylov s':>8} {'other s':>8} {'V':>8}")
    for r in rows:
        print(f"{r['ranks']:>5} {r['cells_count']:>7} {r['dofs_count']:>8} "
              f"{r['newton_iterations_count']:>6} {r['jacobian_assemblies_count']:>5} "
              f"{r['krylov_iterations_count']:>5} {r['total_s']:>8.1f} "
              f"{r['jacobian_assembly_s']:>8.1f} {r['residual_assembly_s']:>8.1f} "
              f"{r['preconditioner_setup_s']:>8.1f} {r['krylov_s']:>8.1f} "
              f"{r['other_s']:>8.1f} {r['voltage_V']:>8.4f}")


def worker(args: argparse.Namespace) -> None:
    from fem.electrochem.halfcell import HalfCell
    from fem.electrochem.parameters import default_parameters
    from fem.electrochem.protocol import protocol_from_dict, run_protocol
    from meshes.adapter import build_on_root, distribute_section
    from meshes.build import build_section
    from meshes.spec import load_case, read_case_toml

    comm = MPI.COMM_WORLD
    options = None
    t0 = time.perf_counter()
    if args.box:
        from fem.electrochem.halfcell import ITERATIVE_PETSC_OPTIONS
        from meshes.adapter import distribute_voxels
        from meshes.voxels import voxelize_case

        data = ({**QUICK, "box": REFINE_BOX} if args.quick
                else read_case_toml(ROOT / "cases" / "data" / "rate3d.toml"))
        case = load_case(data)
        image = build_on_root(comm, lambda: voxelize_case(case, args.cathode))
        tm = distribute_voxels(comm, image)
        options = ITERATIVE_PETSC_OPTIONS
    else:
        data = QUICK if args.quick else read_case_toml(ROOT / "cases" / "data" / "rate.toml")
        case = load_case(data)
        sm = build_on_root(comm, lambda: build_section(case, args.cathode, threads=1))
        tm = distribute_section(comm, sm)
    t_mesh = time.perf_counter() - t0
    base = {k: v for k, v in case.protocol.items()
            if k not in ("step", "discharge_cutoff_V")}
    protocol = protocol_from_dict({**base, "step": [
        {"kind": "cc", "current_mA_g": args.rate, "until_voltage_V": 1.5}]})
    t1 = time.perf_counter()
    cell = HalfCell(tm, default_parameters(), electronic=case.electrochemistry.electronic,
                    petsc_options=options)
    t_setup = time.perf_counter() - t1
    comm.barrier()
    t2 = time.perf_counter()
    res = run_protocol(cell, protocol)
    t_run = time.perf_counter() - t2
    recs = res.records
    row = {
        "ranks": comm.size, "cathode": args.cathode, "rate_mA_g": args.rate,
        "cells_count": tm.mesh.topology.index_map(tm.mesh.topology.dim).size_global,
        "krylov_iterations_count": cell.linear_iterations,
        "dofs_count": sum(V.dofmap.index_map.size_global for V in cell.spaces),
        "mesh_s": t_mesh, "setup_s": t_setup, "discharge_s": t_run,
        "time_steps_count": len(recs),
        "newton_iterations_count": sum(r.newton_iterations for r in recs),
        "linear_solves_count": cell.linear_solves,
        "jacobian_assemblies_count": cell.jacobian_assemblies,
        "s_per_step": t_run / max(len(recs), 1),
        "capacity_mAh_g": recs[-1].capacity_mAh_g if recs else 0.0,
        "stopped_by": res.stopped_by,
    }
    if comm.rank == 0:
        print("RESULT " + json.dumps(row))


def _run_worker(ranks: int, args: list[str]) -> Any:
    """Run this script's worker under ``mpiexec -n ranks``; returns its RESULT json."""
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode != 0:
        sys.exit(f"bench_echem: {ranks} ranks failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cathode", default="gradient", choices=["gradient", "homogeneous"])
    ap.add_argument("--rate", type=float, default=100.0, help="mA/g (default 100)")
    ap.add_argument("--box", action="store_true",
                    help="the 3D voxel column of cases/data/rate3d.toml (block-GAMG solver)")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--refinement", action="store_true",
                    help="linear-solver study: Krylov iterations of the block-GAMG solver on "
                         "a 3D voxel half cell at three mesh refinements (and MUMPS)")
    ap.add_argument("--direct-max-level", type=int, default=2,
                    help="--refinement: run MUMPS up to this level too (default 2)")
    ap.add_argument("--profile", action="store_true",
                    help="where the time of a 3D column step goes: the first --steps steps "
                         "of a rate3d.toml column of --size-um width")
    ap.add_argument("--size-um", type=float, default=2.0, help="--profile: column width")
    ap.add_argument("--seed", type=int, default=1, help="--profile: realization seed")
    ap.add_argument("--steps", type=int, default=3, help="--profile: time steps")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.profile and not (0.5 <= args.size_um <= 20 and 1 <= args.steps <= 50):
        sys.exit(f"bench_echem: --size-um = {args.size_um} must be in [0.5, 20] um and "
                 f"--steps = {args.steps} in [1, 50]")
    if args.worker:
        if args.profile:
            profile_worker(args)
        else:
            refinement_worker(args) if args.refinement else worker(args)
        return
    if args.profile:
        rows = [_run_worker(n, ["--profile", "--cathode", args.cathode, "--rate",
                                str(args.rate), "--size-um", str(args.size_um),
                                "--seed", str(args.seed), "--steps", str(args.steps)])
                for n in (int(r) for r in args.ranks.split(","))]
        if any(r.get("blocked") for r in rows):
            sys.exit("bench_echem: the column has no path for the current (blocked): choose "
                     "another seed or width")
        print(f"\n{args.cathode} column {args.size_um:g} x {args.size_um:g} um (seed "
              f"{args.seed}), first {args.steps} steps (1, 2, 4, ... s) at {args.rate:g} mA/g; "
              f"seconds of the slowest rank")
        profile_table(rows)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "bench_echem_profile.json").write_text(json.dumps({"rows": rows}, indent=2)
                                                       + "\n")
        return
    if args.refinement:
        all_rows = []
        for n in (int(r) for r in args.ranks.split(",")):
            rows = [dict(r, ranks=n) for r in _run_worker(n, [
                "--refinement", "--cathode", args.cathode,
                "--direct-max-level", str(args.direct_max_level)])]
            print(f"\n{n} rank(s): {args.cathode} voxel column, 300 mA/g for 10 s, "
                  f"equipotential electronic network")
            refinement_table(rows)
            all_rows += rows
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "bench_echem_refinement.json").write_text(json.dumps({"rows": all_rows},
                                                                    indent=2) + "\n")
        return
    rows = []
    for n in (int(r) for r in args.ranks.split(",")):
        rows.append(_run_worker(n, ["--cathode", args.cathode, "--rate", str(args.rate)]
                                + (["--quick"] if args.quick else [])
                                + (["--box"] if args.box else [])))
    # LU: Jacobian factorisations (MUMPS); with --box the Krylov iterations per solve
    last = "its/solve" if args.box else "LU"
    print(f"\n{'ranks':>5} {'cells':>8} {'dofs':>8} {'steps':>6} {'Newton':>7} {'solves':>7} "
          f"{last:>9} {'s/step':>7} {'total s':>8} {'Q mAh/g':>8}")
    for r in rows:
        extra = (f"{r['krylov_iterations_count'] / max(r['linear_solves_count'], 1):>9.1f}"
                 if args.box else f"{r['jacobian_assemblies_count']:>9}")
        print(f"{r['ranks']:>5} {r['cells_count']:>8} {r['dofs_count']:>8} "
              f"{r['time_steps_count']:>6} {r['newton_iterations_count']:>7} "
              f"{r['linear_solves_count']:>7} {extra} "
              f"{r['s_per_step']:>7.2f} {r['discharge_s']:>8.1f} {r['capacity_mAh_g']:>8.2f}")
    if any("blocked" in r["stopped_by"] for r in rows):
        sys.exit("bench_echem: the cell has no path for the current (blocked): nothing was "
                 "timed; choose another seed or cathode")
    best = min(r["discharge_s"] for r in rows)
    goal = TARGET_BOX_S if args.box else TARGET_S
    met = "met" if best <= goal else "NOT met"
    target = (f"target <= {goal:.0f} s on 2 cores: {met}" if not args.quick
              else "quick run: no target")
    what = "3D column" if args.box else "2D section"
    print(f"  {args.cathode} {what} discharge at {args.rate:g} mA/g: best {best:.1f} s ({target})")
    OUT.mkdir(parents=True, exist_ok=True)
    name = "bench_echem_box.json" if args.box else "bench_echem.json"
    (OUT / name).write_text(json.dumps({"rows": rows, "target_s": goal}, indent=2) + "\n")


if __name__ == "__main__":
    main()
