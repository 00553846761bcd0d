"""Gradient vs homogeneous cathode: the 2D transport study (the main job).

Question: from microstructure alone, how do the gradient NW membrane and the tape-cast
cathode differ in electronic and ionic transport? For each cathode: build the full-thickness
section (rank 0), distribute it, then measure

- effective electronic and ionic conductivity through the thickness (z) and in-plane (x),
  with tortuosity factor and MacMullin number (unit-conductivity solve);
- the two-probe surface I-V of the top and bottom faces and their conductance ratio
  (paper Fig. 2f);
- the percolation report (connected, ion-accessible and dead active material).

Everything is collective; rank 0 prints and writes. Results go to one folder per run.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

import dolfinx
import dolfinx.io

from cases.output import atomic_result_dir, write_json
from fem.conduction import effective_conductivity, surface_iv
from fem.microstructure import percolation_report
from fem.parameters import default_conductivities
from meshes.adapter import TaggedMesh, build_on_root, distribute_section
from meshes.build import KINDS, SectionMesh, build_section
from meshes.msh_io import write_msh
from meshes.spec import CaseSpec, derive_gradient, derive_homogeneous, spec_to_dict
from meshes.tags import phase_names

__all__ = ["mesh_case", "run_study", "solve_section"]

log = logging.getLogger("cathodefem")

#: surface I-V probes (silver paste stripes): length and gap along x, as fractions of the
#: section width (two probes and the gap between them span 3/5 of the face)
PROBE_FRACTION = 0.2


def _say(comm: MPI.Comm, msg: str) -> None:
    if comm.rank == 0:
        log.info(msg)


def _build(comm: MPI.Comm, case: CaseSpec, kind: str
           ) -> tuple[TaggedMesh, dict[str, Any], SectionMesh | None]:
    # One Gmsh thread: two threads mesh about 15 % faster, but not reproducibly under load
    # (measured: 193 457 instead of 193 459 triangles in 1 of 3 runs of rate.toml on 2 busy
    # cores; 1 thread gave 193 459 every time). Same spec + seed must give the same mesh.
    section = build_on_root(comm, lambda: build_section(case, kind, threads=1))
    info: dict[str, Any] | None = None
    if section is not None:
        info = dict(section.stats)
        info["composite_area_fractions"] = section.area_fractions(section.composite_z_um)
    info = comm.bcast(info, root=0)
    assert info is not None
    return distribute_section(comm, section), info, section


def _conductivity_entry(r: Any) -> dict[str, Any]:
    return {
        "percolates": r.percolates,
        "sigma_eff_S_cm": r.sigma_eff_S_cm,
        "volume_fraction": r.volume_fraction,
        "connected_fraction": r.connected_fraction,
        "transport_factor": r.transport_factor,
        "tortuosity_factor": r.tortuosity_factor,
        "macmullin_number": r.macmullin_number,
        "current_balance_rel": r.balance_rel,
        "dofs_count": r.n_dofs,
        "solve_time_s": r.solve_time_s,
    }


def solve_section(tm: TaggedMesh, petsc_options: dict[str, Any] | None = None, *,
                  contact_resistance_ohm_cm2: float = 0.0,
                  contact_groups: list[list[int]] | None = None
                  ) -> tuple[dict[str, Any], dict[str, dolfinx.fem.Function]]:
    """All transport measurements of one tagged section. Returns (numbers, fields).
    ``contact_resistance_ohm_cm2`` acts on the electronic conductivities only (between two
    different electronic phases; the surface I-V keeps perfect contacts)."""
    comm = tm.comm
    k = default_conductivities()
    out: dict[str, Any] = {}
    fields: dict[str, dolfinx.fem.Function] = {}
    for carrier, sigma in (("electronic", k.electronic()), ("ionic", k.ionic())):
        out[carrier] = {}
        for direction in ("z", "x"):
            r = effective_conductivity(
                tm, sigma, direction=direction, petsc_options=petsc_options,
                keep_solution=True, contact_resistance_ohm_cm2=(
                    contact_resistance_ohm_cm2 if carrier == "electronic" else 0.0),
                contact_groups=contact_groups)
            out[carrier][direction] = _conductivity_entry(r)
            if r.solution.potential is not None:
                fields[f"{carrier}_potential_{direction}_V"] = r.solution.potential
            _say(comm, f"  {carrier:10s} {direction}: sigma_eff = {r.sigma_eff_S_cm:.3e} S/cm"
                       f", tortuosity = {r.tortuosity_factor:.3g}"
                       + ("" if r.percolates else "  (does not percolate)"))
    leaky = k.electronic(leakage=True)
    probe = PROBE_FRACTION * tm.width_um
    iv = {face: surface_iv(tm, leaky, face=face, probe_length_um=probe, probe_gap_um=probe,
                           petsc_options=petsc_options)
          for face in ("top", "bottom")}
    g_top, g_bot = iv["top"].conductance_S_per_cm, iv["bottom"].conductance_S_per_cm
    out["surface_iv"] = {
        "probe_length_um": probe, "probe_gap_um": probe,
        "top_conductance_S_per_cm": g_top, "bottom_conductance_S_per_cm": g_bot,
        "bottom_over_top_conductance_ratio": (g_bot / g_top) if g_top > 0 else float("inf"),
        "voltage_V": iv["top"].voltage_V.tolist(),
        "top_current_A_per_cm": iv["top"].current_A_per_cm.tolist(),
        "bottom_current_A_per_cm": iv["bottom"].current_A_per_cm.tolist(),
    }
    _say(comm, f"  surface I-V: bottom/top conductance ratio = "
               f"{out['surface_iv']['bottom_over_top_conductance_ratio']:.3g}")
    rep = percolation_report(tm)
    out["percolation"] = {k: v for k, v in asdict(rep).items() if k != "depth_profile"}
    prof = rep.depth_profile
    out["depth_profile"] = {
        "z_um": prof.z_um.tolist(),
        "nanowire_electronic_connected_fraction":
            prof.nanowire_electronic_connected_fraction.tolist(),
        "nanowire_ion_accessible_fraction": prof.nanowire_ion_accessible_fraction.tolist(),
        "spe_connected_fraction": prof.spe_connected_fraction.tolist(),
        "active_fraction": prof.active_fraction.tolist(),
    }
    _say(comm, f"  percolation: dead active fraction = {rep.dead_active_fraction:.3f}")
    return out, fields


def _write_mesh(folder: Path, tm: TaggedMesh, fields: dict[str, dolfinx.fem.Function]) -> None:
    with dolfinx.io.XDMFFile(tm.comm, str(folder / "mesh.xdmf"), "w") as f:
        f.write_mesh(tm.mesh)
        tm.mesh.topology.create_connectivity(1, 2)
        f.write_meshtags(tm.cell_tags, tm.mesh.geometry)
        f.write_meshtags(tm.facet_tags, tm.mesh.geometry)
    for name, u in fields.items():
        u.name = name
        if u.function_space.ufl_element().basix_element.discontinuous:
            # a potential that jumps at contacts (conduction.contact_resistance_ohm_cm2):
            # XDMF holds fields on the mesh's nodes only; VTX (ADIOS2) keeps the jumps
            with dolfinx.io.VTXWriter(tm.comm, str(folder / f"{name}.bp"), [u],
                                      engine="BP4") as w:
                w.write(0.0)
            continue
        with dolfinx.io.XDMFFile(tm.comm, str(folder / f"{name}.xdmf"), "w") as f:
            f.write_mesh(u.function_space.mesh)
            f.write_function(u)


def _write_cathode(sub: Path, tm: TaggedMesh, section: SectionMesh | None,
                   fields: dict[str, dolfinx.fem.Function]) -> None:
    """One cathode's folder: .msh and phase map (rank 0), XDMF mesh and fields (collective),
    field renders (serial runs: they need the whole field on one process)."""
    comm = tm.comm
    if comm.rank == 0:
        from cases.plots import render_field, render_phases

        assert section is not None
        sub.mkdir()
        write_msh(section, sub / "mesh.msh")
        render_phases(section, sub / "microstructure.png")
        if comm.size == 1:
            for name, u in fields.items():
                render_field(u, sub / f"{name}.png", name)
    comm.barrier()
    _write_mesh(sub, tm, fields)


def mesh_case(case: CaseSpec, out: Path, comm: MPI.Comm = MPI.COMM_WORLD) -> dict[str, Any]:
    """Build and write both meshes (XDMF with phase and facet tags, PNG)."""
    summary: dict[str, Any] = {}
    with atomic_result_dir(out, comm) as folder:
        for kind in KINDS:
            _say(comm, f"[{kind}] building the section mesh")
            tm, info, section = _build(comm, case, kind)
            _write_cathode(folder / kind, tm, section, {})
            summary[kind] = {"mesh": info}
        if comm.rank == 0:
            write_json(folder / "mesh_summary.json", {"phase_names": phase_names(), **summary})
    return summary


def run_study(case: CaseSpec, out: Path, comm: MPI.Comm = MPI.COMM_WORLD,
              petsc_options: dict[str, Any] | None = None,
              kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """The gradient-vs-homogeneous study; returns the summary written to summary.json."""
    t_start = time.perf_counter()
    summary: dict[str, Any] = {
        "case": case.name,
        "units": "lengths um, conductivities S/cm, currents A per cm of depth (2D), "
                 "dimensionless keys end in _fraction, _factor, _number, _ratio, _count or "
                 "_rel",
        "phase_names": phase_names(),
        "spec": spec_to_dict(case),
        "derived": {"gradient": asdict(derive_gradient(case.gradient)),
                    "homogeneous": asdict(derive_homogeneous(case.homogeneous))},
        "mpi_ranks_count": comm.size,
    }
    dg, dh = summary["derived"]["gradient"], summary["derived"]["homogeneous"]
    _say(comm, f"derived: gradient NW volume fraction {dg['nanowire_volume_fraction']:.3f} "
               f"(membrane), {dg['nanowire_volume_fraction_composite']:.3f} (below the skin); "
               f"tape-cast layer {dh['thickness_um']:.1f} um thick, volume fractions NW "
               f"{dh['nanowire_volume_fraction']:.3f}, rGO {dh['rgo_volume_fraction']:.3f}, "
               f"carbon black {dh['carbon_black_volume_fraction']:.3f}, SPE "
               f"{dh['spe_volume_fraction']:.3f}, void {dh['void_volume_fraction']:.3f}")
    with atomic_result_dir(out, comm) as folder:
        for kind in kinds:
            _say(comm, f"[{kind}] building the section mesh")
            tm, info, section = _build(comm, case, kind)
            _say(comm, f"[{kind}] {int(info['cells_count'])} cells, meshed in "
                       f"{info['geometry_time_s'] + info['mesh_time_s']:.1f} s; solving")
            t0 = time.perf_counter()
            numbers, fields = solve_section(
                tm, petsc_options,
                contact_resistance_ohm_cm2=case.conduction.contact_resistance_ohm_cm2,
                contact_groups=case.conduction.contact_groups())
            numbers["solve_time_s"] = time.perf_counter() - t0
            numbers["mesh"] = info
            summary[kind] = numbers
            _write_cathode(folder / kind, tm, section, fields)
        summary["total_time_s"] = time.perf_counter() - t_start
        if comm.rank == 0:
            from cases.plots import comparison_figure

            write_json(folder / "summary.json", summary)
            for kind in kinds:
                _write_profile_csv(folder / kind / "depth_profile.csv", summary[kind])
            if all(k in summary for k in KINDS):
                _write_csv(folder / "summary.csv", summary)
                comparison_figure(summary, folder / "comparison.png")
    return summary


def _write_profile_csv(path: Path, numbers: dict[str, Any]) -> None:
    prof = numbers["depth_profile"]
    keys = list(prof)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        w.writerows(zip(*(prof[k] for k in keys), strict=True))


def _write_csv(path: Path, summary: dict[str, Any]) -> None:
    rows = table_rows(summary)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["quantity", *KINDS])
        w.writerows(rows)


def table_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The gradient-vs-homogeneous table (quantity with unit, one column per cathode)."""
    def get(kind: str, *keys: str) -> Any:
        v: Any = summary[kind]
        for key in keys:
            v = v[key]
        return v

    spec = [
        ("electronic sigma_eff z [S/cm]", ("electronic", "z", "sigma_eff_S_cm")),
        ("electronic sigma_eff x [S/cm]", ("electronic", "x", "sigma_eff_S_cm")),
        ("electronic tortuosity factor z [-]", ("electronic", "z", "tortuosity_factor")),
        ("electronic tortuosity factor x [-]", ("electronic", "x", "tortuosity_factor")),
        ("ionic sigma_eff z [S/cm]", ("ionic", "z", "sigma_eff_S_cm")),
        ("ionic sigma_eff x [S/cm]", ("ionic", "x", "sigma_eff_S_cm")),
        ("ionic tortuosity factor z [-]", ("ionic", "z", "tortuosity_factor")),
        ("ionic tortuosity factor x [-]", ("ionic", "x", "tortuosity_factor")),
        ("ionic MacMullin number x [-]", ("ionic", "x", "macmullin_number")),
        ("surface conductance bottom/top [-]",
         ("surface_iv", "bottom_over_top_conductance_ratio")),
        ("nanowire connected to collector [-]",
         ("percolation", "nanowire_electronic_connected_fraction")),
        ("nanowire ion-accessible [-]", ("percolation", "nanowire_ion_accessible_fraction")),
        ("dead active fraction [-]", ("percolation", "dead_active_fraction")),
    ]
    return [[name] + [get(k, *keys) for k in KINDS] for name, keys in spec]

