"""Rendering: trajectories, overlays, backgrounds and the per-clip renderer."""
