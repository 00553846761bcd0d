"""How much an equipotential electronic network leaves out: the linear porous-electrode
estimate of Newman and Tobias (J. Electrochem. Soc. 109, 1183 (1962)).

A porous electrode of thickness L, with effective electronic and ionic conductivities sigma
and kappa through its thickness and a reacting surface of area a per volume with linear
kinetics (charge-transfer conductance a i0 (alpha_a + alpha_c) F / (R T) per volume), carries
a current density I from the collector (x = 0, all electronic) to the separator (x = L, all
ionic). The loss (collector solid potential minus separator electrolyte potential) is::

    dV = I L / (kappa + sigma) * (1 + (2 + (sigma/kappa + kappa/sigma) cosh nu) / (nu sinh nu))

with nu^2 = L^2 a i0 (alpha_a + alpha_c) F/(R T) (1/kappa + 1/sigma). With sigma -> inf (the
half cell's ``electronic = "ideal"``) it tends to I L coth(nu) / (kappa nu). The estimate
ignores concentration gradients and treats the kinetics as linear (|eta| << R T / F); it
sizes the electronic loss that the equipotential network leaves out, from quantities the
project measures (the ``rve`` tensors and the half cell's connected wire surface), and does
not replace a resolved run.
"""

from __future__ import annotations

import math

from fem.electrochem.parameters import FARADAY_C_MOL, GAS_CONSTANT_J_MOL_K

__all__ = ["porous_electrode_loss_V"]


def _positive(name: str, value: float, unit: str, allow_inf: bool = False) -> float:
    value = float(value)
    ok = value > 0 and (allow_inf or math.isfinite(value)) and not math.isnan(value)
    if not ok:
        upper = "inf]" if allow_inf else "inf)"
        raise ValueError(f"{name} = {value:g} {unit}: must be in (0, {upper}")
    return value


def porous_electrode_loss_V(current_mA_cm2: float, thickness_um: float, sigma_S_cm: float,
                            kappa_S_cm: float, area_per_volume_per_um: float,
                            exchange_current_A_m2: float, alpha_sum: float = 1.0,
                            temperature_K: float = 298.15) -> float:
    """Ohmic plus kinetic loss (V) of a porous electrode with linear kinetics (Newman and
    Tobias 1962; module docstring). ``current_mA_cm2`` is a magnitude (discharge or
    charge alike); ``sigma_S_cm = math.inf``: an equipotential electronic network;
    ``area_per_volume_per_um``: reacting surface per electrode volume (um2/um3). Where the
    charge-transfer conductance is too small to represent (nu = 0), the loss is inf."""
    i = _positive("current_mA_cm2", current_mA_cm2, "mA/cm2") * 1e-3  # A/cm2
    length = _positive("thickness_um", thickness_um, "um") * 1e-4  # cm
    sigma = _positive("sigma_S_cm", sigma_S_cm, "S/cm", allow_inf=True)
    kappa = _positive("kappa_S_cm", kappa_S_cm, "S/cm")
    a = _positive("area_per_volume_per_um", area_per_volume_per_um, "1/um") * 1e4  # 1/cm
    i0 = _positive("exchange_current_A_m2", exchange_current_A_m2, "A/m2") * 1e-4  # A/cm2
    alphas = _positive("alpha_sum", alpha_sum, "1")
    temp = _positive("temperature_K", temperature_K, "K")
    conductance = a * i0 * alphas * FARADAY_C_MOL / (GAS_CONSTANT_J_MOL_K * temp)  # S/cm3
    nu = length * math.sqrt(conductance * (1.0 / kappa + 1.0 / sigma))
    if nu == 0.0:
        return math.inf
    if math.isinf(sigma):
        return i * length / (kappa * nu * math.tanh(nu))
    # (cosh nu) / (nu sinh nu) = 1 / (nu tanh nu); 1 / (nu sinh nu) vanishes for large nu
    inv_sinh = 1.0 / math.sinh(nu) if nu < 700.0 else 0.0
    bracket = 1.0 + (2.0 * inv_sinh + (sigma / kappa + kappa / sigma) / math.tanh(nu)) / nu
    return i * length / (kappa + sigma) * bracket
