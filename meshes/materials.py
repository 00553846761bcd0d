"""Densities of the cathode constituents, each with its source.

Only what the geometry needs (mass -> volume). Transport parameters live in
:mod:`fem.parameters`. Densities are derived where the literature gives the structure
(H2V3O8 from its unit cell), cited where it gives the value.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DENSITIES", "Density", "h2v3o8_density_g_cm3", "spe_density_g_cm3"]

AVOGADRO_PER_MOL = 6.02214076e23
#: Molar masses from IUPAC 2021 standard atomic weights (H 1.008, Li 6.94, C 12.011,
#: O 15.999, F 18.998, S 32.06, N 14.007, V 50.942).
MOLAR_MASS_H2V3O8_G_MOL = 2 * 1.008 + 3 * 50.942 + 8 * 15.999
MOLAR_MASS_EO_G_MOL = 2 * 12.011 + 4 * 1.008 + 15.999  # -CH2-CH2-O- repeat unit
MOLAR_MASS_LITFSI_G_MOL = 6.94 + 2 * 12.011 + 6 * 18.998 + 4 * 15.999 + 2 * 32.06 + 14.007


@dataclass(frozen=True, kw_only=True)
class Density:
    value_g_cm3: float
    source: str


def h2v3o8_density_g_cm3() -> float:
    """Crystal density of orthorhombic H2V3O8 from its unit cell.

    Lattice a = 16.93, b = 9.36, c = 3.64 Angstrom, Z = 4 (space group Pnam): Y. Oka, T. Yao,
    N. Yamamoto, "Structure determination of H2V3O8 by powder X-ray diffraction",
    J. Solid State Chem. 89 (1990) 372. The paper's phase is PDF#85-2401, the same structure.
    """
    volume_cm3 = 16.93e-8 * 9.36e-8 * 3.64e-8
    return 4 * MOLAR_MASS_H2V3O8_G_MOL / (AVOGADRO_PER_MOL * volume_cm3)


def spe_density_g_cm3(eo_per_li: float = 10.0) -> float:
    """Density of PEO/LiTFSI at the given EO:Li ratio, assuming additive volumes.

    PEO 1.21 g/cm3 (semicrystalline, J. E. Mark (ed.), Physical Properties of Polymers
    Handbook, 2nd ed., Springer 2007, ch. poly(ethylene oxide)); LiTFSI 1.33 g/cm3
    (manufacturer data, e.g. Sigma-Aldrich 449504). Additive volumes is an assumption:
    salt-polymer complexes are slightly denser, which would lower the porosity a little.
    """
    m_peo = eo_per_li * MOLAR_MASS_EO_G_MOL
    m_salt = MOLAR_MASS_LITFSI_G_MOL
    return (m_peo + m_salt) / (m_peo / 1.21 + m_salt / 1.33)


DENSITIES: dict[str, Density] = {
    "h2v3o8": Density(
        value_g_cm3=h2v3o8_density_g_cm3(),
        source="unit cell of Oka, Yao, Yamamoto, J. Solid State Chem. 89 (1990) 372",
    ),
    "rgo": Density(
        value_g_cm3=2.2,
        source="graphite 2.26 g/cm3 (CRC Handbook of Chemistry and Physics); rGO taken "
        "slightly lower for residual defects (assumption)",
    ),
    "carbon_black": Density(
        value_g_cm3=1.95,
        source="acetylene black true density 1.9-2.0 g/cm3: J.-B. Donnet, R. C. Bansal, "
        "M.-J. Wang, Carbon Black, 2nd ed., Marcel Dekker 1993",
    ),
    "spe": Density(
        value_g_cm3=spe_density_g_cm3(10.0),
        source="PEO 1.21 and LiTFSI 1.33 g/cm3, additive volumes at EO:Li = 10:1",
    ),
}
