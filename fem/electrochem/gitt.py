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
one step. In that regime dE_t >> dE_s; as tau D / (V/S)^2 grows the body becomes uniform
during the pulse, dE_s / dE_t tends to 1 and Eq. 2 tends to the uniform-body limit
4 (V/S)^2 / (pi tau), whatever D is (``de_s_de_t_ratio`` is reported per pulse: near 1, the
pulse measured no diffusivity).

Two contact areas are reported, because the paper does not say which it used:

* the electrode's geometric area (per unit cross-section of the cell: V/S is the active
  volume per unit electrode area). Then Eq. 2 describes the electrode as one body, whose
  response includes ion transport through the polymer, not the solid diffusivity alone;
* the connected active/electrolyte interface (the wire surface that carries current),
  V/S = r/2 for a wire of radius r. For 100 nm wires and minute-long pulses, tau D_s / (V/S)^2
  with the model's own D_s (:func:`solid_diffusion_number`) is far above 1: the wires are
  uniform within seconds, and this reading cannot recover D_s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fem.electrochem.protocol import Protocol, ProtocolError, Record, protocol_from_dict

__all__ = ["GittPulse", "analyse_gitt", "evaluate_pulse", "gitt_diffusivity_cm2_s",
           "gitt_protocol", "solid_diffusion_number"]


def gitt_protocol(*, current_mA_g: float, pulse_s: float, rest_s: float, cutoff_V: float,
                  max_pulses: int, first_dt_s: float = 1e-3, pulse_steps: int = 20,
                  **settings: Any) -> Protocol:
    """Pulse, rest, pulse, rest, ... (``max_pulses`` of each, or fewer: the first pulse that
    reaches ``cutoff_V``, stalls or finds the cell blocked ends the run). ``settings`` are the
    other ``[protocol]`` fields (``initial_theta``, step-size control), checked as there; a
    pulse takes steps of at most ``pulse_s / pulse_steps``."""
    if isinstance(max_pulses, bool) or not isinstance(max_pulses, int) or max_pulses < 1:
        raise ProtocolError(f"gitt: max_pulses = {max_pulses!r}, must be an integer >= 1")
    if "step" in settings:
        raise ProtocolError("gitt: the steps are built from the pulse settings; pass no step")
    steps: list[dict[str, Any]] = []
    for k in range(max_pulses):
        steps.append({"kind": "cc", "current_mA_g": current_mA_g, "duration_s": pulse_s,
                      "until_voltage_V": cutoff_V, "label": f"pulse {k + 1}",
                      "dt_initial_s": first_dt_s, "dt_max_s": pulse_s / pulse_steps,
                      "end_at_cutoff": True})
        steps.append({"kind": "rest", "duration_s": rest_s, "label": f"rest {k + 1}",
                      "dt_initial_s": first_dt_s})
    return protocol_from_dict({**settings, "step": steps})


def solid_diffusion_number(tau_s: float, solid_diffusivity_cm2_s: float,
                           volume_per_area_um: float) -> float:
    """tau D / (V/S)^2: Eq. 2 can recover D only where this is << 1."""
    return tau_s * solid_diffusivity_cm2_s / (volume_per_area_um * 1e-4) ** 2


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
    #: << 1: the short-time regime of Eq. 2; near 1: uniform during the pulse (Eq. 2 gives
    #: its bound 4 (V/S)^2 / (pi tau), not a diffusivity)
    de_s_de_t_ratio: float | None
    #: dV/dt at the end of the rest (V/s): far from 0, the rest was too short for dE_s to be
    #: the steady-state change Eq. 2 assumes
    rest_end_slope_V_s: float
    d_geometric_cm2_s: float | None  # Eq. 2 with S = the electrode's geometric area
    d_interface_cm2_s: float | None  # Eq. 2 with S = the connected interface

    def as_row(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def analyse_gitt(records: Sequence[Record], stopped_by: Sequence[str], protocol: Protocol,
                 initial_voltage_V: float, *, active_volume_per_area_um: float,
                 active_volume_per_interface_um: float | None) -> list[GittPulse]:
    """Eq. 2 for every complete pulse of a run of :func:`gitt_protocol`.

    ``active_volume_per_area_um``: active volume per unit cross-section of the cell (V/S with
    the geometric area); ``active_volume_per_interface_um``: active volume per unit connected
    interface area (None: no connected interface). Pulses cut short by the cut-off, and rests
    that did not run to their end, are left out; a pulse whose voltage did not fall during
    it, or whose rested voltage did not fall over it (dE_t or dE_s <= 0: no transient to
    evaluate, or an open-circuit voltage that is not monotone), gets no diffusivity."""
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
        out.append(evaluate_pulse(k // 2 + 1, rp, rr, before, sign,
                                  active_volume_per_area_um=active_volume_per_area_um,
                                  active_volume_per_interface_um=active_volume_per_interface_um))
        before = rr[-1].voltage_V
    return out


def evaluate_pulse(number: int, pulse_records: Sequence[Record], rest_records: Sequence[Record],
                   rest_voltage_before_V: float, sign: float, *,
                   active_volume_per_area_um: float,
                   active_volume_per_interface_um: float | None) -> GittPulse:
    """Eq. 2 for one complete pulse from its own records and those of its rest (both
    non-empty, each ran for its whole duration); ``sign`` is +1 for a discharge pulse, -1 for
    a charge pulse; the volumes per area as in :func:`analyse_gitt`."""
    rp, rr = pulse_records, rest_records
    first, end, rested = rp[0], rp[-1], rr[-1]
    before = rest_voltage_before_V
    tau = sum(r.dt_s for r in rp)
    de_s = sign * (before - rested.voltage_V)
    de_t = sign * (first.voltage_V - end.voltage_V)
    return GittPulse(
        pulse=number, capacity_mAh_g=end.capacity_mAh_g,
        mean_theta=rested.mean_theta, rest_voltage_before_V=before,
        rest_voltage_after_V=rested.voltage_V, pulse_start_voltage_V=first.voltage_V,
        pulse_end_voltage_V=end.voltage_V, first_dt_s=first.dt_s, tau_s=tau,
        ir_drop_V=sign * (before - first.voltage_V), de_s_V=de_s, de_t_V=de_t,
        polarization_V=sign * (rested.voltage_V - end.voltage_V),
        de_s_de_t_ratio=de_s / de_t if de_t > 0 and de_s > 0 else None,
        rest_end_slope_V_s=((rested.voltage_V - rr[-2].voltage_V) / rested.dt_s
                            if len(rr) > 1 else math.nan),
        d_geometric_cm2_s=_estimate(tau, active_volume_per_area_um, de_s, de_t),
        d_interface_cm2_s=_estimate(tau, active_volume_per_interface_um, de_s, de_t))


def _estimate(tau_s: float, length_um: float | None, de_s: float, de_t: float
              ) -> float | None:
    """Eq. 2; None without a length, a transient or a steady change."""
    if length_um is None or not (length_um > 0) or not (de_t > 0) or not (de_s > 0):
        return None
    return gitt_diffusivity_cm2_s(tau_s, length_um, de_s, de_t)
