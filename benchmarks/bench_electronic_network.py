"""How much the equipotential electronic network of the half-cell studies leaves out.

The rate, EIS and GITT studies hold every wire that touches the electrolyte at the collector
potential (``electrochemistry.electronic = "ideal"``). This script sizes what that leaves
out with the linear porous-electrode estimate of Newman and Tobias
(:func:`fem.electrochem.porous.porous_electrode_loss_V`), from quantities this project
measured (inputs below, each with the command and README table it comes from): the ohmic
plus kinetic loss with the measured through-thickness electronic conductivity against the
loss with an ideal network, for both cathodes at the paper's rates.

    python benchmarks/bench_electronic_network.py   # table; benchmarks/out/electronic_network.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fem.electrochem.parameters import default_parameters
from fem.electrochem.porous import porous_electrode_loss_V

OUT = Path(__file__).parent / "out"
LOADING_MG_CM2 = 1.5  # both cathodes (paper, Experimental)
RATES_MA_G = (50.0, 100.0, 200.0, 300.0)

#: measured inputs (README: "3D representative volumes on voxels", 10 seeds of 3 um boxes,
#: `cathodefem rve --seeds 10`; "Impedance spectra": connected wire surface of the 1 um
#: columns of rate3d.toml, seed 1; "Model": layer thicknesses)
CATHODES = {
    "gradient": {
        "thickness_um": 34.0,
        "kappa_zz_S_cm": 7.30e-6,
        "sigma_zz_S_cm": {"12.5 nm voxels": 3.09e-6, "50 nm voxels": 4.78e-6},
        "connected_area_um2_per_um2": 173.0,
    },
    "homogeneous": {
        "thickness_um": 13.0,
        "kappa_zz_S_cm": 5.9e-7,
        "sigma_zz_S_cm": {"50 nm voxels": 8.3e-4},
        "connected_area_um2_per_um2": 7.8,
    },
}


def main() -> None:
    params = default_parameters()
    i0 = params.exchange_current_cathode.value
    alphas = params.alpha_anodic.value + params.alpha_cathodic.value
    rows = []
    for kind, c in CATHODES.items():
        area = c["connected_area_um2_per_um2"] / c["thickness_um"]
        for rate in RATES_MA_G:
            current = rate * LOADING_MG_CM2 * 1e-3  # mA/cm2

            def loss_V(sigma: float, current: float = current, c: dict = c,
                       area: float = area) -> float:
                return porous_electrode_loss_V(current, c["thickness_um"], sigma,
                                               c["kappa_zz_S_cm"], area, i0, alphas)

            ideal = loss_V(math.inf)
            for label, sigma in c["sigma_zz_S_cm"].items():
                loss = loss_V(sigma)
                rows.append({"cathode": kind, "rate_mA_g": rate, "current_mA_cm2": current,
                             "sigma_zz_S_cm": sigma, "sigma_from": label,
                             "loss_ideal_network_V": ideal, "loss_V": loss,
                             "left_out_V": loss - ideal})
    print(f"{'cathode':>12} {'mA/g':>5} {'mA/cm2':>7} {'sigma_zz S/cm':>14} "
          f"{'ideal V':>8} {'resolved V':>10} {'left out V':>10}")
    for r in rows:
        print(f"{r['cathode']:>12} {r['rate_mA_g']:5.0f} {r['current_mA_cm2']:7.3f} "
              f"{r['sigma_zz_S_cm']:14.3g} {r['loss_ideal_network_V']:8.4f} "
              f"{r['loss_V']:10.4f} {r['left_out_V']:10.4f}")
    OUT.mkdir(exist_ok=True)
    path = OUT / "electronic_network.json"
    path.write_text(json.dumps({"inputs": CATHODES, "exchange_current_A_m2": i0,
                                "alpha_sum": alphas, "loading_mg_cm2": LOADING_MG_CM2,
                                "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
