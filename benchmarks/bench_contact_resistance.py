"""How a contact resistance between the electronic conductors changes both cathodes' electron paths.

Every electronic half-cell and RVE number of this project so far has perfect contacts between
the wires, the rGO flakes and the carbon black. This script measures what a contact resistance
R_c (ohm cm2, on every facet between two different electronic phases:
:func:`fem.conduction.solve_conduction`) does to the electronic conductivity tensor of 3D
voxel boxes of both cathodes, from perfect contacts to the decoupled limit (R_c -> infinity:
every phase conducts alone, the sum of the single-phase tensors, computed directly).
``--contacts wires`` (``conduction.contacts``): R_c only between the wires and the other
conductors, whose contacts with each other stay perfect.

No measured contact resistance is known for H2V3O8 wires against rGO or carbon black, so R_c
is swept; its scale is the wire's own resistance across its diameter,
d / sigma_NW = 0.1 um / 1e-3 S/cm = 1e-2 ohm cm2. Touching wires (one phase) are not
separated by facets in the image and keep perfect contacts.

Boxes: ``--size-um`` cubes at mid-depth, seeds 0..``--seeds``-1, the electronic voxels at
``--voxel-um`` / ``--subdivisions`` (``box.electronic_subdivisions``: the 20 nm rGO flakes
stay whole); insulating sides; CG + GAMG (:data:`OPTIONS`). Also reported: the contact area
per box volume (voxel faces between two electronic phases, um2/um3: a staircase, about 1.5x
the true area).

    python benchmarks/bench_contact_resistance.py [--size-um 2] [--seeds 3] [--quick]
    mpiexec -n 2 python benchmarks/bench_contact_resistance.py ...

Prints a table per cathode and writes ``benchmarks/out/contact_resistance.json``.
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
from meshes.adapter import build_on_root, distribute_electronic_voxels
from meshes.spec import load_case
from meshes.tags import ELECTRONIC_PHASES, Phase
from meshes.voxels import electronic_image

OUT = Path(__file__).resolve().parent / "out" / "contact_resistance.json"
RESISTANCES_OHM_CM2 = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: CG + GAMG without the graph's weak edges: on the tape-cast electronic meshes the default
#: (threshold 0) took 259 iterations on a 1.5 um box, this 17 (the same current to 7
#: digits); the contact solves add plain aggregation (fem.conduction.CONTACT_GAMG_OPTIONS)
OPTIONS = {**ITERATIVE_PETSC_OPTIONS, "pc_gamg_threshold": 0.01}


def _say(comm: MPI.Comm, text: str) -> None:
    if comm.rank == 0:
        print(text, flush=True)


def contact_area(labels: np.ndarray, voxel_um: float) -> dict[str, float]:
    """Voxel-face area between two different electronic phases per box volume (um2/um3),
    per phase pair."""
    electronic = [int(p) for p in ELECTRONIC_PHASES]
    out: dict[str, float] = {}
    volume = labels.size * voxel_um**3
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1].ravel(), a[1:].ravel()
        pair = np.isin(lo, electronic) & np.isin(hi, electronic) & (lo != hi)
        codes = 16 * np.minimum(lo[pair], hi[pair]).astype(np.int64) + np.maximum(
            lo[pair], hi[pair])
        for code, count in zip(*np.unique(codes, return_counts=True), strict=True):
            key = f"{Phase(int(code) // 16).label}/{Phase(int(code) % 16).label}"
            out[key] = out.get(key, 0.0) + float(count) * voxel_um**2 / volume
    return out


def one_box(kind: str, seed: int, size: float, voxel: float, k: int, comm: MPI.Comm,
            resistances: tuple[float, ...], contacts: str = "phases") -> dict:
    case = load_case({"box": {"size_um": size, "height_um": size, "seed": seed,
                              "voxel_um": voxel, "electronic_subdivisions": k},
                      "conduction": {"contacts": contacts}})
    groups = case.conduction.contact_groups()
    t0 = time.perf_counter()
    image = build_on_root(comm, lambda: electronic_image(case, kind))
    areas = comm.bcast(None if image is None else contact_area(image.labels, image.voxel_um),
                       root=0)
    tm = distribute_electronic_voxels(comm, image)
    sigma = default_conductivities().electronic()
    present = sorted(set().union(*comm.allgather(set(np.unique(tm.phase).tolist()))))
    rows = []
    for r_c in resistances:
        t1 = time.perf_counter()
        t = conductivity_tensor(tm, sigma, petsc_options=OPTIONS,
                                contact_resistance_ohm_cm2=r_c, contact_groups=groups)
        rows.append({"contact_resistance_ohm_cm2": r_c,
                     "diag_S_cm": np.diag(t.tensor_S_cm).tolist(),
                     "balance_rel": t.balance_rel, "time_s": time.perf_counter() - t1})
    # R_c -> infinity: each group of phases alone (a phase, or the conductors other than
    # the wires with contacts = "wires"), their currents add
    t1 = time.perf_counter()
    decoupled = np.zeros(3)
    alone = {}
    for group in groups or [[p] for p in present]:
        mine = {p: sigma[p] for p in group if p in sigma and p in present}
        if not mine:
            continue
        t = conductivity_tensor(tm, mine, petsc_options=OPTIONS)
        alone["+".join(Phase(p).label for p in mine)] = np.diag(t.tensor_S_cm).tolist()
        decoupled += np.diag(t.tensor_S_cm)
    rows.append({"contact_resistance_ohm_cm2": float("inf"), "diag_S_cm": decoupled.tolist(),
                 "each_group_alone_diag_S_cm": alone, "time_s": time.perf_counter() - t1})
    return {"cathode": kind, "seed": seed, "size_um": size, "contacts": contacts,
            "electronic_voxel_um": voxel / k,
            "cells_count": int(comm.allreduce(tm.mesh.topology.index_map(3).size_local)),
            "contact_area_um2_per_um3": areas, "rows": rows,
            "total_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--size-um", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--voxel-um", type=float, default=0.05)
    ap.add_argument("--subdivisions", type=int, default=4)
    ap.add_argument("--cathodes", default="gradient,homogeneous")
    ap.add_argument("--resistances", default=",".join(f"{v:g}" for v in RESISTANCES_OHM_CM2),
                    help="R_c values [ohm cm2], the first 0 (perfect contacts)")
    ap.add_argument("--contacts", choices=("phases", "wires"), default="phases",
                    help="conduction.contacts: R_c between every two electronic phases, or "
                         "only between the wires and the other conductors")
    ap.add_argument("--quick", action="store_true", help="1 um boxes, one seed, k = 2")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    size, seeds, k = ((1.0, 1, 2) if args.quick
                      else (args.size_um, args.seeds, args.subdivisions))
    try:
        resistances = tuple(float(v) for v in args.resistances.split(","))
    except ValueError:
        resistances = (float("nan"),)
    if resistances[0] != 0.0 or any(not (0.0 < v < float("inf")) for v in resistances[1:]):
        ap.error(f"--resistances {args.resistances}: must start with 0 (perfect contacts), "
                 f"then finite values > 0 ohm cm2")
    boxes = []
    for kind in args.cathodes.split(","):
        _say(comm, f"\n{kind}: {size:g} um boxes at mid-depth, electronic voxels "
                   f"{args.voxel_um / k:g} um, insulating sides, contacts between "
                   f"{args.contacts}")
        _say(comm, f"{'seed':>4s} {'R_c ohm cm2':>11s} {'sigma_xx S/cm':>13s} "
                   f"{'sigma_yy S/cm':>13s} {'sigma_zz S/cm':>13s} {'zz / perfect':>12s} "
                   f"{'s':>6s}")
        for seed in range(seeds):
            box = one_box(kind, seed, size, args.voxel_um, k, comm, resistances,
                          args.contacts)
            boxes.append(box)
            perfect = box["rows"][0]["diag_S_cm"][2]
            for row in box["rows"]:
                d = row["diag_S_cm"]
                rel = d[2] / perfect if perfect > 0 else float("nan")
                _say(comm, f"{seed:4d} {row['contact_resistance_ohm_cm2']:11.0e} "
                           + " ".join(f"{v:13.3e}" for v in d)
                           + f" {rel:12.3f} {row['time_s']:6.1f}")
            _say(comm, "     contact area [um2/um3]: " + ", ".join(
                f"{key} {v:.3g}" for key, v in box["contact_area_um2_per_um3"].items())
                 + f"; {box['cells_count']} cells")
    summary = []
    _say(comm, "\nmean over seeds, sigma_zz / sigma_zz with perfect contacts (xx in brackets)")
    _say(comm, f"{'R_c ohm cm2':>11s} " + " ".join(f"{c:>22s}" for c in
                                                   args.cathodes.split(",")))
    for i, r_c in enumerate((*resistances, float("inf"))):
        line = {"contact_resistance_ohm_cm2": r_c}
        cells = []
        for kind in args.cathodes.split(","):
            mine = [b for b in boxes if b["cathode"] == kind]
            ratio = [np.asarray(b["rows"][i]["diag_S_cm"]) / np.asarray(b["rows"][0]["diag_S_cm"])
                     for b in mine]
            mean = np.mean(ratio, axis=0)
            line[kind] = {"zz_over_perfect": float(mean[2]), "xx_over_perfect": float(mean[0]),
                          "sigma_zz_S_cm": float(np.mean([b["rows"][i]["diag_S_cm"][2]
                                                          for b in mine]))}
            cells.append(f"{mean[2]:10.3f} ({mean[0]:.3f})")
        summary.append(line)
        _say(comm, f"{r_c:11.0e} " + " ".join(f"{c:>22s}" for c in cells))
    if comm.rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": " ".join(sys.argv), "ranks": comm.size, "machine": platform.node(),
            "conductivities_S_cm": default_conductivities().electronic(),
            "boxes": boxes, "summary": summary}, indent=1))
        print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
