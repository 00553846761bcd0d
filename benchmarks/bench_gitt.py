"""Benchmark: what the paper's GITT Eq. 2 measures on the gradient membrane, and what a pulse
costs.

    python benchmarks/bench_gitt.py                # rate.toml gradient section, 3 pulses
    python benchmarks/bench_gitt.py --quick        # a 1.5 x 4 um section, for a smoke run
    python benchmarks/bench_gitt.py --pulses 5 --current 10

Runs the first pulses of the GITT of ``[gitt]`` (the paper's 10 mA/g, 10 min pulses, 30 min
rests by default) on the gradient half cell (2D section, equipotential electronic network),
with the one parameter set and with variants of it: the solid diffusivity x 10 and / 10, and
the polymer electrolyte's conductivity and salt diffusivity / 2. Eq. 2 is evaluated per pulse
with the geometric area and with the connected wire surface (fem.electrochem.gitt). If the
apparent diffusivity follows the solid diffusivity, GITT measures the solid; if it follows
the electrolyte, it measures ion transport through the electrode. Prints a table (median
over the pulses, ratio to the parameter set, seconds per pulse and rest) and writes
benchmarks/out/bench_gitt.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mpi4py import MPI  # isort: split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out"
QUICK = {
    "section": {"width_um": 1.5, "seed": 3, "mesh_size_fine_um": 0.06, "separator_um": 2.0},
    "gradient": {"thickness_um": 4.0, "loading_mg_cm2": 1.5 * 4 / 34, "lean_zone_um": 1.0,
                 "skin_thickness_um": 0.5},
    "protocol": {"dtheta_max": 0.02, "dt_max_s": 900.0},
}


def _variants(base: Any) -> dict[str, Any]:
    from fem.parameters import Parameter

    def scaled(p: Parameter, factor: float) -> Parameter:
        return Parameter(value=p.value * factor, unit=p.unit,
                         source=f"benchmark variant: {factor:g} x ({p.source})")

    spe = base.spe
    return {
        "parameter set": base,
        "solid diffusivity x 10": replace(
            base, solid_diffusivity=scaled(base.solid_diffusivity, 10.0)),
        "solid diffusivity / 10": replace(
            base, solid_diffusivity=scaled(base.solid_diffusivity, 0.1)),
        "polymer conductivity and salt diffusivity / 2": replace(base, spe=replace(
            spe, conductivity=scaled(spe.conductivity, 0.5),
            diffusivity=scaled(spe.diffusivity, 0.5))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small section (smoke run)")
    ap.add_argument("--pulses", type=int, default=3, help="pulses per variant (default 3)")
    ap.add_argument("--current", type=float, default=None,
                    help="pulse current in mA/g (default: [gitt] of the case, 10)")
    args = ap.parse_args()
    if args.pulses < 1:
        sys.exit("bench_gitt: --pulses must be >= 1")

    from cases.gitt import gitt_case_protocol
    from cases.study import _build
    from fem.electrochem.gitt import analyse_gitt, solid_diffusion_number
    from fem.electrochem.halfcell import HalfCell
    from fem.electrochem.parameters import default_parameters
    from fem.electrochem.protocol import run_protocol
    from meshes.spec import load_case, read_case_toml

    comm = MPI.COMM_WORLD
    data = read_case_toml(ROOT / "cases" / "data" / "rate.toml")
    if args.quick:
        for key, table in QUICK.items():
            data.setdefault(key, {}).update(table)
    data.setdefault("gitt", {})["max_pulses"] = args.pulses
    if args.current is not None:
        data["gitt"]["current_mA_g"] = args.current
    case = load_case(data)
    protocol = gitt_case_protocol(case)
    t0 = time.perf_counter()
    tm, info, _ = _build(comm, case, "gradient")
    mesh_s = time.perf_counter() - t0
    base = default_parameters(case.electrochemistry.temperature_K)
    rows: list[dict[str, Any]] = []
    for name, params in _variants(base).items():
        cell = HalfCell(tm, params, electronic=case.electrochemistry.electronic)
        cross = cell.cross_section_um2()
        volume, area = cell.active_volume_um3(), cell.connected_interface_area_um2()
        t0 = time.perf_counter()
        try:
            res = run_protocol(cell, protocol)
        finally:
            cell.release_solver_options()
            cell.free()
        wall = time.perf_counter() - t0
        pulses = analyse_gitt(res.records, res.stopped_by, protocol,
                              float(params.ocv(protocol.initial_theta)),
                              active_volume_per_area_um=volume / cross,
                              active_volume_per_interface_um=volume / area)
        geo = [p.d_geometric_cm2_s for p in pulses if p.d_geometric_cm2_s is not None]
        inter = [p.d_interface_cm2_s for p in pulses if p.d_interface_cm2_s is not None]
        rows.append({
            "variant": name, "pulses_count": len(pulses),
            "solid_diffusivity_cm2_s": params.solid_diffusivity.value,
            "spe_conductivity_S_cm": params.spe.conductivity.value,
            "spe_diffusivity_cm2_s": params.spe.diffusivity.value,
            "d_geometric_median_cm2_s": statistics.median(geo) if geo else None,
            "d_interface_median_cm2_s": statistics.median(inter) if inter else None,
            "de_s_de_t_median_ratio": statistics.median(
                [p.de_s_de_t_ratio for p in pulses if p.de_s_de_t_ratio is not None])
            if pulses else None,
            "solid_diffusion_interface_number": solid_diffusion_number(
                case.gitt.pulse_s, params.solid_diffusivity.value, volume / area),
            "de_t_V": [p.de_t_V for p in pulses], "de_s_V": [p.de_s_V for p in pulses],
            "ir_drop_V": [p.ir_drop_V for p in pulses],
            "d_geometric_cm2_s": geo, "d_interface_cm2_s": inter,
            "time_steps_count": len(res.records), "wall_time_s": wall,
            "seconds_per_pulse_and_rest": wall / max(len(res.stopped_by) / 2, 1),
        })
        if comm.rank == 0:
            print(f"{name}: {len(pulses)} pulses, {len(res.records)} steps, {wall:.1f} s",
                  flush=True)
    ref = rows[0]["d_geometric_median_cm2_s"]
    if comm.rank == 0:
        g = case.gitt
        print(f"\nGITT, gradient section ({'quick' if args.quick else 'rate.toml'}; "
              f"{int(info['cells_count'])} cells, meshed in "
              f"{mesh_s:.1f} s), {g.current_mA_g:g} mA/g pulses of {g.pulse_s:g} s, "
              f"{g.rest_s:g} s rests, {comm.size} rank(s)")
        print(f"{'variant':48s} {'D geo [cm2/s]':>14s} {'/ set':>7s} {'dEs/dEt':>8s} "
              f"{'D wire [cm2/s]':>15s} {'tauDs/L2':>9s} {'s/pulse':>8s}")
        for r in rows:
            d = r["d_geometric_median_cm2_s"]
            print(f"{r['variant']:48s} {_f(d):>14s} "
                  f"{(_f(d / ref) if d is not None and ref else '-'):>7s} "
                  f"{_f(r['de_s_de_t_median_ratio']):>8s} "
                  f"{_f(r['d_interface_median_cm2_s']):>15s} "
                  f"{_f(r['solid_diffusion_interface_number']):>9s} "
                  f"{r['seconds_per_pulse_and_rest']:>8.1f}")
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / ("bench_gitt_quick.json" if args.quick else "bench_gitt.json")
        path.write_text(json.dumps({"case": "quick" if args.quick else "rate.toml",
                                    "ranks": comm.size, "mesh": info, "mesh_time_s": mesh_s,
                                    "gitt": {"current_mA_g": case.gitt.current_mA_g,
                                             "pulse_s": case.gitt.pulse_s,
                                             "rest_s": case.gitt.rest_s,
                                             "pulses": args.pulses},
                                    "variants": rows}, indent=2))
        print(f"written {path}")


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


if __name__ == "__main__":
    main()
