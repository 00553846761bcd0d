"""Write a tagged section mesh as a Gmsh .msh file with named physical groups.

Phases (cell tags of MODEL.md) become physical surfaces named ``nanowire``, ``spe``, ...;
outer boundaries and interfaces become physical curves named ``bottom``, ``top``,
``active_electrolyte``, ... with the facet tag integers, so Gmsh, meshio and ParaView users
see the same tags and names as the solvers. Serial (call on one rank).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meshes.build import SectionMesh
from meshes.gmsh_session import initialize_gmsh
from meshes.tags import ELECTRONIC_PHASES, Facet, Phase

__all__ = ["facet_edges", "write_msh"]


def facet_edges(section: SectionMesh) -> dict[Facet, np.ndarray]:
    """Edges (pairs of point indices) of every facet tag, from geometry and phases."""
    cells = section.cells
    edges = np.concatenate([cells[:, [0, 1]], cells[:, [1, 2]], cells[:, [2, 0]]])
    owner = np.tile(np.arange(len(cells)), 3)
    edges = np.sort(edges, axis=1)
    uniq, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    first = np.full(len(uniq), -1)
    second = np.full(len(uniq), -1)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(uniq)))
    first[:] = owner[order[starts]]
    two = counts == 2
    second[two] = owner[order[starts[two] + 1]]
    p = section.points_um[uniq]
    tol = 1e-7 * max(section.width_um, section.thickness_um)
    out: dict[Facet, np.ndarray] = {}
    for tag, axis, value in ((Facet.BOTTOM, 1, 0.0), (Facet.TOP, 1, section.thickness_um),
                             (Facet.LEFT, 0, 0.0), (Facet.RIGHT, 0, section.width_um)):
        on = (~two) & np.all(np.abs(p[:, :, axis] - value) < tol, axis=1)
        out[tag] = uniq[on]
    a = section.phase[first[two]]
    b = section.phase[second[two]]
    inner = uniq[two]
    ionic = (Phase.SPE, Phase.SEPARATOR)

    def pair(x: int, ys: object) -> np.ndarray:
        return ((a == x) & np.isin(b, ys)) | ((b == x) & np.isin(a, ys))  # type: ignore[arg-type]

    others = [int(p) for p in Phase]
    electronic = np.isin(a, ELECTRONIC_PHASES) & np.isin(b, ELECTRONIC_PHASES) & (a != b)
    out[Facet.ACTIVE_ELECTROLYTE] = inner[pair(Phase.NANOWIRE, ionic)]
    out[Facet.ELECTRONIC_CONTACT] = inner[electronic & ~pair(Phase.AL_FOIL, others)]
    # a wire touching the separator is an active/electrolyte facet (it reacts)
    out[Facet.CATHODE_SEPARATOR] = inner[pair(
        Phase.SEPARATOR, [q for q in others if q not in (Phase.SEPARATOR, Phase.NANOWIRE)])]
    out[Facet.CATHODE_COLLECTOR] = inner[pair(Phase.AL_FOIL,
                                              [q for q in others if q != Phase.AL_FOIL])]
    return out


def write_msh(section: SectionMesh, path: Path) -> None:
    """Write ``path`` (.msh, format 4.1) with one discrete entity per phase and facet tag."""
    import gmsh

    initialize_gmsh()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add(f"{section.kind}_section")
        node_tags = np.arange(1, len(section.points_um) + 1)
        xyz = np.column_stack([section.points_um, np.zeros(len(section.points_um))]).ravel()
        # All nodes live on one auxiliary discrete surface entity; elements reference them.
        gmsh.model.addDiscreteEntity(2, 1000)
        gmsh.model.mesh.addNodes(2, 1000, node_tags, xyz)
        next_elem = 1
        for ph in Phase:
            sel = np.nonzero(section.phase == ph)[0]
            if len(sel) == 0:
                continue
            ent = gmsh.model.addDiscreteEntity(2, int(ph))
            gmsh.model.mesh.addElementsByType(
                ent, 2, np.arange(next_elem, next_elem + len(sel)),
                (section.cells[sel] + 1).ravel())
            next_elem += len(sel)
            gmsh.model.addPhysicalGroup(2, [ent], int(ph), name=ph.label)
        for tag, edges in facet_edges(section).items():
            if len(edges) == 0:
                continue
            ent = gmsh.model.addDiscreteEntity(1, int(tag))
            gmsh.model.mesh.addElementsByType(
                ent, 1, np.arange(next_elem, next_elem + len(edges)), (edges + 1).ravel())
            next_elem += len(edges)
            gmsh.model.addPhysicalGroup(1, [ent], int(tag), name=tag.label)
        gmsh.option.setNumber("Mesh.SaveAll", 0)
        gmsh.write(str(path))
    finally:
        gmsh.finalize()
