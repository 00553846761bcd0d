"""Frozen, validated microstructure specifications, loadable from TOML.

Every numeric field carries its unit in its name (``_um``, ``_mg_cm2``, ``_deg``) or is a
dimensionless fraction. Defaults are those of the reference paper (Cheng et al., Adv. Energy
Mater. 2021, 2100026): 34 um membrane, 100 nm x 5-10 um H2V3O8 nanowires, 1.5 mg/cm2 active
loading, 2.5 wt% rGO, tape-cast 70/15/15 wt% NW/rGO : acetylene black : PEO/LiTFSI.

Validation lives in one place (:class:`_Spec`): each field declares its allowed range and unit,
and a violation raises :class:`SpecError` with a one-line message naming the field.
Quantities derived from a spec (volume fractions, tape-cast thickness) are computed by
:func:`derive_gradient` / :func:`derive_homogeneous`, never assumed.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from meshes.materials import DENSITIES
from meshes.tags import Phase

__all__ = [
    "BoxSpec",
    "CaseSpec",
    "ConductionSpec",
    "EisSpec",
    "ElectrochemistrySpec",
    "GittSpec",
    "GradientDerived",
    "GradientSpec",
    "HomogeneousDerived",
    "HomogeneousSpec",
    "NanowireSpec",
    "SectionSpec",
    "SpecError",
    "SymmetricSpec",
    "derive_gradient",
    "derive_homogeneous",
    "first_difference",
    "load_case",
    "parse_quantity",
    "read_case_toml",
    "with_seed",
]


#: a case name (a folder under results/)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
#: a quantity string: a plain number, then units (pint parses only the units)
_QUANTITY = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
                       r"([A-Za-z_%µμ°][A-Za-z0-9_%µμ°/*^.()\s-]*)?\s*")
#: a unit exponent larger than 2 digits, or a power of a power (pint would evaluate it)
_BIG_POWER = re.compile(r"(\*\*|\^)\s*[-+]?\d{3,}|(\*\*|\^)\s*[-+]?\d+\s*(\*\*|\^)")


class SpecError(ValueError):
    """A user-facing input error: the message is one line naming the field and allowed range."""


def _num(default: float, lo: float, hi: float, unit: str, *, lo_open: bool = False,
         hi_open: bool = False, integer: bool = False) -> Any:
    return field(default=default, metadata={"lo": lo, "hi": hi, "unit": unit, "lo_open": lo_open,
                                            "hi_open": hi_open, "integer": integer})


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"choices": choices})


def _range_text(md: Mapping[str, Any]) -> str:
    left = "(" if md["lo_open"] else "["
    right = ")" if md["hi_open"] else "]"
    unit = "" if md["unit"] in ("1", "") else f" {md['unit']}"
    if md["integer"]:
        return f"{left}{int(md['lo'])}, {int(md['hi'])}{right}{unit}"
    return f"{left}{md['lo']:g}, {md['hi']:g}{right}{unit}"


@dataclass(frozen=True, kw_only=True)
class _Spec:
    """Base: range-checks every declared field after construction."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            md = f.metadata
            if "choices" in md:
                if value not in md["choices"]:
                    raise SpecError(f"{f.name} = {value!r}: must be one of {list(md['choices'])}")
            elif "lo" in md:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise SpecError(f"{f.name} = {value!r}: must be a number in {_range_text(md)}")
                try:
                    finite = math.isfinite(value)
                except OverflowError:  # an integer too large for a float
                    finite = False
                if not finite:
                    shown = repr(value) if isinstance(value, float) else "a number that large"
                    raise SpecError(f"{f.name} = {shown}: must be in {_range_text(md)}")
                if md["integer"] and value != int(value):
                    raise SpecError(f"{f.name} = {value!r}: must be an integer in "
                                    f"{_range_text(md)}")
                if md["integer"]:
                    object.__setattr__(self, f.name, int(value))  # 2.0 from a file: 2
                bad = (value < md["lo"] or value > md["hi"]
                       or (md["lo_open"] and value == md["lo"])
                       or (md["hi_open"] and value == md["hi"]))
                if bad:
                    raise SpecError(f"{f.name} = {value!r}: must be in {_range_text(md)}")
        self._check()

    def _check(self) -> None:
        """Cross-field checks (override)."""


@dataclass(frozen=True, kw_only=True)
class NanowireSpec(_Spec):
    """H2V3O8 nanowires: size distributions and orientation distribution."""

    diameter_um: float = _num(0.1, 0.01, 2.0, "um")
    #: coefficient of variation of the (log-normal) diameter distribution
    diameter_cv: float = _num(0.1, 0.0, 0.5, "1")
    #: lengths are uniform in [length_min_um, length_max_um] (paper: 5-10 um)
    length_min_um: float = _num(5.0, 0.1, 100.0, "um")
    length_max_um: float = _num(10.0, 0.1, 100.0, "um")
    #: in_plane: random azimuth, small tilt (vacuum filtration); isotropic: uniform on the
    #: sphere; aligned: along x with spread tilt_sd_deg
    orientation: str = _choice("in_plane", ("in_plane", "isotropic", "aligned"))
    #: standard deviation of the tilt out of the membrane plane (in_plane) or off x (aligned)
    tilt_sd_deg: float = _num(8.0, 0.0, 90.0, "deg")

    def _check(self) -> None:
        if self.length_max_um < self.length_min_um:
            raise SpecError(f"length_max_um = {self.length_max_um}: must be >= length_min_um "
                            f"= {self.length_min_um}")
        if self.length_min_um < 2 * self.diameter_um:
            raise SpecError(f"length_min_um = {self.length_min_um}: must be >= 2 x diameter_um "
                            f"(wires, not particles)")


@dataclass(frozen=True, kw_only=True)
class GradientSpec(_Spec):
    """Freestanding gradient NW/rGO membrane infiltrated with PEO/LiTFSI (the paper's cathode)."""

    thickness_um: float = _num(34.0, 1.0, 1000.0, "um", lo_open=False)
    loading_mg_cm2: float = _num(1.5, 0.0, 50.0, "mg/cm2", lo_open=True)
    #: rGO mass fraction of the NW/rGO composite (paper TG: 2.5 wt%)
    rgo_wt_fraction: float = _num(0.025, 0.0, 0.5, "1")
    nanowire: NanowireSpec = field(default_factory=NanowireSpec)
    #: SPE shell on every wire and sheet
    coating_thickness_um: float = _num(0.02, 0.0, 1.0, "um")
    #: rGO sheets: square-ish flakes of this lateral size; thickness is a meshable effective
    #: value (the number of sheets is set by the rGO volume, so the volume is exact)
    rgo_sheet_size_um: float = _num(1.0, 0.05, 20.0, "um")
    rgo_sheet_thickness_um: float = _num(0.02, 0.002, 0.5, "um")
    #: pure-SPE layer on the polymer-rich (top, separator-side) face
    skin_thickness_um: float = _num(1.0, 0.0, 100.0, "um")
    #: polymer-lean zone at the bottom (current-collector side): fill rises from fill_min
    #: at z = 0 to 1 at z = lean_zone_um
    lean_zone_um: float = _num(3.0, 0.0, 100.0, "um")
    fill_min: float = _num(0.1, 0.0, 1.0, "1")
    #: correlation length of the random field that places SPE in partially filled pores
    fill_correlation_um: float = _num(0.3, 0.01, 100.0, "um", lo_open=True)
    #: contacts and gaps narrower than this are closed, so every contact meshes
    contact_width_um: float = _num(0.02, 0.0, 1.0, "um")

    def _check(self) -> None:
        if self.skin_thickness_um + self.lean_zone_um >= self.thickness_um:
            raise SpecError(f"skin_thickness_um + lean_zone_um = "
                            f"{self.skin_thickness_um + self.lean_zone_um}: must be < "
                            f"thickness_um = {self.thickness_um}")
        phi = derive_gradient(self).nanowire_volume_fraction_composite
        if phi >= 0.6:
            raise SpecError(f"loading_mg_cm2 = {self.loading_mg_cm2}: gives a nanowire volume "
                            f"fraction {phi:.2f} in the composite layer; infeasible packing, "
                            f"must give < 0.6 (raise thickness_um or lower the loading)")


@dataclass(frozen=True, kw_only=True)
class HomogeneousSpec(_Spec):
    """Tape-cast cathode on Al foil: NW/rGO, acetylene black and PEO/LiTFSI by weight."""

    loading_mg_cm2: float = _num(1.5, 0.0, 50.0, "mg/cm2", lo_open=True)
    nw_rgo_wt_fraction: float = _num(0.70, 0.0, 1.0, "1", lo_open=True)
    carbon_black_wt_fraction: float = _num(0.15, 0.0, 1.0, "1")
    spe_wt_fraction: float = _num(0.15, 0.0, 1.0, "1")
    rgo_wt_fraction: float = _num(0.025, 0.0, 0.5, "1")
    #: void volume fraction of the dried cast layer (assumption: 0.30, typical of calendered-free
    #: tape-cast composite cathodes, 25-40 %)
    porosity: float = _num(0.30, 0.0, 0.9, "1")
    nanowire: NanowireSpec = field(
        default_factory=lambda: NanowireSpec(orientation="isotropic"))
    #: NW/rGO agglomerates: wires cluster around centres with this radius (Thomas process)
    agglomerate_radius_um: float = _num(1.0, 0.05, 50.0, "um")
    carbon_black_aggregate_diameter_um: float = _num(0.3, 0.02, 10.0, "um")
    #: correlation length of the PEO-rich / PEO-lean clusters in the pore space
    peo_cluster_correlation_um: float = _num(1.0, 0.01, 100.0, "um", lo_open=True)
    #: film of PEO/LiTFSI wetting every solid of the cast layer, taken from its SPE share
    #: (the rest of the SPE forms the PEO-rich clusters). 0: no wetting, the polymer only in
    #: clusters (the default). ASSUMPTION, a hypothesis to test: the paper does not say how
    #: the PEO of the tape-cast cathode wets its particles (README, "Tape-cast wetting film")
    spe_film_thickness_um: float = _num(0.0, 0.0, 0.5, "um")
    #: modelled Al foil slab under the cast layer (an equipotential; real foil ~15 um)
    al_foil_thickness_um: float = _num(1.0, 0.0, 100.0, "um", lo_open=True)
    contact_width_um: float = _num(0.02, 0.0, 1.0, "um")
    rgo_sheet_size_um: float = _num(1.0, 0.05, 20.0, "um")
    rgo_sheet_thickness_um: float = _num(0.02, 0.002, 0.5, "um")

    def _check(self) -> None:
        total = self.nw_rgo_wt_fraction + self.carbon_black_wt_fraction + self.spe_wt_fraction
        if abs(total - 1.0) > 1e-9:
            raise SpecError(f"nw_rgo_wt_fraction + carbon_black_wt_fraction + spe_wt_fraction "
                            f"= {total:g}: must sum to 1")
        if self.porosity + derive_homogeneous(self).spe_volume_fraction <= 0.0:
            raise SpecError("porosity = 0 and spe_wt_fraction = 0: pores needed, must be > 0")


@dataclass(frozen=True, kw_only=True)
class SectionSpec(_Spec):
    """A full-thickness (x, z) section, and how it is built and meshed."""

    width_um: float = _num(10.0, 0.5, 1000.0, "um")
    #: cut: plane section of a 3D realization (ellipses and stripes);
    #: sticks: 2D stick-network analogue (wires as strips in the section plane);
    #: box: the plane y = plane_y_fraction x box.size_um of the full-thickness box of
    #: [box] (same realization and pore fill as its voxel image; no calibration)
    method: str = _choice("cut", ("cut", "sticks", "box"))
    #: method = "box": where the plane lies across the box (0 and 1: its y faces)
    plane_y_fraction: float = _num(0.5, 0.0, 1.0, "1")
    #: element size at interfaces (resolve the coating) and far from them
    mesh_size_fine_um: float = _num(0.04, 0.001, 10.0, "um")
    mesh_size_coarse_um: float = _num(0.5, 0.001, 100.0, "um")
    seed: int = _num(0, 0, 2**31 - 1, "1", integer=True)
    #: solid-electrolyte separator layer on top of the cathode (0: none). The paper's is
    #: about 100 um of PEO/LiTFSI/LLZTO; the electrochemistry cases resolve part of it.
    separator_um: float = _num(0.0, 0.0, 1000.0, "um")

    def _check(self) -> None:
        if self.mesh_size_coarse_um < self.mesh_size_fine_um:
            raise SpecError(f"mesh_size_coarse_um = {self.mesh_size_coarse_um}: must be >= "
                            f"mesh_size_fine_um = {self.mesh_size_fine_um}")


@dataclass(frozen=True, kw_only=True)
class BoxSpec(_Spec):
    """A 3D representative volume (RVE) of a cathode: a square box of lateral side
    ``size_um`` and height ``height_um`` (through the thickness), centred at
    ``z_center_fraction`` of the composite layer (0: collector side, 1: separator side)."""

    size_um: float = _num(5.0, 0.2, 200.0, "um")
    height_um: float = _num(5.0, 0.2, 1000.0, "um")
    z_center_fraction: float = _num(0.5, 0.0, 1.0, "1")
    #: voxel edge of the phase image (and of the hexahedral mesh solved on it)
    voxel_um: float = _num(0.05, 0.005, 5.0, "um", lo_open=False)
    seed: int = _num(0, 0, 2**31 - 1, "1", integer=True)
    #: the electronic conductivity is solved on voxels this many times finer than
    #: ``voxel_um`` (a mesh of the electronic voxels only, same realization): thin solids
    #: such as the 20 nm rGO flakes break apart on 50 nm voxels (meshes.voxels.sheet_caveat);
    #: everything else stays on ``voxel_um``. 1: the phase image itself
    electronic_subdivisions: int = _num(1, 1, 8, "1", integer=True)
    #: solid-electrolyte separator layer added on top when the box reaches the cathode's
    #: separator-side face (rounded to whole voxels on voxel boxes, exact on conforming
    #: boxes; 0: none)
    separator_um: float = _num(0.0, 0.0, 1000.0, "um")
    #: the mesh an RVE or a half-cell column is solved on: "voxels" (one hexahedron per
    #: voxel, both cathodes) or "conforming" (tetrahedra fitted to the wires and rGO sheets;
    #: gradient membrane, rGO with insulating sides only: meshes/conforming.py)
    mesh: str = _choice("voxels", ("voxels", "conforming"))
    #: element size at the wire surfaces of a conforming box (it grows to 0.1 um in the pore)
    conforming_size_um: float = _num(0.03, 0.005, 0.1, "um")
    #: lateral (x, y) sides of the RVE: "insulating" (no current crosses them), or
    #: "periodic": the microstructure is periodic in x and y (objects wrap around) and the
    #: solves use periodic constraints in the lateral directions other than the driven one
    #: (conforming boxes: Gmsh periodic surface meshes on the x and y faces)
    sides: str = _choice("insulating", ("insulating", "periodic"))

    def _check(self) -> None:
        n = (self.size_um / self.voxel_um) ** 2 * (self.height_um / self.voxel_um)
        # (the size of a conforming box is checked by CaseSpec: the height meshed is the
        # box's height clipped to the membrane's thickness, plus the separator)
        if n > 2.0e8 and self.mesh == "voxels":
            raise SpecError(f"voxel_um = {self.voxel_um:g}: gives {n:.3g} voxels for this box; "
                            f"must give <= 2e8 (raise voxel_um or shrink the box)")
        if self.electronic_subdivisions > 1 and self.mesh != "voxels":
            raise SpecError(f"electronic_subdivisions = {self.electronic_subdivisions}: must "
                            f"be 1 with mesh = '{self.mesh}' (it refines voxel boxes only)")


#: ``electrochemistry.voxel_surface = "auto"`` weights the voxel faces where the wire
#: diameter spans at least this many voxels: on the membrane's packed, touching wires the
#: weighted surface is 0.75, 0.89 and 0.95x the conforming one at 2, 4 and 8 voxels per
#: diameter (0.60x at 1), the bare faces 1.23, 1.32 and 1.38x (1.07x at 1)
#: (benchmarks/bench_conforming_halfcell.py; README "Half cells on conforming columns")
AUTO_WEIGHTED_WIRE_VOXELS = 3.0


@dataclass(frozen=True, kw_only=True)
class ElectrochemistrySpec(_Spec):
    """How the half-cell model runs (the material parameters are one shared set:
    :mod:`fem.electrochem.parameters`)."""

    #: ideal: every electronic phase touching the electrolyte is held at the collector
    #: potential (equipotential electronic network; needed on 2D sections, where wires that
    #: connect in 3D appear as islands); resolved: only the mesh's own connectivity
    electronic: str = _choice("ideal", ("ideal", "resolved"))
    #: section: the 2D section of [section]; box: the 3D voxel column of [box] (one hexahedron
    #: per voxel, cut from the same realization), which must hold the whole cathode
    #: (box.height_um >= its thickness) and gets box.separator_um of separator on top
    geometry: str = _choice("section", ("section", "box"))
    #: direct: MUMPS LU; iterative: FGMRES with block GAMG
    #: (fem.electrochem.halfcell.ITERATIVE_PETSC_OPTIONS), for 3D boxes
    linear_solver: str = _choice("direct", ("direct", "iterative"))
    #: the reacting surface of a voxel column (geometry = box, box.mesh = voxels): weighted:
    #: every wire/electrolyte voxel face weighted by the cosine between its normal and the
    #: wire surface's normal estimated from the image (meshes.voxels.surface_normals), so
    #: that the staircase reacts through the area of the round surface it stands for;
    #: faces: the voxel faces as they are (about 1.5x the area of an isolated round wire
    #: once it spans a few voxels, 1.2-1.4x on the membrane's touching wires); auto:
    #: weighted where the wire diameter spans at least
    #: AUTO_WEIGHTED_WIRE_VOXELS voxels, faces on coarser images (README, "Half cells on
    #: conforming columns"). No effect on 2D sections and conforming columns, whose facets
    #: are the surface.
    voxel_surface: str = _choice("auto", ("auto", "weighted", "faces"))
    temperature_K: float = _num(298.15, 200.0, 450.0, "K")
    #: write the fields every this many time steps (0: only at the start of every protocol
    #: step and at the end)
    fields_every: int = _num(0, 0, 10**6, "1", integer=True)


@dataclass(frozen=True, kw_only=True)
class ConductionSpec(_Spec):
    """The steady conduction studies (``cathodefem run`` on 2D sections, ``cathodefem rve``
    on 3D boxes)."""

    #: area-specific resistance of every contact between two different electronic phases
    #: (wire/rGO, wire/carbon black, rGO/carbon black, and the Al foil's contact with the
    #: cathode: facet tags electronic_contact and cathode_collector): the electronic
    #: potential jumps there by R_c x the current density (fem.conduction.solve_conduction).
    #: 0: perfect contacts. No value is measured for these materials; a study variable, not
    #: a material parameter of the set. Contacts between touching wires (one phase) are not
    #: facets of the meshes and stay perfect.
    contact_resistance_ohm_cm2: float = _num(0.0, 0.0, 1e3, "ohm cm2")
    #: where the contact resistance acts: "phases", between every two different electronic
    #: phases; "wires", only between the H2V3O8 wires and the other conductors (rGO, carbon
    #: black and the Al foil then share one potential: their contacts with each other are
    #: perfect)
    contacts: str = _choice("phases", ("phases", "wires"))

    def contact_groups(self) -> list[list[int]] | None:
        """Phases sharing one potential (``fem.conduction.solve_conduction``'s
        ``contact_groups``): None for "phases" (each phase its own)."""
        if self.contacts == "phases":
            return None
        return [[int(Phase.NANOWIRE)],
                [int(Phase.RGO), int(Phase.CARBON_BLACK), int(Phase.AL_FOIL)]]


@dataclass(frozen=True, kw_only=True)
class SymmetricSpec(_Spec):
    """The Li | SSE | Li polarization test (``cathodefem symmetric``; paper Fig. S6: about
    50 mV at 0.2 mA, 50 C, 2 h cycles). The defaults are the paper's conditions; the
    electrode area is not given there (ASSUMPTION: a 12 mm disc, 1.13 cm2, as for the
    cathode in :mod:`fem.electrochem.parameters`)."""

    separator_um: float = _num(100.0, 1.0, 5000.0, "um")  #: paper: about 100 um
    current_mA: float = _num(0.2, 0.0, 1000.0, "mA", lo_open=True)
    electrode_area_cm2: float = _num(1.13, 0.01, 1000.0, "cm2")
    temperature_K: float = _num(323.15, 200.0, 450.0, "K")
    #: duration of one current direction (paper: 2 h cycles, 1 h each way)
    half_cycle_h: float = _num(1.0, 0.0, 1000.0, "h", lo_open=True)
    cycles: int = _num(5, 1, 10000, "1", integer=True)
    steps_per_half_cycle: int = _num(60, 2, 100000, "1", integer=True)
    cells: int = _num(400, 2, 10**7, "1", integer=True)  #: 1D cells across the separator


@dataclass(frozen=True, kw_only=True)
class EisSpec(_Spec):
    """Virtual impedance spectroscopy of the half cell (``cathodefem eis``; paper Fig. 3j:
    Nyquist plots before cycling, R_ct about 125 ohm for the gradient and about 160 ohm for
    the homogeneous cathode). Geometry, electronic network and temperature are those of
    ``[electrochemistry]``; the material parameters are the one shared set."""

    #: open-circuit voltage of the equilibrium state (the paper: before cycling, about 3.2 V)
    voltage_V: float = _num(3.2, 1.5, 4.0, "V")
    #: frequency range and resolution (the paper: 0.1 Hz to 1 MHz)
    f_min_Hz: float = _num(0.1, 1e-6, 1e9, "Hz", lo_open=True)
    f_max_Hz: float = _num(1e6, 1e-6, 1e9, "Hz", lo_open=True)
    points_per_decade: int = _num(5, 1, 100, "1", integer=True)
    #: cell area that converts the area-specific impedance to ohm (ASSUMPTION: a 12 mm
    #: coin-cell cathode, as in fem.electrochem.parameters)
    electrode_area_cm2: float = _num(1.13, 0.01, 1000.0, "cm2")

    def _check(self) -> None:
        if self.f_max_Hz <= self.f_min_Hz:
            raise SpecError(f"f_max_Hz = {self.f_max_Hz:g}: must be > f_min_Hz = "
                            f"{self.f_min_Hz:g}")


@dataclass(frozen=True, kw_only=True)
class GittSpec(_Spec):
    """Galvanostatic intermittent titration of the half cell (``cathodefem gitt``; paper
    Fig. 3h-i: 10 mA/g pulses of 10 min, 30 min rests, 1.5-4.0 V; 290 mAh/g and an apparent
    Li diffusivity of 0.1-10 x 1e-11 cm2/s from its Eq. 2 for the gradient cathode). The
    defaults are the paper's conditions; the start (initial_theta) and the step-size control
    come from ``[protocol]``, geometry and temperature from ``[electrochemistry]``."""

    current_mA_g: float = _num(10.0, 0.0, 1e4, "mA/g", lo_open=True)
    pulse_s: float = _num(600.0, 0.0, 1e6, "s", lo_open=True)
    rest_s: float = _num(1800.0, 0.0, 1e7, "s", lo_open=True)
    cutoff_V: float = _num(1.5, 0.5, 5.0, "V")
    #: upper bound on the number of pulses (the cut-off normally ends the run first)
    max_pulses: int = _num(400, 1, 100000, "1", integer=True)
    #: first time step of every pulse and rest: the first record of a pulse is the voltage
    #: after the IR drop (a cycler's first sample)
    first_dt_s: float = _num(1e-3, 0.0, 1e3, "s", lo_open=True)
    #: time steps at the end of a pulse are at most pulse_s / pulse_steps
    pulse_steps: int = _num(20, 1, 10000, "1", integer=True)

    def _check(self) -> None:
        if self.first_dt_s * 10 > min(self.pulse_s, self.rest_s):
            raise SpecError(f"first_dt_s = {self.first_dt_s:g}: must be <= 1/10 of pulse_s "
                            f"and rest_s ({min(self.pulse_s, self.rest_s):g} s)")


@dataclass(frozen=True, kw_only=True)
class CaseSpec(_Spec):
    """A whole study: the section and both cathodes."""

    name: str = field(default="gradient-vs-homogeneous-2d")
    section: SectionSpec = field(default_factory=SectionSpec)
    box: BoxSpec = field(default_factory=BoxSpec)
    gradient: GradientSpec = field(default_factory=GradientSpec)
    homogeneous: HomogeneousSpec = field(default_factory=HomogeneousSpec)
    electrochemistry: ElectrochemistrySpec = field(default_factory=ElectrochemistrySpec)
    conduction: ConductionSpec = field(default_factory=ConductionSpec)
    symmetric: SymmetricSpec = field(default_factory=SymmetricSpec)
    eis: EisSpec = field(default_factory=EisSpec)
    gitt: GittSpec = field(default_factory=GittSpec)
    #: cycling protocol table (steps as [[protocol.step]]); validated by
    #: :func:`fem.electrochem.protocol.protocol_from_dict` when a cycling command runs
    protocol: dict[str, Any] = field(default_factory=dict)
    #: material parameters that replace the project's set for this case (electrochemistry
    #: commands): [parameters.<name>] tables with value and source, validated by
    #: :meth:`fem.electrochem.parameters.CellParameters.with_overrides`
    parameters: dict[str, Any] = field(default_factory=dict)
    #: the parameter values ``cathodefem rate --sensitivity`` tries, one parameter at a time
    #: ([[sensitivity.vary]] tables with parameter, values and source; default: every
    #: assumption's range, :data:`fem.electrochem.parameters.ASSUMPTION_RANGES`), validated
    #: by :func:`cases.sensitivity.variations`
    sensitivity: dict[str, Any] = field(default_factory=dict)

    def _check(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SpecError(f"name = {self.name!r}: must be a folder name of 1-100 letters, "
                            f"digits, '.', '_', '+' or '-' starting with a letter or digit "
                            f"(results go to results/<name>)")
        for key in ("protocol", "parameters", "sensitivity"):
            if not isinstance(getattr(self, key), dict):
                raise SpecError(f"{key} = {getattr(self, key)!r}: must be a table "
                                f"([{key}] ...)")
        sec, box = self.section, self.box
        if self.conduction.contact_resistance_ohm_cm2 > 0.0 and box.sides == "periodic":
            raise SpecError(f"conduction.contact_resistance_ohm_cm2 = "
                            f"{self.conduction.contact_resistance_ohm_cm2:g}: must be 0 with "
                            f"box.sides = 'periodic' (a contact across a periodic face is not "
                            f"an interior facet of the mesh; use box.sides = 'insulating')")
        if box.mesh == "conforming":
            # measured: 2.5e5-3.5e5 tetrahedra per um3 at 30 nm elements at the wires
            # (counted over the whole height: an upper bound where the SPE skin and the
            # separator, meshed coarser, take a large part). The box is cut from the
            # membrane (conforming boxes are the gradient cathode's) as
            # meshes.voxels.box_window cuts it, and a box that reaches the membrane's top
            # face carries the separator layer on top (meshes.conforming.mesh_conforming_box)
            g = self.gradient
            height = min(box.height_um, g.thickness_um)
            zc = box.z_center_fraction * (g.thickness_um - g.skin_thickness_um)
            top = min(max(0.0, zc - 0.5 * height), g.thickness_um - height) + height
            meshed = height + (box.separator_um if abs(top - g.thickness_um)
                               <= 1e-6 * g.thickness_um else 0.0)
            cells = 3.5e5 * (0.03 / box.conforming_size_um) ** 3 * box.size_um**2 * meshed
            if cells > 5.0e6:
                raise SpecError(
                    f"box.size_um = {box.size_um:g}, height_um = {box.height_um:g}, "
                    f"conforming_size_um = {box.conforming_size_um:g}: a conforming box "
                    f"of about {cells:.2g} tetrahedra ({meshed:g} um high meshed); must be "
                    f"<= 5e6 (meshed on one rank: shrink the box, e.g. 1 x 1 x 1 um, or for a "
                    f"half-cell column, which holds the whole membrane, narrow it or raise "
                    f"box.conforming_size_um; or use box.mesh = 'voxels')")
        if sec.method != "box":
            return
        why = "with section.method = 'box' (the section is a plane of the box)"
        if abs(sec.width_um - box.size_um) > 1e-9 * box.size_um:
            raise SpecError(f"section.width_um = {sec.width_um:g}: must equal box.size_um = "
                            f"{box.size_um:g} {why}")
        if sec.seed != box.seed:
            raise SpecError(f"section.seed = {sec.seed}: must equal box.seed = {box.seed} "
                            f"{why}")
        thickness = max(self.gradient.thickness_um, self.homogeneous.al_foil_thickness_um
                        + derive_homogeneous(self.homogeneous).thickness_um)
        if box.height_um < thickness:
            raise SpecError(f"box.height_um = {box.height_um:g}: must be >= {thickness:.4g} um "
                            f"(the whole thickness of both cathodes) {why}")
        if box.mesh != "voxels":
            raise SpecError(f"box.mesh = {box.mesh!r}: must be 'voxels' {why}")


# --------------------------------------------------------------------------- derived


@dataclass(frozen=True, kw_only=True)
class GradientDerived:
    nanowire_volume_fraction: float  #: over the whole membrane thickness (paper: about 0.13)
    nanowire_volume_fraction_composite: float  #: below the SPE skin, where the wires are
    rgo_volume_fraction_composite: float
    h2v3o8_density_g_cm3: float


@dataclass(frozen=True, kw_only=True)
class HomogeneousDerived:
    thickness_um: float  #: cast-layer thickness from the solid volume and the porosity
    nanowire_volume_fraction: float
    rgo_volume_fraction: float
    carbon_black_volume_fraction: float
    spe_volume_fraction: float
    void_volume_fraction: float
    total_mass_mg_cm2: float


def _volume_um(mass_mg_cm2: float, density_g_cm3: float) -> float:
    """Volume per area (um) of a mass per area (mg/cm2): 1 mg/cm2 at 1 g/cm3 is 10 um."""
    return 10.0 * mass_mg_cm2 / density_g_cm3


def derive_gradient(spec: GradientSpec) -> GradientDerived:
    rho_nw = DENSITIES["h2v3o8"].value_g_cm3
    v_nw = _volume_um(spec.loading_mg_cm2, rho_nw)
    m_rgo = spec.loading_mg_cm2 * spec.rgo_wt_fraction / (1.0 - spec.rgo_wt_fraction)
    v_rgo = _volume_um(m_rgo, DENSITIES["rgo"].value_g_cm3)
    composite = spec.thickness_um - spec.skin_thickness_um
    return GradientDerived(
        nanowire_volume_fraction=v_nw / spec.thickness_um,
        nanowire_volume_fraction_composite=v_nw / composite,
        rgo_volume_fraction_composite=v_rgo / composite,
        h2v3o8_density_g_cm3=rho_nw,
    )


def derive_homogeneous(spec: HomogeneousSpec) -> HomogeneousDerived:
    # The loading is the H2V3O8 mass; the NW/rGO composite is nw_rgo_wt_fraction of the total.
    m_total = spec.loading_mg_cm2 / (spec.nw_rgo_wt_fraction * (1.0 - spec.rgo_wt_fraction))
    m_rgo = m_total * spec.nw_rgo_wt_fraction * spec.rgo_wt_fraction
    v = {
        "nw": _volume_um(spec.loading_mg_cm2, DENSITIES["h2v3o8"].value_g_cm3),
        "rgo": _volume_um(m_rgo, DENSITIES["rgo"].value_g_cm3),
        "cb": _volume_um(m_total * spec.carbon_black_wt_fraction,
                         DENSITIES["carbon_black"].value_g_cm3),
        "spe": _volume_um(m_total * spec.spe_wt_fraction, DENSITIES["spe"].value_g_cm3),
    }
    solid = sum(v.values())
    thickness = solid / (1.0 - spec.porosity)
    return HomogeneousDerived(
        thickness_um=thickness,
        nanowire_volume_fraction=v["nw"] / thickness,
        rgo_volume_fraction=v["rgo"] / thickness,
        carbon_black_volume_fraction=v["cb"] / thickness,
        spe_volume_fraction=v["spe"] / thickness,
        void_volume_fraction=spec.porosity,
        total_mass_mg_cm2=m_total,
    )


# --------------------------------------------------------------------------- TOML


def _unit_of(md: Any) -> str:
    return str(md.get("unit", "1"))


def parse_quantity(path: str, value: Any, unit: str) -> Any:
    """Numbers are in the field's unit; strings like "34 um" or "2.5 %" are converted by pint."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value
    match = _QUANTITY.fullmatch(value)
    if match is None or _BIG_POWER.search(match.group(2) or ""):
        raise SpecError(f"{path} = {value!r}: not a quantity, expected a number in {unit} or a "
                        f"string like '1.5 {unit}' (a number, then a unit)")
    import pint

    ureg = pint.UnitRegistry()
    target = {"1": "dimensionless", "mg/cm2": "mg/cm**2", "cm2/s": "cm**2/s",
              "A/m2": "A/m**2", "mol/m3": "mol/m**3", "F/m2": "F/m**2",
              "ohm cm2": "ohm*cm**2"}.get(unit, unit)
    try:
        number, units = match.groups()
        q = ureg.Quantity(float(number), units.strip() or "dimensionless")
        return float(q.to(target).magnitude)
    except pint.DimensionalityError:
        raise SpecError(f"{path} = {value!r}: wrong unit, expected {target}") from None
    except Exception:
        raise SpecError(f"{path} = {value!r}: not a quantity, expected a number in {target} "
                        f"or a string like '1.5 {target}'") from None


def _build[T](cls: type[T], data: Any, path: str) -> T:
    if not isinstance(data, dict):
        raise SpecError(f"{path or 'case'}: expected a table, got {data!r}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in known:
            raise SpecError(f"{where}: unknown key; allowed keys: {sorted(known)}")
        f = known[key]
        sub = f.default_factory() if f.default_factory is not MISSING else f.default
        if is_dataclass(sub):
            kwargs[key] = _build(type(sub), value, where)
        elif "lo" in f.metadata:
            kwargs[key] = parse_quantity(where, value, _unit_of(f.metadata))
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except SpecError as e:
        msg = str(e)
        raise SpecError(f"{path}.{msg}" if path else msg) from None


def read_case_toml(path: str | Path) -> dict[str, Any]:
    """Parse a case file; a missing, unreadable or non-UTF-8 file or invalid TOML is a
    one-line :class:`SpecError`."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"case file {str(p)!r}: not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"case file {str(p)!r}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise SpecError(f"case file {str(p)!r}: cannot be read ({e.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"case file {str(p)!r}: invalid TOML ({e})") from None


def load_case(source: str | Path | dict[str, Any]) -> CaseSpec:
    """Read a case TOML file (or an already parsed dict) into a validated :class:`CaseSpec`."""
    data = source if isinstance(source, dict) else read_case_toml(source)
    return _build(CaseSpec, data, "")


def with_seed(case: CaseSpec, seed: int, where: str) -> CaseSpec:
    """``case`` with the realization seed of its ``where`` ("box" or "section") set to
    ``seed``. With ``section.method = "box"`` the section is a plane of the box, and both
    seeds move together."""
    if where not in ("box", "section"):
        raise ValueError(f"where = {where!r}: must be 'box' or 'section'")
    box, sec = case.box, case.section
    try:
        if where == "box" or sec.method == "box":
            box = replace(box, seed=seed)
        if where == "section" or sec.method == "box":
            sec = replace(sec, seed=seed)
    except SpecError as e:
        raise SpecError(f"{where}.{e} (the seeds of a run over several seeds count up from "
                        f"{where}.seed)") from None
    return replace(case, box=box, section=sec)


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """Plain-dict view of a spec (for summary.json and provenance)."""
    out: dict[str, Any] = {}
    for f in fields(spec):
        v = getattr(spec, f.name)
        out[f.name] = spec_to_dict(v) if is_dataclass(v) else v
    return out


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The first key (dotted; list items by index) where two JSON-like trees differ, None
    where they agree: what a refused ``--resume`` names."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{where}.{i}" if where else str(i))
            if d is not None:
                return d
        return None
    return None if a == b else (where or "the whole")
