"""Pictures for publication (matplotlib, axes in um): phase maps, fields, comparison figure.

Phase maps are drawn from the whole section mesh, which rank 0 holds on any rank count;
field renders need the whole field on one process, so the study makes them in serial runs
only (the XDMF files hold every field for ParaView on any rank count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from meshes.build import KINDS
from meshes.tags import Phase

__all__ = [
    "PHASE_COLORS",
    "comparison_figure",
    "gitt_figure",
    "nyquist_figure",
    "rate_capability_figure",
    "render_field",
    "render_phases",
    "render_rve",
    "render_rve_3d",
    "sensitivity_figure",
    "voltage_curves",
]

PHASE_COLORS = {
    Phase.NANOWIRE: "#1f4e9c", Phase.RGO: "#222222", Phase.SPE: "#f2c94c",
    Phase.VOID: "#ffffff", Phase.CARBON_BLACK: "#7a7a7a", Phase.SEPARATOR: "#9bd3ae",
    Phase.AL_FOIL: "#c0c6cc",
}


def render_phases(section: Any, path: Path) -> None:
    """Phase map of a whole section mesh (``meshes.build.SectionMesh``, held by rank 0), with
    axes in um and a legend of the phases present (matplotlib, publication style)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    present = [p for p in Phase if np.any(section.phase == p)]
    index = np.zeros(8, dtype=int)
    for i, p in enumerate(present):
        index[p] = i
    cmap = ListedColormap([PHASE_COLORS[p] for p in present])
    norm = BoundaryNorm(np.arange(len(present) + 1) - 0.5, len(present))
    aspect = section.thickness_um / section.width_um
    fig, ax = plt.subplots(figsize=(4.2 + 1.8, min(16.0, 4.2 * aspect + 0.8)),
                           layout="constrained")
    ax.tripcolor(section.points_um[:, 0], section.points_um[:, 1], section.cells,
                 facecolors=index[section.phase], cmap=cmap, norm=norm, edgecolors="none",
                 rasterized=True)
    ax.set_aspect("equal")
    ax.set_xlim(0, section.width_um)
    ax.set_ylim(0, section.thickness_um)
    ax.set_xlabel("x [um]")
    ax.set_ylabel("z [um] (0: current collector side)")
    ax.set_title(f"{section.kind} cathode", fontsize=10)
    ax.legend(handles=[Patch(facecolor=PHASE_COLORS[p], edgecolor="black", linewidth=0.5,
                             label=p.label.replace("_", " ")) for p in present],
              loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.savefig(path, dpi=200)
    plt.close(fig)


def render_field(u: Any, path: Path, title: str) -> None:
    """Scalar P1 field on its (sub)mesh (serial), axes in um, colour bar with the unit."""
    import dolfinx.plot

    topology, _, x = dolfinx.plot.vtk_mesh(u.function_space)
    tri = np.asarray(topology).reshape(-1, 4)[:, 1:]
    values = u.x.array.real[: len(x)]
    name, _, unit = title.rpartition("_")
    width = float(x[:, 0].max() - x[:, 0].min())
    height = float(x[:, 1].max() - x[:, 1].min())
    aspect = height / max(width, 1e-12)
    fig, ax = plt.subplots(figsize=(5.5, min(16.0, 4.0 * aspect + 0.8)), layout="constrained")
    from matplotlib.tri import Triangulation

    pc = ax.tripcolor(Triangulation(x[:, 0], x[:, 1], tri), values, shading="gouraud",
                      cmap="viridis", rasterized=True)
    fig.colorbar(pc, ax=ax, label=f"{name.replace('_', ' ')} [{unit}]", shrink=0.6)
    ax.set_aspect("equal")
    ax.set_xlabel("x [um]")
    ax.set_ylabel("z [um]")
    ax.set_title("conducting cluster spanning both electrodes", fontsize=9)
    fig.savefig(path, dpi=200)
    plt.close(fig)


def comparison_figure(summary: dict[str, Any], path: Path) -> None:
    """Six panels: effective conductivities, tortuosity, connectivity, surface I-V, and the
    depth profiles of ionic and electronic connectivity."""
    fig, grid = plt.subplots(2, 3, figsize=(16, 9), layout="constrained")
    axes = grid[:, :2]
    colors = {"gradient": "#1f77b4", "homogeneous": "#d62728"}
    labels = ["e$^-$ z", "e$^-$ x", "Li$^+$ z", "Li$^+$ x"]
    keys = [("electronic", "z"), ("electronic", "x"), ("ionic", "z"), ("ionic", "x")]
    width = 0.38
    xpos = np.arange(len(keys))
    ax = axes[0, 0]
    for i, kind in enumerate(KINDS):
        vals = [summary[kind][c][d]["sigma_eff_S_cm"] for c, d in keys]
        ax.bar(xpos + (i - 0.5) * width, [v if v > 0 else np.nan for v in vals], width,
               color=colors[kind], label=kind)
        for j, v in enumerate(vals):
            if v <= 0:
                ax.annotate("no path", (xpos[j] + (i - 0.5) * width, 0.02),
                            xycoords=("data", "axes fraction"), rotation=90, ha="center",
                            va="bottom", fontsize=7, color=colors[kind])
    ax.set_yscale("log")
    ax.set_xticks(xpos, labels)
    ax.set_ylabel("effective conductivity [S/cm]")
    ax.set_title("(a) effective conductivity")
    ax.legend()
    ax = axes[0, 1]
    for i, kind in enumerate(KINDS):
        vals = [summary[kind][c][d]["tortuosity_factor"] for c, d in keys]
        ax.bar(xpos + (i - 0.5) * width,
               [v if v is not None and np.isfinite(v) else np.nan for v in vals], width,
               color=colors[kind], label=kind)
    ax.set_yscale("log")
    ax.set_xticks(xpos, labels)
    ax.set_ylabel("tortuosity factor [-]")
    ax.set_title("(b) tortuosity factor (percolating paths only)")
    ax = axes[1, 0]
    pkeys = [("nanowire_electronic_connected_fraction", "NW e$^-$-connected"),
             ("nanowire_ion_accessible_fraction", "NW ion-accessible"),
             ("ionic_connected_fraction", "SPE connected"),
             ("dead_active_fraction", "dead active")]
    xp = np.arange(len(pkeys))
    for i, kind in enumerate(KINDS):
        ax.bar(xp + (i - 0.5) * width, [summary[kind]["percolation"][k] for k, _ in pkeys],
               width, color=colors[kind], label=kind)
    ax.set_xticks(xp, [lab.replace(" ", "\n") for _, lab in pkeys], fontsize=8)
    ax.set_ylabel("area fraction [-]")
    ax.set_ylim(0, 1.05)
    ax.set_title("(c) connectivity")
    ax = axes[1, 1]
    for kind in KINDS:
        iv = summary[kind]["surface_iv"]
        v = np.asarray(iv["voltage_V"])
        for face, ls in (("top", "--"), ("bottom", "-")):
            i_a = np.abs(np.asarray(iv[f"{face}_current_A_per_cm"]))
            no_path = not np.any(i_a > 0)
            ax.semilogy(v, np.where(i_a > 0, i_a, np.nan), ls, color=colors[kind],
                        label=f"{kind}, {face} face" + (": no path (zero current)"
                                                        if no_path else ""))
    ax.set_xlabel("probe voltage [V]")
    ax.set_ylabel("|current| [A per cm depth]")
    ax.set_title("(d) two-probe surface I-V (cf. paper Fig. 2f)")
    ax.legend(fontsize=8)
    profiles: list[tuple[Any, list[tuple[str, str, str]], str]] = [
        (grid[0, 2], [("spe_connected_fraction", "-", "SPE connected to separator"),
                      ("nanowire_ion_accessible_fraction", ":", "NW ion-accessible")],
         "(e) ionic network vs depth"),
        (grid[1, 2], [("nanowire_electronic_connected_fraction", "-",
                       "NW connected to collector"),
                      ("active_fraction", ":", "NW active (both)")],
         "(f) electronic network vs depth"),
    ]
    for ax, curves, title in profiles:
        for kind in KINDS:
            prof = summary[kind]["depth_profile"]
            depth = np.asarray(prof["z_um"])
            for key, ls, label in curves:
                frac = np.array([np.nan if v is None else v for v in prof[key]], dtype=float)
                ax.plot(frac, depth, ls, color=colors[kind], label=f"{kind}: {label}")
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("area fraction in depth bin [-]")
        ax.set_ylabel("z, distance from current collector [um]")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle(f"{summary['case']}: gradient NW membrane vs tape-cast cathode (2D sections)")
    fig.savefig(path, dpi=150)
    plt.close(fig)


_KIND_COLORS = {"gradient": "#1f77b4", "homogeneous": "#d62728"}


def voltage_curves(curves: dict[str, dict[str, Any]], path: Path) -> None:
    """Cell voltage vs specific capacity: one panel per cathode, one line per run
    (paper Fig. 4a, b). ``curves[kind][label]`` is a list of protocol records."""
    kinds = list(curves)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.2), squeeze=False,
                             layout="constrained", sharey=True)
    for ax, kind in zip(axes[0], kinds, strict=True):
        runs = curves[kind]
        cmap = plt.get_cmap("viridis", max(len(runs), 2))
        for k, (label, recs) in enumerate(runs.items()):
            if not recs:
                ax.plot([], [], color=cmap(k), label=f"{label}: blocked")
                continue
            q = [0.0] + [abs(r.capacity_mAh_g) for r in recs]
            v = [recs[0].voltage_V] + [r.voltage_V for r in recs]
            ax.plot(q, v, color=cmap(k), label=label)
        if not any(runs.values()):
            ax.text(0.5, 0.5, "blocked: no reacting interface is connected\n"
                    "to both the collector and the separator", transform=ax.transAxes,
                    ha="center", va="center", fontsize=10)
            ax.set_xlim(0, 300)
        ax.set_xlabel("specific capacity [mAh/g]")
        ax.set_title(kind)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("cell voltage vs Li/Li$^+$ [V]")
    fig.savefig(path, dpi=200)
    plt.close(fig)


def rate_capability_figure(summary: dict[str, Any], path: Path) -> None:
    """Discharge capacity vs specific current for both cathodes, with the paper's values
    (Fig. 4d) as open markers; for a seed ensemble the mean with its 95 % confidence
    interval and every seed's value as small dots."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
    for kind in KINDS:
        if kind not in summary:
            continue
        rows = summary[kind]["rates"]
        rates = [r["rate_mA_g"] for r in rows]
        caps = [r["capacity_mAh_g"] for r in rows]
        if rows and "capacities_mAh_g" in rows[0]:  # a seed ensemble: mean, 95 % CI, seeds
            n = len(rows[0]["capacities_mAh_g"])
            # (one seed has no interval: NaN in memory, None after JSON)
            half = [[abs(b - r["capacity_mAh_g"]) if b is not None and math.isfinite(b) else 0.0
                     for b in r["capacity_ci95_mAh_g"]] for r in rows]
            lo, hi = [h[0] for h in half], [h[1] for h in half]
            ax.errorbar(rates, caps, yerr=[lo, hi], fmt="o-", capsize=3,
                        color=_KIND_COLORS[kind], label=f"{kind} (model, mean and 95 % CI, "
                                                        f"{n} seeds)")
            for r in rows:
                ax.plot([r["rate_mA_g"]] * n, r["capacities_mAh_g"], ".", ms=3, alpha=0.5,
                        color=_KIND_COLORS[kind])
        else:
            ax.plot(rates, caps, "o-", color=_KIND_COLORS[kind], label=f"{kind} (model)")
        paper = summary.get("paper_capacity_mAh_g", {}).get(kind, {})
        if paper:
            # (keys are strings once the summary has been through JSON)
            ax.plot([float(k) for k in paper], list(paper.values()), "s", mfc="none", ms=9,
                    color=_KIND_COLORS[kind], label=f"{kind} (paper, Fig. 4d)")
    ax.set_xlabel("specific current [mA/g]")
    ax.set_ylabel("discharge capacity [mAh/g]")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=200)
    plt.close(fig)


def sensitivity_figure(summary: dict[str, Any], path: Path,
                       labels: dict[str, str] | None = None) -> None:
    """One panel per rate: for each varied parameter (a row) the capacity of each cathode
    at each of its values (markers labelled with the value, joined by a line), and the
    capacity with the case's parameters (dashed line per cathode); ``labels``: the legend's
    name of each cathode (default its kind)."""
    blocks = summary.get("rates", [])
    kinds = [k for k in KINDS if k in summary.get("kinds", [])]
    names = [v["parameter"] for v in summary.get("variations", [])]
    units = {v["parameter"]: v["unit"] for v in summary.get("variations", [])}
    fig, axes = plt.subplots(1, max(len(blocks), 1), squeeze=False, sharey=True,
                             figsize=(5.0 * max(len(blocks), 1) + 1.5,
                                      1.2 + 0.5 * max(len(names), 1)), layout="constrained")
    shift = {k: 0.14 * (i - 0.5 * (len(kinds) - 1)) for i, k in enumerate(kinds)}
    for ax, block in zip(axes[0], blocks, strict=False):
        for kind in kinds:
            color = _KIND_COLORS[kind]
            base = block["base"][f"{kind}_capacity_mAh_g"]
            name = (labels or {}).get(kind, kind)
            ax.axvline(base, ls="--", lw=1.0, color=color,
                       label=f"{name}, the case's parameters" if ax is axes[0][0] else None)
            for y, name in enumerate(names):
                rows = [r for r in block["variations"] if r["parameter"] == name]
                if not rows:
                    continue
                x = [r[f"{kind}_capacity_mAh_g"] for r in rows]
                yy = y + shift[kind]
                ax.plot([min(*x, base), max(*x, base)], [yy, yy], "-", lw=2.0, alpha=0.35,
                        color=color)
                ax.plot(x, [yy] * len(x), "o", ms=5, color=color)
                for j, (r, xv) in enumerate(zip(rows, x, strict=True)):
                    # alternately above and below: close values stay readable
                    ax.annotate(f"{r['value']:.3g}", (xv, yy), xytext=(0, 4 if j % 2 else -9),
                                textcoords="offset points", ha="center", fontsize=6,
                                color=color)
        ax.set_title(f"{block['rate_mA_g']:g} mA/g", fontsize=10)
        ax.set_xlabel("discharge capacity [mAh/g]")
        top = max([block["base"][f"{k}_capacity_mAh_g"] for k in kinds]
                  + [r[f"{k}_capacity_mAh_g"] for r in block["variations"] for k in kinds])
        ax.set_xlim(0, 1.1 * top if top > 0 else 1.0)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(range(len(names)),
                          [f"{n} [{units[n]}]" for n in names], fontsize=8)
    axes[0][0].set_ylim(len(names) - 0.5, -0.5)
    fig.legend(fontsize=8, loc="outside lower center")
    fig.savefig(path, dpi=200)
    plt.close(fig)


def symmetric_figure(rows: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """Li | SSE | Li: cell voltage vs time with the closed-form steady polarization and the
    paper's value (Fig. S6), and the steady split of the polarization."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.8), layout="constrained",
                                 gridspec_kw={"width_ratios": [3, 1]})
    t = [r["time_h"] for r in rows]
    ax.plot([0.0, *t], [0.0, *(r["voltage_mV"] for r in rows)], "-", color="#1f77b4",
            label="model (FEM)")
    steady = summary["steady_polarization_mV"]
    paper = summary["paper"]["value_mV"]
    for sign in (1, -1):
        ax.axhline(sign * steady["voltage_mV"], ls="--", lw=0.8, color="#1f77b4",
                   label="steady state (closed form)" if sign > 0 else None)
        ax.axhline(sign * paper, ls=":", lw=1.2, color="#d62728",
                   label="paper, Fig. S6 (about)" if sign > 0 else None)
    d = summary["derived"]
    ax.set_title(f"Li | SSE | Li, {d['current_density_mA_cm2']:.3g} mA/cm2, "
                 f"{summary['case']['symmetric']['temperature_K'] - 273.15:.0f} C", fontsize=9)
    ax.set_xlabel("time [h]")
    ax.set_ylabel("cell voltage [mV]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    parts = [("kinetic, stripping", "kinetic_bottom_mV"), ("ohmic", "electrolyte_ohmic_mV"),
             ("concentration", "electrolyte_concentration_mV"),
             ("kinetic, plating", "kinetic_top_mV")]
    bottom = 0.0
    for (label, key), color in zip(parts, ("#9467bd", "#2ca02c", "#ff7f0e", "#8c564b"),
                                   strict=True):
        bx.bar(["model"], [steady[key]], bottom=bottom, color=color, label=label)
        bottom += steady[key]
    bx.bar(["paper"], [paper], color="#d62728", alpha=0.5)
    bx.set_ylabel("steady polarization [mV]")
    bx.legend(fontsize=6)
    fig.savefig(path, dpi=200)
    plt.close(fig)


def _nyquist(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return z.real, -z.imag


def nyquist_figure(summary: dict[str, Any], kinds: Any, path: Path) -> None:
    """Nyquist plot (-Im Z vs Re Z, ohm for the summary's electrode area) of every cathode
    with its fitted equivalent circuit, and the same in a Bode magnitude plot; the paper's
    charge-transfer resistances (Fig. 3j) as text."""
    from fem.electrochem.impedance import CircuitFit

    colors = {"gradient": "#1f77b4", "homogeneous": "#d62728"}
    fig, (ax, zx, bx) = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    paper = summary["paper_charge_transfer_ohm"]
    smallest = np.inf
    for kind in kinds:
        e = summary[kind]
        if e.get("status") != "completed":
            continue
        f = np.asarray(e["frequency_Hz"])
        z = np.asarray(e["z_real_ohm"]) + 1j * np.asarray(e["z_imag_ohm"])
        fit_d = e["fit"]
        c = colors.get(kind, "k")
        if fit_d is not None:
            fit = CircuitFit(fit_d["circuit"], tuple(fit_d["parameters"]),
                             tuple(fit_d["parameters"].values()), fit_d["max_misfit_rel"])
            label = (f"{kind}: R_b {e['bulk_resistance_ohm']:.3g}, cathode arc "
                     f"{e['cathode_arc_ohm']:.3g}, anode arc {e['anode_arc_ohm']:.3g} ohm "
                     f"(paper R_ct about {paper[kind]:g})")
        else:
            label = f"{kind} (no circuit fitted)"
        fine = np.logspace(np.log10(f.min()), np.log10(f.max()), 400)
        for axis in (ax, zx):
            axis.plot(z.real, -z.imag, "o", ms=3, color=c, label=label)
            if fit_d is not None:
                axis.plot(*_nyquist(fit.predict(fine)), "-", lw=0.8, color=c)
        smallest = min(smallest, float(np.max(np.abs(z))))
        decades = np.isclose(np.log10(f), np.round(np.log10(f)))
        for fk, zk in zip(f[decades], z[decades], strict=True):
            ax.annotate(f"{fk:g} Hz", (zk.real, -zk.imag), fontsize=5, color=c,
                        xytext=(2, 2), textcoords="offset points")
        bx.loglog(f, np.abs(z), "o", ms=3, color=c, label=kind)
        if fit_d is not None:
            bx.loglog(fine, np.abs(fit.predict(fine)), "-", lw=0.8, color=c)
    if np.isfinite(smallest):  # the smallest spectrum in full
        zx.set_xlim(0.0, 1.05 * smallest)
        zx.set_ylim(0.0, 0.6 * smallest)
    zx.set_aspect("equal", adjustable="box")
    zx.set_xlabel("Re Z [ohm]")
    zx.set_ylabel("-Im Z [ohm]")
    zx.set_title("zoom on the smaller spectrum", fontsize=8)
    zx.grid(alpha=0.3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("Re Z [ohm]")
    ax.set_ylabel("-Im Z [ohm]")
    ax.set_title(f"half cell at {summary['ocv_V']:g} V, {summary['electrode_area_cm2']:g} cm2 "
                 f"(points: model, lines: fitted circuit)", fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    ax.grid(alpha=0.3)
    bx.set_xlabel("frequency [Hz]")
    bx.set_ylabel("|Z| [ohm]")
    bx.grid(alpha=0.3, which="both")
    bx.legend(fontsize=7)
    fig.savefig(path, dpi=200)
    plt.close(fig)


def render_rve(labels: np.ndarray, voxel_um: float, kind: str, path: Path) -> None:
    """Three panels of a voxel RVE (rank 0): phase map of the x-z slice at mid y, of the x-y
    slice at mid z, and the x-z slice again with the wire voxels coloured by whether their
    network (face-connected electronic phases, in 3D) reaches the bottom face z = 0."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch
    from scipy import ndimage

    from meshes.tags import ELECTRONIC_PHASES

    present = [p for p in Phase if np.any(labels == p)]
    index = np.zeros(8, dtype=int)
    for i, p in enumerate(present):
        index[p] = i
    cmap = ListedColormap([PHASE_COLORS[p] for p in present])
    norm = BoundaryNorm(np.arange(len(present) + 1) - 0.5, len(present))
    nx, ny, nz = labels.shape
    ext_xz = (0.0, nx * voxel_um, 0.0, nz * voxel_um)
    ext_xy = (0.0, nx * voxel_um, 0.0, ny * voxel_um)
    el = np.isin(labels, ELECTRONIC_PHASES)
    comp, _ = ndimage.label(el)  # face connectivity, as the hexahedral mesh
    reach = np.unique(comp[:, :, 0])
    connected = np.isin(comp, reach[reach > 0]) & (labels == Phase.NANOWIRE)
    isolated = (labels == Phase.NANOWIRE) & ~connected
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 4.0), layout="constrained")
    axes[0].imshow(index[labels[:, ny // 2, :]].T, origin="lower", extent=ext_xz, cmap=cmap,
                   norm=norm, interpolation="nearest")
    axes[0].set(xlabel="x [um]", ylabel="z [um] in the box", title=f"x-z slice, y = "
                f"{(ny // 2 + 0.5) * voxel_um:.2f} um")
    axes[1].imshow(index[labels[:, :, nz // 2]].T, origin="lower", extent=ext_xy, cmap=cmap,
                   norm=norm, interpolation="nearest")
    axes[1].set(xlabel="x [um]", ylabel="y [um]", title=f"x-y slice, z = "
                f"{(nz // 2 + 0.5) * voxel_um:.2f} um")
    # the x-z slice at mid y again: wire voxels blue where their network reaches z = 0, red
    # where not; everything else light grey
    rgb = np.full((nz, nx, 3), 0.92)
    rgb[connected[:, ny // 2, :].T] = (0.12, 0.31, 0.61)
    rgb[isolated[:, ny // 2, :].T] = (0.84, 0.15, 0.16)
    axes[2].imshow(rgb, origin="lower", extent=ext_xz, interpolation="nearest")
    n_wire = max(1, int(np.count_nonzero(labels == Phase.NANOWIRE)))
    axes[2].set(xlabel="x [um]", ylabel="z [um] in the box",
                title=f"wires reaching z = 0 (blue): {np.count_nonzero(connected) / n_wire:.0%}")
    axes[1].legend(handles=[Patch(facecolor=PHASE_COLORS[p], edgecolor="black", linewidth=0.5,
                                  label=p.label.replace("_", " ")) for p in present],
                   loc="upper left", bbox_to_anchor=(0.0, -0.15), ncol=3, fontsize=7,
                   frameon=False)
    fig.suptitle(f"{kind} cathode, voxel {voxel_um * 1000:.0f} nm", fontsize=10)
    fig.savefig(path, dpi=200)
    plt.close(fig)


def render_rve_3d(labels: np.ndarray, voxel_um: float, kind: str, path: Path) -> None:
    """3D picture of a voxel RVE (pyvista, off screen; rank 0). Left: the wire voxels, blue
    where their electronic network (face-connected, in 3D) reaches the bottom face z = 0,
    red where it does not. Right: the box cut at mid x, every phase but void shown, so the
    polymer fill (SPE, yellow) and the unfilled pores (empty) are visible in the cut."""
    import pyvista as pv
    from scipy import ndimage
    from vtkmodules.vtkCommonCore import vtkLogger

    from meshes.tags import ELECTRONIC_PHASES

    # off screen without an X server VTK warns once that it has none, then renders anyway
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    pv.OFF_SCREEN = True
    el = np.isin(labels, ELECTRONIC_PHASES)
    comp, _ = ndimage.label(el)
    reach = np.unique(comp[:, :, 0])
    connected = np.isin(comp, reach[reach > 0])
    grid = pv.ImageData(dimensions=np.array(labels.shape) + 1,
                        spacing=(voxel_um, voxel_um, voxel_um))
    grid.cell_data["phase"] = labels.ravel(order="F")
    grid.cell_data["connected"] = connected.ravel(order="F").astype(np.uint8)
    plotter = pv.Plotter(off_screen=True, shape=(1, 2), window_size=[2000, 1000])
    wires = grid.threshold([0.5, 1.5], scalars="phase")
    if wires.n_cells:
        # fix the colour range, so that an all-connected network is still drawn blue
        plotter.add_mesh(wires.extract_surface(algorithm="dataset_surface"),
                         scalars="connected", cmap=["#d62728", "#1f4e9c"], clim=(0, 1),
                         show_scalar_bar=False)
    plotter.add_mesh(grid.outline(), color="black")
    plotter.add_text(f"{kind}: wires reaching z = 0 (blue) or not (red)", font_size=11)
    plotter.show_bounds(xtitle="x [um]", ytitle="y [um]", ztitle="z [um]",  # type: ignore[call-arg]
                        fmt="%.1f")
    plotter.camera_position = "iso"
    plotter.subplot(0, 1)
    nx = labels.shape[0]
    cut = labels.copy()
    cut[nx // 2:] = Phase.VOID
    solid = grid.copy()
    solid.cell_data["phase"] = cut.ravel(order="F")
    shown = solid.threshold(int(Phase.VOID) - 0.5, scalars="phase", invert=True)
    shown = shown.merge(solid.threshold(int(Phase.VOID) + 0.5, scalars="phase"))
    colors = [PHASE_COLORS[p] for p in Phase]
    if shown.n_cells:
        plotter.add_mesh(shown.extract_surface(algorithm="dataset_surface"), scalars="phase",
                         cmap=colors, clim=(0.5, len(colors) + 0.5), show_scalar_bar=False)
    plotter.add_mesh(grid.outline(), color="black")
    plotter.add_text("cut at mid x: SPE yellow, wires blue, rGO black, carbon grey, "
                     "void empty", font_size=11)
    plotter.show_bounds(xtitle="x [um]", ytitle="y [um]", ztitle="z [um]",  # type: ignore[call-arg]
                        fmt="%.1f")
    plotter.camera_position = "iso"
    plotter.screenshot(str(path))
    plotter.close()


def render_conforming_3d(points_um: np.ndarray, cells: np.ndarray, phase: np.ndarray,
                         path: Path) -> None:
    """3D picture of a conforming box (pyvista, off screen; rank 0). Left: the wire surfaces
    with their triangles, blue where the wire network (cells sharing a face) reaches the
    bottom face z = 0, red where it does not. Right: the tetrahedra of the box cut at mid y,
    coloured by phase, showing the grading from the wire surfaces into the polymer."""
    import pyvista as pv
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from vtkmodules.vtkCommonCore import vtkLogger

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    pv.OFF_SCREEN = True
    grid = pv.UnstructuredGrid({pv.CellType.TETRA: cells}, points_um)
    grid.cell_data["phase"] = phase
    wire = np.nonzero(phase == int(Phase.NANOWIRE))[0]
    connected = np.zeros(len(phase), dtype=np.uint8)
    if len(wire):
        # wire cells sharing a face (3 vertices) belong to one network
        faces = np.sort(np.concatenate([cells[wire][:, [0, 1, 2]], cells[wire][:, [0, 1, 3]],
                                        cells[wire][:, [0, 2, 3]], cells[wire][:, [1, 2, 3]]]),
                        axis=1)
        owner = np.tile(np.arange(len(wire)), 4)
        _, inverse, counts = np.unique(faces, axis=0, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        shared = counts[inverse[order]] == 2
        pairs = owner[order][shared].reshape(-1, 2)
        graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                              shape=(len(wire), len(wire)))
        _, comp = connected_components(graph, directed=False)
        low = points_um[cells[wire]][:, :, 2].min(axis=1) < 1e-9
        connected[wire] = np.isin(comp, np.unique(comp[low])).astype(np.uint8)
    grid.cell_data["connected"] = connected
    plotter = pv.Plotter(off_screen=True, shape=(1, 2), window_size=[2000, 1000])
    wires = grid.threshold([0.5, 1.5], scalars="phase")
    if wires.n_cells:
        plotter.add_mesh(wires.extract_surface(algorithm="dataset_surface"), scalars="connected",
                         cmap=["#d62728", "#1f4e9c"], clim=(0, 1), show_scalar_bar=False,
                         show_edges=True, edge_color="#333333", line_width=0.3)
    plotter.add_mesh(grid.outline(), color="black")
    plotter.add_text("conforming box: wire surfaces reaching z = 0 (blue) or not (red)",
                     font_size=11)
    plotter.show_bounds(xtitle="x [um]", ytitle="y [um]", ztitle="z [um]",  # type: ignore[call-arg]
                        fmt="%.1f")
    plotter.camera_position = "iso"
    plotter.subplot(0, 1)
    y_mid = 0.5 * float(points_um[:, 1].max())
    centre_y = points_um[cells][:, :, 1].mean(axis=1)
    half = grid.extract_cells(np.nonzero(centre_y < y_mid)[0])
    colors = [PHASE_COLORS[p] for p in Phase]
    plotter.add_mesh(half, scalars="phase", cmap=colors, clim=(0.5, len(colors) + 0.5),
                     show_scalar_bar=False, show_edges=True, edge_color="#555555",
                     line_width=0.2)
    plotter.add_mesh(grid.outline(), color="black")
    plotter.add_text("cut at mid y: tetrahedra, wires blue, SPE yellow", font_size=11)
    plotter.show_bounds(xtitle="x [um]", ytitle="y [um]", ztitle="z [um]",  # type: ignore[call-arg]
                        fmt="%.1f")
    plotter.camera_position = "iso"
    plotter.screenshot(str(path))
    plotter.close()


def gitt_figure(summary: dict[str, Any], records: dict[str, Any], kinds: Any, path: Path
                ) -> None:
    """GITT of every cathode of one run: cell voltage vs specific capacity (paper Fig. 3h),
    and the diffusivities of Eq. 2 per pulse vs discharge fraction (Fig. 3i)."""
    series = []
    for kind in kinds:
        recs = records.get(kind) or []
        series.append(GittSeries(
            label=kind, color=_KIND_COLORS.get(kind, "k"), entry=summary[kind],
            capacity_mAh_g=[r.capacity_mAh_g for r in recs],
            voltage_V=[r.voltage_V for r in recs],
            initial_voltage_V=summary["initial_voltage_V"]))
    gitt_comparison_figure(series, summary["case"]["gitt"], summary["paper"],
                           summary["input_solid_diffusivity_cm2_s"], path)


@dataclass(frozen=True)
class GittSeries:
    """One GITT curve of :func:`gitt_comparison_figure`: a cathode's summary entry (with its
    pulses) and its records' capacities and voltages."""

    label: str
    color: str
    entry: dict[str, Any]
    capacity_mAh_g: Sequence[float]
    voltage_V: Sequence[float]
    initial_voltage_V: float


def gitt_comparison_figure(series: Sequence[GittSeries], gitt: dict[str, Any] | None,
                           paper: dict[str, Any], input_diffusivity_cm2_s: float | None,
                           path: Path) -> None:
    """Voltage vs specific capacity (paper Fig. 3h) and the diffusivities of Eq. 2 per pulse
    vs discharge fraction (Fig. 3i) of several GITT runs, with the geometric area (filled)
    and the connected wire surface (open) as contact area; the paper's range for the
    gradient cathode shaded; ``gitt`` is the ``[gitt]`` table of the runs (the title; None
    when they differ)."""
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(11.5, 4.2), layout="constrained")
    for s in series:
        e, c = s.entry, s.color
        if e["status"] == "blocked" or not s.capacity_mAh_g:
            ax.plot([], [], color=c, label=f"{s.label}: blocked")
            continue
        q = [0.0, *s.capacity_mAh_g]
        v = [s.initial_voltage_V, *s.voltage_V]
        ended = "at the cut-off" if e["reached_cutoff"] else "(cut-off not reached)"
        ax.plot(q, v, "-", lw=0.6, color=c,
                label=f"{s.label}: {e['capacity_mAh_g']:.0f} mAh/g {ended}")
        pulses = e["pulses"]
        total = max(e["capacity_mAh_g"], 1e-30)
        x = [p["capacity_mAh_g"] / total for p in pulses]
        for key, marker, text in (("d_geometric_cm2_s", "o", "geometric area"),
                                  ("d_interface_cm2_s", "s", "connected wire surface")):
            pts = [(xi, p[key]) for xi, p in zip(x, pulses, strict=True)
                   if p[key] is not None and p[key] > 0]
            if pts:
                dx.semilogy(*zip(*pts, strict=True), marker, ms=3, color=c,
                            mfc=c if marker == "o" else "none",
                            label=f"{s.label}, S = {text}")
    lo, hi = paper["gradient"]["diffusivity_range_cm2_s"]
    dx.axhspan(lo, hi, color=_KIND_COLORS["gradient"], alpha=0.12,
               label="paper, gradient (Fig. 3i)")
    if input_diffusivity_cm2_s is not None:
        dx.axhline(input_diffusivity_cm2_s, color="k", lw=0.8, ls=":",
                   label="input solid diffusivity")
    ax.set_xlabel("specific capacity [mAh/g]")
    ax.set_ylabel("cell voltage vs Li/Li$^+$ [V]")
    if gitt is not None:  # None: runs of different pulses (the labels say which)
        ax.set_title(f"{gitt['current_mA_g']:g} mA/g pulses of {gitt['pulse_s']:g} s, "
                     f"{gitt['rest_s']:g} s rests", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    dx.set_xlabel("discharge fraction [-]")
    dx.set_ylabel("D from Eq. 2 [cm$^2$/s]")
    dx.grid(alpha=0.3, which="both")
    dx.legend(fontsize=6)
    fig.savefig(path, dpi=200)
    plt.close(fig)
