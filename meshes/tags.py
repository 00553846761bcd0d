"""Phase (cell) and facet tags shared by meshes, solvers, output files and tests.

The integers are fixed by the modelling brief (shared/MODEL.md section 1) and never change:
they are written into every mesh file and every XDMF output, where ParaView shows them.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ELECTRONIC_PHASES",
    "IONIC_PHASES",
    "Facet",
    "Phase",
    "phase_names",
]


class Phase(IntEnum):
    """Cell tags: one per material phase."""

    NANOWIRE = 1  # H2V3O8 active material: electrons, Li in the solid
    RGO = 2  # reduced graphene oxide: electrons
    SPE = 3  # PEO/LiTFSI (EO:Li 10:1) inside the cathode: ions
    VOID = 4  # unfilled pore: nothing
    CARBON_BLACK = 5  # acetylene black (tape-cast cathode): electrons
    SEPARATOR = 6  # PEO/LiTFSI/LLZTO solid electrolyte layer: ions
    AL_FOIL = 7  # aluminium current collector (tape-cast cathode): electrons

    @property
    def label(self) -> str:
        """Physical-group name written to mesh files (ParaView, gmsh)."""
        return self.name.lower()


class Facet(IntEnum):
    """Facet tags: outer boundaries and the interfaces that matter."""

    BOTTOM = 11  # z = 0, current-collector side
    TOP = 12  # z = T, separator side (polymer-rich face of the gradient membrane)
    LEFT = 13  # x = 0
    RIGHT = 14  # x = W
    FRONT = 15  # y = 0 (3D)
    BACK = 16  # y = D (3D)
    ACTIVE_ELECTROLYTE = 21  # active material / SPE: where the reaction happens
    ELECTRONIC_CONTACT = 22  # electronic conductor / other electronic conductor
    CATHODE_SEPARATOR = 23  # cathode (not a wire: that is ACTIVE_ELECTROLYTE) / separator
    CATHODE_COLLECTOR = 24  # cathode / Al current collector

    @property
    def label(self) -> str:
        return self.name.lower()


#: Phases that carry electrons (electronic conduction problem).
ELECTRONIC_PHASES: tuple[Phase, ...] = (
    Phase.NANOWIRE,
    Phase.RGO,
    Phase.CARBON_BLACK,
    Phase.AL_FOIL,
)
#: Phases that carry Li+ ions (ionic conduction problem).
IONIC_PHASES: tuple[Phase, ...] = (Phase.SPE, Phase.SEPARATOR)


def phase_names() -> dict[int, str]:
    """Map tag -> name, for legends and output metadata."""
    return {int(p): p.label for p in Phase}
