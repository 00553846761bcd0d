"""3D representative volumes (RVEs) of both cathodes on voxel (or conforming) meshes.

Question: in 3D, where wires can connect through the thickness, do the gradient membrane and
the tape-cast cathode differ in their electron and ion paths as the paper argues?

Method: for each cathode and seed, the box of ``[box]`` (lateral size, height, depth of its
centre in the composite layer, voxel size) is cut from the realization of its window
(``section.method = "box"`` gives 2D sections of that very realization) and voxelized
(:mod:`meshes.voxels`); one hexahedral cell per voxel. With
``box.mesh = "conforming"`` (gradient membrane; rGO sheets with insulating sides) the box
is instead a conforming tetrahedral mesh fitted to the wires and sheets
(:mod:`meshes.conforming`; no label image is written, the mesh statistics and the designed
contacts are in the summary). On it:

* the full 3x3 apparent conductivity tensors, electronic and ionic (Dirichlet faces in the
  driven direction, insulating sides; :func:`fem.conduction.conductivity_tensor`),
  tortuosity factors per direction; with ``box.electronic_subdivisions = k > 1`` the
  electronic one on voxels k times finer (a mesh of the electronic voxels only, written
  as ``<cathode>_seed<s>_z<f>_electronic.tif``), so that the 20 nm rGO flakes stay whole;
* the surface I-V of the paper's Fig. 2f (two probe bands, each a fifth of the box wide, on
  the face; SPE leakage included) on each cathode face the box contains (box at depth 0:
  collector side; box reaching the top: separator side), in S per cm of band length;
* the percolation report of the 2D study (wire network to the box's bottom face, SPE to its
  top face, dead active material) -- for a box inside the cathode the faces stand in for
  the collector and separator sides; with k > 1 on the whole phase image k times finer
  (:func:`fem.microstructure.image_percolation`, up to
  :data:`meshes.voxels.MAX_PERCOLATION_VOXELS` voxels), where wires that pass closer than
  a coarse voxel no longer touch and the rGO flakes stay whole;
* on voxel boxes, the reacting wire surface in voxel faces, on the same image as the
  percolation report (:func:`fem.microstructure.wire_surface_report`): the share of the wire
  surface that borders polymer connected to the top face, and of that the share on wires
  connected to the bottom face (the half cell's ideal and resolved reacting interface);
* with several seeds: mean and 95 % confidence interval (Student t) of every number;
* with several depths (``z_center_fraction`` values): the depth profile through the cathode.

Output (rank 0): ``summary.json`` (spec, parameters with sources, per-run numbers, ensemble
statistics), ``<cathode>_seed<s>_z<f>.tif`` / ``.npy`` label images, and for the first run
of each cathode ``<cathode>_mesh.xdmf`` with the phase tags (names in summary.json) and
``<cathode>_rve.png`` (slices and the wire network coloured by connection to the bottom face)
and ``<cathode>_rve_3d.png`` (pyvista: the 3D wire network so coloured, and a cut view of the
polymer fill).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

import numpy as np

from cases.ensemble import mean_ci95, nested_get
from cases.output import (
    MARKER,
    atomic_result_dir,
    incomplete_path,
    previous_run,
    refuse_uncovered,
    write_json,
)
from cases.study import PROBE_FRACTION
from fem.conduction import (
    DEFAULT_PETSC_OPTIONS,
    ITERATIVE_PETSC_OPTIONS,
    conductivity_tensor,
    surface_iv,
)
from fem.microstructure import image_percolation, percolation_report, wire_surface_report
from fem.parameters import default_conductivities
from meshes.adapter import (
    build_on_root,
    distribute_conforming,
    distribute_electronic_voxels,
    distribute_voxels,
)
from meshes.build import KINDS
from meshes.conforming import check_conforming_scope, mesh_conforming_box
from meshes.spec import BoxSpec, CaseSpec, spec_to_dict, with_seed
from meshes.tags import phase_names
from meshes.voxels import (
    MAX_PERCOLATION_VOXELS,
    cathode_layers_um,
    check_electronic_image,
    electronic_image,
    film_caveat,
    fine_phase_image,
    fine_phase_image_voxels,
    periodic_caveat,
    sheet_caveat,
    voxelize_case,
    write_image,
)

__all__ = ["print_rve", "run_rve", "rve_numbers", "summarize_runs"]

log = logging.getLogger("cathodefem")

AXES = ("x", "y", "z")


#: what ``summary.json`` says about the solves of each ``box.sides``
BOUNDARY_CONDITIONS = {
    "insulating": "Dirichlet 1 V / 0 V on the two faces normal to the driven axis, other "
                  "faces insulating",
    "periodic": "Dirichlet 1 V / 0 V on the two faces normal to the driven axis; the other "
                "lateral axes (x, y) periodic (microstructure and potential); top and bottom "
                "insulating when x or y is driven; surface I-V probes with insulating sides",
}


def _tensor_entry(t: Any) -> dict[str, Any]:
    return {
        "tensor_S_cm": t.tensor_S_cm.tolist(),
        **{f"sigma_{a}{a}_S_cm": float(t.tensor_S_cm[k, k]) for k, a in enumerate(AXES)},
        "percolates": dict(zip(AXES, t.percolates, strict=True)),
        "volume_fraction": t.volume_fraction,
        "transport_factor": dict(zip(AXES, t.transport_factor, strict=True)),
        "tortuosity_factor": dict(zip(AXES, t.tortuosity_factor, strict=True)),
        "connected_fraction": dict(zip(AXES, t.connected_fraction, strict=True)),
        "asymmetry": t.asymmetry, "balance_rel": t.balance_rel, "dofs_count": t.n_dofs,
        "solve_time_s": t.solve_time_s,
    }


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def rve_numbers(case: CaseSpec, kind: str, comm: MPI.Comm, out: Path | None = None,
                tag: str = "", write_mesh: bool = False,
                petsc_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Voxelize, mesh and solve one RVE; returns its numbers (the same on every rank).
    Linear solver: CG + GAMG (:data:`fem.conduction.ITERATIVE_PETSC_OPTIONS`) unless
    ``petsc_options`` says otherwise."""
    options = petsc_options if petsc_options is not None else ITERATIVE_PETSC_OPTIONS
    caveat = periodic_caveat(case, kind)
    flakes = sheet_caveat(case, kind)
    film = film_caveat(case, kind)
    for message in (caveat, flakes, film):
        if message and comm.rank == 0:
            _warn_once(message)
    t0 = time.perf_counter()
    if case.box.mesh == "conforming":
        box = build_on_root(comm, lambda: mesh_conforming_box(case, kind))
        t_build = time.perf_counter() - t0
        if comm.rank == 0 and out is not None and box is not None and write_mesh:
            from cases.plots import render_conforming_3d

            render_conforming_3d(box.points_um, box.cells, box.phase,
                                 out / f"{kind}_rve_3d.png")
        tm = distribute_conforming(comm, box)
        wire_surface = None  # voxel faces: voxel boxes only
        stats_ = comm.bcast(None if box is None else {
            **box.stats, "contacts": dataclasses.asdict(box.contacts)}, root=0)
    else:
        image = build_on_root(comm, lambda: voxelize_case(case, kind))
        t_build = time.perf_counter() - t0
        if comm.rank == 0 and out is not None and image is not None:
            write_image(image, out / f"{kind}{tag}")
            if write_mesh:
                from cases.plots import render_rve, render_rve_3d

                render_rve(image.labels, image.voxel_um, kind, out / f"{kind}_rve.png")
                render_rve_3d(image.labels, image.voxel_um, kind, out / f"{kind}_rve_3d.png")
        tm = distribute_voxels(comm, image)
        stats_ = comm.bcast(image.stats if image is not None else None, root=0)
        wire_surface = comm.bcast(None if image is None else wire_surface_report(
            image.labels, case.box.sides == "periodic", image.voxel_um), root=0)
    params = default_conductivities()
    periodic = case.box.sides == "periodic"
    r_c = case.conduction.contact_resistance_ohm_cm2  # electronic tensor only
    fine: dict[str, Any] = {}
    fine_perc: dict[str, float] | None = None
    if case.box.mesh == "voxels" and case.box.electronic_subdivisions > 1:
        # the electronic tensor on finer voxels: a mesh of the electronic voxels only
        t1 = time.perf_counter()
        solids = build_on_root(comm, lambda: electronic_image(case, kind))
        if comm.rank == 0 and out is not None and solids is not None:
            write_image(solids, out / f"{kind}{tag}_electronic")
        tm_e = distribute_electronic_voxels(comm, solids)
        electronic = conductivity_tensor(tm_e, params.electronic(), petsc_options=options,
                                         periodic=periodic, contact_resistance_ohm_cm2=r_c,
                                         contact_groups=case.conduction.contact_groups())
        coarse_flakes = sheet_caveat(dataclasses.replace(case, box=dataclasses.replace(
            case.box, electronic_subdivisions=1)), kind)
        fine_um = case.box.voxel_um / case.box.electronic_subdivisions
        # the percolation report on the whole phase image at the finer voxels, when it fits
        if fine_phase_image_voxels(case, kind) <= MAX_PERCOLATION_VOXELS:
            def fine_reports() -> tuple[dict[str, float], dict[str, float]]:
                labels = fine_phase_image(case, kind).labels
                return (image_percolation(labels, periodic),
                        wire_surface_report(labels, periodic, fine_um))

            fine_perc, wire_surface = comm.bcast(build_on_root(comm, fine_reports), root=0)
        fine = {"electronic_voxel_um": fine_um,
                "percolation_voxel_um": case.box.voxel_um if fine_perc is None else fine_um,
                "percolation_caveat": None if coarse_flakes is None or fine_perc is not None
                else (f"the percolation report (electronic connectivity, dead active "
                      f"fraction) is on the {case.box.voxel_um:g} um phase image, where the "
                      f"rGO flakes fall apart (its {fine_um:g} um image would exceed "
                      f"{MAX_PERCOLATION_VOXELS:.2g} voxels); the electronic tensor is on "
                      f"{fine_um:g} um voxels"),
                "electronic_cells_count": int(comm.allreduce(
                    tm_e.mesh.topology.index_map(3).size_local, op=MPI.SUM)),
                "electronic_image": comm.bcast(None if solids is None else solids.stats,
                                               root=0),
                "electronic_time_s": time.perf_counter() - t1}
        if fine["percolation_caveat"] and comm.rank == 0:
            _warn_once(fine["percolation_caveat"])
        del tm_e, solids
    else:
        electronic = conductivity_tensor(tm, params.electronic(), petsc_options=options,
                                         periodic=periodic, contact_resistance_ohm_cm2=r_c,
                                         contact_groups=case.conduction.contact_groups())
    ionic = conductivity_tensor(tm, params.ionic(), petsc_options=options, periodic=periodic)
    report = percolation_report(tm, bin_um=max(tm.thickness_um / 10, case.box.voxel_um
                                               if case.box.mesh == "voxels"
                                               else case.box.conforming_size_um),
                                periodic={0: tm.width_um, 1: tm.depth_um} if periodic else None)
    # surface I-V (paper Fig. 2f) on the cathode faces the box contains
    thickness = cathode_layers_um(case, kind)[2]
    faces = [f for f, inside in (("bottom", tm.z_offset_um <= 1e-9),
                                 ("top", abs(tm.z_offset_um + tm.thickness_um - thickness)
                                  <= 1e-6 * thickness)) if inside]
    probe = PROBE_FRACTION * tm.width_um
    surface = {}
    for face in faces:
        # direct solver: the polymer's electronic leakage makes a 1e11 contrast that
        # defeats AMG ("indefinite preconditioner")
        iv = surface_iv(tm, params.electronic(leakage=True), face=face,
                        probe_length_um=probe, probe_gap_um=probe,
                        petsc_options=dict(DEFAULT_PETSC_OPTIONS))
        surface[f"{face}_conductance_S_per_cm"] = iv.conductance_S_per_cm
    if surface:
        surface["probe_length_um"] = surface["probe_gap_um"] = probe
    if write_mesh and out is not None:
        import dolfinx.io

        with dolfinx.io.XDMFFile(comm, out / f"{kind}_mesh.xdmf", "w") as f:
            f.write_mesh(tm.mesh)
            tm.mesh.topology.create_connectivity(2, 3)
            f.write_meshtags(tm.cell_tags, tm.mesh.geometry)
    perc = {k: v for k, v in dataclasses.asdict(report).items() if k != "depth_profile"}
    if fine_perc is not None:
        perc = fine_perc
    return {
        "cathode": kind, "seed": case.box.seed, "z_center_fraction": case.box.z_center_fraction,
        "box_z_um": [tm.z_offset_um, tm.z_offset_um + tm.thickness_um],
        "mesh": case.box.mesh, "sides": case.box.sides,
        "periodic_caveat": caveat, "rgo_caveat": flakes, "film_caveat": film,
        "image": stats_,
        "cells_count": int(comm.allreduce(tm.mesh.topology.index_map(3).size_local,
                                          op=MPI.SUM)),
        "electronic": {**_tensor_entry(electronic), "contact_resistance_ohm_cm2": r_c,
                       "contacts": case.conduction.contacts},
        "ionic": _tensor_entry(ionic), **fine,
        "percolation": perc, "wire_surface": wire_surface, "surface_iv": surface,
        # building the box on rank 0: voxelizing, or the conforming design and Gmsh
        ("voxelize_time_s" if case.box.mesh == "voxels" else "conforming_mesh_time_s"): t_build,
        "total_time_s": time.perf_counter() - t0,
    }


#: (name, path) of the numbers summarised over seeds
QUANTITIES: list[tuple[str, tuple[str, ...]]] = [
    *[(f"{c}_sigma_{a}{a}_S_cm", (c, f"sigma_{a}{a}_S_cm"))
      for c in ("electronic", "ionic") for a in AXES],
    *[(f"{c}_tortuosity_factor_{a}", (c, "tortuosity_factor", a))
      for c in ("electronic", "ionic") for a in AXES],
    ("nanowire_electronic_connected_fraction",
     ("percolation", "nanowire_electronic_connected_fraction")),
    ("nanowire_ion_accessible_fraction", ("percolation", "nanowire_ion_accessible_fraction")),
    ("dead_active_fraction", ("percolation", "dead_active_fraction")),
    ("wire_surface_connected_ratio", ("wire_surface", "wire_surface_connected_ratio")),
    ("wire_surface_active_ratio", ("wire_surface", "wire_surface_active_ratio")),
    ("nanowire_fraction", ("image", "nanowire_fraction")),
]


def _value(run: dict[str, Any], path: tuple[str, ...]) -> float:
    """The number at ``path`` of a run; NaN where the run has none (the voxel-face
    quantities of a conforming box)."""
    try:
        return float(nested_get(run, path))
    except (KeyError, TypeError):
        return float("nan")


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std and 95 % CI of the mean (Student t) of every quantity over the runs.
    Tortuosity factors are averaged over the runs where that direction percolates."""
    out: dict[str, Any] = {"runs_count": len(runs)}
    for name, path in QUANTITIES:
        x = np.asarray([_value(r, path) for r in runs], dtype=float)
        out[name] = mean_ci95(x[np.isfinite(x)])
    for c in ("electronic", "ionic"):
        for a in AXES:
            out[f"{c}_{a}_percolating_fraction"] = float(
                np.mean([r[c]["percolates"][a] for r in runs]))
    return out


def run_rve(case: CaseSpec, out: Path, comm: MPI.Comm = MPI.COMM_WORLD, *,
            kinds: tuple[str, ...] = KINDS, seeds: int = 1,
            depths: list[float] | None = None, resume: bool = False) -> dict[str, Any]:
    """All RVEs (cathodes x depths x seeds from ``case.box.seed``); writes ``out``.

    ``summary.json`` is rewritten after every box (``"complete": false`` until the end), and
    a run stopped by an error or an interrupt keeps its finished boxes in
    ``<out>.incomplete``; ``resume`` takes them over from there (numbers and files) and
    runs the rest."""
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: must be >= 1")
    depth_list = depths if depths else [case.box.z_center_fraction]
    if len({f"{f:g}" for f in depth_list}) != len(depth_list):
        raise ValueError(f"--depths {','.join(f'{f:g}' for f in depth_list)}: each depth "
                         f"once")
    for f in depth_list:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"--depths {f:g}: must be in [0, 1] (fraction of the composite "
                             f"layer, 0 at the collector side)")
        for kind in kinds:  # bad input: one line, before any folder
            at_f = dataclasses.replace(case, box=dataclasses.replace(case.box,
                                                                     z_center_fraction=f))
            if case.box.mesh == "conforming":
                check_conforming_scope(at_f, kind)
            check_electronic_image(at_f, kind)
    previous_folder = incomplete_path(out) if resume else None
    previous = previous_run(previous_folder, case, comm)
    asked = {(kind, f, s) for kind in kinds for f in depth_list
             for s in range(case.box.seed, case.box.seed + seeds)}
    refuse_uncovered(previous_folder, [
        f"{kind} seed {r['seed']} depth {entry['z_center_fraction']:g}" for kind in KINDS
        for entry in (previous or {}).get(kind, []) for r in entry.get("runs", [])
        if (kind, entry["z_center_fraction"], r["seed"]) not in asked])
    summary: dict[str, Any] = {"case": spec_to_dict(case), "phase_names": phase_names(),
                               "parameters": {"conductivities": _sources()},
                               "boundary_conditions": BOUNDARY_CONDITIONS[case.box.sides],
                               "complete": False}
    with atomic_result_dir(out, comm, keep_partial=True) as staging:
        if previous_folder is not None and comm.rank == 0:
            for path in previous_folder.iterdir():  # the finished boxes' images and pictures
                if path.is_file() and path.name not in (MARKER, "provenance.json",
                                                        "summary.json"):
                    shutil.copy2(path, staging / path.name)
        comm.barrier()
        for kind in kinds:
            per_depth: list[dict[str, Any]] = []
            summary[kind] = per_depth
            for f in depth_list:
                runs: list[dict[str, Any]] = []
                entry = {"z_center_fraction": f, "runs": runs}
                per_depth.append(entry)
                for s in range(case.box.seed, case.box.seed + seeds):
                    r = comm.bcast(_finished_box(previous, previous_folder, kind, f, s,
                                                 case.box) if comm.rank == 0 else None,
                                   root=0)
                    if r is not None:
                        if comm.rank == 0:
                            log.info(f"{kind} seed {s} depth {f:g}: taken over from "
                                     f"{previous_folder}")
                    else:
                        seeded = with_seed(case, s, "box")
                        sub = dataclasses.replace(seeded, box=dataclasses.replace(
                            seeded.box, z_center_fraction=f))
                        tag = f"_seed{s}_z{f:g}".replace(".", "p")
                        r = rve_numbers(sub, kind, comm, staging, tag,
                                        write_mesh=len(per_depth) == 1 and not runs)
                        if comm.rank == 0:
                            e, i = r["electronic"], r["ionic"]
                            log.info(f"{kind} seed {s} depth {f:g}: electronic "
                                     f"sigma_xx/yy/zz = {e['sigma_xx_S_cm']:.3e}/"
                                     f"{e['sigma_yy_S_cm']:.3e}/{e['sigma_zz_S_cm']:.3e} S/cm, "
                                     f"ionic {i['sigma_xx_S_cm']:.3e}/{i['sigma_yy_S_cm']:.3e}/"
                                     f"{i['sigma_zz_S_cm']:.3e} S/cm "
                                     f"({r['total_time_s']:.1f} s)")
                    runs.append(r)
                    entry["statistics"] = summarize_runs(runs)
                    if comm.rank == 0:
                        write_json(staging / "summary.json", summary)  # the boxes so far
        summary["complete"] = True
        if comm.rank == 0:
            write_json(staging / "summary.json", summary)
    if previous_folder is not None and comm.rank == 0:
        shutil.rmtree(previous_folder, ignore_errors=True)  # all it held is in the result
    comm.barrier()
    return summary


def _finished_box(previous: dict[str, Any] | None, folder: Path | None, kind: str,
                  depth: float, seed: int, box: BoxSpec) -> dict[str, Any] | None:
    """The numbers of one box (cathode, depth, seed) an interrupted run finished, or None;
    also None where the image files of a voxel box are missing from ``folder`` (the box is
    run again)."""
    tag = f"_seed{seed}_z{depth:g}".replace(".", "p")
    files = [] if box.mesh == "conforming" else [".npy", ".tif"] + (
        ["_electronic.npy"] if box.electronic_subdivisions > 1 else [])
    if folder is None or not all((folder / f"{kind}{tag}{ext}").is_file() for ext in files):
        return None
    for entry in (previous or {}).get(kind, []):
        if entry.get("z_center_fraction") == depth:
            for r in entry.get("runs", []):
                if r.get("seed") == seed:
                    return dict(r)
    return None


def _sources() -> dict[str, Any]:
    p = default_conductivities()
    return {kind: {ph.label: {"value": v.value, "unit": v.unit, "source": v.source}
                   for ph, v in table.items()}
            for kind, table in (("electronic", p.electronic_S_cm), ("ionic", p.ionic_S_cm))}


def print_rve(summary: dict[str, Any]) -> None:
    """Mean [95 % CI] of the main numbers, per cathode and depth (rank 0)."""
    names = [("electronic_sigma_xx_S_cm", "electronic sigma_xx [S/cm]"),
             ("electronic_sigma_zz_S_cm", "electronic sigma_zz [S/cm]"),
             ("ionic_sigma_xx_S_cm", "ionic sigma_xx [S/cm]"),
             ("ionic_sigma_zz_S_cm", "ionic sigma_zz [S/cm]"),
             ("ionic_tortuosity_factor_z", "ionic tortuosity z"),
             ("nanowire_electronic_connected_fraction", "NW connected to bottom face"),
             ("nanowire_ion_accessible_fraction", "NW ion-accessible"),
             ("dead_active_fraction", "dead active fraction"),
             ("wire_surface_connected_ratio", "NW surface on connected SPE"),
             ("wire_surface_active_ratio", "NW surface reacting (resolved)")]
    for kind in KINDS:
        for entry in summary.get(kind, []):
            st = entry["statistics"]
            sides = summary.get("case", {}).get("box", {}).get("sides", "insulating")
            box = summary.get("case", {}).get("box", {})
            k = box.get("electronic_subdivisions", 1)
            fine_perc = all(r.get("percolation_voxel_um") == box["voxel_um"] / k
                            for r in entry.get("runs", [{}]))
            what = "electronic tensor and percolation report" if fine_perc else \
                "electronic tensor"
            voxels = (f", {what} on {box['voxel_um'] / k:g} um voxels, the rest on "
                      f"{box['voxel_um']:g} um" if k > 1 and box.get("mesh") == "voxels" else "")
            r_c = summary.get("case", {}).get("conduction", {}).get(
                "contact_resistance_ohm_cm2", 0.0)
            where = summary.get("case", {}).get("conduction", {}).get("contacts", "phases")
            contacts = (f", electronic contacts {r_c:g} ohm cm2 (between {where})"
                        if r_c else "")
            print(f"\n{kind}, depth {entry['z_center_fraction']:g}, {st['runs_count']} seed(s), "
                  f"{sides} sides{voxels}{contacts}")
            for key, label in names:
                q = st[key]
                if q["samples_count"] == 0 and key.startswith("wire_surface"):  # conforming
                    continue
                ci = (f" [{q['ci95_low']:.3g}, {q['ci95_high']:.3g}]"
                      if q["samples_count"] > 1 else "")
                print(f"  {label:34s} {q['mean']:.4g}{ci}")
            for c in ("electronic", "ionic"):
                fr = [st[f"{c}_{a}_percolating_fraction"] for a in AXES]
                print(f"  {c + ' percolating x/y/z':34s} " + "/".join(f"{v:.2g}" for v in fr))
