"""Pictures: phase maps and fields (pyvista, offscreen) and the comparison figure (matplotlib).

Phase maps are drawn from the whole section mesh, which rank 0 holds on any rank count;
field renders need the whole field on one process, so the study makes them in serial runs
only (the XDMF files hold every field for ParaView on any rank count).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from meshes.build import KINDS
from meshes.tags import Phase

__all__ = ["PHASE_COLORS", "comparison_figure", "render_field", "render_phases"]

PHASE_COLORS = {
    Phase.NANOWIRE: "#1f4e9c", Phase.RGO: "#222222", Phase.SPE: "#f2c94c",
    Phase.VOID: "#ffffff", Phase.CARBON_BLACK: "#7a7a7a", Phase.SEPARATOR: "#9bd3ae",
    Phase.AL_FOIL: "#c0c6cc",
}


def _pv() -> Any:
    os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
    import pyvista as pv
    from vtkmodules.vtkCommonCore import vtkLogger

    # Offscreen rendering without a display works; VTK still warns about the missing X server.
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    pv.OFF_SCREEN = True
    return pv


def _grid(points: np.ndarray, cells: np.ndarray) -> Any:
    pv = _pv()
    pts = np.column_stack([points[:, 0], points[:, 1], np.zeros(len(points))])
    conn = np.column_stack([np.full(len(cells), 3), cells]).ravel()
    return pv.UnstructuredGrid(conn, np.full(len(cells), pv.CellType.TRIANGLE), pts)


def render_phases(section: Any, path: Path) -> None:
    """Phase map of a whole section mesh (``meshes.build.SectionMesh``, held by rank 0)."""
    pv = _pv()
    grid = _grid(section.points_um, section.cells)
    phase = section.phase
    present = [p for p in Phase if np.any(phase == p)]
    index = np.zeros(8, dtype=int)
    for i, p in enumerate(present):
        index[p] = i
    grid.cell_data["phase"] = index[phase]
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([PHASE_COLORS[p] for p in present])
    aspect = section.thickness_um / section.width_um
    width_px = 900 if aspect < 2 else 600
    pl = pv.Plotter(off_screen=True,
                    window_size=(width_px, int(min(2400, width_px * aspect * 0.8 + 200))))
    pl.add_mesh(grid, scalars="phase", cmap=cmap, clim=(-0.5, len(present) - 0.5),
                show_scalar_bar=False)
    pl.add_legend([(p.label, PHASE_COLORS[p]) for p in present], bcolor="white",
                  face="rectangle", size=(0.36, 0.16), loc="upper right")
    pl.add_text(f"{section.kind} cathode, {section.width_um:g} x {section.thickness_um:.3g} um"
                " (x, z)",
                font_size=9, position="upper_left")
    pl.view_xy()
    pl.camera.tight(padding=0.12)
    pl.screenshot(str(path))
    pl.close()


def render_field(u: Any, path: Path, title: str) -> None:
    """Scalar P1 field on its (sub)mesh, serial."""
    pv = _pv()
    import dolfinx.plot

    topology, cell_types, x = dolfinx.plot.vtk_mesh(u.function_space)
    grid = pv.UnstructuredGrid(topology, cell_types, x)
    grid.point_data[title] = u.x.array.real
    pl = pv.Plotter(off_screen=True, window_size=(700, 900))
    pl.add_mesh(grid, scalars=title, cmap="viridis",
                scalar_bar_args={"title": title.replace("_", " ")})
    pl.view_xy()
    pl.camera.tight(padding=0.1)
    pl.screenshot(str(path))
    pl.close()


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
            ax.semilogy(v, np.where(i_a > 0, i_a, np.nan), ls, color=colors[kind],
                        label=f"{kind}, {face} face")
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
