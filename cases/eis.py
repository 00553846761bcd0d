"""``cathodefem eis``: virtual impedance spectroscopy of both cathodes (paper Fig. 3j).

Each cathode's half cell (the 2D section or the 3D column of the case, voxels or conforming,
as ``rate`` builds it) is linearised about rest at the open-circuit voltage
``eis.voltage_V`` (:mod:`fem.electrochem.impedance`) and its impedance computed from
``eis.f_max_Hz`` down to ``eis.f_min_Hz``. An equivalent circuit R0 - (R || C) arcs - Wo is
fitted to every spectrum: R0 is the bulk resistance R_b, the arcs the charge-transfer
resistances (the sum is reported as R_ct, each arc apart, and beside them the closed forms
of the linearised kinetics of the connected interface and of the Li anode, which exclude
transport). Writes, per cathode, ``<cathode>/impedance.csv`` (frequency, Z in ohm for
``eis.electrode_area_cm2`` and in ohm cm2), and ``summary.json`` (spectra, fits, the paper's
values, parameters with sources) and ``nyquist.png`` for both. """

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

import numpy as np
from scipy.optimize import brentq

from cases.cycling import _cathode_cell, _cell_info, _check_geometry
from cases.output import atomic_result_dir, write_json
from cases.study import KINDS
from fem.electrochem.impedance import (
    ImpedanceSolveError,
    fit_circuit,
    impedance_spectrum,
    log_frequencies,
)
from fem.electrochem.parameters import default_parameters
from meshes.spec import CaseSpec, SpecError, spec_to_dict
from meshes.tags import phase_names

__all__ = ["PAPER_CHARGE_TRANSFER_OHM", "print_eis", "run_eis"]

log = logging.getLogger("cathodefem")

#: Cheng et al. 2021, Fig. 3j: charge-transfer resistance of the cells before cycling
#: (Nyquist plots, about 3.2 V), read from the text: "about 125" and "about 160" ohm.
PAPER_CHARGE_TRANSFER_OHM = {"gradient": 125.0, "homogeneous": 160.0}


def _theta_at(params: Any, voltage_V: float) -> float:
    """Lithiation whose open-circuit voltage is ``voltage_V`` (the OCV decreases)."""
    ocv = params.ocv
    lo, hi = 1e-6, 1.0 - 1e-6
    if not (float(ocv(hi)) < voltage_V < float(ocv(lo))):
        raise SpecError(f"eis.voltage_V = {voltage_V:g}: must lie within the open-circuit "
                        f"voltage range ({float(ocv(hi)):.3g}, {float(ocv(lo)):.3g}) V")
    return float(brentq(lambda t: float(ocv(t)) - voltage_V, lo, hi, xtol=1e-14))


def _text(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _unit_of(name: str) -> str:
    """Unit of an impedance.py circuit parameter (R0, CPE1_0, CPE1_1, Wo3_0, Wo3_1)."""
    element = name.split("_")[0].rstrip("0123456789")
    index = name.split("_")[1] if "_" in name else ""
    return {("R", ""): "ohm", ("C", ""): "F", ("CPE", "0"): "F s^(n-1)", ("CPE", "1"): "1",
            ("Wo", "0"): "ohm", ("Wo", "1"): "s"}.get((element, index), "")


def _fit_entry(freqs: np.ndarray, z_ohm: np.ndarray, spectrum: Any) -> dict[str, Any]:
    """The fitted circuit, its arcs, each arc assigned to the cathode or the Li anode (the
    interface whose kinetic frequency (alpha_a + alpha_c) F i0 / (2 pi RT C_dl) is nearer in log
    frequency,
    within a decade; "other" beyond), R_b (the fit's R0) and R_ct (the sum of the cathode
    and anode arcs); None where no circuit fits."""
    fit = fit_circuit(freqs, z_ohm)
    if fit is None:
        return {"fit": None, "bulk_resistance_ohm": None,
                "charge_transfer_resistance_ohm": None, "cathode_arc_ohm": None,
                "anode_arc_ohm": None}
    arcs: list[dict[str, Any]] = [dict(a) for a in fit.arcs()]
    f_c, f_a = spectrum.kinetic_cathode_frequency_Hz, spectrum.kinetic_anode_frequency_Hz
    for a in arcs:
        lf = np.log10(a["frequency_Hz"])
        if not (np.isfinite(f_a) and np.isfinite(f_c)):  # no double layer: no reference
            a["interface"] = "other"
            continue
        d_a, d_c = abs(lf - np.log10(f_a)), abs(lf - np.log10(f_c))
        # more than a decade from both kinetic frequencies: transport (e.g. the dispersion
        # of the pore electrolyte at high frequency), not a charge transfer
        a["interface"] = ("other" if min(d_a, d_c) > 1.0 else
                          "anode" if d_a < d_c else "cathode")
    warburg = [v for n, v in zip(fit.names, fit.values, strict=True) if n.endswith("_0")
               and n.startswith("Wo")]
    return {
        "fit": {"circuit": fit.circuit,
                "parameters": dict(zip(fit.names, fit.values, strict=True)),
                "parameter_units": {n: _unit_of(n) for n in fit.names},
                "max_misfit_rel": fit.max_misfit_rel, "arcs": arcs,
                # a Warburg element fitted to ~0: the arcs took the diffusion in
                "warburg_ohm": warburg[0] if warburg else None},
        "bulk_resistance_ohm": fit.value("R0"),
        "charge_transfer_resistance_ohm": (sum(a["resistance_ohm"] for a in arcs
                                               if a["interface"] != "other")
                                           if any(a["interface"] != "other" for a in arcs)
                                           else None),
        "cathode_arc_ohm": sum(a["resistance_ohm"] for a in arcs
                               if a["interface"] == "cathode"),
        "anode_arc_ohm": sum(a["resistance_ohm"] for a in arcs if a["interface"] == "anode"),
    }


def run_eis(case: CaseSpec, out: Path, comm: MPI.Comm = MPI.COMM_WORLD,
            kinds: Sequence[str] = KINDS) -> dict[str, Any]:
    spec = case.eis
    _check_geometry(case, kinds)
    params = default_parameters(case.electrochemistry.temperature_K).with_overrides(
        case.parameters)
    theta = _theta_at(params, spec.voltage_V)
    freqs = log_frequencies(spec.f_min_Hz, spec.f_max_Hz, spec.points_per_decade)
    area = spec.electrode_area_cm2
    summary: dict[str, Any] = {
        "case": spec_to_dict(case), "phase_names": phase_names(),
        "parameters": params.sources(), "theta": theta, "ocv_V": spec.voltage_V,
        "electrode_area_cm2": area,
        "paper_charge_transfer_ohm": dict(PAPER_CHARGE_TRANSFER_OHM),
        "paper_source": "Cheng et al., Adv. Energy Mater. 2021, Fig. 3j (before cycling)"}
    with atomic_result_dir(out, comm) as folder:
        for kind in kinds:
            cell, info = _cathode_cell(comm, case, kind, params, folder)
            entry = _cell_info(cell, info)
            if not cell.can_pass_current:
                cell.release_solver_options()
                cell.free()
                entry["status"] = "blocked"
                summary[kind] = entry
                if comm.rank == 0:
                    log.warning(f"[{kind}] blocked: no reacting interface is connected to "
                                f"both the collector and the anode; its impedance is "
                                f"infinite")
                continue
            t0 = time.perf_counter()
            if comm.rank == 0:
                log.info(f"[{kind}] impedance at {len(freqs)} frequencies, "
                         f"{freqs[-1]:g}-{freqs[0]:g} Hz, theta = {theta:.4f}")
            try:
                spectrum = impedance_spectrum(cell, theta, freqs)
            except ImpedanceSolveError as e:  # say so, keep the other cathode
                entry["status"] = f"failed: {e}"
                summary[kind] = entry
                if comm.rank == 0:
                    log.error(f"[{kind}] {e}; no spectrum")
                continue
            finally:
                cell.release_solver_options()
                cell.free()
            z_ohm = spectrum.z_ohm(area)
            entry.update({
                "status": "completed", "wall_time_s": time.perf_counter() - t0,
                "frequency_Hz": freqs.tolist(), "z_real_ohm": z_ohm.real.tolist(),
                "z_imag_ohm": z_ohm.imag.tolist(),
                "high_frequency_resistance_ohm": float(z_ohm[np.argmax(freqs)].real),
                "cross_section_um2": spectrum.cross_section_um2,
                "connected_interface_area_um2": spectrum.connected_interface_area_um2,
                "anode_area_um2": spectrum.anode_area_um2,
                # the linearised kinetics alone, without transport (fem.electrochem.impedance)
                "kinetic_cathode_closed_form_ohm": spectrum.kinetic_cathode_ohm_m2
                / (area * 1e-4),
                "kinetic_anode_closed_form_ohm": spectrum.kinetic_anode_ohm_m2 / (area * 1e-4),
                "kinetic_cathode_frequency_Hz": spectrum.kinetic_cathode_frequency_Hz,
                "kinetic_anode_frequency_Hz": spectrum.kinetic_anode_frequency_Hz,
            })
            # the same least-squares fit on every rank would be repeated work: rank 0
            entry.update(comm.bcast(_fit_entry(freqs, z_ohm, spectrum)
                                    if comm.rank == 0 else None, root=0))
            if entry["fit"] is None and comm.rank == 0:
                log.warning(f"[{kind}] no equivalent circuit could be fitted: the spectrum "
                            f"is written, R_b and R_ct are left empty")
            summary[kind] = entry
            if comm.rank == 0:
                (folder / kind).mkdir(exist_ok=True)
                with (folder / kind / "impedance.csv").open("w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["frequency_Hz", "z_real_ohm", "z_imag_ohm",
                                "z_real_ohm_cm2", "z_imag_ohm_cm2"])
                    for f, z in zip(freqs, z_ohm, strict=True):
                        w.writerow([f"{f:.6g}", f"{z.real:.8g}", f"{z.imag:.8g}",
                                    f"{z.real * area:.8g}", f"{z.imag * area:.8g}"])
                log.info(f"[{kind}] R_b = {_text(entry['bulk_resistance_ohm'])} ohm, R_ct = "
                         f"{_text(entry['charge_transfer_resistance_ohm'])} ohm "
                         f"({entry['wall_time_s']:.1f} s)")
        if comm.rank == 0:
            write_json(folder / "summary.json", summary)
            from cases.plots import nyquist_figure

            nyquist_figure(summary, kinds, folder / "nyquist.png")
    return summary


def print_eis(summary: dict[str, Any], kinds: Sequence[str] = KINDS) -> None:
    print(f"\nimpedance at {summary['ocv_V']:g} V (theta = {summary['theta']:.4f}), "
          f"{summary['electrode_area_cm2']:g} cm2")
    print(f"{'':36s}" + "".join(f"{k:>16s}" for k in kinds))
    rows = [("Re Z at the highest frequency [ohm]", "high_frequency_resistance_ohm"),
            ("bulk resistance R_b (fit) [ohm]", "bulk_resistance_ohm"),
            ("R_ct = cathode + anode arcs [ohm]", "charge_transfer_resistance_ohm"),
            ("  cathode arc", "cathode_arc_ohm"),
            ("  Li anode arc", "anode_arc_ohm"),
            ("  closed form, cathode kinetics", "kinetic_cathode_closed_form_ohm"),
            ("  closed form, Li anode kinetics", "kinetic_anode_closed_form_ohm")]
    for label, key in rows:
        cells = []
        for k in kinds:
            e = summary[k]
            cells.append(f"{_text(e[key]):>16s}" if e["status"] == "completed"
                         else f"{e['status'].split(':')[0]:>16s}")
        print(f"{label:36s}" + "".join(cells))
    paper = summary["paper_charge_transfer_ohm"]
    print(f"{'R_ct, paper Fig. 3j [ohm]':36s}"
          + "".join(f"{'about ' + format(paper[k], 'g'):>16s}" for k in kinds))
    for k in kinds:
        e = summary[k]
        if e["status"] == "completed" and e["fit"] is not None:
            arcs = ", ".join(f"{a['interface']} {a['resistance_ohm']:.4g} ohm at "
                             f"{a['frequency_Hz']:.3g} Hz (n = {a['cpe_n']:.2f})"
                             for a in e["fit"]["arcs"])
            print(f"  {k}: {e['fit']['circuit']}; arcs {arcs}; misfit "
                  f"{e['fit']['max_misfit_rel']:.1%}")
