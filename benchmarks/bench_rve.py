"""3D voxel RVEs: resolution convergence of the conductivity tensors, and the cost of an RVE.

Usage::

    python benchmarks/bench_rve.py [--quick] [--size-um 2] [--rve-size-um 5] [--parts 1,2,3]
    mpiexec -n 2 python benchmarks/bench_rve.py ...

Part 1 (convergence): one realization (seed 0, box at mid-depth) of each cathode, voxelized
at decreasing voxel sizes; the diagonal of the electronic and ionic tensors per resolution
and the relative difference to the finest. Centre sampling of 100 nm wires converges
slowly (a wire is 1-3 voxels across at 0.05-0.033 um), so this table says which voxel size a
given accuracy needs.

Part 2 (cost): the default RVE (``--rve-size-um`` box at ``--rve-voxel-um``) of both
cathodes: voxelization, mesh distribution, six tensor solves (CG + GAMG: sparse LU does
not fit 1e6 hexahedra on a workstation), percolation report; cells, dofs, wall time.

Part 3 (electronic tensor on finer voxels, ``box.electronic_subdivisions``): for
``--sub-seeds`` boxes of ``--sub-size-um`` at mid-depth of the membrane (with its rGO
flakes), the electronic tensor of the ``--rve-voxel-um`` image, the one on a mesh of the
electronic voxels ``--subdivisions`` times finer, and the one of the whole image at that
finer voxel size (the reference it must equal); cells and wall time of each.

Part 4 (percolation report against the voxel size): for ``--perc-seeds`` boxes of
``--perc-size-um`` at mid-depth of both cathodes, the percolation report
(:func:`fem.microstructure.image_percolation`, on the image: no mesh) of the phase image at
``--rve-voxel-um`` and at 2 and 4 times finer voxels (the report ``cathodefem rve`` gives
with ``box.electronic_subdivisions`` = 2 or 4); mean per voxel size and the time per image.
Runs on rank 0 only.

``--parts`` picks the parts (default ``1,2,3``). Writes ``benchmarks/out/rve.json``.
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
from meshes.adapter import build_on_root, distribute_electronic_voxels, distribute_voxels
from meshes.spec import load_case
from meshes.voxels import electronic_image, voxelize_case

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


def _electronic(case_box: dict, comm: MPI.Comm, finer: bool) -> dict:
    """Electronic tensor of the membrane box ``case_box``: on the phase image, or (``finer``)
    on the mesh of the electronic voxels ``box.electronic_subdivisions`` times finer."""
    case = load_case({"box": case_box})
    t0 = time.perf_counter()
    if finer:
        image = build_on_root(comm, lambda: electronic_image(case, "gradient"))
        tm = distribute_electronic_voxels(comm, image)
    else:
        image = build_on_root(comm, lambda: voxelize_case(case, "gradient"))
        tm = distribute_voxels(comm, image)
    el = conductivity_tensor(tm, default_conductivities().electronic(),
                             petsc_options=ITERATIVE_PETSC_OPTIONS)
    return {"tensor_S_cm": el.tensor_S_cm.tolist(),
            "cells_count": int(comm.allreduce(tm.mesh.topology.index_map(3).size_local)),
            "total_s": time.perf_counter() - t0}


def finer_electronic(size: float, voxel: float, k: int, seeds: int, comm: MPI.Comm) -> dict:
    """Part 3: phase image vs electronic voxels k times finer vs the whole finer image."""
    _say(comm, f"\nPart 3: electronic tensor, {size:g} um membrane boxes at mid-depth, seeds "
               f"0-{seeds - 1}: {voxel:g} um image | electronic voxels / {k} | whole "
               f"{voxel / k:g} um image (CG + GAMG)")
    _say(comm, f"{'seed':>4s} {'el xx S/cm':>11s} {'el yy S/cm':>11s} {'el zz S/cm':>11s} "
               f"{'cells':>8s} {'s':>6s}  (three rows per seed)  max |fine - whole| / max|whole|")
    rows = []
    for seed in range(seeds):
        box = {"size_um": size, "height_um": size, "seed": seed, "voxel_um": voxel}
        coarse = _electronic(box, comm, finer=False)
        fine = _electronic({**box, "electronic_subdivisions": k}, comm, finer=True)
        whole = _electronic({**box, "voxel_um": voxel / k}, comm, finer=False)
        ref = np.asarray(whole["tensor_S_cm"])
        diff = float(np.abs(np.asarray(fine["tensor_S_cm"]) - ref).max()
                     / max(np.abs(ref).max(), 1e-300))
        rows.append({"seed": seed, "coarse": coarse, "finer": fine, "whole_finer": whole,
                     "finer_vs_whole_rel": diff})
        for name, r in (("image", coarse), ("finer", fine), ("whole", whole)):
            d = np.diag(np.asarray(r["tensor_S_cm"]))
            _say(comm, f"{seed:4d} " + " ".join(f"{v:11.3e}" for v in d)
                       + f" {r['cells_count']:8d} {r['total_s']:6.1f}  {name}"
                       + (f"  {diff:.1e}" if name == "finer" else ""))
    mean = {name: np.mean([np.diag(np.asarray(r[name]["tensor_S_cm"])) for r in rows],
                          axis=0).tolist() for name in ("coarse", "finer", "whole_finer")}
    _say(comm, "mean diagonal: " + " | ".join(
        f"{name} " + " ".join(f"{v:.3e}" for v in m) for name, m in mean.items()) + " S/cm")
    return {"size_um": size, "voxel_um": voxel, "subdivisions": k, "runs": rows,
            "mean_diag_S_cm": mean,
            "max_finer_vs_whole_rel": max(r["finer_vs_whole_rel"] for r in rows)}


PERCOLATION_KEYS = ("nanowire_electronic_connected_fraction",
                    "nanowire_ion_accessible_fraction", "dead_active_fraction",
                    "n_nanowire_particles_count")


def percolation_resolution(size: float, voxel: float, seeds: int, comm: MPI.Comm) -> dict:
    """Part 4: the percolation report of one box per seed at voxel, voxel / 2 and / 4."""
    from fem.microstructure import image_percolation

    out: dict = {"size_um": size, "voxels_um": [voxel, voxel / 2, voxel / 4], "runs": []}
    if comm.rank != 0:
        return out
    print(f"\nPart 4: percolation report, {size:g} um boxes at mid-depth, seeds "
          f"0-{seeds - 1}, on the image (rank 0)", flush=True)
    print(f"{'cathode':12s} {'seed':>4s} {'voxel um':>9s} {'NW to bottom':>12s} "
          f"{'NW ion-acc':>10s} {'dead':>7s} {'NW pieces':>9s} {'s':>6s}", flush=True)
    for kind in ("gradient", "homogeneous"):
        for seed in range(seeds):
            for h in out["voxels_um"]:
                case = load_case({"box": {"size_um": size, "height_um": size, "seed": seed,
                                          "voxel_um": h}})
                t0 = time.perf_counter()
                report = image_percolation(voxelize_case(case, kind).labels)
                dt = time.perf_counter() - t0
                out["runs"].append({"cathode": kind, "seed": seed, "voxel_um": h,
                                    "time_s": dt, **report})
                print(f"{kind:12s} {seed:4d} {h:9.4f} "
                      f"{report['nanowire_electronic_connected_fraction']:12.4f} "
                      f"{report['nanowire_ion_accessible_fraction']:10.4f} "
                      f"{report['dead_active_fraction']:7.4f} "
                      f"{report['n_nanowire_particles_count']:9d} {dt:6.1f}", flush=True)
    out["mean"] = {}
    print(f"\nmean over seeds: {', '.join(PERCOLATION_KEYS)}")
    for kind in ("gradient", "homogeneous"):
        for h in out["voxels_um"]:
            rows = [r for r in out["runs"] if r["cathode"] == kind and r["voxel_um"] == h]
            mean = {k: float(np.mean([r[k] for r in rows])) for k in PERCOLATION_KEYS}
            out["mean"][f"{kind} {h:g}"] = mean
            print(f"{kind:12s} {h:9.4f} " + " ".join(f"{v:10.4g}" for v in mean.values()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="coarse resolutions, small RVE")
    ap.add_argument("--size-um", type=float, default=2.0, help="box of the convergence study")
    ap.add_argument("--rve-size-um", type=float, default=5.0)
    ap.add_argument("--rve-voxel-um", type=float, default=0.05)
    ap.add_argument("--sub-size-um", type=float, default=1.0, help="boxes of part 3")
    ap.add_argument("--sub-seeds", type=int, default=10, help="boxes of part 3")
    ap.add_argument("--subdivisions", type=int, default=4, help="k of part 3")
    ap.add_argument("--perc-size-um", type=float, default=3.0, help="boxes of part 4")
    ap.add_argument("--perc-seeds", type=int, default=10, help="boxes of part 4")
    ap.add_argument("--parts", default="1,2,3", help="comma-separated parts to run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    parts = {int(v) for v in args.parts.split(",")}
    size = 1.0 if args.quick else args.size_um
    n_list = (10, 15, 20) if args.quick else (20, 30, 40, 50, 60)
    conv: list[dict] = []
    rve: list[dict] = []
    sub: dict | None = None
    if 1 in parts:
        conv = convergence(size, n_list, comm)
    rve_size = 1.5 if args.quick else args.rve_size_um
    if 2 in parts:
        rve = cost(rve_size, args.rve_voxel_um, comm)
    if 3 in parts:
        sub = finer_electronic(0.6 if args.quick else args.sub_size_um, args.rve_voxel_um,
                               args.subdivisions, 2 if args.quick else args.sub_seeds, comm)
    perc: dict | None = None
    if 4 in parts:
        perc = percolation_resolution(1.0 if args.quick else args.perc_size_um,
                                      args.rve_voxel_um, 2 if args.quick else args.perc_seeds,
                                      comm)
    if comm.rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "ranks": comm.size, "machine": platform.platform(), "quick": args.quick,
            "convergence": conv, "rve": rve, "finer_electronic": sub,
            "percolation_resolution": perc}, indent=2) + "\n")
        print(f"\nwritten {args.out}")
    return 0


def convergence(size: float, n_list: tuple[int, ...], comm: MPI.Comm) -> list[dict]:
    """Part 1: the tensors of one box at decreasing voxel sizes."""
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
    return conv


def cost(rve_size: float, voxel: float, comm: MPI.Comm) -> list[dict]:
    """Part 2: cost of the default RVE of both cathodes."""
    _say(comm, f"\nPart 2: {rve_size:g} um RVE at {voxel:g} um voxels, CG + GAMG")
    rve = []
    for kind in ("gradient", "homogeneous"):
        r = _tensors(rve_size, voxel, kind, comm, ITERATIVE_PETSC_OPTIONS)
        rve.append(r)
        _say(comm, f"{kind:12s} cells {r['cells_count']:9d}  dofs {r['dofs_count']:9d}  "
                   f"voxelize {r['voxelize_s']:6.1f} s  6 solves {r['solve_s']:6.1f} s  "
                   f"total {r['total_s']:6.1f} s")
        _say(comm, "  electronic diag " + " ".join(f"{v:.3e}" for v in r["electronic_diag_S_cm"])
             + " | ionic diag " + " ".join(f"{v:.3e}" for v in r["ionic_diag_S_cm"]) + " S/cm")
    return rve


if __name__ == "__main__":
    sys.exit(main())
