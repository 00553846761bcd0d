"""Benchmark: the half cell on a conforming column against voxel columns of the same wires.

    python benchmarks/bench_conforming_halfcell.py            # seed 5, 3 + 4 meshes
    python benchmarks/bench_conforming_halfcell.py --quick    # 1 conforming + 2 voxel meshes
    python benchmarks/bench_conforming_halfcell.py --conforming-um 0.04 --voxel-um 0.025
    mpiexec -n 2 python benchmarks/bench_conforming_halfcell.py

One realization of a thin gradient membrane (1 um thick, 0.2 um SPE skin, 0.3 um separator,
0.5 x 0.5 um column, no lean zone and no rGO: see ``CASE``) is meshed conformingly
(``meshes.conforming``: tetrahedra fitted to the designed wires) at three element sizes with
one contact design, and the *designed* wires are voxelized at 100 nm (the voxels of the
3D columns of ``cases/data/rate3d.toml``), 50, 25 and 12.5 nm
(``meshes.conforming.voxelize_designed``), so every mesh holds the same geometry. Every
voxel image is solved twice: reacting through its bare voxel faces
(``electrochemistry.voxel_surface = "faces"``) and through the faces weighted by the
estimated surface normal (``"weighted"``, the default of the cases). Each mesh is
discharged at 300 mA/g to 1.5 V from the charged state (equipotential electronic network,
block-GAMG Krylov solver). Per mesh: cells, unknowns, active volume, the reacting
(connected) wire surface and its ratio to the active volume, the voltage and the cathode's
kinetic overpotential of the first time step (1 s), the capacity at 1.5 V, the mean
discharge voltage and the wall time. Voxel images finer than 20 nm run only the first step
(``FULL_DISCHARGE_MIN_VOXEL_UM``: the 12.5 nm discharge takes over an hour on one rank).
Prints a table and writes benchmarks/out/bench_conforming_halfcell.json.

What it shows (README "Half cells on conforming columns"): the conforming column converges
(capacity within 0.02 %, first voltage within 0.8 mV from 41 k to 174 k tetrahedra); a voxel
surface steps around the round wires and its area grows as the voxels shrink (1.07-1.38x
the conforming surface per volume from 100 to 12.5 nm), and the cathode's kinetic loss is
smaller by the Tafel shift (2RT/F) ln(A_voxels / A_conforming) to 0.2 mV; the weighted
voxel surface approaches the conforming one as the voxels shrink, and so do the voltages.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out"

#: The column (the case of tests/test_cycling_cli.py::CONFORMING, discharged to 1.5 V).
CASE: dict[str, Any] = {
    "name": "conforming-halfcell",
    "box": {"size_um": 0.5, "height_um": 100.0, "separator_um": 0.3, "seed": 5,
            "mesh": "conforming", "conforming_size_um": 0.05},
    "gradient": {"thickness_um": 1.0, "loading_mg_cm2": 0.04412, "rgo_wt_fraction": 0.0,
                 "skin_thickness_um": 0.2, "lean_zone_um": 0.5, "fill_min": 1.0,
                 "nanowire": {"diameter_um": 0.1, "length_min_um": 5.0,
                              "length_max_um": 10.0, "orientation": "in_plane"}},
    "electrochemistry": {"geometry": "box", "electronic": "ideal"},
    "protocol": {"initial_theta": 0.01, "dtheta_max": 0.05, "dt_max_s": 900.0},
}
DESIGN_UM = 0.05
CONFORMING_UM = (0.04, 0.02, 0.015)
VOXEL_UM = (0.1, 0.05, 0.025, 0.0125)
RATE_MA_G = 300.0
#: voxel images finer than this run only the first time step (1 s): the full discharge of
#: the 12.5 nm image (166 k hexahedra) had reached 519 s of its 3400 s after 22 min
FULL_DISCHARGE_MIN_VOXEL_UM = 0.02


def _discharge(comm: MPI.Comm, tm: Any, label: str, size_um: float, first_step_only: bool,
               surface: str = "") -> dict[str, Any]:
    from fem.electrochem.halfcell import ITERATIVE_PETSC_OPTIONS, HalfCell
    from fem.electrochem.parameters import default_parameters
    from fem.electrochem.protocol import protocol_from_dict, run_protocol

    end = {"duration_s": 1.0} if first_step_only else {"until_voltage_V": 1.5}
    protocol = protocol_from_dict({**CASE["protocol"], "step": [
        {"kind": "cc", "current_mA_g": RATE_MA_G, **end}]})
    cell = HalfCell(tm, default_parameters(), electronic="ideal",
                    petsc_options=ITERATIVE_PETSC_OPTIONS)
    comm.barrier()
    t0 = time.perf_counter()
    try:
        res = run_protocol(cell, protocol)
        wall = time.perf_counter() - t0
        area = cell.connected_interface_area_um2()
        volume = cell.active_volume_um3()
    finally:
        cell.free()
    recs = res.records
    if not recs:  # a blocked column: no time step
        return {"mesh": label, "surface": surface, "size_um": size_um,
                "stopped_by": res.stopped_by,
                "cells_count": tm.mesh.topology.index_map(3).size_global,
                "connected_interface_area_um2": area, "wall_s": wall}
    # mean discharge voltage: energy over capacity (trapezoids in capacity)
    energy = sum(0.5 * (a.voltage_V + b.voltage_V) * (b.capacity_mAh_g - a.capacity_mAh_g)
                 for a, b in itertools.pairwise(recs))
    capacity = recs[-1].capacity_mAh_g - recs[0].capacity_mAh_g
    if comm.rank == 0:
        print(f"  {label} {surface} {size_um:g} um done", flush=True)
    return {
        "mesh": label, "surface": surface, "size_um": size_um,
        "cells_count": tm.mesh.topology.index_map(3).size_global,
        "dofs_count": sum(V.dofmap.index_map.size_global for V in cell.spaces),
        "active_volume_um3": volume, "connected_interface_area_um2": area,
        "area_per_volume_1_um": area / volume,
        "first_voltage_V": recs[0].voltage_V,
        "first_kinetic_cathode_V": recs[0].kinetic_cathode_V,
        "stopped_by": res.stopped_by,
        **({} if first_step_only else {
            "capacity_mAh_g": recs[-1].capacity_mAh_g,
            "mean_voltage_V": energy / capacity if capacity > 0 else float("nan")}),
        "time_steps_count": len(recs), "wall_s": wall,
        "max_charge_balance_rel": max(abs(r.charge_balance_rel) for r in recs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="only the coarsest conforming mesh and the two coarsest voxel "
                             "images")
    parser.add_argument("--seed", type=int, default=CASE["box"]["seed"])
    parser.add_argument("--conforming-um", type=float, nargs="+", default=CONFORMING_UM,
                        help="conforming element sizes (um; the first is the reference "
                             "design's); default %(default)s")
    parser.add_argument("--voxel-um", type=float, nargs="+", default=VOXEL_UM,
                        help="voxel sizes (um); default %(default)s")
    args = parser.parse_args()

    from meshes.adapter import build_on_root, distribute_conforming, distribute_voxels
    from meshes.conforming import mesh_conforming_box, voxelize_designed
    from meshes.spec import load_case

    comm = MPI.COMM_WORLD
    data = {**CASE, "box": {**CASE["box"], "seed": args.seed}}
    case = load_case(data)
    sizes = args.conforming_um[:1] if args.quick else args.conforming_um
    voxels = sorted(args.voxel_um, reverse=True)[:2] if args.quick else args.voxel_um
    rows = []
    first = None
    attempt = None
    for h in sizes:
        t0 = time.perf_counter()
        box = build_on_root(comm, lambda h=h, a=attempt: mesh_conforming_box(
            case, "gradient", size_fine_um=h, design_size_um=DESIGN_UM, only_attempt=a))
        t_mesh = time.perf_counter() - t0
        if first is None and comm.rank == 0:
            first = box
        attempt = comm.bcast(int(box.stats["design_attempts"]) if comm.rank == 0 and box
                             else None, root=0)
        row = _discharge(comm, distribute_conforming(comm, box), "conforming", h, False)
        row["mesh_s"] = t_mesh
        rows.append(row)
        _say(comm, row, data, args.seed, rows)
    for v in voxels:
        t0 = time.perf_counter()
        image = build_on_root(comm, lambda v=v: voxelize_designed(first, case, v))
        t_mesh = time.perf_counter() - t0
        for surface in ("faces", "weighted"):
            tm = distribute_voxels(comm, image, normals=surface == "weighted")
            row = _discharge(comm, tm, "voxels", v, v < FULL_DISCHARGE_MIN_VOXEL_UM,
                             surface)
            row["mesh_s"] = t_mesh
            rows.append(row)
            _say(comm, row, data, args.seed, rows)
    if comm.rank == 0:
        _table(rows)
        print(f"wrote {OUT / 'bench_conforming_halfcell.json'}")


def _say(comm: MPI.Comm, row: dict[str, Any], case: dict[str, Any], seed: int,
         rows: list[dict[str, Any]]) -> None:
    """Print one row and write the JSON with every row so far (rank 0)."""
    if comm.rank == 0:
        stop = row["stopped_by"]
        q = f"{row['capacity_mAh_g']:.2f} mAh/g" if "capacity_mAh_g" in row else "first step"
        print(f"{row['mesh']} {row['surface']} {row['size_um']:g} um: {row['cells_count']} "
              f"cells, {q} ("
              f"{', '.join(stop) if isinstance(stop, list) else stop}) in "
              f"{row['wall_s']:.0f} s", flush=True)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "bench_conforming_halfcell.json").write_text(json.dumps(
            {"case": case, "seed": seed, "ranks": comm.size, "rate_mA_g": RATE_MA_G,
             "rows": rows}, indent=1))


def _table(rows: list[dict[str, Any]]) -> None:
    done = [r for r in rows if "first_voltage_V" in r]
    ref = next((r for r in reversed(done) if r["mesh"] == "conforming"
                and "capacity_mAh_g" in r), None)
    print(f"\n{'mesh':>16} {'h um':>7} {'cells':>7} {'dofs':>7} {'A um2':>7} {'A/V 1/um':>8} "
          f"{'V(1 s)':>7} {'kin V':>7} {'Q mAh/g':>8} {'dQ':>7} {'<V> V':>7} {'steps':>5} "
          f"{'s':>5}")
    for r in done:
        q = r.get("capacity_mAh_g", float("nan"))
        dq = (q / ref["capacity_mAh_g"] - 1.0) * 100.0 \
            if ref is not None and ref["capacity_mAh_g"] > 0 else float("nan")
        name = f"{r['mesh']} {r.get('surface', '')}".strip()
        print(f"{name:>16} {r['size_um']:>7.4f} {r['cells_count']:>7} {r['dofs_count']:>7} "
              f"{r['connected_interface_area_um2']:>7.3f} {r['area_per_volume_1_um']:>8.2f} "
              f"{r['first_voltage_V']:>7.4f} {r['first_kinetic_cathode_V']:>7.4f} "
              f"{q:>8.2f} {dq:>+6.2f}% {r.get('mean_voltage_V', float('nan')):>7.4f} "
              f"{r['time_steps_count']:>5} {r['wall_s']:>5.0f}")


if __name__ == "__main__":
    main()
