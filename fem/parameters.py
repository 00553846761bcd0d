"""Transport parameters shared by both cathodes: one set, every value with unit and source.

Conductivities in S/cm (the unit of the reference paper and of most battery literature).
Values the paper does not give are literature values or named assumptions; none is tuned
per cathode. Temperature: room temperature (25 C).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshes.tags import Phase

__all__ = ["Conductivities", "Parameter", "default_conductivities"]


@dataclass(frozen=True, kw_only=True)
class Parameter:
    value: float
    unit: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Conductivities:
    """Electronic and ionic conductivity of each phase (S/cm), with sources."""

    electronic_S_cm: dict[Phase, Parameter] = field(default_factory=dict)
    ionic_S_cm: dict[Phase, Parameter] = field(default_factory=dict)

    def electronic(self, *, leakage: bool = False) -> dict[int, float]:
        """Phase -> sigma (S/cm). ``leakage`` keeps the tiny electronic conductivity of the
        polymer (needed for the surface I-V, where the paper measured it through PEO)."""
        out = {int(p): v.value for p, v in self.electronic_S_cm.items()}
        if not leakage:
            out = {p: s for p, s in out.items() if p not in (Phase.SPE, Phase.SEPARATOR)}
        return {p: s for p, s in out.items() if s > 0}

    def ionic(self) -> dict[int, float]:
        return {int(p): v.value for p, v in self.ionic_S_cm.items() if v.value > 0}


def default_conductivities() -> Conductivities:
    e = {
        Phase.NANOWIRE: Parameter(
            value=1e-3, unit="S/cm",
            source="ASSUMPTION: mixed-valence vanadium oxides conduct by small-polaron hopping, "
            "1e-4..1e-2 S/cm (J. Livage, Chem. Mater. 3 (1991) 578); no value for H2V3O8 "
            "nanowires is given by the reference paper"),
        Phase.RGO: Parameter(
            value=24.2, unit="S/cm",
            source="chemically reduced graphene oxide, 2420 S/m: S. Stankovich et al., "
            "Carbon 45 (2007) 1558"),
        Phase.CARBON_BLACK: Parameter(
            value=10.0, unit="S/cm",
            source="compacted conductive carbon black, 1-10 S/cm: C. Pantea et al., "
            "Appl. Surf. Sci. 217 (2003) 181 (upper end: aggregate interior)"),
        Phase.AL_FOIL: Parameter(
            value=3.77e5, unit="S/cm",
            source="aluminium, 20 C: CRC Handbook of Chemistry and Physics"),
        Phase.SPE: Parameter(
            value=1e-10, unit="S/cm",
            source="ASSUMPTION: electronic leakage of PEO/LiTFSI, below the 1e-9 S/cm "
            "sensitivity of Hebb-Wagner polarisation on PEO electrolytes; used only in the "
            "surface I-V experiment, whose face ratio scales with it"),
        Phase.SEPARATOR: Parameter(value=1e-10, unit="S/cm", source="as SPE (assumption)"),
    }
    i = {
        Phase.SPE: Parameter(
            value=1e-5, unit="S/cm",
            source="PEO/LiTFSI EO:Li 10:1 near 25 C, 1e-6..1e-5 S/cm (semicrystalline): "
            "D. Devaux et al., Solid State Ionics 227 (2012) 119"),
        Phase.SEPARATOR: Parameter(
            value=1.03e-4, unit="S/cm",
            source="PEO/LiTFSI/LLZTO separator, EIS at RT: Cheng et al., Adv. Energy Mater. "
            "2021, 2100026, Fig. S4"),
    }
    return Conductivities(electronic_S_cm=e, ionic_S_cm=i)
