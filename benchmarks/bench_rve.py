"""3D voxel RVEs: resolution convergence of the conductivity tensors, and the cost of an RVE.

Usage::

    python benchmarks/bench_rve.py [--quick] [--size-um 2] [--rve-size-um 5]
    mpiexec -n 2 python benchmarks/bench_rve.py ...

Part 1 (convergence): one realization (seed 0, box at mid-depth) of each cathode, voxelized
at decreasing voxel sizes; the diagonal of the electronic and ionic tensors per resolution
and the relative difference to the finest. Centre sampling of 100 nm wires converges
slowly (a wire is 1-3 voxels across at 0.05-0.033 um), so this table says which voxel size a
given accuracy needs.

Part 2 (cost): the default RVE (``--rve-size-um`` box at ``--rve-voxel-um``) of both
cathodes: voxelization, mesh distribution, six tensor solves (CG + GAMG: sparse LU does
not fit 1e6 hexahedra on a workstation), percolation report; cells, dofs, wall time.

Writes ``benchmarks/out/rve.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from mpi4py import MPI  # isort: split

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fem.conduction import ITERATIVE_PETSC_OPTIONS, conductivity_tensor
from fem.parameters import default_conductivities
from meshes.adapter import build_on_root, distribute_voxels
from meshes.spec import load_case
from meshes.voxels import voxelize_case

OUT = Path(__file__).resolve().parent / "out" / "rve.json"


def _say(comm: MPI.Comm, text: str) -> None:
    if comm.rank == 0:
        print(text, flush=True)


def _tensors(size: float, voxel: float, kind: str, comm: MPI.Comm,
             options: dict | None = None) -> dict:
    case = load_case({"box": {"size_um": size, "height_um": size, "voxel_um": voxel}})
    t0 = time.perf_counter()
    image = build_on_root(comm, lambda: voxelize_case(case, kind))
    t_vox = time.perf_counter() - t0
    tm = distribute_voxels(comm, image)
    stats = comm.bcast(image.stats if image is not None else None, root=0)
    p = default_conductivities()
    t1 = time.perf_counter()
    el = conductivity_tensor(tm, p.electronic(), petsc_options=options)
    ion = conductivity_tensor(tm, p.ionic(), petsc_options=options)
    t_solve = time.perf_counter() - t1
    return {"cathode": kind, "voxel_um": voxel, "size_um": size,
            "cells_count": int(comm.allreduce(tm.mesh.topology.index_map(3).size_local)),
            "electronic_diag_S_cm": np.diag(el.tensor_S_cm).tolist(),
            "ionic_diag_S_cm": np.diag(ion.tensor_S_cm).tolist(),
            "electronic_tensor_S_cm": el.tensor_S_cm.tolist(),
            "ionic_tensor_S_cm": ion.tensor_S_cm.tolist(),
            "dofs_count": max(el.n_dofs, ion.n_dofs),
            "nanowire_fraction": stats["nanowire_fraction"],
            "voxelize_s": t_vox, "solve_s": t_solve,
            "total_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="coarse resolutions, small RVE")
    ap.add_argument("--size-um", type=float, default=2.0, help="box of the convergence study")
    ap.add_argument("--rve-size-um", type=float, default=5.0)
    ap.add_argument("--rve-voxel-um", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    size = 1.0 if args.quick else args.size_um
    n_list = (10, 15, 20) if args.quick else (20, 30, 40, 50, 60)
    conv = []
    _say(comm, f"Part 1: {size:g} um box, seed 0, mid-depth, {comm.size} rank(s)")
    _say(comm, f"{'cathode':12s} {'voxel um':>9s} {'cells':>8s} {'NW frac':>8s} "
               f"{'el xx S/cm':>11s} {'el zz S/cm':>11s} {'ion xx S/cm':>11s} "
               f"{'ion zz S/cm':>11s} {'s':>6s}")
    for kind in ("gradient", "homogeneous"):
        rows = []
        for n in n_list:
            r = _tensors(size, size / n, kind, comm)
            rows.append(r)
            e, i = r["electronic_diag_S_cm"], r["ionic_diag_S_cm"]
            _say(comm, f"{kind:12s} {size / n:9.4f} {r['cells_count']:8d} "
                       f"{r['nanowire_fraction']:8.4f} {e[0]:11.3e} {e[2]:11.3e} {i[0]:11.3e} "
                       f"{i[2]:11.3e} {r['total_s']:6.1f}")
        finest = rows[-1]
        for r in rows:
            for c in ("electronic", "ionic"):
                ref = np.asarray(finest[f"{c}_diag_S_cm"])
                val = np.asarray(r[f"{c}_diag_S_cm"])
                with np.errstate(divide="ignore", invalid="ignore"):
                    r[f"{c}_rel_diff_to_finest"] = np.where(
                        ref > 0, np.abs(val / ref - 1.0), np.where(val > 0, np.inf, 0.0)
                    ).tolist()
        conv.extend(rows)
        _say(comm, f"  relative difference of the diagonal to voxel {finest['voxel_um']:.4f} um "
                   "(electronic xx/yy/zz | ionic xx/yy/zz):")
        for r in rows[:-1]:
            el, io = r["electronic_rel_diff_to_finest"], r["ionic_rel_diff_to_finest"]
            _say(comm, f"    {r['voxel_um']:.4f}: " + " ".join(f"{v:.3f}" for v in el) + " | "
                       + " ".join(f"{v:.3f}" for v in io))
    rve_size = 1.5 if args.quick else args.rve_size_um
    _say(comm, f"\nPart 2: {rve_size:g} um RVE at {args.rve_voxel_um:g} um voxels, CG + GAMG")
    rve = []
    for kind in ("gradient", "homogeneous"):
        r = _tensors(rve_size, args.rve_voxel_um, kind, comm, ITERATIVE_PETSC_OPTIONS)
        rve.append(r)
        _say(comm, f"{kind:12s} cells {r['cells_count']:9d}  dofs {r['dofs_count']:9d}  "
                   f"voxelize {r['voxelize_s']:6.1f} s  6 solves {r['solve_s']:6.1f} s  "
                   f"total {r['total_s']:6.1f} s")
        _say(comm, "  electronic diag " + " ".join(f"{v:.3e}" for v in r["electronic_diag_S_cm"])
             + " | ionic diag " + " ".join(f"{v:.3e}" for v in r["ionic_diag_S_cm"]) + " S/cm")
    if comm.rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "ranks": comm.size, "machine": platform.platform(), "quick": args.quick,
            "convergence": conv, "rve": rve}, indent=2) + "\n")
        print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
