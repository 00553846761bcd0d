"""Conforming 3D boxes of the gradient membrane: robustness over seeds, and voxel vs conforming.

Usage::

    python benchmarks/bench_conforming.py [--seeds 100] [--size-um 1] [--skip-sweep]
                                          [--periodic-seeds 20] [--lean-seeds 20]
                                          [--rgo-seeds 100] [--lean-rgo] [--first-seed 0]
                                          [--skip-convergence]
                                          [--out PATH]
    mpiexec -n 2 python benchmarks/bench_conforming.py ...

Part 1 (robustness): ``--seeds`` consecutive seeds (0, 1, ...) of the default membrane box
of side ``--size-um`` at mid-depth (default density, rGO off, as before rGO sheets were
modelled), meshed with 30 nm elements at the wires (:func:`meshes.conforming.mesh_conforming_box`).
Reports the success rate, the contact-design attempts used, mesh size and time, and the
element quality (mean ratio, 1 = regular tetrahedron): minimum, 0.1 % quantile and the number
of cells below 0.01, per seed and over the sweep. Meshing runs on rank 0.

Part 1b (periodic sides): ``--periodic-seeds`` seeds of 1 x 1 x 0.6 um boxes with periodic
x and y sides, of rods 0.4-0.6 um long at the default density (periodic conforming boxes
must be wider than the longest wire, so the default 5-10 um wires need >= 10.4 um boxes:
cluster scale); the same report.

Part 1c (polymer-lean zone): ``--lean-seeds`` seeds of the box at ``z_center_fraction =
0.03`` (z about 0.5-1.5 um, fill fraction f about 0.25-0.55), where the SPE coating shells
are mesh surfaces and the contact design keeps them meshable too; the same report. With
``--lean-rgo`` these boxes hold the spec's rGO sheets too (with their own coating shells).

Part 1d (the default membrane, with its rGO sheets): ``--rgo-seeds`` seeds of the box of
part 1 with the spec's 2.5 wt% rGO (flat discs placed after the wires' design,
:mod:`meshes.sheet_design`); the same report, plus the sheets in the box, the sheet/wire
contacts and the rGO volume fraction.

Part 2 (convergence): seed 0 of that box, one contact design (the 30 nm one) meshed
conformingly at 30, 20 and 15 nm at the wires, and voxelized at 100 to 20 nm (the same
designed wires, :func:`meshes.conforming.voxelize_designed`); the diagonal of the
electronic and ionic conductivity tensors (CG + GAMG) and the relative difference to the
finest conforming mesh. Part 2c: the same for a 0.6 um box (seed 5) of the default
membrane whose rGO sheet touches two wires in the box and carries most of the current
along x, conforming down to 10 nm and voxels down to 10 nm. Part 2b: the same for the ionic tensor
of a lean-zone box (seed 1, 1 um at ``z_center_fraction = 0.02``: void about 0.57, coating
shells as mesh surfaces), against voxels of 50 to 12.5 nm.

``--first-seed`` starts every sweep at that seed (to split a sweep over several runs).
Writes ``benchmarks/out/conforming.json`` (or ``--out``).
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
from meshes.adapter import build_on_root, distribute_conforming, distribute_voxels
from meshes.conforming import ConformingError, mesh_conforming_box, voxelize_designed
from meshes.spec import CaseSpec, load_case
from meshes.tags import Phase

OUT = Path(__file__).resolve().parent / "out" / "conforming.json"
FINE_UM = (0.03, 0.02, 0.015)
VOXEL_UM = (0.1, 0.05, 1 / 30, 0.025, 0.02)
#: the polymer-lean zone: box centre at this fraction of the composite layer (z about 1 um)
LEAN_Z = 0.03
#: part 2b: a lean-zone box with much void (seed, z_center_fraction), and its voxel sizes
LEAN_CONVERGENCE = (1, 0.02)
LEAN_VOXEL_UM = (0.05, 0.025, 0.0125)
#: part 2c: a box whose rGO sheet carries the current (seed, size um), and its voxel sizes
RGO_CONVERGENCE = (5, 0.6)
RGO_VOXEL_UM = (0.05, 0.025, 0.0125, 0.01)


def _say(comm: MPI.Comm, text: str) -> None:
    if comm.rank == 0:
        print(text, flush=True)


def _case(size: float, seed: int, z_center_fraction: float = 0.5, rgo: bool = False
          ) -> CaseSpec:
    return load_case({"box": {"size_um": size, "height_um": size, "seed": seed,
                              "z_center_fraction": z_center_fraction},
                      "gradient": {} if rgo else {"rgo_wt_fraction": 0.0}})


def _periodic_case(seed: int):  # type: ignore[no-untyped-def]
    return load_case({"box": {"size_um": 1.0, "height_um": 0.6, "seed": seed,
                              "sides": "periodic", "mesh": "conforming"},
                      "gradient": {"rgo_wt_fraction": 0.0,
                                   "nanowire": {"length_min_um": 0.4, "length_max_um": 0.6}}})


def sweep(size: float, seeds: int, comm: MPI.Comm, periodic: bool = False,
          lean: bool = False, first: int = 0, rgo: bool = False, lean_rgo: bool = False
          ) -> dict:
    rows = []
    with_rgo = rgo or (lean and lean_rgo)
    if rgo:
        _say(comm, f"\nrobustness, the default membrane with its rGO sheets: {seeds} seeds, "
                   f"{size:g} um boxes, 30 nm elements at the wires")
    elif periodic:
        _say(comm, f"\nrobustness, periodic sides: {seeds} seeds, 1 x 1 x 0.6 um boxes of "
                   f"0.4-0.6 um rods, 30 nm elements at the wires")
    elif lean:
        _say(comm, f"\nrobustness, polymer-lean zone (z_center_fraction {LEAN_Z:g}, coating "
                   f"shells meshed{', rGO sheets' if lean_rgo else ''}): {seeds} seeds, "
                   f"{size:g} um boxes, 30 nm elements at the wires")
    else:
        _say(comm, f"\nrobustness: {seeds} seeds, {size:g} um boxes, 30 nm elements at the "
                   f"wires")
    _say(comm, f"{'seed':>5s} {'result':>7s} {'tries':>5s} {'wires':>5s} {'contacts':>8s} "
               f"{'cells':>8s} {'q_min':>8s} {'q_0.1%':>7s} {'q<0.01':>6s} {'NW frac':>7s} "
               f"{'s':>6s}")
    for seed in range(first, first + seeds):
        case = _periodic_case(seed) if periodic else \
            _case(size, seed, LEAN_Z if lean else 0.5, rgo=with_rgo)
        t0 = time.perf_counter()
        row: dict = {"seed": seed}
        if comm.rank == 0:
            try:
                box = mesh_conforming_box(case)
                s = box.stats
                row.update({"ok": True, "attempts": int(s["design_attempts"]),
                            "wires": box.contacts.wires_count,
                            "contacts": box.contacts.contacts_count,
                            "clusters": box.contacts.clusters_count,
                            "max_shift_um": box.contacts.max_shift_um,
                            "cells": int(s["cells_count"]), "min_quality": s["min_quality"],
                            "quality_p001": s["quality_p001"],
                            "cells_below_0.01": int(s["cells_below_0.01_count"]),
                            "nanowire_fraction": s["nanowire_fraction"],
                            "void_fraction": s["void_fraction"],
                            "coating_shells_um": s["coating_shells_um"],
                            "target_nanowire_fraction": s["target_nanowire_fraction"]})
                if with_rgo:
                    row.update({"sheets": int(s["sheets_count"]),
                                "sheet_wire_contacts": int(s["sheet_wire_contacts_count"]),
                                "sheets_max_shift_um": s["sheets_max_shift_um"],
                                "rgo_fraction": s["rgo_fraction"],
                                "target_rgo_fraction": s["target_rgo_fraction"]})
            except ConformingError as e:
                row.update({"ok": False, "error": str(e)})
            row["time_s"] = time.perf_counter() - t0
            if row["ok"]:
                print(f"{seed:5d} {'ok':>7s} {row['attempts']:5d} {row['wires']:5d} "
                      f"{row['contacts']:8d} {row['cells']:8d} {row['min_quality']:8.2e} "
                      f"{row['quality_p001']:7.3f} {row['cells_below_0.01']:6d} "
                      f"{row['nanowire_fraction']:7.3f} {row['time_s']:6.1f}"
                      + (f"  sheets {row['sheets']}, {row['sheet_wire_contacts']} wire "
                         f"contacts, rGO {row['rgo_fraction']:.4f}" if with_rgo else ""),
                      flush=True)
            else:
                print(f"{seed:5d} {'FAILED':>7s} {row['error']}", flush=True)
        rows.append(row)
    ok = [r for r in rows if r.get("ok")]
    summary = {"seeds": seeds, "first_seed": first, "size_um": 1.0 if periodic else size,
               "sides": "periodic" if periodic else "insulating",
               "z_center_fraction": LEAN_Z if lean else 0.5, "rgo": with_rgo,
               "succeeded": len(ok),
               "success_rate": len(ok) / seeds if seeds else 0.0}
    if ok:
        q = np.array([r["min_quality"] for r in ok])
        summary.update({
            "min_quality_min": float(q.min()), "min_quality_median": float(np.median(q)),
            "quality_p001_median": float(np.median([r["quality_p001"] for r in ok])),
            "cells_below_0.01_max": int(max(r["cells_below_0.01"] for r in ok)),
            "cells_median": float(np.median([r["cells"] for r in ok])),
            "time_s_median": float(np.median([r["time_s"] for r in ok])),
            "time_s_max": float(max(r["time_s"] for r in ok)),
            "attempts_histogram": {str(k): sum(r["attempts"] == k for r in ok)
                                   for k in sorted({r["attempts"] for r in ok})},
            "contacts_per_wire_mean": float(np.mean([2 * r["contacts"] / max(r["wires"], 1)
                                                     for r in ok])),
            "max_shift_um_max": float(max(r["max_shift_um"] for r in ok)),
            "nanowire_fraction_mean": float(np.mean([r["nanowire_fraction"] for r in ok])),
            "target_nanowire_fraction": ok[0]["target_nanowire_fraction"]})
        if with_rgo:
            summary.update({
                "sheets_mean": float(np.mean([r["sheets"] for r in ok])),
                "boxes_with_sheets": sum(r["sheets"] > 0 for r in ok),
                "sheet_wire_contacts_mean": float(np.mean([r["sheet_wire_contacts"]
                                                           for r in ok])),
                "sheets_max_shift_um_max": float(max(r["sheets_max_shift_um"] for r in ok)),
                "rgo_fraction_mean": float(np.mean([r["rgo_fraction"] for r in ok])),
                "target_rgo_fraction": ok[0]["target_rgo_fraction"]})
            _say(comm, f"rGO: {summary['sheets_mean']:.2f} sheets per box "
                       f"({summary['boxes_with_sheets']} boxes with sheets), "
                       f"{summary['sheet_wire_contacts_mean']:.2f} sheet/wire contacts per "
                       f"box, largest sheet shift {summary['sheets_max_shift_um_max']:.3f} um, "
                       f"rGO fraction {summary['rgo_fraction_mean']:.4f} (target "
                       f"{summary['target_rgo_fraction']:.4f})")
        _say(comm, f"succeeded {len(ok)}/{seeds}; min quality over the sweep "
                   f"{summary['min_quality_min']:.2e} (median of the per-seed minima "
                   f"{summary['min_quality_median']:.2e}); at most "
                   f"{summary['cells_below_0.01_max']} cells below 0.01 per box; median "
                   f"{summary['cells_median']:.0f} cells in {summary['time_s_median']:.1f} s "
                   f"(max {summary['time_s_max']:.1f} s); design attempts "
                   f"{summary['attempts_histogram']}; NW fraction "
                   f"{summary['nanowire_fraction_mean']:.3f} (target "
                   f"{summary['target_nanowire_fraction']:.3f})")
    return {"summary": summary, "rows": rows}


def convergence(case: CaseSpec, title: str, comm: MPI.Comm,
                fine_um: tuple[float, ...] = FINE_UM,
                voxel_um: tuple[float, ...] = VOXEL_UM) -> dict:
    """Parts 2 and 2c: one designed geometry (the 30 nm design) meshed conformingly at
    ``fine_um`` and voxelized at ``voxel_um``; both tensors against the finest conforming
    mesh."""
    p = default_conductivities()
    rows = []
    base = None

    def solve(tm, label: str, t0: float) -> None:  # type: ignore[no-untyped-def]
        e = conductivity_tensor(tm, p.electronic(), petsc_options=ITERATIVE_PETSC_OPTIONS)
        i = conductivity_tensor(tm, p.ionic(), petsc_options=ITERATIVE_PETSC_OPTIONS)
        cells = comm.allreduce(tm.mesh.topology.index_map(3).size_local)
        rows.append({"mesh": label, "cells": cells,
                     "electronic_S_cm": np.diag(e.tensor_S_cm).tolist(),
                     "ionic_S_cm": np.diag(i.tensor_S_cm).tolist(),
                     "nanowire_fraction": e.volume_fraction,
                     "time_s": time.perf_counter() - t0})

    attempt = None
    for fine in fine_um:
        t0 = time.perf_counter()
        # one designed geometry (bands of the 30 nm design, the attempt the first size
        # accepted) meshed at every size
        box = build_on_root(comm, lambda fine=fine, k=attempt: mesh_conforming_box(
            case, size_fine_um=fine, size_coarse_um=0.1, design_size_um=FINE_UM[0],
            only_attempt=k))
        if attempt is None:  # (on every rank: build_on_root returns None off rank 0)
            base = box
            attempt = comm.bcast(int(box.stats["design_attempts"]) if comm.rank == 0
                                 else None, root=0)
        solve(distribute_conforming(comm, box), f"conforming {fine * 1000:.0f} nm", t0)
    for h in voxel_um:
        t0 = time.perf_counter()
        image = build_on_root(comm, lambda h=h: voxelize_designed(base, case, h))
        solve(distribute_voxels(comm, image), f"voxels {h * 1000:.1f} nm", t0)
    ref = rows[len(fine_um) - 1]
    _say(comm, f"\nvoxel vs conforming, {title} (relative difference to "
               f"{ref['mesh']}; 0 S/cm: no path)")
    _say(comm, f"{'mesh':>18s} {'cells':>9s} {'NW frac':>7s} {'el xx':>9s} {'el yy':>9s} "
               f"{'el zz':>9s} {'io xx':>9s} {'io yy':>9s} {'io zz':>9s} {'s':>6s}")
    for r in rows:
        diffs = []
        for key in ("electronic_S_cm", "ionic_S_cm"):
            for k in range(3):
                a, b = r[key][k], ref[key][k]
                diffs.append(f"{(a / b - 1) * 100:+8.1f}%" if b > 0 else
                             (f"{'0':>9s}" if a == 0 else f"{a:9.2e}"))
        r["relative_difference"] = diffs
        _say(comm, f"{r['mesh']:>18s} {r['cells']:9d} {r['nanowire_fraction']:7.4f} "
                   + " ".join(diffs) + f" {r['time_s']:6.1f}")
    _say(comm, "reference values [S/cm]: electronic " + ", ".join(
        f"{v:.4g}" for v in ref["electronic_S_cm"]) + "; ionic " + ", ".join(
        f"{v:.4g}" for v in ref["ionic_S_cm"]))
    return {"rows": rows, "reference": ref["mesh"]}


def lean_convergence(size: float, comm: MPI.Comm) -> dict:
    """Part 2b: the ionic tensor of a lean-zone box, conforming (coating shells meshed)
    against voxels of the same designed wires."""
    seed, z_frac = LEAN_CONVERGENCE
    case = _case(size, seed, z_frac)
    sigma = default_conductivities().ionic()
    rows = []
    base = None
    meshes = [(f"conforming {f * 1000:.0f} nm", f) for f in FINE_UM[:2]] + \
        [(f"voxels {h * 1000:.1f} nm", h) for h in LEAN_VOXEL_UM]
    for label, size_um in meshes:
        t0 = time.perf_counter()
        if label.startswith("conforming"):
            box = build_on_root(comm, lambda f=size_um: mesh_conforming_box(
                case, size_fine_um=f, size_coarse_um=0.1, design_size_um=FINE_UM[0]))
            if base is None:
                base = box
            tm = distribute_conforming(comm, box)
            void = box.stats["void_fraction"] if comm.rank == 0 else 0.0
        else:
            image = build_on_root(comm, lambda h=size_um, b=base: voxelize_designed(b, case, h))
            tm = distribute_voxels(comm, image)
            void = float(np.mean(image.labels == int(Phase.VOID))) if comm.rank == 0 else 0.0
        res = conductivity_tensor(tm, sigma, petsc_options=ITERATIVE_PETSC_OPTIONS)
        rows.append({"mesh": label, "cells": comm.allreduce(
            tm.mesh.topology.index_map(3).size_local),
            "void_fraction": comm.bcast(void, root=0),
            "ionic_S_cm": np.diag(res.tensor_S_cm).tolist(),
            "time_s": time.perf_counter() - t0})
    ref = rows[-1]
    _say(comm, f"\nlean zone (seed {seed}, {size:g} um box at z_center_fraction {z_frac:g}, "
               f"coating shells meshed): ionic, relative difference to {ref['mesh']}")
    _say(comm, f"{'mesh':>18s} {'cells':>9s} {'void':>7s} {'io xx':>9s} {'io yy':>9s} "
               f"{'io zz':>9s} {'s':>6s}")
    for r in rows:
        r["relative_difference"] = [a / b - 1.0 if b > 0 else None
                                    for a, b in zip(r["ionic_S_cm"], ref["ionic_S_cm"],
                                                    strict=True)]
        _say(comm, f"{r['mesh']:>18s} {r['cells']:9d} {r['void_fraction']:7.4f} " + " ".join(
            f"{100 * x:+8.1f}%" if x is not None else f"{'-':>9s}"
            for x in r["relative_difference"]) + f" {r['time_s']:6.1f}")
    _say(comm, "reference values [S/cm]: ionic " + ", ".join(
        f"{v:.4g}" for v in ref["ionic_S_cm"]))
    return {"rows": rows, "reference": ref["mesh"], "seed": seed,
            "z_center_fraction": z_frac}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--size-um", type=float, default=1.0)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--periodic-seeds", type=int, default=20)
    ap.add_argument("--lean-seeds", type=int, default=20)
    ap.add_argument("--rgo-seeds", type=int, default=100)
    ap.add_argument("--lean-rgo", action="store_true")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--skip-convergence", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    if min(args.seeds, args.periodic_seeds, args.lean_seeds, args.rgo_seeds,
           args.first_seed) < 0 \
            or not 0.2 <= args.size_um <= 5.0:
        _say(comm, "bench_conforming: --seeds, --periodic-seeds, --lean-seeds, --rgo-seeds "
                   "and --first-seed must be >= 0 and --size-um in [0.2, 5]")
        return 2
    result: dict = {"machine": platform.platform(), "ranks": comm.size}
    if not args.skip_sweep:
        if args.seeds:
            result["robustness"] = sweep(args.size_um, args.seeds, comm,
                                         first=args.first_seed)
        if args.periodic_seeds:
            result["robustness_periodic"] = sweep(1.0, args.periodic_seeds, comm,
                                                  periodic=True, first=args.first_seed)
        if args.lean_seeds:
            result["robustness_lean"] = sweep(args.size_um, args.lean_seeds, comm, lean=True,
                                              first=args.first_seed, lean_rgo=args.lean_rgo)
        if args.rgo_seeds:
            result["robustness_rgo"] = sweep(args.size_um, args.rgo_seeds, comm, rgo=True,
                                             first=args.first_seed)
    if not args.skip_convergence:
        result["convergence"] = convergence(_case(args.size_um, 0),
                                            f"seed 0, {args.size_um:g} um box", comm)
        seed, size = RGO_CONVERGENCE
        result["convergence_rgo"] = convergence(
            _case(size, seed, rgo=True), f"seed {seed}, {size:g} um box with an rGO sheet "
            f"(electronic fraction: wires and sheet)", comm, fine_um=(*FINE_UM, 0.01),
            voxel_um=RGO_VOXEL_UM)
        result["convergence_lean"] = lean_convergence(args.size_um, comm)
    if comm.rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
