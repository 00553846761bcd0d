"""The .msh output: named physical groups with the MODEL.md tags, read back with Gmsh."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meshes.build import build_section
from meshes.msh_io import facet_edges, write_msh
from meshes.spec import load_case
from meshes.tags import Facet, Phase
from tests.conftest import SMALL


def test_msh_round_trip(tmp_path: Path) -> None:
    import gmsh

    section = build_section(load_case(SMALL), "homogeneous")
    path = tmp_path / "homogeneous.msh"
    write_msh(section, path)
    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.open(str(path))
        groups = {(d, t): gmsh.model.getPhysicalName(d, t)
                  for d, t in gmsh.model.getPhysicalGroups()}
        for ph in (Phase.NANOWIRE, Phase.SPE, Phase.VOID, Phase.CARBON_BLACK, Phase.AL_FOIL):
            assert groups[(2, int(ph))] == ph.label
            ents = gmsh.model.getEntitiesForPhysicalGroup(2, int(ph))
            n = sum(len(gmsh.model.mesh.getElements(2, e)[1][0]) for e in ents)
            assert n == int(np.sum(section.phase == ph))
        for f in (Facet.BOTTOM, Facet.TOP, Facet.ACTIVE_ELECTROLYTE, Facet.CATHODE_COLLECTOR):
            assert groups[(1, int(f))] == f.label
    finally:
        gmsh.finalize()


def test_facet_edges_bound_the_box() -> None:
    section = build_section(load_case(SMALL), "gradient")
    e = facet_edges(section)
    p = section.points_um
    for tag, length in ((Facet.BOTTOM, section.width_um), (Facet.TOP, section.width_um),
                        (Facet.LEFT, section.thickness_um)):
        seg = p[e[tag][:, 1]] - p[e[tag][:, 0]]
        assert abs(np.linalg.norm(seg, axis=1).sum() - length) < 1e-9
