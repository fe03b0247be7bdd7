"""Shards to the clips and masks a step takes: sources, windows, crops, overlays, masks, finetuning augmentation, the loaders."""
