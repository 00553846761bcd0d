"""``cathodefem symmetric``: the Li | SSE | Li polarization test of the paper (Fig. S6).

Galvanostatic cycling of the separator electrolyte between two Li metal electrodes with the
half cell's parameter set (:mod:`fem.electrochem.symmetric`): the current changes direction
every ``symmetric.half_cycle_h``. Writes ``summary.json`` (parameters with sources, the
closed-form steady polarization and its parts, the polarization at the end of every half
cycle, the paper's value), ``symmetric.csv`` (every time step) and ``symmetric.png``.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

from cases.output import atomic_result_dir, write_json
from fem.electrochem.parameters import default_parameters
from fem.electrochem.symmetric import SymmetricCell, steady_polarization_V
from meshes.spec import CaseSpec, SpecError, spec_to_dict

__all__ = ["PAPER_POLARIZATION_MV", "print_symmetric", "run_symmetric"]

#: Cheng et al. 2021, Fig. S6: Li/SSE/Li at 0.2 mA and 50 C, 2 h cycles, stable for 500 h
PAPER_POLARIZATION_MV = {"value_mV": 50.0, "qualifier": "about",
                         "conditions": "0.2 mA, 50 C, 2 h cycles, 500 h",
                         "source": "Cheng et al., Adv. Energy Mater. 2021, Fig. S6"}

_PARTS = ("kinetic_bottom_V", "electrolyte_ohmic_V", "electrolyte_concentration_V",
          "kinetic_top_V")


def run_symmetric(case: CaseSpec, out: Path, comm: MPI.Comm = MPI.COMM_WORLD
                  ) -> dict[str, Any]:
    spec = case.symmetric
    params = default_parameters(spec.temperature_K).with_overrides(case.parameters)
    i_A_m2 = spec.current_mA * 1e-3 / (spec.electrode_area_cm2 * 1e-4)
    try:
        steady = steady_polarization_V(params, spec.separator_um, i_A_m2)
    except ValueError:
        raise SpecError(f"symmetric.current_mA = {spec.current_mA:g}: above the limiting "
                        f"current of this cell (the salt depletes at the plating electrode); "
                        f"lower the current or raise symmetric.electrode_area_cm2") from None
    sep = params.separator
    arr = params.arrhenius(sep)
    sources = params.sources()
    summary: dict[str, Any] = {
        "case": spec_to_dict(case),
        "parameters": {k: v for k, v in sources.items()
                       if k.startswith("separator.") or k in ("exchange_current_anode",
                                                              "salt_concentration")},
        "derived": {"current_density_mA_cm2": spec.current_mA / spec.electrode_area_cm2,
                    "separator_conductivity_S_cm": sep.conductivity.value * arr,
                    "separator_diffusivity_cm2_s": sep.diffusivity.value * arr,
                    "salt_relaxation_time_s": (spec.separator_um * 1e-4) ** 2
                    / (math.pi ** 2 * sep.diffusivity.value * arr)},
        "steady_polarization_mV": {k.replace("_V", "_mV"): -1e3 * v for k, v in steady.items()
                                   if k.endswith("_V")},
        "paper": PAPER_POLARIZATION_MV,
    }
    t_start = time.perf_counter()
    cell = SymmetricCell(params, spec.separator_um, spec.cells, comm=comm)
    salt0 = cell.salt_mol_m2()
    dt = spec.half_cycle_h * 3600.0 / spec.steps_per_half_cycle
    rows: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    salt_err = 0.0
    with atomic_result_dir(out, comm) as folder:
        for half in range(2 * spec.cycles):
            sign = 1.0 if half % 2 == 0 else -1.0
            for _ in range(spec.steps_per_half_cycle):
                try:
                    st = cell.step(dt, sign * i_A_m2)
                except RuntimeError as e:  # one line for the user; the folder is removed
                    # shorter steps do not lift a limiting current
                    hint = ("" if "limiting current" in str(e) else
                            "; more symmetric.steps_per_half_cycle may help, unless a "
                            "[parameters] value is far from physical")
                    raise ValueError(f"{e} (at {cell.time_s / 3600:.4g} h{hint})") from None
                rows.append(_row(st, spec.electrode_area_cm2))
            salt_err = max(salt_err, abs(cell.salt_mol_m2() / salt0 - 1.0))
            ends.append({"half_cycle": half + 1, "current_mA": sign * spec.current_mA,
                         "time_h": st.time_s / 3600.0,
                         "polarization_mV": abs(st.voltage_V) * 1e3,
                         **{k.replace("_V", "_mV"): -sign * 1e3 * getattr(st, k)
                            for k in _PARTS}})
        summary["half_cycles"] = ends
        summary["final_polarization_mV"] = ends[-1]["polarization_mV"]
        summary["max_salt_balance_rel"] = salt_err
        summary["wall_time_s"] = time.perf_counter() - t_start
        if comm.rank == 0:
            write_json(folder / "summary.json", summary)
            with (folder / "symmetric.csv").open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            from cases.plots import symmetric_figure

            symmetric_figure(rows, summary, folder / "symmetric.png")
    return summary


def _row(st: Any, area_cm2: float) -> dict[str, Any]:
    d = asdict(st)
    return {"time_h": d["time_s"] / 3600.0,
            "current_mA": d["current_A_m2"] * area_cm2 * 1e-1,
            "voltage_mV": 1e3 * d["voltage_V"],
            **{k.replace("_V", "_mV"): 1e3 * d[k] for k in _PARTS},
            "c_bottom_mol_m3": d["c_bottom_mol_m3"], "c_top_mol_m3": d["c_top_mol_m3"],
            "newton_iterations": d["newton_iterations"]}


def print_symmetric(summary: dict[str, Any]) -> None:
    s, d = summary["steady_polarization_mV"], summary["derived"]
    print(f"\nLi | SSE | Li at {d['current_density_mA_cm2']:.4g} mA/cm2, separator "
          f"{d['separator_conductivity_S_cm']:.3g} S/cm")
    print(f"{'polarization [mV]':40s}{'model':>10s}")
    for k in ("kinetic_bottom_mV", "electrolyte_ohmic_mV", "electrolyte_concentration_mV",
              "kinetic_top_mV"):
        print(f"  steady {k[:-3]:33s}{s[k]:10.2f}")
    print(f"{'  steady total (closed form)':40s}{s['voltage_mV']:10.2f}")
    print(f"{'  end of the last half cycle (FEM)':40s}{summary['final_polarization_mV']:10.2f}")
    p = summary["paper"]
    print(f"{'  paper Fig. S6':40s}{p['value_mV']:10.0f}  ({p['qualifier']}, "
          f"{p['conditions']})")
