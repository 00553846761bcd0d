"""Small-signal impedance of the resolved half cell (virtual EIS, shared/MODEL.md section 4).

About an equilibrium state (uniform lithiation ``theta`` at rest), the half cell of
:class:`fem.electrochem.halfcell.HalfCell` is linearised and driven by a sinusoidal anode
potential of angular frequency omega. The linear system is

    (J + i omega M) du = -(B - i omega d_a) dphi_a,

J the steady Jacobian of the model (no time derivative), M the storage of the time-dependent
terms: Li in the wires, salt in the electrolyte, and the double layers. B is the derivative of
the residual with respect to the anode potential phi_a. The double-layer charging current
C_dl d(phi_s - phi_e)/dt flows from solid to electrolyte at every reacting interface, and
C_dl d(phi_a - phi_e)/dt from the Li metal at the anode. It carries charge, not Li or salt:
it enters the two charge balances, not the mass balances. d_a = C_dl integral(psi) over the
anode (psi the test function of phi_e).

The total anode current (Faradaic plus double layer) per unit cross-section of the cell,
dj, gives the impedance per unit cross-section Z = dphi_a / dj (ohm m2; the cell voltage
is -phi_a, so Z is the usual battery impedance dV / d(charge current)). PETSc here is
real: each frequency solves the real 2 x 2 block form
[[J, -omega M], [omega M, J]] [x_r; x_i] = [-B; omega d_a] with MUMPS. A spectrum of n
frequencies costs n factorisations of twice the Newton system.

The model has no separate film, contact or SEI resistance: the spectrum holds the bulk
(electronic and ionic) resistance, the charge-transfer arcs of the cathode interface and
the Li anode, and the diffusion of salt (electrolyte) and Li (wires).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mpi4py import MPI  # isort: split

import dolfinx
import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import ufl
from petsc4py import PETSc as _PETSc

from fem.electrochem.halfcell import _ACTIVE, _ANODE, _ELECTRONIC, _GAMMA, _IONIC, HalfCell

__all__ = ["CircuitFit", "ImpedanceSolveError", "ImpedanceSpectrum", "fit_circuit",
           "impedance_spectrum", "log_frequencies"]

PETSc: Any = _PETSc
fem_petsc: Any = dolfinx.fem.petsc

_LU = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}


class ImpedanceSolveError(RuntimeError):
    """A frequency's linear solve did not converge (the same reason on every rank)."""


@dataclass(frozen=True)
class ImpedanceSpectrum:
    """Impedance at the frequencies ``frequency_Hz``: ``z_ohm_m2`` (complex,
    area-specific: per m2 of the cell's cross-section, the face of the section or column
    seen from the separator) about the state of lithiation ``theta``. Areas are um2 in 3D
    and um per um of depth on 2D sections."""

    frequency_Hz: np.ndarray
    z_ohm_m2: np.ndarray
    theta: float
    ocv_V: float
    #: the cross-section (width x depth in 3D, width in 2D)
    cross_section_um2: float
    #: the Li anode: the electrolyte facets of the top face (all of it over a separator)
    anode_area_um2: float
    #: the reacting interface connected to the collector and the anode
    connected_interface_area_um2: float
    #: closed forms (ohm m2 of cross-section) of the linearised Butler-Volmer resistances
    #: at rest: RT / (F (alpha_a + alpha_c) i0(theta) a) with a the connected interface per
    #: unit cross-section, and RT / (F i0_Li b) with b the anode per unit cross-section
    kinetic_cathode_ohm_m2: float
    kinetic_anode_ohm_m2: float
    #: characteristic frequencies (alpha_a + alpha_c) F i0 / (2 pi RT C_dl) of the two
    #: interfaces (independent of their areas): where their arcs peak
    kinetic_cathode_frequency_Hz: float
    kinetic_anode_frequency_Hz: float

    def z_ohm(self, area_cm2: float) -> np.ndarray:
        """Impedance of a cell of ``area_cm2`` (ohm)."""
        return self.z_ohm_m2 / (area_cm2 * 1e-4)


def log_frequencies(f_min_Hz: float, f_max_Hz: float, per_decade: int) -> np.ndarray:
    """Frequencies from ``f_max_Hz`` down to ``f_min_Hz``, ``per_decade`` per decade
    (both ends included), in the order of an EIS sweep."""
    if not (0 < f_min_Hz < f_max_Hz):
        raise ValueError(f"f_min_Hz = {f_min_Hz}, f_max_Hz = {f_max_Hz}: need 0 < f_min < f_max")
    if per_decade < 1:
        raise ValueError(f"per_decade = {per_decade}: must be >= 1")
    decades = math.log10(f_max_Hz / f_min_Hz)
    n = max(2, round(decades * per_decade) + 1)
    return np.logspace(math.log10(f_max_Hz), math.log10(f_min_Hz), n)


def _mass_forms(cell: HalfCell, c_dl: float) -> list[list[Any]]:
    """Bilinear forms of the storage M (rows: c_s, phi_s, c_e, phi_e)."""
    c_s, phi_s, c_e, phi_e = (ufl.TrialFunction(s) for s in cell.spaces)
    w, v, q, psi = (ufl.TestFunction(s) for s in cell.spaces)
    dx, dS, ds = cell.dx, cell.dS, cell.ds
    cdl = dolfinx.fem.Constant(cell.tm.mesh, c_dl)
    # the double layer charges per surface area, like the reaction (voxel faces weighted)
    cdl_g = cell.area_weight * cdl
    jump_s, jump_e = phi_s("+"), phi_e("-")
    forms: list[list[Any]] = [[None] * 4 for _ in range(4)]
    forms[0][0] = c_s * w * dx(_ACTIVE)
    forms[1][1] = cdl_g * jump_s * v("+") * dS(_GAMMA)
    forms[1][3] = -cdl_g * jump_e * v("+") * dS(_GAMMA)
    forms[2][2] = c_e * q * dx(_IONIC)
    forms[3][1] = -cdl_g * jump_s * psi("-") * dS(_GAMMA)
    forms[3][3] = cdl_g * jump_e * psi("-") * dS(_GAMMA) + cdl * phi_e * psi * ds(_ANODE)
    em = cell.entity_maps
    return [[None if f is None else dolfinx.fem.form(f, entity_maps=em) for f in row]
            for row in forms]


def impedance_spectrum(cell: HalfCell, theta: float, frequency_Hz: Sequence[float] | np.ndarray,
                       *,
                       double_layer_F_m2: float | None = None) -> ImpedanceSpectrum:
    """Impedance of ``cell`` about uniform lithiation ``theta`` at rest (collective).

    ``double_layer_F_m2``: double-layer capacitance of the cathode interface and the Li
    anode (default: the parameter set's). The cell is left at that equilibrium state; its
    Newton solver is not used."""
    freqs = np.asarray(frequency_Hz, dtype=np.float64)
    if freqs.ndim != 1 or freqs.size == 0 or not np.all(np.isfinite(freqs)) or np.any(freqs <= 0):
        raise ValueError("frequency_Hz: must be a non-empty list of positive frequencies")
    if not cell.can_pass_current:
        raise ValueError("the cell has no reacting interface connected to both the collector "
                         "and the anode: its impedance is infinite (blocked)")
    p = cell.params
    c_dl = p.double_layer_capacitance.value if double_layer_F_m2 is None else double_layer_F_m2
    if not (c_dl >= 0.0 and math.isfinite(c_dl)):
        raise ValueError(f"double_layer_F_m2 = {c_dl}: must be >= 0")
    comm = cell.comm
    cell.set_equilibrium(theta)
    dt_saved = float(cell.dt.value)
    cell.dt.value = np.inf  # steady Jacobian: the (c - c_old) / dt terms drop out
    try:
        jac = fem_petsc.assemble_matrix(cell.J, bcs=cell.bcs, kind="mpi")
    finally:
        cell.dt.value = dt_saved
    jac.assemble()
    mass = fem_petsc.assemble_matrix(_mass_forms(cell, c_dl), bcs=cell.bcs, diag=0.0,
                                     kind="mpi")
    mass.assemble()
    border = fem_petsc.create_vector(cell.spaces, kind="mpi")
    grad_g = fem_petsc.create_vector(cell.spaces, kind="mpi")
    d_a = fem_petsc.create_vector(cell.spaces, kind="mpi")
    cell._assemble_vec(border, cell.B)
    cell._assemble_vec(grad_g, cell.G)
    zero = dolfinx.fem.Constant(cell.tm.mesh, 0.0)
    cdl = dolfinx.fem.Constant(cell.tm.mesh, c_dl)
    w, v, q, psi = (ufl.TestFunction(s) for s in cell.spaces)
    da_forms = [zero * w * cell.dx(_ACTIVE), zero * v * cell.dx(_ELECTRONIC),
                zero * q * cell.dx(_IONIC), cdl * psi * cell.ds(_ANODE)]
    cell._assemble_vec(d_a, [dolfinx.fem.form(f, entity_maps=cell.entity_maps)
                             for f in da_forms])
    h = comm.allreduce(dolfinx.fem.assemble_scalar(cell.h), op=MPI.SUM)
    area = comm.allreduce(dolfinx.fem.assemble_scalar(cell.anode_area_form), op=MPI.SUM)
    cross = cell.cross_section_um2()

    pmap = cell._pmap
    if pmap is not None:  # laterally periodic box: solve for the periodic dofs
        jac_r, mass_r = jac.PtAP(pmap.P), mass.PtAP(pmap.P)
        rhs_r = pmap.P.createVecRight()
        pmap.P.multTranspose(border, rhs_r)
        da_r = pmap.P.createVecRight()
        pmap.P.multTranspose(d_a, da_r)
    else:
        jac_r, mass_r, rhs_r, da_r = jac, mass, border, d_a
    n_local = rhs_r.getLocalSize()
    minus_b = -rhs_r.getArray(readonly=True)
    da_local = da_r.getArray(readonly=True)
    # K(omega) = K_J + omega K_M with K_J = [[J, 0], [0, J]], K_M = [[0, -M], [M, 0]]; K is
    # built once with the union pattern, so that MUMPS analyses (orders) it once and only
    # refactorises per frequency.
    owned: list[Any] = [jac, mass, border, grad_g, d_a]
    if pmap is not None:
        owned += [jac_r, mass_r, rhs_r, da_r]
    try:
        m_neg = mass_r.copy()
        m_neg.scale(-1.0)
        owned.append(m_neg)
        pieces: list[Any] = []
        for blocks in ([[jac_r, None], [None, jac_r]], [[None, m_neg], [mass_r, None]]):
            nest = PETSc.Mat().createNest(blocks, comm=comm)
            pieces.append(nest.convert("aij"))  # in place: the nest becomes the AIJ matrix
            owned.append(pieces[-1])
        k_j, k_m = pieces
        big = k_j.copy()
        owned.append(big)
        big.axpy(1.0, k_m, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
        ksp = PETSc.KSP().create(comm)
        owned.append(ksp)
        ksp.setType(_LU["ksp_type"])
        pc = ksp.getPC()
        pc.setType(_LU["pc_type"])
        pc.setFactorSolverType(_LU["pc_factor_mat_solver_type"])
        rhs, sol = big.createVecs()
        owned += [rhs, sol]
        z = np.zeros(len(freqs), dtype=np.complex128)
        for k, f_hz in enumerate(freqs):
            omega = 2.0 * math.pi * f_hz
            big.zeroEntries()
            big.axpy(1.0, k_j, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
            big.axpy(omega, k_m, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
            ksp.setOperators(big)
            rhs.setArray(np.concatenate([minus_b, omega * da_local]))
            ksp.solve(rhs, sol)
            if ksp.getConvergedReason() < 0:
                raise ImpedanceSolveError(f"impedance solve failed at {f_hz:g} Hz "
                                   f"({ksp.getConvergedReason()})")
            arr = sol.getArray(readonly=True)
            xr_l, xi_l = arr[:n_local], arr[n_local:]
            if pmap is not None:
                xr, xi = pmap.P.createVecLeft(), pmap.P.createVecLeft()
                tmp = pmap.P.createVecRight()
                tmp.setArray(xr_l)
                pmap.P.mult(tmp, xr)
                tmp.setArray(xi_l)
                pmap.P.mult(tmp, xi)
                tmp.destroy()
            else:
                xr, xi = border.duplicate(), border.duplicate()
                xr.setArray(xr_l)
                xi.setArray(xi_l)
            # dI = G.du + h + i omega (C_dl A - d_a.du), du = x_r + i x_i
            re = grad_g.dot(xr) + h + omega * d_a.dot(xi)
            im = grad_g.dot(xi) + omega * (c_dl * area - d_a.dot(xr))
            z[k] = cross / complex(re, im)  # dphi_a / dj, dphi_a = 1, j per cross-section
            for obj in (xr, xi):
                obj.destroy()
    finally:  # also when a solve fails
        for obj in owned:
            obj.destroy()
    # model units: dphi_a in V, dj in A/m2 -> ohm m2
    a_conn = comm.allreduce(dolfinx.fem.assemble_scalar(cell.connected_interface_area_form),
                            op=MPI.SUM)
    aa, ac = p.alpha_anodic.value, p.alpha_cathodic.value
    i0 = (p.exchange_current_cathode.value * theta ** ac * (1 - theta) ** aa
          / 0.5 ** (aa + ac))
    vt = p.thermal_voltage_V
    r_c = vt / ((aa + ac) * i0)  # ohm m2 of interface
    r_a = vt / p.exchange_current_anode.value  # alpha 1/2 + 1/2
    c_ref = c_dl if c_dl > 0 else float("nan")
    return ImpedanceSpectrum(
        frequency_Hz=freqs, z_ohm_m2=z, theta=float(theta), ocv_V=float(p.ocv(theta)),
        cross_section_um2=float(cross), anode_area_um2=float(area),
        connected_interface_area_um2=float(a_conn),
        kinetic_cathode_ohm_m2=r_c * cross / a_conn, kinetic_anode_ohm_m2=r_a * cross / area,
        kinetic_cathode_frequency_Hz=1.0 / (2.0 * math.pi * r_c * c_ref),
        kinetic_anode_frequency_Hz=1.0 / (2.0 * math.pi * r_a * c_ref))


@dataclass(frozen=True)
class CircuitFit:
    """An equivalent circuit fitted to a spectrum (impedance.py, Murbach et al., J. Open
    Source Softw. 5, 2349 (2020)): ``circuit`` in its notation, the parameter names and
    values (ohm, F s^(n-1), s), the frequency range fitted and the largest misfit relative
    to |Z|."""

    circuit: str
    names: tuple[str, ...]
    values: tuple[float, ...]
    max_misfit_rel: float
    f_min_Hz: float = 0.0
    f_max_Hz: float = math.inf

    def value(self, name: str) -> float:
        return self.values[self.names.index(name)]

    def arcs(self) -> list[dict[str, float]]:
        """The R || CPE arcs (Z_CPE = 1 / (Q (i omega)^n)), from high to low characteristic
        frequency 1 / (2 pi (R Q)^(1/n)). Arcs the fit made vanish (R or Q zero) are left
        out."""
        out = []
        k = 1
        while f"R{k}" in self.names:
            r, q, n = (self.value(f"R{k}"), self.value(f"CPE{k}_0"),
                       self.value(f"CPE{k}_1"))
            k += 1
            if not (r > 0.0 and q > 0.0):
                continue
            f_c = 1.0 / (2.0 * math.pi * (r * q) ** (1.0 / n))
            out.append({"resistance_ohm": r, "cpe_Q_F_s_n_minus_1": q, "cpe_n": n,
                        "frequency_Hz": f_c})
        return sorted(out, key=lambda a: -a["frequency_Hz"])

    def predict(self, frequency_Hz: np.ndarray) -> np.ndarray:
        from impedance.models.circuits import CustomCircuit

        model = CustomCircuit(self.circuit, initial_guess=list(self.values))
        model.parameters_ = np.array(self.values)
        return np.asarray(model.predict(np.asarray(frequency_Hz)), dtype=np.complex128)


def _fit(circuit: str, guess: list[float], f: np.ndarray, z: np.ndarray,
         bounds: tuple[list[float], list[float]]) -> CircuitFit | None:
    """One least-squares fit from ``guess``; None where it fails (no convergence)."""
    import warnings

    from impedance.models.circuits import CustomCircuit

    model = CustomCircuit(circuit, initial_guess=guess)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(f, z, weight_by_modulus=True, bounds=bounds)
    except (RuntimeError, ValueError):
        return None
    names = tuple(model.get_param_names()[0])
    values = tuple(float(v) for v in model.parameters_)
    pred = model.predict(f)
    if not np.all(np.isfinite(pred)):
        return None
    misfit = float(np.max(np.abs(pred - z) / np.abs(z)))
    return CircuitFit(circuit=circuit, names=names, values=values, max_misfit_rel=misfit,
                      f_min_Hz=float(f.min()), f_max_Hz=float(f.max()))


def _peak_arcs(f: np.ndarray, z: np.ndarray, max_arcs: int) -> list[tuple[float, float]]:
    """(R, C) starting values of the arcs of a spectrum (``f`` increasing), from the peaks
    of -dRe(Z)/d ln(omega): an R || C arc gives a peak of height R / 2 at 1 / (2 pi R C),
    narrower than its peak in -Im Z, so that an arc hidden as a shoulder of a larger one
    is still seen. Peaks higher than 1e-4 of the spread of Re Z (the Li arc of the planar
    test cell is 2e-3 of it), at most ``max_arcs``, by height; none for a spectrum flat to
    noise (1e-6 of |Z|)."""
    from scipy.signal import find_peaks

    spread = float(z.real.max() - z.real.min())
    if len(f) < 3 or not spread > 1e-6 * float(np.abs(z).max()):  # flat, up to noise
        return []
    lnw = np.log(2.0 * math.pi * f)
    slope = -np.gradient(z.real, lnw)
    padded = np.concatenate([[-np.inf], slope, [-np.inf]])
    peaks = find_peaks(padded, prominence=1e-4 * spread)[0] - 1
    peaks = peaks[slope[peaks] > 1e-4 * spread]
    out = []
    for i in sorted(peaks, key=lambda j: -slope[j])[:max_arcs]:
        r = 2.0 * float(slope[i])
        out.append((r, 1.0 / (2.0 * math.pi * float(f[i]) * r)))
    return out


def fit_circuit(frequency_Hz: np.ndarray, z_ohm: np.ndarray,
                max_arcs: int = 3) -> CircuitFit | None:
    """Fit R0 - (R1 || CPE1) - ... - Wo to a spectrum: the bulk resistance R0, one arc per
    charge-transfer process, and a finite-length reflective Warburg element for diffusion
    at low frequencies. The arcs are R || CPE with 0.5 <= n <= 1: n = 1 is the ideal
    double layer of the model, n < 1 a depressed arc (a porous electrode's distributed
    ionic resistance, or diffusion in the same band of frequencies, flattens it).
    Starting values come from the spectrum: R0 its smallest real part, the arcs from the
    peaks of -dRe(Z)/d ln(omega) (:func:`_peak_arcs`), the Warburg time from nine starts
    spread over the frequency range (the best fit is kept; starts that fail are skipped).
    Weighted by |Z| so that every decade counts. None when the spectrum shows no arc or
    every start fails."""
    f = np.asarray(frequency_Hz, dtype=np.float64)
    z = np.asarray(z_ohm, dtype=np.complex128)
    order = np.argsort(f)
    f, z = f[order], z[order]
    arcs = _peak_arcs(f, z, max_arcs)
    if not arcs:
        return None
    arcs.sort(key=lambda rc: rc[0] * rc[1])  # high frequency first
    r0 = max(float(z.real.min()), 0.0)
    z_end = abs(z[0])
    parts = ["R0"] + [f"p(R{k},CPE{k})" for k in range(1, len(arcs) + 1)]
    parts.append(f"Wo{len(arcs) + 1}")
    guess, lower, upper = [r0], [0.0], [np.inf]
    for r, c in arcs:
        guess += [r, c, 1.0]
        lower += [0.0, 0.0, 0.5]
        upper += [np.inf, np.inf, 1.0]
    fits = [_fit("-".join(parts), [*guess, 0.1 * z_end, 1.0 / (2.0 * math.pi * fk)], f, z,
                 ([*lower, 0.0, 0.0], [*upper, np.inf, np.inf]))
            for fk in np.geomspace(f[0], f[-1], 9)]
    ok = [c for c in fits if c is not None]
    return min(ok, key=lambda c: c.max_misfit_rel) if ok else None
