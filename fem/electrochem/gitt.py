"""Galvanostatic intermittent titration (GITT) of a half cell, and its analysis by the
paper's Eq. 2 (Weppner and Huggins, J. Electrochem. Soc. 124, 1569 (1977)).

:func:`gitt_protocol` builds the lab sheet: pulses of a constant specific current for
``pulse_s``, each followed by a rest of ``rest_s``, until a pulse reaches the cut-off voltage
(which ends the protocol). Every pulse and rest starts on a short time step (``first_dt_s``), so
that the voltage right after the current is switched on (the instantaneous ohmic and kinetic
response, the "IR drop") is a record of the run.

:func:`analyse_gitt` evaluates every complete pulse (the pulse and its rest ran for their full
durations)::

    D = 4 / (pi tau) (n_m V_m / S)^2 (dE_s / dE_t)^2

with tau the pulse time, n_m V_m the volume of active material, S the contact area, dE_s the
change of the rested voltage over the pulse and its rest, and dE_t the voltage change during
the pulse without the IR drop (from the first record of the pulse to its end). The formula
is the short-time limit of diffusion into a body of volume V and surface S under constant
flux: it holds when tau D / (V/S)^2 << 1 and when the open-circuit voltage is linear over
one step.

Two contact areas are reported, because the paper does not say which it used:

* the electrode's geometric area (per unit cross-section of the cell: V/S is the active
  volume per unit electrode area). For 100 nm wires this is the only reading that gives the
  paper's 1e-12-1e-10 cm2/s; it measures how fast the whole electrode responds, which
  includes ion transport through the polymer, not the solid diffusivity;
* the connected active/electrolyte interface (the wire surface that carries current). With
  V/S = r/2 for a wire of radius r, the condition tau D / (V/S)^2 << 1 fails for 100 nm wires
  and minute-long pulses: the wires are uniform within a second and the estimate is bounded
  by (V/S)^2 / tau, whatever the solid diffusivity. ``validity`` (tau D / (V/S)^2 of each
  estimate itself) says so per pulse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fem.electrochem.protocol import Protocol, ProtocolError, Record, Step

__all__ = ["GittPulse", "analyse_gitt", "gitt_diffusivity_cm2_s", "gitt_protocol"]


def gitt_protocol(*, current_mA_g: float, pulse_s: float, rest_s: float, cutoff_V: float,
                  max_pulses: int, initial_theta: float, first_dt_s: float = 1e-3,
                  pulse_steps: int = 20, **settings: Any) -> Protocol:
    """Pulse, rest, pulse, rest, ... (``max_pulses`` of each, or fewer: the first pulse that
    reaches ``cutoff_V`` ends the run). ``settings`` are the other :class:`Protocol` fields
    (step-size control); a pulse takes steps of at most ``pulse_s / pulse_steps``."""
    if isinstance(max_pulses, bool) or not isinstance(max_pulses, int) or max_pulses < 1:
        raise ProtocolError(f"gitt: max_pulses = {max_pulses!r}, must be an integer >= 1")
    steps: list[Step] = []
    for k in range(max_pulses):
        steps.append(Step(kind="cc", current_mA_g=current_mA_g, duration_s=pulse_s,
                          until_voltage_V=cutoff_V, label=f"pulse {k + 1}",
                          dt_initial_s=first_dt_s, dt_max_s=pulse_s / pulse_steps,
                          end_at_cutoff=True))
        steps.append(Step(kind="rest", duration_s=rest_s, label=f"rest {k + 1}",
                          dt_initial_s=first_dt_s))
    return Protocol(steps=tuple(steps), initial_theta=initial_theta, **settings)


def gitt_diffusivity_cm2_s(tau_s: float, volume_per_area_um: float, de_s_V: float,
                           de_t_V: float) -> float:
    """Eq. 2: 4 / (pi tau) (V/S)^2 (dE_s/dE_t)^2, with V/S in um, in cm2/s."""
    length_cm = volume_per_area_um * 1e-4
    return 4.0 / (math.pi * tau_s) * length_cm ** 2 * (de_s_V / de_t_V) ** 2


@dataclass(frozen=True, kw_only=True)
class GittPulse:
    """One complete pulse and its rest (voltages in V; positive changes on discharge)."""

    pulse: int  # 1, 2, ...
    capacity_mAh_g: float  # passed at the end of the pulse
    mean_theta: float  # lithiation at the end of the rest
    rest_voltage_before_V: float  # rested voltage before the pulse (initial OCV at first)
    rest_voltage_after_V: float  # at the end of the rest
    pulse_start_voltage_V: float  # first record of the pulse: after the IR drop
    pulse_end_voltage_V: float
    first_dt_s: float  # time of the first record of the pulse
    tau_s: float
    ir_drop_V: float  # rested voltage before - first record
    de_s_V: float  # steady-state change: rested before - rested after
    de_t_V: float  # transient change during the pulse: first record - end
    polarization_V: float  # rested after - pulse end (total overpotential at the end)
    d_geometric_cm2_s: float | None  # Eq. 2 with S = the electrode's geometric area
    d_interface_cm2_s: float | None  # Eq. 2 with S = the connected interface
    validity_geometric: float | None  # tau D / (V/S)^2 of that estimate (must be << 1)
    validity_interface: float | None

    def as_row(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def analyse_gitt(records: Sequence[Record], stopped_by: Sequence[str], protocol: Protocol,
                 initial_voltage_V: float, *, active_volume_per_area_um: float,
                 active_volume_per_interface_um: float | None) -> list[GittPulse]:
    """Eq. 2 for every complete pulse of a run of :func:`gitt_protocol`.

    ``active_volume_per_area_um``: active volume per unit cross-section of the cell (V/S with
    the geometric area); ``active_volume_per_interface_um``: active volume per unit connected
    interface area (None: no connected interface). Pulses cut short by the cut-off, and rests
    that did not run to their end, are left out."""
    by_step: dict[int, list[Record]] = {}
    for r in records:
        by_step.setdefault(r.step, []).append(r)
    steps = protocol.steps
    out: list[GittPulse] = []
    before = initial_voltage_V
    for k in range(0, len(steps) - 1, 2):
        pulse, rest = steps[k], steps[k + 1]
        if pulse.kind != "cc" or rest.kind != "rest":
            raise ProtocolError(f"gitt: steps {k} and {k + 1} must be a cc pulse and a rest")
        if k + 1 >= len(stopped_by):
            break
        rp, rr = by_step.get(k, []), by_step.get(k + 1, [])
        complete = (stopped_by[k] == "duration" and stopped_by[k + 1] == "duration"
                    and rp and rr)
        if not complete:
            break
        sign = 1.0 if pulse.current_mA_g > 0 else -1.0
        first, end, rested = rp[0], rp[-1], rr[-1]
        tau = sum(r.dt_s for r in rp)
        de_s = sign * (before - rested.voltage_V)
        de_t = sign * (first.voltage_V - end.voltage_V)

        d_geo, v_geo = _estimate(tau, active_volume_per_area_um, de_s, de_t)
        d_int, v_int = _estimate(tau, active_volume_per_interface_um, de_s, de_t)
        out.append(GittPulse(
            pulse=k // 2 + 1, capacity_mAh_g=end.capacity_mAh_g,
            mean_theta=rested.mean_theta, rest_voltage_before_V=before,
            rest_voltage_after_V=rested.voltage_V, pulse_start_voltage_V=first.voltage_V,
            pulse_end_voltage_V=end.voltage_V, first_dt_s=first.dt_s, tau_s=tau,
            ir_drop_V=sign * (before - first.voltage_V), de_s_V=de_s, de_t_V=de_t,
            polarization_V=sign * (rested.voltage_V - end.voltage_V),
            d_geometric_cm2_s=d_geo, d_interface_cm2_s=d_int, validity_geometric=v_geo,
            validity_interface=v_int))
        before = rested.voltage_V
    return out


def _estimate(tau_s: float, length_um: float | None, de_s: float, de_t: float
              ) -> tuple[float | None, float | None]:
    """Eq. 2 and its validity number tau D / (V/S)^2; None without a length or a transient."""
    if length_um is None or not (length_um > 0) or not (de_t > 0):
        return None, None
    d = gitt_diffusivity_cm2_s(tau_s, length_um, de_s, de_t)
    return d, tau_s * d / (length_um * 1e-4) ** 2
