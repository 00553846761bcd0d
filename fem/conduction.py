"""Steady conduction on a tagged mesh: effective conductivity, tortuosity, surface I-V.

PDE, on the cells of a conducting phase set that are connected to both electrodes:

    -div(sigma grad u) = 0,   u = 1 V on the high electrode, 0 on the low one,
    sigma grad u . n = 0 on every other boundary (insulating sides, non-conducting phases).

Only the connected backbone candidates are solved for (clusters touching both electrodes);
isolated clusters carry no current and would make the matrix singular (shared/notes, trap 7).
A structure with no such cluster is reported as non-percolating with zero current, never a
negative or "fixed" value. The current is the consistent (reaction) flux, the residual tested
with the electrode's basis functions, which balances to solver tolerance.

Units: lengths in um (mesh), sigma in S/cm, potentials in V. In 2D the current is per unit
depth: sum_i a(u, phi_i) has units S/cm x V = A/cm (A per cm of depth); in 3D it has units
S/cm x V x um = 1e-4 A and is converted to A. ``ConductionSolution.current_unit`` and
``measure_unit`` name the units of its currents and measures (um2 in 2D, um3 in 3D).

z (through the thickness) is the last coordinate: (x, z) in 2D, (x, y, z) in 3D.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mpi4py import MPI  # isort: split

import dolfinx
import dolfinx.fem.petsc
import numpy as np
import ufl
from petsc4py import PETSc

from fem.percolation import cell_components, components_touching, local_cell_sizes
from fem.periodic import PeriodicMap, check_periods
from meshes.adapter import TaggedMesh

__all__ = [
    "CONTACT_GAMG_OPTIONS",
    "ITERATIVE_PETSC_OPTIONS",
    "ConductionSolution",
    "ConductivityTensor",
    "EffectiveConductivity",
    "SurfaceIV",
    "cell_centroids",
    "conductivity_tensor",
    "effective_conductivity",
    "solve_conduction",
    "surface_iv",
]

Marker = Callable[[np.ndarray], np.ndarray]

log = logging.getLogger("cathodefem")

#: Default linear solver: sparse direct (MUMPS) is robust for the 1e4-1e9 conductivity
#: contrasts of these composites; override e.g. with {"ksp_type": "cg", "pc_type": "gamg"}.
DEFAULT_PETSC_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
    "ksp_error_if_not_converged": 1,
}


#: Conjugate gradients with smoothed-aggregation AMG: for the large 3D voxel meshes, where the
#: sparse LU does not scale (1e6 hexahedra: 2 min for six solves on 2 ranks against hours);
#: matches MUMPS to 4 digits or better on the RVEs of tests/test_rve.py.
ITERATIVE_PETSC_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "cg",
    "pc_type": "gamg",
    "ksp_rtol": 1e-10,
    "ksp_error_if_not_converged": 1,
}


#: What the contact solves add to a GAMG setup (unless the caller sets these keys): plain
#: (unsmoothed) aggregation on the graph without its weak edges. Smoothed aggregation's
#: coarse grids fill in on the block system of the contacts (measured on a 1 um tape-cast
#: box, 52 000 unknowns: 1 676 coarse rows with 246 nonzeros each, 890 MB; a 1.5 um box,
#: 124 000 cells, ran out of memory), while this setup solves the 1.5 um box in 93 CG
#: iterations and 8 s with 660 MB (MUMPS: 7.5 s, 1.3 GB; the same current to 8 digits).
CONTACT_GAMG_OPTIONS: dict[str, str | float | int] = {
    "pc_gamg_agg_nsmooths": 0,
    "pc_gamg_threshold": 0.01,
}


@dataclass(frozen=True)
class ConductionSolution:
    """One solve between two electrodes at 1 V."""

    percolates: bool
    current_high: float  # into the domain at the high electrode (per cm depth)
    current_low: float  # into the domain at the low electrode (negative)
    balance_rel: float  # |I_high + I_low| / |I_high|
    conducting_measure: float  # cells of the set in the window
    connected_measure: float  # cells of clusters touching both electrodes
    n_dofs: int
    solve_time_s: float
    potential: dolfinx.fem.Function | None  # on the connected submesh (None if not solved)
    current_unit: str = "A/cm"  # 2D: A per cm of depth; 3D: A
    #: "direct", "iterative", "direct (fallback)" after a failed iterative solve, or "none"
    #: (nothing to solve: no spanning cluster)
    linear_solver: str = "direct"
    measure_unit: str = "um2"  # 2D: um2; 3D: um3
    #: volume-averaged current density vector over the window (3D only; A/cm2), the column
    #: of the effective conductivity tensor for a unit potential gradient
    mean_current_density_A_cm2: tuple[float, ...] = ()


@dataclass(frozen=True)
class EffectiveConductivity:
    direction: str
    percolates: bool
    sigma_eff_S_cm: float
    volume_fraction: float  # of the conducting set in the measurement window
    connected_fraction: float  # of the set's area in clusters spanning both electrodes
    transport_factor: float  # sigma_eff / sigma_phase with unit phase conductivity (eps/tau)
    tortuosity_factor: float  # eps / transport_factor (inf when not percolating)
    macmullin_number: float  # 1 / transport_factor (inf when not percolating)
    balance_rel: float
    n_dofs: int
    solve_time_s: float
    solution: ConductionSolution


@dataclass(frozen=True)
class SurfaceIV:
    face: str
    conductance_S_per_cm: float  # I / V per cm of depth
    sheet_conductance_S: float  # conductance x probe gap / probe length (2D: per depth)
    percolates: bool
    voltage_V: np.ndarray
    current_A_per_cm: np.ndarray


def cell_centroids(msh: dolfinx.mesh.Mesh) -> np.ndarray:
    """Centroids of all local cells (owned + ghost), shape (n, gdim)."""
    x = msh.geometry.x
    return np.asarray(x[msh.geometry.dofmaps[0]].mean(axis=1)[:, : msh.geometry.dim])


def _owned_sum(msh: dolfinx.mesh.Mesh, values: np.ndarray) -> float:
    n = msh.topology.index_map(msh.topology.dim).size_local
    return float(msh.comm.allreduce(float(np.sum(values[:n])), op=MPI.SUM))


def _reason(ksp: Any) -> int:
    """The KSP's converged reason as an int (negative: diverged)."""
    return int(ksp.getConvergedReason())


def _solve_periodic(a: Any, space: dolfinx.fem.FunctionSpace, periods: Mapping[int, float],
                    tol: float, dirichlet: list[tuple[np.ndarray, float]],
                    options: Mapping[str, str | float | int], prefix: str
                    ) -> tuple[dolfinx.fem.Function, str]:
    """Solve a(u, v) = 0 with Dirichlet values on local dofs, periodic in ``periods``
    (:class:`fem.periodic.PeriodicMap`). Returns the solution and a failure message ("" when
    the solver converged)."""
    pmap = PeriodicMap.for_space(space, periods, tol)
    A = dolfinx.fem.petsc.assemble_matrix(dolfinx.fem.form(a))
    A.assemble()
    Ar = A.PtAP(pmap.P)
    xr, br = Ar.createVecRight(), Ar.createVecLeft()
    xr.set(0.0)
    br.set(0.0)
    rows_all = []
    n_own = pmap.n_owned
    for dofs, u_value in dirichlet:
        rows = pmap.reduced_rows(dofs[dofs < n_own])
        xr.setValues(rows, np.full(len(rows), u_value))
        rows_all.append(rows)
    xr.assemble()
    both = np.intersect1d(rows_all[0], rows_all[-1]) if len(rows_all) > 1 else rows_all[0][:0]
    if space.mesh.comm.allreduce(len(both), op=MPI.SUM):
        for obj in (Ar, A, xr, br):
            obj.destroy()
        pmap.destroy()
        raise ValueError(f"periodic axes {sorted(periods)}: the two electrodes are one "
                         f"periodic face (an electrode axis cannot be periodic)")
    rows = np.unique(np.concatenate(rows_all)).astype(PETSc.IntType)
    Ar.zeroRowsColumns(rows, diag=1.0, x=xr, b=br)
    ksp = PETSc.KSP().create(space.mesh.comm)
    ksp.setOperators(Ar)
    opts = PETSc.Options()
    full = pmap.P.createVecLeft()
    failure = ""
    try:
        for key, value in options.items():
            opts.setValue(f"{prefix}{key}", value)
        ksp.setOptionsPrefix(prefix)
        ksp.setFromOptions()
        try:
            ksp.solve(br, xr)
            if _reason(ksp) < 0:
                failure = f"converged reason {_reason(ksp)}"
        except PETSc.Error as e:
            failure = str(e).splitlines()[-1]
        uh = dolfinx.fem.Function(space)
        pmap.P.mult(xr, full)
        uh.x.array[:n_own] = full.array_r
        uh.x.scatter_forward()
    finally:
        for key in options:
            opts.delValue(f"{prefix}{key}")
        for obj in (ksp, Ar, A, xr, br, full):
            obj.destroy()
        pmap.destroy()
    return uh, failure


def _solve_linear(a: Any, rhs: Any, bcs: list[Any], options: Mapping[str, str | float | int],
                  solver_used: str, *, prefix: str = "cathodefem_conduction_",
                  entity_maps: list[Any] | None = None) -> tuple[Any, str]:
    """The non-periodic solve: DOLFINx's LinearProblem, with the direct-solver fallback.
    Block forms (lists) with ``entity_maps`` are solved as one ("mpi") matrix and give a
    list of functions. Returns the solution and the solver used."""
    blocks: dict[str, Any] = ({} if entity_maps is None
                              else {"kind": "mpi", "entity_maps": entity_maps})

    def attempt(opts: Mapping[str, str | float | int], pfx: str) -> tuple[Any, str]:
        problem = dolfinx.fem.petsc.LinearProblem(a, rhs, bcs=bcs, petsc_options=dict(opts),
                                                  petsc_options_prefix=pfx, **blocks)
        uh, failure = None, ""
        try:
            uh = problem.solve()
            # The converged reason is checked here as well: after one PETSc error in a
            # process, later solves no longer raise on ksp_error_if_not_converged (measured
            # with petsc4py 3.25: the reason is negative and nothing is raised).
            if _reason(problem.solver) < 0:
                failure = f"converged reason {_reason(problem.solver)}"
        except PETSc.Error as e:
            failure = str(e).splitlines()[-1]
        problem.solver.destroy()
        problem.A.destroy()
        problem.b.destroy()
        return uh, failure

    uh, failure = attempt(options, prefix)
    if failure and solver_used == "direct":
        raise RuntimeError(f"conduction: the direct solver failed ({failure})")
    if failure:
        # AMG fails on extreme contrasts (e.g. 1e11 with the polymer's electronic leakage:
        # "indefinite preconditioner"); the sparse direct solver does not. Collective: the
        # KSP's reason is the same on every rank.
        log.warning(f"conduction: the iterative solver failed ({failure}); solving again "
                    f"with the direct solver (MUMPS)")
        uh, failure = attempt(DEFAULT_PETSC_OPTIONS, prefix + "direct_")
        if failure:
            raise RuntimeError(f"conduction: the direct solver failed too ({failure})")
        solver_used = "direct (fallback)"
    return uh, solver_used


def solve_conduction(tm: TaggedMesh, sigma_S_cm: Mapping[int, float], high: Marker,
                     low: Marker, *, cells: np.ndarray | None = None,
                     petsc_options: Mapping[str, str | float | int] | None = None,
                     keep_solution: bool = False,
                     periodic: Mapping[int, float] | None = None,
                     contact_resistance_ohm_cm2: float = 0.0,
                     contact_groups: Sequence[Sequence[int]] | None = None
                     ) -> ConductionSolution:
    """Solve -div(sigma grad u) = 0 with u = 1 on facets satisfying ``high``, 0 on ``low``.

    ``sigma_S_cm`` maps phase tag -> conductivity; phases not in it do not conduct.
    ``cells`` optionally restricts the domain (bool per local cell, e.g. a depth window).
    ``periodic`` maps axis -> period L of a box mesh spanning [0, L] on that axis (matching
    nodes on the two faces, e.g. a periodic voxel image): u is periodic along those axes and
    clusters connect across them; the electrodes must not lie on a periodic axis's faces.
    Periodic solves take their PETSc options with the prefix ``cathodefem_periodic_``
    (``cathodefem_conduction_`` for the others).
    ``contact_resistance_ohm_cm2`` R_c > 0: every facet between two *different* phases of
    the set (facet tags ``ELECTRONIC_CONTACT`` and ``CATHODE_COLLECTOR`` for the electronic
    set) is a contact with an
    area-specific resistance R_c: u jumps there, and the current density through it is
    (u_1 - u_2) / R_c (one P1 space per phase, coupled by interface integrals; see
    :func:`_solve_with_contacts`). 0: perfect contacts (one continuous potential). Not with
    ``periodic`` (a contact across a periodic face is not an interior facet of the mesh).
    ``contact_groups``: phases that share one potential (perfect contacts among them), e.g.
    ``[[1], [2, 5, 7]]``: R_c only between the wires and the other conductors; a phase in
    no group is a group of its own (default: every phase).
    Collective on the mesh communicator.
    """
    t0 = time.perf_counter()
    msh = tm.mesh
    tdim, fdim = msh.topology.dim, msh.topology.dim - 1
    for p, s in sigma_S_cm.items():
        if not (s >= 0.0 and np.isfinite(s)):
            raise ValueError(f"conductivity of phase {p} = {s}: must be finite and >= 0 S/cm")
    number = (isinstance(contact_resistance_ohm_cm2, numbers.Real)
              and not isinstance(contact_resistance_ohm_cm2, bool))
    r_c = float(contact_resistance_ohm_cm2) if number else float("nan")
    if not (np.isfinite(r_c) and r_c >= 0.0):
        raise ValueError(f"contact_resistance_ohm_cm2 = {contact_resistance_ohm_cm2!r}: must "
                         f"be a finite number "
                         f">= 0 ohm cm2 (0: perfect contacts)")
    if r_c > 0.0 and periodic:
        raise ValueError(f"contact_resistance_ohm_cm2 = {r_c:g}: contact resistance needs "
                         f"insulating sides (a contact across a periodic face is not an "
                         f"interior facet of the mesh); use box.sides = 'insulating'")
    # A zero conductivity is the same as an absent phase (it would make the matrix singular).
    sigma_S_cm = {p: s for p, s in sigma_S_cm.items() if s > 0.0}
    in_set = np.isin(tm.phase, np.array(list(sigma_S_cm), dtype=np.int32))
    if cells is not None:
        in_set &= cells
    area = local_cell_sizes(msh)
    if periodic:
        check_periods(msh, periodic)
    comps = cell_components(msh, in_set.astype(np.int32), [1], periodic=periodic)
    f_high = dolfinx.mesh.locate_entities(msh, fdim, high)
    f_low = dolfinx.mesh.locate_entities(msh, fdim, low)
    for name, facets in (("high", f_high), ("low", f_low)):
        if msh.comm.allreduce(len(facets), op=MPI.SUM) == 0:
            raise ValueError(f"{name} electrode: no mesh facet lies on it (electrodes and "
                             f"windows must follow mesh lines, e.g. layer boundaries)")
    spanning = np.intersect1d(components_touching(msh, comps, f_high),
                              components_touching(msh, comps, f_low))
    active = np.isin(comps.labels, spanning) & (comps.labels >= 0)
    conducting_area = _owned_sum(msh, np.where(in_set, area, 0.0))
    connected_area = _owned_sum(msh, np.where(active, area, 0.0))
    units = ("A/cm", "um2") if tdim == 2 else ("A", "um3")
    # 3D: S/cm x V x um = 1e-4 A
    to_unit = 1.0 if tdim == 2 else 1e-4
    if len(spanning) == 0 or not sigma_S_cm:
        return ConductionSolution(
            False, 0.0, 0.0, 0.0, conducting_area, 0.0, 0, time.perf_counter() - t0, None,
            current_unit=units[0], measure_unit=units[1], linear_solver="none",
            mean_current_density_A_cm2=(0.0,) * tdim if tdim == 3 else ())

    options = dict(DEFAULT_PETSC_OPTIONS)
    if petsc_options and petsc_options.get("pc_type", "lu") != "lu":
        options.pop("pc_factor_mat_solver_type")  # no factorisation: the option is unused
    options.update(petsc_options or {})
    solver_used = "direct" if options.get("pc_type") == "lu" else "iterative"
    n_own = msh.topology.index_map(tdim).size_local
    phases = sorted(set().union(*msh.comm.allgather(
        set(np.unique(tm.phase[:n_own][active[:n_own]]).tolist()))))
    groups = _groups(phases, contact_groups)
    if r_c > 0.0 and len(groups) > 1:
        i_high, i_low, mean_j, n_dofs, uh, solver_used = _solve_with_contacts(
            tm, active, {p: sigma_S_cm[p] for p in phases}, groups, r_c, high, low, options,
            solver_used, keep_solution)
    else:
        i_high, i_low, mean_j, n_dofs, uh, solver_used = _solve_continuous(
            tm, active, sigma_S_cm, high, low, options, solver_used, periodic)
    i_high, i_low = to_unit * i_high, to_unit * i_low
    if tdim == 3:
        # <j> = -(1/V) int sigma grad u dV: S/cm x V / um x um3 / um3 = 1e4 A/cm2
        volume = _window_volume(tm, cells, area)
        mean_j = tuple(-1e4 * m / volume for m in mean_j)
    return ConductionSolution(
        percolates=True, current_high=i_high, current_low=i_low,
        balance_rel=abs(i_high + i_low) / max(abs(i_high), 1e-300),
        conducting_measure=conducting_area, connected_measure=connected_area,
        n_dofs=n_dofs, solve_time_s=time.perf_counter() - t0,
        potential=uh if keep_solution else None, current_unit=units[0], measure_unit=units[1],
        linear_solver=solver_used,
        mean_current_density_A_cm2=mean_j)


def _window_volume(tm: TaggedMesh, cells: np.ndarray | None, area: np.ndarray) -> float:
    """Volume that <j> averages over (um3): the window's, or without a window the box's
    (conducting or not: a mesh of the electronic voxels only does not fill its box; a window
    is assumed filled by the mesh)."""
    box_volume = tm.width_um * tm.depth_um * tm.thickness_um
    if cells is None and box_volume > 0.0:
        return box_volume
    return _owned_sum(tm.mesh, area if cells is None else np.where(cells, area, 0.0))


def _solve_continuous(tm: TaggedMesh, active: np.ndarray, sigma_S_cm: Mapping[int, float],
                      high: Marker, low: Marker, options: dict[str, str | float | int],
                      solver_used: str, periodic: Mapping[int, float] | None
                      ) -> tuple[float, float, tuple[float, ...], int, Any, str]:
    """One P1 potential on the connected cells (perfect contacts between phases). Returns
    the electrode currents and the integrals int sigma du/dx_k dx, in S/cm x V x um^(d-2)
    (unconverted), the global dof count, the potential and the solver used."""
    msh = tm.mesh
    tdim, fdim = msh.topology.dim, msh.topology.dim - 1
    sub, cell_map, _, _ = dolfinx.mesh.create_submesh(
        msh, tdim, np.nonzero(active)[0].astype(np.int32))
    n_sub = sub.topology.index_map(tdim).size_local + sub.topology.index_map(tdim).num_ghosts
    parent = cell_map.sub_topology_to_topology(np.arange(n_sub, dtype=np.int32), inverse=False)
    sigma_ref = max(sigma_S_cm.values())
    lookup = np.zeros(int(max(sigma_S_cm)) + 1)
    for p, s in sigma_S_cm.items():
        lookup[p] = s / sigma_ref  # scaled: the matrix entries stay O(1)
    q = dolfinx.fem.functionspace(sub, ("DG", 0))
    sigma = dolfinx.fem.Function(q)
    sigma.x.array[:] = lookup[tm.phase[parent]]

    v_space = dolfinx.fem.functionspace(sub, ("Lagrange", 1))
    sub.topology.create_connectivity(fdim, tdim)
    dofs_high = dolfinx.fem.locate_dofs_topological(
        v_space, fdim, dolfinx.mesh.locate_entities_boundary(sub, fdim, high))
    dofs_low = dolfinx.fem.locate_dofs_topological(
        v_space, fdim, dolfinx.mesh.locate_entities_boundary(sub, fdim, low))
    bcs = [dolfinx.fem.dirichletbc(1.0, dofs_high, v_space),
           dolfinx.fem.dirichletbc(0.0, dofs_low, v_space)]
    u, v = ufl.TrialFunction(v_space), ufl.TestFunction(v_space)
    a = sigma * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx
    zero = dolfinx.fem.Constant(sub, 0.0)
    rhs = zero * v * ufl.dx
    if periodic:
        tol = 1e-6 * max(periodic.values())
        dirichlet = [(dofs_high, 1.0), (dofs_low, 0.0)]
        uh, failure = _solve_periodic(a, v_space, periodic, tol, dirichlet, options,
                                      "cathodefem_periodic_")
        if failure and solver_used == "direct":
            raise RuntimeError(f"conduction: the direct solver failed ({failure})")
        if failure:
            log.warning(f"conduction: the iterative solver failed ({failure}); solving again "
                        f"with the direct solver (MUMPS)")
            uh, failure = _solve_periodic(a, v_space, periodic, tol, dirichlet,
                                          DEFAULT_PETSC_OPTIONS, "cathodefem_periodic_direct_")
            if failure:
                raise RuntimeError(f"conduction: the direct solver failed too ({failure})")
            solver_used = "direct (fallback)"
    else:
        uh, solver_used = _solve_linear(a, rhs, bcs, options, solver_used)
    assert isinstance(uh, dolfinx.fem.Function)

    # Reaction currents: residual of a(u, .) at the electrode dofs.
    residual = dolfinx.fem.assemble_vector(
        dolfinx.fem.form(sigma * ufl.inner(ufl.grad(uh), ufl.grad(v)) * ufl.dx))
    residual.scatter_reverse(dolfinx.la.InsertMode.add)
    n_owned = v_space.dofmap.index_map.size_local

    def current(dofs: np.ndarray) -> float:
        owned = dofs[dofs < n_owned]
        return sigma_ref * float(sub.comm.allreduce(
            float(residual.array[owned].sum()), op=MPI.SUM))

    mean_j: tuple[float, ...] = ()
    if tdim == 3:
        mean_j = tuple(
            sigma_ref * float(sub.comm.allreduce(dolfinx.fem.assemble_scalar(
                dolfinx.fem.form(sigma * uh.dx(k) * ufl.dx)), op=MPI.SUM))
            for k in range(3))
    n_dofs = v_space.dofmap.index_map.size_global
    return current(dofs_high), current(dofs_low), mean_j, n_dofs, uh, solver_used


def _groups(phases: list[int], contact_groups: Sequence[Sequence[int]] | None
            ) -> list[list[int]]:
    """The present phases grouped by ``contact_groups`` (see :func:`solve_conduction`),
    ordered by their smallest phase; ValueError (one line) for a phase in two groups."""
    seen: dict[int, int] = {}
    for i, group in enumerate(contact_groups or []):
        for p in group:
            if int(p) in seen and seen[int(p)] != i:
                raise ValueError(f"contact_groups = {contact_groups!r}: phase {p} is in two "
                                 f"groups")
            seen[int(p)] = i
    out: dict[object, list[int]] = {}
    for p in phases:
        out.setdefault(("group", seen[p]) if p in seen else ("phase", p), []).append(p)
    return sorted(out.values())


def _contact_facets(tm: TaggedMesh, active: np.ndarray, groups: list[list[int]]
                    ) -> dict[tuple[int, int], np.ndarray]:
    """Interior-facet integration entities (cell0, local facet0, cell1, local facet1) of the
    owned facets between two connected cells of different groups of phases, per group pair
    (a, b) with a < b, ordered so that cell0 ("+") is the group-a cell (the order DOLFINx
    gives is arbitrary and changes with the partition)."""
    msh = tm.mesh
    tdim, fdim = msh.topology.dim, msh.topology.dim - 1
    msh.topology.create_connectivity(fdim, tdim)
    msh.topology.create_connectivity(tdim, fdim)
    f2c = msh.topology.connectivity(fdim, tdim)
    n_facets = msh.topology.index_map(fdim).size_local
    offsets = f2c.offsets
    two = np.nonzero(np.diff(offsets[: n_facets + 1]) == 2)[0]
    c0 = f2c.array[offsets[two]]
    c1 = f2c.array[offsets[two] + 1]
    lookup = np.full(int(max(max(g) for g in groups)) + 1, -1)
    for i, group in enumerate(groups):
        lookup[group] = i
    group_of = np.where(active, lookup[np.minimum(tm.phase, len(lookup) - 1)], -1)
    keep = active[c0] & active[c1] & (group_of[c0] != group_of[c1])
    facets = two[keep].astype(np.int32)
    entities = np.asarray(dolfinx.fem.compute_integration_domains(
        dolfinx.fem.IntegralType.interior_facet, msh.topology, facets)).reshape(-1, 4).copy()
    g0, g1 = group_of[entities[:, 0]], group_of[entities[:, 2]]
    swap = g0 > g1
    entities[swap] = entities[swap][:, [2, 3, 0, 1]]
    g0, g1 = np.minimum(g0, g1), np.maximum(g0, g1)
    out = {}
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            out[(a, b)] = entities[(g0 == a) & (g1 == b)]
    return out


def _solve_with_contacts(tm: TaggedMesh, active: np.ndarray, sigma_S_cm: Mapping[int, float],
                         groups: list[list[int]], r_c: float, high: Marker, low: Marker,
                         options: dict[str, str | float | int], solver_used: str,
                         keep_solution: bool
                         ) -> tuple[float, float, tuple[float, ...], int, Any, str]:
    """Potential discontinuous at the contacts between groups of phases: one P1 space on
    the connected cells of each group g, with

        a(u, v) = sum_g int_g sigma grad u_g . grad v_g dx
                  + sum_(a,b) int_contacts (1/R_c) (u_a - u_b) (v_a - v_b) dS,

    every integral on the parent mesh with entity maps (shared/notes,
    dolfinx-0.11-multidomain.md). Returns what :func:`_solve_continuous` returns; the
    potential (``keep_solution``) is a DG1 field on the connected cells, exact copies of the
    per-phase P1 fields."""
    msh = tm.mesh
    tdim, fdim = msh.topology.dim, msh.topology.dim - 1
    sigma_ref = max(sigma_S_cm.values())
    itype = dolfinx.fem.IntegralType
    subs, maps, spaces, cell_sets = [], [], [], []
    group_cells = []
    for group in groups:
        cells_g = np.nonzero(active & np.isin(tm.phase, group))[0].astype(np.int32)
        group_cells.append(cells_g)
        sub_g, map_g, _, _ = dolfinx.mesh.create_submesh(msh, tdim, cells_g)
        sub_g.topology.create_connectivity(fdim, tdim)
        subs.append(sub_g)
        maps.append(map_g)
        spaces.append(dolfinx.fem.functionspace(sub_g, ("Lagrange", 1)))
        cell_sets.append(dolfinx.fem.compute_integration_domains(itype.cell, msh.topology,
                                                                 cells_g))
    contacts = _contact_facets(tm, active, groups)
    pair_ids = {pair: k for k, pair in enumerate(contacts)}
    dx = ufl.Measure("dx", domain=msh, subdomain_data=list(enumerate(cell_sets)),
                     metadata={"quadrature_degree": 2})
    dS = ufl.Measure("dS", domain=msh, subdomain_data=[
        (pair_ids[pair], ent.reshape(-1)) for pair, ent in contacts.items()],
        metadata={"quadrature_degree": 2})
    mixed = ufl.MixedFunctionSpace(*spaces)
    us, vs = ufl.TrialFunctions(mixed), ufl.TestFunctions(mixed)
    # S/cm for the bulk and 1/(ohm cm2) x 1e-4 cm/um for the contacts: both in S/cm per um
    # of facet measure, scaled by sigma_ref as the bulk is
    g = dolfinx.fem.Constant(msh, 1e-4 / (r_c * sigma_ref))
    lookup = np.zeros(int(max(sigma_S_cm)) + 1)
    for p, value in sigma_S_cm.items():
        lookup[p] = value / sigma_ref
    sig = dolfinx.fem.Function(dolfinx.fem.functionspace(msh, ("DG", 0)))
    n_local = len(tm.phase)
    sig.x.array[:n_local] = lookup[np.minimum(tm.phase, len(lookup) - 1)] * (
        tm.phase < len(lookup))
    sig.x.scatter_forward()
    n_blocks = len(groups)

    def bilinear(u: Any, v: Any) -> Any:
        form = sum(sig * ufl.inner(ufl.grad(u[i]), ufl.grad(v[i])) * dx(i)
                   for i in range(n_blocks))
        for (a, b), k in pair_ids.items():
            form += g * (u[a]("+") - u[b]("-")) * (v[a]("+") - v[b]("-")) * dS(k)
        return form

    a_blocks = ufl.extract_blocks(bilinear(us, vs))
    zero = dolfinx.fem.Constant(msh, 0.0)
    l_blocks = [zero * vs[i] * dx(i) for i in range(n_blocks)]
    bcs, electrode_dofs = [], []
    for space, sub_p in zip(spaces, subs, strict=True):
        both = tuple(dolfinx.fem.locate_dofs_topological(
            space, fdim, dolfinx.mesh.locate_entities_boundary(sub_p, fdim, marker))
            for marker in (high, low))
        electrode_dofs.append(both)
        bcs += [dolfinx.fem.dirichletbc(1.0, both[0], space),
                dolfinx.fem.dirichletbc(0.0, both[1], space)]

    if options.get("pc_type") == "gamg":
        options = {**CONTACT_GAMG_OPTIONS, **options}  # the caller's own keys win
    uh, solver_used = _solve_linear(a_blocks, l_blocks, bcs, options, solver_used,
                                    prefix="cathodefem_contacts_", entity_maps=maps)
    uh = list(uh)

    # Reaction currents: the residual a(u_h, .) of every block at its electrode dofs.
    residual = ufl.extract_blocks(bilinear(uh, vs))
    i_high = i_low = 0.0
    for i, space in enumerate(spaces):
        vec = dolfinx.fem.assemble_vector(dolfinx.fem.form(residual[i], entity_maps=maps))
        vec.scatter_reverse(dolfinx.la.InsertMode.add)
        n_owned = space.dofmap.index_map.size_local
        for k, dofs in enumerate(electrode_dofs[i]):
            value = float(vec.array[dofs[dofs < n_owned]].sum())
            if k == 0:
                i_high += value
            else:
                i_low += value
    i_high = sigma_ref * float(msh.comm.allreduce(i_high, op=MPI.SUM))
    i_low = sigma_ref * float(msh.comm.allreduce(i_low, op=MPI.SUM))
    mean_j: tuple[float, ...] = ()
    if tdim == 3:
        mean_j = tuple(
            sigma_ref * float(msh.comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(
                sum(sig * uh[i].dx(k) * dx(i) for i in range(n_blocks)),
                entity_maps=maps)), op=MPI.SUM))
            for k in range(3))
    n_dofs = sum(space.dofmap.index_map.size_global for space in spaces)
    potential = None
    if keep_solution:
        sub, cell_map, _, _ = dolfinx.mesh.create_submesh(
            msh, tdim, np.nonzero(active)[0].astype(np.int32))
        potential = dolfinx.fem.Function(dolfinx.fem.functionspace(sub, ("DG", 1)))
        for i, cells_g in enumerate(group_cells):
            in_sub = cell_map.sub_topology_to_topology(cells_g, inverse=True)
            in_g = maps[i].sub_topology_to_topology(cells_g, inverse=True)
            potential.interpolate(uh[i], cells0=in_g, cells1=in_sub)
        potential.x.scatter_forward()
    return i_high, i_low, mean_j, n_dofs, potential, solver_used


def _window(tm: TaggedMesh, z_window_um: tuple[float, float] | None) -> tuple[float, float]:
    return tm.composite_z_um if z_window_um is None else z_window_um


def effective_conductivity(tm: TaggedMesh, sigma_S_cm: Mapping[int, float], *,
                           direction: str = "z",
                           z_window_um: tuple[float, float] | None = None,
                           petsc_options: Mapping[str, str | float | int] | None = None,
                           keep_solution: bool = False,
                           contact_resistance_ohm_cm2: float = 0.0,
                           contact_groups: Sequence[Sequence[int]] | None = None
                           ) -> EffectiveConductivity:
    """Effective conductivity of the layer z in ``z_window_um`` (default: composite layer).

    ``direction`` "z": electrodes on the planes z = z0 and z = z1 (through-thickness);
    "x": electrodes on x = 0 and x = W, insulating top and bottom (in-plane).
    The transport factor eps/tau comes from a second solve with unit conductivity on every
    phase of the set and perfect contacts (skipped when the set has one conductivity value
    and ``contact_resistance_ohm_cm2`` is 0): a property of the geometry alone.
    ``contact_resistance_ohm_cm2``, ``contact_groups``: see :func:`solve_conduction`.
    """
    if direction not in ("x", "z"):
        raise ValueError(f"direction = {direction!r}: must be 'x' or 'z'")
    z0, z1 = _window(tm, z_window_um)
    if not (0.0 <= z0 < z1 <= tm.thickness_um + 1e-12):
        raise ValueError(f"z_window_um = {(z0, z1)}: must satisfy 0 <= z0 < z1 <= "
                         f"{tm.thickness_um:g}")
    tol = 1e-6 * tm.thickness_um
    zc = cell_centroids(tm.mesh)[:, 1]
    cells = (zc > z0) & (zc < z1)
    if direction == "z":
        length, width = z1 - z0, tm.width_um

        def high(x: np.ndarray) -> np.ndarray:
            return np.asarray(np.abs(x[1] - z1) < tol)

        def low(x: np.ndarray) -> np.ndarray:
            return np.asarray(np.abs(x[1] - z0) < tol)
    else:
        length, width = tm.width_um, z1 - z0

        def high(x: np.ndarray) -> np.ndarray:
            return np.asarray((np.abs(x[0] - tm.width_um) < tol) & (x[1] >= z0 - tol)
                              & (x[1] <= z1 + tol))

        def low(x: np.ndarray) -> np.ndarray:
            return np.asarray((np.abs(x[0]) < tol) & (x[1] >= z0 - tol) & (x[1] <= z1 + tol))

    sol = solve_conduction(tm, sigma_S_cm, high, low, cells=cells, petsc_options=petsc_options,
                           keep_solution=keep_solution,
                           contact_resistance_ohm_cm2=contact_resistance_ohm_cm2,
                           contact_groups=contact_groups)
    window_area = length * width
    eps = sol.conducting_measure / window_area
    connected = sol.connected_measure / sol.conducting_measure if sol.conducting_measure else 0.0
    if not sol.percolates:
        return EffectiveConductivity(direction, False, 0.0, eps, connected, 0.0, float("inf"),
                                     float("inf"), 0.0, 0, sol.solve_time_s, sol)
    sigma_eff = sol.current_high * length / width
    values = {s for s in sigma_S_cm.values() if s > 0.0}
    if len(values) == 1 and not contact_resistance_ohm_cm2:
        factor = sigma_eff / values.pop()
        t_solve = sol.solve_time_s
    else:
        unit = solve_conduction(tm, {p: 1.0 for p, s in sigma_S_cm.items() if s > 0.0}, high,
                                low, cells=cells,
                                petsc_options=petsc_options)
        factor = unit.current_high * length / width
        t_solve = sol.solve_time_s + unit.solve_time_s
    return EffectiveConductivity(
        direction=direction, percolates=True, sigma_eff_S_cm=sigma_eff, volume_fraction=eps,
        connected_fraction=connected, transport_factor=factor,
        tortuosity_factor=eps / factor, macmullin_number=1.0 / factor,
        balance_rel=sol.balance_rel, n_dofs=sol.n_dofs, solve_time_s=t_solve, solution=sol)


def surface_iv(tm: TaggedMesh, sigma_S_cm: Mapping[int, float], *, face: str,
               probe_length_um: float, probe_gap_um: float,
               voltages_V: np.ndarray | None = None,
               petsc_options: Mapping[str, str | float | int] | None = None) -> SurfaceIV:
    """Two-probe I-V on one face (paper Fig. 2f): two electrodes of ``probe_length_um`` on the
    face, ``probe_gap_um`` apart, centred; everything else insulating. The current follows
    whatever path the structure offers (through the skin into the wire network and back),
    which is what silver-paste probes on a membrane measure. The Al foil is excluded (the
    paper measured the freestanding membrane; for the tape-cast cathode, the cast layer).
    3D boxes: the probes are bands across the whole depth in y, and the conductance is given
    per cm of band length (S/cm), as the 2D section gives it per cm of depth. Contacts
    between phases are perfect here (the probes' path runs through the polymer's leakage,
    and a contact resistance of :func:`solve_conduction` would act between every two
    phases of the set, polymer/wire included)."""
    if face not in ("top", "bottom"):
        raise ValueError(f"face = {face!r}: must be 'top' or 'bottom'")
    if 2 * probe_length_um + probe_gap_um > tm.width_um:
        raise ValueError(f"probe_length_um, probe_gap_um = {probe_length_um}, {probe_gap_um}: "
                         f"2 x length + gap must be <= width {tm.width_um:g} um")
    z_face = tm.thickness_um if face == "top" else tm.composite_z_um[0]
    tol = 1e-6 * tm.thickness_um
    xm = 0.5 * tm.width_um
    a0, a1 = xm - 0.5 * probe_gap_um - probe_length_um, xm - 0.5 * probe_gap_um
    b0, b1 = xm + 0.5 * probe_gap_um, xm + 0.5 * probe_gap_um + probe_length_um

    z = tm.mesh.topology.dim - 1

    def probe(lo: float, hi: float) -> Marker:
        return lambda x: np.asarray((np.abs(x[z] - z_face) < tol) & (x[0] >= lo - tol)
                                    & (x[0] <= hi + tol))

    zc = cell_centroids(tm.mesh)[:, z]
    sol = solve_conduction(tm, sigma_S_cm, probe(a0, a1), probe(b0, b1),
                           cells=zc > tm.composite_z_um[0], petsc_options=petsc_options)
    # at 1 V; 3D: A per V per cm of band length (the bands span the depth)
    g = sol.current_high if z == 1 else sol.current_high / (tm.depth_um * 1e-4)
    volts = np.linspace(-1.0, 1.0, 11) if voltages_V is None else np.asarray(voltages_V)
    return SurfaceIV(face=face, conductance_S_per_cm=g,
                     sheet_conductance_S=g * probe_gap_um / probe_length_um * 1e-4,
                     percolates=sol.percolates, voltage_V=volts, current_A_per_cm=g * volts)


@dataclass(frozen=True)
class ConductivityTensor:
    """Apparent effective conductivity tensor of a 3D box from three solves.

    Column k: a unit potential drop between the faces normal to axis k (Dirichlet), every
    other face insulating, or (``periodic``) the other lateral axes periodic and top and
    bottom insulating; sigma[:, k] = -<j> L_k / (1 V), with <j> the current density
    averaged over the whole box. The diagonal equals I_k L_k / A_k (the electrode current)
    exactly; the off-diagonal entries are what insulating sides let through, so the tensor
    is symmetric only up to those boundary effects (``asymmetry`` reports it). Conducting
    clusters that do not touch both faces of a direction carry no current in it.
    """

    tensor_S_cm: np.ndarray  # (3, 3)
    percolates: tuple[bool, bool, bool]
    volume_fraction: float  # of the conducting phase set in the box
    #: sigma_kk / sigma_phase with unit conductivity on every phase of the set (eps / tau)
    transport_factor: tuple[float, float, float]
    tortuosity_factor: tuple[float, float, float]  # eps / transport factor (inf: no path)
    connected_fraction: tuple[float, float, float]  # of the set, spanning that direction
    balance_rel: float  # worst |I_high + I_low| / |I_high| over the solves
    asymmetry: float  # |S - S^T|_max / |S|_max (0 when no direction percolates)
    n_dofs: int
    solve_time_s: float


def conductivity_tensor(tm: TaggedMesh, sigma_S_cm: Mapping[int, float], *,
                        petsc_options: Mapping[str, str | float | int] | None = None,
                        periodic: bool = False,
                        contact_resistance_ohm_cm2: float = 0.0,
                        contact_groups: Sequence[Sequence[int]] | None = None
                        ) -> ConductivityTensor:
    """Full 3x3 effective conductivity of a 3D box mesh (x in [0, W], y in [0, D], z in
    [0, T]); see :class:`ConductivityTensor` for the boundary conditions. ``periodic``: the
    lateral directions x and y other than the driven one are periodic instead of insulating
    (the mesh must have matching nodes on opposite x and y faces, as a periodic voxel image
    has); top and bottom stay insulating when x or y is driven.
    ``contact_resistance_ohm_cm2``, ``contact_groups``: see :func:`solve_conduction` (not
    with ``periodic``);
    the transport and tortuosity factors stay those of the geometry (perfect contacts).
    Collective."""
    if tm.mesh.topology.dim != 3:
        raise ValueError("conductivity_tensor needs a 3D mesh (use effective_conductivity "
                         "for 2D sections)")
    lengths = (tm.width_um, tm.depth_um, tm.thickness_um)
    tol = 1e-6 * max(lengths)
    tensor = np.zeros((3, 3))
    perc, factor, connected = [], [], []
    balance, t_total, n_dofs = 0.0, 0.0, 0
    # phases present anywhere in the mesh: a set with one conductivity value among them needs
    # no unit-conductivity solves (the transport factor is sigma_kk / sigma)
    present = set(np.unique(np.concatenate(tm.comm.allgather(np.unique(tm.phase)))).tolist())
    values = {v for p, v in sigma_S_cm.items() if v > 0.0 and p in present}
    volume_fraction = 0.0
    for k in range(3):
        length = lengths[k]
        area = lengths[(k + 1) % 3] * lengths[(k + 2) % 3]

        def high(x: np.ndarray, k: int = k, length: float = length) -> np.ndarray:
            return np.asarray(np.abs(x[k] - length) < tol)

        def low(x: np.ndarray, k: int = k) -> np.ndarray:
            return np.asarray(np.abs(x[k]) < tol)

        periods = {j: lengths[j] for j in (0, 1) if j != k} if periodic else None
        sol = solve_conduction(tm, sigma_S_cm, high, low, petsc_options=petsc_options,
                               periodic=periods,
                               contact_resistance_ohm_cm2=contact_resistance_ohm_cm2,
                               contact_groups=contact_groups)
        t_total += sol.solve_time_s
        total_volume = lengths[0] * lengths[1] * lengths[2]
        volume_fraction = sol.conducting_measure / total_volume
        perc.append(sol.percolates)
        connected.append(sol.connected_measure / sol.conducting_measure
                         if sol.conducting_measure > 0 else 0.0)
        if not sol.percolates:
            factor.append(0.0)
            continue
        n_dofs = max(n_dofs, sol.n_dofs)
        balance = max(balance, sol.balance_rel)
        # <j> in A/cm2 times L in cm per 1 V: S/cm
        tensor[:, k] = -np.asarray(sol.mean_current_density_A_cm2) * length * 1e-4
        if len(values) == 1 and not contact_resistance_ohm_cm2:
            factor.append(tensor[k, k] / next(iter(values)))
        else:
            unit = solve_conduction(tm, {p: 1.0 for p, v in sigma_S_cm.items() if v > 0.0},
                                    high, low, petsc_options=petsc_options, periodic=periods)
            t_total += unit.solve_time_s
            # current in A for 1 S/cm and 1 V: I L / A is the transport factor in S/cm
            factor.append(unit.current_high * 1e4 * length / area)
    eps = volume_fraction
    tort = tuple(eps / f if f > 0 else float("inf") for f in factor)
    scale = float(np.abs(tensor).max())
    asym = float(np.abs(tensor - tensor.T).max()) / scale if scale > 0 else 0.0
    return ConductivityTensor(
        tensor_S_cm=tensor, percolates=(perc[0], perc[1], perc[2]), volume_fraction=eps,
        transport_factor=(factor[0], factor[1], factor[2]),
        tortuosity_factor=(tort[0], tort[1], tort[2]),
        connected_fraction=(connected[0], connected[1], connected[2]),
        balance_rel=balance, asymmetry=asym, n_dofs=n_dofs, solve_time_s=t_total)
