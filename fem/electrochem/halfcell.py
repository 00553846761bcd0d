"""Microstructure-resolved half cell: H2V3O8 wires, electronic network, polymer electrolyte,
Li metal counter electrode. Fields jump at the active/electrolyte interface.

Unknowns (shared/MODEL.md section 3), each on the submesh of the phases that carry it:

* ``c_s`` (mol/m3), Li in the active phase (tag 1);
* ``phi_s`` (V), electronic potential in the electronic phases (1, 2, 5, 7) connected to the
  current collector or to a reacting interface;
* ``c_e`` (mol/m3) and ``phi_e`` (V), salt and electrolyte potential in the ionic phases (3, 6)
  connected to the Li anode or to a reacting interface;
* the Li anode potential ``phi_a`` (V), one global scalar.

The current collector (the bottom face where it touches an electronic phase) is grounded:
``phi_s = 0``; the cell voltage is ``V = -phi_a``.

``electronic="ideal"`` is the equipotential-network limit: every electronic phase that touches
a reacting interface is held at the collector potential, as if connected to it by a perfect
conductor. A 2D section needs it to say anything about ion transport, because wires that are
connected in 3D appear as isolated islands in the section plane (see the README); the
``"resolved"`` mode keeps only the in-plane (or, on 3D meshes, the real) connectivity.

The Li anode is the top face of the ionic phases (Butler-Volmer, Li metal at ``phi_a``).
Galvanostatic control adds the constraint "anode current = applied current"; the Newton step
solves the bordered system ``[J B; G h] [du; dphi_a] = -[R; g]`` by block elimination on one
factorisation (or preconditioner) of J: one solve per iteration, plus one for ``J^-1 B``
each time J is assembled (J and B are lagged together).

Every integral is written on the parent mesh with entity maps (shared/notes,
dolfinx-0.11-multidomain.md); interface facets are ordered so that ``"+"`` is the active cell.
Units: :class:`fem.electrochem.parameters.ModelUnits` (um, s, mol/m3, V, A/m2).

Time stepping is backward Euler; :mod:`fem.electrochem.protocol` chooses the steps.

``periodic`` (a laterally periodic box, e.g. a voxel column with ``box.sides = "periodic"``):
all four fields are periodic in x and y. Each Newton system is solved for the periodic dofs,
``P^T J P du_r = -P^T R`` and ``du = P du_r`` (:class:`fem.periodic.PeriodicMap`, one block
per field), and clusters connect across the periodic faces. The periodic faces are not
interior facets of the mesh, so an active cell and an electrolyte cell that meet only across
them exchange no current: that part of the interface (about one voxel plane in n of the
x- and y-facing interface of an n-voxel-wide column; 5-6 % of all interface facets on a
10-voxel column) is left out, counted in ``seam_interface_facets_count`` and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mpi4py import MPI  # isort: split

import dolfinx
import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.la.petsc
import dolfinx.mesh
import numpy as np
import ufl
from petsc4py import PETSc as _PETSc

from fem.electrochem.parameters import FARADAY_C_MOL, CellParameters, ModelUnits
from fem.percolation import cell_components, components_touching, seam_pairs_count
from fem.periodic import PeriodicMap, check_periods
from meshes.adapter import TaggedMesh
from meshes.tags import ELECTRONIC_PHASES, IONIC_PHASES, Facet, Phase
from meshes.voxels import NORMAL_FLOOR

__all__ = ["HalfCell", "NewtonFailure", "StepReport"]

# The dolfinx/petsc4py stubs do not describe the blocked (list-of-forms) calls used here.
PETSc: Any = _PETSc
fem_petsc: Any = dolfinx.fem.petsc
la_petsc: Any = dolfinx.la.petsc

_ACTIVE, _ELECTRONIC, _IONIC = 1, 2, 3  # integration-domain ids (cells)
_CATHODE_POLYMER = 4  # the ionic cells of the cathode's own polymer (not the separator)
_GAMMA, _ANODE = 1, 2  # integration-domain ids (facets)
_GAMMA_CONNECTED = 3  # the interface facets through which current can flow

#: Newton gives up (and the time step is cut) after this many consecutive iterations whose
#: update had to be capped (0.2 V for potentials, 0.2 c_max or c0 for concentrations). A
#: change of the cell voltage by 2 V (a current switched on at the open-circuit voltage)
#: takes 10 capped iterations; in the collapse of a 3D column at a limiting current the
#: capped iterations go on with updates of 10-20 V until the iteration limit.
MAX_DAMPED_ITERATIONS = 12

DEFAULT_PETSC_OPTIONS: dict[str, str] = {
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}


#: Krylov solver for large (3D) cells: FGMRES with a multiplicative block Gauss-Seidel
#: preconditioner over the concentrations (c_s, c_e) and the potentials (phi_s, phi_e), each
#: block approximated by one GAMG V-cycle with SOR smoothing. With exact block solves the
#: outer iteration takes about 5 iterations (the coupling between the blocks is mild);
#: on 3D voxel meshes the GAMG cycles keep the count flat under refinement
#: (``python benchmarks/bench_echem.py --refinement``). On 2D sections with thin coatings
#: (anisotropic triangles) GAMG is weaker, and MUMPS is faster there at any size we run.
ITERATIVE_PETSC_OPTIONS: dict[str, str] = {
    "ksp_type": "fgmres",
    # Newton's own tolerance (on the update and the charge balance) sets the accuracy: with
    # 1e-6 the voltages of a 3D discharge are those of 1e-8 to 1e-13 V, in 21 % fewer
    # Krylov iterations.
    "ksp_rtol": "1e-6",
    "ksp_atol": "0",
    "ksp_max_it": "400",
    "ksp_gmres_restart": "100",
    "pc_type": "fieldsplit",
    "pc_fieldsplit_type": "multiplicative",
    **{f"fieldsplit_{b}_{k}": v for b in ("c", "phi") for k, v in {
        "ksp_type": "preonly", "pc_type": "gamg", "pc_gamg_aggressive_coarsening": "2",
        "mg_levels_ksp_type": "richardson", "mg_levels_pc_type": "sor"}.items()},
    # Two aggressive levels keep the Galerkin products of the 27-point hexahedral stencils
    # sparse (the setup dominated with one: 205 s of 300 s at 312 k unknowns).
    # The potentials jump 1e8 in conductivity (Al foil, carbon, wires): dropping the weak
    # couplings keeps the aggregates inside one phase (with 0 the resolved tape-cast box
    # does not converge in 400 iterations). The concentrations coarsen faster without it.
    "fieldsplit_c_pc_gamg_threshold": "0.0",
    "fieldsplit_phi_pc_gamg_threshold": "0.05",
}

#: The splits of ``pc_type = fieldsplit`` (option ``fieldsplit_fields``, read by the model and
#: not passed to PETSc): ``name=field+field,...`` over c_s, phi_s, c_e, phi_e.
DEFAULT_SPLITS = "c=c_s+c_e,phi=phi_s+phi_e"


def _parse_splits(text: str) -> list[tuple[str, list[str]]]:
    fields = {"c_s", "phi_s", "c_e", "phi_e"}
    out: list[tuple[str, list[str]]] = []
    for item in text.split(","):
        name, sep, members = item.partition("=")
        parts = members.split("+")
        if not sep or not name.strip() or not set(parts) <= fields:
            raise ValueError(f"fieldsplit_fields = {text!r}: expected name=field+field,... "
                             f"over {sorted(fields)}")
        out.append((name.strip(), parts))
    used = [m for _, parts in out for m in parts]
    if sorted(used) != sorted(fields):
        raise ValueError(f"fieldsplit_fields = {text!r}: every field once, of {sorted(fields)}")
    return out


class NewtonFailure(RuntimeError):
    """Newton did not converge in a step (the state is left at the start of the step)."""


@dataclass(frozen=True)
class StepReport:
    newton_iterations: int
    linear_solves: int
    seconds: float
    jacobian_assemblies: int = 0


def _local_cells(msh: dolfinx.mesh.Mesh) -> int:
    im = msh.topology.index_map(msh.topology.dim)
    return im.size_local + im.num_ghosts


def _facets_of_cells(msh: dolfinx.mesh.Mesh, facets: np.ndarray, cells_mask: np.ndarray
                     ) -> np.ndarray:
    """The facets in ``facets`` adjacent to at least one cell in ``cells_mask``."""
    tdim = msh.topology.dim
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    keep = [f for f in facets if cells_mask[f2c.links(f)].any()]
    return np.asarray(keep, dtype=np.int32)


class HalfCell:
    """The coupled model on one tagged mesh; holds the state of the current time level."""

    _instances = 0

    def __init__(self, tm: TaggedMesh, params: CellParameters, *,
                 petsc_options: dict[str, str] | None = None,
                 quadrature_degree: int = 4, electronic: str = "resolved",
                 extra_residual: Callable[[HalfCell, list[Any]], list[Any]] | None = None,
                 extra_exterior_facets: dict[int, np.ndarray] | None = None,
                 periodic: Mapping[int, float] | None = None) -> None:
        if electronic not in ("resolved", "ideal"):
            raise ValueError(f"electronic = {electronic!r}: must be 'resolved' or 'ideal'")
        self.electronic_mode = electronic_mode = electronic
        self.quadrature_degree = quadrature_degree
        self.tm = tm
        self.params = params
        #: ``extra_residual(cell, tests)`` returns one UFL form (or None) per block to add to
        #: the residual: source terms of manufactured solutions, user extensions
        self._extra_residual = extra_residual
        msh = tm.mesh
        self.comm: MPI.Comm = msh.comm
        tdim, fdim = msh.topology.dim, msh.topology.dim - 1
        msh.topology.create_connectivity(fdim, tdim)
        msh.topology.create_connectivity(tdim, fdim)
        phase = tm.phase
        n_local = _local_cells(msh)
        cond = params.conductivities
        sigma_S_cm = cond.electronic()  # phase -> S/cm (no polymer leakage)
        ftags = tm.facet_tags
        gamma_all = ftags.find(int(Facet.ACTIVE_ELECTROLYTE))
        bottom = ftags.find(int(Facet.BOTTOM))
        top = ftags.find(int(Facet.TOP))

        # --- which cells carry which field ---------------------------------------------
        elec_cells = np.isin(phase, [p for p in ELECTRONIC_PHASES if int(p) in sigma_S_cm])
        ionic = np.isin(phase, IONIC_PHASES)
        active = phase == int(Phase.NANOWIRE)
        collector = _facets_of_cells(msh, bottom, elec_cells)
        anode = _facets_of_cells(msh, top, ionic)
        n_collector = self.comm.allreduce(len(collector), op=MPI.SUM)
        if electronic_mode == "resolved" and n_collector == 0:
            raise ValueError("current collector: no electronic phase touches the bottom face")
        if self.comm.allreduce(len(anode), op=MPI.SUM) == 0:
            raise ValueError("Li anode: no ionic phase touches the top face")
        # Conducting islands with neither a Dirichlet face nor a reacting interface would
        # make the matrix singular (shared/notes trap 7): keep only the useful components.
        #: axis -> period of a laterally periodic box (None: insulating sides)
        self.periodic = dict(periodic) if periodic else None
        if self.periodic:
            check_periods(msh, self.periodic)
            if tdim - 1 in self.periodic:
                raise ValueError(f"periodic axis {tdim - 1}: the collector and the anode "
                                 f"faces are normal to it; only lateral axes can be periodic")
        comps_e = cell_components(msh, elec_cells.astype(np.int32), [1], self.periodic)
        keep_e = np.union1d(components_touching(msh, comps_e, collector),
                            components_touching(msh, comps_e, gamma_all))
        comps_i = cell_components(msh, ionic.astype(np.int32), [1], self.periodic)
        #: wire/electrolyte facet pairs across the periodic faces: an interface on the torus
        #: that is not a mesh facet, so it does not react (reported, 0 without periodicity)
        self.seam_interface_facets_count = (
            seam_pairs_count(msh, phase, self.periodic, [int(Phase.NANOWIRE)],
                             [int(p) for p in IONIC_PHASES]) if self.periodic else 0)
        keep_i = np.union1d(components_touching(msh, comps_i, anode),
                            components_touching(msh, comps_i, gamma_all))
        elec_cells = elec_cells & np.isin(comps_e.labels, keep_e)
        ionic = ionic & np.isin(comps_i.labels, keep_i)
        # Interface facets that can pass a net current: electrolyte side connected to the
        # anode, solid side connected to the collector (any electronic phase when ideal).
        to_anode = components_touching(msh, comps_i, anode)
        to_collector = (keep_e if electronic_mode == "ideal"
                        else components_touching(msh, comps_e, collector))
        self._to_anode, self._to_collector = to_anode, to_collector
        self._comps = (comps_e, comps_i)
        # Active particles (wires, or wire sections in 2D): facet-connected active cells.
        self.particles = cell_components(msh, phase, [int(Phase.NANOWIRE)], self.periodic)
        labels = self.particles.labels
        is_active = labels >= 0
        self.particle_connected = np.zeros(self.particles.num_components, dtype=bool)
        mine = np.unique(labels[is_active & np.isin(comps_e.labels, to_collector)])
        for part in self.comm.allgather(mine):
            self.particle_connected[part] = True
        self.cells = {"active": active, "electronic": elec_cells, "ionic": ionic}
        self.removed_cells = {
            "electronic": int(self._owned_count(np.isin(phase, list(sigma_S_cm)) & ~elec_cells)),
            "ionic": int(self._owned_count(np.isin(phase, IONIC_PHASES) & ~ionic)),
        }

        # --- submeshes and spaces --------------------------------------------------------
        def sub(mask: np.ndarray) -> tuple[dolfinx.mesh.Mesh, Any]:
            s, emap, _, _ = dolfinx.mesh.create_submesh(
                msh, tdim, np.nonzero(mask)[0].astype(np.int32))
            return s, emap

        if self.comm.allreduce(int(active.sum()), op=MPI.SUM) == 0:
            raise ValueError("mesh has no active (nanowire) cells")
        self.sub_a, map_a = sub(active)
        self.sub_e, map_e = sub(elec_cells)
        self.sub_i, map_i = sub(ionic)
        self.entity_maps = [map_a, map_e, map_i]
        v_cs = dolfinx.fem.functionspace(self.sub_a, ("Lagrange", 1))
        v_ps = dolfinx.fem.functionspace(self.sub_e, ("Lagrange", 1))
        v_ce = dolfinx.fem.functionspace(self.sub_i, ("Lagrange", 1))
        v_pe = dolfinx.fem.functionspace(self.sub_i, ("Lagrange", 1))
        self.spaces = [v_cs, v_ps, v_ce, v_pe]
        self.c_s = dolfinx.fem.Function(v_cs, name="c_s_mol_m3")
        self.phi_s = dolfinx.fem.Function(v_ps, name="phi_s_V")
        self.c_e = dolfinx.fem.Function(v_ce, name="c_e_mol_m3")
        self.phi_e = dolfinx.fem.Function(v_pe, name="phi_e_V")
        self.u = [self.c_s, self.phi_s, self.c_e, self.phi_e]
        self.c_s_old = dolfinx.fem.Function(v_cs)
        self.c_e_old = dolfinx.fem.Function(v_ce)
        self.phi_a: Any = dolfinx.fem.Constant(msh, 0.0)
        self.dt: Any = dolfinx.fem.Constant(msh, 1.0)
        #: magnitude of the last nonzero applied current (model units): the scale below which
        #: a current counts as zero in the overpotential breakdown
        self.applied_scale = 1.0

        # --- phase-wise coefficients on the parent mesh (DG0) ----------------------------
        q0 = dolfinx.fem.functionspace(msh, ("DG", 0))

        def per_phase(values: dict[int, float]) -> dolfinx.fem.Function:
            f = dolfinx.fem.Function(q0)
            lookup = np.zeros(16)
            for p, v in values.items():
                lookup[int(p)] = v
            f.x.array[:n_local] = lookup[phase[:n_local]]
            f.x.scatter_forward()
            return f

        units = ModelUnits
        e_spe, e_sep = params.spe, params.separator
        a_spe, a_sep = params.arrhenius(e_spe), params.arrhenius(e_sep)
        self.sigma = per_phase({p: units.conductivity(s) for p, s in sigma_S_cm.items()})
        self.kappa = per_phase({
            Phase.SPE: units.conductivity(e_spe.conductivity.value * a_spe),
            Phase.SEPARATOR: units.conductivity(e_sep.conductivity.value * a_sep)})
        self.d_e = per_phase({
            Phase.SPE: units.diffusivity(e_spe.diffusivity.value * a_spe),
            Phase.SEPARATOR: units.diffusivity(e_sep.diffusivity.value * a_sep)})
        self.t_plus = per_phase({Phase.SPE: e_spe.transference.value,
                                 Phase.SEPARATOR: e_sep.transference.value})
        self.thermo = per_phase({Phase.SPE: e_spe.thermodynamic_factor.value,
                                 Phase.SEPARATOR: e_sep.thermodynamic_factor.value})

        # --- reacting surface of voxel meshes ---------------------------------------------
        #: weight of the interface facets: the cosine between a facet's normal and the
        #: estimated normal of the wire surface (meshes.voxels.surface_normals), so that the
        #: staircase of voxel faces reacts through the area of the surface it stands for;
        #: 1 on meshes without ``tm.surface_normals`` (conforming meshes, 2D sections, and
        #: voxel meshes whose faces are to be taken as they are)
        self.area_weight: Any = dolfinx.fem.Constant(msh, 1.0)
        if tm.surface_normals is not None:
            if tm.surface_normals.shape != (n_local, tdim):
                raise ValueError(f"surface_normals: shape {tm.surface_normals.shape}, expected "
                                 f"({n_local}, {tdim}) (one vector per local cell)")
            wraps = sorted(self.periodic or {}) == [0, 1]
            if wraps != tm.surface_normals_periodic or (self.periodic and not wraps):
                said = "wrapped" if tm.surface_normals_periodic else "did not wrap"
                raise ValueError(
                    f"periodic = {sorted(self.periodic or {})}: the mesh's surface normals "
                    f"{said} the image in x and y (distribute_voxels(periodic=...)); the half "
                    f"cell must be periodic in both x and y exactly when they did (a cell "
                    f"periodic in one direction only cannot weight its surface)")
            qv = dolfinx.fem.functionspace(msh, ("DG", 0, (tdim,)))
            normal = dolfinx.fem.Function(qv, name="surface_normal")
            dofs = qv.dofmap.list[:n_local, 0]
            for k in range(tdim):
                normal.x.array[dofs * tdim + k] = tm.surface_normals[:, k]
            normal.x.scatter_forward()
            mean = 0.5 * (normal("+") + normal("-"))
            size = ufl.sqrt(ufl.dot(mean, mean))
            self.area_weight = ufl.conditional(
                ufl.gt(size, NORMAL_FLOOR),
                abs(ufl.dot(mean, ufl.FacetNormal(msh)("+"))) / ufl.max_value(size, NORMAL_FLOOR),
                1.0)

        # --- integration domains -----------------------------------------------------------
        itype = dolfinx.fem.IntegralType
        topo = msh.topology

        def cell_domain(mask: np.ndarray) -> np.ndarray:
            return dolfinx.fem.compute_integration_domains(
                itype.cell, topo, np.nonzero(mask)[0].astype(np.int32))

        gamma_all = gamma_all.astype(np.int32)
        gamma = dolfinx.fem.compute_integration_domains(itype.interior_facet, topo, gamma_all)
        gamma = np.asarray(gamma).reshape(-1, 4).copy()
        # "+" must be the active cell (trap 1: the order is arbitrary and partition-dependent).
        swap = phase[gamma[:, 0]] != int(Phase.NANOWIRE)
        gamma[swap] = gamma[swap][:, [2, 3, 0, 1]]
        if not (np.all(phase[gamma[:, 0]] == int(Phase.NANOWIRE))
                and np.all(np.isin(phase[gamma[:, 2]], IONIC_PHASES))):
            raise RuntimeError("interface facets must separate an active and an ionic cell")
        comps_e, comps_i = self._comps
        live = (np.isin(comps_e.labels[gamma[:, 0]], self._to_collector)
                & np.isin(comps_i.labels[gamma[:, 2]], self._to_anode))
        #: interface facets through which current can flow between collector and anode
        self.connected_interface_facets_count = int(self.comm.allreduce(int(live.sum()),
                                                                        op=MPI.SUM))
        anode_entities = dolfinx.fem.compute_integration_domains(
            itype.exterior_facet, topo, anode)
        q_md = {"quadrature_degree": quadrature_degree}
        self.dx = ufl.Measure("dx", domain=msh, subdomain_data=[
            (_ACTIVE, cell_domain(active)), (_ELECTRONIC, cell_domain(elec_cells)),
            (_IONIC, cell_domain(ionic)),
            (_CATHODE_POLYMER, cell_domain(ionic & (phase == int(Phase.SPE))))],
            metadata={"quadrature_degree": 2})
        self.dS = ufl.Measure("dS", domain=msh, subdomain_data=[
            (_GAMMA, gamma.reshape(-1)), (_GAMMA_CONNECTED, gamma[live].reshape(-1))],
            metadata=q_md)
        # Extra exterior-facet domains (ids other than the anode's) for extra_residual terms.
        ext = [(_ANODE, anode_entities)]
        for tag, facets in (extra_exterior_facets or {}).items():
            if tag == _ANODE:
                raise ValueError(f"extra_exterior_facets: id {_ANODE} is the anode's")
            ext.append((tag, dolfinx.fem.compute_integration_domains(
                itype.exterior_facet, topo, np.asarray(facets, dtype=np.int32))))
        self.ds = ufl.Measure("ds", domain=msh, subdomain_data=ext, metadata=q_md)
        self.interface_facets_count = int(self.comm.allreduce(len(gamma), op=MPI.SUM))

        # --- collector: phi_s = 0 ------------------------------------------------------------
        self.sub_e.topology.create_connectivity(fdim, tdim)
        zero_z = 1e-7 * max(tm.width_um, tm.thickness_um)
        coll_sub = dolfinx.mesh.locate_entities_boundary(
            self.sub_e, fdim, lambda x: np.abs(x[tdim - 1]) < zero_z)
        self.bc_dofs = dolfinx.fem.locate_dofs_topological(v_ps, fdim, coll_sub)
        if self.electronic_mode == "ideal":
            im = v_ps.dofmap.index_map
            self.bc_dofs = np.arange(im.size_local + im.num_ghosts, dtype=np.int32)
        self.bcs = [dolfinx.fem.dirichletbc(0.0, self.bc_dofs, v_ps)]

        self._build_forms()
        self._build_solver(petsc_options)

    # ----------------------------------------------------------------------------------------
    def _owned_count(self, mask: np.ndarray) -> int:
        n = self.tm.mesh.topology.index_map(self.tm.mesh.topology.dim).size_local
        return int(self.comm.allreduce(int(mask[:n].sum()), op=MPI.SUM))

    def _kinetics(self) -> tuple[Any, Any, Any]:
        """Interface current i_n (A/m2, solid -> electrolyte), anode current i_a
        (A/m2, Li metal -> electrolyte) and di_a/dphi_a, as UFL expressions."""
        p = self.params
        f = 1.0 / p.thermal_voltage_V
        aa, ac = p.alpha_anodic.value, p.alpha_cathodic.value
        c_max = p.c_max_mol_m3
        c0 = p.salt_concentration.value
        theta = self.c_s("+") / c_max
        th = ufl.max_value(ufl.min_value(theta, 1 - 1e-9), 1e-9)
        # Smooth positive part of c_e (floor ~1e-3 c0): where the salt is depleted, P1
        # undershoots below 0 at nodes, and sqrt(c_e) would have an infinite derivative.
        delta = 1e-3 * c0

        def positive(c):
            return 0.5 * (c + ufl.sqrt(c * c + delta * delta))

        self._positive = positive
        ce_g = positive(self.c_e("-"))
        i0 = (p.exchange_current_cathode.value * (ce_g / c0) ** aa
              * th ** ac * (1 - th) ** aa / 0.5 ** (aa + ac))
        eta = self.phi_s("+") - self.phi_e("-") - p.ocv.ufl(theta)
        i_n = i0 * (ufl.exp(aa * f * eta) - ufl.exp(-ac * f * eta))
        pa = ufl.variable(self.phi_a)
        ce_a = positive(self.c_e)
        i0_a = p.exchange_current_anode.value * (ce_a / c0) ** 0.5
        eta_a = pa - self.phi_e
        i_a = i0_a * (ufl.exp(0.5 * f * eta_a) - ufl.exp(-0.5 * f * eta_a))
        self._eta, self._eta_a, self._u_surface = eta, eta_a, p.ocv.ufl(theta)
        return i_n, i_a, ufl.diff(i_a, pa)

    def _build_forms(self) -> None:
        p = self.params
        fm = ModelUnits.faraday
        dx, dS, ds = self.dx, self.dS, self.ds
        c_s, phi_s, c_e, phi_e = self.u
        w, v, q, psi = (ufl.TestFunction(s) for s in self.spaces)
        d_s = ModelUnits.diffusivity(p.solid_diffusivity.value)
        i_n, i_a, di_a = self._kinetics()
        self.i_n, self.i_a = i_n, i_a
        # current per facet area: i_n per surface area times the facet's area weight
        i_n = self.area_weight * i_n
        tp = self.t_plus
        kappa_d = (2 * self.kappa * p.thermal_voltage_V * (1 - tp) * self.thermo)
        dt = self.dt
        # Where the salt is depleted, P1 can undershoot below 0 at nodes next to a steep
        # front; the kinetics and the diffusion potential use the smooth positive part of c_e
        # (relative change 2.5e-7 at c0, 2.5e-5 at 0.1 c0: negligible unless depleted).
        f_cs = ((c_s - self.c_s_old) / dt * w * dx(_ACTIVE)
                + d_s * ufl.inner(ufl.grad(c_s), ufl.grad(w)) * dx(_ACTIVE)
                + i_n / fm * w("+") * dS(_GAMMA))
        f_ps = (self.sigma * ufl.inner(ufl.grad(phi_s), ufl.grad(v)) * dx(_ELECTRONIC)
                + i_n * v("+") * dS(_GAMMA))
        f_ce = ((c_e - self.c_e_old) / dt * q * dx(_IONIC)
                + self.d_e * ufl.inner(ufl.grad(c_e), ufl.grad(q)) * dx(_IONIC)
                - (1 - tp("-")) * i_n / fm * q("-") * dS(_GAMMA)
                - (1 - tp) * i_a / fm * q * ds(_ANODE))
        f_pe = (self.kappa * ufl.inner(ufl.grad(phi_e), ufl.grad(psi)) * dx(_IONIC)
                - kappa_d / self._positive(c_e)
                * ufl.inner(ufl.grad(c_e), ufl.grad(psi)) * dx(_IONIC)
                - i_n * psi("-") * dS(_GAMMA)
                - i_a * psi * ds(_ANODE))
        residual = [f_cs, f_ps, f_ce, f_pe]
        if self._extra_residual is not None:
            extra = self._extra_residual(self, [w, v, q, psi])
            residual = [r if e is None else r + e for r, e in zip(residual, extra, strict=True)]
        jac_ufl: Any = dolfinx.fem.forms.derivative_block(residual, self.u)
        jac = [[None if (b is None or b.empty()) else b for b in row] for row in jac_ufl]
        zero = dolfinx.fem.Constant(self.tm.mesh, 0.0)
        border = [zero * w * dx(_ACTIVE), zero * v * dx(_ELECTRONIC),
                  -(1 - tp) * di_a / fm * q * ds(_ANODE), -di_a * psi * ds(_ANODE)]
        g = i_a * ds(_ANODE)
        g_vec = [zero * w * dx(_ACTIVE), zero * v * dx(_ELECTRONIC),
                 ufl.derivative(g, c_e, q), ufl.derivative(g, phi_e, psi)]
        em = self.entity_maps

        def form(f):
            return dolfinx.fem.form(f, entity_maps=em)

        self.F = [form(f) for f in residual]
        self.J = [[None if b is None else form(b) for b in row] for row in jac]
        self.B = [form(f) for f in border]
        self.G = [form(f) for f in g_vec]
        self.g = form(g)
        self.h = form(di_a * ds(_ANODE))
        self.interface_current_form = form(i_n * dS(_GAMMA))
        self.inventory_s_form = form(c_s * dx(_ACTIVE))
        self.inventory_e_form = form(c_e * dx(_IONIC))
        self.active_volume_form = form(dolfinx.fem.Constant(self.tm.mesh, 1.0) * dx(_ACTIVE))
        self.cathode_polymer_volume_form = form(
            dolfinx.fem.Constant(self.tm.mesh, 1.0) * dx(_CATHODE_POLYMER))
        self.anode_area_form = form(dolfinx.fem.Constant(self.tm.mesh, 1.0) * ds(_ANODE))
        #: area (um2; um per um of depth in 2D) of the interface facets connected to both the
        #: collector and the anode, each weighted by area_weight (1 without normals)
        self.connected_interface_area_form = form(self.area_weight * dS(_GAMMA_CONNECTED))
        # Overpotential breakdown: current-weighted interface and anode averages.
        ln_ce_i = ufl.ln(self._positive(c_e("-")))
        ln_ce_a = ufl.ln(self._positive(c_e))
        q0 = dolfinx.fem.functionspace(self.tm.mesh, ("DG", 0))
        v0 = ufl.TestFunction(q0)
        self._cell_li_form = form(c_s * v0 * dx(_ACTIVE))
        self._cell_vol_form = form(dolfinx.fem.Constant(self.tm.mesh, 1.0) * v0 * dx(_ACTIVE))
        self.breakdown_forms = {
            "i": self.interface_current_form,  # the compiled forms above, not compiled again
            "u": form(i_n * self._u_surface * dS(_GAMMA)),
            "eta": form(i_n * self._eta * dS(_GAMMA)),
            "phi_s": form(i_n * phi_s("+") * dS(_GAMMA)),
            "phi_e": form(i_n * phi_e("-") * dS(_GAMMA)),
            "ln_ce": form(i_n * ln_ce_i * dS(_GAMMA)),
            "ia": self.g,
            "phi_e_a": form(i_a * phi_e * ds(_ANODE)),
            "eta_a": form(i_a * self._eta_a * ds(_ANODE)),
            "ln_ce_a": form(i_a * ln_ce_a * ds(_ANODE)),
        }

    def _build_solver(self, petsc_options: dict[str, str] | None) -> None:
        petsc = fem_petsc
        self.A = petsc.create_matrix(self.J, kind="mpi")
        self.x = petsc.create_vector(self.spaces, kind="mpi")
        self.b = petsc.create_vector(self.spaces, kind="mpi")
        self.vb = petsc.create_vector(self.spaces, kind="mpi")
        self.vg = petsc.create_vector(self.spaces, kind="mpi")
        self.w1 = petsc.create_vector(self.spaces, kind="mpi")
        self.w2 = petsc.create_vector(self.spaces, kind="mpi")
        self._blocks: Any = self.b.getAttr("_blocks")
        # Laterally periodic box: the Newton systems are solved for the periodic dofs,
        # P^T J P du_r = -P^T F, du = P du_r (fem/periodic.py).
        self._pmap: PeriodicMap | None = None
        self._Ar: PETSc.Mat | None = None
        if self.periodic:
            tol = 1e-6 * max(self.periodic.values())
            self._pmap = PeriodicMap.for_blocks(self.spaces, self.periodic, tol)
            self._xr = self._pmap.P.createVecRight()
            self._br = self._pmap.P.createVecRight()
        self.ksp = PETSc.KSP().create(self.comm)
        # A prefix per instance: options stay in the database until the solver is set up
        # (fieldsplit reads its sub-solver options then), without leaking into other cells.
        HalfCell._instances += 1
        prefix = f"cathodefem_halfcell{HalfCell._instances}_"
        self.ksp.setOptionsPrefix(prefix)
        opts = PETSc.Options()
        # The direct-solver defaults apply unless the user chooses the solver.
        user = dict(petsc_options or {})
        options = {} if ("ksp_type" in user or "pc_type" in user) else dict(DEFAULT_PETSC_OPTIONS)
        options.update(user)
        self._splits = options.pop("fieldsplit_fields", DEFAULT_SPLITS)
        self.petsc_options = options
        for k, val in options.items():
            opts[f"{prefix}{k}"] = val
        self._options_to_clear = [f"{prefix}{k}" for k in options]
        self.ksp.setFromOptions()
        if options.get("pc_type") == "fieldsplit":
            # Splits as index sets of the monolithic vector, so that block preconditioners
            # can be composed from the options alone: by default the concentrations
            # (c_s, c_e) and the potentials (phi_s, phi_e), named "c" and "phi".
            start = self.b.getOwnershipRange()[0]
            off = self._blocks[0]
            fields = ("c_s", "phi_s", "c_e", "phi_e")
            sets = []
            for name, members in _parse_splits(self._splits):
                idx = np.concatenate([
                    np.arange(start + off[j], start + off[j + 1], dtype=PETSc.IntType)
                    for j in (fields.index(m) for m in members)])
                if self._pmap is not None:  # the periodic dofs of those fields
                    local = idx - start
                    idx = self._pmap.reduced_of_owned[local[~self._pmap.is_slave[local]]]
                    idx = idx.astype(PETSc.IntType)
                sets.append((name, PETSc.IS().createGeneral(idx, comm=self.comm)))
            self.ksp.getPC().setFieldSplitIS(*sets)
        if self._pmap is None:
            self.ksp.setOperators(self.A)
        self.linear_solves = 0
        self.linear_iterations = 0  # Krylov iterations (0 with the direct solver)
        self.linear_iterations_max = 0  # most Krylov iterations of one solve
        self.jacobian_assemblies = 0
        #: wall time (s, this rank) in Jacobian assembly, residual assembly and linear
        #: solves (with the preconditioner setup: LU factorisation, GAMG hierarchy)
        self.timing_s = {"jacobian_assembly": 0.0, "residual_assembly": 0.0,
                         "linear_solve": 0.0}
        self._jacobian_fresh = False  # True while A is the factorised Jacobian to reuse
        self._border_fresh = False  # True while w2 = A^-1 B belongs to that Jacobian
        self._active_volume: float | None = None
        self._history: Any = None  # (snapshot, dt, control) of the last accepted step
        self._pending: Any = None  # the same for the step being solved

    # --- state ------------------------------------------------------------------------------
    def set_equilibrium(self, theta: float) -> None:
        """Uniform state at rest: c_s = theta c_max, c_e = c0, phi_s = 0,
        phi_e = phi_a = -U(theta)."""
        if not (0.0 < theta < 1.0):
            raise ValueError(f"theta = {theta}: initial lithiation fraction must be in (0, 1)")
        p = self.params
        u0 = float(p.ocv(theta))
        self.c_s.x.array[:] = theta * p.c_max_mol_m3
        self.phi_s.x.array[:] = 0.0
        self.c_e.x.array[:] = p.salt_concentration.value
        self.phi_e.x.array[:] = -u0
        self.phi_a.value = -u0
        self.forget_history()
        self.accept()

    def accept(self) -> None:
        """Make the present state the old time level."""
        self.c_s_old.x.array[:] = self.c_s.x.array
        self.c_e_old.x.array[:] = self.c_e.x.array
        # Keep the previous level for the predictor of the next step (same control only).
        self._history = self._pending
        self._pending = None

    def forget_history(self) -> None:
        """Drop the lagged Jacobian and the predictor history: the next step starts from
        the present state alone (after a checkpoint, a restart or a change of state)."""
        self._jacobian_fresh = False
        self._history = None
        self._pending = None

    def snapshot(self) -> tuple[list[np.ndarray], float]:
        return [f.x.array.copy() for f in self.u], float(self.phi_a.value)

    def restore(self, snap: tuple[list[np.ndarray], float]) -> None:
        arrays, pa = snap
        for f, a in zip(self.u, arrays, strict=True):
            f.x.array[:] = a
        self.phi_a.value = pa

    # --- Newton -----------------------------------------------------------------------------
    def _scaled_update(self, du: PETSc.Vec) -> float:
        """max over blocks of |du| / scale (c_s: c_max, c_e: c0, potentials: 1 V)."""
        p = self.params
        scales = [p.c_max_mol_m3, 1.0, p.salt_concentration.value, 1.0]
        off = self._blocks[0]
        arr = du.getArray(readonly=True)
        worst = 0.0
        for k, s in enumerate(scales):
            part = arr[off[k]:off[k + 1]]
            if part.size:
                worst = max(worst, float(np.max(np.abs(part))) / s)
        return float(self.comm.allreduce(worst, op=MPI.MAX))

    def _assemble_residual(self) -> None:
        """F(u) into ``b``, with ``b = u - 0`` on the collector rows. The Dirichlet value
        is 0 and the iterate holds it, so the lifting of dolfinx's generic residual
        (a product with the Jacobian columns, a third of the assembly time) is zero."""
        t0 = time.perf_counter()
        la_petsc._zero_vector(self.b)
        self.b.setAttr("_blocks", self._blocks)
        fem_petsc.assemble_vector(self.b, self.F)
        la_petsc._ghost_update(self.b, PETSc.InsertMode.ADD, PETSc.ScatterMode.REVERSE)
        fem_petsc.set_bc(self.b, [self.bcs if k == 1 else [] for k in range(4)], self.x, -1.0)
        la_petsc._ghost_update(self.b, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)
        self.timing_s["residual_assembly"] += time.perf_counter() - t0

    def _assemble_vec(self, vec: PETSc.Vec, forms: list) -> None:
        la_petsc._zero_vector(vec)
        vec.setAttr("_blocks", self._blocks)
        fem_petsc.assemble_vector(vec, forms)
        la_petsc._ghost_update(vec, PETSc.InsertMode.ADD, PETSc.ScatterMode.REVERSE)
        fem_petsc.set_bc(vec, [self.bcs if k == 1 else [] for k in range(4)])

    @property
    def can_pass_current(self) -> bool:
        """False when no reacting interface is connected to both the collector and the anode
        (then any nonzero current is impossible: the cell is blocked)."""
        return self.connected_interface_facets_count > 0

    def solve_step(self, dt_s: float, *, current: float | None = None,
                   voltage_V: float | None = None, max_iterations: int = 25,
                   tolerance: float = 1e-10, balance_tolerance: float = 1e-10) -> StepReport:
        """One backward-Euler step of ``dt_s`` seconds from the old time level.

        Exactly one of ``current`` (model units: integral of A/m2 over um^2, positive in
        discharge) and ``voltage_V`` (cell voltage) is given. Raises :class:`NewtonFailure`
        with the state restored on divergence, NaN or too many iterations.

        Newton with a lagged Jacobian: the factorisation of the last assembled Jacobian is
        reused (also across time steps) while the updates contract by at least 4x per
        iteration; otherwise the Jacobian is reassembled at the present iterate. Converged
        when the scaled update (c_s / c_max, c_e / c0, potentials in V) is below
        ``tolerance`` after a contracting iteration and the charge balance (anode current +
        interface current) is below ``balance_tolerance`` times the applied current.
        """
        if (current is None) == (voltage_V is None):
            raise ValueError("give exactly one of current and voltage_V")
        t0 = time.perf_counter()
        self.dt.value = dt_s
        snap = self.snapshot()
        control = ("current", current) if current is not None else ("voltage", voltage_V)
        if current is not None and current != 0.0:
            self.applied_scale = abs(current)
        history = self._history
        # Predict by linear extrapolation from the last two levels when both were computed
        # under this same control (never across a jump of the current or voltage).
        smooth = history is not None and history[2] == control
        self._pending = (snap, dt_s, control, smooth)
        if smooth and history[3]:
            (prev_arrays, prev_pa), dt_prev = history[0], history[1]
            r = min(dt_s / dt_prev, 2.0)
            for f, a0, a1 in zip(self.u, prev_arrays, snap[0], strict=True):
                f.x.array[:] = a1 + r * (a1 - a0)
            self.phi_a.value = snap[1] + r * (snap[1] - prev_pa)
            try:
                return self._newton(snap, t0, current, voltage_V, max_iterations, tolerance,
                                    balance_tolerance)
            except NewtonFailure:
                self._pending = (snap, dt_s, control, smooth)  # retry from the old level
        return self._newton(snap, t0, current, voltage_V, max_iterations, tolerance,
                            balance_tolerance)

    def _newton(self, snap: tuple[list[np.ndarray], float], t0: float, current: float | None,
                voltage_V: float | None, max_iterations: int, tolerance: float,
                balance_tolerance: float) -> StepReport:
        if voltage_V is not None:
            self.phi_a.value = -voltage_V
        petsc = fem_petsc
        solves0, assemblies0 = self.linear_solves, self.jacobian_assemblies
        previous = np.inf
        damped = 0  # consecutive iterations whose update was capped
        for it in range(1, max_iterations + 1):
            petsc.assign(self.u, self.x)
            la_petsc._ghost_update(self.x, PETSc.InsertMode.INSERT,
                                   PETSc.ScatterMode.FORWARD)
            self._assemble_residual()
            if not self._jacobian_fresh:
                t_jac = time.perf_counter()
                petsc.assemble_jacobian(None, self.x, self.A, None, self.u, self.J, None,
                                        self.bcs)
                if self._pmap is None:
                    self.ksp.setOperators(self.A)
                else:
                    self._Ar = (self.A.PtAP(self._pmap.P) if self._Ar is None
                                else self.A.PtAP(self._pmap.P, result=self._Ar))
                    self.ksp.setOperators(self._Ar)
                self.timing_s["jacobian_assembly"] += time.perf_counter() - t_jac
                self.jacobian_assemblies += 1
                self._jacobian_fresh = True
                self._border_fresh = False
                previous = np.inf
            self._linear_solve(self.b, self.w1)
            self._clear_options()
            if not self._linear_ok():
                self._fail(snap, f"linear solver failed ({self.ksp.getConvergedReason()})")
            du = self.w1
            du.scale(-1.0)
            d_pa = 0.0
            if current is not None:
                # w2 = J^-1 B is lagged with the Jacobian: solved once per assembly (J and
                # the border B then belong to the same state), not once per iteration.
                if not self._border_fresh:
                    self._assemble_vec(self.vb, self.B)
                    self._linear_solve(self.vb, self.w2)
                    if not self._linear_ok():
                        self._fail(snap, "linear solver failed "
                                         f"({self.ksp.getConvergedReason()})")
                    self._border_fresh = True
                self._assemble_vec(self.vg, self.G)
                g = self.comm.allreduce(dolfinx.fem.assemble_scalar(self.g), op=MPI.SUM)
                h = self.comm.allreduce(dolfinx.fem.assemble_scalar(self.h), op=MPI.SUM)
                # R + J du + B dpa = 0 and g - I + G.du + h dpa = 0, with du = -w1 - dpa w2
                g_w1 = -self.vg.dot(du)  # G . w1
                g_w2 = self.vg.dot(self.w2)
                d_pa = (g_w1 - (g - current)) / (h - g_w2)
                du.axpy(-d_pa, self.w2)
            if not (np.isfinite(du.norm()) and np.isfinite(d_pa)):
                self._fail(snap, f"non-finite Newton update at iteration {it}")
            # Limit changes to 0.2 V (and 0.2 c_max) per iteration: exponential kinetics
            # overshoot. (No positivity limiter: where the salt is depleted the P1 solution
            # itself undershoots below 0 at nodes; the kinetics and the diffusion potential
            # use floored concentrations, so such iterates are harmless.)
            step = max(self._scaled_update(du), abs(d_pa))
            damp = min(1.0, 0.2 / max(step, 1e-300))
            damped = damped + 1 if damp < 1.0 else 0
            if damped > MAX_DAMPED_ITERATIONS:
                # Still taking capped steps: this iterate is not near a solution (seen when
                # the voltage collapses at a limiting current), and a shorter time step is
                # cheaper than the remaining iterations.
                self._fail(snap, f"Newton stagnated: {damped} damped iterations in a row "
                                 f"(updates of {step:.3g} capped to 0.2)")
            self.x.axpy(damp, du)
            petsc.assign(self.x, self.u)
            for f in self.u:
                f.x.scatter_forward()
            self.phi_a.value = float(self.phi_a.value) + damp * d_pa
            contracting = step < 0.25 * previous
            if (damp == 1.0 and step < tolerance and (contracting or step == 0.0)
                    and self._balanced(balance_tolerance)):
                return StepReport(it, self.linear_solves - solves0,
                                  time.perf_counter() - t0,
                                  self.jacobian_assemblies - assemblies0)
            if not contracting or damp < 1.0:
                self._jacobian_fresh = False  # reassemble at the next iterate
            previous = step
        self._fail(snap, f"Newton did not converge in {max_iterations} iterations")
        raise AssertionError  # unreachable (for type checkers)

    def _linear_solve(self, rhs: PETSc.Vec, out: PETSc.Vec) -> None:
        """out = J^-1 rhs with the present Jacobian; on a periodic box for the periodic dofs
        (rhs restricted by P^T, the solution prolongated by P)."""
        t0 = time.perf_counter()
        if self._pmap is None:
            self.ksp.solve(rhs, out)
        else:
            self._pmap.P.multTranspose(rhs, self._br)
            self.ksp.solve(self._br, self._xr)
            self._pmap.P.mult(self._xr, out)
        self.timing_s["linear_solve"] += time.perf_counter() - t0

    def free(self) -> None:
        """Release the solver's options and destroy its PETSc objects (Jacobian, vectors,
        KSP, the periodic prolongation and reduced Jacobian). Call it when the cell is done:
        an ensemble builds one cell per seed and cathode. The fields stay readable."""
        self.release_solver_options()
        objs = [self.ksp, self.A, self.x, self.b, self.vb, self.vg, self.w1, self.w2]
        if self._pmap is not None:
            objs += [self._xr, self._br]
            self._pmap.destroy()
        if self._Ar is not None:
            objs.append(self._Ar)
        for obj in objs:
            obj.destroy()

    def release_solver_options(self) -> None:
        """Remove this cell's solver options from the PETSc database. Call it when the cell
        is done: a cell that never solved (no path for current) would otherwise leave them
        unused, and PETSc lists unused options at exit."""
        self._clear_options()

    def _clear_options(self) -> None:
        """Remove this instance's options from the PETSc database once the solver (and any
        sub-solvers) have been set up by the first solve."""
        if self._options_to_clear:
            opts = PETSc.Options()
            for name in self._options_to_clear:
                opts.delValue(name)
            self._options_to_clear = []

    def _linear_ok(self) -> bool:
        self.linear_solves += 1
        its = self.ksp.getIterationNumber()
        self.linear_iterations += its
        self.linear_iterations_max = max(self.linear_iterations_max, its)
        return bool(self.ksp.getConvergedReason() >= 0)

    def _fail(self, snap: tuple[list[np.ndarray], float], message: str) -> None:
        """Restore the state of the step start and raise :class:`NewtonFailure`."""
        self.restore(snap)
        self._jacobian_fresh = False
        self._pending = None
        raise NewtonFailure(message)

    def _balanced(self, tol: float) -> bool:
        if self._extra_residual is not None:
            return True  # extra source terms break the charge balance by design
        i_a = self.anode_current()
        return abs(i_a + self.interface_current()) <= tol * max(abs(i_a), self.applied_scale)

    # --- diagnostics (all collective) --------------------------------------------------------
    def _scalar(self, form) -> float:
        return float(self.comm.allreduce(dolfinx.fem.assemble_scalar(form), op=MPI.SUM))

    @property
    def cell_voltage_V(self) -> float:
        return -float(self.phi_a.value)

    def anode_current(self) -> float:
        """Current from the Li anode into the electrolyte (model units, 1e-12 A)."""
        return self._scalar(self.g)

    def interface_current(self) -> float:
        """Net current from the active material into the electrolyte (model units)."""
        return self._scalar(self.interface_current_form)

    def li_in_solid(self) -> float:
        """Li in the active phase, (mol/m3) um^3 = 1e-18 mol."""
        return self._scalar(self.inventory_s_form)

    def min_electrolyte_concentration(self) -> float:
        """Lowest nodal salt concentration c_e (mol/m3) over the electrolyte (collective).
        Below 0 where the salt is depleted faster than the mesh resolves: the P1 solution
        undershoots at the depletion front (the kinetics use the smooth positive part)."""
        local = float(self.c_e.x.array.min(initial=np.inf))
        return float(self.comm.allreduce(local, op=MPI.MIN))

    def salt_in_electrolyte(self) -> float:
        return self._scalar(self.inventory_e_form)

    def active_volume_um3(self) -> float:
        """Active-phase volume (area x 1 um in 2D); the mesh does not move, so it is
        assembled once."""
        if self._active_volume is None:
            self._active_volume = self._scalar(self.active_volume_form)
        return self._active_volume

    def salt_stock_capacity_mAh_g(self) -> float:
        """The discharge capacity (mAh/g) that the salt initially in the cathode's polymer
        (the connected SPE cells, not the separator) carries with no diffusion back:
        F c0 V / ((1 - t+) m). At a constant current the anions leave the cathode's polymer
        at (1 - t+) I / F, so a discharge that outruns the salt's diffusion time (eps L^2 /
        D_eff) runs its polymer dry near this capacity (README: the closed-form bounds)."""
        volume_m3 = self._scalar(self.cathode_polymer_volume_form) * 1e-18
        t_plus = self.params.spe.transference.value
        charge_C = FARADAY_C_MOL * self.params.salt_concentration.value * volume_m3 / (
            1.0 - t_plus)
        return charge_C / 3.6 / max(self.active_mass_g(), 1e-300)

    def cross_section_um2(self) -> float:
        """The cell's cross-section: width x depth of a 3D column, the width (x 1 um of
        depth) of a 2D section."""
        tm = self.tm
        return tm.width_um * (tm.depth_um if tm.mesh.topology.dim == 3 else 1.0)

    def connected_interface_area_um2(self) -> float:
        """Area of the active/electrolyte surface connected to both the collector and the
        anode (length x 1 um in 2D): of its facets, or on a voxel mesh with surface normals
        the weighted area of its faces (``area_weight``), the area the reaction uses."""
        return self._scalar(self.connected_interface_area_form)

    def active_mass_g(self) -> float:
        return self.active_volume_um3() * self.params.density_g_cm3.value * 1e-12

    def current_for(self, specific_mA_g: float) -> float:
        """Model current for a specific current (mA per g of active material)."""
        return specific_mA_g * 1e-3 * self.active_mass_g() / ModelUnits.current_A

    def overpotentials(self) -> dict[str, float]:
        """Breakdown of the cell voltage (V), exact in sum:

        ``V = ocv_mean + solid_concentration + kinetic_cathode + electronic_ohmic
        + electrolyte_ohmic + electrolyte_concentration + kinetic_anode``

        with current-weighted averages <.> over the reacting interface (weights i_n / I) and
        the anode (weights i_a / I):

        * ocv_mean = U(mean theta);
        * solid_concentration = <U(theta_s)> - U(mean theta): the surface lithiation of the
          reacting wires against the mean of all (solid diffusion inside the wires, and
          uneven lithiation through the electrode: a reaction front, unused particles);
        * kinetic_cathode = <eta>; electronic_ohmic = -<phi_s> (the collector is at 0);
        * electrolyte = <phi_e> - <phi_e>_anode, split into the diffusion potential
          (2RT/F)(1 - t+)(1 + dlnf/dlnc)(<ln c_e> - <ln c_e>_anode) with the cathode SPE's
          t+ (exact for uniform t+) and the ohmic rest;
        * kinetic_anode = -<eta_a>.

        At zero net current the weights are undefined: V - U(mean theta) (concentration
        relaxation) is then reported as solid_concentration and the others as 0.
        """
        vals = {k: self._scalar(f) for k, f in self.breakdown_forms.items()}
        p = self.params
        u_mean = float(p.ocv(self.mean_theta()))
        out = {"ocv_mean_V": u_mean, "solid_concentration_V": 0.0, "kinetic_cathode_V": 0.0,
               "electronic_ohmic_V": 0.0, "electrolyte_ohmic_V": 0.0,
               "electrolyte_concentration_V": 0.0, "kinetic_anode_V": 0.0}
        i_c, i_a = vals["i"], vals["ia"]
        scale = max(abs(i_c), abs(i_a))
        # Net currents below 1e-6 of the last applied one count as rest: dividing the local
        # (cancelling) currents by a vanishing net current would only amplify round-off.
        if scale <= 1e-6 * self.applied_scale:
            out["solid_concentration_V"] = self.cell_voltage_V - u_mean
            return out
        electrolyte = vals["phi_e"] / i_c - vals["phi_e_a"] / i_a
        tp, tf = p.spe.transference.value, p.spe.thermodynamic_factor.value
        conc = (2 * p.thermal_voltage_V * (1 - tp) * tf
                * (vals["ln_ce"] / i_c - vals["ln_ce_a"] / i_a))
        out.update({
            "solid_concentration_V": vals["u"] / i_c - u_mean,
            "kinetic_cathode_V": vals["eta"] / i_c,
            "electronic_ohmic_V": -vals["phi_s"] / i_c,
            "electrolyte_ohmic_V": electrolyte - conc,
            "electrolyte_concentration_V": conc,
            "kinetic_anode_V": -vals["eta_a"] / i_a,
        })
        return out

    def particle_lithiation(self) -> tuple[np.ndarray, np.ndarray]:
        """Volume (um^3; um^2 x 1 um in 2D) and mean lithiation fraction of every active
        particle (facet-connected active cells: a wire, or a wire section in 2D), ordered
        by the partition-independent particle id. Collective; the same on every rank."""
        li = dolfinx.fem.assemble_vector(self._cell_li_form)
        vol = dolfinx.fem.assemble_vector(self._cell_vol_form)
        n_owned = self.tm.mesh.topology.index_map(self.tm.mesh.topology.dim).size_local
        labels = self.particles.labels[:n_owned]
        act = labels >= 0
        n = self.particles.num_components
        li_p = np.bincount(labels[act], weights=li.array[:n_owned][act], minlength=n)
        vol_p = np.bincount(labels[act], weights=vol.array[:n_owned][act], minlength=n)
        li_p = self.comm.allreduce(li_p, op=MPI.SUM)
        vol_p = self.comm.allreduce(vol_p, op=MPI.SUM)
        theta = li_p / np.maximum(vol_p, 1e-300) / self.params.c_max_mol_m3
        return vol_p, theta

    def mean_theta(self) -> float:
        return self.li_in_solid() / (self.active_volume_um3() * self.params.c_max_mol_m3)

