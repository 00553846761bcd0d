"""Finite-element solvers and mesh-level analyses on DOLFINx meshes."""
