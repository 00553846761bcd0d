"""Cycling protocols as data (a lab sheet) and the time loop that runs them on a half cell.

A protocol is a list of steps:

* ``cc``: constant specific current (mA/g of active material; positive = discharge) until a
  cut-off voltage, a duration, or both;
* ``cv``: constant cell voltage until the current falls below a limit, a duration, or both;
* ``rest``: zero current for a duration.

Time stepping: backward Euler with adaptive steps. A step grows by 1.5x after an easy Newton
solve (iterations + 4 x Jacobian assemblies <= 14), stays after a harder one (<= 30) and
shrinks by 0.7 otherwise, up to ``dt_max_s`` and up to a
lithiation change of ``dtheta_max`` per step; a failed Newton solve halves it (at most
``max_cuts`` times in a row, then the run stops with :class:`ProtocolError` and the last
converged state is kept). A cut-off crossed inside a step is located by re-solving that step
with secant-corrected lengths until the end voltage is within ``cutoff_tol_V`` of the cut-off,
so the step ends *at* the cut-off. At a limiting current (salt depleted where the wires react)
the voltage plunges faster than any step can follow: when Newton fails three times in a row in
a cc step, a solve at the cut-off voltage decides; if the cell delivers less than the asked
current there, the step ends on that state (stopped by the cut-off).

A cc step can also *stall* above its cut-off: Newton converges, but only on steps far
shorter than the discharge needs (seen on a 3D tape-cast column whose electrolyte reaches
its wires through 5 of 5 509 interface facets: the salt there is exhausted within 0.1 s and
the steps stay near 5e-4 s, 0.014 mAh/g in 20 min). After ``stall_steps`` consecutive
accepted steps shorter than ``stall_dt_s`` the step ends, stopped by "stalled", with the
capacity it reached; the time steps and the lowest salt concentration are in the records.
The count is of steps, not of wall time, so the same input stops at the same state.

A step may start with its own first time step (``dt_initial_s``), so that a current switched
on or off is resolved from its instantaneous response; a cc step with ``end_at_cutoff`` ends
the whole protocol when it stops at its cut-off, stalls or finds the cell blocked (a
cycler's "end test" limit); a cut-off crossed by the instantaneous drop alone ends on a step
of ``dt_min_s``. These serve
the GITT sequence of :mod:`fem.electrochem.gitt`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

import numpy as np

from fem.electrochem.halfcell import HalfCell, NewtonFailure, StepReport
from fem.electrochem.parameters import ModelUnits
from meshes.spec import first_difference

__all__ = [
    "VOLTAGE_RANGE_V",
    "CheckpointError",
    "Protocol",
    "ProtocolError",
    "Record",
    "RunResult",
    "Step",
    "load_checkpoint",
    "protocol_from_dict",
    "run_protocol",
    "save_checkpoint",
]

VOLTAGE_RANGE_V = (0.5, 5.0)


class ProtocolError(ValueError):
    """Invalid protocol input, or a run that cannot continue (message is one line)."""


class CheckpointError(ProtocolError):
    """A resume that cannot start: no checkpoint, or one written by another run."""


@dataclass(frozen=True, kw_only=True)
class Step:
    kind: str  # "cc", "cv" or "rest"
    current_mA_g: float = 0.0  # cc: positive discharge, negative charge
    voltage_V: float | None = None  # cv: held voltage
    until_voltage_V: float | None = None  # cc: cut-off
    until_current_mA_g: float | None = None  # cv: stop when |I| falls below
    duration_s: float | None = None  # every kind: maximum duration
    label: str = ""
    #: the first time step of this step (s); default: the step length the previous step
    #: reached. A current switched on or off needs a short first step to resolve the
    #: instantaneous (ohmic and kinetic) response, e.g. the pulses and rests of GITT
    dt_initial_s: float | None = None
    #: the longest time step of this step (s; at most the protocol's ``dt_max_s``), e.g. a
    #: pulse resolved by 20 steps inside a protocol whose rests take long steps
    dt_max_s: float | None = None
    #: a cc step that stops at its cut-off (or stalls, or finds the cell blocked) ends the
    #: whole protocol (the later steps do not run), as a cycler's "end test" limit: the GITT
    #: pulses
    end_at_cutoff: bool = False

    def __post_init__(self) -> None:
        name = self.label or self.kind
        if self.kind not in ("cc", "cv", "rest"):
            raise ProtocolError(f"step {name}: kind = {self.kind!r}, must be cc, cv or rest")
        lo, hi = VOLTAGE_RANGE_V
        for key in ("voltage_V", "until_voltage_V"):
            v = getattr(self, key)
            if v is not None and not (lo <= v <= hi):
                raise ProtocolError(f"step {name}: {key} = {v}, must be in [{lo}, {hi}] V")
        if self.duration_s is not None and not (0 < self.duration_s < 1e9):
            raise ProtocolError(f"step {name}: duration_s = {self.duration_s}, must be in "
                                f"(0, 1e9) s")
        if not math.isfinite(self.current_mA_g) or abs(self.current_mA_g) > 1e6:
            raise ProtocolError(f"step {name}: current_mA_g = {self.current_mA_g}, must be "
                                f"finite with |I| <= 1e6 mA/g")
        if self.dt_initial_s is not None and not (0 < self.dt_initial_s < 1e9):
            raise ProtocolError(f"step {name}: dt_initial_s = {self.dt_initial_s}, must be in "
                                f"(0, 1e9) s")
        if self.dt_max_s is not None and not (0 < self.dt_max_s < 1e9):
            raise ProtocolError(f"step {name}: dt_max_s = {self.dt_max_s}, must be in "
                                f"(0, 1e9) s")
        if not isinstance(self.end_at_cutoff, bool):
            raise ProtocolError(f"step {name}: end_at_cutoff = {self.end_at_cutoff!r}, must be "
                                f"true or false")
        if self.end_at_cutoff and (self.kind != "cc" or self.until_voltage_V is None):
            raise ProtocolError(f"step {name}: end_at_cutoff needs a cc step with "
                                f"until_voltage_V")
        if self.kind == "cc":
            if self.current_mA_g == 0:
                raise ProtocolError(f"step {name}: current_mA_g = 0; use a rest step")
            if self.until_voltage_V is None and self.duration_s is None:
                raise ProtocolError(f"step {name}: a cc step needs until_voltage_V or "
                                    f"duration_s")
        if self.kind == "cv":
            if self.voltage_V is None:
                raise ProtocolError(f"step {name}: a cv step needs voltage_V")
            if self.until_current_mA_g is None and self.duration_s is None:
                raise ProtocolError(f"step {name}: a cv step needs until_current_mA_g or "
                                    f"duration_s")
        if self.kind == "rest" and self.duration_s is None:
            raise ProtocolError(f"step {name}: a rest step needs duration_s")
        if self.until_current_mA_g is not None and not (0 < self.until_current_mA_g <= 1e6):
            raise ProtocolError(f"step {name}: until_current_mA_g = {self.until_current_mA_g}, "
                                f"must be in (0, 1e6] mA/g (a magnitude)")
        # a value another kind of step would use is a mistake here, not something to ignore
        foreign = {"cc": ("voltage_V", "until_current_mA_g"),
                   "cv": ("current_mA_g", "until_voltage_V"),
                   "rest": ("current_mA_g", "voltage_V", "until_voltage_V",
                            "until_current_mA_g")}[self.kind]
        for key in foreign:
            if getattr(self, key) not in (None, 0.0):
                raise ProtocolError(f"step {name}: {key} does not apply to a {self.kind} step "
                                    f"(cc: current_mA_g, until_voltage_V; cv: voltage_V, "
                                    f"until_current_mA_g; rest: duration_s)")


@dataclass(frozen=True, kw_only=True)
class Protocol:
    steps: tuple[Step, ...]
    initial_theta: float = 0.01  # lithiation fraction of the charged cathode
    dt_initial_s: float = 1.0
    dt_max_s: float = 120.0
    dt_min_s: float = 1e-6
    dtheta_max: float = 0.005
    max_cuts: int = 12
    cutoff_tol_V: float = 1e-4
    #: a cc step ends "stalled" after this many consecutive accepted steps shorter than
    #: ``stall_dt_s`` (0: never); see the module docstring
    stall_steps: int = 50
    stall_dt_s: float = 1e-3

    def __post_init__(self) -> None:
        if not self.steps:
            raise ProtocolError("protocol: needs at least one step")
        if not (0 < self.initial_theta < 1):
            raise ProtocolError(f"protocol.initial_theta = {self.initial_theta}, must be in "
                                f"(0, 1)")
        if not (0 < self.dt_min_s <= self.dt_initial_s <= self.dt_max_s):
            raise ProtocolError("protocol: need 0 < dt_min_s <= dt_initial_s <= dt_max_s")
        if not (0 < self.cutoff_tol_V <= 0.1):
            raise ProtocolError(f"protocol.cutoff_tol_V = {self.cutoff_tol_V}, must be in "
                                f"(0, 0.1] V")
        if not (0 < self.dtheta_max <= 0.2):
            raise ProtocolError(f"protocol.dtheta_max = {self.dtheta_max}, must be in (0, 0.2]")
        if isinstance(self.max_cuts, bool) or not isinstance(self.max_cuts, int) \
                or self.max_cuts < 0:
            raise ProtocolError(f"protocol.max_cuts = {self.max_cuts!r}, must be an integer "
                                f">= 0")
        if isinstance(self.stall_steps, bool) or not isinstance(self.stall_steps, int) \
                or self.stall_steps < 0:
            raise ProtocolError(f"protocol.stall_steps = {self.stall_steps!r}, must be an "
                                f"integer >= 0 (0: never)")
        if self.stall_steps and not (self.dt_min_s < self.stall_dt_s <= self.dt_max_s):
            raise ProtocolError(f"protocol.stall_dt_s = {self.stall_dt_s}, must be in "
                                f"(dt_min_s, dt_max_s] = ({self.dt_min_s}, {self.dt_max_s}] "
                                f"(or stall_steps = 0)")


#: step keys in C-rate (1/h), converted to mA/g with the theoretical capacity: 1C
#: discharges the theoretical capacity in one hour
C_RATE_KEYS = {"c_rate": "current_mA_g", "until_c_rate": "until_current_mA_g"}


def _with_currents(raw: Mapping[str, Any], k: int, capacity_mAh_g: float | None
                   ) -> dict[str, Any]:
    """A step table whose C-rates (``c_rate``, ``until_c_rate``) are replaced by the
    specific currents they stand for."""
    out = dict(raw)
    for key, target in C_RATE_KEYS.items():
        if key not in raw:
            continue
        if target in raw:
            raise ProtocolError(f"protocol.step[{k}]: give {target} or {key}, not both")
        kind = "cc" if key == "c_rate" else "cv"
        if raw.get("kind") != kind:
            raise ProtocolError(f"protocol.step[{k}].{key}: applies to a {kind} step only "
                                f"(cc: c_rate; cv: until_c_rate)")
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"protocol.step[{k}].{key} = {value!r}: must be a number "
                                f"(1/h)")
        if capacity_mAh_g is None:
            raise ProtocolError(f"protocol.step[{k}].{key}: a C-rate needs the theoretical "
                                f"capacity (this command takes {target})")
        if not (math.isfinite(capacity_mAh_g) and capacity_mAh_g > 0):
            raise ProtocolError(f"theoretical capacity = {capacity_mAh_g} mAh/g: must be "
                                f"finite and > 0 to convert {key}")
        top = 1e6 / capacity_mAh_g  # the steps' bound of 1e6 mA/g
        if key == "c_rate" and not (math.isfinite(value) and 0 < abs(value) <= top):
            raise ProtocolError(f"protocol.step[{k}].c_rate = {value}: must be finite with "
                                f"0 < |C-rate| <= {top:.4g} 1/h (positive in discharge; no "
                                f"current: a rest step)")
        if key == "until_c_rate" and not (math.isfinite(value) and 0 < value <= top):
            raise ProtocolError(f"protocol.step[{k}].until_c_rate = {value}: must be in "
                                f"(0, {top:.4g}] 1/h (a magnitude)")
        del out[key]
        out[target] = float(value) * capacity_mAh_g
    return out


def protocol_from_dict(data: Mapping[str, Any], *,
                       capacity_mAh_g: float | None = None) -> Protocol:
    """Build a protocol from a TOML table (``[protocol]`` with ``[[protocol.step]]``).

    A cc step may give its current as ``c_rate`` (1/h, positive in discharge) and a cv step
    its end current as ``until_c_rate`` (1/h) instead of mA/g: ``capacity_mAh_g`` (the
    parameter set's theoretical capacity) converts them, 1C = that capacity per hour."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"protocol: expected a table, got {data!r}")
    known_steps = {f for f in Step.__dataclass_fields__}
    known = {f for f in Protocol.__dataclass_fields__} - {"steps"} | {"step"}
    for key in data:
        if key == "discharge_cutoff_V":
            raise ProtocolError("protocol.discharge_cutoff_V: used by the rate command only; "
                                "a protocol's cut-offs are the until_voltage_V of its steps")
        if key not in known:
            raise ProtocolError(f"protocol.{key}: unknown key (allowed: {sorted(known)})")
    raw_steps = data.get("step", [])
    if isinstance(raw_steps, Mapping):
        raise ProtocolError("protocol.step: one table; write each step as [[protocol.step]] "
                            "(an array of tables)")
    if not isinstance(raw_steps, list) or not all(isinstance(r, Mapping) for r in raw_steps):
        raise ProtocolError(f"protocol.step = {raw_steps!r}: expected steps as "
                            f"[[protocol.step]] tables")
    for key, value in data.items():
        if key != "step":
            _check_type(f"protocol.{key}", value, Protocol.__dataclass_fields__[key].type)
    steps = []
    for k, given in enumerate(raw_steps):
        raw = _with_currents(given, k, capacity_mAh_g)
        for key in raw:
            if key not in known_steps:
                raise ProtocolError(f"protocol.step[{k}].{key}: unknown key (allowed: "
                                    f"{sorted(known_steps | set(C_RATE_KEYS))})")
            _check_type(f"protocol.step[{k}].{key}", raw[key],
                        Step.__dataclass_fields__[key].type)
        try:
            steps.append(Step(**raw))
        except TypeError as e:
            raise ProtocolError(f"protocol.step[{k}]: {e}") from None
    rest = {k: v for k, v in data.items() if k != "step"}
    return Protocol(steps=tuple(steps), **rest)


def _check_type(name: str, value: Any, annotation: Any) -> None:
    """One-line error for a value of the wrong kind (a string where a number belongs)."""
    text = str(annotation)
    if value is None and "None" in text:
        return
    if "float" in text or text == "int":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ProtocolError(f"{name} = {value!r}: must be a number")
    elif text == "str" and not isinstance(value, str):
        raise ProtocolError(f"{name} = {value!r}: must be a string")
    elif text == "bool" and not isinstance(value, bool):
        raise ProtocolError(f"{name} = {value!r}: must be true or false")


@dataclass
class Record:
    """One accepted time step (units in the names)."""

    step: int
    label: str
    time_s: float
    voltage_V: float
    current_mA_g: float
    capacity_mAh_g: float  # discharge capacity passed since the start (charge subtracts)
    mean_theta: float
    dt_s: float
    newton_iterations: int
    charge_balance_rel: float  # |anode + interface current| / |current (last applied at rest)|
    li_balance_rel: float  # Li change of the solid vs. interface current, this step
    # Voltage breakdown (HalfCell.overpotentials): these seven sum to voltage_V.
    ocv_mean_V: float = 0.0
    solid_concentration_V: float = 0.0
    kinetic_cathode_V: float = 0.0
    electronic_ohmic_V: float = 0.0
    electrolyte_ohmic_V: float = 0.0
    electrolyte_concentration_V: float = 0.0
    kinetic_anode_V: float = 0.0
    #: lowest nodal salt concentration; < 0 marks salt depletion unresolved by the mesh
    min_electrolyte_concentration_mol_m3: float = math.nan

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    records: list[Record] = field(default_factory=list)
    #: per step: cutoff, duration, current (cv limit), blocked (no path for current) or
    #: stalled (cc steps stayed shorter than ``stall_dt_s``, see the module docstring)
    stopped_by: list[str] = field(default_factory=list)


def run_protocol(cell: HalfCell, protocol: Protocol,
                 on_record: Callable[[Record], None] | None = None, *,
                 checkpoint_dir: Path | None = None, checkpoint_every: int = 0,
                 resume: bool = False,
                 stop_requested: Callable[[], bool] | None = None) -> RunResult:
    """Run every step of ``protocol`` on ``cell`` (collective). Starts from equilibrium at
    ``protocol.initial_theta``, or, with ``resume``, from the checkpoint in
    ``checkpoint_dir``. With ``checkpoint_every = N > 0`` the state is saved there every N
    time steps; a resumed run reproduces the uninterrupted one (same time steps, same
    numbers), because each checkpoint also restarts the lagged Jacobian and the predictor.

    ``stop_requested`` (collective: the same answer on every rank) is asked after each
    accepted time step (and after its checkpoint); when it answers True the run raises
    :class:`KeyboardInterrupt` on every rank. A resume continues from the last checkpoint
    (no extra one is written at the stop: it would restart the Newton history off the
    cadence, and the resumed run would no longer reproduce the uninterrupted one)."""
    per_mA_g = cell.current_for(1.0)  # model current of 1 mA/g
    f_model = ModelUnits.faraday
    result = RunResult()
    k0, t_step0, t, capacity, dt = 0, 0.0, 0.0, 0.0, protocol.dt_initial_s
    settings = run_settings(cell, protocol) if (resume or checkpoint_every) else None
    if resume:
        if checkpoint_dir is None:
            raise CheckpointError("resume: needs checkpoint_dir")
        k0, t_step0, t, capacity, dt, result = load_checkpoint(cell, checkpoint_dir,
                                                               settings)
    else:
        cell.set_equilibrium(protocol.initial_theta)
    li_scale = cell.params.c_max_mol_m3 * cell.active_volume_um3()
    try:
        for k in range(k0, len(protocol.steps)):
            step = protocol.steps[k]
            t_step = t_step0 if k == k0 else 0.0
            stopped = "duration"
            # short steps in a row (resumed: recounted from the records, which hold dt_s)
            short_steps = 0
            if resume and k == k0:
                for r in reversed(result.records):
                    if r.step != k or r.dt_s >= protocol.stall_dt_s:
                        break
                    short_steps += 1
            if step.dt_initial_s is not None and not (resume and k == k0):
                dt = min(max(step.dt_initial_s, protocol.dt_min_s), protocol.dt_max_s)
            if step.kind == "cc" and not cell.can_pass_current:
                # No ionic or electronic path: the cut-off is reached at once (the voltage
                # would jump to any value); the record says so instead of failing in Newton.
                result.stopped_by.append("blocked")
                if step.end_at_cutoff:
                    break
                continue
            while True:
                remaining = None if step.duration_s is None else step.duration_s - t_step
                if remaining is not None and remaining <= 1e-9 * max(1.0, step.duration_s or 1):
                    break
                if step.dt_max_s is not None:
                    dt = min(dt, step.dt_max_s)
                h = dt if remaining is None else min(dt, remaining)
                li0 = cell.li_in_solid()
                try:
                    rep, h = _advance(cell, step, h, per_mA_g, protocol)
                except NewtonFailure as e:
                    dt = h / 2
                    if _cuts(cell) >= 3 and _limited(cell, step, h, per_mA_g):
                        # Limiting current: at the cut-off voltage the cell cannot deliver the
                        # asked current any more, so the galvanostatic voltage lies below the
                        # cut-off within this step. The state solved at the cut-off ends it.
                        cell._cuts = 0  # type: ignore[attr-defined]
                        rep = _LIMITED
                        limited = True
                    else:
                        limited = False
                    if not limited and (dt < protocol.dt_min_s
                                        or _cuts(cell) >= protocol.max_cuts):
                        raise ProtocolError(f"step {k} ({step.label or step.kind}) at t = "
                                            f"{t:.6g} s: Newton failed with dt = {h:.3g} s "
                                            f"({e}); the last converged state is kept"
                                            ) from None
                    if not limited:
                        cell._cuts = _cuts(cell) + 1  # type: ignore[attr-defined]
                        continue
                cell._cuts = 0  # type: ignore[attr-defined]
                i_anode = cell.anode_current()
                i_int = cell.interface_current()
                d_li = cell.li_in_solid() - li0
                cell.accept()
                t += h
                t_step += h
                current_mA_g = i_anode / per_mA_g
                capacity += current_mA_g * h / 3600.0
                # Relative to the current, or at rest to the last applied current.
                charge_rel = abs(i_anode + i_int) / max(abs(i_anode), cell.applied_scale)
                li_rel = abs(d_li + i_int * h / f_model) / li_scale
                rec = Record(step=k, label=step.label or step.kind, time_s=t,
                             voltage_V=cell.cell_voltage_V, current_mA_g=current_mA_g,
                             capacity_mAh_g=capacity, mean_theta=cell.mean_theta(), dt_s=h,
                             newton_iterations=rep.newton_iterations,
                             charge_balance_rel=charge_rel, li_balance_rel=li_rel,
                             min_electrolyte_concentration_mol_m3=(
                                 cell.min_electrolyte_concentration()),
                             **cell.overpotentials())
                result.records.append(rec)
                if on_record is not None:
                    on_record(rec)
                if _hit_cutoff(step, cell.cell_voltage_V, protocol.cutoff_tol_V):
                    stopped = "cutoff"
                    break
                if (step.kind == "cv" and step.until_current_mA_g is not None
                        and abs(current_mA_g) <= step.until_current_mA_g):
                    stopped = "current"
                    break
                short_steps = short_steps + 1 if h < protocol.stall_dt_s else 0
                if (step.kind == "cc" and protocol.stall_steps
                        and short_steps >= protocol.stall_steps):
                    stopped = "stalled"
                    break
                # Step-size control: Newton effort and lithiation change per step.
                # Grow after an easy solve, shrink after a hard one (failures halve it above).
                effort = rep.newton_iterations + 4 * rep.jacobian_assemblies
                grow = 1.5 if effort <= 14 else (1.0 if effort <= 30 else 0.7)
                dtheta_rate = abs(current_mA_g) * 1e-3 / 3600.0 / max(
                    cell.params.theoretical_capacity_mAh_g * 1e-3, 1e-30)  # 1/s
                dt_theta = protocol.dtheta_max / dtheta_rate if dtheta_rate > 0 else math.inf
                dt = min(h * grow, protocol.dt_max_s, dt_theta,
                         step.dt_max_s if step.dt_max_s is not None else math.inf)
                dt = max(dt, protocol.dt_min_s)
                if checkpoint_every and checkpoint_dir is not None \
                        and len(result.records) % checkpoint_every == 0:
                    save_checkpoint(cell, checkpoint_dir, (k, t_step, t, capacity, dt), result,
                                    settings)
                if stop_requested is not None and stop_requested():
                    raise KeyboardInterrupt
            result.stopped_by.append(stopped)
            if stopped in ("cutoff", "stalled") and step.end_at_cutoff:
                break
    except ProtocolError as e:
        # a run that cannot continue: the records so far (with those of a resumed
        # checkpoint) travel with the error
        e.result = result  # type: ignore[attr-defined]
        raise
    return result


_Position = tuple[int, float, float, float, float]


def _state_file(folder: Path, comm: MPI.Comm, records: int | None) -> Path:
    # records None: a checkpoint written before the files carried their record count
    tail = "" if records is None else f"_at{records}"
    return folder / f"state_rank{comm.rank}_of{comm.size}{tail}.npz"


def run_settings(cell: HalfCell, protocol: Protocol) -> dict[str, Any]:
    """The protocol, the parameter values (not their citations), the model choices of the
    cell (electronic network resolved or ideal, quadrature degree, lateral periodicity, a
    weighted voxel surface) and
    the mesh (cells per phase) as plain JSON values, kept with a checkpoint so that a
    resume with other settings or another geometry is refused (naming what differs) rather
    than continued with mixed records. Collective."""
    tdim = cell.tm.mesh.topology.dim
    owned = cell.tm.mesh.topology.index_map(tdim).size_local
    counts = np.bincount(np.asarray(cell.tm.phase[:owned], dtype=np.int64), minlength=64)
    cells_per_phase = cell.comm.allreduce(counts, op=MPI.SUM)
    model: dict[str, Any] = {"electronic": cell.electronic_mode,
                             "quadrature_degree": cell.quadrature_degree,
                             "periodic": cell.periodic is not None}
    if cell.tm.surface_normals is not None:
        # only where set, so that checkpoints written before the weighting still resume
        model["voxel_surface"] = "weighted"
    return json.loads(json.dumps({
        "protocol": _plain(protocol), "parameters": _plain(cell.params),
        "model": model,
        "mesh_cells_per_phase": {str(i): int(n) for i, n in enumerate(cells_per_phase) if n}},
        sort_keys=True))


def run_key(settings: dict[str, Any]) -> str:
    """A short fingerprint of :func:`run_settings`."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _plain(obj: Any) -> Any:
    """``obj`` as JSON-able values: dataclasses as dicts without their ``source`` texts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.name != "source"}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    return obj


def save_checkpoint(cell: HalfCell, folder: Path, position: _Position, result: RunResult,
                    settings: dict[str, Any] | None = None) -> None:
    """Write the state (every rank its own arrays) and the run position and records (rank 0).
    Collective. The lagged Jacobian is dropped, so that the next step starts alike in the
    running and in a resumed run.

    A job killed at any moment (a batch system's SIGKILL) leaves a consistent checkpoint:
    each state file is named after its record count and ``run.json``, replaced last, names
    the one to read; older state files are removed only after that."""
    comm = cell.comm
    if comm.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    arrays, phi_a = cell.snapshot()
    count = len(result.records)
    state = _state_file(folder, comm, count)
    tmp = state.with_name(state.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez(f, *arrays, phi_a=phi_a, applied_scale=cell.applied_scale)
    tmp.replace(state)
    comm.barrier()
    if comm.rank == 0:
        key = None
        if settings is not None:
            key = run_key(settings)
            if not (folder / f"settings_{key}.json").is_file():
                (folder / "settings.json.tmp").write_text(json.dumps(settings))
                (folder / "settings.json.tmp").replace(folder / f"settings_{key}.json")
        meta = {"ranks": comm.size, "run_key": key, "records_count": count,
                "position": list(position),
                "stopped_by": result.stopped_by,
                "records": [r.as_row() for r in result.records]}
        (folder / "run.json.tmp").write_text(json.dumps(meta))
        (folder / "run.json.tmp").replace(folder / "run.json")
    comm.barrier()
    for old in [*folder.glob(f"state_rank{comm.rank}_of{comm.size}_at*.npz"),
                _state_file(folder, comm, None)]:
        if old != state:
            old.unlink(missing_ok=True)
    cell.forget_history()


def load_checkpoint(cell: HalfCell, folder: Path, settings: dict[str, Any] | None = None
                    ) -> tuple[int, float, float, float, float, RunResult]:
    """Restore a state written by :func:`save_checkpoint` (same mesh, same rank count, and
    the same :func:`run_settings` where both the checkpoint and the caller give them).
    Collective; anything wrong is a one-line :class:`CheckpointError` on every rank."""
    comm = cell.comm
    afresh = f"remove {str(folder)!r} and run without --resume to start afresh"
    meta_path = folder / "run.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        if meta is not None:
            ranks, count, position = meta["ranks"], meta.get("records_count"), meta["position"]
            records = [Record(**r) for r in meta["records"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"resume: cannot read {str(meta_path)!r} ({type(e).__name__}: "
                              f"{e}); {afresh}") from None
    if meta is None:
        raise CheckpointError(f"resume: no checkpoint in {str(folder)!r}")
    if ranks != comm.size:
        raise CheckpointError(f"resume: the checkpoint was written on {ranks} "
                              f"rank{'s' if ranks != 1 else ''}; resume on the same number "
                              f"(this run has {comm.size})")
    key = run_key(settings) if settings is not None else None
    differs: str | None = None
    if key is not None and meta.get("run_key") not in (None, key):
        try:
            old = json.loads((folder / f"settings_{meta['run_key']}.json").read_text())
            differs = first_difference(old, settings) or "something"
        except (OSError, ValueError):
            old, differs = None, "the protocol or the parameter set"
        if settings is not None and isinstance(old, dict) and "model" not in old:
            # written before the settings held the model choices: the rest is checked
            differs = first_difference(old, {k: v for k, v in settings.items()
                                             if k != "model"})
            if differs is None and comm.rank == 0:
                logging.getLogger("cathodefem").warning(
                    f"resume: the checkpoint in {str(folder)!r} was written by an earlier "
                    f"cathodefem that did not record the model choices ({settings['model']} "
                    f"now); make sure they are those of the interrupted run")
    if differs is not None:
        raise CheckpointError(f"resume: the checkpoint in {str(folder)!r} was written with "
                              f"other settings ({differs} differs); resume with the settings "
                              f"of the interrupted run, or {afresh}")
    state = _state_file(folder, comm, count)
    error = None
    try:
        with np.load(state) as data:
            arrays = [data[f"arr_{i}"] for i in range(len(cell.u))]
            phi_a = float(data["phi_a"])
            applied_scale = float(data["applied_scale"])
        if not all(a.shape == f.x.array.shape for a, f in zip(arrays, cell.u, strict=True)):
            error = ("it does not match this mesh (different case, seed or partition); resume "
                     "with the case of the interrupted run, or " + afresh)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        error = f"{state.name} cannot be read ({type(e).__name__}: {e}); {afresh}"
    errors = [e for e in comm.allgather(error) if e is not None]
    if errors:
        raise CheckpointError(f"resume: the checkpoint in {str(folder)!r}: {errors[0]}")
    cell.restore((arrays, phi_a))
    cell.applied_scale = applied_scale
    cell.forget_history()
    cell.accept()
    k, t_step, t, capacity, dt = position
    result = RunResult(records=records, stopped_by=list(meta.get("stopped_by", [])))
    return int(k), float(t_step), float(t), float(capacity), float(dt), result


_LIMITED = StepReport(newton_iterations=0, linear_solves=0, seconds=0.0)


def _limited(cell: HalfCell, step: Step, h: float, per_mA_g: float) -> bool:
    """True (state: solved at the cut-off voltage) when a cc step's current exceeds what the
    cell delivers at its cut-off voltage over a step ``h``; otherwise the state is left as
    it was."""
    if step.kind != "cc" or step.until_voltage_V is None:
        return False
    snap = cell.snapshot()
    try:
        cell.solve_step(h, voltage_V=step.until_voltage_V)
    except NewtonFailure:
        cell.restore(snap)
        return False
    delivered = cell.anode_current()
    asked = step.current_mA_g * per_mA_g
    if delivered * asked > 0 and abs(delivered) <= abs(asked):
        return True
    cell.restore(snap)
    cell.forget_history()
    return False


def _cuts(cell: HalfCell) -> int:
    return int(getattr(cell, "_cuts", 0))


def _hit_cutoff(step: Step, voltage: float, tol: float) -> bool:
    if step.kind != "cc" or step.until_voltage_V is None:
        return False
    if step.current_mA_g > 0:
        return voltage <= step.until_voltage_V + tol
    return voltage >= step.until_voltage_V - tol


def _solve(cell: HalfCell, step: Step, h: float, per_mA_g: float):
    if step.kind == "cv":
        assert step.voltage_V is not None
        return cell.solve_step(h, voltage_V=step.voltage_V)
    current = step.current_mA_g * per_mA_g if step.kind == "cc" else 0.0
    return cell.solve_step(h, current=current)


def _advance(cell: HalfCell, step: Step, h: float, per_mA_g: float, protocol: Protocol
             ) -> tuple[Any, float]:
    """Solve one step of length ``h``; if a cc cut-off is crossed, shorten the step so that it
    ends on the cut-off (secant on the step length, then bisection safeguard)."""
    v0 = cell.cell_voltage_V
    snap = cell.snapshot()
    rep = _solve(cell, step, h, per_mA_g)
    if step.kind != "cc" or step.until_voltage_V is None:
        return rep, h
    target = step.until_voltage_V
    sign = 1.0 if step.current_mA_g > 0 else -1.0  # discharge: V falls

    def excess(v: float) -> float:  # > 0 while the cut-off is not reached
        return sign * (v - target)

    v1 = cell.cell_voltage_V
    if excess(v1) >= -protocol.cutoff_tol_V:
        return rep, h
    lo, f_lo = 0.0, excess(v0)
    hi, f_hi = h, excess(v1)
    for _ in range(40):
        guess = lo + (hi - lo) * f_lo / (f_lo - f_hi) if f_lo != f_hi else 0.5 * (lo + hi)
        guess = min(max(guess, lo + 0.05 * (hi - lo)), hi - 0.05 * (hi - lo))
        if guess < protocol.dt_min_s < hi:
            # The cut-off is crossed at once: the instantaneous (ohmic and kinetic) drop of
            # a current switched on reaches past it. No step length can end on it; the
            # shortest step is the cut-off record (a cycler's first sample).
            cell.restore(snap)
            rep = _solve(cell, step, protocol.dt_min_s, per_mA_g)
            f_m = excess(cell.cell_voltage_V)
            if f_m <= protocol.cutoff_tol_V:
                return rep, protocol.dt_min_s
            lo, f_lo = protocol.dt_min_s, f_m
            continue
        cell.restore(snap)
        rep = _solve(cell, step, guess, per_mA_g)
        f_g = excess(cell.cell_voltage_V)
        if abs(f_g) <= protocol.cutoff_tol_V:
            return rep, guess
        if f_g > 0:
            lo, f_lo = guess, f_g
        else:
            if lo == 0.0 and abs(f_g - f_hi) <= protocol.cutoff_tol_V:
                # the voltage past the cut-off does not move as the step shrinks: the drop
                # is instantaneous; go straight to the shortest step
                hi, f_hi = 2.0 * protocol.dt_min_s, f_g
                continue
            hi, f_hi = guess, f_g
    return rep, guess
