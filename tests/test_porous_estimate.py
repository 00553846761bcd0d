"""The linear porous-electrode estimate (fem.electrochem.porous) against a boundary-value
solve of the same two-phase equations written here, and its limits."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import solve_bvp

from fem.electrochem.parameters import FARADAY_C_MOL, GAS_CONSTANT_J_MOL_K
from fem.electrochem.porous import porous_electrode_loss_V


def _bvp_loss_V(current_A_cm2: float, length_cm: float, sigma: float, kappa: float,
                conductance_S_cm3: float) -> float:
    # In x / L, currents / I and potentials / (I L / kappa): y = (phi_s, phi_e, i_s, i_e),
    # i_s = -(sigma / kappa) phi_s', i_e = -phi_e'; the reaction n2 (phi_s - phi_e), with
    # n2 = g L^2 / kappa, moves current from the solid to the electrolyte; all current is
    # electronic at the collector (x = 0) and ionic at the separator (x = 1).
    n2 = conductance_S_cm3 * length_cm ** 2 / kappa
    ratio = kappa / sigma

    def rhs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        j = n2 * (y[0] - y[1])
        return np.vstack([-ratio * y[2], -y[3], -j, j])

    def bc(y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
        return np.array([y0[2] - 1.0, y0[3], y1[2], y1[1]])

    x = np.linspace(0.0, 1.0, 401)
    guess = np.zeros((4, x.size))
    guess[2], guess[3] = 1 - x, x
    sol = solve_bvp(rhs, bc, x, guess, tol=1e-9, max_nodes=100000)
    assert sol.success, sol.message
    scale = current_A_cm2 * length_cm / kappa
    return float(sol.sol(0.0)[0] - sol.sol(1.0)[1]) * scale


@pytest.mark.parametrize(("sigma", "kappa", "thickness", "area", "i0", "alphas", "temp"), [
    (3.1e-6, 7.3e-6, 34.0, 173 / 34, 0.01, 1.0, 298.15),  # the membrane's inputs (nu 3.2)
    (8.3e-4, 5.9e-7, 13.0, 7.8 / 13, 0.01, 1.0, 298.15),  # the tape-cast cathode's (0.8)
    (1e-5, 1e-5, 34.0, 0.05, 0.01, 1.0, 298.15),          # slow kinetics (nu 0.2)
    (2e-6, 5e-5, 34.0, 20.0, 1.0, 1.0, 298.15),           # fast kinetics (nu 70)
    (5e-6, 2e-6, 20.0, 3.0, 0.05, 0.6, 333.15),           # other alphas and temperature
])
def test_closed_form_equals_the_two_phase_boundary_value_problem(
        sigma: float, kappa: float, thickness: float, area: float, i0: float, alphas: float,
        temp: float) -> None:
    current = 0.45
    got = porous_electrode_loss_V(current, thickness, sigma, kappa, area, i0, alphas, temp)
    g = area * 1e4 * i0 * 1e-4 * alphas * FARADAY_C_MOL / (GAS_CONSTANT_J_MOL_K * temp)
    ref = _bvp_loss_V(current * 1e-3, thickness * 1e-4, sigma, kappa, g)
    assert got == pytest.approx(ref, rel=1e-5)


def test_limits_of_the_estimate() -> None:
    i, length, kappa, area, i0 = 0.3, 20.0, 5e-6, 3.0, 0.02
    ideal = porous_electrode_loss_V(i, length, math.inf, kappa, area, i0)
    # an equipotential network is the limit of a large sigma, and sigma only adds loss
    assert porous_electrode_loss_V(i, length, 1e6 * kappa, kappa, area, i0) == \
        pytest.approx(ideal, rel=1e-5)
    losses = [porous_electrode_loss_V(i, length, s * kappa, kappa, area, i0)
              for s in (0.1, 1.0, 10.0, 100.0)]
    assert all(a > b > ideal for a, b in itertools.pairwise(losses))
    # very fast kinetics: the reaction sits at the two faces, loss I L / (kappa + sigma)
    # (plus a part falling as 1 / nu, here nu is about 1e4)
    fast = porous_electrode_loss_V(i, length, 2 * kappa, kappa, area, 1e6)
    assert fast == pytest.approx(i * 1e-3 * length * 1e-4 / (3 * kappa), rel=1e-3)
    # linear in the current
    assert porous_electrode_loss_V(2 * i, length, 2 * kappa, kappa, area, i0) == \
        pytest.approx(2 * porous_electrode_loss_V(i, length, 2 * kappa, kappa, area, i0))


@pytest.mark.parametrize(("field", "args"), [
    ("current_mA_cm2", (0.0, 34.0, 1e-6, 1e-6, 1.0, 0.01)),
    ("thickness_um", (0.45, math.nan, 1e-6, 1e-6, 1.0, 0.01)),
    ("kappa_S_cm", (0.45, 34.0, 1e-6, math.inf, 1.0, 0.01)),
    ("sigma_S_cm", (0.45, 34.0, -1.0, 1e-6, 1.0, 0.01)),
])
def test_bad_input_names_the_field(field: str, args: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=f"^{field} = .*must be in"):
        porous_electrode_loss_V(*args)
