"""One electrochemical parameter set, shared by both cathodes: every value with unit and source.

Values the reference paper (Cheng et al., Adv. Energy Mater. 2021, 2100026) gives are taken
from it; the rest are literature values or named assumptions (their ``source`` starts with
``ASSUMPTION``). Nothing here is tuned per cathode. Conductivities of the solid phases come
from :mod:`fem.parameters` (the same values the conduction studies use).

Units of the stored values are the ones named in each :class:`~fem.parameters.Parameter`;
:class:`ModelUnits` converts them to the scaled unit system the equations are solved in.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from fem.parameters import Conductivities, Parameter, default_conductivities
from meshes.materials import MOLAR_MASS_H2V3O8_G_MOL, h2v3o8_density_g_cm3, spe_density_g_cm3

__all__ = [
    "ASSUMPTION_RANGES",
    "FARADAY_C_MOL",
    "GAS_CONSTANT_J_MOL_K",
    "CellParameters",
    "ElectrolyteParameters",
    "ModelUnits",
    "OpenCircuitVoltage",
    "default_parameters",
]

FARADAY_C_MOL = 96485.33212  # CODATA 2018 (exact by the 2019 SI)
GAS_CONSTANT_J_MOL_K = 8.314462618  # CODATA 2018 (exact by the 2019 SI)
OCV_TABLE = Path(__file__).resolve().parent.parent / "data" / "h2v3o8_ocv.csv"
LITFSI_MOLAR_MASS_G_MOL = 287.09
EO_MOLAR_MASS_G_MOL = 44.053


class ModelUnits:
    """The scaled unit system of the PDEs (shared/MODEL.md section 1).

    length um, time s, concentration mol/m3, potential V, current density A/m2.
    Derived: diffusivity um2/s; conductivity A/m2 per V/um (= 1e-6 S/m); molar flux
    (mol/m3)(um/s) (= 1e-6 mol/m2/s); an integral of current density over um^2 is 1e-12 A.
    With these, every assembled term is O(1)-O(1e4) for the materials here, instead of
    mixing 1e-15 m2/s with micrometre lengths.
    """

    @staticmethod
    def diffusivity(d_cm2_s: float) -> float:
        return d_cm2_s * 1e8  # cm2/s -> um2/s

    @staticmethod
    def conductivity(sigma_S_cm: float) -> float:
        return sigma_S_cm * 1e2 * 1e6  # S/cm -> S/m -> (A/m2)/(V/um)

    #: Faraday constant converting current density (A/m2) to molar flux ((mol/m3)(um/s))
    faraday = FARADAY_C_MOL * 1e-6
    #: one model current (integral of A/m2 over um^2) in A
    current_A = 1e-12


@dataclass(frozen=True)
class OpenCircuitVoltage:
    """U(theta) of the active material: a smooth fit to a stored table.

    The fit is ``U = a0 + a1 theta + sum_k b_k tanh((theta - m_k)/w) + (RT/F) ln((1-theta)/theta)``
    with fixed centres m_k and width w: smooth (C-infinity), strictly decreasing (a1, b_k <= 0),
    with Nernstian ends that keep theta inside (0, 1). The coefficients are a non-negative
    least-squares fit, so loading is deterministic and fast.
    """

    theta: np.ndarray
    u_V: np.ndarray
    source: str
    temperature_K: float = 298.15
    width: float = 0.03
    centres: tuple[float, ...] = (0.0, 0.02, *np.round(np.arange(0.05, 0.951, 0.05), 3), 1.0)

    @classmethod
    def from_csv(cls, path: Path = OCV_TABLE, temperature_K: float = 298.15
                 ) -> OpenCircuitVoltage:
        text = path.read_text().splitlines()
        comments = [ln[1:].strip() for ln in text if ln.startswith("#")]
        rows = [ln for ln in text if ln.strip() and not ln.startswith("#")]
        reader = csv.DictReader(rows)
        data = np.array([[float(r["theta"]), float(r["U_V"])] for r in reader])
        theta, u = data[:, 0], data[:, 1]
        if not (np.all(np.diff(theta) > 0) and theta[0] > 0 and theta[-1] < 1):
            raise ValueError(f"{path}: theta must increase strictly inside (0, 1)")
        return cls(theta=theta, u_V=u, source=" ".join(comments), temperature_K=temperature_K)

    @property
    def nernst_V(self) -> float:
        return GAS_CONSTANT_J_MOL_K * self.temperature_K / FARADAY_C_MOL

    def _basis(self, theta: np.ndarray) -> np.ndarray:
        cols = [np.ones_like(theta), theta]
        cols += [np.tanh((theta - m) / self.width) for m in self.centres]
        return np.column_stack(cols)

    @cached_property
    def coefficients(self) -> np.ndarray:
        """Monotone fit: a1 <= 0 and every b_k <= 0, so U decreases strictly in theta
        (non-negative least squares on the negated columns; a0 split into two signs)."""
        from scipy.optimize import nnls

        target = self.u_V - self.nernst_V * np.log((1 - self.theta) / self.theta)
        a = self._basis(self.theta)
        signed = np.column_stack([a[:, 0], -a[:, 0], -a[:, 1:]])
        x, _ = nnls(signed, target)
        return np.concatenate([[x[0] - x[1]], -x[2:]])

    def __call__(self, theta: np.ndarray | float) -> np.ndarray:
        t = np.clip(np.asarray(theta, dtype=float), 1e-9, 1 - 1e-9)
        flat = t.reshape(-1)
        u = self._basis(flat) @ self.coefficients + self.nernst_V * np.log((1 - flat) / flat)
        return u.reshape(t.shape)

    def ufl(self, theta):
        """The same function as a UFL expression of ``theta`` (clamped to [1e-6, 1-1e-6])."""
        import ufl

        t = ufl.max_value(ufl.min_value(theta, 1 - 1e-6), 1e-6)
        c = self.coefficients
        u = c[0] + c[1] * t
        for b, m in zip(c[2:], self.centres, strict=True):
            u = u + b * ufl.tanh((t - m) / self.width)
        return u + self.nernst_V * ufl.ln((1 - t) / t)

    def max_fit_error_V(self) -> float:
        return float(np.max(np.abs(self(self.theta) - self.u_V)))


@dataclass(frozen=True, kw_only=True)
class ElectrolyteParameters:
    """Binary-salt polymer electrolyte (concentrated-solution theory, constant t+)."""

    conductivity: Parameter  # S/cm
    diffusivity: Parameter  # cm2/s, salt diffusion coefficient
    transference: Parameter  # 1, cation transference number t+
    thermodynamic_factor: Parameter  # 1, 1 + dln f / dln c
    activation_energy: Parameter  # kJ/mol, Arrhenius for conductivity and diffusivity


@dataclass(frozen=True, kw_only=True)
class CellParameters:
    """Everything the half-cell model needs, at ``temperature_K``."""

    temperature_K: float = 298.15
    reference_temperature_K: float = 298.15
    molar_mass_g_mol: Parameter
    density_g_cm3: Parameter
    li_per_formula_max: Parameter
    solid_diffusivity: Parameter  # cm2/s
    ocv: OpenCircuitVoltage
    exchange_current_cathode: Parameter  # A/m2 at theta = 0.5, c_e = salt_concentration
    alpha_anodic: Parameter
    alpha_cathodic: Parameter
    exchange_current_anode: Parameter  # A/m2 at c_e = salt_concentration
    salt_concentration: Parameter  # mol/m3, initial and reference c_e
    spe: ElectrolyteParameters
    separator: ElectrolyteParameters
    double_layer_capacitance: Parameter  # F/m2
    conductivities: Conductivities = field(default_factory=default_conductivities)

    # --- derived quantities -------------------------------------------------------------
    @property
    def c_max_mol_m3(self) -> float:
        """Li sites per volume: x_max * rho / M."""
        rho_g_m3 = self.density_g_cm3.value * 1e6
        return self.li_per_formula_max.value * rho_g_m3 / self.molar_mass_g_mol.value

    @property
    def theoretical_capacity_mAh_g(self) -> float:
        return (self.li_per_formula_max.value * FARADAY_C_MOL
                / (3.6 * self.molar_mass_g_mol.value))

    @property
    def thermal_voltage_V(self) -> float:
        return GAS_CONSTANT_J_MOL_K * self.temperature_K / FARADAY_C_MOL

    def arrhenius(self, e: ElectrolyteParameters) -> float:
        """Factor on conductivity and diffusivity at ``temperature_K``."""
        ea = e.activation_energy.value * 1e3
        return math.exp(-ea / GAS_CONSTANT_J_MOL_K
                        * (1 / self.temperature_K - 1 / self.reference_temperature_K))

    def at_temperature(self, temperature_K: float) -> CellParameters:
        if not (200.0 <= temperature_K <= 450.0):
            raise ValueError(f"temperature_K = {temperature_K}: must be in [200, 450] K")
        ocv = replace(self.ocv, temperature_K=temperature_K)
        return replace(self, temperature_K=temperature_K, ocv=ocv)

    def with_overrides(self, table: Mapping[str, Any], where: str = "parameters"
                       ) -> CellParameters:
        """These parameters with the values of a case's ``[parameters]`` table replaced,
        e.g. ``[parameters.spe.diffusivity]`` with ``value = 1e-8`` (in the parameter's
        unit, or a quantity string such as ``"1e-12 m^2/s"``) and ``source = "..."``
        (required: every value has a citation; it is recorded as ``CASE: <source>``). The
        values are those at the reference temperature (25 C); ``temperature_K`` scales them
        as before. Names and allowed ranges: :data:`OVERRIDABLE`. Mistakes raise a
        one-line :class:`~meshes.spec.SpecError`."""
        from meshes.spec import SpecError, parse_quantity

        out = self
        for name, entry in flatten_overrides(table, where):
            at = f"{where}.{name}"
            if name not in OVERRIDABLE:
                raise SpecError(f"{at}: not a parameter a case can set; allowed: "
                                f"{sorted(OVERRIDABLE)}")
            if not isinstance(entry, dict) or set(entry) - {"value", "source"} \
                    or "value" not in entry or "source" not in entry:
                raise SpecError(f"{at}: expected a table with 'value' and 'source' (the "
                                f"citation of the value), got {entry!r}")
            source = entry["source"]
            if not isinstance(source, str) or not source.strip():
                raise SpecError(f"{at}.source: must name where the value comes from")
            layer, _, field_name = name.rpartition(".")
            old_p = getattr(getattr(self, layer) if layer else self, field_name)
            value = parse_quantity(f"{at}.value", entry["value"], old_p.unit)
            lo, hi, lo_open, hi_open = OVERRIDABLE[name]
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) \
                    or value < lo or (lo_open and value == lo) \
                    or value > hi or (hi_open and value == hi):
                raise SpecError(f"{at}.value = {entry['value']!r}: must be in "
                                f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
                                f" {old_p.unit}")
            new_p = Parameter(value=float(value), unit=old_p.unit, source=f"CASE: {source}")
            changes: dict[str, Any] = (
                {layer: replace(getattr(out, layer), **{field_name: new_p})} if layer
                else {field_name: new_p})
            out = replace(out, **changes)
        return out

    def sources(self) -> dict[str, dict[str, object]]:
        """Name -> value, unit, source: for summaries and the README table."""
        out: dict[str, dict[str, object]] = {}
        for name in ("molar_mass_g_mol", "density_g_cm3", "li_per_formula_max",
                     "solid_diffusivity", "exchange_current_cathode", "alpha_anodic",
                     "alpha_cathodic", "exchange_current_anode", "salt_concentration",
                     "double_layer_capacitance"):
            p = getattr(self, name)
            out[name] = {"value": p.value, "unit": p.unit, "source": p.source}
        for layer in ("spe", "separator"):
            e = getattr(self, layer)
            for name in ("conductivity", "diffusivity", "transference",
                         "thermodynamic_factor", "activation_energy"):
                p = getattr(e, name)
                out[f"{layer}.{name}"] = {"value": p.value, "unit": p.unit, "source": p.source}
        out["ocv"] = {"value": "table", "unit": "V", "source": self.ocv.source}
        return out


#: Parameters a case file may set (``[parameters]``, see
#: :meth:`CellParameters.with_overrides`): name -> (lower, upper, lower open, upper open) in
#: the parameter's unit. Molar mass and density are not here: the meshes take the active
#: mass from :mod:`meshes.materials`.
OVERRIDABLE: dict[str, tuple[float, float, bool, bool]] = {
    "li_per_formula_max": (0.0, 10.0, True, False),
    "solid_diffusivity": (0.0, 1e-5, True, False),
    "exchange_current_cathode": (0.0, 1e4, True, False),
    "exchange_current_anode": (0.0, 1e4, True, False),
    "alpha_anodic": (0.0, 1.0, True, True),
    "alpha_cathodic": (0.0, 1.0, True, True),
    "salt_concentration": (0.0, 1e4, True, False),
    "double_layer_capacitance": (0.0, 10.0, True, False),
    **{f"{layer}.{name}": bounds for layer in ("spe", "separator") for name, bounds in (
        ("conductivity", (0.0, 1.0, True, False)),
        ("diffusivity", (0.0, 1e-3, True, False)),
        ("transference", (0.0, 1.0, True, True)),
        ("thermodynamic_factor", (0.0, 10.0, True, False)),
        ("activation_energy", (0.0, 200.0, False, False)))},
}


#: The plausible range of the assumed (or widely scattered) transport and kinetic
#: parameters of the set that act in a discharge: name (as in :data:`OVERRIDABLE`) ->
#: (values in the parameter's unit, why this range). ``cathodefem rate --sensitivity``
#: varies them one at a time by default. Not here: the activation energies (they act only
#: away from the reference temperature, 25 C), the double-layer capacitance (impedance
#: only), ``li_per_formula_max`` (it sets the capacity scale of every result; with the OCV
#: table, an assumption of its own), ``alpha_anodic`` and the separator's t+ and
#: thermodynamic factor (set as the cathode polymer's; vary them with a
#: ``[[sensitivity.vary]]`` table).
ASSUMPTION_RANGES: dict[str, tuple[tuple[float, ...], str]] = {
    "spe.diffusivity": (
        (1e-10, 1e-8),
        "a decade either side of the set's 1e-9 cm2/s, itself 90 C data (Pesko et al. 2017) "
        "scaled to 25 C by the conductivity's factor of about 100"),
    "spe.transference": (
        (0.1, 0.3),
        "t+ of PEO/LiTFSI near EO:Li 10:1, 0.1-0.3 (Pesko et al. 2017, Bruce-Vincent)"),
    "spe.thermodynamic_factor": (
        (0.5, 2.0),
        "ASSUMPTION bracket: half and twice the ideal-solution value (1)"),
    "separator.diffusivity": (
        (1e-9, 1e-7),
        "a decade either side of the set's 1e-8 cm2/s (the SPE value scaled by the "
        "separator/SPE conductivity ratio)"),
    "solid_diffusivity": (
        (1e-12, 1e-10),
        "the apparent Li diffusivity of the gradient cathode from GITT, 0.1-10 x 1e-11 "
        "cm2/s (Cheng et al. 2021, Fig. 3i)"),
    "exchange_current_cathode": (
        (0.001, 0.1),
        "a decade either side of the set's 0.01 A/m2 (derived from one R_ct with an assumed "
        "coin-cell area and wire surface)"),
    "alpha_cathodic": (
        (0.3, 0.7),
        "ASSUMPTION bracket about the symmetric barrier (0.5), alpha_anodic kept at 0.5: the "
        "cathodic branch is the one a discharge drives at the wires"),
    "exchange_current_anode": (
        (0.5, 50.0),
        "a decade either side of the set's 5 A/m2 (Li metal / wetted polymer electrolyte)"),
}


def flatten_overrides(table: Mapping[str, Any], where: str) -> list[tuple[str, Any]]:
    """``{"spe": {"diffusivity": {...}}, "solid_diffusivity": {...}}`` ->
    ``[("spe.diffusivity", {...}), ("solid_diffusivity", {...})]``."""
    from meshes.spec import SpecError

    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: expected a table, got {table!r}")
    out: list[tuple[str, Any]] = []
    for key, v in table.items():
        if key in ("spe", "separator"):
            if not isinstance(v, Mapping):
                raise SpecError(f"{where}.{key}: expected a table of its parameters")
            out += [(f"{key}.{k}", e) for k, e in v.items()]
        else:
            out.append((key, v))
    return out


def _spe_salt_concentration_mol_m3(eo_per_li: float = 10.0) -> float:
    """LiTFSI per volume of PEO/LiTFSI at EO:Li = ``eo_per_li`` (from the blend density)."""
    mass_g = eo_per_li * EO_MOLAR_MASS_G_MOL + LITFSI_MOLAR_MASS_G_MOL  # per mol Li
    volume_cm3 = mass_g / spe_density_g_cm3(eo_per_li)
    return 1e6 / volume_cm3


def default_parameters(temperature_K: float = 298.15) -> CellParameters:
    """The project's parameter set (room temperature unless ``temperature_K`` is given)."""
    cond = default_conductivities()
    from meshes.tags import Phase

    spe = ElectrolyteParameters(
        conductivity=cond.ionic_S_cm[Phase.SPE],
        diffusivity=Parameter(
            value=1e-9, unit="cm2/s",
            source="ASSUMPTION: salt diffusivity of PEO/LiTFSI about 1e-7 cm2/s at 90 C "
            "(D. M. Pesko et al., J. Electrochem. Soc. 164 (2017) E3569), scaled to 25 C by the "
            "same factor (about 100) as the conductivity"),
        transference=Parameter(
            value=0.2, unit="1",
            source="PEO/LiTFSI near EO:Li 10:1, t+ about 0.1-0.3 (Pesko et al. 2017, "
            "Bruce-Vincent values)"),
        thermodynamic_factor=Parameter(
            value=1.0, unit="1", source="ASSUMPTION: ideal solution (1 + dlnf/dlnc = 1)"),
        activation_energy=Parameter(
            value=60.0, unit="kJ/mol",
            source="ASSUMPTION: PEO/LiTFSI below the PEO melting point, 50-80 kJ/mol "
            "(Arrhenius fit of semicrystalline PEO electrolytes)"),
    )
    separator = ElectrolyteParameters(
        conductivity=cond.ionic_S_cm[Phase.SEPARATOR],
        diffusivity=Parameter(
            value=1e-8, unit="cm2/s",
            source="ASSUMPTION: SPE value scaled by the separator/SPE conductivity ratio (10)"),
        transference=Parameter(value=0.2, unit="1", source="ASSUMPTION: as the cathode SPE"),
        thermodynamic_factor=Parameter(value=1.0, unit="1",
                                       source="ASSUMPTION: ideal solution"),
        activation_energy=Parameter(
            value=40.0, unit="kJ/mol",
            source="ASSUMPTION: PEO/LiTFSI/LLZTO composite, 30-50 kJ/mol; the paper measured "
            "20-80 C (Fig. S4) but gives no activation energy"),
    )
    params = CellParameters(
        molar_mass_g_mol=Parameter(
            value=MOLAR_MASS_H2V3O8_G_MOL, unit="g/mol",
            source="H2V3O8 from IUPAC standard atomic weights"),
        density_g_cm3=Parameter(
            value=h2v3o8_density_g_cm3(), unit="g/cm3",
            source="orthorhombic H2V3O8 unit cell (meshes.materials)"),
        li_per_formula_max=Parameter(
            value=4.5, unit="1",
            source="ASSUMPTION: 4.5 Li per H2V3O8, the insertion limit usually quoted for "
            "H2V3O8 (theoretical 426 mAh/g); the paper delivers about 300 mAh/g (3.2 Li) "
            "between 4.0 and 1.5 V"),
        solid_diffusivity=Parameter(
            value=1e-11, unit="cm2/s",
            source="apparent Li diffusivity of the gradient NW cathode from GITT, "
            "0.1-10 x 1e-11 cm2/s: Cheng et al. 2021, Fig. 3i (mid-range value)"),
        ocv=OpenCircuitVoltage.from_csv(temperature_K=temperature_K),
        exchange_current_cathode=Parameter(
            value=0.01, unit="A/m2",
            source="ASSUMPTION derived from the paper's charge-transfer resistance: "
            "R_ct = 125 ohm (Cheng et al. 2021, Fig. 3j) = RT/(F i0 A_int) with a 12 mm "
            "coin-cell cathode (1.13 cm2, assumed) and the wire surface of 1.5 mg/cm2 of "
            "100 nm wires (4 phi / d over 34 um: about 177 m2 per m2) gives i0 = 0.01 A/m2"),
        alpha_anodic=Parameter(value=0.5, unit="1", source="ASSUMPTION: symmetric barrier"),
        alpha_cathodic=Parameter(value=0.5, unit="1", source="ASSUMPTION: symmetric barrier"),
        exchange_current_anode=Parameter(
            value=5.0, unit="A/m2",
            source="ASSUMPTION: Li metal / polymer electrolyte wetted by ionic liquid, "
            "0.1-1 mA/cm2; the paper's Li|SSE|Li polarization (about 50 mV at 0.2 mA, "
            "Fig. S6) bounds the sum of bulk and interface resistance"),
        salt_concentration=Parameter(
            value=_spe_salt_concentration_mol_m3(10.0), unit="mol/m3",
            source="LiTFSI in PEO at EO:Li 10:1 from the blend density (meshes.materials)"),
        spe=spe,
        separator=separator,
        double_layer_capacitance=Parameter(
            value=0.1, unit="F/m2",
            source="ASSUMPTION: 10 uF/cm2, typical of oxide/polymer-electrolyte interfaces "
            "(used by the impedance experiment)"),
        conductivities=cond,
    )
    return params if temperature_K == 298.15 else params.at_temperature(temperature_K)
