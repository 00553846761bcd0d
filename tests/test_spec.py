"""Specs: paper defaults, derived quantities, validation with one-line errors."""

from __future__ import annotations

import math

import pytest

from meshes.materials import DENSITIES, h2v3o8_density_g_cm3
from meshes.spec import (
    GradientSpec,
    HomogeneousSpec,
    NanowireSpec,
    SpecError,
    derive_gradient,
    derive_homogeneous,
    load_case,
    with_seed,
)


def test_defaults_are_the_papers() -> None:
    g = GradientSpec()
    assert g.thickness_um == 34.0 and g.loading_mg_cm2 == 1.5 and g.rgo_wt_fraction == 0.025
    assert g.nanowire.diameter_um == 0.1
    assert (g.nanowire.length_min_um, g.nanowire.length_max_um) == (5.0, 10.0)
    h = HomogeneousSpec()
    assert (h.nw_rgo_wt_fraction, h.carbon_black_wt_fraction, h.spe_wt_fraction) == (
        0.70, 0.15, 0.15)


def test_h2v3o8_density_from_unit_cell() -> None:
    # 4 formula units of 282.8 g/mol in 16.93 x 9.36 x 3.64 A^3: about 3.26 g/cm3.
    rho = h2v3o8_density_g_cm3()
    assert 3.2 < rho < 3.3
    assert DENSITIES["h2v3o8"].value_g_cm3 == rho


def test_nanowire_volume_fraction_derived_about_0p13() -> None:
    d = derive_gradient(GradientSpec())
    # 1.5 mg/cm2 / 3.26 g/cm3 = 4.6 um of solid over 34 um (paper-targets.md: about 0.13).
    expected = 10 * 1.5 / h2v3o8_density_g_cm3() / 34.0
    assert d.nanowire_volume_fraction == pytest.approx(expected, rel=1e-12)
    assert 0.12 < d.nanowire_volume_fraction < 0.15


def test_homogeneous_volumes_close_mass_balance() -> None:
    h = HomogeneousSpec()
    d = derive_homogeneous(h)
    total = (d.nanowire_volume_fraction + d.rgo_volume_fraction + d.carbon_black_volume_fraction
             + d.spe_volume_fraction + d.void_volume_fraction)
    assert total == pytest.approx(1.0, abs=1e-12)
    # Mass per area back from volumes and densities equals the loading / wt% chain.
    m_nw = d.nanowire_volume_fraction * d.thickness_um / 10 * DENSITIES["h2v3o8"].value_g_cm3
    assert m_nw == pytest.approx(1.5, rel=1e-12)
    m_cb = (d.carbon_black_volume_fraction * d.thickness_um / 10
            * DENSITIES["carbon_black"].value_g_cm3)
    assert m_cb / d.total_mass_mg_cm2 == pytest.approx(0.15, rel=1e-12)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"gradient": {"thickness_um": -3}}, "gradient.thickness_um = -3: must be in [1, 1000] um"),
        ({"homogeneous": {"porosity": 1.5}}, "homogeneous.porosity = 1.5: must be in [0, 0.9]"),
        ({"gradient": {"fill_min": -0.1}}, "gradient.fill_min"),
        ({"gradient": {"nanowire": {"diameter_um": 0}}}, "gradient.nanowire.diameter_um = 0"),
        ({"gradient": {"colour": 1}}, "gradient.colour: unknown key"),
        ({"sektion": {}}, "sektion: unknown key"),
        ({"gradient": {"thickness_um": "3 s"}}, "wrong unit"),
        ({"gradient": {"thickness_um": "abc"}}, "not a quantity"),
        ({"gradient": {"loading_mg_cm2": 30}}, "infeasible packing"),
        ({"homogeneous": {"spe_wt_fraction": 0.3}}, "must sum to 1"),
        ({"section": {"method": "voxel"}}, "section.method = 'voxel': must be one of"),
        ({"section": {"seed": 1.5}}, "section.seed = 1.5: must be an integer"),
        ({"section": {"width_um": float("nan")}}, "section.width_um = nan"),
        ({"section": {"method": "box"}, "box": {"height_um": 100}},
         "section.width_um = 10: must equal box.size_um = 5"),
        ({"section": {"method": "box", "width_um": 5, "seed": 1}, "box": {"height_um": 100}},
         "section.seed = 1: must equal box.seed = 0"),
        ({"section": {"method": "box", "width_um": 5}}, "box.height_um = 5: must be >= 34"),
        ({"section": {"method": "box", "width_um": 0.5},
          "box": {"size_um": 0.5, "height_um": 100, "mesh": "conforming",
                  "conforming_size_um": 0.1}},
         "box.mesh = 'conforming': must be 'voxels'"),
        ({"section": {"plane_y_fraction": 1.5}}, "section.plane_y_fraction = 1.5"),
        ({"name": ".."}, "name = '..': must be a folder name of 1-100 letters"),
        ({"name": ""}, "name = '': must be a folder name"),
        ({"name": "a/b"}, "name = 'a/b': must be a folder name"),
        ({"name": 123}, "name = 123: must be a folder name"),
        ({"section": {"width_um": 10**400}},
         "section.width_um = a number that large: must be in [0.5, 1000] um"),
        ({"section": {"seed": 2**31}}, "section.seed = 2147483648: must be in [0, 2147483647]"),
        # pint would evaluate the power (for ever); a unit alone is not a quantity
        ({"section": {"width_um": "9**9**9 um"}}, "(a number, then a unit)"),
        ({"section": {"width_um": "um"}}, "section.width_um = 'um': not a quantity"),
        ({"protocol": 5}, "protocol = 5: must be a table"),
        ({"parameters": [1]}, "parameters = [1]: must be a table"),
    ],
)
def test_bad_input_one_line_error(data: dict, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        load_case(data)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg


def test_conforming_box_size_counts_the_height_meshed() -> None:
    # A half-cell column asks for "the whole cathode" with a tall box (height_um = 100): the
    # conforming estimate counts the membrane's thickness plus the separator on top, not
    # 100 um (it refused such columns before). 3.5e5 tetrahedra per um3 at 30 nm.
    column = {"gradient": {"thickness_um": 4.0, "loading_mg_cm2": 0.17647,
                           "skin_thickness_um": 0.5, "lean_zone_um": 1.0},
              "box": {"size_um": 1.0, "height_um": 100.0, "separator_um": 1.0,
                      "mesh": "conforming"}}
    assert load_case(column).box.height_um == 100.0  # 5 um meshed: 1.75e6 tetrahedra
    with pytest.raises(SpecError, match=r"about 5\.2e\+06 tetrahedra \(15 um high meshed\)"):
        load_case({"gradient": {"thickness_um": 14.0, "loading_mg_cm2": 0.6176},
                   "box": {**column["box"], "separator_um": 1.0}})
    # a box at the top of the membrane (z_center_fraction = 1) reaches its top face and
    # carries the separator too; one lower down does not
    top = {"gradient": {"thickness_um": 20.0, "loading_mg_cm2": 0.882},
           "box": {"size_um": 1.0, "height_um": 14.0, "separator_um": 1.0,
                   "mesh": "conforming", "z_center_fraction": 1.0}}
    with pytest.raises(SpecError, match=r"\(15 um high meshed\)"):
        load_case(top)
    assert load_case({**top, "box": {**top["box"], "z_center_fraction": 0.2}})


def test_units_are_converted() -> None:
    case = load_case({"gradient": {"thickness_um": "0.034 mm", "rgo_wt_fraction": "2.5 %",
                                   "fill_correlation_um": "3e2 nm"},
                      "section": {"width_um": " 4.5e3nm "}})
    assert case.gradient.thickness_um == pytest.approx(34.0)
    assert case.gradient.rgo_wt_fraction == pytest.approx(0.025)
    assert case.gradient.fill_correlation_um == pytest.approx(0.3)
    assert case.section.width_um == pytest.approx(4.5)


def test_seed_ranges_past_the_largest_seed_name_the_section() -> None:
    case = load_case({"box": {"seed": 2**31 - 1}})
    with pytest.raises(SpecError, match=r"box.seed = 2147483648: must be in \[0, 2147483647\] "
                                        r"\(the seeds of a run over several seeds"):
        with_seed(case, 2**31, "box")


def test_specs_are_frozen() -> None:
    nw = NanowireSpec()
    with pytest.raises(AttributeError):
        nw.diameter_um = 0.2  # type: ignore[misc]
    assert math.isclose(nw.diameter_um, 0.1)


def test_seeds_of_a_section_of_the_box_move_together() -> None:
    """With section.method = "box" the section is a plane of the box: setting the seed of
    either geometry sets both; otherwise only the one named."""
    case = load_case({"section": {"method": "box", "width_um": 1, "seed": 2},
                      "box": {"size_um": 1, "height_um": 100, "seed": 2}})
    for where in ("box", "section"):
        moved = with_seed(case, 7, where)
        assert (moved.box.seed, moved.section.seed) == (7, 7)
    plain = load_case({"box": {"seed": 2}})
    assert (with_seed(plain, 7, "box").box.seed, with_seed(plain, 7, "box").section.seed) == (7, 0)
    assert (with_seed(plain, 7, "section").box.seed,
            with_seed(plain, 7, "section").section.seed) == (2, 7)
