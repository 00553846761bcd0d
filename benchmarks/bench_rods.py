"""Percolation threshold of soft-core spherocylinders vs aspect ratio (verification of
meshes.rods).

Usage::

    python benchmarks/bench_rods.py [--quick] [--workers N] [--seed S]

For every aspect ratio L/D (core length over diameter) it estimates the critical density of
monodisperse isotropic interpenetrable spherocylinders in a periodic cube (P = 1/2 of the
"some cluster wraps in some direction" probability, :func:`meshes.rods.estimate_threshold`)
and prints phi_c = 1 - exp(-n_c V) and the reduced excluded volume n_c <V_ex>, with
<V_ex> = (4/3) pi D^3 + 2 pi D^2 L + (pi/2) D L^2 (Onsager 1949). Writes
``benchmarks/out/rods_threshold.json``.

What to look for:

* L/D = 0 (spheres): phi_c close to 0.2895 +- 0.0005 (Rintoul and Torquato, J. Phys. A 30,
  L585 (1997)); the remaining offset is the finite-size shift of the wrapping criterion
  (~ +0.003 at box = 8-12 D).
* n_c <V_ex> decreasing monotonically with L/D, approaching ~1.4 (Balberg et al., Phys. Rev.
  B 30, 3933 (1984)) at L/D ~ 50-100 (and continuing to decrease beyond).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshes.rods import (
    NC_VEX_SLENDER_BALBERG_1984,
    PHI_C_SPHERES_RINTOUL_TORQUATO_1997,
    PHI_C_SPHERES_RINTOUL_TORQUATO_1997_ERR,
    estimate_threshold,
)

# (L/D, box / (L + D), samples). Default: ~65 s on 2 cores; --quick: ~10 s.
CASES_DEFAULT = ((0.0, 12.0, 1000), (2.0, 6.0, 600), (10.0, 4.0, 500), (20.0, 3.0, 400),
                 (50.0, 3.0, 300), (100.0, 3.0, 200))
CASES_QUICK = ((0.0, 8.0, 200), (10.0, 3.0, 100), (50.0, 3.0, 60), (100.0, 2.5, 40))
OUT = Path(__file__).resolve().parent / "out" / "rods_threshold.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples (smoke test)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=19840101)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cases = CASES_QUICK if args.quick else CASES_DEFAULT

    print(f"references: spheres phi_c = {PHI_C_SPHERES_RINTOUL_TORQUATO_1997} +- "
          f"{PHI_C_SPHERES_RINTOUL_TORQUATO_1997_ERR} (Rintoul & Torquato 1997); slender "
          f"n_c<V_ex> ~ {NC_VEX_SLENDER_BALBERG_1984} (Balberg et al. 1984); "
          f"workers = {args.workers}")
    header = (f"{'L/D':>6} {'box/(L+D)':>9} {'samples':>8} {'phi_c':>9} {'phi err':>8} "
              f"{'nc<Vex>':>8} {'err':>7} {'time s':>7}")
    print(header)
    print("-" * len(header))
    rows = []
    for i, (a, b, n) in enumerate(cases):
        t0 = time.perf_counter()
        est = estimate_threshold(aspect_ratio=a, box_over_length=b, n_samples=n,
                                 seed=args.seed + i, workers=args.workers)
        elapsed = time.perf_counter() - t0
        rows.append({
            "aspect_ratio": a, "box_over_length": b, "n_samples": n,
            "criterion": est.criterion,
            "density": est.density, "density_std_error": est.density_std_error,
            "eta_c": est.eta_c, "eta_c_std_error": est.eta_c_std_error,
            "phi_c": est.phi_c, "phi_c_std_error": est.phi_c_std_error,
            "nc_vex": est.nc_vex, "nc_vex_std_error": est.nc_vex_std_error,
            "time_s": elapsed,
        })
        print(f"{a:6.0f} {b:9.1f} {n:8d} {est.phi_c:9.5f} {est.phi_c_std_error:8.5f} "
              f"{est.nc_vex:8.4f} {est.nc_vex_std_error:7.4f} {elapsed:7.1f}", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "references": {
            "spheres_phi_c": PHI_C_SPHERES_RINTOUL_TORQUATO_1997,
            "spheres_phi_c_error": PHI_C_SPHERES_RINTOUL_TORQUATO_1997_ERR,
            "spheres_source": "M. D. Rintoul and S. Torquato, J. Phys. A 30, L585 (1997)",
            "slender_nc_vex": NC_VEX_SLENDER_BALBERG_1984,
            "slender_source": "I. Balberg, C. H. Anderson, S. Alexander, N. Wagner, "
                              "Phys. Rev. B 30, 3933 (1984)",
            "excluded_volume": "L. Onsager, Ann. N. Y. Acad. Sci. 51, 627 (1949)",
        },
        "conventions": "L = core (cylinder) length, D = diameter, total length L + D; "
                       "phi_c = 1 - exp(-n_c V), V = pi D^2 L / 4 + pi D^3 / 6",
        "estimator": "periodic cube, P = 1/2 of the Poisson-averaged probability that some "
                     "cluster wraps in some direction; bootstrap errors",
        "quick": args.quick,
        "seed": args.seed,
        "workers": args.workers,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "rows": rows,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
