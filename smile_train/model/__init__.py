"""The networks and what they learn: the ViT, the token geometry, the targets, the frozen teacher."""
