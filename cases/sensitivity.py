"""One-at-a-time sensitivity of the rate study to the assumptions of the parameter set.

``cathodefem rate case.toml --sensitivity`` runs the rate study
(:func:`cases.cycling.run_rate_study`) once with the case's parameters (``base/``) and once
for every value of every varied parameter (``<name>=<value>/``, e.g.
``spe.diffusivity=1e-08/``), all other parameters at the set's (or the case's
``[parameters]``) values. The varied parameters are the case's ``[[sensitivity.vary]]``
tables, or by default the assumed transport and kinetic parameters of the set over their
plausible ranges (:data:`fem.electrochem.parameters.ASSUMPTION_RANGES`; a parameter the
case sets itself is left out of those). Writes ``summary.json`` (per
variation, cathode and rate the capacity and its change from the base), ``sensitivity.csv``
and ``sensitivity.png``. Like the ensemble, an interrupted study keeps what it finished in
``<out>.incomplete``, and ``--resume`` takes that over.

The question it answers: does the ordering of the cathodes, and the size of the gap, hold
when each assumed value moves within its range?
"""

from __future__ import annotations

import copy
import csv
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

from cases.cycling import (
    PAPER_RATE_CAPABILITY,
    _previous_run,
    _rate_protocols,
    run_or_take_over,
    uncovered_in_interrupted,
)
from cases.output import (
    atomic_result_dir,
    capacity_text,
    incomplete_path,
    refuse_uncovered,
    write_json,
)
from cases.study import KINDS
from fem.electrochem.parameters import (
    ASSUMPTION_RANGES,
    OVERRIDABLE,
    CellParameters,
    default_parameters,
    flatten_overrides,
)
from meshes.spec import CaseSpec, SpecError, parse_quantity, spec_to_dict

__all__ = ["Variation", "run_rate_sensitivity", "variations"]

log = logging.getLogger("cathodefem")

#: the most studies (base included) one sensitivity run may ask for
MAX_STUDIES = 200


@dataclass(frozen=True)
class Variation:
    """The values one parameter takes in turn (in its unit), and why this range."""

    parameter: str
    values: tuple[float, ...]
    unit: str
    base_value: float
    source: str

    def folder(self, value: float) -> str:
        return f"{self.parameter}={value:g}"


def _parameter(params: CellParameters, name: str) -> Any:
    layer, _, field_name = name.rpartition(".")
    return getattr(getattr(params, layer) if layer else params, field_name)


def variations(case: CaseSpec, params: CellParameters) -> list[Variation]:
    """The parameters and values of the case's ``[sensitivity]`` table (``vary``: a list of
    tables with ``parameter`` (a name of :data:`~fem.electrochem.parameters.OVERRIDABLE`),
    ``values`` (numbers in the parameter's unit or quantity strings) and ``source`` (why
    these values)), or the default :data:`~fem.electrochem.parameters.ASSUMPTION_RANGES`.
    Every value is checked as a ``[parameters]`` override is; mistakes raise a one-line
    :class:`~meshes.spec.SpecError`."""
    table = case.sensitivity
    if set(table) - {"vary"}:
        raise SpecError(f"sensitivity.{sorted(set(table) - {'vary'})[0]}: unknown key; "
                        f"allowed keys: ['vary']")
    if "vary" not in table:
        # the ranges are about the set's values: a parameter the case sets itself is left
        # out (give it a [[sensitivity.vary]] table)
        own = {name for name, _ in flatten_overrides(case.parameters, "parameters")}
        entries: list[Any] = [{"parameter": name, "values": list(values), "source": why}
                              for name, (values, why) in ASSUMPTION_RANGES.items()
                              if name not in own]
        left_out = sorted(own & set(ASSUMPTION_RANGES))
        if left_out and MPI.COMM_WORLD.rank == 0:
            log.warning(f"sensitivity: [parameters] sets {', '.join(left_out)}; the default "
                        f"ranges are about the set's values, so not varied here (give "
                        f"[[sensitivity.vary]] tables to vary them)")
        if not entries:
            raise SpecError("sensitivity: [parameters] sets every parameter of the default "
                            "ranges; give [[sensitivity.vary]] tables")
    else:
        entries = table["vary"]
        if not isinstance(entries, list) or not entries:
            raise SpecError("sensitivity.vary: expected one or more [[sensitivity.vary]] "
                            "tables with parameter, values and source")
    out: list[Variation] = []
    for i, entry in enumerate(entries):
        at = f"sensitivity.vary[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"parameter", "values", "source"}:
            raise SpecError(f"{at}: expected a table with exactly 'parameter', 'values' and "
                            f"'source', got {entry!r}")
        name = entry["parameter"]
        if not isinstance(name, str) or name not in OVERRIDABLE:
            raise SpecError(f"{at}.parameter = {name!r}: not a parameter a case can set; "
                            f"allowed: {sorted(OVERRIDABLE)}")
        if any(v.parameter == name for v in out):
            raise SpecError(f"{at}.parameter = {name!r}: varied twice; give all its values "
                            f"in one table")
        source = entry["source"]
        if not isinstance(source, str) or not source.strip():
            raise SpecError(f"{at}.source: must say where the values come from")
        raw = entry["values"]
        if not isinstance(raw, list) or not raw:
            raise SpecError(f"{at}.values: expected a list of one or more values, got {raw!r}")
        unit = _parameter(params, name).unit
        values: list[float] = []
        for j, v in enumerate(raw):
            value = parse_quantity(f"{at}.values[{j}]", v, unit)
            layer, _, field_name = name.rpartition(".")
            one = {field_name: {"value": value, "source": source}}
            params.with_overrides({layer: one} if layer else one,
                                  where=f"{at}.values[{j}]: parameters")
            base = _parameter(params, name).value
            if f"{value:g}" in (f"{w:g}" for w in values):  # one result folder per value
                raise SpecError(f"{at}.values[{j}] = {v!r}: given twice (values are told "
                                f"apart to 6 significant digits)")
            if f"{value:g}" == f"{base:g}":
                raise SpecError(f"{at}.values[{j}] = {v!r}: is the base value of "
                                f"{name} (the 'base' study runs it)")
            values.append(float(value))
        out.append(Variation(parameter=name, values=tuple(values), unit=unit,
                             base_value=_parameter(params, name).value, source=source))
    count = 1 + sum(len(v.values) for v in out)
    if count > MAX_STUDIES:
        raise SpecError(f"sensitivity.vary: {count} rate studies; must be <= {MAX_STUDIES}")
    return out


def _with_value(case: CaseSpec, variation: Variation, value: float) -> CaseSpec:
    """The case with one parameter set to ``value`` on top of its own [parameters] (which
    are rewritten as nested tables, so that no dotted alias of the name puts the case's
    own value back)."""
    from meshes.spec import SpecError

    parameters: dict[str, Any] = {}
    for name, entry in flatten_overrides(case.parameters, "parameters"):
        layer, _, field_name = name.rpartition(".")
        (parameters.setdefault(layer, {}) if layer else parameters)[field_name] = \
            copy.deepcopy(entry)
    layer, _, field_name = variation.parameter.rpartition(".")
    (parameters.setdefault(layer, {}) if layer else parameters)[field_name] = {
        "value": value, "source": f"sensitivity study: {variation.source}"}
    out = replace(case, parameters=parameters)
    got = _parameter(default_parameters(case.electrochemistry.temperature_K)
                     .with_overrides(parameters), variation.parameter).value
    if got != value:  # not expected: the override did not take
        raise SpecError(f"sensitivity: {variation.parameter} = {value:g} did not take "
                        f"(the case's parameters give {got:g})")
    return out


def _row(study: dict[str, Any], kinds: Sequence[str], i: int) -> dict[str, Any]:
    """Capacity per cathode at the i-th rate of one study, with their ratio."""
    caps = {k: study[k]["rates"][i]["capacity_mAh_g"] for k in kinds}
    row: dict[str, Any] = {f"{k}_capacity_mAh_g": caps[k] for k in kinds}
    row.update({f"{k}_stopped_by": study[k]["rates"][i]["stopped_by"] for k in kinds})
    row.update({f"{k}_status": study[k]["rates"][i]["status"] for k in kinds})
    if set(KINDS) <= set(kinds):
        g, h = caps["gradient"], caps["homogeneous"]
        row["gradient_minus_homogeneous_mAh_g"] = g - h
        row["gradient_over_homogeneous"] = g / h if h > 0 else None
    return row


def _summarize(summary: dict[str, Any], studies: dict[str, dict[str, Any]],
               varied: Sequence[Variation], rates_mA_g: Sequence[float],
               kinds: Sequence[str]) -> None:
    """Per rate: the base row, and per variation and value the row with its change from
    the base (in mAh/g and relative)."""
    if "base" not in studies:
        return
    table = []
    for i, rate in enumerate(rates_mA_g):
        base = _row(studies["base"], kinds, i)
        rows = []
        for v in varied:
            for value in v.values:
                study = studies.get(v.folder(value))
                if study is None:
                    continue
                row = {"parameter": v.parameter, "value": value, "unit": v.unit,
                       **_row(study, kinds, i)}
                for k in kinds:
                    q, q0 = row[f"{k}_capacity_mAh_g"], base[f"{k}_capacity_mAh_g"]
                    row[f"{k}_change_mAh_g"] = q - q0
                    row[f"{k}_change_rel"] = (q - q0) / q0 if q0 > 0 else None
                rows.append(row)
        table.append({"rate_mA_g": float(rate), "base": base, "variations": rows})
    summary["rates"] = table


def _write_table(path: Path, summary: dict[str, Any], kinds: Sequence[str]) -> None:
    """One row per rate and study; how each discharge ended (a "blocked" one is 0 mAh/g,
    a stalled or failed one's capacity is the one reached) next to its capacity."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        cols = [f"{k}_{c}" for k in kinds
                for c in ("capacity_mAh_g", "stopped_by", "status")]
        both = set(KINDS) <= set(kinds)
        w.writerow(["rate_mA_g", "parameter", "value", "unit", *cols,
                    *(["gradient_over_homogeneous"] if both else [])])
        for block in summary["rates"]:
            base = block["base"]
            for row in [{"parameter": "base", "value": "", "unit": "", **base},
                        *block["variations"]]:
                w.writerow([block["rate_mA_g"], row["parameter"], row["value"], row["unit"],
                            *(row[c] for c in cols),
                            *([row["gradient_over_homogeneous"]] if both else [])])


def run_rate_sensitivity(case: CaseSpec, out: Path, rates_mA_g: Sequence[float],
                         comm: MPI.Comm = MPI.COMM_WORLD, kinds: Sequence[str] = KINDS,
                         progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """The rate study with the case's parameters (``<out>/base``) and with each value of
    each varied parameter (``<out>/<parameter>=<value>``); returns the summary (also in
    ``<out>/summary.json``, with ``sensitivity.csv`` and ``sensitivity.png``). Collective."""
    _rate_protocols(case, rates_mA_g, kinds)  # bad input: one line, before any folder
    params = default_parameters(case.electrochemistry.temperature_K
                                ).with_overrides(case.parameters)
    varied = variations(case, params)
    plan = [("base", case)] + [(v.folder(x), _with_value(case, v, x))
                               for v in varied for x in v.values]
    summary: dict[str, Any] = {
        "case": spec_to_dict(case), "rates_mA_g": [float(r) for r in rates_mA_g],
        "kinds": list(kinds), "variations": [asdict(v) for v in varied],
        "studies": [name for name, _ in plan], "studies_done": [],
        "paper_capacity_mAh_g": PAPER_RATE_CAPABILITY, "complete": False}
    previous_folder = incomplete_path(out) if resume else None
    previous = _previous_run(previous_folder, case, comm, study="sensitivity")
    if previous is not None and previous.get("rates_mA_g") != summary["rates_mA_g"]:
        raise ValueError(f"--resume: {previous_folder} holds a sensitivity study at other "
                         f"rates (--rates {','.join(f'{r:g}' for r in previous['rates_mA_g'])})"
                         f"; resume with those, or remove {previous_folder} and run without "
                         f"--resume to start afresh")
    if previous is not None and previous.get("studies") != summary["studies"]:
        raise ValueError(f"--resume: {previous_folder} holds a sensitivity study of other "
                         f"parameter values ({len(previous.get('studies', []))} studies, "
                         f"{len(summary['studies'])} asked); resume with the same "
                         f"[sensitivity] table and version, or remove {previous_folder} and "
                         f"run without --resume to start afresh")
    done: dict[str, dict[str, Any]] = {}
    if previous is not None and previous_folder is not None:
        refuse_uncovered(previous_folder, [f"{k} (all studies)" for k in previous["kinds"]
                                           if k not in kinds])
        done = comm.bcast(_finished_studies(previous, previous_folder, kinds)
                          if comm.rank == 0 else None, root=0)
        refuse_uncovered(previous_folder, uncovered_in_interrupted(
            previous_folder, [name for name, _ in plan], kinds, rates_mA_g, comm))
    studies: dict[str, dict[str, Any]] = {}
    with atomic_result_dir(out, comm, keep_partial=True) as folder:

        def first_rate_done(kind: str, rate: float, capacity: float) -> None:
            # from the first finished rate on, an interrupted study keeps its folder
            if comm.rank == 0 and not (folder / "summary.json").exists():
                write_json(folder / "summary.json", summary)

        for n, (name, sub_case) in enumerate(plan):
            if comm.rank == 0:
                log.info(f"sensitivity study {n + 1} of {len(plan)}: {name}")
            studies[name] = run_or_take_over(sub_case, folder, name, previous_folder,
                                             done.get(name), rates_mA_g, comm, kinds,
                                             progress, first_rate_done)
            summary["studies_done"].append(name)
            _summarize(summary, studies, varied, rates_mA_g, kinds)
            if comm.rank == 0:
                write_json(folder / "summary.json", summary)
        summary["complete"] = True
        if comm.rank == 0:
            from cases.plots import sensitivity_figure

            write_json(folder / "summary.json", summary)
            _write_table(folder / "sensitivity.csv", summary, kinds)
            sensitivity_figure(summary, folder / "sensitivity.png")
    if previous_folder is not None and comm.rank == 0:
        import shutil

        shutil.rmtree(previous_folder, ignore_errors=True)  # all it held is in the result
    comm.barrier()
    return summary


def _finished_studies(previous: dict[str, Any], folder: Path, kinds: Sequence[str]
                      ) -> dict[str, dict[str, Any]]:
    """The studies an interrupted sensitivity run completed (for every cathode asked)."""
    import json

    done: dict[str, dict[str, Any]] = {}
    for name in previous.get("studies_done", []):
        try:
            study = json.loads((folder / name / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if study.get("complete") and all(k in study for k in kinds):
            done[name] = study
    return done


def print_sensitivity(summary: dict[str, Any]) -> None:
    """The capacity of each cathode per rate: base, then each parameter's values; a
    discharge that did not end at the cut-off is marked (its end in a note)."""
    kinds = summary["kinds"]
    both = set(KINDS) <= set(kinds)
    notes: list[str] = []
    for block in summary.get("rates", []):
        print(f"\ncapacity [mAh/g] at {block['rate_mA_g']:g} mA/g")
        head = f"{'parameter':28s}{'value':>12s}" + "".join(f"{k:>14s}" for k in kinds)
        print(head + (f"{'ratio':>9s}" if both else ""))
        for row in [{"parameter": "(base)", "value": None, **block["base"]},
                    *block["variations"]]:
            value = "" if row["value"] is None else f"{row['value']:.3g}"
            cells = []
            for k in kinds:
                text = capacity_text(row[f"{k}_capacity_mAh_g"])
                end, status = row[f"{k}_stopped_by"], row[f"{k}_status"]
                if end != "cutoff" or status != "completed":
                    text += "*"
                    notes.append(f"{k} {block['rate_mA_g']:g} mA/g {row['parameter']} "
                                 f"{value}: {end} ({status})".replace("  ", " "))
                cells.append(f"{text:>14s}")
            ratio = row.get("gradient_over_homogeneous")
            print(f"{row['parameter']:28s}{value:>12s}" + "".join(cells)
                  + ((f"{ratio:9.2f}" if ratio is not None else f"{'-':>9s}") if both
                     else ""))
    if notes:
        print(f"* did not end at the cut-off: {'; '.join(notes)}")
