"""Seed ensemble of the 2D study: how much of the gradient-vs-homogeneous difference survives
the randomness of one section?

For seeds s0 .. s0+n-1 the whole study runs on a fresh realization; the table gives, per
quantity, the mean, the standard deviation and the 95 % confidence interval of the mean
(Student t, n - 1 degrees of freedom), and for conductivities also the fraction of seeds in
which the phase percolates. Tortuosity factors are averaged over percolating seeds only
(a non-percolating seed has none), and their count is given.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

import numpy as np
from scipy import stats

from cases.output import atomic_result_dir, write_json
from cases.study import _build, solve_section
from meshes.build import KINDS
from meshes.spec import CaseSpec, spec_to_dict, with_seed

__all__ = ["mean_ci95", "nested_get", "run_ensemble", "summarize"]

log = logging.getLogger("cathodefem")

#: (name, path in the per-seed numbers, only over percolating seeds)
QUANTITIES: list[tuple[str, tuple[str, ...], bool]] = [
    ("electronic_z_sigma_eff_S_cm", ("electronic", "z", "sigma_eff_S_cm"), False),
    ("electronic_x_sigma_eff_S_cm", ("electronic", "x", "sigma_eff_S_cm"), False),
    ("ionic_z_sigma_eff_S_cm", ("ionic", "z", "sigma_eff_S_cm"), False),
    ("ionic_x_sigma_eff_S_cm", ("ionic", "x", "sigma_eff_S_cm"), False),
    ("ionic_z_tortuosity_factor", ("ionic", "z", "tortuosity_factor"), True),
    ("ionic_x_tortuosity_factor", ("ionic", "x", "tortuosity_factor"), True),
    ("nanowire_electronic_connected_fraction",
     ("percolation", "nanowire_electronic_connected_fraction"), False),
    ("nanowire_ion_accessible_fraction", ("percolation", "nanowire_ion_accessible_fraction"),
     False),
    ("spe_connected_fraction", ("percolation", "ionic_connected_fraction"), False),
    ("dead_active_fraction", ("percolation", "dead_active_fraction"), False),
]
PERCOLATION = [("electronic_z", ("electronic", "z")), ("electronic_x", ("electronic", "x")),
               ("ionic_z", ("ionic", "z")), ("ionic_x", ("ionic", "x"))]


def nested_get(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    """``d[path[0]][path[1]]...``"""
    for key in path:
        d = d[key]
    return d


def mean_ci95(values: Any) -> dict[str, float]:
    """Mean, sample std and the 95 % confidence interval of the mean (Student t, n - 1
    degrees of freedom) of ``values``; NaN where n is too small."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half,
            "samples_count": n}


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std, 95 % CI of the mean of every quantity over the seeds of one cathode."""
    out: dict[str, Any] = {"seeds_count": len(samples)}
    for name, path, percolating_only in QUANTITIES:
        values = [nested_get(s, path) for s in samples]
        if percolating_only:
            values = [v for v in values if v is not None and math.isfinite(v)]
        out[name] = mean_ci95(values)
    for name, path in PERCOLATION:
        out[f"{name}_percolating_fraction"] = float(
            np.mean([nested_get(s, path)["percolates"] for s in samples]))
    return out


def run_ensemble(case: CaseSpec, out: Path, n_seeds: int, comm: MPI.Comm = MPI.COMM_WORLD
                 ) -> dict[str, Any]:
    if n_seeds < 2:
        raise ValueError(f"seeds = {n_seeds}: must be >= 2 for a confidence interval")
    s0 = case.section.seed
    per_seed: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    with atomic_result_dir(out, comm) as folder:
        for i in range(n_seeds):
            seeded = with_seed(case, s0 + i, "section")
            for kind in KINDS:
                if comm.rank == 0:
                    log.info(f"[seed {s0 + i}, {kind}]")
                tm, info, _ = _build(comm, seeded, kind)
                numbers, _ = solve_section(
                    tm, contact_resistance_ohm_cm2=case.conduction.contact_resistance_ohm_cm2,
                    contact_groups=case.conduction.contact_groups())
                numbers.pop("depth_profile", None)
                numbers["mesh"] = info
                per_seed[kind].append(numbers)
        summary: dict[str, Any] = {"case": case.name, "spec": spec_to_dict(case),
                   "seeds": list(range(s0, s0 + n_seeds)),
                   **{k: summarize(v) for k, v in per_seed.items()}}
        if comm.rank == 0:
            write_json(folder / "ensemble.json", summary)
            write_json(folder / "per_seed.json", per_seed)
            with (folder / "ensemble.csv").open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["quantity", "cathode", "mean", "std", "ci95_low", "ci95_high",
                            "samples_count"])
                for name, _, _ in QUANTITIES:
                    for kind in KINDS:
                        e = summary[kind][name]
                        w.writerow([name, kind, e["mean"], e["std"], e["ci95_low"],
                                    e["ci95_high"], e["samples_count"]])
    return summary


def print_ensemble(summary: dict[str, Any]) -> None:
    print(f"\n{len(summary['seeds'])} seeds; mean [95 % CI of the mean]")
    print(f"{'quantity':40s} {'gradient':>30s} {'homogeneous':>30s}")
    for name, _, _ in QUANTITIES:
        cells = []
        for kind in KINDS:
            e = summary[kind][name]
            cells.append(f"{e['mean']:.3g} [{e['ci95_low']:.3g}, {e['ci95_high']:.3g}]"
                         if e["samples_count"] else "no percolating seed")
        print(f"{name:40s} {cells[0]:>30s} {cells[1]:>30s}")
    for name, _ in PERCOLATION:
        key = f"{name}_percolating_fraction"
        print(f"{key:40s} {summary['gradient'][key]:>30.2f} {summary['homogeneous'][key]:>30.2f}")
