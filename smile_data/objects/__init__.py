"""Object banks: build from Stable Diffusion, import an existing set, read for rendering."""
