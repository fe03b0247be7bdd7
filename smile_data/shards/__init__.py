"""Shards: the sample layout (layout.py), writing, safe reading, validation and previews."""
