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
depth: sum_i a(u, phi_i) has units S/cm x V = A/cm (A per cm of depth).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mpi4py import MPI  # isort: split

import dolfinx
import dolfinx.fem.petsc
import numpy as np
import ufl

from fem.percolation import cell_components, components_touching
from meshes.adapter import TaggedMesh

__all__ = [
    "ConductionSolution",
    "EffectiveConductivity",
    "SurfaceIV",
    "cell_centroids",
    "effective_conductivity",
    "solve_conduction",
    "surface_iv",
]

Marker = Callable[[np.ndarray], np.ndarray]

#: Default linear solver: sparse direct (MUMPS) is robust for the 1e4-1e9 conductivity
#: contrasts of these composites; override e.g. with {"ksp_type": "cg", "pc_type": "gamg"}.
DEFAULT_PETSC_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
    "ksp_error_if_not_converged": 1,
}


@dataclass(frozen=True)
class ConductionSolution:
    """One solve between two electrodes at 1 V."""

    percolates: bool
    current_high_A_per_cm: float  # into the domain at the high electrode (per cm depth)
    current_low_A_per_cm: float  # into the domain at the low electrode (negative)
    balance_rel: float  # |I_high + I_low| / |I_high|
    conducting_area_um2: float  # cells of the set in the window
    connected_area_um2: float  # cells of clusters touching both electrodes
    n_dofs: int
    solve_time_s: float
    potential: dolfinx.fem.Function | None  # on the connected submesh (None if not solved)


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


def _cell_areas(msh: dolfinx.mesh.Mesh) -> np.ndarray:
    p = msh.geometry.x[msh.geometry.dofmaps[0]]
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return np.asarray(0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]))


def _owned_sum(msh: dolfinx.mesh.Mesh, values: np.ndarray) -> float:
    n = msh.topology.index_map(msh.topology.dim).size_local
    return float(msh.comm.allreduce(float(np.sum(values[:n])), op=MPI.SUM))


def solve_conduction(tm: TaggedMesh, sigma_S_cm: Mapping[int, float], high: Marker,
                     low: Marker, *, cells: np.ndarray | None = None,
                     petsc_options: Mapping[str, str | float | int] | None = None,
                     keep_solution: bool = False) -> ConductionSolution:
    """Solve -div(sigma grad u) = 0 with u = 1 on facets satisfying ``high``, 0 on ``low``.

    ``sigma_S_cm`` maps phase tag -> conductivity; phases not in it do not conduct.
    ``cells`` optionally restricts the domain (bool per local cell, e.g. a depth window).
    Collective on the mesh communicator.
    """
    t0 = time.perf_counter()
    msh = tm.mesh
    tdim, fdim = msh.topology.dim, msh.topology.dim - 1
    for p, s in sigma_S_cm.items():
        if not (s >= 0.0 and np.isfinite(s)):
            raise ValueError(f"conductivity of phase {p} = {s}: must be finite and >= 0 S/cm")
    # A zero conductivity is the same as an absent phase (it would make the matrix singular).
    sigma_S_cm = {p: s for p, s in sigma_S_cm.items() if s > 0.0}
    in_set = np.isin(tm.phase, np.array(list(sigma_S_cm), dtype=np.int32))
    if cells is not None:
        in_set &= cells
    area = _cell_areas(msh)
    comps = cell_components(msh, in_set.astype(np.int32), [1])
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
    if len(spanning) == 0 or not sigma_S_cm:
        return ConductionSolution(False, 0.0, 0.0, 0.0, conducting_area, 0.0, 0,
                                  time.perf_counter() - t0, None)

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
    options = dict(DEFAULT_PETSC_OPTIONS)
    options.update(petsc_options or {})
    problem = dolfinx.fem.petsc.LinearProblem(a, rhs, bcs=bcs, petsc_options=options,
                                              petsc_options_prefix="cathodefem_conduction_")
    uh = problem.solve()
    assert isinstance(uh, dolfinx.fem.Function)

    # Reaction currents: residual of a(u, .) at the electrode dofs.
    residual = dolfinx.fem.assemble_vector(
        dolfinx.fem.form(sigma * ufl.inner(ufl.grad(uh), ufl.grad(v)) * ufl.dx))
    residual.scatter_reverse(dolfinx.la.InsertMode.add)
    n_owned = v_space.dofmap.index_map.size_local

    def current(dofs: np.ndarray) -> float:
        owned = dofs[dofs < n_owned]
        return sigma_ref * float(sub.comm.allreduce(float(residual.array[owned].sum()),
                                                    op=MPI.SUM))

    i_high, i_low = current(dofs_high), current(dofs_low)
    n_dofs = v_space.dofmap.index_map.size_global
    problem.solver.destroy()
    problem.A.destroy()
    problem.b.destroy()
    return ConductionSolution(
        percolates=True, current_high_A_per_cm=i_high, current_low_A_per_cm=i_low,
        balance_rel=abs(i_high + i_low) / max(abs(i_high), 1e-300),
        conducting_area_um2=conducting_area, connected_area_um2=connected_area,
        n_dofs=n_dofs, solve_time_s=time.perf_counter() - t0,
        potential=uh if keep_solution else None)


def _window(tm: TaggedMesh, z_window_um: tuple[float, float] | None) -> tuple[float, float]:
    return tm.composite_z_um if z_window_um is None else z_window_um


def effective_conductivity(tm: TaggedMesh, sigma_S_cm: Mapping[int, float], *,
                           direction: str = "z",
                           z_window_um: tuple[float, float] | None = None,
                           petsc_options: Mapping[str, str | float | int] | None = None,
                           keep_solution: bool = False) -> EffectiveConductivity:
    """Effective conductivity of the layer z in ``z_window_um`` (default: composite layer).

    ``direction`` "z": electrodes on the planes z = z0 and z = z1 (through-thickness);
    "x": electrodes on x = 0 and x = W, insulating top and bottom (in-plane).
    The transport factor eps/tau comes from a second solve with unit conductivity on every
    phase of the set (skipped when the set has one conductivity value).
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
                           keep_solution=keep_solution)
    window_area = length * width
    eps = sol.conducting_area_um2 / window_area
    connected = sol.connected_area_um2 / sol.conducting_area_um2 if sol.conducting_area_um2 else 0.0
    if not sol.percolates:
        return EffectiveConductivity(direction, False, 0.0, eps, connected, 0.0, float("inf"),
                                     float("inf"), 0.0, 0, sol.solve_time_s, sol)
    sigma_eff = sol.current_high_A_per_cm * length / width
    values = {s for s in sigma_S_cm.values() if s > 0.0}
    if len(values) == 1:
        factor = sigma_eff / values.pop()
        t_solve = sol.solve_time_s
    else:
        unit = solve_conduction(tm, {p: 1.0 for p, s in sigma_S_cm.items() if s > 0.0}, high,
                                low, cells=cells,
                                petsc_options=petsc_options)
        factor = unit.current_high_A_per_cm * length / width
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
    paper measured the freestanding membrane; for the tape-cast cathode, the cast layer)."""
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

    def probe(lo: float, hi: float) -> Marker:
        return lambda x: np.asarray((np.abs(x[1] - z_face) < tol) & (x[0] >= lo - tol)
                                    & (x[0] <= hi + tol))

    zc = cell_centroids(tm.mesh)[:, 1]
    sol = solve_conduction(tm, sigma_S_cm, probe(a0, a1), probe(b0, b1),
                           cells=zc > tm.composite_z_um[0], petsc_options=petsc_options)
    g = sol.current_high_A_per_cm  # at 1 V
    volts = np.linspace(-1.0, 1.0, 11) if voltages_V is None else np.asarray(voltages_V)
    return SurfaceIV(face=face, conductance_S_per_cm=g,
                     sheet_conductance_S=g * probe_gap_um / probe_length_um * 1e-4,
                     percolates=sol.percolates, voltage_V=volts, current_A_per_cm=g * volts)
