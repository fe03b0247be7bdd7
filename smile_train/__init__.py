"""smile_train: SMILE pretraining, finetuning, evaluation and checkpoint interop.

Pipeline: data (shards -> clips + masks) -> masking -> model -> teacher/targets -> train loop.
"""

__version__ = "0.1.0"
