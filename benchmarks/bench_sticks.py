"""Stick percolation threshold at several box sizes (verification of meshes.sticks).

Usage::

    python benchmarks/bench_sticks.py [--quick] [--workers N] [--seed S]

For every box size (box/L) it estimates the reduced density N_c L^2 at which the x/y-averaged
crossing probability of a square open box is 1/2 (:func:`meshes.sticks.estimate_threshold`),
and, from the same samples, the P = 1/2 points of the "either" and "both" criteria. Prints a
table and writes ``benchmarks/out/sticks_threshold.json``.

What to look for:

* ``estimate`` should agree with N_c L^2 = 5.63726(2) (Li and Zhang, Phys. Rev. E 80,
  040104(R) (2009)) within a few ``std err`` at every size: the crossing probability of a
  square at N_c tends to 1/2 (Cardy), so the finite-size bias of this estimator is small;
  ``est - Nc`` measures it.
* ``either`` < N_c < ``both``, with a gap shrinking like (box/L)^(-1/nu), 1/nu = 3/4 in 2D;
  the fitted exponent is printed below the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshes.sticks import (
    NC_L2_LI_ZHANG_2009,
    NC_L2_LI_ZHANG_2009_ERR,
    estimate_threshold,
    threshold_from_counts,
)

# (box/L, samples). Default: ~4-5 min on 2 cores; --quick: ~15 s.
SIZES_DEFAULT = ((5.0, 20000), (10.0, 16000), (20.0, 6000), (40.0, 1500))
SIZES_QUICK = ((5.0, 2000), (10.0, 1000), (20.0, 300))
OUT = Path(__file__).resolve().parent / "out" / "sticks_threshold.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples (smoke test)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=20090101)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    sizes = SIZES_QUICK if args.quick else SIZES_DEFAULT

    rows = []
    header = (f"{'box/L':>6} {'samples':>8} {'estimate':>9} {'std err':>8} {'est - Nc':>9} "
              f"{'width':>7} {'either':>8} {'both':>8} {'time s':>7}")
    print(f"N_c L^2 reference: {NC_L2_LI_ZHANG_2009} +- {NC_L2_LI_ZHANG_2009_ERR} "
          f"(Li & Zhang 2009); workers = {args.workers}")
    print(header)
    print("-" * len(header))
    for i, (b, n) in enumerate(sizes):
        t0 = time.perf_counter()
        est = estimate_threshold(box_over_length=b, n_samples=n, seed=args.seed + i,
                                 workers=args.workers)
        elapsed = time.perf_counter() - t0
        other = {c: threshold_from_counts(est.sample_counts, box_over_length=b, criterion=c,
                                          seed=args.seed + i)
                 for c in ("x", "y", "either", "both")}
        row = {
            "box_over_length": b,
            "n_samples": n,
            "estimate": est.estimate,
            "std_error": est.std_error,
            "deviation": est.estimate - NC_L2_LI_ZHANG_2009,
            "deviation_in_std_errors": (est.estimate - NC_L2_LI_ZHANG_2009) / est.std_error,
            "mean_threshold": est.mean_threshold,
            "threshold_width": est.threshold_width,
            "time_s": elapsed,
            "criteria": {c: {"estimate": e.estimate, "std_error": e.std_error}
                         for c, e in other.items()},
        }
        rows.append(row)
        print(f"{b:6.0f} {n:8d} {est.estimate:9.4f} {est.std_error:8.4f} "
              f"{row['deviation']:+9.4f} {est.threshold_width:7.4f} "
              f"{other['either'].estimate:8.4f} {other['both'].estimate:8.4f} {elapsed:7.1f}",
              flush=True)

    # Finite-size scaling of the either/both gap: gap ~ (box/L)^(-1/nu), 1/nu = 3/4.
    bs = np.array([r["box_over_length"] for r in rows])
    gaps = np.array([r["criteria"]["both"]["estimate"] - r["criteria"]["either"]["estimate"]
                     for r in rows])
    gap_err = np.array([math.hypot(r["criteria"]["both"]["std_error"],
                                   r["criteria"]["either"]["std_error"]) for r in rows])
    w = (gaps / gap_err) ** 2  # weights for log(gap): 1 / var(log gap)
    coef, cov = np.polyfit(np.log(bs), np.log(gaps), 1, w=np.sqrt(w), cov="unscaled")
    inv_nu, inv_nu_err = -float(coef[0]), float(math.sqrt(cov[0, 0]))
    print(f"1/nu from the either/both gap: {inv_nu:.3f} +- {inv_nu_err:.3f} (exact 3/4)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "reference": {"Nc_L2": NC_L2_LI_ZHANG_2009, "error": NC_L2_LI_ZHANG_2009_ERR,
                      "source": "J. Li and S.-L. Zhang, Phys. Rev. E 80, 040104(R) (2009)"},
        "estimator": "P = 1/2 of the x/y-averaged Poisson crossing probability, square open "
                     "box, centres in box enlarged by L/2, sticks clipped; bootstrap errors",
        "quick": args.quick,
        "seed": args.seed,
        "workers": args.workers,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "rows": rows,
        "gap_scaling": {"inv_nu": inv_nu, "inv_nu_err": inv_nu_err, "exact": 0.75},
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
