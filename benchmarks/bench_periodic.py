"""Periodic against insulating sides: RVE-size convergence of the 3D conductivity tensors.

Usage::

    python benchmarks/bench_periodic.py [--quick] [--sizes 1,2,3,4] [--seeds 5]
    mpiexec -n 2 python benchmarks/bench_periodic.py ...

For each cathode, box size L (an L x L x L box at mid-depth, 50 nm voxels) and seed, the RVE
is built twice from the same spec and seed: with insulating sides (the realization cut by
the box, every face but the driven pair insulating) and with periodic sides (the
realization on a torus in x and y, periodic constraints in the lateral directions other than
the driven one). The table gives the mean and the 95 % CI half-width (Student t) over the
seeds of the tensor diagonal, the wire volume fraction and how many boxes percolate. An RVE
size is large enough when the mean stops moving with L and the spread is small; the two
conditions give two apparent properties (insulating sides cut the paths at the faces,
periodic sides cut none but wrap objects longer than the box), and where they agree the box
is representative. They are not guaranteed bounds for these mixed conditions.

Writes ``benchmarks/out/periodic.json``.
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
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cases.rve import rve_numbers
from meshes.spec import load_case

OUT = Path(__file__).resolve().parent / "out" / "periodic.json"
ENTRIES = [("electronic", "sigma_xx_S_cm"), ("electronic", "sigma_zz_S_cm"),
           ("ionic", "sigma_xx_S_cm"), ("ionic", "sigma_zz_S_cm")]


def _say(comm: MPI.Comm, text: str) -> None:
    if comm.rank == 0:
        print(text, flush=True)


def _mean_ci(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x, dtype=float)
    if len(a) < 2:
        return float(a.mean()), float("nan")
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
    return float(a.mean()), float(half)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 and 1.5 um boxes, 2 seeds")
    ap.add_argument("--sizes", default="1,2,3,4", help="box sizes in um, comma separated")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--voxel-um", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    sizes = [1.0, 1.5] if args.quick else [float(s) for s in args.sizes.split(",")]
    seeds = 2 if args.quick else args.seeds
    _say(comm, f"{len(sizes)} box sizes x {seeds} seeds x 2 cathodes x 2 side conditions, "
               f"{args.voxel_um:g} um voxels, {comm.size} rank(s)")
    runs = []
    for kind in ("gradient", "homogeneous"):
        for size in sizes:
            for sides in ("insulating", "periodic"):
                for seed in range(seeds):
                    case = load_case({"box": {"size_um": size, "height_um": size,
                                              "voxel_um": args.voxel_um, "seed": seed,
                                              "sides": sides}})
                    r = rve_numbers(case, kind, comm)
                    runs.append({"cathode": kind, "size_um": size, "sides": sides,
                                 "seed": seed, **{f"{c}_{e}": r[c][e] for c, e in ENTRIES},
                                 "nanowire_fraction": r["image"]["composite_nanowire_fraction"],
                                 "electronic_percolates": r["electronic"]["percolates"],
                                 "ionic_percolates": r["ionic"]["percolates"],
                                 "cells_count": r["cells_count"],
                                 "time_s": r["total_time_s"]})
                    _say(comm, f"  {kind} {size:g} um {sides} seed {seed}: "
                               f"{r['total_time_s']:.1f} s")
    head = (f"{'cathode':12s} {'L um':>5s} {'sides':>10s} "
            + " ".join(f"{c[:2]}_{e[6:8]:>2s} [S/cm]".rjust(21) for c, e in ENTRIES)
            + f" {'NW frac':>13s} {'el z':>5s} {'io z':>5s}")
    _say(comm, "\nmean +- 95 % CI half-width over the seeds\n" + head)
    table = []
    for kind in ("gradient", "homogeneous"):
        for size in sizes:
            for sides in ("insulating", "periodic"):
                sel = [r for r in runs if r["cathode"] == kind and r["size_um"] == size
                       and r["sides"] == sides]
                row = {"cathode": kind, "size_um": size, "sides": sides, "seeds": len(sel)}
                cells = []
                for c, e in ENTRIES:
                    m, h = _mean_ci([r[f"{c}_{e}"] for r in sel])
                    row[f"{c}_{e}"] = {"mean": m, "ci95_half": h}
                    cells.append(f"{m:9.3e} +- {h:8.2e}")
                m, h = _mean_ci([r["nanowire_fraction"] for r in sel])
                row["nanowire_fraction"] = {"mean": m, "ci95_half": h}
                el_z = sum(r["electronic_percolates"]["z"] for r in sel)
                io_z = sum(r["ionic_percolates"]["z"] for r in sel)
                row["electronic_z_percolating"] = el_z
                row["ionic_z_percolating"] = io_z
                table.append(row)
                _say(comm, f"{kind:12s} {size:5g} {sides:>10s} " + " ".join(cells)
                     + f" {m:6.3f}+-{h:5.3f} {el_z:2d}/{len(sel):<2d} {io_z:2d}/{len(sel):<2d}")
    if comm.rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": " ".join(sys.argv), "ranks": comm.size, "quick": args.quick,
            "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"),
            "voxel_um": args.voxel_um, "table": table, "runs": runs}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
