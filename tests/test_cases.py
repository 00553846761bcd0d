"""Case scripts and the CLI at small size, bad input, and 1 vs 2 MPI ranks."""

from __future__ import annotations

import json
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO, SMALL, cathodefem, mpiexec


def _toml(data: dict, path: Path) -> Path:
    lines: list[str] = []

    def emit(prefix: str, table: dict) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {json.dumps(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                emit(f"{prefix}.{k}" if prefix else k, v)

    emit("", data)
    path.write_text("\n".join(lines) + "\n")
    tomllib.loads(path.read_text())
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("study")
    case = _toml(SMALL, tmp / "small.toml")
    out = tmp / "out"
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([*cathodefem(), "compare", str(case), "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "summary.json").read_text())


def test_compare_writes_a_complete_result_folder(small_run: tuple[Path, dict]) -> None:
    out, summary = small_run
    for name in ("summary.json", "summary.csv", "comparison.png"):
        assert (out / name).stat().st_size > 0
    for kind in ("gradient", "homogeneous"):
        for name in ("mesh.xdmf", "mesh.h5", "microstructure.png"):
            assert (out / kind / name).stat().st_size > 0
        s = summary[kind]
        for carrier in ("electronic", "ionic"):
            for d in ("z", "x"):
                e = s[carrier][d]
                assert e["sigma_eff_S_cm"] >= 0.0
                if e["percolates"]:
                    assert e["current_balance_rel"] < 1e-8
                    assert e["tortuosity_factor"] >= 1.0 - 1e-9
                else:
                    assert e["sigma_eff_S_cm"] == 0.0 and e["tortuosity_factor"] is None
        p = s["percolation"]
        assert 0.0 <= p["dead_active_fraction"] <= 1.0
    assert not list(out.parent.glob(".out.partial-*"))


def test_summary_keys_carry_units(small_run: tuple[Path, dict]) -> None:
    _, summary = small_run
    allowed = ("_S_cm", "_um", "_s", "_fraction", "_factor", "_number", "_ratio", "_count",
               "_rel", "_V", "_S_per_cm", "_A_per_cm", "percolates", "_cm3", "_mg_cm2")

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, dict):
                    walk(v, f"{path}.{k}")
                elif isinstance(v, float | int | list) and not isinstance(v, bool):
                    assert k.endswith(allowed) or path.startswith((".spec", ".phase_names")), \
                        f"{path}.{k} has no unit in its key"

    for kind in ("gradient", "homogeneous"):
        walk({k: v for k, v in summary[kind].items() if k != "mesh"}, f".{kind}")


def test_mesh_subcommand(tmp_path: Path, env: dict[str, str]) -> None:
    case = _toml(SMALL, tmp_path / "small.toml")
    r = subprocess.run([*cathodefem(), "mesh", str(case), "--out", str(tmp_path / "m")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "gradient" / "mesh.xdmf").exists()


def test_solve_subcommand_one_cathode(tmp_path: Path, env: dict[str, str]) -> None:
    case = _toml(SMALL, tmp_path / "small.toml")
    r = subprocess.run([*cathodefem(), "solve", str(case), "--cathode", "homogeneous", "--out",
                        str(tmp_path / "s")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert "homogeneous" in summary and "gradient" not in summary
    assert "derived: gradient NW volume fraction" in r.stdout


def test_ensemble_subcommand(tmp_path: Path, env: dict[str, str]) -> None:
    small = {**SMALL, "section": {**SMALL["section"], "width_um": 1.0}}
    case = _toml(small, tmp_path / "small.toml")
    r = subprocess.run([*cathodefem(), "ensemble", str(case), "--seeds", "2", "--out",
                        str(tmp_path / "e")], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    ens = json.loads((tmp_path / "e" / "ensemble.json").read_text())
    per_seed = json.loads((tmp_path / "e" / "per_seed.json").read_text())
    assert ens["seeds"] == [3, 4]
    for kind in ("gradient", "homogeneous"):
        values = [s["percolation"]["dead_active_fraction"] for s in per_seed[kind]]
        e = ens[kind]["dead_active_fraction"]
        assert e["mean"] == pytest.approx(sum(values) / 2)
        assert e["ci95_low"] <= e["mean"] <= e["ci95_high"]
    r = subprocess.run([*cathodefem(), "ensemble", str(case), "--seeds", "1", "--out",
                        str(tmp_path / "f")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 2 and "seeds = 1: must be >= 2" in r.stderr
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "section.width_um=-1"], "section.width_um = -1: must be in [0.5, 1000] um"),
        (["--set", "homogeneous.porosity=2"], "homogeneous.porosity = 2"),
        (["--set", "gradient.thickness_um='12 kg'"], "wrong unit"),
        (["--set", "gradient.shape=1"], "gradient.shape: unknown key"),
        (["--set", "gradient.loading_mg_cm2=20"], "infeasible packing"),
        (["--set", "gradient.fill_min=1.5"], "gradient.fill_min = 1.5: must be in [0, 1]"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, env: dict[str, str], args: list[str],
                                         fragment: str) -> None:
    out = tmp_path / "never"
    r = subprocess.run([*cathodefem(), "compare", *args, "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert fragment in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_case_file(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[section\nwidth_um = 3\n")
    for case in (str(bad), str(tmp_path / "missing.toml")):
        r = subprocess.run([*cathodefem(), "compare", case, "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
        assert "Traceback" not in r.stderr


def test_result_folders_are_never_wrongly_replaced(tmp_path: Path, env: dict[str, str]) -> None:
    # A run replaces its result folder as a whole: it refuses, before anything is built and
    # in one line, a folder it did not write (the working directory, one holding the user's
    # files), a file, and a place it cannot write; it replaces its own folder.
    small = ["symmetric", "--set", "symmetric.cycles=1", "--set",
             "symmetric.steps_per_half_cycle=2", "--set", "symmetric.cells=10", "-q"]
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "run.csv").write_text("mine")
    (tmp_path / "afile").write_text("mine")

    def run(out: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cathodefem(), *small, *extra, "--out", out],
                              capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120)

    for out, fragment in ((".", "is the working directory"), ("..", "one above it"),
                          ("data", "holds files that cathodefem did not write"),
                          ("afile", "exists and is not a folder"),
                          ("afile/x", "cannot create")):
        r = run(out)
        assert r.returncode == 2, (out, r.stderr)
        err = r.stderr.strip()
        assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "data" / "run.csv").read_text() == "mine"
    assert (tmp_path / "afile").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "data", "notes.txt"]
    # a case name that is not a folder name would put results elsewhere (results/..)
    r = run("x", "--set", 'name=".."')
    assert r.returncode == 2 and "name = '..': must be a folder name" in r.stderr
    for _ in range(2):  # its own folder (or an empty one) is replaced
        r = run("r")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "r" / ".cathodefem-result").is_file()
        assert (tmp_path / "r" / "summary.json").is_file()
    # every result folder says what produced it
    import dolfinx
    import gmsh
    from petsc4py import PETSc

    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["command_line"] == ["cathodefem", *small, "--out", "r"]
    assert prov["mpi_ranks"] == 1 and prov["dolfinx"] == dolfinx.__version__
    assert prov["gmsh"] == gmsh.__version__
    assert prov["petsc"] == ".".join(str(v) for v in PETSc.Sys.getVersion())
    assert prov["cathodefem_version"] == metadata.version("cathodefem")
    version = subprocess.run([*cathodefem(), "--version"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"cathodefem {metadata.version('cathodefem')}"
    (tmp_path / "empty").mkdir()
    assert run("empty").returncode == 0


@pytest.mark.mpi
def test_two_ranks_agree_with_one(tmp_path: Path, env: dict[str, str],
                                  small_run: tuple[Path, dict]) -> None:
    _, serial = small_run
    case = _toml(SMALL, tmp_path / "small.toml")
    out = tmp_path / "mpi"
    r = subprocess.run([mpiexec(), "-n", "2", *cathodefem(), "compare", str(case), "--out",
                        str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    par = json.loads((out / "summary.json").read_text())
    assert par["mpi_ranks_count"] == 2
    for kind in ("gradient", "homogeneous"):
        for carrier in ("electronic", "ionic"):
            for d in ("z", "x"):
                a, b = serial[kind][carrier][d], par[kind][carrier][d]
                assert a["percolates"] == b["percolates"]
                assert b["sigma_eff_S_cm"] == pytest.approx(a["sigma_eff_S_cm"], rel=1e-8,
                                                            abs=1e-300)
        for key, value in serial[kind]["percolation"].items():
            assert par[kind]["percolation"][key] == pytest.approx(value, rel=1e-12)
        assert par[kind]["surface_iv"]["top_conductance_S_per_cm"] == pytest.approx(
            serial[kind]["surface_iv"]["top_conductance_S_per_cm"], rel=1e-8)
    # Only rank 0 prints: the table header and each progress line appear once.
    assert r.stdout.count("quantity ") == 1
    assert r.stdout.count("[gradient] building the section mesh") == 1
