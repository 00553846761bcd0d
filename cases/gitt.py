"""``cathodefem gitt``: galvanostatic intermittent titration of both cathodes (paper Fig. 3h-i).

Each cathode's half cell (the 2D section or the 3D column of the case, voxels or conforming,
as ``rate`` builds it) is discharged in pulses of ``gitt.current_mA_g`` for
``gitt.pulse_s``, each followed by a rest of ``gitt.rest_s``, from
``protocol.initial_theta`` until a pulse reaches ``gitt.cutoff_V``
(:mod:`fem.electrochem.gitt`). Every complete pulse is evaluated by the paper's Eq. 2 with
two contact areas (the electrode's geometric area and the connected wire surface, see
:mod:`fem.electrochem.gitt`).

Writes, per cathode, ``<cathode>/gitt.csv`` (every time step, with the voltage breakdown),
``<cathode>/gitt_pulses.csv`` (one row per pulse: voltages, IR drop, dE_s, dE_t,
polarization, dE_s / dE_t, the slope at the end of the rest, the two diffusivities);
``summary.json`` (the same, the capacity at the end and what ended the run, the paper's
values, parameters with sources) and ``gitt.png`` (voltage vs capacity, and the
diffusivities vs discharge fraction beside the paper's range) for both.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

from cases.cycling import (
    _cathode_cell,
    _cell_info,
    _min_salt,
    _read_records,
    _run_one,
    _utilization,
)
from cases.output import atomic_result_dir, write_json
from cases.study import KINDS
from fem.electrochem.gitt import (
    GittPulse,
    analyse_gitt,
    evaluate_pulse,
    gitt_protocol,
    solid_diffusion_number,
)
from fem.electrochem.parameters import default_parameters
from fem.electrochem.protocol import Protocol, ProtocolError, Record
from meshes.spec import CaseSpec, SpecError, spec_to_dict
from meshes.tags import phase_names

__all__ = ["PAPER_GITT", "gitt_case_protocol", "plot_gitt_runs", "print_gitt", "run_gitt"]

log = logging.getLogger("cathodefem")

#: Cheng et al. 2021, Fig. 3h-i (10 mA/g pulses of 10 min, 30 min rests, 1.5-4.0 V): the
#: gradient cathode's GITT discharge capacity and the range of its apparent Li diffusivity
#: from Eq. 2 over the discharge; the homogeneous cathode's is "about 3x lower" (text).
PAPER_GITT = {
    "gradient": {"capacity_mAh_g": 290.0, "diffusivity_range_cm2_s": [1e-12, 1e-10]},
    "homogeneous": {"capacity_mAh_g": None, "diffusivity_vs_gradient_ratio": 1.0 / 3.0},
    "source": "Cheng et al., Adv. Energy Mater. 2021, Fig. 3h-i and text",
}


def gitt_case_protocol(case: CaseSpec) -> Protocol:
    """The GITT lab sheet of ``case.gitt``, started and step-controlled as ``[protocol]``
    says (its steps and discharge_cutoff_V are not used)."""
    g = case.gitt
    base = {k: v for k, v in case.protocol.items() if k not in ("step", "discharge_cutoff_V")}
    try:
        protocol = gitt_protocol(current_mA_g=g.current_mA_g, pulse_s=g.pulse_s,
                                 rest_s=g.rest_s, cutoff_V=g.cutoff_V,
                                 max_pulses=g.max_pulses, first_dt_s=g.first_dt_s,
                                 pulse_steps=g.pulse_steps, **base)
    except ProtocolError as e:
        raise SpecError(str(e)) from None
    if g.first_dt_s < protocol.dt_min_s:
        raise SpecError(f"gitt.first_dt_s = {g.first_dt_s:g}: must be >= protocol.dt_min_s "
                        f"= {protocol.dt_min_s:g} s")
    return protocol


class _PulseLog:
    """One log line per pulse as soon as its rest has ended (a cycler's running titration
    report, for runs of hours): capacity, rested voltage, IR drop, dE_s / dE_t and Eq. 2 with
    the geometric area, from the same records and formula as ``gitt_pulses.csv``. Rank 0
    only. A pulse whose records, or whose preceding rest's, are partly in the checkpoint of a
    resume (not seen here) gets no line; the files at the end hold every pulse."""

    def __init__(self, kind: str, protocol: Protocol, initial_voltage_V: float,
                 volume_per_area_um: float, volume_per_interface_um: float | None,
                 comm: MPI.Comm) -> None:
        self.kind, self.protocol, self.initial = kind, protocol, initial_voltage_V
        self.volumes = (volume_per_area_um, volume_per_interface_um)
        self.rank0 = comm.rank == 0
        self.by_step: dict[int, list[Record]] = {}
        self.whole_from: int | None = None  # the first step whose every record is seen here

    def __call__(self, r: Record) -> None:
        if not self.rank0:
            return
        if self.whole_from is None:  # the run's first record, or the first after a resume
            fresh = r.step == 0 and math.isclose(r.time_s, r.dt_s, rel_tol=1e-9)
            self.whole_from = 0 if fresh else r.step + 1
        steps = self.by_step.setdefault(r.step, [])
        steps.append(r)
        if r.step % 2 == 0:
            return
        # a rest's record: report its pulse when the rest has run its whole duration (the
        # criterion of run_protocol, on the same sum of time steps)
        duration = self.protocol.steps[r.step].duration_s or 0.0
        if duration - sum(x.dt_s for x in steps) > 1e-9 * max(1.0, duration):
            return
        k = r.step - 1
        rp, rr = self.by_step.get(k), steps
        before = (self.initial if k == 0 else
                  self.by_step[k - 1][-1].voltage_V if k - 1 in self.by_step else None)
        for old in [s for s in self.by_step if s < k]:
            del self.by_step[old]
        if k < self.whole_from or not rp or before is None:
            return
        sign = 1.0 if (self.protocol.steps[k].current_mA_g or 0.0) > 0 else -1.0
        try:
            p = evaluate_pulse(k // 2 + 1, rp, rr, before, sign,
                               active_volume_per_area_um=self.volumes[0],
                               active_volume_per_interface_um=self.volumes[1])
        except (ArithmeticError, ValueError):  # a report only: never stop the run (rank 0)
            return
        ratio = _text(p.de_s_de_t_ratio, ".3f")
        log.info(f"[{self.kind}] pulse {p.pulse}: {p.capacity_mAh_g:.2f} mAh/g, rested "
                 f"{p.rest_voltage_after_V:.4f} V, IR drop {p.ir_drop_V * 1e3:.1f} mV, "
                 f"dE_s / dE_t {ratio}, D (geometric area) "
                 f"{_text(p.d_geometric_cm2_s)} cm2/s")


def _write_pulses(path: Path, pulses: Sequence[GittPulse]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(GittPulse.__dataclass_fields__))
        w.writeheader()
        for p in pulses:
            w.writerow(p.as_row())


def _range(values: Sequence[float | None]) -> list[float] | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return [min(finite), max(finite)] if finite else None


def _median(values: Sequence[float | None]) -> float | None:
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return None
    n = len(finite)
    return finite[n // 2] if n % 2 else 0.5 * (finite[n // 2 - 1] + finite[n // 2])


def run_gitt(case: CaseSpec, out: Path, comm: MPI.Comm = MPI.COMM_WORLD,
             kinds: Sequence[str] = KINDS, progress: bool = True,
             checkpoint_every: int = 0, resume: bool = False) -> dict[str, Any]:
    """Run the GITT of ``case.gitt`` on each cathode; returns the summary (also on disk).

    ``checkpoint_every`` and ``resume`` as in :func:`cases.cycling.run_cycling`: the paper's
    10 mA/g titration runs for hours, longer than many batch jobs may."""
    from cases.cycling import _check_geometry, checkpoint_for, drop_checkpoints_when_completed

    protocol = gitt_case_protocol(case)
    _check_geometry(case, kinds)
    ec = case.electrochemistry
    params = default_parameters(ec.temperature_K).with_overrides(case.parameters)
    initial_voltage = float(params.ocv(protocol.initial_theta))
    if case.gitt.cutoff_V >= initial_voltage:
        raise SpecError(f"gitt.cutoff_V = {case.gitt.cutoff_V:g}: must be below the "
                        f"open-circuit voltage at protocol.initial_theta = "
                        f"{protocol.initial_theta:g} ({initial_voltage:.4g} V)")
    summary: dict[str, Any] = {
        "case": spec_to_dict(case), "phase_names": phase_names(),
        "parameters": params.sources(), "initial_theta": protocol.initial_theta,
        "initial_voltage_V": initial_voltage,
        "input_solid_diffusivity_cm2_s": params.solid_diffusivity.value,
        "paper": PAPER_GITT}
    records: dict[str, Any] = {}
    with atomic_result_dir(out, comm) as folder:
        for kind in kinds:
            cell, info = _cathode_cell(comm, case, kind, params, folder)
            entry = _cell_info(cell, info)
            cross = cell.cross_section_um2()
            volume = cell.active_volume_um3()
            area = cell.connected_interface_area_um2()
            pulse_log = _PulseLog(kind, protocol, initial_voltage, volume / cross,
                                  volume / area if area > 0 else None, comm)
            res, status, wall = _run_one(comm, cell, protocol, folder / kind, "gitt.csv",
                                         kind, ec.fields_every, progress,
                                         checkpoint_for(out, kind, checkpoint_every, resume,
                                                        comm),
                                         fields_at_steps=False, observe=pulse_log)
            cell.release_solver_options()
            entry["utilization"] = _utilization(cell, protocol.initial_theta,
                                                folder / kind / "particles.csv")
            cell.free()
            blocked = bool(res.stopped_by) and res.stopped_by[0] == "blocked"
            pulses = analyse_gitt(res.records, res.stopped_by, protocol, initial_voltage,
                                  active_volume_per_area_um=volume / cross,
                                  active_volume_per_interface_um=(volume / area if area > 0
                                                                  else None))
            reached = "cutoff" in res.stopped_by
            ran_out = (status == "completed" and not blocked and not reached
                       and "stalled" not in res.stopped_by)
            entry.update({
                "status": "blocked" if blocked else status, "wall_time_s": wall,
                "time_steps_count": len(res.records),
                "capacity_mAh_g": res.records[-1].capacity_mAh_g if res.records else 0.0,
                "end_voltage_V": res.records[-1].voltage_V if res.records else None,
                # False: gitt.max_pulses ran out first, a pulse stalled, or the run stopped
                # or was blocked; ended_by says which (the last step's stop reason)
                "reached_cutoff": reached,
                "ended_by": ("stopped" if status != "completed" else
                             res.stopped_by[-1] if res.stopped_by else None),
                "pulses_count": len(pulses),
                "active_volume_per_area_um": volume / cross,
                "active_volume_per_interface_um": volume / area if area > 0 else None,
                "connected_interface_area_ratio": area / cross,
                "max_charge_balance_rel": max((r.charge_balance_rel for r in res.records),
                                              default=0.0),
                "max_li_balance_rel": max((r.li_balance_rel for r in res.records),
                                          default=0.0),
                "min_electrolyte_concentration_mol_m3": _min_salt(res.records),
                "diffusivity_geometric_range_cm2_s": _range(
                    [p.d_geometric_cm2_s for p in pulses]),
                "diffusivity_geometric_median_cm2_s": _median(
                    [p.d_geometric_cm2_s for p in pulses]),
                "diffusivity_interface_range_cm2_s": _range(
                    [p.d_interface_cm2_s for p in pulses]),
                "diffusivity_interface_median_cm2_s": _median(
                    [p.d_interface_cm2_s for p in pulses]),
                # near 1: the pulses saw a uniform electrode, Eq. 2 gave its bound only
                "de_s_de_t_median_ratio": _median([p.de_s_de_t_ratio for p in pulses]),
                # tau D_s / (V/S)^2 with the model's own solid diffusivity: Eq. 2 can
                # recover D_s only where this is << 1
                "solid_diffusion_interface_number": (solid_diffusion_number(
                    case.gitt.pulse_s, params.solid_diffusivity.value, volume / area)
                    if area > 0 else None),
                "solid_diffusion_geometric_number": solid_diffusion_number(
                    case.gitt.pulse_s, params.solid_diffusivity.value, volume / cross),
                "pulses": [p.as_row() for p in pulses]})
            summary[kind] = entry
            records[kind] = res.records
            if comm.rank == 0:
                _write_pulses(folder / kind / "gitt_pulses.csv", pulses)
                if blocked:
                    log.warning(f"[{kind}] blocked: no reacting interface is connected to "
                                f"both the collector and the anode; no pulse ran")
                else:
                    log.info(f"[{kind}] {entry['status']}; {len(pulses)} complete pulses, "
                             f"{entry['capacity_mAh_g']:.4g} mAh/g, {len(res.records)} time "
                             f"steps in {wall:.1f} s")
                if res.stopped_by and res.stopped_by[-1] == "stalled":
                    log.warning(f"[{kind}] pulse {len(res.stopped_by) // 2 + 1} stalled "
                                f"above the cut-off (time steps below "
                                f"protocol.stall_dt_s): the run ends there")
                if ran_out:
                    log.warning(f"[{kind}] gitt.max_pulses = {case.gitt.max_pulses} ran "
                                f"out before the cut-off of {case.gitt.cutoff_V:g} V")
        if comm.rank == 0:
            write_json(folder / "summary.json", summary)
            from cases.plots import gitt_figure

            gitt_figure(summary, records, kinds, folder / "gitt.png")
    drop_checkpoints_when_completed(out, {k: summary[k]["status"] for k in kinds}, comm)
    return summary


def _text(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def print_gitt(summary: dict[str, Any], kinds: Sequence[str] = KINDS) -> None:
    print(f"\nGITT from theta = {summary['initial_theta']:g} "
          f"({summary['initial_voltage_V']:.3f} V); input solid diffusivity "
          f"{summary['input_solid_diffusivity_cm2_s']:.3g} cm2/s")
    print(f"{'':44s}" + "".join(f"{k:>16s}" for k in kinds))

    def row(label: str, fn: Any) -> None:
        cells = []
        for k in kinds:
            e = summary[k]
            cells.append(f"{fn(e):>16s}" if e["status"] != "blocked" else f"{'blocked':>16s}")
        print(f"{label:44s}" + "".join(cells))

    row("capacity at the end [mAh/g]", lambda e: _text(e["capacity_mAh_g"], ".4g"))
    row("  ended at the cut-off", lambda e: "yes" if e["reached_cutoff"] else "no")
    row("complete pulses", lambda e: str(e["pulses_count"]))
    row("D, geometric area, median [cm2/s]",
        lambda e: _text(e["diffusivity_geometric_median_cm2_s"]))
    row("D, geometric area, min [cm2/s]",
        lambda e: _text((e["diffusivity_geometric_range_cm2_s"] or [None])[0]))
    row("D, geometric area, max [cm2/s]",
        lambda e: _text((e["diffusivity_geometric_range_cm2_s"] or [None, None])[1]))
    row("  dE_s / dE_t, median (<< 1 for Eq. 2)", lambda e: _text(e["de_s_de_t_median_ratio"]))
    row("D, connected wire surface, median [cm2/s]",
        lambda e: _text(e["diffusivity_interface_median_cm2_s"]))
    row("  tau D_s / (V/S)^2 of the wires (<< 1?)",
        lambda e: _text(e["solid_diffusion_interface_number"]))
    paper = summary["paper"]["gradient"]
    lo, hi = paper["diffusivity_range_cm2_s"]
    print(f"paper (gradient, Fig. 3h-i): {paper['capacity_mAh_g']:g} mAh/g, D {lo:g}-{hi:g} "
          f"cm2/s; homogeneous about 3x lower")


FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def plot_gitt_runs(folders: Sequence[Path], path: Path,
                   labels: Sequence[str] | None = None) -> list[str]:
    """One figure (paper Fig. 3h-i) of the GITT runs in several ``cathodefem gitt`` result
    folders, e.g. the membrane on a 2D section and the tape-cast cathode on a 3D column (two
    cases, two runs). Every cathode of every folder that ran is drawn; ``labels`` (one per
    folder, default the folder names when there are several) tell the runs apart; a cathode
    drawn once keeps its colour. An existing figure file is replaced. Returns the curves'
    labels. Bad input is a one-line ValueError naming the folder or option."""
    import json

    from cases.plots import _KIND_COLORS, GittSeries, gitt_comparison_figure

    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"--out {path}: the figure's file name must end in "
                         f"{', '.join(FIGURE_SUFFIXES)}")
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"--out {path}: is a folder; give the figure's file name")
    if labels is not None:
        labels = [text.strip() for text in labels]
        if len(labels) != len(folders):
            raise ValueError(f"--labels: {len(labels)} given for {len(folders)} folders (one "
                             f"per folder, separated by commas)")
        if not all(labels) or len(set(labels)) != len(labels):
            raise ValueError(f"--labels {','.join(labels)}: every label must be non-empty and "
                             f"different")
    runs: list[tuple[str, dict[str, Any]]] = []
    for k, folder in enumerate(folders):
        file = folder / "summary.json"
        if not file.is_file():
            raise ValueError(f"{folder}: no summary.json (not a finished cathodefem gitt "
                             f"result folder)")
        try:
            summary = json.loads(file.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{file}: cannot be read ({e})") from None
        if not (isinstance(summary, dict) and isinstance(summary.get("case"), dict)
                and "gitt" in summary["case"] and "paper" in summary
                and any(isinstance(summary.get(kd), dict) and "pulses" in summary[kd]
                        for kd in KINDS)):
            raise ValueError(f"{folder}: not a cathodefem gitt result (its summary.json has "
                             f"no pulses)")
        name = labels[k] if labels is not None else (folder.resolve().name
                                                     if len(folders) > 1 else "")
        runs.append((name, summary))
    settings = {json.dumps([s["case"]["gitt"][x] for x in ("current_mA_g", "pulse_s",
                                                          "rest_s")]) for _, s in runs}
    same = len(settings) == 1
    inputs = {s.get("input_solid_diffusivity_cm2_s") for _, s in runs}
    kinds_drawn = [kd for _, s in runs for kd in KINDS if isinstance(s.get(kd), dict)]
    palette = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#17becf",
               "#bcbd22"]
    repeated = 0
    series: list[GittSeries] = []
    for folder, (name, summary) in zip(folders, runs, strict=True):
        for kd in KINDS:
            entry = summary.get(kd)
            if not isinstance(entry, dict):
                continue
            q: list[float] = []
            v: list[float] = []
            csv_file = folder / kd / "gitt.csv"
            if entry.get("status") != "blocked":
                try:
                    recs = _read_records(csv_file)
                except (OSError, KeyError, ValueError, TypeError) as e:
                    raise ValueError(f"{csv_file}: cannot be read ({e})") from None
                q = [r.capacity_mAh_g for r in recs]
                v = [r.voltage_V for r in recs]
            label = kd if not name else f"{kd}, {name}"
            if not same:
                g = summary["case"]["gitt"]
                label += (f" ({g['current_mA_g']:g} mA/g, {g['pulse_s']:g} s pulses, "
                          f"{g['rest_s']:g} s rests)")
            if kinds_drawn.count(kd) == 1:
                color = _KIND_COLORS[kd]
            else:  # a cathode drawn more than once: colours other than the cathodes'
                color = palette[repeated % len(palette)]
                repeated += 1
            series.append(GittSeries(label=label, color=color, entry=entry,
                                     capacity_mAh_g=q, voltage_V=v,
                                     initial_voltage_V=summary["initial_voltage_V"]))
    first = runs[0][1]
    try:
        gitt_comparison_figure(series, first["case"]["gitt"] if same else None,
                               first["paper"], inputs.pop() if len(inputs) == 1 else None,
                               path)
    except OSError as e:
        raise ValueError(f"--out {path}: cannot be written ({e.strerror or e})") from None
    return [s.label for s in series]
