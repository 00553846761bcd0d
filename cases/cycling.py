"""Galvanostatic cycling and rate capability of both cathodes (the half-cell model).

``run_cycling`` runs the case's ``[protocol]`` on each cathode; ``run_rate_study`` discharges
each cathode from the charged state at several specific currents (paper Fig. 4a, b, d);
``run_rate_ensemble`` repeats the rate study on several realizations (seeds) and gives the mean
capacity and its 95 % confidence interval per cathode and rate. All
build the section meshes exactly as the conduction study does (same spec, same seed), add the
separator layer of ``section.separator_um`` (or, with ``electrochemistry.geometry = "box"``,
the 3D column of ``[box]``: voxels, or a conforming tetrahedral mesh of the membrane with
``box.mesh = "conforming"``), and write, per cathode:

* ``cycling.csv`` / ``rate_<I>mA_g.csv``: every accepted time step (units in the headers);
* ``fields/*.bp``: VTX time series for ParaView (c_s and phi_s on the solid submeshes, c_e and
  phi_e on the electrolyte submesh);
* ``summary.json``: spec, parameter table with sources, per-step results, solver statistics,
  and ``status`` ("completed", or the one-line reason the run stopped);
* PNG plots (rank 0).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

import dolfinx.io

from cases.output import (
    atomic_result_dir,
    incomplete_path,
    previous_run,
    refuse_uncovered,
    write_json,
)
from cases.study import KINDS, _build
from fem.electrochem.halfcell import ITERATIVE_PETSC_OPTIONS, HalfCell
from fem.electrochem.parameters import CellParameters, default_parameters
from fem.electrochem.protocol import (
    VOLTAGE_RANGE_V,
    CheckpointError,
    Protocol,
    ProtocolError,
    Record,
    RunResult,
    protocol_from_dict,
    run_protocol,
)
from meshes.adapter import TaggedMesh, build_on_root, distribute_conforming, distribute_voxels
from meshes.conforming import check_conforming_scope, mesh_conforming_box
from meshes.spec import AUTO_WEIGHTED_WIRE_VOXELS, CaseSpec, SpecError, spec_to_dict, with_seed
from meshes.tags import phase_names
from meshes.voxels import cathode_layers_um, film_caveat, periodic_caveat, voxelize_case

__all__ = ["PAPER_RATE_CAPABILITY", "checkpoint_folder", "checkpoint_for",
           "drop_checkpoints_when_completed", "run_cycling", "run_rate_ensemble",
           "run_rate_study"]

log = logging.getLogger("cathodefem")

#: Paper (Cheng et al. 2021, Fig. 4d): discharge capacity (mAh/g) at the specific currents
#: the text gives numbers for. 'about 300' at 50 mA/g for both; '>200' vs 'about 140' at 300.
PAPER_RATE_CAPABILITY = {
    "gradient": {50.0: 300.0, 300.0: 200.0},
    "homogeneous": {50.0: 300.0, 300.0: 140.0},
}


class _Progress:
    """Rank-0 progress (step, time, voltage, capacity): a rich line on a terminal, a log line
    every ``LOG_EVERY`` time steps otherwise (batch jobs), and after any time step that ends
    ``LOG_EVERY_S`` seconds of wall time or more after the last line (a 3D column can take
    minutes per step); silent on other ranks."""

    LOG_EVERY = 10
    LOG_EVERY_S = 300.0
    clock = staticmethod(time.perf_counter)

    def __init__(self, comm: MPI.Comm, title: str, enabled: bool) -> None:
        self.bar: Any = None
        self.log = comm.rank == 0 and enabled and not sys.stdout.isatty()
        self.count = 0
        if comm.rank == 0 and enabled and sys.stdout.isatty():
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                TimeElapsedColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(title)
        self.title = title
        self.last_line = self.clock()

    def update(self, r: Record) -> None:
        text = (f"{self.title}: step {r.step} ({r.label}) t = {r.time_s:9.1f} s  "
                f"V = {r.voltage_V:6.4f} V  Q = {r.capacity_mAh_g:7.2f} mAh/g")
        self.count += 1
        if self.bar is not None:
            self.bar.update(self.task, description=text)
        elif self.log and (self.count % self.LOG_EVERY == 0
                           or self.clock() - self.last_line >= self.LOG_EVERY_S):
            log.info(text)
            self.last_line = self.clock()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _FieldWriter:
    """VTX (ADIOS2) time series of the four fields, one file per submesh."""

    def __init__(self, folder: Path, cell: HalfCell) -> None:
        comm = cell.comm
        self.writers = [
            dolfinx.io.VTXWriter(comm, str(folder / "solid_lithium.bp"), [cell.c_s],
                                 engine="BP4"),
            dolfinx.io.VTXWriter(comm, str(folder / "solid_potential.bp"), [cell.phi_s],
                                 engine="BP4"),
            dolfinx.io.VTXWriter(comm, str(folder / "electrolyte.bp"), [cell.c_e, cell.phi_e],
                                 engine="BP4"),
        ]

    def write(self, t: float) -> None:
        for w in self.writers:
            w.write(t)

    def close(self) -> None:
        for w in self.writers:
            w.close()


class RunInterrupted(KeyboardInterrupt):
    """A run interrupted (Ctrl-C, SIGTERM) between or inside time steps; ``records`` are
    the accepted steps up to the interrupt (already written to the run's CSV)."""

    def __init__(self, records: list[Record], wall_s: float) -> None:
        super().__init__()
        self.records = records
        self.wall_s = wall_s


class _DeferredStop:
    """While a run steps in time: the first SIGINT (Ctrl-C) or SIGTERM (a batch job's time
    limit) asks it to stop after the current time step; :meth:`requested` (collective) tells
    every rank at the same point, so no rank is left waiting inside a collective operation
    (an immediate KeyboardInterrupt on 2 ranks leaves one rank in VTX close and the other in
    a ghost update: a hang). A second signal stops at once: it goes to the handler that was
    there before (``cathodefem`` on several ranks: end the job; otherwise KeyboardInterrupt)."""

    #: a stop asked during a run's last time step (after which the run did not ask again):
    #: it applies before the next run of the command (rate, cathode, seed) starts
    pending = False

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.asked = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _DeferredStop:
        stop_if_asked_before()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if kind is None and self.requested():  # the run ended on the step that was asked
            _DeferredStop.pending = True

    def _handle(self, signum: int, frame: object) -> None:
        if self.asked:
            before = self.previous.get(signum)
            if callable(before):  # the command line's: on several ranks it ends the job
                before(signum, frame)
            raise KeyboardInterrupt
        self.asked = True
        if self.comm.rank == 0:
            print(f"cathodefem: {signal.Signals(signum).name}: stopping after this time step "
                  f"(again: at once)", file=sys.stderr, flush=True)

    def requested(self) -> bool:
        return bool(self.comm.allreduce(self.asked, op=MPI.LOR))


def stop_if_asked_before() -> None:
    """Raise the interrupt that a signal during the last time step of the previous run
    asked for (collective: every rank saw that run end alike), before anything new starts."""
    if _DeferredStop.pending:
        _DeferredStop.pending = False
        raise KeyboardInterrupt


def _write_records(path: Path, records: Sequence[Record]) -> None:
    with path.open("w", newline="") as f:
        cols = list(Record.__dataclass_fields__)
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in records:
            w.writerow(r.as_row())


def _step_table(protocol: Protocol, res: RunResult) -> list[dict[str, Any]]:
    out = []
    for k, step in enumerate(protocol.steps):
        recs = [r for r in res.records if r.step == k]
        out.append({
            "step": k, "label": step.label or step.kind, "kind": step.kind,
            "stopped_by": res.stopped_by[k] if k < len(res.stopped_by) else "not run",
            "duration_s": sum(r.dt_s for r in recs),
            "capacity_mAh_g": (recs[-1].capacity_mAh_g - (recs[0].capacity_mAh_g
                               - recs[0].current_mA_g * recs[0].dt_s / 3600)) if recs else 0.0,
            "energy_mWh_g": sum(r.voltage_V * r.current_mA_g * r.dt_s / 3600 for r in recs),
            "end_voltage_V": recs[-1].voltage_V if recs else None,
            "time_steps_count": len(recs),
            "newton_iterations_count": sum(r.newton_iterations for r in recs),
        })
    return out


def _cell_info(cell: HalfCell, info: dict[str, Any]) -> dict[str, Any]:
    dofs = {name: V.dofmap.index_map.size_global for name, V in
            zip(("c_s", "phi_s", "c_e", "phi_e"), cell.spaces, strict=True)}
    return {
        "mesh": info, "dofs_count": dofs,
        "electronic_network": cell.electronic_mode,
        "interface_facets_count": cell.interface_facets_count,
        "connected_interface_facets_count": cell.connected_interface_facets_count,
        # 3D: the column's; 2D: per um of section depth
        ("connected_interface_area_um2" if cell.tm.mesh.topology.dim == 3
         else "connected_interface_area_per_um_depth_um2"): cell.connected_interface_area_um2(),
        ("active_volume_um3" if cell.tm.mesh.topology.dim == 3
         else "active_volume_per_um_depth_um3"): cell.active_volume_um3(),
        # periodic columns: wire/electrolyte pairs across the periodic faces (no reaction)
        "seam_interface_facets_count": cell.seam_interface_facets_count,
        "removed_cells_count": cell.removed_cells,
        # the capacity the salt in the cathode's polymer carries without diffusion back
        "salt_stock_capacity_mAh_g": cell.salt_stock_capacity_mAh_g(),
        # 2D: per um of section depth; 3D: the box's own mass
        ("active_mass_g" if cell.tm.mesh.topology.dim == 3 else "active_mass_per_um_depth_g"):
            cell.active_mass_g(),
    }


def _run_one(comm: MPI.Comm, cell: HalfCell, protocol: Protocol, folder: Path, csv_name: str,
             title: str, fields_every: int, progress: bool,
             checkpoint: tuple[Path, int, bool] | None = None, *,
             fields_at_steps: bool = True, observe: Callable[[Record], None] | None = None
             ) -> tuple[RunResult, str, float]:
    """Run ``protocol``, writing fields as it goes (every ``fields_every`` time steps, at the
    start of every protocol step unless ``fields_at_steps`` is False, and at the end); returns
    the records, the status and the wall time. A run that cannot continue keeps its records
    and its last converged state. ``observe`` sees every new record (not those of a resumed
    checkpoint)."""
    writer = _FieldWriter(folder / "fields", cell)
    bar = _Progress(comm, title, progress)
    seen: list[Record] = []
    last_step = [-1]

    def on_record(r: Record) -> None:
        seen.append(r)
        bar.update(r)
        if observe is not None:
            observe(r)
        new_step = r.step != last_step[0]
        last_step[0] = r.step
        if (fields_every and len(seen) % fields_every == 0) or (new_step and fields_at_steps):
            writer.write(r.time_s)

    t0 = time.perf_counter()
    status = "completed"
    interrupted = False
    try:
        try:
            with _DeferredStop(comm) as stop:
                if checkpoint is None:
                    res = run_protocol(cell, protocol, on_record=on_record,
                                       stop_requested=stop.requested)
                else:
                    ck_dir, every, resume = checkpoint
                    res = run_protocol(cell, protocol, on_record=on_record,
                                       checkpoint_dir=ck_dir, checkpoint_every=every,
                                       resume=resume, stop_requested=stop.requested)
        except CheckpointError as e:
            # a resume that cannot start (other ranks, case or settings): a user mistake,
            # one line and no result folder
            raise ValueError(str(e)) from None
        except ProtocolError as e:
            status = f"stopped: {e}"
            # the run's records, with those of a resumed checkpoint (seen has only the new)
            res = getattr(e, "result", None) or RunResult(records=seen)
        except KeyboardInterrupt as e:
            # Ctrl-C or SIGTERM (_DeferredStop): the records up to the interrupt are written
            # and travel with the exception
            interrupted = True
            if comm.rank == 0:
                _write_records(folder / csv_name, seen)
            raise RunInterrupted(seen, time.perf_counter() - t0) from e
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        if seen:
            writer.write(seen[-1].time_s)
    finally:
        # also when interrupted (Ctrl-C): the field files are closed while their folder
        # exists; left to the interpreter's exit, they would be closed after the result
        # folder was renamed, and ADIOS2 aborts the process
        writer.close()
        if checkpoint is not None and interrupted:
            _keep_field_piece(folder / "fields", checkpoint[0], seen, comm)
    if checkpoint is not None and comm.rank == 0:
        _collect_field_pieces(checkpoint[0], folder)
    if comm.rank == 0:
        _write_records(folder / csv_name, res.records)
        low = _min_salt(res.records)
        if low is not None and low < 0.0:
            log.warning(f"[{title}] the salt concentration fell to {low:.4g} mol/m3 (< 0) at "
                        f"a mesh node: the salt is depleted faster than the mesh resolves "
                        f"(P1 undershoot at the depletion front); refine the mesh at the "
                        f"reacting interfaces to trust the end of this discharge")
    return res, status, wall


def _keep_field_piece(fields: Path, ck_dir: Path, seen: Sequence[Record], comm: MPI.Comm
                     ) -> None:
    """An interrupted run with a checkpoint: keep the field files it wrote (the staging folder
    that holds them is removed) beside the checkpoint, as ``fields_<start>-<end>s``, the
    times of this piece of the run; a resumed run starts new field files at its checkpoint
    and brings the kept pieces into its result. Nothing is kept before the first checkpoint
    (a resume then starts from the beginning). Collective; a file system error is a warning
    (the fields are lost, the checkpoint is not)."""
    comm.barrier()  # every rank has closed its field files
    if comm.rank == 0 and seen and (ck_dir / "run.json").is_file() and fields.is_dir():
        def text(t: float) -> str:
            return f"{max(t, 0.0):.3f}".rstrip("0").rstrip(".")

        target = ck_dir / f"fields_{text(seen[0].time_s - seen[0].dt_s)}-{text(seen[-1].time_s)}s"
        try:
            if target.exists():
                shutil.rmtree(target)
            shutil.move(fields, target)
        except OSError as e:
            log.warning(f"the field files of this piece of the run could not be kept in "
                        f"{target}: {e}")
    comm.barrier()


def _collect_field_pieces(ck_dir: Path, folder: Path) -> None:
    """Bring the field files of the interrupted pieces of a resumed run into its result
    folder: hard links where the file system allows (no second copy of large series),
    copies otherwise. The originals stay with the checkpoint until it is removed (the
    command may still be interrupted in a later cathode)."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for piece in sorted(ck_dir.glob("fields_*-*s")):
        if piece.is_dir():
            shutil.copytree(piece, folder / piece.name, copy_function=link,
                            dirs_exist_ok=True)


def _min_salt(records: Sequence[Record]) -> float | None:
    """Lowest nodal salt concentration over the records (mol/m3), None without records
    (records resumed from an older checkpoint have none: NaN)."""
    values = [r.min_electrolyte_concentration_mol_m3 for r in records]
    return min((v for v in values if math.isfinite(v)), default=None)


def _utilization(cell: HalfCell, theta0: float, path: Path) -> dict[str, Any]:
    """Per-particle lithiation at the end of a run (``particles.csv``) and its summary: a
    particle that gained less than 10 % of the mean lithiation change counts as unused."""
    import numpy as np

    vol, theta = cell.particle_lithiation()
    gain = theta - theta0
    mean_gain = float((gain * vol).sum() / max(vol.sum(), 1e-300))
    unused = gain < 0.1 * mean_gain if mean_gain > 0 else np.zeros(len(vol), dtype=bool)
    if cell.comm.rank == 0:
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["particle", "volume_um3", "theta_start", "theta_end",
                        "electronically_connected", "unused"])
            for k in range(len(vol)):
                w.writerow([k, vol[k], theta0, theta[k], bool(cell.particle_connected[k]),
                            bool(unused[k])])
    return {
        "particles_count": len(vol),
        "electronically_connected_particles_count": int(cell.particle_connected.sum()),
        "mean_lithiation_gain": mean_gain,
        "unused_particles_count": int(unused.sum()),
        "unused_active_volume_fraction": float(vol[unused].sum() / max(vol.sum(), 1e-300)),
    }


def _cathode_cell(comm: MPI.Comm, case: CaseSpec, kind: str, params: CellParameters,
                  folder: Path) -> tuple[HalfCell, dict[str, Any]]:
    """Build one cathode's mesh (the 2D section, as the conduction study does, or the 3D
    column of ``case.box``: voxels, or a conforming tetrahedral mesh with ``box.mesh =
    "conforming"``), its half cell and its result sub-folder."""
    stop_if_asked_before()
    ec = case.electrochemistry
    if comm.rank == 0:
        log.info(f"[{kind}] building the {ec.geometry} mesh")
        (folder / kind).mkdir(exist_ok=True)  # exists where a resume took rates over
    comm.barrier()
    if ec.geometry == "box":
        tm, info = _build_box(comm, case, kind)
    else:
        tm, info, _ = _build(comm, case, kind)
    options = ITERATIVE_PETSC_OPTIONS if ec.linear_solver == "iterative" else None
    # a periodic column (box.sides): the fields are periodic in x and y as well
    periodic = ({0: tm.width_um, 1: tm.depth_um}
                if ec.geometry == "box" and case.box.sides == "periodic" else None)
    cell = HalfCell(tm, params, electronic=ec.electronic, petsc_options=options,
                    periodic=periodic)
    seam = cell.seam_interface_facets_count
    if seam and comm.rank == 0:
        log.warning(f"[{kind}] periodic column: {seam} wire/electrolyte facet pairs meet "
                    f"across the periodic faces and do not react (the column has "
                    f"{cell.interface_facets_count} interface facets: "
                    f"{seam / (seam + cell.interface_facets_count):.1%} of the interface left "
                    f"out)")
    return cell, info


def _check_geometry(case: CaseSpec, kinds: Sequence[str]) -> None:
    """Reject, before anything is built, a 3D box that is not a whole half cell, and box
    settings the half cell does not use (periodic sides of a 2D section, electronic
    subdivisions)."""
    if case.box.electronic_subdivisions != 1:
        raise SpecError(f"box.electronic_subdivisions = {case.box.electronic_subdivisions}: "
                        f"must be 1 for the half cell (it refines the rve's electronic tensor "
                        f"only)")
    if case.electrochemistry.geometry != "box":
        if case.box.mesh == "conforming":
            raise SpecError("box.mesh = 'conforming': applies to 3D columns only; must be "
                            "'voxels' when electrochemistry.geometry = 'section' (or set "
                            "electrochemistry.geometry = 'box')")
        if case.box.sides == "periodic":
            raise SpecError("box.sides = 'periodic': applies to 3D columns only; must be "
                            "'insulating' when electrochemistry.geometry = 'section' (or set "
                            "electrochemistry.geometry = 'box')")
        return
    for kind in kinds:
        thickness = cathode_layers_um(case, kind)[2]
        if case.box.height_um < thickness:
            raise SpecError(f"box.height_um = {case.box.height_um:g}: must be >= the "
                            f"{kind} cathode thickness {thickness:.4g} um when "
                            f"electrochemistry.geometry = 'box' (the cell needs both faces)")
    if case.box.separator_um <= 0.0:
        raise SpecError("box.separator_um = 0: must be > 0 um when electrochemistry.geometry "
                        "= 'box' (the Li anode sits on the separator)")
    if case.box.mesh == "conforming":
        for kind in kinds:
            check_conforming_scope(case, kind)


def voxel_surface(case: CaseSpec, kind: str) -> str:
    """How a voxel column of ``kind`` reacts: ``electrochemistry.voxel_surface``, with
    "auto" resolved by the wire diameter in voxels (``AUTO_WEIGHTED_WIRE_VOXELS``)."""
    surface = case.electrochemistry.voxel_surface
    if surface != "auto":
        return surface
    wire = case.gradient.nanowire if kind == "gradient" else case.homogeneous.nanowire
    # relative tolerance: 0.075 / 0.025 is 3 voxels, though 3 * 0.025 > 0.075 in floats
    voxels = wire.diameter_um / case.box.voxel_um
    return "weighted" if voxels >= AUTO_WEIGHTED_WIRE_VOXELS * (1 - 1e-9) else "faces"


def _build_box(comm: MPI.Comm, case: CaseSpec, kind: str) -> tuple[TaggedMesh, dict[str, Any]]:
    """The 3D column of ``case.box`` (whole cathode plus separator): hexahedra of the voxel
    image, or with ``box.mesh = "conforming"`` tetrahedra fitted to the designed wires
    (``meshes.conforming``, the same realization)."""
    caveat = periodic_caveat(case, kind)
    film = film_caveat(case, kind) if case.box.mesh == "voxels" else None
    for message in (caveat, film):
        if message and comm.rank == 0:
            log.warning(message)
    if case.box.mesh == "conforming":
        box = build_on_root(comm, lambda: mesh_conforming_box(case, kind))
        info = None
        if box is not None:
            info = {**box.stats, "box_mesh": "conforming",
                    "conforming_size_um": case.box.conforming_size_um,
                    "size_um": [box.size_um, box.size_um, box.height_um],
                    "cells_count": len(box.cells),
                    "phase_fractions": {k[:-len("_fraction")]: v for k, v in box.stats.items()
                                        if k.endswith("_fraction")
                                        and not k.startswith("target_")},
                    "periodic_sides": box.periodic, "periodic_caveat": caveat,
                    "contacts": dataclasses.asdict(box.contacts)}
        info = comm.bcast(info, root=0)
        return distribute_conforming(comm, box), info
    image = build_on_root(comm, lambda: voxelize_case(case, kind))
    surface = voxel_surface(case, kind)
    info = None
    if image is not None:
        info = {"box_mesh": "voxels", "voxel_um": image.voxel_um, "size_um": list(image.size_um),
                "voxel_surface": surface,
                "cells_count": int(image.labels.size), "phase_fractions": image.fractions(),
                "periodic_sides": case.box.sides == "periodic", "periodic_caveat": caveat,
                "film_caveat": film,
                **image.stats}
    info = comm.bcast(info, root=0)
    return distribute_voxels(comm, image, normals=surface == "weighted",
                             periodic=case.box.sides == "periodic"), info


def _parameter_table(params: CellParameters) -> dict[str, Any]:
    return params.sources()


def checkpoint_folder(out: Path) -> Path:
    """Where ``cycle`` and ``gitt`` with ``--checkpoint-every`` keep their state: beside the
    result folder (which is only created when a run ends), so that it survives a crash."""
    return out.parent / f"{out.name}.checkpoint"


def checkpoint_for(out: Path, kind: str, every: int, resume: bool, comm: MPI.Comm
                   ) -> tuple[Path, int, bool] | None:
    """The checkpoint settings of one cathode's run (None: no checkpoints). A cathode with
    no checkpoint yet (the interrupted run had not reached it) starts afresh on --resume.
    Collective: rank 0 looks, so that every rank takes the same branch."""
    if not (every or resume):
        return None
    ck_dir = checkpoint_folder(out) / kind
    found = comm.bcast((ck_dir / "run.json").is_file() if comm.rank == 0 else None, root=0)
    if resume and not found and comm.rank == 0:
        log.warning(f"[{kind}] --resume: no checkpoint in {ck_dir} (the interrupted run had "
                    f"not saved one for this cathode): it starts from the beginning")
    return ck_dir, every, resume and bool(found)


def drop_checkpoints_when_completed(out: Path, statuses: Mapping[str, str], comm: MPI.Comm
                                    ) -> None:
    """Remove the checkpoint of every cathode whose run has ended as it should (completed,
    or blocked: no connected path, nothing to continue), and the checkpoint folder once it
    is empty; those of cathodes not run this time stay. Collective."""
    if comm.rank == 0:
        folder = checkpoint_folder(out)
        for kind, status in statuses.items():
            if status in ("completed", "blocked"):
                shutil.rmtree(folder / kind, ignore_errors=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    comm.barrier()


def run_cycling(case: CaseSpec, out: Path, comm: MPI.Comm = MPI.COMM_WORLD,
                kinds: Sequence[str] = KINDS, progress: bool = True,
                checkpoint_every: int = 0, resume: bool = False) -> dict[str, Any]:
    """Run the case's protocol on each cathode; returns the summary (also on disk).

    ``checkpoint_every = N`` saves the state every N time steps in
    :func:`checkpoint_folder`; ``resume`` continues from there (same case, same number of
    ranks). The checkpoints are removed when the whole run has completed."""
    ec = case.electrochemistry
    params = default_parameters(ec.temperature_K).with_overrides(case.parameters)
    protocol = protocol_from_dict(case.protocol,
                                  capacity_mAh_g=params.theoretical_capacity_mAh_g)
    _check_geometry(case, kinds)
    summary: dict[str, Any] = {"case": spec_to_dict(case), "phase_names": phase_names(),
                               "parameters": _parameter_table(params)}
    with atomic_result_dir(out, comm) as folder:
        for kind in kinds:
            cell, info = _cathode_cell(comm, case, kind, params, folder)
            res, status, wall = _run_one(comm, cell, protocol, folder / kind, "cycling.csv",
                                         kind, ec.fields_every, progress,
                                         checkpoint_for(out, kind, checkpoint_every, resume,
                                                        comm))
            cell.release_solver_options()
            entry = _cell_info(cell, info)
            entry["utilization"] = _utilization(cell, protocol.initial_theta,
                                                folder / kind / "particles.csv")
            cell.free()
            entry.update({"status": status, "wall_time_s": wall,
                          "steps": _step_table(protocol, res),
                          "max_charge_balance_rel": max(
                              (r.charge_balance_rel for r in res.records), default=0.0),
                          "max_li_balance_rel": max(
                              (r.li_balance_rel for r in res.records), default=0.0),
                          "min_electrolyte_concentration_mol_m3": _min_salt(res.records)})
            summary[kind] = entry
            if comm.rank == 0:
                log.info(f"[{kind}] {status}; {len(res.records)} time steps in {wall:.1f} s")
                from cases.plots import voltage_curves

                voltage_curves({kind: {"protocol": res.records}}, folder / kind / "voltage.png")
        if comm.rank == 0:
            write_json(folder / "summary.json", summary)
    drop_checkpoints_when_completed(out, {k: summary[k]["status"] for k in kinds}, comm)
    return summary


def rate_settings(case: CaseSpec) -> tuple[dict[str, Any], float]:
    """The rate study builds its own steps; the case's protocol table gives the settings
    (initial_theta, step control: returned without its steps) and optionally
    ``discharge_cutoff_V`` (default 1.5 V, checked here)."""
    base = {k: v for k, v in case.protocol.items() if k != "step"}
    cutoff = base.pop("discharge_cutoff_V", 1.5)
    lo, hi = VOLTAGE_RANGE_V
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) \
            or not (lo <= cutoff <= hi):
        raise ProtocolError(f"protocol.discharge_cutoff_V = {cutoff!r}: must be a number in "
                            f"[{lo:g}, {hi:g}] V")
    return base, float(cutoff)


def seed_owner(case: CaseSpec) -> str:
    """Where the half cell's realization seed lives: ``box`` for 3D columns, ``section`` for
    2D sections."""
    return "box" if case.electrochemistry.geometry == "box" else "section"


def _rate_protocols(case: CaseSpec, rates_mA_g: Sequence[float], kinds: Sequence[str]
                    ) -> tuple[dict[float, Protocol], float]:
    """The discharge protocol of every rate and the cut-off voltage, validated (with the
    geometry) before anything is built."""
    base, cutoff = rate_settings(case)
    if not rates_mA_g or any(not (0 < r <= 1e5) for r in rates_mA_g):
        raise ProtocolError(f"rates = {list(rates_mA_g)}: need one or more rates in "
                            f"(0, 1e5] mA/g")
    names = [f"{r:g}" for r in rates_mA_g]
    if len(set(names)) != len(names):
        raise ProtocolError(f"rates = {', '.join(names)} mA/g: each rate once (to 6 "
                            f"significant digits, as the result folders are named)")
    _check_geometry(case, kinds)
    protocols = {rate: protocol_from_dict({**base, "step": [{
        "kind": "cc", "current_mA_g": float(rate), "until_voltage_V": cutoff,
        "label": f"{rate:g} mA/g"}]}) for rate in rates_mA_g}
    return protocols, cutoff


def run_rate_study(case: CaseSpec, out: Path, rates_mA_g: Sequence[float],
                   comm: MPI.Comm = MPI.COMM_WORLD, kinds: Sequence[str] = KINDS,
                   progress: bool = True,
                   on_rate: Callable[[str, float, float], None] | None = None,
                   resume_from: Path | None = None) -> dict[str, Any]:
    """Discharge each cathode from the charged state (``protocol.initial_theta``) to the
    cut-off at each specific current. Paper Fig. 4a, b (curves) and 4d (capacity vs rate).

    ``resume_from``: the folder an interrupted run of the same case kept
    (``<out>.incomplete``): its finished discharges are taken over as they are (files and
    summary entries; a cathode whose rates all finished is not even meshed again), the
    others run; the folder is removed once the study completes."""
    protocols, cutoff = _rate_protocols(case, rates_mA_g, kinds)
    ec = case.electrochemistry
    params = default_parameters(ec.temperature_K).with_overrides(case.parameters)
    previous = _previous_run(resume_from, case, comm)
    refuse_uncovered(resume_from, _uncovered_rates(previous, kinds, rates_mA_g))
    summary: dict[str, Any] = {"case": spec_to_dict(case), "phase_names": phase_names(),
                               "parameters": _parameter_table(params),
                               "discharge_cutoff_V": cutoff, "rates_mA_g": list(rates_mA_g),
                               "paper_capacity_mAh_g": PAPER_RATE_CAPABILITY}
    curves: dict[str, dict[str, list[Record]]] = {}
    order = {float(rate): i for i, rate in enumerate(rates_mA_g)}
    # A run that fails or is interrupted (Ctrl-C) keeps its finished rates in
    # <out>.incomplete; summary.json says "complete": false until the end.
    summary["complete"] = False
    with atomic_result_dir(out, comm, keep_partial=True) as folder:
        # the discharges an interrupted run finished first, so that a second interrupt
        # keeps them all
        finished: dict[str, list[float]] = {}
        for kind in kinds:
            taken = comm.bcast(_finished_rates(previous, resume_from, kind, rates_mA_g)
                               if comm.rank == 0 else None, root=0)
            finished[kind] = [rate for rate, _ in taken]
            if not taken or previous is None or resume_from is None:
                continue
            entry = {k: v for k, v in previous[kind].items() if k != "rates"}
            entry["rates"] = []
            summary[kind] = entry
            curves[kind] = {}
            for rate, old in taken:
                name = f"{rate:g}mA_g"
                if comm.rank == 0:
                    shutil.copytree(resume_from / kind / name, folder / kind / name)
                comm.barrier()
                entry["rates"].append(old)
                # the curves are drawn on rank 0
                curves[kind][f"{rate:g} mA/g"] = (
                    _read_records(folder / kind / name / "discharge.csv") if comm.rank == 0
                    else [])
                if on_rate is not None:
                    on_rate(kind, rate, old["capacity_mAh_g"])
            if comm.rank == 0:
                log.info(f"[{kind}] {len(taken)} of {len(rates_mA_g)} rates taken over from "
                         f"{resume_from}")
        if comm.rank == 0 and any(finished.values()):
            write_json(folder / "summary.json", summary)
        for kind in kinds:
            todo = [rate for rate in rates_mA_g if float(rate) not in finished[kind]]
            if not todo:
                continue
            cell, info = _cathode_cell(comm, case, kind, params, folder)
            entry = summary.setdefault(kind, {"rates": []})
            entry.update(_cell_info(cell, info))
            curves.setdefault(kind, {})
            for rate in todo:
                protocol = protocols[rate]
                sub = folder / kind / f"{rate:g}mA_g"
                if comm.rank == 0:
                    sub.mkdir()
                comm.barrier()
                try:
                    res, status, wall = _run_one(comm, cell, protocol, sub, "discharge.csv",
                                                 f"{kind} {rate:g} mA/g", ec.fields_every,
                                                 progress)
                except RunInterrupted as e:
                    # kept in <out>.incomplete: this rate's records up to the interrupt
                    # (discharge.csv) and its entry, marked interrupted, with the voltage
                    # breakdown and salt minimum of its last step
                    t_end = e.records[-1].time_s if e.records else 0.0
                    entry["rates"].append({
                        **_rate_entry(rate, e.records, f"interrupted at t = {t_end:.6g} s",
                                      "interrupted", e.wall_s),
                        "overpotentials_at_end_V": _breakdown_at(e.records, 1.0)})
                    if comm.rank == 0:
                        write_json(folder / "summary.json", summary)
                    raise
                recs = res.records
                q = recs[-1].capacity_mAh_g if recs else 0.0
                use = _utilization(cell, protocol.initial_theta, sub / "particles.csv")
                entry["rates"].append({
                    **_rate_entry(rate, recs, status,
                                  res.stopped_by[0] if res.stopped_by else "not run", wall),
                    "utilization": use,
                    "overpotentials_at_half_capacity_V": _breakdown_at(recs, 0.5),
                })
                entry["rates"].sort(key=lambda r: order[float(r["rate_mA_g"])])
                curves[kind][f"{rate:g} mA/g"] = recs
                if comm.rank == 0:
                    write_json(folder / "summary.json", summary)  # the rates finished so far
                    log.info(f"[{kind}] {rate:g} mA/g: {q:.1f} mAh/g ({status}, "
                             f"{len(recs)} steps, {wall:.1f} s)")
                if on_rate is not None:
                    on_rate(kind, float(rate), q)
            cell.free()
        summary["complete"] = True
        for kind in kinds:  # the curves in the order of the rates
            curves[kind] = {f"{r:g} mA/g": curves[kind][f"{r:g} mA/g"] for r in rates_mA_g}
        if comm.rank == 0:
            from cases.plots import rate_capability_figure, voltage_curves

            write_json(folder / "summary.json", summary)
            _write_rate_table(folder / "rate_capability.csv", summary, kinds)
            voltage_curves(curves, folder / "voltage_curves.png")
            rate_capability_figure(summary, folder / "rate_capability.png")
    if resume_from is not None and comm.rank == 0:
        shutil.rmtree(resume_from, ignore_errors=True)  # all it held is in the result
    comm.barrier()
    return summary


def _study_kind(data: dict[str, Any]) -> str:
    """What a rate-study summary holds: an ``ensemble`` of seeds, a ``sensitivity`` study
    (cases.sensitivity) or a ``single`` study."""
    return "ensemble" if "seeds" in data else "sensitivity" if "variations" in data \
        else "single"


def _previous_run(folder: Path | None, case: CaseSpec, comm: MPI.Comm, study: str = "single"
                  ) -> dict[str, Any] | None:
    """:func:`cases.output.previous_run`, also checked to be of the same kind of ``study``:
    "single", "ensemble" or "sensitivity" (one line otherwise). Collective."""
    data = previous_run(folder, case, comm)
    _check_same_box_mesh(data, folder, case, comm)
    if data is not None and _study_kind(data) != study:
        held = _study_kind(data)
        raise ValueError(f"--resume: {folder} holds "
                         + (f"an ensemble of {len(data['seeds'])} seeds; resume with --seeds "
                            f"{len(data['seeds'])}" if held == "ensemble" else
                            "a sensitivity study; resume with --sensitivity"
                            if held == "sensitivity" else
                            "a single rate study; resume without --seeds or --sensitivity")
                         + f", or remove {folder} and run without --resume to start afresh")
    return data


def _column_kind(box_mesh: str, voxel_surface: str) -> str:
    return ("conforming columns" if box_mesh == "conforming"
            else f"voxel columns with voxel_surface = '{voxel_surface}'")


def _check_same_box_mesh(data: dict[str, Any] | None, folder: Path | None, case: CaseSpec,
                         comm: MPI.Comm) -> None:
    """Refuse (one line) a resume of a 3D study whose finished discharges were solved on
    another kind of column than the case asks: versions before conforming half-cell
    columns voxelized whatever ``box.mesh`` said, and versions before the weighted voxel
    surface (``electrochemistry.voxel_surface``) reacted through the bare voxel faces, with
    the same case. Collective."""
    if data is None or folder is None or case.electrochemistry.geometry != "box":
        return
    other: set[str] = set()
    asked = ""
    if comm.rank == 0:
        studies = [data]
        # the studies of an ensemble (seed<s>/) or a sensitivity study (<name>=<value>/)
        nested = _study_kind(data) != "single"
        for path in sorted(folder.glob("*/summary.json")) if nested else []:
            try:
                studies.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass  # an unreadable seed study is run again (_finished_seeds)
        for study in studies:
            if not isinstance(study, dict):
                continue
            for kind in KINDS:
                entry = study.get(kind)
                mesh = entry.get("mesh") if isinstance(entry, dict) else None
                if not isinstance(mesh, dict):
                    continue
                surface = voxel_surface(case, kind)
                found = _column_kind(str(mesh.get("box_mesh", "voxels")),
                                     str(mesh.get("voxel_surface", "faces")))
                if found != _column_kind(case.box.mesh, surface):
                    other.add(found)
                    asked = ("box.mesh = 'conforming'" if case.box.mesh == "conforming" else
                             f"box.mesh = 'voxels' and the {kind} column's voxel surface "
                             f"'{surface}' (electrochemistry.voxel_surface = "
                             f"'{case.electrochemistry.voxel_surface}')")
    other, asked = comm.bcast((other, asked), root=0)
    if other:
        raise ValueError(f"--resume: {folder} holds discharges solved on "
                         f"{' and '.join(sorted(other))}, but {asked}; remove {folder} and "
                         f"run without --resume to start afresh")


def _uncovered_rates(previous: dict[str, Any] | None, kinds: Sequence[str],
                     rates_mA_g: Sequence[float]) -> list[str]:
    """The discharges an interrupted study finished that a resume with ``kinds`` and
    ``rates_mA_g`` would not carry over."""
    asked = {float(r) for r in rates_mA_g}
    return [f"{kind} {r['rate_mA_g']:g} mA/g" for kind in KINDS
            for r in (previous or {}).get(kind, {}).get("rates", [])
            if r.get("stopped_by") != "interrupted"
            and (kind not in kinds or float(r["rate_mA_g"]) not in asked)]


def _finished_rates(previous: dict[str, Any] | None, folder: Path | None, kind: str,
                    rates_mA_g: Sequence[float]) -> list[tuple[float, dict[str, Any]]]:
    """The rates of ``rates_mA_g`` that an interrupted study finished for ``kind`` (their
    records on disk), with their summary entries, in the order of ``rates_mA_g``."""
    if previous is None or folder is None or kind not in previous:
        return []
    entries = {float(r["rate_mA_g"]): r for r in previous[kind].get("rates", [])
               if r.get("stopped_by") != "interrupted"}
    return [(float(rate), entries[float(rate)]) for rate in rates_mA_g
            if float(rate) in entries
            and _complete_records(folder / kind / f"{rate:g}mA_g" / "discharge.csv",
                                  entries[float(rate)].get("time_steps_count"))]


def _complete_records(path: Path, count: int | None) -> bool:
    """Whether ``path`` holds the ``count`` records its summary entry says (a discharge
    whose CSV was damaged or cut short is run again rather than taken over)."""
    try:
        records = _read_records(path)
    except (OSError, ValueError, TypeError):
        return False
    return count is not None and len(records) == count


def _read_records(path: Path) -> list[Record]:
    """The records of a discharge.csv written by :func:`_write_records`."""
    kinds = {"int": int, "str": str}
    fields = Record.__dataclass_fields__
    with path.open(newline="") as f:
        return [Record(**{k: kinds.get(str(fields[k].type), float)(v)
                          for k, v in row.items() if k in fields})
                for row in csv.DictReader(f)]


def _with_seed(case: CaseSpec, seed: int) -> CaseSpec:
    """The case with the realization seed of its geometry (``box.seed`` for 3D columns,
    ``section.seed`` for 2D sections) set to ``seed``."""
    return with_seed(case, seed, seed_owner(case))


def _first_seed(case: CaseSpec) -> int:
    """The realization seed the case's geometry uses."""
    return case.box.seed if case.electrochemistry.geometry == "box" else case.section.seed


def run_rate_ensemble(case: CaseSpec, out: Path, rates_mA_g: Sequence[float], seeds: int,
                      comm: MPI.Comm = MPI.COMM_WORLD, kinds: Sequence[str] = KINDS,
                      progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """The rate study on ``seeds`` realizations (seeds s0 .. s0 + n - 1 from the geometry's
    seed): per seed the whole study in ``<out>/seed<s>/``, and in ``<out>/summary.json`` per
    cathode and rate the capacity of every seed, its mean, sample std and 95 % confidence
    interval of the mean (Student t), and how each seed's discharge ended (a column whose
    electrolyte or electron network does not reach the wires ends "blocked" at 0 mAh/g, and
    counts as such). Like the single study, finished seeds of an interrupted run are kept in
    ``<out>.incomplete``; ``resume`` takes them over from there (and the finished rates of
    the seed that was interrupted), and runs the rest."""
    from cases.ensemble import mean_ci95

    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"--seeds {seeds}: must be an integer >= 1")
    _rate_protocols(case, rates_mA_g, kinds)  # bad input: one line, before any folder
    default_parameters(case.electrochemistry.temperature_K).with_overrides(case.parameters)
    s0 = _first_seed(case)
    summary: dict[str, Any] = {"case": spec_to_dict(case), "rates_mA_g": list(rates_mA_g),
                               "seeds": list(range(s0, s0 + seeds)), "seeds_done": [],
                               "paper_capacity_mAh_g": PAPER_RATE_CAPABILITY,
                               "complete": False}
    previous_folder = incomplete_path(out) if resume else None
    previous = _previous_run(previous_folder, case, comm, study="ensemble")
    if previous is not None and (previous.get("rates_mA_g") != [float(r) for r in rates_mA_g]
                                 or previous.get("seeds", [])[:1] != [s0]):
        raise ValueError(f"--resume: {previous_folder} holds an ensemble of other rates or "
                         f"seeds (--rates {','.join(f'{r:g}' for r in previous['rates_mA_g'])}"
                         f", from seed {(previous.get('seeds') or ['?'])[0]}); resume with "
                         f"those, or remove {previous_folder} and run without --resume to "
                         f"start afresh")
    if previous is not None and previous_folder is not None:
        asked = set(range(s0, s0 + seeds))
        left = [f"seed {s}" for s in previous.get("seeds_done", []) if s not in asked]
        left += [f"{kind} (seed {s})" for s in previous.get("seeds_done", [])
                 for kind in KINDS if kind not in kinds and kind in previous]
        # the seed that was interrupted: its finished rates
        left += uncovered_in_interrupted(previous_folder,
                                         [f"seed{s}" for s in previous.get("seeds", [])],
                                         kinds, rates_mA_g, comm)
        refuse_uncovered(previous_folder, left)
    studies: list[dict[str, Any]] = []
    with atomic_result_dir(out, comm, keep_partial=True) as folder:

        def first_rate_done(kind: str, rate: float, capacity: float) -> None:
            # from the first finished rate on, an interrupted ensemble keeps its folder
            # (<out>.incomplete), with the unfinished seed in seed<s>.incomplete
            if comm.rank == 0 and not (folder / "summary.json").exists():
                write_json(folder / "summary.json", summary)

        done = _finished_seeds(previous, previous_folder, kinds, summary["seeds"], comm)
        for s in summary["seeds"]:
            studies.append(run_or_take_over(
                _with_seed(case, s), folder, f"seed{s}", previous_folder, done.get(s),
                rates_mA_g, comm, kinds, progress, first_rate_done))
            summary["seeds_done"] = summary["seeds"][:len(studies)]
            for kind in kinds:
                rows = []
                for i, rate in enumerate(rates_mA_g):
                    runs = [st[kind]["rates"][i] for st in studies]
                    caps = [r["capacity_mAh_g"] for r in runs]
                    stats = mean_ci95(caps)
                    rows.append({
                        "rate_mA_g": float(rate), "capacity_mAh_g": stats["mean"],
                        "capacity_std_mAh_g": stats["std"],
                        "capacity_ci95_mAh_g": [stats["ci95_low"], stats["ci95_high"]],
                        "capacities_mAh_g": caps,
                        "stopped_by": [r["stopped_by"] for r in runs],
                        "status": [r["status"] for r in runs],
                        # runs stopped early (Newton failure): their capacity, a lower
                        # bound, is in the statistics
                        "failed_count": sum(r["status"] != "completed" for r in runs),
                        # discharges that stalled above the cut-off (protocol.stall_steps):
                        # their capacity, the one reached, is in the statistics
                        "stalled_count": sum(r["stopped_by"] == "stalled" for r in runs)})
                summary[kind] = {"rates": rows}
            if comm.rank == 0:
                write_json(folder / "summary.json", summary)
                log.info(f"seed {s} done ({len(studies)} of {seeds})")
        summary["complete"] = True
        if comm.rank == 0:
            from cases.plots import rate_capability_figure

            write_json(folder / "summary.json", summary)
            _write_ensemble_table(folder / "rate_capability.csv", summary, kinds)
            rate_capability_figure(summary, folder / "rate_capability.png")
    if previous_folder is not None and comm.rank == 0:
        shutil.rmtree(previous_folder, ignore_errors=True)  # all it held is in the result
    comm.barrier()
    return summary


def uncovered_in_interrupted(previous_folder: Path, names: Sequence[str],
                             kinds: Sequence[str], rates_mA_g: Sequence[float],
                             comm: MPI.Comm) -> list[str]:
    """The finished discharges of the study of a series that was interrupted (the first of
    ``names`` with a ``<name>.incomplete`` folder in ``previous_folder``) that a resume with
    ``kinds`` and ``rates_mA_g`` would not carry over. Collective."""
    nested = None
    if comm.rank == 0:
        for name in names:
            path = previous_folder / f"{name}.incomplete" / "summary.json"
            if path.is_file():
                try:
                    nested = json.loads(path.read_text())
                except (OSError, ValueError):
                    nested = None
                break
    return _uncovered_rates(comm.bcast(nested, root=0), kinds, rates_mA_g)


def run_or_take_over(case: CaseSpec, folder: Path, name: str, previous_folder: Path | None,
                     finished: dict[str, Any] | None, rates_mA_g: Sequence[float],
                     comm: MPI.Comm, kinds: Sequence[str], progress: bool,
                     on_rate: Callable[[str, float, float], None] | None) -> dict[str, Any]:
    """One rate study of a series (a seed of an ensemble, a parameter value of a sensitivity
    study) in ``folder/name``: taken over as it is from ``previous_folder/name`` where the
    interrupted series finished it (``finished``: its summary), else run, continuing the
    rates ``previous_folder/<name>.incomplete`` holds. Returns its summary. Collective."""
    if finished is not None and previous_folder is not None:
        if comm.rank == 0:
            shutil.copytree(previous_folder / name, folder / name)
            log.info(f"{name} taken over from {previous_folder}")
        comm.barrier()
        return finished
    unfinished = previous_folder / f"{name}.incomplete" if previous_folder is not None else None
    if not comm.bcast(unfinished is not None and unfinished.is_dir() if comm.rank == 0
                      else None, root=0):
        unfinished = None
    return run_rate_study(case, folder / name, rates_mA_g, comm, kinds=kinds,
                          progress=progress, on_rate=on_rate, resume_from=unfinished)


def _finished_seeds(previous: dict[str, Any] | None, folder: Path | None,
                    kinds: Sequence[str], seeds: Sequence[int], comm: MPI.Comm
                    ) -> dict[int, dict[str, Any]]:
    """The seed studies an interrupted ensemble completed (for every cathode asked), by
    seed: the leading seeds whose summary.json says complete. Collective."""
    done: dict[int, dict[str, Any]] = {}
    if comm.rank == 0 and previous is not None and folder is not None:
        for s in seeds:
            path = folder / f"seed{s}" / "summary.json"
            try:
                study = json.loads(path.read_text())
            except (OSError, ValueError):
                break
            if not study.get("complete") or any(k not in study for k in kinds):
                break
            done[s] = study
    return comm.bcast(done, root=0)


def _rate_entry(rate: float, recs: Sequence[Record], status: str, stopped_by: str,
                wall_s: float) -> dict[str, Any]:
    """The summary entry of one discharge (finished or interrupted) from its records."""
    return {
        "rate_mA_g": float(rate), "capacity_mAh_g": recs[-1].capacity_mAh_g if recs else 0.0,
        "status": status, "stopped_by": stopped_by,
        "energy_mWh_g": sum(r.voltage_V * r.current_mA_g * r.dt_s / 3600 for r in recs),
        "mean_voltage_V": (sum(r.voltage_V * r.dt_s for r in recs)
                           / max(sum(r.dt_s for r in recs), 1e-300) if recs else None),
        "time_steps_count": len(recs),
        "newton_iterations_count": sum(r.newton_iterations for r in recs),
        "wall_time_s": wall_s,
        "max_charge_balance_rel": max((r.charge_balance_rel for r in recs), default=0.0),
        "max_li_balance_rel": max((r.li_balance_rel for r in recs), default=0.0),
        "min_electrolyte_concentration_mol_m3": _min_salt(recs),
    }


def _write_ensemble_table(path: Path, summary: dict[str, Any], kinds: Sequence[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cathode", "rate_mA_g", "seeds_count", "capacity_mean_mAh_g",
                    "capacity_std_mAh_g", "capacity_ci95_low_mAh_g",
                    "capacity_ci95_high_mAh_g", "blocked_count", "failed_count",
                    "stalled_count", "capacities_mAh_g"])
        for kind in kinds:
            for r in summary[kind]["rates"]:
                lo, hi = r["capacity_ci95_mAh_g"]
                w.writerow([kind, r["rate_mA_g"], len(r["capacities_mAh_g"]),
                            r["capacity_mAh_g"], r["capacity_std_mAh_g"], lo, hi,
                            r["stopped_by"].count("blocked"), r["failed_count"],
                            r["stalled_count"],
                            " ".join(f"{c:.6g}" for c in r["capacities_mAh_g"])])


def _breakdown_at(recs: Sequence[Record], fraction: float) -> dict[str, float] | None:
    """The voltage breakdown at the record nearest to ``fraction`` of the final capacity."""
    if not recs:
        return None
    target = fraction * recs[-1].capacity_mAh_g
    r = min(recs, key=lambda x: abs(x.capacity_mAh_g - target))
    keys = ("voltage_V", "capacity_mAh_g", "ocv_mean_V", "solid_concentration_V",
            "kinetic_cathode_V", "electronic_ohmic_V", "electrolyte_ohmic_V",
            "electrolyte_concentration_V", "kinetic_anode_V")
    return {k: getattr(r, k) for k in keys}


def _write_rate_table(path: Path, summary: dict[str, Any], kinds: Sequence[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cathode", "rate_mA_g", "capacity_mAh_g", "mean_voltage_V",
                    "energy_mWh_g", "stopped_by", "status"])
        for kind in kinds:
            for r in summary[kind]["rates"]:
                w.writerow([kind, r["rate_mA_g"], r["capacity_mAh_g"], r["mean_voltage_V"],
                            r["energy_mWh_g"], r["stopped_by"], r["status"]])
