"""Weights in and out: this project's checkpoints (checked before loading), the authors' files, Hugging Face export."""
