"""Symmetric Li | SSE | Li cell: the separator electrolyte between two Li metal electrodes.

The virtual counterpart of the paper's Li/SSE/Li polarization test (Fig. S6: about 50 mV at
0.2 mA and 50 C in 2 h cycles). The separator and the Li/electrolyte kinetics are the ones the
half cell uses (:class:`fem.electrochem.halfcell.HalfCell`), with the same parameter set:

* salt ``c_e`` (mol/m3) and electrolyte potential ``phi_e`` (V) on the separator, a 1D
  interval across its thickness (the planar cell is uniform in the plane), concentrated-
  solution binary salt with constant t+ (shared/MODEL.md section 3);
* bottom electrode (x = 0) at potential 0, Butler-Volmer with the concentration-dependent
  exchange current ``i0_a (c_e/c0)^0.5`` and symmetric transfer coefficients;
* top electrode (x = L): the applied current leaves the electrolyte there; its potential
  ``phi_a`` follows from the same Butler-Volmer law at the local salt concentration
  (in one dimension the current density is uniform, so the galvanostatic condition is this
  Neumann condition exactly).

The cell voltage is ``V = phi_a``; with a positive current Li is stripped at the bottom and
plated at the top, and V < 0. The polarization is |V|, split exactly into the two kinetic
overpotentials, the ohmic drop and the concentration (diffusion) potential of the separator.

Time stepping: backward Euler, fixed steps per half cycle; Newton by PETSc SNES on one
mixed P1 x P1 space. Units: um, s, mol/m3, V, A/m2 (:class:`ModelUnits`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mpi4py import MPI  # isort: split

import basix.ufl
import dolfinx
import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import ufl

from fem.electrochem.parameters import FARADAY_C_MOL, CellParameters, ModelUnits

__all__ = ["SymmetricCell", "SymmetricState", "steady_polarization_V",
           "transient_polarization_V"]

_BOTTOM, _TOP = 1, 2


@dataclass(frozen=True)
class SymmetricState:
    """Cell voltage and its exact split (V) at one time level."""

    time_s: float
    current_A_m2: float
    voltage_V: float
    kinetic_bottom_V: float  # phi_e(0) - 0 = -eta at the bottom electrode
    electrolyte_ohmic_V: float
    electrolyte_concentration_V: float
    kinetic_top_V: float  # phi_a - phi_e(L) = eta at the top electrode
    c_bottom_mol_m3: float
    c_top_mol_m3: float
    newton_iterations: int


def _transport(params: CellParameters) -> tuple[float, float, float, float]:
    """Separator kappa (S/m), D (m2/s), t+ and the thermodynamic factor at the cell's
    temperature."""
    sep = params.separator
    a = params.arrhenius(sep)
    return (sep.conductivity.value * a * 100.0, sep.diffusivity.value * a * 1e-4,
            sep.transference.value, sep.thermodynamic_factor.value)


def _eta_V(params: CellParameters, i_A_m2: float, c: float) -> float:
    """Overpotential (V) that drives ``i`` from Li metal into the electrolyte at salt
    concentration ``c`` (symmetric Butler-Volmer, as in the half cell)."""
    i0 = params.exchange_current_anode.value * math.sqrt(c / params.salt_concentration.value)
    return 2.0 * params.thermal_voltage_V * math.asinh(i_A_m2 / (2.0 * i0))


def transient_polarization_V(params: CellParameters, thickness_um: float, i_A_m2: float,
                             t_s: float, terms: int = 2000) -> dict[str, float]:
    """Closed-form polarization of the constant-coefficient model after ``t_s`` seconds of
    current ``i`` from rest (uniform salt). The salt is the Fourier-series solution of the
    diffusion equation with flux (1 - t+) i / F at both faces; the potentials follow from
    the uniform current. ``t_s = inf`` gives the steady state."""
    kappa, d, tp, tf = _transport(params)
    c0 = params.salt_concentration.value
    length = thickness_um * 1e-6
    g = (1 - tp) * i_A_m2 / (FARADAY_C_MOL * d)  # mol/m4, the steady gradient (-dc/dx)
    decay = 0.0
    if math.isfinite(t_s):
        n = np.arange(1, 2 * terms, 2, dtype=float)
        decay = float(np.sum(4 / (n * n * math.pi ** 2)
                             * np.exp(-n * n * math.pi ** 2 * d * t_s / length ** 2)))
    dc = g * length * (0.5 - decay)
    c_b, c_t = c0 + dc, c0 - dc
    if c_t <= 0:
        raise ValueError(f"current {i_A_m2} A/m2 depletes the salt (limiting current)")
    vt = params.thermal_voltage_V
    out = {"kinetic_bottom_V": -_eta_V(params, i_A_m2, c_b),
           "electrolyte_ohmic_V": -i_A_m2 * length / kappa,
           "electrolyte_concentration_V": 2 * vt * (1 - tp) * tf * math.log(c_t / c_b),
           "kinetic_top_V": -_eta_V(params, i_A_m2, c_t),
           "c_bottom_mol_m3": c_b, "c_top_mol_m3": c_t}
    out["voltage_V"] = (out["kinetic_bottom_V"] + out["electrolyte_ohmic_V"]
                        + out["electrolyte_concentration_V"] + out["kinetic_top_V"])
    return out


def steady_polarization_V(params: CellParameters, thickness_um: float,
                          i_A_m2: float) -> dict[str, float]:
    """The steady state of :func:`transient_polarization_V`."""
    return transient_polarization_V(params, thickness_um, i_A_m2, math.inf)


class SymmetricCell:
    """The finite-element model of the symmetric cell, holding the present state."""

    _instances = 0

    def __init__(self, params: CellParameters, thickness_um: float, cells: int = 400, *,
                 comm: MPI.Comm = MPI.COMM_WORLD, quadrature_degree: int = 4) -> None:
        if not (thickness_um > 0):
            raise ValueError(f"thickness_um = {thickness_um:g}: must be > 0 um")
        if not (isinstance(cells, int) and cells >= 2):
            raise ValueError(f"cells = {cells}: must be an integer >= 2")
        self.params = params
        self.thickness_um = float(thickness_um)
        self.comm = comm
        msh = dolfinx.mesh.create_interval(comm, cells, [0.0, self.thickness_um])
        self.mesh = msh
        p1 = basix.ufl.element("Lagrange", msh.basix_cell(), 1)
        space = dolfinx.fem.functionspace(msh, basix.ufl.mixed_element([p1, p1]))
        self.u = dolfinx.fem.Function(space)
        self._c_dofs = np.asarray(space.sub(0).collapse()[1])  # c_e entries of u
        self.u_old = dolfinx.fem.Function(space)
        c, phi = ufl.split(self.u)
        c_old, _ = ufl.split(self.u_old)
        q, psi = ufl.TestFunctions(space)
        fdim = msh.topology.dim - 1
        low = dolfinx.mesh.locate_entities_boundary(msh, fdim, lambda x: np.isclose(x[0], 0.0))
        high = dolfinx.mesh.locate_entities_boundary(
            msh, fdim, lambda x: np.isclose(x[0], self.thickness_um))
        facets = np.concatenate([low, high]).astype(np.int32)
        values = np.concatenate([np.full(len(low), _BOTTOM), np.full(len(high), _TOP)])
        order = np.argsort(facets)
        tags = dolfinx.mesh.meshtags(msh, fdim, facets[order], values[order].astype(np.int32))
        ds = ufl.Measure("ds", domain=msh, subdomain_data=tags,
                         metadata={"quadrature_degree": quadrature_degree})
        dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": quadrature_degree})

        units = ModelUnits
        kappa, d, tp, tf = _transport(params)
        self._tp, self._tf = tp, tf
        kappa_m = units.conductivity(kappa / 100.0)
        d_m = units.diffusivity(d * 1e4)
        fm = units.faraday
        f = 1.0 / params.thermal_voltage_V
        c0 = params.salt_concentration.value
        delta = 1e-3 * c0  # the half cell's smooth positive part of c_e

        def positive(x: Any) -> Any:
            return 0.5 * (x + ufl.sqrt(x * x + delta * delta))

        self.dt: Any = dolfinx.fem.Constant(msh, 1.0)
        self.current: Any = dolfinx.fem.Constant(msh, 0.0)  # A/m2, bottom -> top
        i0 = params.exchange_current_anode.value * (positive(c) / c0) ** 0.5
        i_bottom = i0 * (ufl.exp(0.5 * f * (0.0 - phi)) - ufl.exp(-0.5 * f * (0.0 - phi)))
        i_top = -self.current
        kappa_d = 2 * kappa_m * params.thermal_voltage_V * (1 - tp) * tf
        residual = (
            ((c - c_old) / self.dt * q + d_m * ufl.inner(ufl.grad(c), ufl.grad(q))) * dx
            - (1 - tp) * i_bottom / fm * q * ds(_BOTTOM)
            - (1 - tp) * i_top / fm * q * ds(_TOP)
            + (kappa_m * ufl.inner(ufl.grad(phi), ufl.grad(psi))
               - kappa_d / positive(c) * ufl.inner(ufl.grad(c), ufl.grad(psi))) * dx
            - i_bottom * psi * ds(_BOTTOM) - i_top * psi * ds(_TOP))
        SymmetricCell._instances += 1
        self.problem = dolfinx.fem.petsc.NonlinearProblem(
            residual, self.u, petsc_options_prefix=f"cathodefem_symmetric{self._instances}_",
            petsc_options={"snes_type": "newtonls", "snes_linesearch_type": "none",
                           "snes_rtol": 0.0, "snes_atol": 1e-12, "snes_stol": 1e-12,
                           "snes_max_it": 30, "ksp_type": "preonly", "pc_type": "lu",
                           "pc_factor_mat_solver_type": "mumps"})

        def point(expr: Any, tag: int) -> Any:
            return dolfinx.fem.form(expr * ds(tag))

        self._salt_form = dolfinx.fem.form(c * dx)
        self._probes = {"c_bottom": point(c, _BOTTOM), "c_top": point(c, _TOP),
                        "phi_bottom": point(phi, _BOTTOM), "phi_top": point(phi, _TOP)}
        self.time_s = 0.0
        self.set_rest()

    def set_rest(self) -> None:
        """Uniform salt c0 and zero potentials: the cell at rest."""
        self.u.x.array[:] = 0.0
        self.u.x.array[self._c_dofs] = self.params.salt_concentration.value
        self.u.x.scatter_forward()
        self.u_old.x.array[:] = self.u.x.array
        self.time_s = 0.0

    def _value(self, name: str) -> float:
        return float(self.comm.allreduce(dolfinx.fem.assemble_scalar(self._probes[name]),
                                         op=MPI.SUM))

    def step(self, dt_s: float, current_A_m2: float) -> SymmetricState:
        """One backward-Euler step at current density ``current_A_m2`` (positive: Li from the
        bottom to the top electrode). Raises RuntimeError (state kept at the step start)
        when Newton fails or the salt is depleted anywhere (above the limiting current)."""
        self.dt.value = dt_s
        self.current.value = current_A_m2
        self.u.x.array[:] = self.u_old.x.array
        self.problem.solve()
        snes: Any = self.problem.solver  # (the petsc4py stubs type the reason as an enum)
        reason = int(snes.getConvergedReason())
        c_min = self.comm.allreduce(float(np.min(self.u.x.array[self._c_dofs], initial=np.inf)),
                                    op=MPI.MIN)
        ok = reason > 0 and bool(self.comm.allreduce(
            bool(np.all(np.isfinite(self.u.x.array))), op=MPI.LAND))
        if not ok or c_min <= 0.0:
            self.u.x.array[:] = self.u_old.x.array
            c_old = self.comm.allreduce(
                float(np.min(self.u_old.x.array[self._c_dofs], initial=np.inf)), op=MPI.MIN)
            depleted = c_min <= 0.0 or c_old < 0.1 * self.params.salt_concentration.value
            why = (f"Newton did not converge (SNES reason {reason})" if not ok
                   else f"c_e fell to {c_min:.4g} mol/m3")
            hint = ("; the salt is depleted at the plating electrode: the current is above "
                    "the limiting current" if depleted else "")
            raise RuntimeError(f"symmetric cell: {why}{hint}")
        self.u_old.x.array[:] = self.u.x.array
        self.time_s += dt_s
        return self.state(current_A_m2, int(snes.getIterationNumber()))

    def state(self, current_A_m2: float, newton_iterations: int = 0) -> SymmetricState:
        c_b, c_t = self._value("c_bottom"), self._value("c_top")
        phi_b, phi_t = self._value("phi_bottom"), self._value("phi_top")
        conc = 2 * self.params.thermal_voltage_V * (1 - self._tp) * self._tf * (
            math.log(max(c_t, 1e-300)) - math.log(max(c_b, 1e-300)))
        # Li at the top electrode: the current leaves the electrolyte (i from the metal into
        # the electrolyte is -I), at the local salt concentration.
        kin_top = -_eta_V(self.params, current_A_m2, max(c_t, 1e-3 * c_b))
        return SymmetricState(
            time_s=self.time_s, current_A_m2=current_A_m2,
            voltage_V=phi_t + kin_top, kinetic_bottom_V=phi_b,
            electrolyte_ohmic_V=phi_t - phi_b - conc, electrolyte_concentration_V=conc,
            kinetic_top_V=kin_top, c_bottom_mol_m3=c_b, c_top_mol_m3=c_t,
            newton_iterations=newton_iterations)

    def salt_mol_m2(self) -> float:
        """Salt per electrode area (mol/m2): conserved by the model."""
        local = dolfinx.fem.assemble_scalar(self._salt_form)
        return float(self.comm.allreduce(local, op=MPI.SUM)) * 1e-6
