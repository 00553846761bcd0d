"""Microstructure specifications, generators and tagged meshes (spec -> geometry -> mesh)."""
