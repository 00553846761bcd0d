"""The one-at-a-time sensitivity study (``cathodefem rate --sensitivity``) at small size:
each study changes one parameter only, the table is read from the studies, the physics
moves the right way, the default ranges bracket the set, bad input is one line, resume."""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.test_cycling_cli import TINY

VARY = """
[[sensitivity.vary]]
parameter = "solid_diffusivity"
values = [1e-12, "1e-10 cm^2/s"]
source = "the paper's GITT range (test)"
"""


def _case(extra: str = VARY) -> Any:
    from meshes.spec import load_case

    return load_case(tomllib.loads(TINY + extra))


def _run_study(tmp: Path, ranks: int) -> tuple[Path, dict[str, Any], str]:
    case = tmp / "sens.toml"
    case.write_text(TINY + VARY)
    out = tmp / "sens"
    r = run_cli(["rate", str(case), "--sensitivity", "--rates", "600", "--cathode",
                 "gradient", "--out", str(out), "-q"], tmp, ranks=ranks)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads((out / "summary.json").read_text()), r.stdout


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    return _run_study(tmp_path_factory.mktemp("sens1"), 1)


def test_sensitivity_study_changes_one_parameter_per_study(
        one_rank: tuple[Path, dict[str, Any], str]) -> None:
    out, s, stdout = one_rank
    assert s["complete"] is True
    names = ["base", "solid_diffusivity=1e-12", "solid_diffusivity=1e-10"]
    assert s["studies"] == names and s["studies_done"] == names
    studies = {n: json.loads((out / n / "summary.json").read_text()) for n in names}
    base_params = studies["base"]["parameters"]
    for n, value in zip(names[1:], (1e-12, 1e-10), strict=True):
        p = studies[n]["parameters"]
        assert p["solid_diffusivity"]["value"] == value
        assert p["solid_diffusivity"]["source"].startswith("CASE: sensitivity study: ")
        # every other parameter as in the base study
        assert {k: v for k, v in p.items() if k != "solid_diffusivity"} == {
            k: v for k, v in base_params.items() if k != "solid_diffusivity"}
    # the table is the studies' own capacities
    [block] = s["rates"]
    caps = {n: studies[n]["gradient"]["rates"][0]["capacity_mAh_g"] for n in names}
    assert block["base"]["gradient_capacity_mAh_g"] == caps["base"]
    slow, fast = block["variations"]
    assert (slow["value"], fast["value"]) == (1e-12, 1e-10)
    assert slow["gradient_capacity_mAh_g"] == caps[names[1]]
    assert fast["gradient_capacity_mAh_g"] == caps[names[2]]
    assert fast["gradient_change_mAh_g"] == pytest.approx(caps[names[2]] - caps["base"],
                                                          rel=1e-12)
    # Faster solid diffusion never lowers the capacity to a voltage cut-off (the surface
    # of the wires saturates later); at 600 mA/g the solid-side loss is measurable.
    assert caps[names[1]] < caps["base"] < caps[names[2]]
    with (out / "sensitivity.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["parameter"] for row in rows] == ["base", "solid_diffusivity",
                                                  "solid_diffusivity"]
    assert float(rows[2]["gradient_capacity_mAh_g"]) == pytest.approx(caps[names[2]])
    assert (out / "sensitivity.png").stat().st_size > 0
    assert "solid_diffusivity" in stdout and "capacity [mAh/g] at 600 mA/g" in stdout


def test_sensitivity_study_on_two_ranks_agrees_with_one(
        tmp_path: Path, one_rank: tuple[Path, dict[str, Any], str]) -> None:
    _, s2, stdout = _run_study(tmp_path, 2)
    _, s1, _ = one_rank
    assert s2["studies_done"] == s1["studies_done"] and s2["complete"] is True
    [b1], [b2] = s1["rates"], s2["rates"]
    assert b2["base"]["gradient_capacity_mAh_g"] == pytest.approx(
        b1["base"]["gradient_capacity_mAh_g"], rel=1e-6)
    for r1, r2 in zip(b1["variations"], b2["variations"], strict=True):
        assert r2["value"] == r1["value"]
        assert r2["gradient_capacity_mAh_g"] == pytest.approx(r1["gradient_capacity_mAh_g"],
                                                              rel=1e-6)
    assert stdout.count("capacity [mAh/g] at 600 mA/g") == 1  # rank 0 prints


def test_the_base_study_is_the_plain_rate_study(tmp_path: Path) -> None:
    # The base study is the case as it is: the same capacity as `rate` without
    # --sensitivity (no parameter of a variation leaks into it).
    from mpi4py import MPI

    from cases.cycling import run_rate_study
    from cases.sensitivity import run_rate_sensitivity

    case = _case(VARY.replace('values = [1e-12, "1e-10 cm^2/s"]', "values = [1e-10]"))
    plain = run_rate_study(case, tmp_path / "plain", [600.0], MPI.COMM_WORLD,
                           kinds=("gradient",), progress=False)
    sens = run_rate_sensitivity(case, tmp_path / "sens", [600.0], MPI.COMM_WORLD,
                                kinds=("gradient",), progress=False)
    q = plain["gradient"]["rates"][0]["capacity_mAh_g"]
    assert sens["rates"][0]["base"]["gradient_capacity_mAh_g"] == pytest.approx(q, rel=1e-9)
    assert sens["rates"][0]["variations"][0]["gradient_capacity_mAh_g"] > q


def test_ratio_of_the_cathodes_in_the_table() -> None:
    from cases.sensitivity import Variation, _summarize

    def study(g: float, h: float) -> dict[str, Any]:
        return {k: {"rates": [{"capacity_mAh_g": q, "stopped_by": "cutoff",
                               "status": "completed"}]}
                for k, q in (("gradient", g), ("homogeneous", h))}

    v = Variation("spe.diffusivity", (1e-10, 1e-8), "cm2/s", 1e-9, "test")
    summary: dict[str, Any] = {}
    _summarize(summary, {"base": study(200.0, 20.0), v.folder(1e-10): study(150.0, 0.0),
                         v.folder(1e-8): study(270.0, 30.0)},
               [v], [300.0], ("gradient", "homogeneous"))
    [block] = summary["rates"]
    assert block["base"]["gradient_over_homogeneous"] == 10.0
    low, high = block["variations"]
    assert low["gradient_over_homogeneous"] is None  # no tape-cast capacity: no ratio
    assert low["homogeneous_change_rel"] == -1.0
    assert high["gradient_minus_homogeneous_mAh_g"] == 240.0
    assert high["gradient_change_mAh_g"] == 70.0 and high["gradient_change_rel"] == 0.35


def test_default_ranges_bracket_the_set_and_are_valid() -> None:
    from cases.sensitivity import variations
    from fem.electrochem.parameters import ASSUMPTION_RANGES, default_parameters

    params = default_parameters()
    varied = variations(_case(""), params)
    assert [v.parameter for v in varied] == list(ASSUMPTION_RANGES)
    for v in varied:
        assert min(v.values) < v.base_value < max(v.values), v.parameter
        assert len(v.source) > 20


def test_a_variation_replaces_the_cases_own_value_in_any_spelling() -> None:
    # The case sets spe.diffusivity as a dotted key and spe.transference as a nested
    # table; the variation's value must be the one the study runs with, and the case's
    # other values stay.
    from cases.sensitivity import _with_value, variations
    from fem.electrochem.parameters import default_parameters

    case = _case('''
[parameters.spe.transference]
value = 0.3
source = "own"
[parameters."spe.diffusivity"]
value = 2e-9
source = "own"
[[sensitivity.vary]]
parameter = "spe.diffusivity"
values = [1e-8]
source = "x"
''')
    params = default_parameters().with_overrides(case.parameters)
    [v] = variations(case, params)
    assert v.base_value == 2e-9
    sub = _with_value(case, v, 1e-8)
    got = default_parameters().with_overrides(sub.parameters)
    assert got.spe.diffusivity.value == 1e-8 and got.spe.transference.value == 0.3
    # the default ranges are about the set's values: a parameter the case sets is left out
    own = _case('''
[parameters.spe.transference]
value = 0.3
source = "own"
''')
    names = [x.parameter for x in variations(own, default_parameters().with_overrides(
        own.parameters))]
    assert "spe.transference" not in names and "spe.diffusivity" in names


@pytest.mark.parametrize("extra, message", [
    ('[[sensitivity.vary]]\nparameter = "density_g_cm3"\nvalues = [1.0]\nsource = "x"\n',
     r"sensitivity.vary\[0\].parameter = 'density_g_cm3': not a parameter a case can set"),
    ('[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = [0.1, 1.5]\n'
     'source = "x"\n',
     r"sensitivity.vary\[0\].values\[1\]: parameters.spe.transference.value = 1.5: must be "
     r"in "
     r"\(0, 1\) 1"),
    ('[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = [0.3, 0.3]\n'
     'source = "x"\n', r"sensitivity.vary\[0\].values\[1\] = 0.3: given twice"),
    ('[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = []\nsource = "x"\n',
     r"sensitivity.vary\[0\].values: expected a list of one or more values"),
    ('[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = [0.1]\n',
     r"sensitivity.vary\[0\]: expected a table with exactly 'parameter', 'values' and "
     r"'source'"),
    ('[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = [0.1]\nsource = " "\n',
     r"sensitivity.vary\[0\].source: must say where the values come from"),
    ('[[sensitivity.vary]]\nparameter = "solid_diffusivity"\nvalues = ["1e-12 m"]\n'
     'source = "x"\n', r"sensitivity.vary\[0\].values\[0\] = '1e-12 m': wrong unit"),
    ('[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = [0.1]\nsource = "x"\n'
     '[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = [0.3]\nsource = "x"\n',
     r"sensitivity.vary\[1\].parameter = 'spe.transference': varied twice"),
    ('[sensitivity]\nvalues = [1]\n', r"sensitivity.values: unknown key; allowed keys"),
    ('[[sensitivity.vary]]\nparameter = ["spe.diffusivity"]\nvalues = [1e-8]\nsource = "x"\n',
     r"sensitivity.vary\[0\].parameter = \['spe.diffusivity'\]: not a parameter a case"),
    # two values that would share one result folder
    ('[[sensitivity.vary]]\nparameter = "solid_diffusivity"\n'
     'values = [2.000001e-11, 2.000004e-11]\nsource = "x"\n',
     r"sensitivity.vary\[0\].values\[1\] = 2.000004e-11: given twice"),
    ('[[sensitivity.vary]]\nparameter = "spe.transference"\nvalues = [0.1, 0.2]\n'
     'source = "x"\n',
     r"sensitivity.vary\[0\].values\[1\] = 0.2: is the base value of spe.transference"),
    ('[sensitivity]\nvary = 3\n', r"sensitivity.vary: expected one or more"),
])
def test_bad_sensitivity_tables_are_one_line(extra: str, message: str) -> None:
    from cases.sensitivity import variations
    from fem.electrochem.parameters import default_parameters
    from meshes.spec import SpecError

    with pytest.raises(SpecError, match=message) as e:
        variations(_case(extra), default_parameters())
    assert "\n" not in str(e.value)


def test_bad_sensitivity_on_the_command_line(tmp_path: Path) -> None:
    case = tmp_path / "bad.toml"
    case.write_text(TINY + VARY.replace("1e-12", "-1e-12"))
    for args, message in (
            (["rate", str(case), "--sensitivity", "--out", str(tmp_path / "out")],
             "sensitivity.vary[0].values[0]: parameters.solid_diffusivity.value = -1e-12: "
             "must be in (0, 1e-05] cm2/s"),
            (["show-spec", str(case)], "sensitivity.vary[0].values[0]")):
        r = run_cli(args, tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert message in r.stderr
        assert not (tmp_path / "out").exists()
    good = tmp_path / "good.toml"
    good.write_text(TINY)
    r = run_cli(["rate", str(good), "--sensitivity", "--seeds", "2", "--out",
                 str(tmp_path / "out")], tmp_path)
    assert r.returncode == 2 and "--sensitivity with --seeds 2: one realization" in r.stderr
    assert not (tmp_path / "out").exists()


def test_interrupted_sensitivity_study_resumes(tmp_path: Path, monkeypatch: Any) -> None:
    # Stopped in its second study (as by Ctrl-C), the study keeps the finished base in
    # <out>.incomplete; a resume takes the base over as it is and runs the rest. A resume
    # at other rates, or as a plain rate study, is refused in one line.
    from mpi4py import MPI

    from cases import cycling, sensitivity
    from cases.output import incomplete_path

    case = _case(VARY.replace('values = [1e-12, "1e-10 cm^2/s"]', "values = [1e-10]"))
    out = tmp_path / "sens"
    real = sensitivity.run_or_take_over
    calls: list[tuple[str, bool]] = []
    stop_at = [2]

    def second_interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append((args[2], args[4] is not None))
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sensitivity, "run_or_take_over", second_interrupted)
    with pytest.raises(KeyboardInterrupt):
        sensitivity.run_rate_sensitivity(case, out, [600.0], MPI.COMM_WORLD,
                                         kinds=("gradient",), progress=False)
    kept = incomplete_path(out)
    assert not out.exists() and (kept / "base" / "summary.json").is_file()
    held = json.loads((kept / "summary.json").read_text())
    assert held["complete"] is False and held["studies_done"] == ["base"]
    with pytest.raises(ValueError, match=r"holds a sensitivity study at other rates"):
        sensitivity.run_rate_sensitivity(case, out, [300.0], MPI.COMM_WORLD,
                                         kinds=("gradient",), progress=False, resume=True)
    # the same case whose plan changed (as the default ranges may between versions)
    real_variations = sensitivity.variations
    monkeypatch.setattr(sensitivity, "variations", lambda c, p: [
        replace(v, values=(1e-12,)) for v in real_variations(c, p)])
    with pytest.raises(ValueError, match=r"holds a sensitivity study of other parameter "
                                         r"values"):
        sensitivity.run_rate_sensitivity(case, out, [600.0], MPI.COMM_WORLD,
                                         kinds=("gradient",), progress=False, resume=True)
    monkeypatch.setattr(sensitivity, "variations", real_variations)
    with pytest.raises(ValueError, match=r"holds a sensitivity study; resume with "
                                         r"--sensitivity"):
        cycling.run_rate_study(case, out, [600.0], MPI.COMM_WORLD, kinds=("gradient",),
                               progress=False, resume_from=kept)
    calls.clear()
    stop_at[0] = 0  # no interrupt now
    summary = sensitivity.run_rate_sensitivity(case, out, [600.0], MPI.COMM_WORLD,
                                               kinds=("gradient",), progress=False,
                                               resume=True)
    assert calls == [("base", True), ("solid_diffusivity=1e-10", False)]
    assert summary["complete"] is True and not kept.exists()
    assert summary["rates"][0]["base"]["gradient_capacity_mAh_g"] == \
        held["rates"][0]["base"]["gradient_capacity_mAh_g"]
    assert (out / "base" / "gradient" / "600mA_g" / "discharge.csv").is_file()
